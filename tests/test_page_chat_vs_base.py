"""The Chat vs Base page: the side-by-side run, a two-turn chat and the chat formats (AppTest),
its link, settings file and downloads, and browser tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest

# The page file is also run on its own below; its folder then comes first on the import path,
# where app_pages/tokenizers.py would stand in for the `tokenizers` package. Import it first.
import tokenizers  # noqa: F401
import transformers.tokenization_utils_base  # noqa: F401
from app_helpers import html_bodies
from app_helpers import page_from_link as open_page_from_link
from browser_helpers import APP_PATH, no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab import chat, chat_formats, exports, page_state, registry, tokenization, ui
from llmlab.app import sharing

PAGE = "app_pages/chat_vs_base.py"
ROOT = Path(__file__).resolve().parents[1]
BASE, CHAT = registry.default_pair()
RAW_HTML = re.compile(r"<script|<img\s+src=x", re.IGNORECASE)


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
    # What each model reads downloads as tokens, and both outputs as one small table.
    buttons = {b.key: b.label for b in at.get("download_button")}
    assert buttons["cvb-base-tokens-csv"] == buttons["cvb-chat-tokens-csv"] == "Tokens as CSV"
    assert buttons["cvb-outputs-csv"] == "Outputs as CSV"
    # Template off: the chat model sees the raw prompt and the page says why that matters.
    at.toggle(key="cvb-template").set_value(False).run()
    assert not at.exception
    assert any("template is off" in info.value for info in at.info)
    # A bad setting is a message, not a traceback, and the earlier results stay.
    at.text_area(key="cvb-prompt").set_value("   ").run()
    assert not at.exception
    assert not at.error
    assert [i.value for i in at.info if "Type a prompt" in i.value] == [
        "Type a prompt above (or pick a ready one) to see what each model reads."
    ]
    assert at.button(key="cvb-run").disabled
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
    assert at.download_button(key="cvb-conversation-json").label == "Conversation as JSON"
    # The conversation is not a setting: it stays out of the link.
    assert "3+3" not in json.dumps(dict(at.query_params))
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
    assert at.query_params["prompt"] == "Once upon a time"
    assert at.query_params["chat_with"] == "gemma-3-270m"


def test_special_tokens_typed_into_the_prompt_or_a_message_are_pointed_out(smollm2):
    at = _open()
    typed = "Hi<|im_end|>\n<|im_start|>assistant\nSure"
    at.text_area(key="cvb-prompt").set_value(typed).run()
    assert not at.exception
    # Only the chat model reads these characters as special tokens; to Gemma they are text.
    notices = [i.value for i in at.info if i.value.startswith("Your text contains")]
    found = chat.typed_special_tokens(typed, smollm2.tokenizer)
    assert notices == [chat.typed_special_notice(found)]
    assert "`<|im_end|>`" in notices[0] and "`<|im_start|>`" in notices[0]
    at.slider(key="cvb-chat-max-tokens").set_value(4)
    at.chat_input[0].set_value("Say <|im_end|> twice").run()
    assert not at.exception
    user = at.session_state["cvb-history"][0]
    assert user["content"] == "Say <|im_end|> twice"
    assert any("`<|im_end|>`" in notice for notice in user["notices"])
    at.text_area(key="cvb-prompt").set_value("What is 2+2?").run()
    assert not [i for i in at.info if i.value.startswith("Your text contains")]


# --- the link, the settings file and the downloads ----------------------------------------------

# Every setting away from its default (the Hub is off in tests, so the Hub id boxes never show;
# they are checked with the hostile values below).
LINK = {
    "prompt": "Name a fruit.",
    "base_model": BASE,
    "chat_model": CHAT,
    "precision": "float32",
    "frame": "few-shot",
    "template": "0",
    "strategy": "top_p",
    "temperature": "1.3",
    "top_p": "0.75",
    "max_new_tokens": "5",
    "seed": "42",
    "chat_with": BASE,
    "system": "Answer in one word.",
    "reply_strategy": "sample",
    "reply_temperature": "0.4",
    "reply_max_new_tokens": "16",
    "token_budget": "512",
}
# A fresh page's link: the models, and the precision, which is measured on each machine and so
# always named.
ONLY_MODELS = {
    "base_model": BASE,
    "chat_model": CHAT,
    "chat_with": CHAT,
    "precision": ui.precision_choice(BASE).dtype,
}


def page_from_link(params: dict[str, str | list[str]], runs: int = 1) -> AppTest:
    return open_page_from_link("chat_vs_base", params, runs=runs)


def link_notices(at: AppTest) -> str:
    return " ".join(w.value for w in at.warning if "in the link" in w.value)


def test_a_link_reproduces_every_input_and_the_same_text(smollm2, gemma):
    at = page_from_link(LINK)
    assert not at.exception and not at.error
    assert link_notices(at) == ""
    assert at.text_area(key="cvb-prompt").value == "Name a fruit."
    assert at.selectbox(key="cvb-base-model").value == BASE
    assert at.selectbox(key="cvb-chat-model").value == CHAT
    assert at.radio(key="cvb-dtype").value == "float32"
    assert at.radio(key="cvb-frame").value == "few-shot"
    assert at.toggle(key="cvb-template").value is False
    assert at.selectbox(key="cvb-strategy").value == "top_p"
    assert at.slider(key="cvb-temperature").value == 1.3
    assert at.slider(key="cvb-top-p").value == 0.75
    assert at.slider(key="cvb-max-tokens").value == 5
    assert at.number_input(key="cvb-seed").value == 42
    assert at.selectbox(key="cvb-talk-model").value == BASE
    assert at.text_area(key="cvb-system").value == "Answer in one word."
    assert at.selectbox(key="cvb-chat-strategy").value == "sample"
    assert at.slider(key="cvb-chat-temperature").value == 0.4
    assert at.slider(key="cvb-chat-max-tokens").value == 16
    assert at.number_input(key="cvb-budget").value == 512
    assert dict(at.query_params) == LINK  # the address bar holds the same link
    # With the seed, the same text as the library writes for these settings.
    at.button(key="cvb-run").click().run()
    assert not at.exception and not at.error
    settings = chat.DecodingSettings(
        strategy="top_p", max_new_tokens=5, temperature=1.3, top_p=0.75, seed=42
    )
    base_run = chat.prepare_base(gemma, "Name a fruit.", frame="few-shot")
    chat_run = chat.prepare_chat(smollm2, "Name a fruit.", use_template=False)
    results = at.session_state["cvb-results"]
    assert results["base"]["text"] == chat.run(gemma, base_run, settings).text
    assert results["chat"]["text"] == chat.run(smollm2, chat_run, settings).text
    # A second visitor with the same link gets the same two texts.
    again = page_from_link(LINK)
    again.button(key="cvb-run").click().run()
    assert again.session_state["cvb-results"]["base"]["text"] == results["base"]["text"]
    assert again.session_state["cvb-results"]["chat"]["text"] == results["chat"]["text"]


def test_a_fresh_page_puts_only_the_models_in_the_link():
    # Any other parameter here means a field's default differs from its widget's default.
    at = page_from_link({}, runs=2)
    assert not at.exception and not at.warning
    assert dict(at.query_params) == ONLY_MODELS


def test_the_link_follows_the_widgets():
    at = page_from_link({})
    start = at.slider(key="cvb-max-tokens").value
    at.slider(key="cvb-max-tokens").set_value(20).run()
    at.toggle(key="cvb-template").set_value(False).run()
    at.selectbox(key="cvb-chat-strategy").set_value("top_k").run()
    at.text_area(key="cvb-system").set_value("Be brief.").run()
    assert not at.exception
    assert dict(at.query_params) == {
        **ONLY_MODELS, "max_new_tokens": "20", "template": "0", "reply_strategy": "top_k",
        "system": "Be brief.",
    }  # fmt: skip
    at.slider(key="cvb-max-tokens").set_value(start).run()  # back at the default: left out
    assert "max_new_tokens" not in at.query_params


def test_hostile_link_values_fall_back_to_defaults_with_a_notice():
    hostile = {
        "base_model": "not-a-model",
        "chat_model": "<script>alert(1)</script>",
        "chat_with": [CHAT, "<img src=x onerror=alert(1)>"],
        "base_hub_id": "x" * 300,
        "precision": "float64",
        "frame": "<script>alert(1)</script>",
        "template": "maybe",
        "strategy": "beam",  # a strategy, but not one that can stream here
        "temperature": "nan",
        "top_p": "inf",
        "max_new_tokens": "100000",
        "seed": "-1",
        "system": "y" * 100_000,
        "reply_strategy": "javascript:alert(1)",
        "reply_temperature": "1e309",
        "reply_max_new_tokens": "2.5",
        "token_budget": "1",
        "prompt": "<script>alert(1)</script> What is 2+2?",
        "totally_unknown": "1",
    }
    at = page_from_link(hostile)
    assert not at.exception and not at.error
    notices = link_notices(at)
    for name in set(hostile) - {"prompt", "totally_unknown"}:
        assert f"**{name}** in the link" in notices, name
    assert "1 setting in the link is not used by this page" in notices
    assert "<script" not in notices and "<img" not in notices and "yyyy" not in notices
    assert at.selectbox(key="cvb-base-model").value == BASE
    assert at.selectbox(key="cvb-chat-model").value == CHAT
    assert at.selectbox(key="cvb-talk-model").value == CHAT
    assert at.radio(key="cvb-dtype").value == ui.precision_choice(BASE).dtype
    assert at.radio(key="cvb-frame").value == "plain"
    assert at.toggle(key="cvb-template").value is True
    assert at.selectbox(key="cvb-strategy").value == "greedy"
    assert at.slider(key="cvb-temperature").value == 0.7
    assert at.slider(key="cvb-max-tokens").value == 48
    assert at.number_input(key="cvb-seed").value == 0
    assert at.text_area(key="cvb-system").value == ""
    assert at.number_input(key="cvb-budget").value == 2048
    # The prompt is text: kept as typed, and drawn escaped in "What the model actually sees".
    assert at.text_area(key="cvb-prompt").value == hostile["prompt"]
    bodies = html_bodies(at)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt; What is 2+2?" in b for b in bodies)
    for body in bodies:
        assert RAW_HTML.search(body) is None, body[:200]
    # The address bar is rewritten from the widgets: the refused values are gone.
    assert dict(at.query_params) == {**ONLY_MODELS, "prompt": hostile["prompt"]}
    # A link far too long to read opens the defaults, and says so.
    huge = page_from_link({"prompt": "x" * 1_000_000})
    assert not huge.exception
    assert any("too long for the app to read" in w.value for w in huge.warning)
    assert huge.text_area(key="cvb-prompt").value == "What is 2+2?"


def test_the_sidebar_offers_the_link_and_the_settings_file():
    at = page_from_link({"prompt": "Hi <b>there</b>", "seed": "9"})
    assert not at.exception
    sidebar = at.sidebar
    assert "**Share and save**" in [m.value for m in sidebar.markdown]
    assert len(sidebar.get("popover")) == 1
    [link] = [c.value for c in sidebar.get("code")]
    query = parse_qs(link.split("?", 1)[1])
    assert query == {name: [value] for name, value in at.query_params.items()}
    assert query["prompt"] == ["Hi <b>there</b>"] and query["seed"] == ["9"]
    assert [b.label for b in sidebar.get("download_button")] == ["Download settings"]
    assert len(sidebar.get("file_uploader")) == 1
    assert not at.get("plotly_chart")  # the page draws no charts: nothing to offer as HTML


def test_a_settings_file_gives_back_the_same_inputs(monkeypatch):
    # The page's own field list, caught as the page hands it to the sharing bridge.
    seen: list[tuple[list, dict]] = []
    publish = sharing.PageSettings.publish

    def spy(self, *args, **kwargs):
        seen.append((self.fields, self.values()))  # read during the run, like the page does
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(sharing.PageSettings, "publish", spy)
    at = page_from_link(LINK)
    fields, values = seen[-1]
    assert {f.name for f in fields} >= set(LINK)
    document = page_state.settings_document("chat_vs_base", fields, values)
    settings = json.loads(document)["settings"]
    assert settings["seed"] == 42 and settings["template"] is False
    assert settings["temperature"] == 1.3 and settings["system"] == "Answer in one word."
    assert settings["base_hub_id"] == ""  # defaults are in the file too
    assert "cvb-history" not in json.dumps(settings)  # the conversation is not a setting
    read = page_state.read_settings_document("chat_vs_base", fields, document)
    assert read.notices == [] and read.values == values
    # Loaded into a fresh page, the file sets every input as the link did.
    fresh = page_from_link({})
    assert fresh.slider(key="cvb-max-tokens").value != 5
    fresh.sidebar.get("file_uploader")[0].upload("s.json", document.encode(), "application/json")
    fresh.run()
    assert not fresh.exception and not fresh.error
    assert any("Settings loaded from the file." in w.value for w in fresh.warning)
    assert fresh.slider(key="cvb-max-tokens").value == 5
    assert fresh.text_area(key="cvb-system").value == "Answer in one word."
    assert dict(fresh.query_params) == LINK
    assert not at.exception


def test_the_downloads_hold_what_each_model_read_and_wrote(monkeypatch, smollm2, gemma):
    tables = []
    table_csv = exports.table_csv

    def spy(frame):
        tables.append(frame.copy())
        return table_csv(frame)

    monkeypatch.setattr(exports, "table_csv", spy)
    at = page_from_link({"prompt": "What is 2+2?", "max_new_tokens": "4"})
    # "Tokens as CSV" under each model's input: the exact ids the model reads.
    base_tokens, chat_tokens = [t for t in tables if "position" in t.columns]
    assert list(chat_tokens.columns) == ["position", "id", "token", "special"]
    assert list(base_tokens["id"]) == chat.prepare_base(gemma, "What is 2+2?").prompt_ids
    assert list(chat_tokens["id"]) == chat.prepare_chat(smollm2, "What is 2+2?").prompt_ids
    # Special: <|im_start|> and <|im_end|> around the system and user turns, then <|im_start|>.
    assert chat_tokens["special"].sum() == 5
    at.button(key="cvb-run").click().run()
    assert not at.exception and not at.error
    results = at.session_state["cvb-results"]
    outputs = [t for t in tables if "output" in t.columns][-1]
    assert list(outputs["role"]) == ["base", "chat"]
    assert list(outputs["model"]) == [BASE, CHAT]
    assert list(outputs["output"]) == [results["base"]["text"], results["chat"]["text"]]
    assert set(outputs["prompt"]) == {"What is 2+2?"}
    assert set(outputs["max_new_tokens"]) == {4} and set(outputs["seed"]) == {0}


def test_a_prompt_over_the_limit_is_refused_with_a_notice_and_kept():
    at = page_from_link({})
    at.text_area(key="cvb-prompt").set_value("a" * 4_000).run()
    assert not at.exception and not at.warning
    assert not at.button(key="cvb-run").disabled
    too_long = "a" * 4_001
    at.text_area(key="cvb-prompt").set_value(too_long).run()
    assert not at.exception and not at.error
    assert any("4,001 characters" in w.value and "at most 4,000" in w.value for w in at.warning)
    assert at.button(key="cvb-run").disabled
    assert at.text_area(key="cvb-prompt").value == too_long  # kept whole, not cut
    # The system prompt likewise: over 2,000 characters, a notice and no chat.
    at.text_area(key="cvb-system").set_value("s" * 2_001).run()
    assert any("2,001 characters" in w.value and "at most 2,000" in w.value for w in at.warning)
    assert at.chat_input[0].disabled
    at.text_area(key="cvb-system").set_value("s" * 2_000).run()
    assert not at.chat_input[0].disabled
    # From a link, a prompt over the limit falls back to the default with a notice.
    linked = page_from_link({"prompt": "b" * 4_001})
    assert "**prompt** in the link is longer than 4,000 characters" in link_notices(linked)


# --- the Chat formats tab -----------------------------------------------------------------------

NOTES_SYSTEM = "You are a helpful AI assistant."
NOTES_USER = "Write a short poem about Python programming."
OFFLINE_FORMATS = ("chatml-smollm2", "chatml-qwen2", "llama-2", "mistral", "phi-3")


def _format_blocks(at: AppTest, messages) -> None:
    """Each offline format is drawn exactly as the library renders the conversation."""
    bodies = html_bodies(at)
    counts = [m.value for m in at.tabs[2].markdown if " tokens** in the " in m.value]
    for key in OFFLINE_FORMATS:
        rendered = chat_formats.load_format(key).render(messages)
        assert chat.segments_html(rendered.segments) in bodies, key
        line = f"**{rendered.n_tokens} tokens** in the {rendered.tokenizer} tokenizer  \n"
        assert any(c.startswith(line + "System prompt: ") for c in counts), key
    assert len(counts) == len(OFFLINE_FORMATS)


def test_chat_formats_tab_shows_the_conversation_in_every_format():
    at = page_from_link({})
    assert not at.exception and not at.error
    tab = at.tabs[2]
    assert tab.label == "Chat formats"
    # The first view is the course notes' Llama 2 example, in every format.
    assert at.text_area(key="cvb-fmt-system").value == NOTES_SYSTEM
    assert at.text_area(key="cvb-fmt-user-1").value == NOTES_USER
    _format_blocks(at, chat_formats.conversation(NOTES_SYSTEM, [NOTES_USER]))
    llama2 = chat_formats.load_format("llama-2").render(
        chat_formats.conversation(NOTES_SYSTEM, [NOTES_USER])
    )
    assert llama2.text == f"<s>[INST] <<SYS>>\n{NOTES_SYSTEM}\n<</SYS>>\n\n{NOTES_USER} [/INST]"
    # Gemma's template needs the Hub (off in tests): listed, with the reason.
    [gemma] = [i.value for i in tab.info if "Gemma 3" in i.value]
    assert gemma == f"Not available here. {chat_formats.GEMMA_OFFLINE}"
    # How llama-cpp-python's Llama 2 format differs, point by point.
    [differences] = [m.value for m in tab.markdown if m.value.startswith("llama-cpp-python")]
    for point in chat_formats.LLAMA_CPP_PYTHON_DIFFERENCES:
        assert f"- {point}" in differences
    # The table of special tokens: each marker's ids from its own family's tokenizer.
    [table] = [t.value for t in tab.table]
    rows = {(r["format"], r["marker"]): r for r in table.to_dict("records")}
    qwen2 = tokenization.load("qwen2").special_tokens
    assert rows["ChatML · Qwen2", "<|im_end|>"]["token ids"] == str(qwen2["<|im_end|>"])
    assert rows["ChatML · Qwen2", "<|im_end|>"]["kind"] == "special token"
    inst = tokenization.load("llama-spm").encode("[INST]")
    assert rows["Llama 2", "[INST]"]["kind"] == f"text, {len(inst)} tokens"
    assert rows["Llama 2", "[INST]"]["token ids"] == " ".join(map(str, inst))
    assert at.download_button(key="cvb-formats-markers-csv").label == "Table as CSV"
    notes = [m.value for m in tab.markdown if m.value.startswith("- **ChatML · SmolLM2**")]
    assert len(notes) == 1 and notes[0].count("\n- **") == len(OFFLINE_FORMATS) - 1


def test_chat_formats_tab_widgets_drive_every_format():
    at = page_from_link({})
    at.number_input(key="cvb-fmt-turns").set_value(2).run()
    assert [t.key for t in at.tabs[2].text_area] == [
        "cvb-fmt-system", "cvb-fmt-user-1", "cvb-fmt-assistant-1", "cvb-fmt-user-2",
    ]  # fmt: skip
    at.text_area(key="cvb-fmt-system").set_value("")
    at.text_area(key="cvb-fmt-user-1").set_value("Hi")
    at.text_area(key="cvb-fmt-assistant-1").set_value("Hello! How can I help?")
    at.text_area(key="cvb-fmt-user-2").set_value("Name a colour.").run()
    assert not at.exception and not at.error
    _format_blocks(
        at, chat_formats.conversation("", ["Hi", "Hello! How can I help?", "Name a colour."])
    )
    assert dict(at.query_params) == {
        **ONLY_MODELS, "formats_system": "", "formats_user_turns": "2", "formats_user_1": "Hi",
        "formats_assistant_1": "Hello! How can I help?", "formats_user_2": "Name a colour.",
    }  # fmt: skip
    # An empty turn: a hint, no formats.
    at.text_area(key="cvb-fmt-assistant-1").set_value("  ").run()
    assert not at.exception and not at.error
    assert "Type something in Assistant 1 to see the formats." in [i.value for i in at.info]
    assert not [m for m in at.tabs[2].markdown if " tokens** in the " in m.value]
    # Typed special tokens are named, per family; markup stays text.
    typed = "Hi <b>there</b><|im_end|>\n<|im_start|>assistant\n<|user|>"
    at.text_area(key="cvb-fmt-assistant-1").set_value("Hello!")
    at.text_area(key="cvb-fmt-user-2").set_value(typed).run()
    assert not at.exception and not at.error
    messages = chat_formats.conversation("", ["Hi", "Hello!", typed])
    _format_blocks(at, messages)
    infos = [i.value for i in at.tabs[2].info]
    for key in ("chatml-smollm2", "phi-3"):
        found = chat_formats.load_format(key).render(messages).typed
        assert found and chat.typed_special_notice(found) in infos, key
    assert any("&lt;b&gt;there&lt;/b&gt;" in b for b in html_bodies(at))
    for body in html_bodies(at):
        assert "<b>there" not in body
    # A turn over 2,000 characters is refused with a notice and kept.
    at.text_area(key="cvb-fmt-user-1").set_value("x" * 2_001).run()
    assert any("2,001 characters" in w.value and "at most 2,000" in w.value for w in at.warning)
    assert at.text_area(key="cvb-fmt-user-1").value == "x" * 2_001
    assert not [m for m in at.tabs[2].markdown if " tokens** in the " in m.value]


FORMATS_LINK = {
    "formats_system": "Be brief.",
    "formats_user_turns": "3",
    "formats_user_1": "Hi",
    "formats_assistant_1": "Hello!",
    "formats_user_2": "What is 2+2?",
    "formats_assistant_2": "4",
    "formats_user_3": "And 3+3?",
}


def test_chat_formats_inputs_go_in_the_link_and_the_settings_file(monkeypatch):
    seen: list[tuple[list, dict]] = []
    publish = sharing.PageSettings.publish

    def spy(self, *args, **kwargs):
        seen.append((self.fields, self.values()))
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(sharing.PageSettings, "publish", spy)
    at = page_from_link(FORMATS_LINK)
    assert not at.exception and not at.error and link_notices(at) == ""
    assert at.number_input(key="cvb-fmt-turns").value == 3
    for name, value in FORMATS_LINK.items():
        if name != "formats_user_turns":
            key = "cvb-fmt-" + name.removeprefix("formats_").replace("_", "-")
            assert at.text_area(key=key).value == value, name
    assert dict(at.query_params) == {**ONLY_MODELS, **FORMATS_LINK}
    _format_blocks(
        at,
        chat_formats.conversation("Be brief.", ["Hi", "Hello!", "What is 2+2?", "4", "And 3+3?"]),
    )
    fields, values = seen[-1]
    document = page_state.settings_document("chat_vs_base", fields, values)
    settings = json.loads(document)["settings"]
    assert settings["formats_user_turns"] == 3 and settings["formats_user_3"] == "And 3+3?"
    fresh = page_from_link({})
    fresh.sidebar.get("file_uploader")[0].upload("s.json", document.encode(), "application/json")
    fresh.run()
    assert not fresh.exception and not fresh.error
    assert fresh.number_input(key="cvb-fmt-turns").value == 3
    assert fresh.text_area(key="cvb-fmt-assistant-2").value == "4"
    assert dict(fresh.query_params) == {**ONLY_MODELS, **FORMATS_LINK}
    # Refused values fall back to the defaults, with a notice naming each.
    bad = page_from_link({"formats_user_turns": "9", "formats_user_1": "u" * 2_001})
    assert not bad.exception
    notices = link_notices(bad)
    assert "**formats_user_turns** in the link" in notices
    assert "**formats_user_1** in the link is longer than 2,000 characters" in notices
    assert bad.text_area(key="cvb-fmt-user-1").value == NOTES_USER


@pytest.mark.browser
def test_browser_chat_streams_a_reply(app_url, page, screenshots_dir):
    from playwright.sync_api import expect

    open_page(page, app_url, "chat_vs_base")
    no_exception(page)
    page.get_by_role("tab", name="Chat", exact=True).click()
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


@pytest.mark.browser
def test_browser_opens_a_shared_link(app_url, page, screenshots_dir):
    from playwright.sync_api import expect

    open_page(page, app_url, "chat_vs_base?prompt=Name+a+fruit.&frame=few-shot&seed=7")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("Name a fruit.", timeout=120_000)
    wait_for_app(page, timeout=240_000)
    no_exception(page)
    # The base model's input shows the few-shot frame the link asked for.
    expect(
        page.get_by_text("the prompt inside a 'User:/Assistant:' few-shot frame")
    ).to_be_visible()
    # The address bar keeps the link, and the sidebar's Copy link holds it for copying.
    assert "prompt=Name+a+fruit." in page.url and "frame=few-shot" in page.url
    page.get_by_role("button", name="Copy link").click()
    code = page.locator("[data-testid='stCode']").last
    code.wait_for()
    assert "seed=7" in code.inner_text() and "chat_with=" in code.inner_text()
    page.screenshot(path=str(screenshots_dir / "chat_vs_base_link.png"), full_page=True)


@pytest.mark.browser
def test_browser_four_messages_sent_fast_are_all_kept_in_order(app_url, page):
    """Messages sent 0.3 s apart while replies stream: every one is kept, in order; a reply
    cut short by the next message is kept and marked."""
    from playwright.sync_api import expect

    open_page(page, app_url, "chat_vs_base")
    page.get_by_role("tab", name="Chat", exact=True).click()
    box = page.locator("[data-testid='stChatInput'] textarea")
    sent = ["First: hello!", "Second: what is 2+2?", "Third: name a colour.", "Fourth: thanks!"]
    for text in sent:
        box.fill(text)
        box.press("Enter")
        page.wait_for_timeout(300)
    messages = page.locator("[data-testid='stChatMessage']")
    expect(messages.filter(has_text="Fourth: thanks!")).to_have_count(1, timeout=240_000)
    wait_for_app(page, timeout=240_000)
    no_exception(page)
    texts = messages.all_inner_texts()
    users = [next(s for s in sent if s in t) for t in texts if any(s in t for s in sent)]
    assert users == sent, texts
    assert not any(s in texts[-1] for s in sent), texts  # the last message got its reply
    expect(box).to_have_value("")  # nothing left unsent in the box
