"""The Architecture page: AppTest over the model and layer selectors, and one browser check."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.browser_helpers import no_exception, open_page

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/architecture.py").run()
    return at


def test_gpt2_skeleton_by_default(app):
    assert not app.exception and not app.error
    assert [m.value for m in app.metric] == ["124,439,808"]
    assert any("cannot run a prompt" in w.value for w in app.warning)  # a skeleton has no weights


@pytest.mark.parametrize(
    "size, total", [("gpt2-medium", "354,823,168"), ("gpt2-xl", "1,557,611,200")]
)
def test_other_gpt2_sizes(app, size, total):
    app.selectbox(key="arch-model").set_value(size).run()
    assert not app.exception and [m.value for m in app.metric] == [total]


def test_offline_model_runs_prompt_and_layer_selector(app):
    app.selectbox(key="arch-model").set_value("smollm2-135m-instruct").run()
    assert not app.exception and not app.error
    assert [m.value for m in app.metric] == ["134,515,008"]
    assert app.slider(key="arch-layer").max == 29 and app.slider(key="arch-head").max == 8
    assert any("30 blocks" in m.value for m in app.markdown)  # the path from ids to logits
    assert any("bank" in c.value and "s1" in c.value for c in app.caption)  # sentences named
    app.slider(key="arch-layer").set_value(5)
    app.slider(key="arch-head").set_value(2).run()  # both changes in one rerun
    assert not app.exception and not app.error
    assert (app.session_state["arch-layer"], app.session_state["arch-head"]) == (5, 2)


def test_bad_input_keeps_the_page_working(app):
    app.text_area(key="arch-prompt").set_value("")
    app.text_input(key="arch-word").set_value("boat").run()
    assert any("Type a prompt" in i.value for i in app.info)
    assert any("at least two sentences" in w.value for w in app.warning)
    app.text_area(key="arch-prompt").set_value("word " * 200).run()
    assert any("only the first 128 are used" in w.value for w in app.warning)
    assert not app.exception and not app.error
    assert app.session_state["arch-word"] == "boat"  # nothing lost


def test_browser_shows_the_gpt2_total(page, app_url, screenshots_dir):
    open_page(page, app_url, "architecture")
    page.get_by_text("124,439,808").first.wait_for()
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "architecture.png"), full_page=True)
