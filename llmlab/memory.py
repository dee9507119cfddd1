"""The server's memory budget: the most its resident memory (RSS) may reach, measured.

One server process serves every visitor, and where it runs in a container (Streamlit Community
Cloud gives an app 2.7 GB) going over the container's limit ends the app for all of them. So the
lab keeps the process's RSS under a limit:

* `LLMLAB_MEMORY_LIMIT_GB` when it is set;
* else the container's limit: cgroup v2 `memory.max`, or cgroup v1 `memory.limit_in_bytes`
  ("max", or a value above the machine's memory, means there is none);
* else the machine's memory.

Before something large is loaded (a model, a training run), `MemoryBudget.reserve` checks that
the RSS now, plus what other loads in progress have reserved, plus what this one needs, stays
under the limit; when it does not, it asks the model cache to let go of models, least recently
used first, and gives their memory back to the system (`release_memory`), until it fits. A model
that left the cache while another visitor still generates with it is freed when that visitor is
done, so the load waits for that (up to `LLMLAB_MEMORY_WAIT_SECONDS`, 120 s by default), telling
the visitor why through `waiting_notices`; with nothing left that could free memory, or when the
wait is over, `MemoryBudgetError` says what was needed and what the server has.

>>> limit = memory_limit({"LLMLAB_MEMORY_LIMIT_GB": "2.7"})
>>> limit.source, round(limit.nbytes / GB, 1)
('LLMLAB_MEMORY_LIMIT_GB', 2.7)
>>> budget = MemoryBudget(limit=1000, rss=lambda: 600)
>>> with budget.reserve(300, "a model"):
...     budget.free()
100
>>> budget.reserve(500, "a second model").__enter__()
Traceback (most recent call last):
...
llmlab.memory.MemoryBudgetError: a second model needs about 0.00 GB of memory; this server may use 0.00 GB (LLMLAB_MEMORY_LIMIT_GB), and 0.00 GB of that is free with nothing left to unload. Try again when other visitors are done, or ask whoever runs the lab to raise LLMLAB_MEMORY_LIMIT_GB.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import inspect
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

LIMIT_VARIABLE = "LLMLAB_MEMORY_LIMIT_GB"
WAIT_VARIABLE = "LLMLAB_MEMORY_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 120.0
WAIT_POLL_SECONDS = 0.25  # how often a waiting load looks again
CGROUP_ROOT = Path("/sys/fs/cgroup")
GB = 1024**3
MB = 1024**2
log = logging.getLogger("llmlab.memory")


class MemoryBudgetError(ValueError):
    """Something does not fit in the server's memory; the message says how much it needs and
    how much the server has."""


@dataclass(frozen=True)
class MemoryLimit:
    """The most the server's RSS may reach, and where that figure comes from."""

    nbytes: int
    source: str  # LIMIT_VARIABLE, "container (cgroup v2)", "container (cgroup v1)" or "machine"

    def describe(self) -> str:
        """
        >>> MemoryLimit(int(2.7 * GB), "container (cgroup v2)").describe()
        '2.7 GB (the container limit, cgroup v2)'
        """
        where = {
            LIMIT_VARIABLE: LIMIT_VARIABLE,
            "container (cgroup v2)": "the container limit, cgroup v2",
            "container (cgroup v1)": "the container limit, cgroup v1",
            "machine": "the machine's memory",
        }.get(self.source, self.source)
        return f"{gigabytes(self.nbytes)} ({where})"


def gigabytes(nbytes: int | float) -> str:
    """
    >>> gigabytes(1.5 * GB), gigabytes(300 * MB)
    ('1.5 GB', '0.29 GB')
    """
    value = nbytes / GB
    return f"{value:.1f} GB" if value >= 1 else f"{value:.2f} GB"


def machine_memory() -> int:
    """The machine's physical memory, in bytes."""
    import psutil

    return int(psutil.virtual_memory().total)


def container_limit(cgroup_root: Path = CGROUP_ROOT) -> tuple[int, str] | None:
    """The container's memory limit in bytes and which cgroup version set it, or None.

    cgroup v2 writes "max" for no limit; cgroup v1 writes a huge number (9223372036854771712).
    Unreadable or malformed files count as no limit.
    """
    for path, source in (
        (cgroup_root / "memory.max", "container (cgroup v2)"),
        (cgroup_root / "memory" / "memory.limit_in_bytes", "container (cgroup v1)"),
    ):
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        if value > 0:
            return value, source
    return None


def memory_limit(
    environ: Mapping[str, str] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    machine: int | None = None,
) -> MemoryLimit:
    """The server's memory limit: `LLMLAB_MEMORY_LIMIT_GB`, else the container's, else the
    machine's memory (a container limit above the machine's memory is no limit).

    Raises ValueError naming the variable, its value and what is allowed for a bad setting.
    """
    env = os.environ if environ is None else environ
    text = env.get(LIMIT_VARIABLE, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):  # also rejects NaN
            raise ValueError(
                f"{LIMIT_VARIABLE}={text!r} is not allowed: use a positive number of gigabytes "
                "(e.g. 2.7), the most memory this server may use."
            )
        return MemoryLimit(int(value * GB), LIMIT_VARIABLE)
    total = machine_memory() if machine is None else machine
    found = container_limit(cgroup_root)
    if found is not None and found[0] < total:
        return MemoryLimit(*found)
    return MemoryLimit(total, "machine")


def current_rss() -> int:
    """This process's resident memory now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """This process's highest resident memory so far, in bytes.

    Linux's `VmHWM` (/proc/self/status) belongs to this program alone; `getrusage`'s
    `ru_maxrss`, the fallback elsewhere, survives `exec`: a process started by a large one
    reports its parent's size until it outgrows it.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


_libc: list[ctypes.CDLL | None] = []


def release_memory() -> None:
    """Give freed memory back to the system.

    `gc.collect()` frees what only reference cycles still held. Freed memory then stays in the
    C allocator's heap, counted in RSS, until glibc's `malloc_trim(0)` returns it: measured on
    SmolLM2 in bfloat16, RSS fell from 577 MB to 474 MB (450 MB before the model was loaded).
    A float32 model read from the safetensors cache is memory-mapped, and freeing it unmaps it.
    """
    gc.collect()
    if not _libc:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and not hasattr(libc, "malloc_trim"):  # musl, macOS: none
                libc = None
        except OSError:
            libc = None
        _libc.append(libc)
    if _libc[0] is not None:
        _libc[0].malloc_trim(0)


def _held_weakly(function: Callable) -> Callable[[], Callable | None]:
    """A way back to `function` that does not keep its object alive when it is a bound method
    (None once that object is gone)."""
    if inspect.ismethod(function):
        return weakref.WeakMethod(function)
    return lambda: function


def wait_seconds_from_env(environ: Mapping[str, str] | None = None) -> float:
    """`LLMLAB_MEMORY_WAIT_SECONDS`: how long a load may wait for memory another visitor holds.

    >>> wait_seconds_from_env({"LLMLAB_MEMORY_WAIT_SECONDS": "30"})
    30.0
    >>> wait_seconds_from_env({})
    120.0
    """
    env = os.environ if environ is None else environ
    text = env.get(WAIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"{WAIT_VARIABLE}={text!r} is not allowed: use a number of seconds >= 0 (how long a "
            "load waits for memory that another visitor's model still holds)."
        )
    return seconds


# Where the visitor who waits for memory is told why: a page sets it around its load
# (`with waiting_notices(show): ...`); a notebook or a test may too.
_notice: ContextVar[Callable[[str], None] | None] = ContextVar("llmlab_memory_notice", default=None)


@contextlib.contextmanager
def waiting_notices(show: Callable[[str], None]) -> Iterator[None]:
    """Within the block, a load that has to wait for memory calls `show(message)` (once, and
    again when what it waits for changes)."""
    token = _notice.set(show)
    try:
        yield
    finally:
        _notice.reset(token)


class MemoryBudget:
    """The process's RSS kept under `limit` bytes, shared by every loader of the process.

    `rss()` measures the process now; `reclaimers` are asked, in turn, to let go of one thing
    each (True when they did) when a reservation does not fit; `release()` then gives the memory
    back to the system before RSS is measured again. `holders` name what was let go of but is
    still in use (a model another visitor generates with): a reservation that does not fit waits
    up to `wait_seconds` for them, or for other reservations, to end.
    """

    def __init__(
        self,
        limit: int,
        rss: Callable[[], int] = current_rss,
        release: Callable[[], None] = release_memory,
        source: str = LIMIT_VARIABLE,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit={limit!r} is not allowed: use a number of bytes >= 1.")
        if not math.isfinite(wait_seconds) or wait_seconds < 0:
            raise ValueError(f"wait_seconds={wait_seconds!r} is not allowed: use seconds >= 0.")
        self.wait_seconds = float(wait_seconds)
        self.limit = limit
        self.source = source
        self.rss = rss
        self.release = release
        self._lock = threading.RLock()
        self._reserved: dict[int, tuple[int, int | None]] = {}  # nbytes, RSS at the start
        self._keys = itertools.count()
        self._reclaimers: list[Callable[[], Callable[[], bool] | None]] = []
        self._holders: list[Callable[[], Callable[[], list[str]] | None]] = []
        self.refused = 0  # how many reservations did not fit
        self.waited = 0  # how many reservations waited for memory before they fit
        self.warning = ""  # a configuration problem to show, or ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs) -> MemoryBudget:
        limit = memory_limit(environ)
        kwargs.setdefault("wait_seconds", wait_seconds_from_env(environ))
        return cls(limit.nbytes, source=limit.source, **kwargs)

    def describe(self) -> str:
        return MemoryLimit(self.limit, self.source).describe()

    def add_reclaimer(self, reclaim: Callable[[], bool]) -> None:
        """`reclaim()` lets go of one thing, True when it did. A bound method is held weakly: a
        model cache that is itself dropped leaves the budget too."""
        with self._lock:
            self._reclaimers.append(_held_weakly(reclaim))

    def add_holder(self, holding: Callable[[], list[str]]) -> None:
        """`holding()` names what was let go of but is still in use, and will free its memory
        when its user is done (held weakly, as reclaimers are)."""
        with self._lock:
            self._holders.append(_held_weakly(holding))

    def holding(self) -> list[str]:
        """What is still in use after it was let go of (see `add_holder`)."""
        with self._lock:
            alive = [holding for ref in self._holders if (holding := ref()) is not None]
            return [name for holding in alive for name in holding()]

    def reserved(self, rss: int | None = None) -> int:
        """Bytes promised to work in progress and not yet in RSS. A lasting reservation (a
        training run) counts only what RSS has not grown by since it began."""
        with self._lock:
            now = self.rss() if rss is None else rss
            total = 0
            for nbytes, started in self._reserved.values():
                grown = 0 if started is None else max(0, now - started)
                total += max(0, nbytes - grown)
            return total

    def free(self) -> int:
        """What is left under the limit after RSS and the reservations (may be negative)."""
        with self._lock:
            rss = self.rss()
            return self.limit - rss - self.reserved(rss)

    def _reclaim_one(self) -> bool:
        self._reclaimers = [ref for ref in self._reclaimers if ref() is not None]
        for ref in list(self._reclaimers):
            reclaim = ref()
            if reclaim is not None and reclaim():
                self.release()
                return True
        return False

    def make_room(self, nbytes: int) -> bool:
        """Let go of what the reclaimers offer until `nbytes` fit; False when they cannot."""
        with self._lock:
            while self.free() < nbytes:
                if not self._reclaim_one():
                    return False
            return True

    @contextlib.contextmanager
    def reserve(self, nbytes: int, what: str, lasting: bool = False) -> Iterator[None]:
        """Hold `nbytes` for the block, after making room for them.

        A load holds its whole figure until it ends (its memory is then in RSS). A `lasting`
        block (a training run, whose memory rises and falls with every step) holds what RSS has
        not yet grown by since it began, so what it already uses is not counted twice.
        When they do not fit yet but could (a model let go of is still in use, or another
        reservation is under way), it waits for them, up to `wait_seconds`, and tells the
        visitor why (`waiting_notices`). Raises MemoryBudgetError, naming `what`, when they
        cannot fit.
        """
        key = self._wait_for_room(nbytes, what, lasting)
        try:
            yield
        finally:
            with self._lock:
                del self._reserved[key]

    def _wait_for_room(self, nbytes: int, what: str, lasting: bool) -> int:
        deadline = time.monotonic() + self.wait_seconds
        told, waited = "", False
        while True:
            with self._lock:
                if self.make_room(nbytes):
                    key = next(self._keys)
                    self._reserved[key] = (nbytes, self.rss() if lasting else None)
                    self.waited += waited
                    return key
                in_use = self.holding()
                others = self.reserved()
                if (not in_use and not others) or time.monotonic() >= deadline:
                    self.refused += 1
                    raise MemoryBudgetError(self.refusal(nbytes, what))
            message = self.waiting_message(nbytes, what, in_use)
            show = _notice.get()
            if show is not None and message != told:
                show(message)
                told = message
            waited = True
            time.sleep(WAIT_POLL_SECONDS)
            self.release()  # a model its last user let go of is freed by now: give it back

    def waiting_message(self, nbytes: int, what: str, in_use: list[str]) -> str:
        """Why a load waits, in a visitor's words."""
        if in_use:
            holders = ", ".join(dict.fromkeys(in_use))
            because = f"another visitor is still using {holders}, which has to leave memory first"
        else:
            because = "another model is being loaded or a training run is using the memory"
        return (
            f"Waiting for memory: {what} needs about {gigabytes(nbytes)} and {because} "
            f"(this server may use {self.describe()}). It starts by itself when there is room."
        )

    def refusal(self, nbytes: int, what: str) -> str:
        return (
            f"{what} needs about {gigabytes(nbytes)} of memory; this server may use "
            f"{MemoryLimit(self.limit, self.source).describe()}, and "
            f"{gigabytes(max(0, self.free()))} of "
            "that is free with nothing left to unload. Try again when other visitors are done, "
            f"or ask whoever runs the lab to raise {LIMIT_VARIABLE}."
        )


_shared: list[MemoryBudget] = []
_shared_lock = threading.Lock()


def shared_budget() -> MemoryBudget:
    """The process's one budget: the model cache and the trainings count toward it. A bad
    `LLMLAB_MEMORY_LIMIT_GB` is set aside (the container's or the machine's limit serves) and
    kept in `.warning` for the Home page."""
    with _shared_lock:
        if not _shared:
            try:
                budget = MemoryBudget.from_env()
            except ValueError as error:
                log.warning("%s Using the container's or the machine's limit.", error)
                budget = MemoryBudget.from_env({})
                budget.warning = f"{error} Using {budget.describe()} instead."
            _shared.append(budget)
        return _shared[0]


# --- the profile: what the lab does with the memory it has ----------------------------------

# Below this limit (Streamlit Community Cloud gives an app 2.7 GB) the lab runs its small profile.
SMALL_SERVER_BYTES = 3 * GB
SMALL_PRECISION = "bfloat16"  # half of float32's bytes for every weight
SMALL_MAX_MODELS = 2  # the base and the chat model that Chat vs Base runs side by side


@dataclass(frozen=True)
class Profile:
    """What the lab holds for the memory it may use.

    On a small server (under 3 GB) every page holds a model in one precision, bfloat16, so
    that a model is never there twice, and at most two models stay loaded: measured with
    `bench/memory.py`, one visitor through every page then peaks near 2 GB, where float32
    copies beside bfloat16 ones went over 2.7 GB. On a larger server each page chooses.

    >>> small = profile(MemoryLimit(int(2.7 * GB), LIMIT_VARIABLE))
    >>> small.small, small.precision, small.max_models
    (True, 'bfloat16', 2)
    >>> print(small.line())
    Memory: 2.7 GB for every visitor (LLMLAB_MEMORY_LIMIT_GB); the lab holds each model in bfloat16 on every page and keeps at most 2 models loaded at a time.
    >>> profile(MemoryLimit(24 * GB, "machine")).precision is None
    True
    """

    limit: MemoryLimit
    small: bool
    precision: str | None  # the one precision of every page, or None: each page chooses
    max_models: int | None  # models kept loaded at once, or None: LLMLAB_MAX_MODELS decides

    def line(self) -> str:
        """One line for the Home page."""
        head = f"Memory: {self.limit.describe().replace(' (', ' for every visitor (', 1)}"
        if self.small:
            return (
                f"{head}; the lab holds each model in {self.precision} on every page and keeps "
                f"at most {self.max_models} models loaded at a time."
            )
        return (
            f"{head}; each page holds its model in the precision it needs, and models leave "
            "memory, least recently used first, only when another needs the room."
        )


def profile(limit: MemoryLimit | None = None) -> Profile:
    """The profile for `limit` (by default this server's budget)."""
    if limit is None:
        budget = shared_budget()
        limit = MemoryLimit(budget.limit, budget.source)
    if limit.nbytes < SMALL_SERVER_BYTES:
        return Profile(limit, True, SMALL_PRECISION, SMALL_MAX_MODELS)
    return Profile(limit, False, None, None)
