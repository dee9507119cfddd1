"""A lone row's decode step compiled with `torch.compile`: about twice as fast for one student.

The engine's batch grows by one cache column at every step and rows come and go, so a compiled
model would see new shapes all the time. One row alone is different: its keys and values can
live in transformers' `StaticCache`, a fixed number of positions filled one at a time, and one
compiled graph then serves every step. On 2 cores, SmolLM2 in bfloat16 went from 88 ms to 43 ms
a step (`bench/compile_step.py --static`), with the same greedy tokens.

* It pays only for a row alone: with two or more rows the batch already shares each step.
  `llmlab.generation.batch.Batch` moves a lone row's cache into a free `Slot` here and back
  into its own cache the moment a second row joins (or the row outgrows the slot).
* It is built for models whose layers all attend to every position (SmolLM2, Llama). Gemma 3's
  sliding-window layers keep their length as a Python number in transformers 5.23, so the graph
  was compiled again at every step (451 s) and gave no gain: such models stay eager.
* Compiling takes about a minute per slot length on 2 cores. It runs in a background thread
  when a model's engine is made, on a private copy of the model (so a page's traced pass, with
  its hooks, never meets the compiler); the eager step serves until it is ready, and for good
  if compiling fails (no C++ compiler, say).
* `LLMLAB_COMPILE=1` turns it on; it is off by default (only tests/test_compiled.py turns it on).

A compiled step rounds differently from the eager one in the last bits (its kernels add in
another order); in float32 its tokens and probabilities are checked against `model.generate`
and the eager step (tests/test_compiled.py).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from llmlab.compute import COMPUTE_LOCK, usable_cores

log = logging.getLogger("llmlab.compiled")

# The positions of each slot's static cache: a row fits while prompt + new tokens stay below.
# Every length is its own graph (a minute to compile), so there are few.
LENGTHS = (256,)
WARM_STEPS = 3  # calls per slot while compiling: the first compiles, the others must not


def compile_from_env(environ: dict[str, str] | None = None) -> bool:
    """`LLMLAB_COMPILE`: "1", "on", "true" or "yes" turn the compiled step on (default off:
    while it compiles, the engine's other work slows far more than sharing the cores explains).

    >>> compile_from_env({"LLMLAB_COMPILE": "1"}), compile_from_env({})
    (True, False)
    """
    text = (os.environ if environ is None else environ).get("LLMLAB_COMPILE", "").strip().lower()
    return text in {"1", "on", "true", "yes"}


def full_attention_only(config: Any) -> bool:
    """True when every layer attends to every position (no sliding window).

    >>> from types import SimpleNamespace as C
    >>> full_attention_only(C(layer_types=["full_attention"] * 2))
    True
    >>> full_attention_only(C(layer_types=["sliding_attention", "full_attention"]))
    False
    """
    types = getattr(config, "layer_types", None)
    if types is not None:
        return all(kind == "full_attention" for kind in types)
    return getattr(config, "sliding_window", None) is None


@dataclass(eq=False)
class Slot:
    """One static cache of `length` positions, lent to one lone row at a time."""

    cache: Any
    length: int
    busy: bool = False


class CompiledStep:
    """The compiled decode step of one loaded model, and its slots."""

    def __init__(self, lengths: tuple[int, ...] | None = None):
        self.lengths = tuple(sorted(lengths or LENGTHS))
        self.state = "new"  # new -> compiling -> ready | failed; ready -> failed on a fault
        self.compile_seconds: float | None = None
        self.error: str | None = None
        self._compiled: Any = None
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def start(self, model: Any) -> None:
        """Compile a copy of `model` in a background thread (once). Only that thread holds the
        model, and only until it is copied: the model is freed when the cache drops it."""
        with self._lock:
            if self.state != "new":
                return
            self.state = "compiling"
        threading.Thread(
            target=self._compile, args=(model,), name="llmlab-compile", daemon=True
        ).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until compiling has ended, well or not; True when it is ready."""
        self._done.wait(timeout)
        return self.ready

    def _compile(self, model: Any) -> None:
        from transformers import StaticCache

        torch.set_grad_enabled(False)  # the mode is per thread; the graphs are built for it
        started = time.perf_counter()
        try:
            with COMPUTE_LOCK:  # no page's hooks are on the model while it is copied
                private = copy.deepcopy(model)
            del model
            private.eval()
            _registry_out_of_the_graph()
            # The kernels' thread count is fixed when they are built: every usable core, as
            # the engine's forward passes use (not what another thread set meanwhile).
            compiled = torch.compile(
                private, dynamic=False, options={"cpp.threads": usable_cores()}
            )
            slots = []
            for length in self.lengths:
                cache = StaticCache(config=private.config, max_cache_len=length)
                slot = Slot(cache, length)
                for position in range(WARM_STEPS):
                    self._call(compiled, slot, 0, position, position)
                slots.append(slot)
        except Exception as error:  # noqa: BLE001 - no compiler, no memory: stay eager
            log.warning("compiling the decode step failed; the eager step serves", exc_info=True)
            self.error = f"{type(error).__name__}: {error}"
            self.state = "failed"
        else:
            self._compiled, self._slots = compiled, slots
            self.compile_seconds = time.perf_counter() - started
            self.state = "ready"
            log.info("compiled decode step ready in %.0f s", self.compile_seconds)
        finally:
            self._done.set()

    @staticmethod
    def _call(compiled: Any, slot: Slot, token: int, position: int, column: int) -> torch.Tensor:
        output = compiled(
            input_ids=torch.tensor([[token]], dtype=torch.long),
            position_ids=torch.tensor([[position]], dtype=torch.long),
            cache_position=torch.tensor([column], dtype=torch.long),
            past_key_values=slot.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return output.logits[:, -1, :].to(torch.float32)

    def acquire(self, width: int) -> Slot | None:
        """A free slot with room for a row of `width` columns and at least one more."""
        if not self.ready:
            return None
        with self._lock:
            for slot in self._slots:
                if not slot.busy and slot.length > width:
                    slot.busy = True
                    return slot
        return None

    def release(self, slot: Slot) -> None:
        with self._lock:
            slot.busy = False

    def step(self, slot: Slot, token: int, position: int, column: int) -> torch.Tensor:
        """One token into `slot` at `column`: the next logits, (1, vocab) float32.

        A step that would compile again (the graph's guards failed) raises instead of making
        the class wait a minute; the caller then takes the eager step.
        """
        with torch.compiler.set_stance("fail_on_recompile"):
            return self._call(self._compiled, slot, token, position, column)

    def fail(self, error: BaseException) -> None:
        """A compiled step went wrong: the eager step serves from now on."""
        log.warning("the compiled decode step failed; the eager step serves", exc_info=error)
        self.error = f"{type(error).__name__}: {error}"
        self.state = "failed"


class _Registry:
    """transformers' registry of model classes, behind a lookup the compiler does not trace
    (see `_registry_out_of_the_graph`)."""

    def __init__(self, inner: dict):
        self._inner = inner

    def __setitem__(self, model: Any, value: Any) -> None:
        self._inner[model] = value

    @torch.compiler.disable
    def get(self, model: Any) -> dict:
        return self._inner.get(model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _registry_out_of_the_graph() -> None:
    """Keep a model loaded later from invalidating the compiled graph.

    Every transformers model class adds itself to a registry when first made
    (`output_capturing._CAN_RECORD_REGISTRY`, a dict), and the model's forward looks its own
    class up there. The compiler guards that lookup on the dict's size, so loading Gemma 3 after
    SmolLM2 was compiled made the next step compile again. The registry is put behind an object
    whose lookup runs as plain Python at each step, outside the graph (the same answers, from
    the same dict). Without this registry (another transformers version) nothing changes: a
    graph whose guards fail is not rebuilt during serving, the eager step serves instead
    (`CompiledStep.step`).
    """
    try:
        from transformers import modeling_utils
        from transformers.utils import output_capturing

        registry = output_capturing._CAN_RECORD_REGISTRY
    except (ImportError, AttributeError):
        return
    if isinstance(registry, _Registry):
        return
    wrapped = _Registry(registry)
    output_capturing._CAN_RECORD_REGISTRY = wrapped
    if getattr(modeling_utils, "_CAN_RECORD_REGISTRY", None) is registry:
        modeling_utils._CAN_RECORD_REGISTRY = wrapped


_compiled: weakref.WeakKeyDictionary[Any, CompiledStep] = weakref.WeakKeyDictionary()
_compiled_lock = threading.Lock()


def compiled_for(model: Any, environ: dict[str, str] | None = None) -> CompiledStep | None:
    """The compiled step of this model, compiling in the background from the first call; None
    when it is turned off or does not pay for this model (see the module's notes)."""
    if not compile_from_env(environ) or not full_attention_only(model.config):
        return None
    with _compiled_lock:
        step = _compiled.get(model)
        if step is None:
            step = _compiled[model] = CompiledStep()
    step.start(model)
    return step
