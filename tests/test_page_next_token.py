"""The Next-Token page: AppTest over prompt and sliders, and one real-browser check."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llmlab import next_token as nt
from tests.browser_helpers import no_exception, open_page, wait_for_app

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/next_token.py").run()
    assert not at.exception
    return at


def test_sliders_rerender_without_a_forward_pass(app):
    before = nt.forward_passes()
    for key, value in [
        ("nt-temperature", 0.4),
        ("nt-top-k", 20),
        ("nt-top-p", 0.8),
        ("nt-min-p", 0.1),
        ("nt-penalty", 1.3),
        ("nt-temperature", 0.0),
    ]:
        app.slider(key=key).set_value(value).run()
        assert not app.exception and not app.error, key
    assert nt.forward_passes() == before
    assert any("Tokens still possible" in m.label for m in app.metric)


def test_prompt_edit_append_and_empty_prompt(app):
    app.text_area(key="nt-prompt").set_value("Hello my name").run()
    assert not app.exception
    app.button(key="nt-append").click().run()
    assert not app.exception
    assert app.text_area(key="nt-prompt").value.startswith("Hello my name")
    assert len(app.text_area(key="nt-prompt").value) > len("Hello my name")
    app.text_area(key="nt-prompt").set_value("").run()
    assert not app.exception and any("Type a prompt" in i.value for i in app.info)
    app.text_area(key="nt-prompt").set_value("The capital of France is").run()
    app.toggle(key="nt-guess-mode").set_value(True).run()
    assert not app.exception and app.session_state["nt-prompt"] == "The capital of France is"


@pytest.mark.browser
def test_browser_temperature_changes_the_chart(page, app_url, screenshots_dir):
    open_page(page, app_url, "next_token")
    page.wait_for_selector(".js-plotly-plot", timeout=240_000)
    no_exception(page)
    bars = page.locator(".js-plotly-plot").first

    def heights() -> list[str]:
        return bars.locator("g.point path").evaluate_all("els => els.map(e => e.getAttribute('d'))")

    first = heights()
    assert first
    slider = page.get_by_role("slider").first  # temperature is the first slider on the page
    slider.focus()
    for _ in range(8):
        page.keyboard.press("ArrowLeft")  # 1.0 -> 0.6
    wait_for_app(page)
    # Bars are re-scaled to the tallest one, so compare every bar, not just the first.
    page.wait_for_function(
        "old => [...document.querySelectorAll('.js-plotly-plot')[0]"
        ".querySelectorAll('g.point path')].map(e => e.getAttribute('d')).join('|') !== old",
        arg="|".join(first),
        timeout=60_000,
    )
    assert heights() != first
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "next_token.png"), full_page=True)
