"""The Tokenizers page, driven through Streamlit's AppTest and once in a real browser."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import urlencode

import pytest

# The Hugging Face `tokenizers` package, imported before any AppTest opens the page file itself:
# AppTest puts the page's folder first on the import path, and there `tokenizers` is this page.
import streamlit as st
import tokenizers  # noqa: F401
from app_helpers import html_bodies
from app_helpers import page_from_link as open_page_from_link
from streamlit.testing.v1 import AppTest

from llmlab import page_state, tokenization
from llmlab.app import sharing
from llmlab.tokenization import bpe
from llmlab.tokenization.samples import EXAMPLES

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
    page.screenshot(path=str(screenshots_dir / "tokenizers-browser.png"), full_page=True)


# --- the page's inputs in the link ----------------------------------------------------------

TRAINING = "low lower lowest newer newest wider widest " * 4
LINK = {
    "text": "naïve <b>café</b> 🚀",
    "tokenizers": ["o200k_base", "gpt2"],
    "ids": "1",
    "corpus": "red fish\nblue fish",
    "lowercase": "0",
    "punctuation": "0",
    "word_text": "blue fish red fish",
    "training": "My own text",
    "training_text": TRAINING,
    "vocab": "300",
    "merges": "5",
    "sample": "the newest lowest",
}


def page_from_link(params: dict[str, str | list[str]]) -> AppTest:
    return open_page_from_link("tokenizers", params, timeout=180)


def test_a_link_reproduces_every_input():
    at = page_from_link(LINK)
    assert not at.exception and not at.error and not at.warning
    assert at.text_area(key="tok-text").value == LINK["text"]
    assert at.multiselect(key="tok-zoo").value == ["o200k_base", "gpt2"]
    assert at.toggle(key="tok-show-ids").value is True
    assert at.text_area(key="tok-corpus").value == LINK["corpus"]
    assert at.checkbox(key="tok-word-lower").value is False
    assert at.checkbox(key="tok-word-punct").value is False
    assert at.text_input(key="tok-word-in").value == LINK["word_text"]
    assert at.radio(key="tok-bpe-src").value == "My own text"
    assert at.text_area(key="tok-bpe-own").value == TRAINING
    assert at.slider(key="tok-bpe-vocab").value == 300
    assert at.slider(key="tok-bpe-step").value == 5
    assert at.text_input(key="tok-bpe-sample").value == LINK["sample"]
    assert dict(at.query_params) == LINK  # the address bar holds the same link
    # The results follow the inputs: token counts of the linked text, in the linked order...
    expected = [str(len(tokenization.load(n).encode(LINK["text"]))) for n in LINK["tokenizers"]]
    assert _metric(at, "Tokens") == expected
    # ...and the BPE tab replays exactly 5 merges learned from the linked training text.
    replayed = bpe.replay(LINK["sample"], bpe.train(TRAINING, 300).trace, 5)
    assert [m.value for m in at.markdown if m.value.startswith("After")] == [
        f"After **5** merges: **{len(replayed)}** tokens"
    ]


def test_a_fresh_page_puts_nothing_in_the_link():
    # This page has no setting that is always in the link: any parameter here means a field's
    # default differs from its widget's default.
    at = AppTest.from_file(str(ROOT / "app_pages/tokenizers.py"), default_timeout=180).run()
    assert not at.exception
    assert dict(at.query_params) == {}


def test_changing_a_widget_updates_the_link(app):
    assert dict(app.query_params) == {}
    app.toggle(key="tok-show-ids").set_value(True).run()
    assert dict(app.query_params) == {"ids": "1"}
    app.multiselect(key="tok-zoo").set_value(["gpt2"]).run()
    app.slider(key="tok-bpe-step").set_value(12).run()
    assert dict(app.query_params) == {"ids": "1", "tokenizers": "gpt2", "merges": "12"}
    # Back to every merge: the default, so out of the link again.
    step = app.slider(key="tok-bpe-step")
    step.set_value(step.max).run()
    assert dict(app.query_params) == {"ids": "1", "tokenizers": "gpt2"}
    # A new vocabulary size replays all of its merges (the slider's default)...
    app.slider(key="tok-bpe-vocab").set_value(600).run()
    assert app.slider(key="tok-bpe-step").value == 600 - 256
    assert dict(app.query_params) == {"ids": "1", "tokenizers": "gpt2", "vocab": "600"}


def test_hostile_link_values_fall_back_to_defaults_with_a_notice():
    at = page_from_link(
        {
            "tokenizers": ["gpt2", "<script>alert(1)</script>"],
            "training": "<img src=x onerror=alert(1)>",
            "ids": "maybe",
            "vocab": "100000",
            "merges": "nan",
            "lowercase": "<script>",
            "text": "x" * (tokenization.MAX_CHARS + 1),
            "sample": "y" * 2001,
            "word_text": "<script>alert(1)</script>",
            "totally_unknown": "1",
        }
    )
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    refused = ("tokenizers", "training", "ids", "vocab", "merges", "lowercase", "text", "sample")
    for name in refused:
        assert any(n.startswith(f"**{name}** in the link") for n in notices), name
    assert any("not used by this page" in n for n in notices)
    assert not any("<script" in n or "<img" in n or "xxxx" in n for n in notices)
    # Each refused value is the default again...
    assert at.multiselect(key="tok-zoo").value == ["gpt2", "cl100k_base", "llama-spm",
                                                   "bert-wordpiece"]  # fmt: skip
    assert at.radio(key="tok-bpe-src").value.startswith("botchan")
    assert at.toggle(key="tok-show-ids").value is False
    assert at.slider(key="tok-bpe-vocab").value == 1000
    assert at.slider(key="tok-bpe-step").value == 1000 - 256
    assert at.checkbox(key="tok-word-lower").value is True
    assert at.text_area(key="tok-text").value == EXAMPLES["English prose"]
    # ...markup in a text field is kept as plain text, and nothing reaches the browser as HTML.
    assert at.text_input(key="tok-word-in").value == "<script>alert(1)</script>"
    assert not any("<script" in body or "<img" in body for body in html_bodies(at))
    # The address bar is rewritten from the widgets: only the accepted value is left.
    assert dict(at.query_params) == {"word_text": "<script>alert(1)</script>"}


def test_a_link_too_long_to_read_opens_the_defaults_with_a_notice():
    link = {"text": "x" * 1_000_000, "ids": "1"}
    at = page_from_link(link)
    assert not at.exception and not at.error
    assert [w.value for w in at.warning if "link" in w.value] == [
        f"This link is too long for the app to read ({len(urlencode(link)):,} characters), so "
        "the page opened with its default inputs."
    ]
    assert at.text_area(key="tok-text").value == EXAMPLES["English prose"]
    assert at.toggle(key="tok-show-ids").value is False


def test_inputs_survive_leaving_the_page_and_coming_back(app):
    app.text_area(key="tok-text").set_value("Twinkle twinkle").run()
    app.multiselect(key="tok-zoo").set_value(["o200k_base"]).run()
    app.checkbox(key="tok-word-punct").set_value(False).run()
    app.slider(key="tok-bpe-vocab").set_value(500).run()
    app.slider(key="tok-bpe-step").set_value(9).run()
    app.switch_page("app_pages/home.py").run()
    app.switch_page("app_pages/tokenizers.py").run()
    assert not app.exception
    assert app.text_area(key="tok-text").value == "Twinkle twinkle"
    assert app.multiselect(key="tok-zoo").value == ["o200k_base"]
    assert app.checkbox(key="tok-word-punct").value is False
    assert app.slider(key="tok-bpe-vocab").value == 500
    assert app.slider(key="tok-bpe-step").value == 9


def test_share_controls_and_every_download_are_on_the_page(app):
    kinds = [element.type for element in app.sidebar]
    assert {"popover", "code", "download_button", "file_uploader"} <= set(kinds)
    app.toggle(key="tok-show-ids").set_value(True).run()
    [link] = [element for element in app.sidebar if element.type == "code"]
    assert link.value.endswith("?ids=1")
    # Widget ids read "$$ID-<hash>-<key>".
    buttons = {b.proto.id.split("-", 2)[2]: b.proto.label for b in app.get("download_button")}
    chosen = app.multiselect(key="tok-zoo").value
    assert {f"tok-csv-{name}" for name in chosen} <= set(buttons)  # tokens of each tokenizer
    for chart in ("tok-compare", "tok-tax", "tok-char", "tok-bpe-counts"):
        assert buttons[f"{chart}-html"] == "Chart as HTML", chart
    for table in ("tok-sentences", "tok-word-table", "tok-merge-table"):
        assert buttons[f"{table}-csv"] == "Table as CSV", table
    assert buttons["_download-tokenizers"] == "Download settings"


def test_a_settings_file_round_trip(monkeypatch):
    """The settings file the page offers reads back to the same values, in the library and when
    loaded into a fresh page."""
    offered = []
    make_document = page_state.settings_document

    def spy(page, fields, values):
        document = make_document(page, fields, values)
        offered.append((fields, dict(values), document))
        return document

    # The page offers its file through `sharing`; record what it hands to the download button.
    monkeypatch.setattr(sharing.page_state, "settings_document", spy)
    at = page_from_link(LINK)
    fields, values, document = offered[-1]
    assert {f.name for f in fields} == set(LINK)  # every input of the page is a setting
    monkeypatch.undo()

    parsed = page_state.read_settings_document("tokenizers", fields, document)
    assert parsed.notices == []
    assert parsed.values == values
    assert values["tok-zoo"] == ["o200k_base", "gpt2"] and values["tok-bpe-merges"] == 5

    fresh = AppTest.from_file(str(ROOT / "app_pages/tokenizers.py"), default_timeout=180).run()
    assert dict(fresh.query_params) == {}
    fresh.sidebar.get("file_uploader")[0].upload(
        "settings.json", document.encode(), "application/json"
    ).run()
    assert not fresh.exception and not fresh.error
    assert [w.value for w in fresh.warning] == ["Settings loaded from the file."]
    assert dict(fresh.query_params) == dict(at.query_params) == LINK
    assert fresh.slider(key="tok-bpe-step").value == 5
    assert fresh.checkbox(key="tok-word-punct").value is False
    assert fresh.multiselect(key="tok-zoo").value == ["o200k_base", "gpt2"]
    assert fresh.text_area(key="tok-bpe-own").value == TRAINING


def test_each_tokenizer_downloads_its_tokens_as_csv(monkeypatch):
    offered = {}
    download_button = st.download_button

    def spy(label, data, *args, **kwargs):
        offered[kwargs.get("key")] = data
        return download_button(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    text = "Hi 🌟 naïve\tcafé"
    page_from_link({"text": text, "tokenizers": ["gpt2", "bert-wordpiece"]})
    tokens = {}
    for name in ("gpt2", "bert-wordpiece"):
        rows = list(csv.DictReader(io.StringIO(offered[f"tok-csv-{name}"]())))
        pieces = tokenization.load(name).pieces(text)
        assert [(int(r["id"]), int(r["start"]), int(r["end"])) for r in rows] == [
            (p.id, p.start, p.end) for p in pieces
        ]
        assert [r["token"] for r in rows] == [p.text if p.text is not None else p.label()
                                             for p in pieces]  # fmt: skip
        tokens[name] = [r["token"] for r in rows]
    # GPT-2 spells the star with byte fragments, written as hex; WordPiece has no token for it.
    assert any("<F0 9F" in token for token in tokens["gpt2"])
    assert "[UNK]" in tokens["bert-wordpiece"]


@pytest.mark.browser
def test_browser_opens_a_shared_link(page, app_url, screenshots_dir):
    from browser_helpers import no_exception, open_page
    from playwright.sync_api import expect

    open_page(page, app_url, "tokenizers?text=hello+world&tokenizers=gpt2&ids=1")
    expect(page.get_by_label("Your text")).to_have_value("hello world", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
        ".some(e => e.innerText.trim() === '2')"
    )
    no_exception(page)
    # The address bar keeps the link, and the sidebar's Copy link holds it for copying.
    assert "text=hello+world" in page.url and "ids=1" in page.url
    page.get_by_role("button", name="Copy link").click()
    code = page.locator("[data-testid='stCode']").last
    code.wait_for()
    assert "tokenizers=gpt2" in code.inner_text() and "ids=1" in code.inner_text()
    page.screenshot(path=str(screenshots_dir / "tokenizers-link.png"), full_page=True)
