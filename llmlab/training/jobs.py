"""A training run in a background thread, and the queue that shares the CPU on a class server.

Training takes the CPU, so by default one runs at a time (`LLMLAB_MAX_TRAININGS`); the others
wait in order, each knowing its place. A page starts a `TrainingJob` and reads its progress
while it runs; Stop, or a page that stops asking (`touch`) for `heartbeat_seconds`, ends the run
and frees its place. Each optimizer step takes the process-wide compute lock, so the generation
engine keeps serving the class between two steps, and the run uses half the cores.

>>> slots = TrainingSlots(limit=1)
>>> first, second = object(), object()
>>> slots.acquire(first, lambda: False), slots.position(second)
(True, None)
>>> slots.acquire(second, lambda: True)  # gives up at once: the only place is taken
False
>>> slots.release(first); slots.running
0
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from llmlab import memory
from llmlab.training.loop import PreparedText, Progress, TrainingResult, TrainSettings, train
from llmlab.training.presets import get_preset, parameter_count

log = logging.getLogger("llmlab.training")
DEFAULT_MAX_TRAININGS = 1
# A run's memory, fitted to two measured runs on Botchan (characters, 20 steps; the process's
# peak RSS above its RSS before training): "small" +316 MB, "large" +1,339 MB. Activations kept
# for the backward pass dominate: about 400 bytes per (window x position x width x layer),
# over a fixed ~110 MB (autograd, the optimizer's threads).
FIXED_BYTES = 112 * 1024**2
BYTES_PER_ACTIVATION = 400


def memory_needed(settings: TrainSettings, vocab_size: int) -> int:
    """About how much RSS a training run adds at its peak: weights, gradients and Adam's two
    moments (16 bytes per parameter), activations, and the logits with their gradient.

    >>> round(memory_needed(TrainSettings(preset="large"), 87) / 1024**2)
    1388
    """
    preset = get_preset(settings.preset)
    parameters = parameter_count(preset, vocab_size)
    positions = preset.batch * preset.context
    activations = BYTES_PER_ACTIVATION * positions * preset.width * preset.layers
    logits = 4 * 4 * positions * vocab_size
    return FIXED_BYTES + 16 * parameters + activations + logits


def max_trainings_from_env(environ: dict[str, str] | None = None) -> int:
    """`LLMLAB_MAX_TRAININGS`: how many trainings run at once (unset: 1).

    >>> max_trainings_from_env({"LLMLAB_MAX_TRAININGS": "2"}), max_trainings_from_env({})
    (2, 1)
    """
    text = (os.environ if environ is None else environ).get("LLMLAB_MAX_TRAININGS", "").strip()
    if not text:
        return DEFAULT_MAX_TRAININGS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"LLMLAB_MAX_TRAININGS={text!r} is not allowed: use a whole number of at least 1 "
            "(how many trainings run at once)."
        )
    return value


class TrainingSlots:
    """At most `limit` holders at once; the others wait first come, first served."""

    def __init__(self, limit: int = DEFAULT_MAX_TRAININGS):
        self.limit = limit
        self._changed = threading.Condition()
        self._holders: set[int] = set()
        self._waiting: list[int] = []

    @property
    def running(self) -> int:
        return len(self._holders)

    def acquire(self, holder: Any, give_up: Callable[[], bool]) -> bool:
        """Wait for a place; False (and out of the queue) as soon as `give_up()` says so."""
        key = id(holder)
        with self._changed:
            self._waiting.append(key)
            while not (len(self._holders) < self.limit and self._waiting[0] == key):
                if give_up():
                    self._waiting.remove(key)
                    self._changed.notify_all()
                    return False
                self._changed.wait(0.2)
            self._waiting.pop(0)
            self._holders.add(key)
            self._changed.notify_all()
            return True

    def release(self, holder: Any) -> None:
        with self._changed:
            self._holders.discard(id(holder))
            self._changed.notify_all()

    def position(self, holder: Any) -> int | None:
        """How many wait ahead of `holder`, or None when it is not waiting."""
        with self._changed:
            key = id(holder)
            return self._waiting.index(key) if key in self._waiting else None


_slots: TrainingSlots | None = None
_slots_lock = threading.Lock()


def shared_slots() -> TrainingSlots:
    """The process's places for training (a bad LLMLAB_MAX_TRAININGS falls back to 1)."""
    global _slots
    with _slots_lock:
        if _slots is None:
            try:
                _slots = TrainingSlots(max_trainings_from_env())
            except ValueError as error:
                log.warning("%s Using %d.", error, DEFAULT_MAX_TRAININGS)
                _slots = TrainingSlots(DEFAULT_MAX_TRAININGS)
        return _slots


class TrainingJob:
    """One training run in its own thread. `state`: queued, running, finished, stopped,
    diverged or failed; `progress` is updated as it trains; `result` is set at the end."""

    def __init__(
        self,
        prepared: PreparedText,
        settings: TrainSettings,
        slots: TrainingSlots | None = None,
        heartbeat_seconds: float | None = None,
        budget: memory.MemoryBudget | None = None,
    ):
        self.prepared = prepared
        self.settings = settings.check()
        self.slots = slots or shared_slots()
        self.budget = budget or memory.shared_budget()
        self.heartbeat_seconds = heartbeat_seconds
        self.progress = Progress()
        self.state = "queued"
        self.result: TrainingResult | None = None
        self.message = ""
        self._stop = threading.Event()
        self._seen = time.monotonic()
        self._left = False
        self._thread = threading.Thread(target=self._run, name="llmlab-training", daemon=True)

    def start(self) -> TrainingJob:
        _live_jobs.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def touch(self) -> None:
        """The page is still showing this run."""
        self._seen = time.monotonic()

    @property
    def done(self) -> bool:
        return self.state not in ("queued", "running")

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def queue_position(self) -> int | None:
        return self.slots.position(self) if self.state == "queued" else None

    def _should_stop(self) -> bool:
        if self._stop.is_set():
            return True
        if self.heartbeat_seconds and time.monotonic() - self._seen > self.heartbeat_seconds:
            self._left = True
            return True
        return False

    def _run(self) -> None:
        try:
            if not self.slots.acquire(self, self._should_stop):
                self.state, self.message = "stopped", "Stopped before it started."
                return
            try:
                needed = memory_needed(self.settings, self.prepared.tokenizer.vocab_size)
                # Counted against the server's memory for the whole run (models leave the
                # cache to make room); refused, with the figures, when it cannot fit.
                with self.budget.reserve(needed, "This training run", lasting=True):
                    self.state = "running"
                    self.result = train(
                        self.prepared.text,
                        self.settings,
                        should_stop=self._should_stop,
                        progress=self.progress,
                        prepared=self.prepared,
                    )
            except memory.MemoryBudgetError as error:
                self.state, self.message = "failed", f"Training did not start: {error}"
                return
            finally:
                self.slots.release(self)
            self.message = self.result.message
            if self._left and self.result.status == "stopped":
                self.message += " (the page was left)"
            self.state = self.result.status
        except Exception as error:  # noqa: BLE001 - shown on the page, never a traceback
            log.exception("training failed")
            self.state, self.message = (
                "failed",
                f"Training failed ({type(error).__name__}: {error}).",
            )


_live_jobs: weakref.WeakSet[TrainingJob] = weakref.WeakSet()


@atexit.register
def stop_all(timeout: float = 10.0) -> None:
    """At interpreter exit, stop every training and wait for its thread: a thread killed in the
    middle of a step (inside torch) would abort the whole process."""
    live = list(_live_jobs)
    for job in live:
        job.stop()
    for job in live:
        job.join(timeout)
