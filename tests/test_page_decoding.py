"""The Decoding page: AppTest over strategies and parameters, and one run in a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_helpers import page_from_link as open_page_from_link
from browser_helpers import no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab.generation.decoding import generate

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
    # The address bar follows the widgets once a run has finished with the new value.
    page.wait_for_function("() => location.search.includes('mode=Compare')", timeout=120_000)
    wait_for_app(page)
    slider = page.get_by_role("slider").first  # "Max new tokens"
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('max_new_tokens') === '8'",
        timeout=120_000,
    )
    wait_for_app(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Side by side").wait_for(timeout=180_000)
    wait_for_app(page, timeout=180_000)
    no_exception(page)
    assert page.get_by_text("distinct-1").count() >= 2
    page.screenshot(path=str(screenshots_dir / "decoding-compare.png"), full_page=True)


# --- the page's inputs in the link ----------------------------------------------------------

LINK = {
    "prompt": "The <b>capital</b> of France is",
    "model": MODEL,
    "template": "0",
    "precision": "float32",
    "strategy": "top_p",
    "max_new_tokens": "7",
    "seed": "1234",
    "temperature": "0.7",
    "top_p": "0.8",
    "repetition_penalty": "1.2",
    "no_repeat_ngram_size": "3",
}


def page_from_link(params: dict[str, str]) -> AppTest:
    return open_page_from_link("decoding", params, timeout=180)


def test_a_link_reproduces_the_inputs_and_the_same_sampled_text(smollm2):
    at = page_from_link(LINK)
    assert not at.exception and not at.warning
    assert at.text_area(key="dec-prompt").value == LINK["prompt"]
    assert at.selectbox(key="dec-strategy").value == "top_p"
    assert at.slider(key="dec-top-p").value == 0.8
    assert at.slider(key="dec-temperature").value == 0.7
    assert at.number_input(key="dec-seed").value == 1234
    assert at.toggle(key="dec-template").value is False
    assert dict(at.query_params) == LINK  # the address bar holds the same link
    at.button(key="dec-generate").click().run()
    expected = generate(
        smollm2, LINK["prompt"], "top_p", max_new_tokens=7, seed=1234, temperature=0.7,
        top_p=0.8, repetition_penalty=1.2, no_repeat_ngram_size=3,
    )  # fmt: skip
    assert at.session_state["dec-result"].new_ids == expected.new_ids
    # A second visitor with the same link gets the same text.
    again = page_from_link(LINK)
    again.button(key="dec-generate").click().run()
    assert again.session_state["dec-result"].text == expected.text


def test_a_fresh_page_puts_only_the_model_in_the_link(app):
    # Any other parameter here means a field's default differs from its widget's default.
    assert {k for k in app.query_params} == {"model"}
    app.selectbox(key="dec-strategy").set_value("beam").run()
    app.slider(key="dec-beams").set_value(4).run()
    assert app.query_params["strategy"] == "beam" and app.query_params["beams"] == "4"


def test_hostile_link_values_fall_back_to_defaults_with_a_notice():
    at = page_from_link(
        {
            "model": "<script>alert(1)</script>",
            "strategy": "javascript:alert(1)",
            "temperature": "nan",
            "top_k": "-5",
            "max_new_tokens": "100000",
            "prompt": "x" * 20_001,
            "compare": ["greedy", "<img src=x onerror=alert(1)>"],
            "totally_unknown": "1",
        }
    )
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    for name in ("model", "strategy", "temperature", "top_k", "max_new_tokens", "prompt"):
        assert any(n.startswith(f"**{name}** in the link") for n in notices), name
    assert any("not used by this page" in n for n in notices)
    assert not any("<script" in n or "<img" in n or "xxxx" in n for n in notices)
    assert at.selectbox(key="dec-strategy").value == "greedy"
    assert at.text_area(key="dec-prompt").value == "Once upon a time"
    assert at.slider(key="dec-max-new").value == 40
    # The address bar is rewritten from the widgets: the refused values are gone.
    assert {k for k in at.query_params} == {"model"}


def test_a_link_too_long_to_read_opens_the_defaults_with_a_notice():
    at = page_from_link({"prompt": "x" * 1_000_000, "seed": "5"})
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        "This link is too long for the app to read (1,000,014 characters), so the page opened "
        "with its default inputs."
    ]
    assert at.text_area(key="dec-prompt").value == "Once upon a time"


def test_inputs_survive_leaving_the_page_and_coming_back(app):
    app.text_area(key="dec-prompt").set_value("Twinkle twinkle").run()
    app.selectbox(key="dec-strategy").set_value("top_k").run()
    app.slider(key="dec-top-k").set_value(7).run()
    app.switch_page("app_pages/tokenizers.py").run()
    app.switch_page("app_pages/decoding.py").run()
    assert not app.exception
    assert app.text_area(key="dec-prompt").value == "Twinkle twinkle"
    assert app.selectbox(key="dec-strategy").value == "top_k"
    assert app.slider(key="dec-top-k").value == 7


def test_share_controls_and_downloads_are_on_the_page(app):
    kinds = [element.type for element in app.sidebar]
    assert {"popover", "code", "download_button", "file_uploader"} <= set(kinds)
    [link] = [element for element in app.sidebar if element.type == "code"]
    assert "model=" in link.value
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.slider(key="dec-max-new").set_value(3).run()
    app.button(key="dec-generate").click().run()
    labels = [b.proto.label for b in app.get("download_button")]
    assert "Tokens as CSV" in labels and "Chart as HTML" in labels


@pytest.mark.browser
def test_eight_sessions_generate_at_once_and_each_gets_the_greedy_text(browser, app_url, smollm2):
    """A class presses Generate together: 8 browser sessions on one server, one engine."""
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    result = "[data-testid='stMarkdown'] div[style*='pre-wrap'] b"
    prompts = [f"Once upon a time, in village number {i}," for i in range(8)]
    contexts, pages = [], []
    for prompt in prompts:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(240_000)
        query = urlencode({"model": MODEL, "precision": "float32", "max_new_tokens": "12",
                           "template": "0", "prompt": prompt})  # fmt: skip
        open_page(page, app_url, f"decoding?{query}")
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(prompt)
        contexts.append(context)
        pages.append(page)
    try:
        for page in pages:  # as close together as one thread can click
            page.get_by_role("button", name="Generate").click()
        for page, prompt in zip(pages, prompts, strict=True):
            page.get_by_text(re.compile(r"\d+ tokens in [\d.]+ s")).first.wait_for(timeout=300_000)
            wait_for_app(page, timeout=300_000)
            no_exception(page)
            expected = generate(smollm2, prompt, max_new_tokens=12).text
            shown = page.locator(result).first.inner_text()
            assert shown.split() == expected.split()
    finally:
        for context in contexts:
            context.close()
