"""A page whose model does not fit in the server's memory says so, with the figures, and the
rest of the page still works."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

# A page run on its own puts its folder first on sys.path, and app_pages/ holds a
# tokenizers.py: import the Hugging Face package first so transformers finds the real one.
import tokenizers  # noqa: F401
from streamlit.testing.v1 import AppTest

from llmlab import memory, ui

ROOT = Path(__file__).resolve().parents[1]


def in_own_process(name: str) -> bool:
    """Run test `name` again in a fresh process, and say whether this call is that process.

    The budget counts the whole process's memory and the page's cached loaders are shared by
    every test of a process: a process that already ran other tests' pages is not a fresh
    server."""
    if os.environ.get("LLMLAB_OWN_PROCESS") == name:
        return True
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{name}"],
        env=dict(os.environ, LLMLAB_OWN_PROCESS=name, PYTEST_ADDOPTS=""),
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-4000:]
    return False


def test_a_refused_load_gives_the_message_and_the_page_stays_usable(monkeypatch):
    if not in_own_process("test_a_refused_load_gives_the_message_and_the_page_stays_usable"):
        return
    # The server may use 1 MB more than it holds now: no model fits.
    tight = memory.MemoryBudget(memory.current_rss() + memory.MB, source="LLMLAB_MEMORY_LIMIT_GB")
    monkeypatch.setattr(memory, "_shared", [tight])
    ui._model_cache.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app_pages" / "next_token.py"), default_timeout=240)
        at.run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert any("needs about" in e and "this server may use" in e for e in errors), errors
        assert tight.refused >= 1 and ui.loaded_model_names() == set()
        at.text_area(key="nt-prompt").set_value("Hello").run()  # the page still answers
        assert not at.exception
    finally:
        ui._model_cache.clear()  # the next test's cache reads the real budget


def test_a_page_whose_load_waits_for_memory_gets_its_model_when_the_memory_is_back(monkeypatch):
    """Another visitor holds a model the cache let go of, and the server is full: the page's
    load waits, tells the visitor why (the box is gone once the model is there), and the page
    then works as usual."""
    if not in_own_process(
        "test_a_page_whose_load_waits_for_memory_gets_its_model_when_the_memory_is_back"
    ):
        return
    import time

    let_go_at = time.monotonic() + 3.0  # the other visitor is done in 3 s

    def others_done() -> bool:
        return time.monotonic() >= let_go_at

    full = memory.MemoryBudget(
        memory.current_rss() + 8 * memory.GB, source="LLMLAB_MEMORY_LIMIT_GB",
        rss=lambda: memory.current_rss() if others_done() else 10**15,
    )  # fmt: skip
    full.add_holder(lambda: [] if others_done() else ["Gemma 3 270M"])
    notices = []
    real_notices = memory.waiting_notices

    @contextlib.contextmanager
    def seen(show):  # the page's box, and a copy of what it was told
        with real_notices(lambda message: (notices.append(message), show(message))):
            yield

    monkeypatch.setattr(memory, "_shared", [full])
    monkeypatch.setattr(memory, "waiting_notices", seen)
    ui._model_cache.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app_pages" / "next_token.py"), default_timeout=240)
        at.run()
        assert not at.exception and not at.error
        assert full.waited >= 1 and full.refused == 0
        assert notices and "another visitor is still using Gemma 3 270M" in notices[0]
        assert not [box for box in at.info if "Waiting for memory" in box.value]
        assert ui.loaded_model_names()
    finally:
        ui._model_cache.clear()


def test_on_a_small_server_every_page_holds_a_model_in_one_precision(monkeypatch):
    """Next-Token asks for float32 and Decoding starts on the measured precision: on a 2.7 GB
    server both get the same bfloat16 copy, and the Decoding page says why it has no choice.

    It runs in a process of its own: the budget counts the whole process's memory, and a test
    process that already holds other tests' models would leave no room."""
    if not in_own_process("test_on_a_small_server_every_page_holds_a_model_in_one_precision"):
        return
    monkeypatch.setattr(memory, "_shared", [])
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "2.7")
    ui._model_cache.clear()
    try:
        for page in ("next_token", "decoding"):
            at = AppTest.from_file(str(ROOT / "app_pages" / f"{page}.py"), default_timeout=240)
            at.run()
            assert not at.exception and not at.error
        assert ui._model_cache()[0].keys() == [("gemma-3-270m", "bfloat16")]
        assert any("**Precision:** bfloat16, on every page" in c.value for c in at.caption)
        assert not at.get("radio") or all(r.label != "Precision" for r in at.radio)
    finally:
        ui._model_cache.clear()


def test_two_visitors_needing_two_models_under_a_one_model_budget_both_get_their_answers():
    """Gemma 3 is generating for one visitor when another visitor's page needs SmolLM2, and the
    server has room for one of them: the second load waits, says why, and starts as soon as the
    first visitor is done; both get the text each model gives alone."""
    if not in_own_process(
        "test_two_visitors_needing_two_models_under_a_one_model_budget_both_get_their_answers"
    ):
        return
    import threading
    import time

    from llmlab import models
    from llmlab.generation.decoding import generate, iter_generate
    from llmlab.generation.engine import rest_engine_of
    from llmlab.model_cache import ModelCache

    gemma, smollm2 = ("gemma-3-270m", "bfloat16"), ("smollm2-135m-instruct", "bfloat16")
    prompt, tokens = "The three most useful kitchen tools are", 48
    alone = {}
    for key in (gemma, smollm2):  # each model alone; its one-time costs join the baseline
        warm = models.load(*key)
        alone[key] = generate(warm, prompt, max_new_tokens=tokens).new_ids
        rest_engine_of(warm.model)
        del warm
        memory.release_memory()
    needs = {key: models.memory_needed(*key) for key in (gemma, smollm2)}
    # Room for the larger model and 100 MB: never for both.
    budget = memory.MemoryBudget(
        memory.current_rss() + max(needs.values()) + 100 * memory.MB, wait_seconds=600
    )
    assert max(needs.values()) + 100 * memory.MB < sum(needs.values())
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    cache = ModelCache(
        lambda key: models.load(*key), budget=budget, needs=needs.__getitem__,
        group_of=lambda key: key[0], describe=lambda key: models.resolve_model(key[0]).title,
        on_evict=lambda loaded: rest_engine_of(loaded.model),
    )  # fmt: skip
    started, results, notices, times = threading.Event(), {}, [], {}

    def first_visitor():
        loaded = cache.get(gemma)
        new_ids = []
        for record in iter_generate(loaded, prompt, max_new_tokens=tokens):
            new_ids.append(record.chosen_id)
            started.set()
        del loaded
        times["first done"] = time.monotonic()
        results[gemma] = new_ids

    def second_visitor():
        started.wait(600)
        with memory.waiting_notices(notices.append):
            loaded = cache.get(smollm2)
        times["second loaded"] = time.monotonic()
        results[smollm2] = generate(loaded, prompt, max_new_tokens=tokens).new_ids

    threads = [threading.Thread(target=first_visitor), threading.Thread(target=second_visitor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    assert results == alone  # both answers, each as the model gives it alone
    assert budget.waited == 1 and budget.refused == 0
    assert times["second loaded"] > times["first done"]  # one after the other
    assert notices and "Waiting for memory" in notices[0], notices
    assert "another visitor is still using Gemma 3 270M" in notices[0], notices
    assert memory.peak_rss() <= budget.limit + 50 * memory.MB  # never both at once
