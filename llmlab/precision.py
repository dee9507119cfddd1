"""bfloat16 or float32: chosen for this machine by measuring it, once per process.

bfloat16 keeps 8 bits of each number's precision instead of float32's 24 and halves the memory a
model takes. Whether it is also *faster* depends on the CPU: with bfloat16 instructions in
hardware (Intel's AVX-512 BF16 and AMX, ARM's BF16) a decode step is about 1.6x faster; without
them (AVX2 only, as on many laptops and servers) every product converts its numbers to float32
and back, and a batch of 16 rows, a class pressing Generate together, can be several times
*slower* than plain float32. The CPU's flags are only a first guess; the choice is a
measurement.

The measurement times one decoder layer's matrix products and a slice of the output layer, in
the model's own shapes, at 1 row and at 16 rows, in both precisions: these products are nearly
all of a decode step's time, and they take a fraction of a second to time without loading a
second copy of the model. The precision faster for 16 rows wins, since one model copy serves the
whole class; float32, which gives the exact numbers, is kept unless bfloat16 is clearly faster.

>>> timings = {"float32": {1: 0.020, 16: 0.040}, "bfloat16": {1: 0.015, 16: 0.140}}
>>> choose(timings)
'float32'
>>> choose({"float32": {1: 0.030, 16: 0.060}, "bfloat16": {1: 0.018, 16: 0.035}})
'bfloat16'
>>> precision_from_env({"LLMLAB_PRECISION": "bfloat16"})
'bfloat16'
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmlab.cpu import CpuFacts, cpu_facts

PRECISIONS = ("float32", "bfloat16")
# The batch a class makes: the engine's typical number of rows, and the one the choice is for.
CLASS_ROWS = 16
ROWS = (1, CLASS_ROWS)
# bfloat16 must be at least this much faster at CLASS_ROWS to be chosen over float32's exact
# numbers: below it, the two are within a measurement's noise of each other.
BFLOAT16_MARGIN = 0.05
# The output layer is timed on this many of its rows and scaled to the whole vocabulary: a
# product's time grows in proportion to its outputs, and Gemma 3's 262,144 rows would take
# 671 MB in float32 to time whole.
OUTPUT_SLICE = 8_192
REPEATS = 5
ENV = "LLMLAB_PRECISION"
ENV_CHOICES = ("auto", *PRECISIONS)

Timings = Mapping[str, Mapping[int, float]]


@dataclass(frozen=True)
class StepShape:
    """The matrix products of one decode step: one decoder layer's, times `layers`, and the
    output layer's.

    >>> StepShape(576, 1536, 576, 192, 30, 49_152).products()[:3]
    [(576, 576), (576, 192), (576, 192)]
    """

    hidden: int
    intermediate: int
    query: int  # attention heads x head width
    key_value: int  # key-value heads x head width (each of K and V)
    layers: int
    vocab: int

    def products(self) -> list[tuple[int, int]]:
        """(inputs, outputs) of each product in one layer: Q, K, V, O, gate, up, down."""
        h, m = self.hidden, self.intermediate
        return [(h, self.query), (h, self.key_value), (h, self.key_value), (self.query, h),
                (h, m), (h, m), (m, h)]  # fmt: skip

    @classmethod
    def from_config(cls, config: Any) -> StepShape:
        """The shape of a transformers config (a text config inside a multimodal one)."""
        config = getattr(config, "text_config", None) or config
        get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
        hidden = get("hidden_size") or get("n_embd")
        heads = get("num_attention_heads") or get("n_head")
        head_dim = get("head_dim") or hidden // heads
        kv_heads = get("num_key_value_heads") or heads
        return cls(
            hidden=hidden,
            intermediate=get("intermediate_size") or get("n_inner") or 4 * hidden,
            query=heads * head_dim,
            key_value=kv_heads * head_dim,
            layers=get("num_hidden_layers") or get("n_layer"),
            vocab=get("vocab_size"),
        )


# SmolLM2-135M's shape: used when a model's own config is not at hand (a Hub model not yet
# loaded). The choice depends mostly on the CPU, not on the model.
REFERENCE_SHAPE = StepShape(576, 1536, 576, 192, 30, 49_152)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision chosen for a model on this machine, and the figures behind it."""

    dtype: str
    source: str  # "measured" or "LLMLAB_PRECISION"
    guess: str  # what the CPU's flags suggested before measuring
    cpu: CpuFacts
    timings: Timings = field(default_factory=dict)  # dtype -> rows -> seconds a decode step
    measure_seconds: float = 0.0  # what the measurement cost

    def step_ms(self, dtype: str, rows: int = CLASS_ROWS) -> float | None:
        seconds = self.timings.get(dtype, {}).get(rows)
        return None if seconds is None else seconds * 1000

    def label(self, dtype: str) -> str:
        """The Precision switch's label for `dtype`, saying what was measured here.

        >>> cpu = CpuFacts("AMD EPYC", "x86_64", 2, "AVX2", 256, False, False, "2", "5")
        >>> t = {"float32": {1: 0.02, 16: 0.041}, "bfloat16": {1: 0.015, 16: 0.14}}
        >>> PrecisionChoice("float32", "measured", "float32", cpu, t).label("float32")
        'float32 · faster here (16 rows: 41 ms a step on one core against 140 ms)'
        >>> PrecisionChoice("float32", "measured", "float32", cpu, t).label("bfloat16")
        'bfloat16 · 3.4x slower here'
        """
        other = PRECISIONS[1 - PRECISIONS.index(dtype)]
        mine, theirs = self.step_ms(dtype), self.step_ms(other)
        if mine is None or theirs is None:
            return f"{dtype} · chosen by {ENV}" if dtype == self.dtype else dtype
        if dtype == self.dtype and mine <= theirs:
            return (
                f"{dtype} · faster here ({CLASS_ROWS} rows: {mine:.0f} ms a step on one core "
                f"against {theirs:.0f} ms)"
            )
        if dtype == self.dtype:
            return f"{dtype} · exact, about as fast here"
        if mine > theirs:
            return f"{dtype} · {mine / theirs:.1f}x slower here"
        return f"{dtype} · {theirs / mine:.1f}x faster here, less exact"

    def explanation(self) -> str:
        """One plain sentence for the switch's help and Home."""
        if self.source == ENV:
            return f"{self.dtype}, set by {ENV} on this server."
        f32, b16 = self.step_ms("float32"), self.step_ms("bfloat16")
        native = "has" if self.cpu.native_bfloat16 else "has no"
        return (
            f"This CPU ({self.cpu.model}, {self.cpu.vector}) {native} bfloat16 instructions. "
            f"Measured here on one core, a decode step for {CLASS_ROWS} students takes {f32:.0f} "
            f"ms in float32 and {b16:.0f} ms in bfloat16, so the lab uses {self.dtype}."
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for a notebook, a benchmark's table or JSON)."""
        return {
            "dtype": self.dtype,
            "source": self.source,
            "guess": self.guess,
            "cpu": self.cpu.summary(),
            "step_ms": {d: {r: round(s * 1000, 3) for r, s in t.items()}
                        for d, t in self.timings.items()},
            "measure_seconds": round(self.measure_seconds, 3),
        }  # fmt: skip


def precision_from_env(environ: Mapping[str, str] | None = None) -> str:
    """`LLMLAB_PRECISION`: "bfloat16", "float32" or "auto" (the default: measure).

    >>> precision_from_env({})
    'auto'
    >>> precision_from_env({"LLMLAB_PRECISION": "half"})
    Traceback (most recent call last):
    ...
    ValueError: LLMLAB_PRECISION='half' is not a precision; allowed: auto, float32, bfloat16
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ENV, "").strip().lower() or "auto"
    if value not in ENV_CHOICES:
        raise ValueError(
            f"{ENV}={environ.get(ENV)!r} is not a precision; allowed: {', '.join(ENV_CHOICES)}"
        )
    return value


def first_guess(cpu: CpuFacts) -> str:
    """What the CPU's flags suggest: bfloat16 only with bfloat16 instructions in hardware."""
    return "bfloat16" if cpu.native_bfloat16 else "float32"


def choose(timings: Timings) -> str:
    """The precision for a class: bfloat16 only when it is clearly faster at 16 rows."""
    f32, b16 = timings["float32"][CLASS_ROWS], timings["bfloat16"][CLASS_ROWS]
    return "bfloat16" if b16 < f32 * (1 - BFLOAT16_MARGIN) else "float32"


def measure_step(shape: StepShape, rows: tuple[int, ...] = ROWS) -> dict[str, dict[int, float]]:
    """Seconds of one decode step's matrix products, by precision and rows, on the process's
    torch threads.

    The two precisions take turns, run after run, and each keeps its fastest run: a busy moment
    on the machine (another process, the other core) then slows one run of each rather than all
    of one precision's.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    slice_rows = min(shape.vocab, OUTPUT_SLICE)
    widths = {inp for inp, _ in shape.products()}
    steps: dict[tuple[str, int], Callable[[], float]] = {}
    for dtype in PRECISIONS:
        torch_dtype = getattr(torch, dtype)

        def made(*size: int, dtype=torch_dtype) -> torch.Tensor:
            return (torch.randn(*size, generator=generator) * 0.02).to(dtype)

        weights = [made(out, inp) for inp, out in shape.products()]
        output = made(slice_rows, shape.hidden)
        for n in rows:
            inputs = {width: made(n, width) for width in widths}
            layer = [
                (inputs[inp], w) for (inp, _), w in zip(shape.products(), weights, strict=True)
            ]
            steps[dtype, n] = functools.partial(
                _step_seconds, layer, inputs[shape.hidden], output,
                shape.layers, shape.vocab / slice_rows,
            )  # fmt: skip
    best = {key: float("inf") for key in steps}
    with torch.inference_mode():
        for run in range(2 + REPEATS):  # the first two pick kernels and fault pages in
            for key, step in steps.items():
                seconds = step()
                if run >= 2:
                    best[key] = min(best[key], seconds)
    timings: dict[str, dict[int, float]] = {dtype: {} for dtype in PRECISIONS}
    for (dtype, n), seconds in best.items():
        timings[dtype][n] = seconds
    return timings


def _step_seconds(layer: list, x: Any, output: Any, layers: int, output_scale: float) -> float:
    """One layer's products timed and counted `layers` times, plus the output slice scaled to
    the whole vocabulary."""
    import torch

    linear = torch.nn.functional.linear
    start = time.perf_counter()
    for inputs, weight in layer:
        linear(inputs, weight)
    middle = time.perf_counter()
    linear(x, output)
    end = time.perf_counter()
    return (middle - start) * layers + (end - middle) * output_scale


_lock = threading.Lock()
_measured: dict[StepShape, tuple[dict[str, dict[int, float]], float]] = {}


def _measured_timings(
    shape: StepShape, measure: Callable[[StepShape], Timings]
) -> tuple[Timings, float]:
    """The timings of `shape`, measured once per process (between engine steps, so that a
    running class does not slow the measurement)."""
    with _lock:
        if shape not in _measured:
            import torch

            from llmlab.compute import configure_threads, exclusive

            configure_threads()
            start = time.perf_counter()
            with exclusive():
                # On one core: the ratio of the two precisions is a property of each core's
                # instructions, and one thread never waits at a barrier for a core that another
                # process holds, which can make a two-thread timing ten times too slow.
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    timings = {d: dict(t) for d, t in measure(shape).items()}
                finally:
                    torch.set_num_threads(threads)
            _measured[shape] = (timings, time.perf_counter() - start)
        return _measured[shape]


def shape_of(model: Any) -> StepShape:
    """The step shape of a loaded model, a transformers model or config, or a model's name (its
    converted config when it has one here; else the reference shape)."""
    if model is None:
        return REFERENCE_SHAPE
    if isinstance(model, str):
        return _shape_of_name(model)
    inner = getattr(model, "model", model)  # a LoadedModel holds the transformers model
    config = getattr(inner, "config", None) or getattr(model, "config", None) or model
    try:
        return StepShape.from_config(config)
    except (TypeError, ZeroDivisionError, AttributeError):
        return REFERENCE_SHAPE


def _shape_of_name(name: str) -> StepShape:
    try:
        from llmlab import models

        config_file = models.converted_dir(name) / "config.json"
        if config_file.is_file():
            return StepShape.from_config(json.loads(config_file.read_text()))
    except (ValueError, OSError, TypeError, ZeroDivisionError):
        pass
    return REFERENCE_SHAPE


def default_precision(
    model: Any = None,
    environ: Mapping[str, str] | None = None,
    measure: Callable[[StepShape], Timings] | None = None,
) -> PrecisionChoice:
    """The precision to run `model` in on this machine, with the figures behind the choice.

    `model` is a loaded model, a name, or None (the reference shape). `LLMLAB_PRECISION` set to
    a precision decides without measuring; `measure` replaces the timing (for tests).
    """
    cpu = cpu_facts()
    guess = first_guess(cpu)
    forced = precision_from_env(environ)
    if forced != "auto":
        return PrecisionChoice(forced, ENV, guess, cpu)
    shape = shape_of(model)
    if measure is not None:
        start = time.perf_counter()
        timings: Timings = measure(shape)
        cost = time.perf_counter() - start
    else:
        timings, cost = _measured_timings(shape, measure_step)
    return PrecisionChoice(choose(timings), "measured", guess, cpu, timings, cost)
