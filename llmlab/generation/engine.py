"""One engine per loaded model: every session's requests stepped together as one batch.

A class that presses Generate at once used to queue up behind itself: each session ran its own
loop, one forward pass per token, and 16 such loops on two cores took 27 times as long as one.
A forward pass over 16 rows costs little more than over one (the weights are read once either
way), so the engine runs every active request of a model in the same forward pass. This is
*continuous batching*:

* a new request's prompt is run once (its "prefill") and it joins the batch at the next step;
  a long prompt is read `CHUNK_TOKENS` at a time between the batch's steps (chunked prefill),
  so one student's pasted essay never holds the whole class's text still;
* rows of very different lengths write in separate lanes (`LANE_TOKENS`), so short rows never
  pay for a long one's cache;
* a request that finishes, is stopped or is left leaves at once, and its row is freed;
* past `LLMLAB_MAX_BATCH` rows, requests wait first in, first out, and each knows its place.

The work is split three ways, as in vLLM: a request is plain data with its own stepper (its
filters, its seeded generator, its records; `llmlab.generation.steppers`); the scheduler below
only decides who joins and who leaves; `llmlab.generation.batch.Batch` only runs the model.
Every request gets the numbers it would get alone (up to float rounding in larger matrix
products), so results stay token-exact against `model.generate`.

One scheduler thread per engine does all the model work. It starts when a request arrives and
ends when the engine has been idle for `IDLE_SECONDS`; an engine holds no reference to its model,
so a model dropped from the cache is freed once its last request is done.

    >>> engine = engine_for(loaded)                              # doctest: +SKIP
    >>> request = engine.submit(TokenStepper(...))               # doctest: +SKIP
    >>> request.take()                                           # doctest: +SKIP
    ('step', StepRecord(step=0, ...))
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import contextvars
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from llmlab.compute import COMPUTE_LOCK, configure_threads, usable_cores
from llmlab.generation.batch import Batch
from llmlab.generation.compiled import compiled_for
from llmlab.generation.filters import sorting_threads
from llmlab.generation.steppers import advance_together, steps_alone

log = logging.getLogger("llmlab.engine")

DEFAULT_MAX_BATCH = 32
# The most tokens one engine keeps in its cache at once, counting each request as its rows times
# (prompt + new tokens): the memory a class can make it take. 65,536 tokens of SmolLM2's cache
# are 3.0 GB in float32 (46 KB a token; bfloat16 half that; Gemma 3 needs far less, since most
# of its layers keep only the last 511 positions). A class of 32 with short prompts uses under
# 20,000; 32 pasted essays of 5,000 tokens would need 160,000, so some of them wait their turn.
DEFAULT_MAX_TOKENS = 65_536
IDLE_SECONDS = 5.0
# The fewest rows of one group the cores choose for as one share (see `_shares`).
SPLIT_ROWS = 2
# Prompts are read between two steps of the batch, at most this many tokens (rows x the widest
# prompt) in one pass: whole short prompts together, or the next part of a long one. One part
# of 256 tokens costs about one step of a full batch (SmolLM2 in bfloat16 on 2 cores: 119 ms;
# 512 tokens: 199 ms), so while a long prompt is read the others' text still comes at about
# half its speed.
PREFILL_TOKENS = 512
CHUNK_TOKENS = 256
# When nothing runs, the first prompt to arrive is not read at once: the engine waits until no
# other prompt has come for GATHER_QUIET seconds (GATHER_MOST at most), so a class that presses
# Generate together is read in one pass. Reading one Gemma 3 prompt alone takes about 100 ms,
# and students whose prompts came a few milliseconds later waited for it.
GATHER_QUIET = 0.004
GATHER_MOST = 0.03
# Rows of very different lengths do not share a forward pass. A batch is a rectangle as wide as
# its longest row, so one pasted 5,000-token prompt would make every short row attend over, and
# copy, 5,000 columns of cache at every step: for 16 students, a step went from 83 ms to 912 ms
# (`bench/long_prompt.py`). Prompts up to LANE_TOKENS share the first *lane* (one `Batch`);
# longer ones share a lane with those of about their length (a power of two), and every lane
# takes its own forward pass at each step.
LANE_TOKENS = 512


def lane_of(tokens: int) -> int:
    """The lane of a prompt of `tokens` tokens: 0 up to LANE_TOKENS, then one per power of two.

    >>> [lane_of(n) for n in (1, 512, 513, 1024, 1025, 5000)]
    [0, 0, 10, 10, 11, 13]
    """
    return 0 if tokens <= LANE_TOKENS else (tokens - 1).bit_length()


def _whole_number(environ: dict[str, str] | None, name: str, default: int, what: str) -> int:
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{name}={text!r} is not allowed: use a whole number of at least 1 ({what})."
        )
    return value


def max_batch_from_env(environ: dict[str, str] | None = None) -> int:
    """`LLMLAB_MAX_BATCH`: how many rows one engine steps at once (unset: the default).

    >>> max_batch_from_env({"LLMLAB_MAX_BATCH": "8"})
    8
    >>> max_batch_from_env({})
    32
    """
    return _whole_number(
        environ, "LLMLAB_MAX_BATCH", DEFAULT_MAX_BATCH, "how many rows the model runs at once"
    )


def max_tokens_from_env(environ: dict[str, str] | None = None) -> int:
    """`LLMLAB_MAX_BATCH_TOKENS`: how many tokens one engine's requests may hold in its cache
    (rows x (prompt + new tokens), summed; unset: the default).

    >>> max_tokens_from_env({"LLMLAB_MAX_BATCH_TOKENS": "20000"}), max_tokens_from_env({})
    (20000, 65536)
    """
    return _whole_number(
        environ, "LLMLAB_MAX_BATCH_TOKENS", DEFAULT_MAX_TOKENS,
        "how many tokens the model's running requests may hold at once",
    )  # fmt: skip


# --- who owns a request -----------------------------------------------------------------------

_owner: contextvars.ContextVar[tuple[Hashable, int] | None] = contextvars.ContextVar(
    "llmlab_request_owner", default=None
)
_scope_counter = itertools.count(1)


@contextlib.contextmanager
def owned_by(owner: Hashable) -> Iterator[None]:
    """Requests made inside this block belong to `owner` (say, a session's page).

    One owner has one active run at a time: requests made in a new `owned_by` block of the same
    owner cancel those of its earlier blocks. Requests of the same block (Decoding's "Compare
    strategies") run side by side.
    """
    token = _owner.set((owner, next(_scope_counter)))
    try:
        yield
    finally:
        _owner.reset(token)


# --- a request --------------------------------------------------------------------------------


@dataclass(eq=False)
class Request:
    """One generation as the engine sees it: a stepper, a cancel flag and a mailbox.

    The mailbox receives ``("step", Advance)`` for each step, then ``("done", None)`` in the same
    moment as the last step (so a reader who has the last step knows the run is over), or
    ``("error", exception)``.
    """

    stepper: Any  # TokenStepper or BeamStepper
    owner: tuple[Hashable, int] | None = None
    submitted: float = field(default_factory=time.perf_counter)
    state: str = "waiting"  # waiting -> reading (its prompt) -> running -> done
    cancelled: bool = False
    reading: Any = None  # a `Reading` while a long prompt is read in parts
    _mailbox: deque = field(default_factory=deque)
    _ready: threading.Condition = field(default_factory=threading.Condition)

    @property
    def rows(self) -> int:
        return self.stepper.rows

    @property
    def prompt_tokens(self) -> int:
        return max(len(prompt) for prompt in self.stepper.prompts)

    @property
    def tokens(self) -> int:
        """The most cache it can take: rows x (prompt + new tokens)."""
        stepper = self.stepper
        longest = getattr(stepper, "max_length", None) or self.prompt_tokens + stepper.budget
        return self.rows * longest

    def progress(self) -> tuple[int, int] | None:
        """While the prompt is being read: (tokens read, prompt tokens); else None."""
        if self.state != "reading":
            return None
        reading = self.reading
        return (reading.done if reading is not None else 0), self.prompt_tokens

    def cancel(self) -> None:
        """Leave at the engine's next step (or the queue at once); nothing more is posted."""
        self.cancelled = True

    def post(self, *items: tuple[str, Any]) -> None:
        with self._ready:
            self._mailbox.extend(items)
            self._ready.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: for as long as it takes) for the mailbox to hold
        something; True when it does."""
        with self._ready:
            return self._ready.wait_for(lambda: bool(self._mailbox), timeout)

    def take(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next item of the mailbox, waiting up to `timeout` seconds (None: nothing yet)."""
        with self._ready:
            if not self._mailbox:
                self._ready.wait_for(lambda: bool(self._mailbox), timeout)
            return self._mailbox.popleft() if self._mailbox else None

    def peek(self) -> tuple[str, Any] | None:
        with self._ready:
            return self._mailbox[0] if self._mailbox else None


# --- the engine -------------------------------------------------------------------------------


@dataclass(eq=False)
class Lane:
    """Rows of about the same length, stepped by one forward pass (see `LANE_TOKENS`)."""

    batch: Batch
    requests: list[Request] = field(default_factory=list)  # in row order
    logits: torch.Tensor | None = None  # the last pass's, one row per row

    @property
    def rows(self) -> int:
        return sum(request.rows for request in self.requests)


class Backend(Protocol):
    """What `llmlab.generation.decoding` needs from whatever runs the model.

    `Engine` below runs it in this process. A backend for an OpenAI-compatible server that
    returns log-probabilities (vLLM, llama.cpp's llama-server) would take the same requests
    and fill the same mailboxes with steps built from each token's ``top_logprobs``; see
    docs/scaling.md for what such a server can and cannot give the pages.
    """

    def submit(self, loaded: Any, stepper: Any) -> Request: ...

    def queue_position(self, request: Request) -> int | None: ...

    def snapshot(self) -> dict[str, int]: ...

    def close(self, timeout: float = 10.0) -> None: ...


@dataclass
class EngineStats:
    steps: int = 0  # forward passes over the batch (decode steps)
    prefills: int = 0  # forward passes over new prompts
    rows_stepped: int = 0  # rows summed over steps (rows_stepped / steps = the mean batch)
    peak_rows: int = 0
    requests: int = 0
    compiled_steps: int = 0  # steps of a lone row through the compiled step


class Engine:
    """Continuous batching for one loaded model; shared by every session of the server."""

    def __init__(
        self, model_name: str = "", max_rows: int | None = None, max_tokens: int | None = None
    ):
        configure_threads()
        self.model_name = model_name
        self.max_rows = max_rows if max_rows is not None else max_batch_from_env()
        self.max_tokens = max_tokens if max_tokens is not None else max_tokens_from_env()
        self._lock = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._reading: list[Request] = []  # admitted, their prompts not fully read yet
        self._running: list[Request] = []  # in row order
        self._thread: threading.Thread | None = None
        self._closing = False
        self._resting = False  # asked to end the thread as soon as nothing is left to do
        self.stats = EngineStats()
        _every_engine.add(self)  # closed at exit even when no model cache holds it

    # -- the callers' side

    def submit(self, loaded: Any, stepper: Any) -> Request:
        """Queue a request for `loaded` (the model this engine serves); it starts when rows free.

        The engine never calls a request's own stop test: its reader does, before handing out
        each step (`GenerationStream`), and cancels the request when it says stop.
        """
        request = Request(stepper, owner=_owner.get())
        with self._lock:
            if request.owner is not None:
                owner, scope = request.owner
                for other in [*self._waiting, *self._reading, *self._running]:
                    if other.owner and other.owner[0] == owner and other.owner[1] != scope:
                        other.cancel()  # the same session's page started a new run
            self._waiting.append(request)
            self.stats.requests += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, args=(loaded,), name=f"llmlab-engine-{self.model_name}",
                    daemon=True,
                )  # fmt: skip
                self._thread.start()
            self._lock.notify_all()
        return request

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every request and end the scheduler thread (at interpreter exit: a thread
        killed inside a forward pass would abort the process)."""
        with self._lock:
            self._closing = True
            for request in [*self._waiting, *self._reading, *self._running]:
                request.cancel()
                request.post(("done", None))
            self._lock.notify_all()
        self._join(timeout)

    def _join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the scheduler thread (unless called from it)."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_rested(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the scheduler thread to end, as it does once it has
        had nothing to do for `IDLE_SECONDS`; True when no thread is left.

        While the thread lives, so does its OpenMP team. With more OpenMP threads alive than
        cores, every team's idle threads go to sleep almost at once instead of waiting for the
        next parallel region, so any other thread's forward passes run slower: on 2 cores,
        SmolLM2 over 32 tokens took 73 ms a pass in another thread, 102 ms while an idle
        engine's thread still lived. A benchmark that times something else after the engine
        waits for this first.
        """
        self._join(timeout)
        with self._lock:
            return self._thread is None or not self._thread.is_alive()

    def queue_position(self, request: Request) -> int | None:
        """How many requests wait ahead of this one; None once it is taken in (its prompt is
        being read, or it runs, or it is done)."""
        with self._lock:
            ahead = 0
            for waiting in self._waiting:
                if waiting is request:
                    return ahead
                ahead += not waiting.cancelled
        return None

    def snapshot(self) -> dict[str, int]:
        """Rows and requests right now (for the Home page and benchmarks)."""
        with self._lock:
            return {
                "running": len(self._running),
                "reading": len(self._reading),
                "lanes": len({lane_of(r.prompt_tokens) for r in self._running}),
                "rows": sum(r.rows for r in [*self._reading, *self._running]),
                "waiting": len(self._waiting),
                "max_rows": self.max_rows,
                "tokens": sum(r.tokens for r in [*self._reading, *self._running]),
                "max_tokens": self.max_tokens,
            }

    # -- the scheduler: decides who joins and who leaves

    def _admit(self) -> list[Request]:
        """Take waiting requests, first in first out, while their rows fit (call with the lock).

        Rows are capped by LLMLAB_MAX_BATCH and cache by LLMLAB_MAX_BATCH_TOKENS. A request
        larger than either (a beam search wider than the batch) runs once nothing else does, so
        it is never starved.
        """
        admitted: list[Request] = []
        taken = [*self._reading, *self._running]
        used = sum(r.rows for r in taken)
        held = sum(r.tokens for r in taken)
        for request in [r for r in self._waiting if r.cancelled]:  # left the queue: gone at once
            self._waiting.remove(request)
            request.state = "done"
            request.post(("done", None))
        while self._waiting:
            head = self._waiting[0]
            too_many = used + head.rows > self.max_rows or held + head.tokens > self.max_tokens
            if too_many and (used or admitted):
                break
            self._waiting.popleft()
            head.state = "reading"
            admitted.append(head)
            used += head.rows
            held += head.tokens
        return admitted

    def _serve(self, loaded: Any) -> None:
        """The scheduler thread: admit, run, advance every request, drop the finished; repeat."""
        torch.set_grad_enabled(False)  # the mode is per thread
        cores = usable_cores()
        pad_id = _pad_id(loaded)
        solo = compiled_for(loaded.model)  # a lone row's compiled step, once it is ready
        lanes: dict[int, Lane] = {}

        def lane(key: int) -> Lane:
            if key not in lanes:
                lanes[key] = Lane(Batch(loaded.model, pad_id=pad_id, solo=solo))
            return lanes[key]

        # Between forward passes the requests choose their tokens on every core: the scheduler
        # thread takes one part and helpers the others, one torch thread each.
        helpers = (
            concurrent.futures.ThreadPoolExecutor(
                cores - 1,
                thread_name_prefix=f"llmlab-choose-{self.model_name}",
                initializer=_choosing_thread,
            )  # fmt: skip
            if cores > 1
            else None
        )
        try:
            self._serve_loop(lane, lanes, cores, helpers)
        finally:
            for each in lanes.values():
                each.batch.reset()  # a row still in a compiled step's slot gives it back
            if helpers is not None:
                helpers.shutdown(wait=True)

    def _serve_loop(
        self,
        lane: Any,
        lanes: dict[int, Lane],
        cores: int,
        helpers: concurrent.futures.Executor | None,
    ) -> None:
        """`lane(key)` is the lane of that key (made when first asked for); `lanes` all of them.

        `self._running` lists the running requests lane by lane, so the lanes' logits put side
        by side have one row per running row, in order.

        Short prompts that arrived while others were being read are read too before anyone
        steps, when they have at least as many rows as the batch already holds (once between
        two steps): a class that presses Generate within a moment then starts together,
        instead of the first few stepping alone while the rest wait. The rows already writing
        wait for that one reading pass at most, and only when more students gain by it than
        wait for it; requests that come one at a time join at the next step as before.
        """
        read_again = False  # whether a second reading pass came since the last step
        while True:
            with self._lock:
                self._reading.extend(self._admit())
                if self._closing:
                    self._thread = None
                    return
                if not self._running and not self._reading:
                    if not self._resting:
                        self._lock.wait(IDLE_SECONDS)
                    if not self._waiting or self._closing:
                        self._thread = None  # the next submit starts a new thread
                        self._resting = False
                        return
                    continue
                if not self._running and all(r.reading is None for r in self._reading):
                    self._gather()
            try:
                joined, new_logits, key = self._read_prompts(lane, cores)
                if joined:
                    target = lanes[key]
                    target.logits = (
                        new_logits
                        if target.logits is None
                        else torch.cat([target.logits, new_logits])
                    )
                    target.requests.extend(joined)  # their rows went last, as merged
                    with self._lock:
                        for request in joined:
                            request.state = "running"
                        self._running = [r for k in sorted(lanes) for r in lanes[k].requests]
                    rows = sum(r.rows for r in self._running)
                    if key == 0 and not read_again and self._short_rows_waiting() >= rows:
                        read_again = True
                        continue
                read_again = False
                active = [lanes[k] for k in sorted(lanes) if lanes[k].requests]
                if not active:
                    continue  # a long prompt is still being read, and no one else runs
                logits = (
                    active[0].logits
                    if len(active) == 1
                    else torch.cat([each.logits for each in active])
                )
                # One torch thread per share (see `configure_threads`). The count is the
                # process's, so this holds the lock: no page's own pass runs on one thread.
                with COMPUTE_LOCK:
                    torch.set_num_threads(1)
                    try:
                        tokens, order = self._advance_all(logits, helpers)
                    finally:
                        torch.set_num_threads(cores)
                self._step_lanes(active, tokens, order, cores)
            except Exception as error:  # noqa: BLE001 - the model failed: tell every request
                log.exception("engine step failed for %s", self.model_name)
                with self._lock:
                    failed, self._running = [*self._running, *self._reading], []
                    self._reading = []
                for request in failed:
                    request.state = "done"
                    request.reading = None
                    request.post(("error", error))
                for each in lanes.values():
                    each.batch.reset()
                    each.requests, each.logits = [], None

    def rest(self, timeout: float = 5.0) -> bool:
        """End the scheduler thread as soon as it has nothing to do, instead of after
        `IDLE_SECONDS`; True when no thread is left within `timeout`. The thread holds its
        model, so a model the cache let go of is freed at once (the next request starts a new
        thread).

        A request's reader hears "done" a moment before the scheduler takes the request off
        its rows, so a rest asked for right after a generation returned still finds it
        running: the thread ends when that step is over, and this waits for it. With requests
        still to serve, the thread goes on with them and ends after them; this returns False
        at once.
        """
        with self._lock:
            if self._thread is None:
                return True
            self._resting = True
            self._lock.notify_all()  # an idle wait ends, finds nothing waiting, and returns
            taken = [*self._reading, *self._running]
            if self._waiting or any(request.state != "done" for request in taken):
                return False
        return self.wait_rested(timeout)

    def _gather(self) -> None:
        """With the lock held and nothing running: wait while prompts keep arriving (see
        `GATHER_QUIET`), admitting them, until none has come for a moment or the time is up."""
        deadline = time.monotonic() + GATHER_MOST
        while not self._closing:
            arrived = self.stats.requests
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._lock.wait(min(GATHER_QUIET, left))
            self._reading.extend(self._admit())
            if self.stats.requests == arrived:  # none came: read what is here
                return

    def _step_lanes(
        self, active: list[Lane], tokens: list[int], order: list[int], cores: int
    ) -> None:
        """Give each lane its rows of the next step (`tokens` and `order` run over every lane's
        rows in turn, each row staying within its lane) and run its forward pass."""
        staying = set(self._running)
        start = done = 0
        for each in active:
            end = start + each.rows
            mine = done
            while done < len(order) and order[done] < end:
                done += 1
            each.batch.select([row - start for row in order[mine:done]])
            each.requests = [r for r in each.requests if r in staying]
            each.logits = None
            if done > mine:
                before = each.batch.compiled_steps
                with COMPUTE_LOCK:
                    torch.set_num_threads(cores)
                    each.logits = each.batch.step(tokens[mine:done])
                self.stats.compiled_steps += each.batch.compiled_steps - before
                self.stats.steps += 1
                self.stats.rows_stepped += done - mine
            start = end
        self.stats.peak_rows = max(self.stats.peak_rows, len(tokens))

    def _short_rows_waiting(self) -> int:
        """The rows of the whole short prompts waiting to be read now (admitting what fits)."""
        with self._lock:
            self._reading.extend(self._admit())
            return sum(r.rows for r in self._reading if not r.cancelled and _short(r))

    def _read_prompts(
        self, lane: Any, cores: int
    ) -> tuple[list[Request], torch.Tensor | None, int]:
        """One reading pass between two steps: the requests whose prompts are now fully read
        (their rows were added last to their lane's batch, in this order), their logits and the
        lane's key.

        Whole short prompts go first, as many as fit in `PREFILL_TOKENS`, so a student with a
        short prompt never waits behind a long one; otherwise the first long prompt reads its
        next `CHUNK_TOKENS`.
        """
        with self._lock:
            for request in [r for r in self._reading if r.cancelled]:
                self._reading.remove(request)
                request.state = "done"
                request.reading = None
                request.post(("done", None))
            short = [r for r in self._reading if _short(r)]
            group: list[Request] = []
            rows = width = 0
            for request in short:
                wider = max(width, request.prompt_tokens)
                if group and (rows + request.rows) * wider > PREFILL_TOKENS:
                    break
                group.append(request)
                rows, width = rows + request.rows, wider
            # No short prompt left: the first long one (the one already begun, if any).
            long = self._reading[0] if not group and self._reading else None
        if not group and long is None:
            return [], None, 0
        key = 0 if group else lane_of(long.prompt_tokens)  # short prompts: lane 0
        reading = group or [long]
        try:
            with COMPUTE_LOCK:
                torch.set_num_threads(cores)
                if group:
                    logits = lane(0).batch.prefill([p for r in group for p in r.stepper.prompts])
                else:
                    assert long is not None
                    if long.reading is None:
                        long.reading = lane(key).batch.reading(long.stepper.prompts)
                    # With no one else writing there is no one to keep waiting: bigger parts
                    # (fewer passes), still parts, so that a request arriving meanwhile is read
                    # soon.
                    part = CHUNK_TOKENS if self._running else 4 * CHUNK_TOKENS
                    logits = long.reading.read(max(1, part // long.rows))
        except Exception as error:  # noqa: BLE001 - say, no memory for this prompt's cache
            # Prompts are read into a cache of their own, merged only once read: the batch is
            # untouched, so only these requests fail.
            log.exception("reading a prompt failed for %s", self.model_name)
            with self._lock:
                for request in reading:
                    self._reading.remove(request)
                    request.state = "done"
                    request.reading = None
                    request.post(("error", error))
            return [], None, key
        self.stats.prefills += 1
        if logits is None:
            return [], None, key  # more of the long prompt is left
        with self._lock:
            for request in reading:
                self._reading.remove(request)
                request.reading = None
        return reading, logits, key

    def _advance_all(
        self, logits: torch.Tensor, helpers: concurrent.futures.Executor | None = None
    ) -> tuple[list[int], list[int]]:
        """Every running request chooses its next token(s) from its rows of `logits`.

        Token requests with the same settings choose together (`advance_together`: one tensor
        operation per filter, softmax, argmax and top-k for all of them); beams, and steppers
        that step in their own way, choose alone. Returns the tokens to feed next and, for
        `Batch.select`, which current row each row of the next step continues (finished
        requests are left out, beams follow their parents).
        """
        running = list(self._running)
        starts, offset = [], 0
        for request in running:
            starts.append(offset)
            offset += request.rows
        outcomes: list[Any] = [None] * len(running)  # an Advance or the exception it raised
        parts: list[list[int]] = []  # requests that choose together (beams: alone)
        groups: dict[Any, list[int]] = {}
        for index, request in enumerate(running):
            if request.cancelled:
                continue
            if steps_alone(request.stepper):
                parts.append([index])
            else:
                groups.setdefault(request.stepper.group_key, []).append(index)
        parts.extend(groups.values())
        if helpers is not None:
            parts = _shares(parts, running)

        def choose(part: list[int]) -> list[Any]:
            if len(part) == 1 and steps_alone(running[part[0]].stepper):
                request, start = running[part[0]], starts[part[0]]
                rows = logits[start : start + request.rows]
                return [self._advance_one(request, rows, torch.softmax(rows, dim=-1), 0)]
            return self._advance_group(running, part, logits, starts)

        for part, results in zip(parts, self._run_parts(choose, parts, helpers), strict=True):
            for index, outcome in zip(part, results, strict=True):
                outcomes[index] = outcome
        tokens: list[int] = []
        order: list[int] = []
        staying: list[Request] = []
        for request, start, advance in zip(running, starts, outcomes, strict=True):
            if request.cancelled:
                request.state = "done"
                request.post(("done", None))
                continue
            if isinstance(advance, BaseException):
                log.error("a request failed at a step", exc_info=advance)
                request.state = "done"
                request.post(("error", advance))
                continue
            if advance.next_tokens is None:
                request.state = "done"
                request.post(("step", advance), ("done", None))
                continue
            request.post(("step", advance))
            staying.append(request)
            parents = advance.parents or list(range(request.rows))
            order.extend(start + parent for parent in parents)
            tokens.extend(advance.next_tokens)
        with self._lock:
            self._running = staying
        return tokens, order

    @staticmethod
    def _run_parts(
        choose: Any, parts: list[list[int]], helpers: concurrent.futures.Executor | None
    ) -> list[list[Any]]:
        """`choose` every part, this thread and the helpers each taking the next part left (the
        heaviest come first) until none is."""
        if helpers is None or len(parts) < 2:
            return [choose(part) for part in parts]
        left = deque(enumerate(parts))
        results: list[Any] = [None] * len(parts)

        def work() -> None:
            with sorting_threads(1):
                while True:
                    try:
                        index, part = left.popleft()  # atomic: each part is taken once
                    except IndexError:
                        return
                    results[index] = choose(part)

        try:
            futures = [helpers.submit(work) for _ in range(min(len(parts), usable_cores()) - 1)]
        except RuntimeError:  # the interpreter is shutting down: no new helper work
            futures = []
        work()
        for future in futures:
            future.result()
        return results

    @staticmethod
    def _advance_one(
        request: Request, logits: torch.Tensor, probs: torch.Tensor, start: int
    ) -> Any:
        rows = slice(start, start + request.rows)
        try:
            return request.stepper.advance(logits[rows], probs[rows])
        except Exception as error:  # noqa: BLE001 - one request's failure stays its own
            return error

    def _advance_group(
        self, running: list[Request], members: list[int], logits: torch.Tensor, starts: list[int]
    ) -> list[Any]:
        """One row each, the same settings: choose together. If the shared work fails, every
        generator is put back where it was and each request chooses alone, so a failure stays
        the failing request's own."""
        steppers = [running[i].stepper for i in members]
        first, last = starts[members[0]], starts[members[-1]]
        if [starts[i] for i in members] == list(range(first, last + 1)):
            rows: Any = slice(first, last + 1)  # side by side: a view, no copy
        else:
            rows = torch.tensor([starts[i] for i in members])
        mine = logits[rows]
        probs = torch.softmax(mine, dim=-1)  # one call for the group's rows, each row alone
        if len(members) == 1:
            return [self._advance_one(running[members[0]], mine, probs, 0)]
        saved = [s.generator.get_state() if s.generator is not None else None for s in steppers]
        try:
            return advance_together(steppers, mine, probs)
        except Exception:  # noqa: BLE001 - retried one by one below
            for stepper, state in zip(steppers, saved, strict=True):
                if state is not None:
                    stepper.generator.set_state(state)
            return [self._advance_one(running[i], mine, probs, n) for n, i in enumerate(members)]


def _short(request: Request) -> bool:
    """A prompt read whole in one pass beside others (not begun in parts, within
    `PREFILL_TOKENS` over its rows)."""
    return request.reading is None and request.rows * request.prompt_tokens <= PREFILL_TOKENS


def _shares(parts: list[list[int]], running: list[Request]) -> list[list[int]]:
    """`parts` cut into shares for the cores to choose side by side, the heaviest first.

    A group of same-settings rows is cut into pieces of about a quarter of the batch per core,
    since its rows are chosen independently (cutting changes no number). Filtered or sampled
    rows cost about three times a plain greedy row (a sort or a top-k over the vocabulary, a
    second softmax, a draw), beams twice.
    """
    total = sum(request.rows for request in running)
    piece = max(SPLIT_ROWS, -(-total // (2 * usable_cores())))
    shares: list[list[int]] = []
    for part in parts:
        shares.extend(part[i : i + piece] for i in range(0, len(part), piece))

    def weight(share: list[int]) -> int:
        stepper = running[share[0]].stepper
        if steps_alone(stepper):
            return 2 * stepper.rows
        heavy = getattr(stepper, "generator", None) is not None or bool(
            getattr(stepper, "shared_chain", None)
        )
        return len(share) * (3 if heavy else 1)

    return sorted(shares, key=weight, reverse=True)


def _choosing_thread() -> None:
    """A helper thread runs without autograd (the mode is per thread; the thread count is the
    process's, set by the scheduler while it chooses)."""
    torch.set_grad_enabled(False)


@torch.no_grad()
def run_alone(loaded: Any, stepper: Any) -> list[Any]:
    """Run one request by itself in the calling thread, with no engine: every `Advance`.

    The reference the engine is checked against ("the same as the request alone"), and what
    each session did before there was an engine (the benchmarks compare the two).
    """
    batch = Batch(loaded.model, pad_id=_pad_id(loaded))
    logits = batch.prefill(stepper.prompts)
    advances = []
    while True:
        advance = stepper.advance(logits)
        advances.append(advance)
        if advance.next_tokens is None:
            return advances
        batch.select(advance.parents or list(range(stepper.rows)))
        logits = batch.step(advance.next_tokens)


def _pad_id(loaded: Any) -> int:
    pad = getattr(loaded.tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


# --- one engine per loaded model ---------------------------------------------------------------

_engines: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()
# Every engine made in this process, the cache's and those built directly (a running scheduler
# thread keeps its engine alive, so no running engine drops out of this set).
_every_engine: weakref.WeakSet[Engine] = weakref.WeakSet()


def engine_for(loaded: Any) -> Engine:
    """The engine of this loaded model (one per model object, so one per model and dtype)."""
    with _engines_lock:
        engine = _engines.get(loaded.model)
        if engine is None:
            engine = Engine(model_name=f"{loaded.name}-{loaded.facts.dtype}")
            _engines[loaded.model] = engine
            compiled_for(loaded.model)  # compiling starts now, in the background
        return engine


def rest_engine_of(model: Any) -> bool:
    """Rest the engine of `model` if it has one and it is idle (see `Engine.rest`)."""
    with _engines_lock:
        engine = _engines.get(model)
    return engine is None or engine.rest()


@atexit.register
def close_all() -> None:
    """At interpreter exit, end every scheduler thread: one still inside a forward pass when
    Python finalizes would abort the process."""
    for engine in list(_every_engine):
        engine.close()


def engines() -> list[Engine]:
    """The engines alive now (for the Home page)."""
    with _engines_lock:
        return list(_engines.values())


def load_rows() -> list[dict[str, Any]]:
    """What each loaded model's engine is doing right now, one row per model and precision
    (the Home page's table; a teacher sees how busy the server is).

    A model loaded again while an earlier copy still finishes a request (it left the model
    cache, or a test loaded its own) has two engines for a while: they count as one row.
    """
    totals: dict[str, dict[str, int]] = {}
    for engine in engines():
        now = engine.snapshot()
        total = totals.setdefault(engine.model_name, dict.fromkeys(now, 0))
        for key, value in now.items():
            total[key] = max(total[key], value) if key.startswith("max_") else total[key] + value
    return [
        {
            "model": name,
            "writing": now["running"],
            "reading a prompt": now["reading"],
            "waiting": now["waiting"],
            "rows in use": f"{now['rows']} of {now['max_rows']}",
            "cache held (tokens)": f"{now['tokens']:,} of {now['max_tokens']:,}",
        }
        for name, now in sorted(totals.items())
    ]
