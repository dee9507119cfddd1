"""The shared model cache: LRU order, limits from the environment, byte budget, one load under
concurrency, and concurrent generation on one shared model."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from llmlab import model_cache
from llmlab.generation.decoding import generate
from llmlab.memory import MemoryBudget, MemoryBudgetError
from llmlab.model_cache import GB, CacheLimits, ModelCache, limits_from_env, model_nbytes

MODEL = "smollm2-135m-instruct"


class Weights:
    """A stand-in value that can be weakly referenced (to see when it is freed)."""

    def __init__(self, key: str, nbytes: int = 0) -> None:
        self.key = key
        self.nbytes = nbytes


def counting_loader(sizes: dict[str, int] | None = None, delay: float = 0.0):
    calls: list[str] = []

    def load(key: str) -> Weights:
        calls.append(key)
        if delay:
            time.sleep(delay)
        return Weights(key, (sizes or {}).get(key, 0))

    return load, calls


def make(max_models=4, max_bytes=GB, sizes=None, delay=0.0):
    load, calls = counting_loader(sizes, delay)
    return ModelCache(load, max_models, max_bytes, size_of=lambda w: w.nbytes), calls


def test_hit_returns_the_same_object_without_reloading():
    cache, calls = make()
    first = cache.get("a")
    assert cache.get("a") is first
    assert calls == ["a"] and cache.loads == 1


def test_least_recently_used_goes_first():
    cache, calls = make(max_models=2)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # "a" is now the most recent
    cache.get("c")  # evicts "b"
    assert cache.keys() == ["a", "c"]
    assert cache.evictions == 1
    cache.get("b")  # reloaded, evicts "a"
    assert calls == ["a", "b", "c", "b"]
    assert cache.keys() == ["c", "b"]


def test_count_cap_of_one_keeps_only_the_newest():
    cache, _ = make(max_models=1)
    for key in "abc":
        assert cache.get(key).key == key
        assert cache.keys() == [key]


def test_byte_budget_evicts_oldest_until_it_fits():
    sizes = {"gemma-fp32": 1100, "gemma-bf16": 550, "smol-fp32": 550, "smol-bf16": 270}
    cache, _ = make(max_models=10, max_bytes=2000, sizes=sizes)
    cache.get("gemma-fp32")
    cache.get("gemma-bf16")
    assert cache.nbytes() == 1650
    cache.get("smol-fp32")  # 2200 > 2000: the oldest (gemma-fp32) goes
    assert cache.keys() == ["gemma-bf16", "smol-fp32"] and cache.nbytes() == 1100
    cache.get("smol-bf16")  # 1370 fits
    assert len(cache) == 3


def test_an_entry_over_the_budget_alone_is_still_served():
    cache, _ = make(max_bytes=100, sizes={"big": 500, "small": 10})
    cache.get("small")
    assert cache.get("big").nbytes == 500
    assert cache.keys() == ["big"]


def test_eviction_does_not_free_a_model_still_in_use():
    cache, _ = make(max_models=1)
    in_use = cache.get("a")  # a session holds it while generating
    ref = weakref.ref(in_use)
    cache.get("b")  # "a" leaves the cache ...
    gc.collect()
    assert "a" not in cache and ref() is in_use  # ... but lives while the session uses it
    del in_use
    gc.collect()
    assert ref() is None  # and is freed once nobody holds it


def test_concurrent_gets_of_the_same_key_load_once():
    cache, calls = make(delay=0.3)
    results: list[Weights] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(cache.get("a"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert calls == ["a"]
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_different_keys_load_in_parallel():
    cache, calls = make(delay=0.4)
    start = time.perf_counter()
    threads = [threading.Thread(target=cache.get, args=(k,)) for k in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    # One lock held during loading would take 1.2 s; per-key loading overlaps them.
    assert time.perf_counter() - start < 1.0
    assert sorted(calls) == ["a", "b", "c"]


def test_a_failed_load_reaches_every_waiter_and_is_not_cached():
    attempts = []

    def flaky(key: str) -> Weights:
        attempts.append(key)
        time.sleep(0.2)
        if len(attempts) == 1:
            raise OSError("disk gone")
        return Weights(key)

    cache = ModelCache(flaky, size_of=lambda w: 0)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            cache.get("a")
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(errors) == 3 and attempts == ["a"]
    assert "a" not in cache
    assert cache.get("a").key == "a" and attempts == ["a", "a"]  # the next call retries


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, CacheLimits(4, 4 * GB)),
        ({"LLMLAB_MAX_MODELS": "", "LLMLAB_MODEL_MEMORY_GB": "  "}, CacheLimits(4, 4 * GB)),
        ({"LLMLAB_MAX_MODELS": "2"}, CacheLimits(2, 4 * GB)),
        ({"LLMLAB_MODEL_MEMORY_GB": "1.5"}, CacheLimits(4, int(1.5 * GB))),
        ({"LLMLAB_MAX_MODELS": " 1 ", "LLMLAB_MODEL_MEMORY_GB": "8"}, CacheLimits(1, 8 * GB)),
    ],
)
def test_limits_from_env(env, expected):
    assert limits_from_env(env) == expected


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5", "9" * 400 + "x", "\x00"])
def test_bad_max_models_names_the_variable(value):
    with pytest.raises(ValueError, match="LLMLAB_MAX_MODELS"):
        limits_from_env({"LLMLAB_MAX_MODELS": value})


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "four", "<script>"])
def test_bad_memory_names_the_variable(value):
    with pytest.raises(ValueError, match="LLMLAB_MODEL_MEMORY_GB"):
        limits_from_env({"LLMLAB_MODEL_MEMORY_GB": value})


def test_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("LLMLAB_MAX_MODELS", "1")
    monkeypatch.setenv("LLMLAB_MODEL_MEMORY_GB", "0.5")
    cache = ModelCache.from_env(lambda k: Weights(k), size_of=lambda w: 0)
    assert (cache.max_models, cache.max_bytes) == (1, GB // 2)


@pytest.mark.parametrize("kwargs", [{"max_models": 0}, {"max_models": True}, {"max_bytes": 0}])
def test_bad_constructor_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        ModelCache(lambda k: k, **kwargs)


def test_defaults_fit_the_four_offline_variants_in_4_gb():
    # fp32 Gemma 3 + bf16 Gemma 3 + fp32 SmolLM2 + bf16 SmolLM2, from the parameter counts.
    gemma, smol = 268_098_176, 134_515_008
    total = gemma * 4 + gemma * 2 + smol * 4 + smol * 2
    assert model_cache.DEFAULT_MAX_MODELS >= 4
    assert total < model_cache.DEFAULT_MEMORY_GB * GB


def test_model_nbytes_matches_the_parameter_count(smollm2):
    # Tied input/output embeddings are one tensor: counted once.
    params = sum(p.numel() for p in smollm2.model.parameters())
    assert params == smollm2.facts.parameters == 134_515_008
    buffers = sum(b.numel() * b.element_size() for b in smollm2.model.buffers())
    assert model_nbytes(smollm2) == params * 4 + buffers


def test_concurrent_generation_on_one_shared_model_matches_a_single_run(smollm2):
    prompt = "The capital of France is"
    expected = generate(smollm2, prompt, max_new_tokens=8).new_ids
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = generate(smollm2, prompt, max_new_tokens=8).new_ids
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert [results[i] for i in range(3)] == [expected] * 3
    assert not smollm2.model.training  # still the shared eval model


def test_the_app_shares_one_cache_and_survives_a_bad_variable(monkeypatch):
    from llmlab import ui

    monkeypatch.setenv("LLMLAB_MAX_MODELS", "many")
    ui._model_cache.clear()  # build the process cache afresh under the bad variable
    try:
        cache, warning = ui._model_cache()
        assert ui._model_cache()[0] is cache  # one cache for every session of the process
        assert "LLMLAB_MAX_MODELS='many'" in warning and "defaults" in warning
        assert cache.max_models == model_cache.DEFAULT_MAX_MODELS
        assert ui.loaded_model_names() == set()
    finally:
        ui._model_cache.clear()  # the next user of the app reads the real environment


def test_a_real_model_evicted_mid_generation_finishes_unchanged(smollm2):
    from llmlab import models
    from llmlab.generation.decoding import iter_generate

    cache = ModelCache(lambda key: models.load(*key), max_models=1)
    shared = cache.get(("smollm2-135m-instruct", "float32"))
    stream = iter_generate(shared, "Once upon a time", max_new_tokens=6)
    first = next(iter(stream))  # one session is mid-generation ...
    cache.get(("smollm2-135m-instruct", "bfloat16"))  # ... when another's load evicts its model
    assert cache.keys() == [("smollm2-135m-instruct", "bfloat16")] and cache.evictions == 1
    rest = list(stream)
    expected = generate(smollm2, "Once upon a time", max_new_tokens=6).new_ids
    assert [first.chosen_id, *(s.chosen_id for s in rest)] == expected == stream.result.new_ids


# --- the memory budget --------------------------------------------------------------------------


class Process:
    """A fake process whose RSS is a base plus the weights of every value still alive."""

    def __init__(self, base: int = 100):
        self.base = base
        self.alive: weakref.WeakSet[Weights] = weakref.WeakSet()

    def rss(self) -> int:
        return self.base + sum(w.nbytes for w in self.alive)


def budgeted(limit: int, sizes: dict[tuple[str, str], int], max_models: int = 8):
    process = Process()
    calls: list[tuple[str, str]] = []

    def load(key):
        calls.append(key)
        weights = Weights(key, sizes[key])
        process.alive.add(weights)
        return weights

    budget = MemoryBudget(limit, rss=process.rss, release=gc.collect)
    cache = ModelCache(
        load,
        max_models=max_models,
        max_bytes=100 * GB,
        size_of=lambda w: w.nbytes,
        budget=budget,
        needs=lambda key: sizes[key],
        group_of=lambda key: key[0],
        describe=lambda key: f"{key[0]} in {key[1]}",
    )
    return cache, budget, process, calls


SIZES = {
    ("gemma", "float32"): 1100,
    ("gemma", "bfloat16"): 550,
    ("smol", "float32"): 550,
    ("smol", "bfloat16"): 270,
}


def test_a_load_that_does_not_fit_evicts_the_least_recently_used_first():
    cache, budget, process, _ = budgeted(2000, SIZES)
    cache.get(("smol", "float32"))
    cache.get(("smol", "bfloat16"))
    cache.get(("smol", "float32"))  # bfloat16 is now the least recently used
    assert process.rss() == 920
    cache.get(("gemma", "float32"))  # 920 + 1100 > 2000: one model must go, the older one
    assert cache.keys() == [("smol", "float32"), ("gemma", "float32")]
    assert process.rss() == 1750 <= budget.limit


def test_the_same_model_in_another_precision_leaves_first():
    cache, budget, process, _ = budgeted(1800, SIZES)
    cache.get(("gemma", "float32"))
    cache.get(("smol", "bfloat16"))  # the most recent; gemma float32 is the LRU either way
    cache.get(("smol", "float32"))  # 1370 + 550 > 1800: smol bfloat16 goes, not gemma
    assert cache.keys() == [("gemma", "float32"), ("smol", "float32")]
    assert process.rss() == 1750


def test_a_load_that_cannot_fit_is_refused_with_the_figures_and_the_cache_still_serves():
    cache, budget, process, calls = budgeted(1000, SIZES)
    held = cache.get(("smol", "float32"))  # a session is generating with it
    with pytest.raises(MemoryBudgetError) as caught:
        cache.get(("gemma", "float32"))
    message = str(caught.value)
    assert "gemma in float32 needs about" in message and "this server may use" in message
    assert ("gemma", "float32") not in cache and calls == [("smol", "float32")]
    assert held is not None and process.rss() == 650  # nothing was loaded beside it
    assert cache.get(("smol", "bfloat16")).nbytes == 270  # smaller loads still work
    del held


def test_a_model_still_in_use_is_taken_back_instead_of_loaded_twice():
    cache, _, process, calls = budgeted(2000, SIZES, max_models=1)
    in_use = cache.get(("smol", "float32"))
    cache.get(("smol", "bfloat16"))  # the count cap evicts float32, which a session still holds
    assert cache.get(("smol", "float32")) is in_use
    assert calls == [("smol", "float32"), ("smol", "bfloat16")]
    del in_use
    cache.get(("smol", "bfloat16"))
    gc.collect()
    cache.get(("smol", "float32"))  # nobody held it any more: loaded again
    assert calls[-1] == ("smol", "float32") and len(calls) == 4


def test_concurrent_loads_count_each_others_reservations():
    sizes = {("a", "float32"): 600, ("b", "float32"): 600}
    started = threading.Barrier(2)
    release = threading.Event()
    process = Process()

    def load(key):
        weights = Weights(key, sizes[key])
        if key[0] == "a":
            started.wait()
            release.wait(10)
        process.alive.add(weights)
        return weights

    # No waiting for the other load to end: its promise alone must make "b" not fit.
    budget = MemoryBudget(1000, rss=process.rss, release=gc.collect, wait_seconds=0)
    cache = ModelCache(load, size_of=lambda w: w.nbytes, budget=budget, needs=sizes.__getitem__)
    thread = threading.Thread(target=cache.get, args=(("a", "float32"),))
    thread.start()
    started.wait()  # "a" is loading: 600 bytes are promised, but not in RSS yet
    with pytest.raises(MemoryBudgetError):
        cache.get(("b", "float32"))
    release.set()
    thread.join(10)
    assert cache.keys() == [("a", "float32")]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_evicted_model_gives_its_memory_back(dtype):
    """In a process of its own (other tests' models would blur the figures): SmolLM2 loaded
    through the cache, used by a forward pass and its engine, then evicted."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "tests" / "memory_release_check.py"), MODEL, dtype],
        capture_output=True,
        text=True,
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])  # MB
    assert rss["loaded"] - rss["before"] > 200  # the model was really in memory ...
    assert rss["after"] - rss["before"] < 200, rss  # ... and left it
