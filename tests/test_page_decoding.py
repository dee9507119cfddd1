"""The Decoding page: AppTest over strategies and parameters, and one run in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab.decoding import generate

MODEL = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("app_pages/decoding.py").run()
    assert not at.exception
    return at


def keys(at) -> set[str]:
    found = set()
    for kind in ("slider", "selectbox", "number_input", "multiselect"):
        found |= {w.key for w in getattr(at, kind) if w.key}
    return found


@pytest.mark.parametrize(
    ("strategy", "present", "absent"),
    [
        ("greedy", set(), {"dec-temperature", "dec-seed", "dec-top-k", "dec-beams"}),
        ("sample", {"dec-temperature", "dec-seed"}, {"dec-top-k", "dec-top-p", "dec-beams"}),
        ("top_k", {"dec-top-k", "dec-temperature"}, {"dec-top-p", "dec-min-p"}),
        ("top_p", {"dec-top-p"}, {"dec-top-k", "dec-min-p", "dec-beams"}),
        ("min_p", {"dec-min-p"}, {"dec-top-k", "dec-top-p"}),
        ("beam", {"dec-beams", "dec-length-penalty", "dec-early"}, {"dec-seed", "dec-temperature"}),
    ],
)
def test_only_the_relevant_parameters_show(app, strategy, present, absent):
    app.selectbox(key="dec-strategy").set_value(strategy).run()
    assert not app.exception
    shown = keys(app)
    assert present <= shown and not (absent & shown)


def test_generate_greedy_matches_the_library(app, smollm2):
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.radio(key="dec-dtype").set_value("float32").run()  # like with like: the fixture's dtype
    app.toggle(key="dec-template").set_value(False).run()
    app.slider(key="dec-max-new").set_value(6).run()
    app.slider(key="dec-repetition").set_value(1.3).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    result = app.session_state["dec-result"]
    expected = generate(smollm2, "Once upon a time", max_new_tokens=6, repetition_penalty=1.3)
    assert result.new_ids == expected.new_ids
    assert any("Step explorer" in m.value for m in app.subheader)
    # The result survives a rerun caused by another widget (nothing lost from session state).
    app.slider(key="dec-step").set_value(3).run()
    assert app.session_state["dec-result"].new_ids == expected.new_ids


def test_beam_search_shows_the_tree(app):
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.selectbox(key="dec-strategy").set_value("beam").run()
    app.slider(key="dec-max-new").set_value(4).run()
    app.slider(key="dec-beams").set_value(2).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    assert app.session_state["dec-result"].steps[0].beams
    assert len(app.session_state["dec-greedy"]) == 4
    assert any("Beam tree" in m.value for m in app.subheader)


def test_empty_prompt_gives_a_hint(app):
    app.text_area(key="dec-prompt").set_value("   ").run()
    app.button(key="dec-generate").click().run()
    assert not app.exception
    assert any("Type a prompt" in w.value for w in app.warning)
    assert "dec-result" not in app.session_state


def test_widget_ranges_stay_inside_what_the_library_accepts(app):
    app.selectbox(key="dec-strategy").set_value("top_p").run()
    assert (app.slider(key="dec-max-new").min, app.slider(key="dec-max-new").max) == (1, 512)
    assert app.slider(key="dec-top-p").min > 0 and app.slider(key="dec-top-p").max <= 1
    assert app.slider(key="dec-temperature").min > 0
    assert app.number_input(key="dec-seed").min == 0


def test_compare_in_the_browser(page, app_url, screenshots_dir):
    """Two strategies side by side: greedy and top-p, 8 tokens each, in headless Chromium."""
    open_page(page, app_url, "decoding")
    page.get_by_text("Compare strategies", exact=True).click()
    wait_for_app(page)
    slider = page.get_by_role("slider").first  # "Max new tokens"
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    wait_for_app(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Side by side").wait_for(timeout=180_000)
    wait_for_app(page, timeout=180_000)
    no_exception(page)
    assert page.get_by_text("distinct-1").count() >= 2
    page.screenshot(path=str(screenshots_dir / "decoding-compare.png"), full_page=True)
