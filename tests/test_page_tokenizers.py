"""The Tokenizers page, driven through Streamlit's AppTest and once in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llmlab import tokenization

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("app_pages/tokenizers.py").run()
    assert not at.exception
    return at


def _metric(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def test_text_box_and_multiselect_drive_the_token_counts(app):
    app.multiselect(key="tok-zoo").set_value(["gpt2", "cl100k_base"]).run()
    app.text_area(key="tok-text").set_value("The 🌟 star-player scored 40 points!").run()
    assert not app.exception and not app.error
    expected = [
        str(len(tokenization.load(n).encode(app.text_area(key="tok-text").value)))
        for n in ("gpt2", "cl100k_base")
    ]
    assert _metric(app, "Tokens") == expected == ["11", "11"]
    html = "".join(m.value for m in app.markdown)
    assert "&lt;F0 9F&gt;" in html  # the star's bytes shown as a fragment, escaped
    app.multiselect(key="tok-zoo").set_value(["bert-wordpiece"]).run()
    bert = tokenization.load("bert-wordpiece").pieces("The 🌟 star-player scored 40 points!")
    assert _metric(app, "Tokens") == [str(len(bert))]
    assert _metric(app, "Unknown tokens") == ["1"] == [str(sum(p.unknown for p in bert))]


def test_bad_input_is_explained_not_crashed(app):
    app.text_area(key="tok-text").set_value("").run()
    assert any("Type or paste" in i.value for i in app.info)
    app.text_area(key="tok-text").set_value("x" * 100_001).run()
    assert any("at most 100,000" in e.value for e in app.error)
    app.text_area(key="tok-text").set_value("bell\x07 null\x00 <script>alert(1)</script>").run()
    assert not app.exception and not app.error
    html = "".join(m.value for m in app.markdown)
    assert "<script>" not in html and "␇" in html


def test_bpe_slider_trains_and_replays(app):
    app.radio(key="tok-bpe-src").set_value("My own text").run()
    app.slider(key="tok-bpe-vocab").set_value(300).run()
    assert not app.exception
    assert app.slider(key="tok-bpe-step").value == 44  # 300 - 256 merges, all replayed
    merged = [m.value for m in app.markdown if m.value.startswith("After")]
    app.slider(key="tok-bpe-step").set_value(0).run()
    raw = [m.value for m in app.markdown if m.value.startswith("After")]
    sample = app.text_input(key="tok-bpe-sample").value
    assert raw == [f"After **0** merges: **{len(sample.encode())}** tokens"]
    assert merged != raw


@pytest.mark.browser
def test_browser_types_a_sentence_and_sees_its_token_count(page, app_url, screenshots_dir):
    from browser_helpers import no_exception, open_page, wait_for_app

    open_page(page, app_url, "tokenizers")
    box = page.get_by_label("Your text")
    box.fill("hello world")
    box.press("Control+Enter")
    wait_for_app(page)
    page.get_by_text("GPT-2 (tiktoken)").first.wait_for()
    metrics = page.locator("[data-testid='stMetricValue']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
        ".some(e => e.innerText.trim() === '2')"
    )
    assert metrics.first.inner_text().strip() == "2"  # GPT-2: "hello" + " world"
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "tokenizers.png"), full_page=True)
