"""Run by tests/test_model_cache.py in a process of its own: load a model through the cache,
use it, evict it, and print RSS (MB) before the load, with it loaded, and after the eviction.

    python tests/memory_release_check.py smollm2-135m-instruct bfloat16
"""

from __future__ import annotations

import json
import os
import sys

from llmlab import memory, models
from llmlab.generation.decoding import generate
from llmlab.generation.engine import rest_engine_of
from llmlab.model_cache import ModelCache

MB = 1024**2


def use(loaded: models.LoadedModel) -> None:
    """What a page does with a model: a forward pass and a short generation on its engine."""
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    loaded.model(ids)
    generate(loaded, "Once upon a time", max_new_tokens=4)


def main(name: str, dtype: str) -> None:
    # One-time costs (imported modeling code, kernels, the engine's thread) go in the baseline.
    warm = models.load(name, dtype=dtype)
    use(warm)
    rest_engine_of(warm.model)
    del warm
    memory.release_memory()
    budget = memory.MemoryBudget(memory.current_rss() + 8 * 1024**3)
    # As the app's cache: an evicted model's idle engine ends its thread, which holds the model.
    cache = ModelCache(
        lambda key: models.load(*key), budget=budget, on_evict=lambda m: rest_engine_of(m.model)
    )
    before = memory.current_rss()
    loaded = cache.get((name, dtype))
    use(loaded)
    del loaded
    with_model = memory.current_rss()
    assert cache.evict_oldest() and len(cache) == 0
    evicted_only = memory.current_rss()
    memory.release_memory()  # what the budget does after each eviction
    after = memory.current_rss()
    figures = {"before": before, "loaded": with_model, "evicted": evicted_only, "after": after}
    print(json.dumps({key: round(value / MB) for key, value in figures.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
    # Leave without the interpreter's teardown, as the test run does: a torch thread still
    # alive then makes glibc abort the process after the figures are printed.
    from llmlab.generation.engine import close_all

    close_all()
    sys.stdout.flush()
    os._exit(0)
