"""A bounded, thread-safe cache of loaded models, shared by every session of one server.

A classroom of students talks to one Streamlit process. Each student's script runs in its own
thread, so the cache must:

* load a model **once** even when several sessions ask for it at the same moment (the others
  wait for the first load instead of starting their own);
* stay inside a memory budget: at most `max_models` entries and `max_bytes` of weights, dropping
  the least recently used entry first;
* never pull a model away from a session that is still generating with it. Eviction only removes
  the cache's own reference; a session that holds the model keeps it alive (Python frees the
  weights when the last reference goes), so generation in progress is never disturbed.

The limits come from environment variables, read by `limits_from_env`:
`LLMLAB_MAX_MODELS` (default 4) and `LLMLAB_MODEL_MEMORY_GB` (default 4). With the defaults, the
four offline variants (Gemma 3 fp32 ~1.1 GB + bf16 ~0.55 GB, SmolLM2 fp32 ~0.55 GB + bf16
~0.27 GB, about 2.5 GB together) all stay resident.

Those two count entries and weights. The real bound is the process's memory: given a
`llmlab.memory.MemoryBudget` and a `needs(key)` estimate, a load first checks that what it needs
fits between the RSS now and the limit; if not, the same model in another precision leaves first
(`group_of`), then the least recently used models, until it fits. A model another session still
generates with is freed only when it is done (`still_in_use`), so the load waits for it; with
nothing left to wait for, the load is refused with `MemoryBudgetError` (a ValueError saying how
much the model needs and how much the server has).
A model that left the cache while a session still used it is taken back, not loaded twice.

>>> cache = ModelCache(loader=lambda key: key.upper(), max_models=2, size_of=lambda v: 0)
>>> cache.get("a"), cache.get("b"), cache.get("c")
('A', 'B', 'C')
>>> cache.keys()  # "a" was least recently used, so it went first
['b', 'c']
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from llmlab.memory import MemoryBudget

DEFAULT_MAX_MODELS = 4
DEFAULT_MEMORY_GB = 4.0
GB = 1024**3


@dataclass(frozen=True)
class CacheLimits:
    """How much the cache may hold: a count of entries and a byte budget."""

    max_models: int = DEFAULT_MAX_MODELS
    max_bytes: int = int(DEFAULT_MEMORY_GB * GB)


def limits_from_env(environ: dict[str, str] | None = None) -> CacheLimits:
    """Read `LLMLAB_MAX_MODELS` and `LLMLAB_MODEL_MEMORY_GB`; unset or empty means the default.

    >>> limits_from_env({"LLMLAB_MAX_MODELS": "2", "LLMLAB_MODEL_MEMORY_GB": "1.5"}).max_models
    2
    """
    env = os.environ if environ is None else environ
    count_text = env.get("LLMLAB_MAX_MODELS", "").strip()
    memory_text = env.get("LLMLAB_MODEL_MEMORY_GB", "").strip()
    max_models = DEFAULT_MAX_MODELS
    if count_text:
        try:
            max_models = int(count_text)
        except ValueError:
            max_models = 0
        if max_models < 1:
            raise ValueError(
                f"LLMLAB_MAX_MODELS={count_text!r} is not allowed: use a whole number of at "
                "least 1 (how many models stay loaded at once)."
            )
    memory_gb = DEFAULT_MEMORY_GB
    if memory_text:
        try:
            memory_gb = float(memory_text)
        except ValueError:
            memory_gb = float("nan")
        if not memory_gb > 0 or memory_gb == float("inf"):  # also rejects NaN
            raise ValueError(
                f"LLMLAB_MODEL_MEMORY_GB={memory_text!r} is not allowed: use a positive number "
                "of gigabytes (e.g. 4 or 2.5) for the weights kept in memory."
            )
    return CacheLimits(max_models=max_models, max_bytes=int(memory_gb * GB))


def model_nbytes(loaded: Any) -> int:
    """Bytes held by a loaded model's weights and buffers (tied weights counted once).

    Accepts a `LoadedModel` (uses `.model`) or a bare torch module.
    """
    module = getattr(loaded, "model", loaded)
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        # Tied embeddings share storage; count each storage once.
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        total += tensor.numel() * tensor.element_size()
    return total


@dataclass
class _Entry:
    value: Any
    nbytes: int


class ModelCache:
    """Least-recently-used cache with a count cap and a byte budget, safe across threads.

    `loader(key)` builds a value on a miss; `size_of(value)` says how many bytes it holds. The
    newest entry is always kept, even if it alone is over the byte budget (a model that is
    asked for must be served).

    >>> cache = ModelCache(loader=len, max_models=3, max_bytes=10, size_of=lambda v: v)
    >>> cache.get("abcdef"), cache.get("abcdefg")  # 6 + 7 bytes > 10: the older one goes
    (6, 7)
    >>> cache.keys()
    ['abcdefg']
    """

    def __init__(
        self,
        loader: Callable[[Hashable], Any],
        max_models: int = DEFAULT_MAX_MODELS,
        max_bytes: int = int(DEFAULT_MEMORY_GB * GB),
        size_of: Callable[[Any], int] = model_nbytes,
        budget: MemoryBudget | None = None,
        needs: Callable[[Hashable], int] | None = None,
        group_of: Callable[[Hashable], Hashable] | None = None,
        describe: Callable[[Hashable], str] = str,
        on_evict: Callable[[Any], None] | None = None,
    ) -> None:
        if not isinstance(max_models, int) or isinstance(max_models, bool) or max_models < 1:
            raise ValueError(f"max_models={max_models!r} is not allowed: use an integer >= 1.")
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise ValueError(f"max_bytes={max_bytes!r} is not allowed: use an integer >= 1.")
        self.loader = loader
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.budget = budget
        self.needs = needs or (lambda key: 0)
        self.group_of = group_of
        self.describe = describe
        self.on_evict = on_evict  # called with a value the budget made leave, outside the lock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # oldest first
        self._loading: dict[Hashable, Future] = {}
        # Entries that left while someone may still hold them: taken back if asked for again.
        self._gone: dict[Hashable, tuple[weakref.ref, int]] = {}
        if budget is not None:
            budget.add_reclaimer(self.evict_oldest)
            budget.add_holder(self.still_in_use)
        self.loads = 0  # how many times the loader ran (for tests and the Home page)
        self.evictions = 0

    @classmethod
    def from_env(cls, loader: Callable[[Hashable], Any], **kwargs: Any) -> ModelCache:
        limits = limits_from_env()
        return cls(loader, max_models=limits.max_models, max_bytes=limits.max_bytes, **kwargs)

    def get(self, key: Hashable) -> Any:
        """The value for `key`, loading it once if needed (concurrent callers share the load)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry.value
            alive = self._take_back(key)
            if alive is not None:
                return alive
            future = self._loading.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._loading[key] = future
                # Make room before loading so the peak stays inside the count cap.
                self._evict(room_for=len(self._loading))
        assert future is not None
        if not owner:
            return future.result()  # re-raises the loader's error for every waiter
        try:
            value = self._load_within_budget(key)
            nbytes = int(self.size_of(value))
        except BaseException as error:
            with self._lock:
                del self._loading[key]  # a failure is not cached: the next call retries
            future.set_exception(error)
            raise
        with self._lock:
            del self._loading[key]
            self.loads += 1
            self._entries[key] = _Entry(value, nbytes)
            self._evict(room_for=0)
        future.set_result(value)
        return value

    def _load_within_budget(self, key: Hashable) -> Any:
        if self.budget is None:
            return self.loader(key)
        needed = int(self.needs(key))
        if self.group_of is not None and self.budget.free() < needed:
            # One precision of a model at a time when memory is short: its other copy goes first.
            group = self.group_of(key)
            with self._lock:
                same = [k for k in self._entries if k != key and self.group_of(k) == group]
                values = [self._drop(other) for other in same]
            while values:  # and no reference left here: the load below needs their memory
                self._evicted(values.pop())
            if same:
                self.budget.release()
        with self.budget.reserve(needed, self.describe(key)):
            return self.loader(key)

    def _drop(self, key: Hashable) -> Any:
        """Remove `key` from the cache (lock held), remembering it while someone still holds it;
        returns its value."""
        entry = self._entries.pop(key)
        self.evictions += 1
        with contextlib.suppress(TypeError):  # a value without weak references (a str, say)
            self._gone[key] = (weakref.ref(entry.value), entry.nbytes)
        return entry.value

    def _evicted(self, value: Any) -> None:
        if self.on_evict is not None:
            self.on_evict(value)

    def _take_back(self, key: Hashable) -> Any:
        """The value of a `key` that left the cache but is still alive (lock held), or None."""
        ref, nbytes = self._gone.pop(key, (None, 0))
        for other in [k for k, (r, _) in self._gone.items() if r() is None]:
            del self._gone[other]
        value = ref() if ref is not None else None
        if value is not None:
            self._entries[key] = _Entry(value, nbytes)
            self._evict(room_for=0)
        return value

    def still_in_use(self) -> list[str]:
        """The models that left the cache but that someone still holds (their memory is freed
        when the last holder lets go), described."""
        with self._lock:
            return [self.describe(key) for key, (ref, _) in self._gone.items() if ref() is not None]

    def evict_oldest(self) -> bool:
        """Drop the least recently used entry; False when the cache is empty (the memory
        budget's way of making room)."""
        with self._lock:
            if not self._entries:
                return False
            value = self._drop(next(iter(self._entries)))
        self._evicted(value)
        return True

    def _evict(self, room_for: int) -> None:
        """Drop least-recently-used entries until the limits hold (call with the lock held).

        `room_for` is how many loads are in flight and will need a slot: before a load only the
        count is checked (the new model's size is not known yet); after it, bytes too. The
        newest entry always stays, even when it alone is over the byte budget.

        Dropping only removes the cache's reference: a session still generating with the model
        keeps its own reference, so the weights live until that session lets go.
        """
        while self._entries:
            over_count = len(self._entries) + room_for > self.max_models
            over_bytes = room_for == 0 and self.nbytes() > self.max_bytes
            if not (over_count or over_bytes) or (room_for == 0 and len(self._entries) == 1):
                return
            self._drop(next(iter(self._entries)))

    def nbytes(self) -> int:
        """Bytes held by the cached values (as measured by `size_of` when they were loaded)."""
        return sum(entry.nbytes for entry in self._entries.values())

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.keys())  # a snapshot: safe while other threads load and evict

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def discard(self, key: Hashable) -> bool:
        """Drop `key` if cached; True when it was there."""
        with self._lock:
            self._gone.pop(key, None)
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._gone.clear()
