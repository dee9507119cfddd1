"""The memory budget: the limit from the environment and from (fake) cgroup files, reservations
that make room by unloading, and refusals that give the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmlab import memory
from llmlab.memory import GB, MB, MemoryBudget, MemoryBudgetError, container_limit, memory_limit

MACHINE = 24 * GB


def cgroup(tmp_path, v2: str | None = None, v1: str | None = None):
    if v2 is not None:
        (tmp_path / "memory.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "memory").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(v1 + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("value", "expected"), [("2.7", int(2.7 * GB)), (" 1 ", GB), ("0.5", GB // 2), ("64", 64 * GB)]
)
def test_the_variable_wins_over_the_container(tmp_path, value, expected):
    root = cgroup(tmp_path, v2=str(GB))
    limit = memory_limit({"LLMLAB_MEMORY_LIMIT_GB": value}, root, machine=MACHINE)
    assert (limit.nbytes, limit.source) == (expected, "LLMLAB_MEMORY_LIMIT_GB")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "two", "1e999", "2.7GB", "<b>"])
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(tmp_path, value):
    with pytest.raises(ValueError) as caught:
        memory_limit({"LLMLAB_MEMORY_LIMIT_GB": value}, tmp_path, machine=MACHINE)
    message = str(caught.value)
    assert "LLMLAB_MEMORY_LIMIT_GB" in message and repr(value) in message
    assert "positive number of gigabytes" in message


@pytest.mark.parametrize(
    ("v2", "v1", "expected", "source"),
    [
        (str(int(2.7 * GB)), None, int(2.7 * GB), "container (cgroup v2)"),
        (None, str(690 * MB), 690 * MB, "container (cgroup v1)"),
        ("max", None, MACHINE, "machine"),  # v2's "no limit"
        (None, "9223372036854771712", MACHINE, "machine"),  # v1's "no limit"
        (str(64 * GB), None, MACHINE, "machine"),  # above the machine: no limit either
        ("garbage", str(GB), GB, "container (cgroup v1)"),  # unreadable v2, then v1
        (None, None, MACHINE, "machine"),  # not in a container
    ],
)
def test_the_default_comes_from_the_container_else_the_machine(tmp_path, v2, v1, expected, source):
    root = cgroup(tmp_path, v2=v2, v1=v1)
    for environ in ({}, {"LLMLAB_MEMORY_LIMIT_GB": "  "}):
        limit = memory_limit(environ, root, machine=MACHINE)
        assert (limit.nbytes, limit.source) == (expected, source)


def test_this_machine_has_a_limit_and_a_resident_size():
    limit = memory_limit({})
    assert 0 < memory.current_rss() < limit.nbytes <= memory.machine_memory()
    assert memory.peak_rss() >= memory.current_rss() * 0.5  # kilobytes read as bytes would fail
    assert container_limit(memory.CGROUP_ROOT) is None or container_limit()[0] > 0
    memory.release_memory()  # glibc's malloc_trim here; a no-op elsewhere, never an error


_CHILD_OF_A_LARGE_PROCESS = """
import subprocess, sys
held = bytearray(600 * 1024**2)  # touched: resident
child = "from llmlab import memory; print(memory.peak_rss())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
"""


def test_the_peak_is_the_process_own_not_its_parent():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _CHILD_OF_A_LARGE_PROCESS], capture_output=True, text=True,
        timeout=120, check=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert 0 < int(result.stdout.split()[-1]) < 300 * memory.MB


class FakeProcess:
    """A process whose RSS is a base plus what its caches hold."""

    def __init__(self, base: int):
        self.base = base
        self.held: dict[str, int] = {}

    def rss(self) -> int:
        return self.base + sum(self.held.values())


def test_a_reservation_that_fits_is_counted_until_it_ends():
    process = FakeProcess(600)
    budget = MemoryBudget(1000, rss=process.rss, release=lambda: None)
    with budget.reserve(300, "a model"):
        assert budget.free() == 100 and budget.reserved() == 300
        with pytest.raises(MemoryBudgetError):  # a second load meanwhile does not fit
            budget.reserve(200, "another model").__enter__()
    assert budget.free() == 400 and budget.refused == 1


def test_room_is_made_by_the_reclaimers_then_the_memory_is_released():
    process = FakeProcess(100)
    process.held = {"old": 500, "older": 300}
    order = ["older", "old"]
    released = []

    def unload_one() -> bool:
        if not order:
            return False
        process.held.pop(order.pop(0))
        return True

    budget = MemoryBudget(1000, rss=process.rss, release=lambda: released.append(True))
    budget.add_reclaimer(unload_one)
    with budget.reserve(400, "a model"):  # 900 held + 400 > 1000: "older" goes, then it fits
        assert process.held == {"old": 500}
    assert released == [True]


def test_a_refusal_says_what_is_needed_and_what_the_server_has():
    budget = MemoryBudget(int(2.7 * GB), rss=lambda: 2 * GB, release=lambda: None)
    with pytest.raises(MemoryBudgetError) as caught:
        budget.reserve(int(1.5 * GB), "Gemma 3 270M (base) in float32").__enter__()
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)  # pages show it as a message
    assert "Gemma 3 270M (base) in float32 needs about 1.5 GB" in message
    assert "may use 2.7 GB (LLMLAB_MEMORY_LIMIT_GB)" in message
    assert "0.70 GB of that is free" in message


def test_a_lasting_reservation_counts_only_what_it_has_not_used_yet():
    process = FakeProcess(500)
    budget = MemoryBudget(2000, rss=process.rss, release=lambda: None)
    with budget.reserve(800, "a training run", lasting=True):
        assert budget.free() == 700
        process.held["training"] = 600  # the run's memory comes into RSS ...
        assert budget.reserved() == 200 and budget.free() == 700  # ... and is counted once
        process.held["training"] = 900  # past its estimate: nothing is left reserved
        assert budget.reserved() == 0
    process.held.clear()
    assert budget.free() == 1500


def test_a_dropped_cache_leaves_the_budget():
    budget = MemoryBudget(1000, rss=lambda: 990, release=lambda: None)

    class Cache:
        calls = 0

        def evict_oldest(self) -> bool:
            Cache.calls += 1
            return False

    cache = Cache()
    budget.add_reclaimer(cache.evict_oldest)
    assert not budget.make_room(100) and Cache.calls == 1
    del cache
    assert not budget.make_room(100) and Cache.calls == 1  # held weakly: not asked again


def test_the_shared_budget_survives_a_bad_variable(monkeypatch):
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "lots")
    monkeypatch.setattr(memory, "_shared", [])
    budget = memory.shared_budget()
    assert memory.shared_budget() is budget
    assert "LLMLAB_MEMORY_LIMIT_GB='lots'" in budget.warning
    assert budget.source != "LLMLAB_MEMORY_LIMIT_GB" and budget.limit > memory.current_rss()


# --- the profile ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gigabytes", "small"), [(0.69, True), (2.7, True), (2.99, True), (3.0, False), (24, False)]
)
def test_a_server_under_3_gb_holds_each_model_once_in_bfloat16(gigabytes, small):
    chosen = memory.profile(memory.MemoryLimit(int(gigabytes * GB), memory.LIMIT_VARIABLE))
    assert chosen.small is small
    assert chosen.precision == ("bfloat16" if small else None)
    assert chosen.max_models == (2 if small else None)
    line = chosen.line()
    assert line.startswith(f"Memory: {memory.gigabytes(int(gigabytes * GB))} for every visitor")
    assert ("at most 2 models loaded at a time" in line) is small


def test_the_profile_follows_the_server_budget(monkeypatch):
    monkeypatch.setattr(memory, "_shared", [])
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "2.7")
    assert memory.profile().small and "2.7 GB" in memory.profile().line()
    monkeypatch.setattr(memory, "_shared", [])
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "8")
    assert not memory.profile().small
