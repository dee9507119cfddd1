"""The Chat vs Base page: the side-by-side run and a two-turn chat (AppTest), one browser test."""

from __future__ import annotations

import pytest
from browser_helpers import APP_PATH, no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

PAGE = "app_pages/chat_vs_base.py"


def _open() -> AppTest:
    at = AppTest.from_file(APP_PATH, default_timeout=240).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_side_by_side_run():
    at = _open()
    # A ready prompt fills the box; "What the model actually sees" shows the chat template.
    at.session_state["cvb-ready"] = "What is 2+2?"
    at.run()
    assert at.text_area(key="cvb-prompt").value == "What is 2+2?"
    at.slider(key="cvb-max-tokens").set_value(6)
    at.button(key="cvb-run").click().run()
    assert not at.exception and not at.error
    results = at.session_state["cvb-results"]
    assert results["prompt"] == "What is 2+2?"
    assert results["chat"]["text"] and results["base"]["text"]
    assert results["chat"]["caption"].startswith("6 tokens")
    # Template off: the chat model sees the raw prompt and the page says why that matters.
    at.toggle(key="cvb-template").set_value(False).run()
    assert not at.exception
    assert any("template is off" in info.value for info in at.info)
    # A bad setting is a message, not a traceback, and the earlier results stay.
    at.text_area(key="cvb-prompt").set_value("   ").run()
    assert not at.exception
    assert any("prompt is empty" in error.value for error in at.error)
    assert at.session_state["cvb-results"]["chat"]["text"] == results["chat"]["text"]


def test_two_turn_chat_and_bad_input():
    at = _open()
    at.slider(key="cvb-chat-max-tokens").set_value(8)
    at.chat_input[0].set_value("   ").run()  # only spaces: ignored with a hint
    assert not at.exception
    assert at.session_state["cvb-history"] == []
    assert any("empty" in info.value for info in at.info)
    at.chat_input[0].set_value("What is 2+2?").run()
    assert not at.exception
    # A tiny token budget: the first exchange no longer fits and is dropped, with a notice.
    at.number_input(key="cvb-budget").set_value(64).run()
    at.chat_input[0].set_value("And what is 3+3?").run()
    assert not at.exception and not at.error
    assert any("oldest 2 messages were left out" in w.value for w in at.warning)
    history = at.session_state["cvb-history"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "What is 2+2?" and history[1]["content"]
    assert history[2]["content"] == "And what is 3+3?" and history[3]["content"]
    # The history survives a visit to another page.
    at.switch_page("app_pages/home.py").run()
    at.switch_page(PAGE).run()
    assert len(at.session_state["cvb-history"]) == 4
    at.button(key="cvb-clear").click().run()
    assert at.session_state["cvb-history"] == []


def test_base_model_chosen_for_chat_is_explained():
    at = _open()
    at.text_area(key="cvb-prompt").set_value("Once upon a time").run()
    at.selectbox(key="cvb-talk-model").set_value("gemma-3-270m").run()
    assert not at.exception
    assert any("cannot chat" in warning.value for warning in at.warning)
    assert at.chat_input[0].disabled
    # Widget values survive a visit to another page.
    at.switch_page("app_pages/home.py").run()
    at.switch_page(PAGE).run()
    assert at.text_area(key="cvb-prompt").value == "Once upon a time"
    assert at.selectbox(key="cvb-talk-model").value == "gemma-3-270m"


@pytest.mark.browser
def test_browser_chat_streams_a_reply(app_url, page, screenshots_dir):
    from playwright.sync_api import expect

    open_page(page, app_url, "chat_vs_base")
    no_exception(page)
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("[data-testid='stChatInput'] textarea")
    box.fill("What is 2+2?")
    box.press("Enter")
    messages = page.locator("[data-testid='stChatMessage']")
    expect(messages.nth(0)).to_contain_text("What is 2+2?", timeout=120_000)
    # The reply streams in; greedy SmolLM2 ends it with "... is 4."
    expect(messages.nth(1)).to_contain_text("4", timeout=240_000)
    wait_for_app(page, timeout=240_000)
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "chat_vs_base_chat.png"), full_page=True)
