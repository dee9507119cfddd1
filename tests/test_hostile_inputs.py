"""Hostile input on every page: odd text in every text field, extreme values in every parameter.

For each input the page must show no traceback, render nothing of the input as raw HTML, and keep
the results it had already computed. The library refuses bad numbers with a `ValueError` that
names the argument. The module prints how many inputs were tried and how many passed.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from browser_helpers import APP_PATH
from streamlit.testing.v1 import AppTest

from llmlab.generation import decoding, filters
from llmlab.generation import next_token as nt

MODEL = "smollm2-135m-instruct"

# The catalogue of bad text. Each entry is small except the 1 MB one, which a page must refuse
# or cut before any forward pass.
TEXTS: dict[str, str] = {
    "empty": "",
    "whitespace": " \t\n  \n",
    "1MB": ("lorem ipsum " * 90_000)[:1_000_000],
    "nul+control": "a\x00b\x01c\x07d\x1b[31mred\x7f\r\n",
    # A lone surrogate cannot cross the wire (widget values travel as UTF-8): the browser sends
    # U+FFFD in its place. The library itself gets the real thing below.
    "lone surrogate": "x\ufffdy",
    "rtl marks": "\u202eabc\u200fdef\u202c",
    "zero-width joiner": "👩\u200d💻 a\u200bb\u2060c",
    "script": "<script>alert(1)</script>",
    "img onerror": "<img src=x onerror=alert(1)>",
    "md link": "[x](javascript:alert(1))",
    "md bold": "**bold**",
    "md heading": "# heading",
}
# What must never reach the browser as live HTML (escaped, "&lt;script&gt;" is plain text).
RAW_HTML = re.compile(r"<script|<img\s+src=x", re.IGNORECASE)

tally = {"tried": 0, "passed": 0}


def _html_bodies(at: AppTest) -> list[str]:
    """Every body the browser would read as HTML: st.html and markdown with HTML allowed."""
    bodies = [h.value for h in at.get("html")]
    for kind in ("markdown", "caption"):
        bodies += [m.value for m in at.get(kind) if m.proto.allow_html]
    return bodies


def _check(at: AppTest, kept: dict[str, object], name: str) -> None:
    """The page after a hostile run: no traceback, no raw HTML, earlier results still there."""
    tally["tried"] += 1
    assert not at.exception, f"{name}: {at.exception[0].value if at.exception else ''}"
    for body in _html_bodies(at):
        found = RAW_HTML.search(body)
        assert found is None, f"{name}: raw HTML {found.group(0)!r} rendered"
    for key, value in kept.items():
        assert key in at.session_state, f"{name}: {key} was lost"
        assert at.session_state[key] is value or at.session_state[key] == value, (
            f"{name}: {key} changed"
        )
    tally["passed"] += 1


def _sweep_text(at: AppTest, kind: str, key: str, kept: dict[str, object], click=None) -> None:
    """Feed every catalogue entry into one text widget (then press `click`, if given)."""
    original = getattr(at, kind)(key=key).value
    for label, text in TEXTS.items():
        getattr(at, kind)(key=key).set_value(text)
        if click:
            at.button(key=click).click()
        at.run()
        _check(at, kept, f"{key} <- {label}")
    getattr(at, kind)(key=key).set_value(original).run()


def _sweep_numbers(at: AppTest, kept: dict[str, object], skip: set[str] = frozenset()) -> None:
    """Every slider and number input at the lowest and highest value the widget allows."""
    for kind in ("slider", "number_input"):
        for widget in list(getattr(at, kind)):
            if not widget.key or widget.key in skip or widget.disabled:
                continue
            original = widget.value
            if isinstance(original, (tuple, list)):
                continue
            for end in (widget.min, widget.max):
                getattr(at, kind)(key=widget.key).set_value(end).run()
                _check(at, kept, f"{widget.key} <- {end}")
            getattr(at, kind)(key=widget.key).set_value(original).run()


def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP_PATH, default_timeout=240).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception
    return at


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nhostile inputs: tried {tally['tried']}, passed {tally['passed']}")


def test_tokenizers_page():
    at = _open("tokenizers")
    at.text_area(key="tok-text").set_value("Hello world").run()
    kept = {"tok-zoo": at.session_state["tok-zoo"]}
    _sweep_text(at, "text_area", "tok-text", kept)
    _sweep_text(at, "text_area", "tok-corpus", kept)
    _sweep_text(at, "text_input", "tok-word-in", kept)
    _sweep_text(at, "text_input", "tok-bpe-sample", kept)
    at.radio(key="tok-bpe-src").set_value("My own text").run()
    _sweep_text(at, "text_area", "tok-bpe-own", kept)
    _sweep_numbers(at, kept, skip={"tok-bpe-vocab"})
    vocab = at.slider(key="tok-bpe-vocab")
    vocab.set_value(vocab.min).run()
    _check(at, kept, "tok-bpe-vocab <- min")


def test_next_token_page():
    at = _open("next_token")
    at.selectbox(key="nt-model").set_value(MODEL).run()
    at.text_area(key="nt-prompt").set_value("The capital of France is").run()
    assert not at.exception and not at.error
    kept = {"nt-model": MODEL, "nt-temperature": at.session_state["nt-temperature"]}
    _sweep_text(at, "text_area", "nt-prompt", kept)
    kept = {"nt-model": MODEL, "nt-prompt": "The capital of France is"}
    _sweep_numbers(at, kept)
    # With a head switched off, every text and number again (the head's input is now enabled),
    # and the sweep over every head with a prompt it refuses.
    at.selectbox(key="nt-ko-part").set_value("head").run()
    assert not at.exception and not at.error
    _sweep_text(at, "text_area", "nt-prompt", {"nt-model": MODEL, "nt-ko-part": "head"})
    _sweep_numbers(at, {**kept, "nt-ko-part": "head"})
    at.text_area(key="nt-prompt").set_value("word " * 300).run()
    at.button(key="nt-ko-sweep").click().run()
    _check(at, {"nt-ko-part": "head", "nt-prompt": "word " * 300}, "nt-ko-sweep <- long prompt")
    assert any("at most 256" in e.value for e in at.error)
    at.text_area(key="nt-prompt").set_value("The capital of France is").run()
    at.selectbox(key="nt-ko-part").set_value("none").run()
    at.toggle(key="nt-guess-mode").set_value(True).run()
    _sweep_text(at, "text_input", "nt-guess", kept)


def test_architecture_page():
    at = _open("architecture")
    at.selectbox(key="arch-model").set_value(MODEL).run()
    assert not at.exception and not at.error
    kept = {"arch-model": MODEL}
    _sweep_text(at, "text_area", "arch-prompt", kept)
    _sweep_numbers(at, kept)
    at.selectbox(key="arch-ko-part").set_value("head").run()
    # An empty prompt hides the panel for that run; the part comes back with the prompt.
    _sweep_text(at, "text_area", "arch-prompt", kept)
    assert at.session_state["arch-ko-part"] == "head"
    _sweep_numbers(at, {"arch-model": MODEL, "arch-ko-part": "head"})


def test_decoding_page():
    at = _open("decoding")
    at.selectbox(key="dec-model").set_value(MODEL).run()
    at.radio(key="dec-dtype").set_value("float32").run()
    at.slider(key="dec-max-new").set_value(2).run()
    at.button(key="dec-generate").click().run()
    assert not at.exception and not at.error
    result = at.session_state["dec-result"]
    kept = {"dec-result": result}
    _sweep_text(at, "text_area", "dec-prompt", kept)
    # Pressing Generate with a bad prompt: a message, never a model run on a 1 MB prompt. Only
    # inputs that are refused leave the earlier result in place, so those are checked with it.
    for label in ("empty", "whitespace", "1MB"):
        at.text_area(key="dec-prompt").set_value(TEXTS[label])
        at.button(key="dec-generate").click().run()
        _check(at, kept, f"dec-prompt + Generate <- {label}")
        assert at.error or at.warning or at.info, label
    for label in ("nul+control", "lone surrogate", "rtl marks", "zero-width joiner", "script"):
        at.text_area(key="dec-prompt").set_value(TEXTS[label])
        at.button(key="dec-generate").click().run()
        _check(at, {}, f"dec-prompt + Generate <- {label}")
    _sweep_numbers(at, {}, skip={"dec-max-new"})


def test_chat_vs_base_page():
    at = _open("chat_vs_base")
    at.text_area(key="cvb-prompt").set_value("What is 2+2?")
    at.slider(key="cvb-max-tokens").set_value(4)
    at.button(key="cvb-run").click().run()
    assert not at.exception and not at.error
    kept = {"cvb-results": at.session_state["cvb-results"]}
    _sweep_text(at, "text_area", "cvb-prompt", kept)
    _sweep_text(at, "text_area", "cvb-system", kept)
    for label in ("empty", "whitespace"):
        at.text_area(key="cvb-prompt").set_value(TEXTS[label]).run()
        assert at.button(key="cvb-run").disabled  # nothing to run: the button is off
        _check(at, kept, f"cvb-prompt + Run <- {label}")
        assert any("Type a prompt" in info.value for info in at.info), label
    # A prompt over 4,000 characters is refused with a notice (kept in the box, not cut).
    at.text_area(key="cvb-prompt").set_value(TEXTS["1MB"]).run()
    _check(at, kept, "cvb-prompt (refused) <- 1MB")
    assert at.button(key="cvb-run").disabled
    assert any("at most 4,000" in w.value for w in at.warning)
    at.text_area(key="cvb-prompt").set_value("What is 2+2?").run()
    at.slider(key="cvb-chat-max-tokens").set_value(8).run()
    for label in ("empty", "whitespace", "1MB", "script"):  # the last two get a reply each
        at.chat_input[0].set_value(TEXTS[label]).run()
        _check(at, kept, f"cvb-chat-input <- {label}")
    _sweep_numbers(at, kept, skip={"cvb-budget"})


def test_chat_vs_base_chat_formats_tab():
    at = _open("chat_vs_base")
    at.number_input(key="cvb-fmt-turns").set_value(2).run()
    assert not at.exception and not at.error
    kept = {"cvb-fmt-turns": 2, "cvb-fmt-user-1": at.session_state["cvb-fmt-user-1"]}
    for key in ("cvb-fmt-system", "cvb-fmt-assistant-1", "cvb-fmt-user-2"):
        _sweep_text(at, "text_area", key, kept)
    _sweep_text(at, "text_area", "cvb-fmt-user-1", {"cvb-fmt-turns": 2})
    turns = at.number_input(key="cvb-fmt-turns")
    for end in (turns.min, turns.max):
        at.number_input(key="cvb-fmt-turns").set_value(end).run()
        _check(at, {}, f"cvb-fmt-turns <- {end}")
        assert len(at.tabs[2].text_area) == 2 * end  # the system prompt and the turns


# Each tab of the Embeddings page and its text inputs (only the open tab is drawn).
EMBEDDING_TABS = {
    "From text to vectors": [("text_area", "emb-text")],
    "Similarity": [("text_area", "emb-sentences")],
    "Semantic search": [("text_input", "emb-query")],
    "Map": [("text_input", "emb-map-words")],
    "Static vs contextual": [
        ("text_area", "emb-context"),
        ("text_input", "emb-word"),
        ("text_input", "emb-context-words"),
        *(("text_input", f"emb-{name}") for name in ("a", "b", "c", "expected")),
    ],
    "Classify": [("text_area", "emb-examples"), ("text_area", "emb-new")],
}


def test_embeddings_page():
    at = _open("embeddings")
    for tab, widgets in EMBEDDING_TABS.items():
        at.session_state["emb-tab"] = tab
        at.run()
        assert not at.exception and not at.error, tab
        kept = {"emb-tab": tab}
        for kind, key in widgets:
            _sweep_text(at, kind, key, kept)
        _sweep_numbers(at, kept)
    # A pasted corpus: every bad text as the whole corpus, then searched and mapped.
    at.session_state["emb-tab"] = "Semantic search"
    at.run()
    at.radio(key="emb-source").set_value("My own sentences").run()
    _sweep_text(at, "text_area", "emb-own", {"emb-source": "My own sentences"})
    at.text_area(key="emb-own").set_value(TEXTS["1MB"]).run()
    at.session_state["emb-tab"] = "Map"
    at.run()
    _check(at, {"emb-own": TEXTS["1MB"]}, "map of a 1MB corpus")
    assert any("cut at its first 256 tokens" in i.value for i in at.info)


def test_training_page():
    at = _open("training")
    at.radio(key="train-source").set_value("My own text").run()
    kept = {"train-source": "My own text"}
    _sweep_text(at, "text_area", "train-own", kept)
    at.radio(key="train-tokenizer").set_value("bpe").run()
    _sweep_numbers(at, kept)
    at.radio(key="train-budget").set_value("Number of steps").run()
    _sweep_numbers(at, kept)
    # Train pressed on bad text: a clear message, the text still in its box, no run started.
    at.selectbox(key="train-preset").set_value("tiny").run()
    for label in ("empty", "whitespace", "nul+control", "lone surrogate", "script", "md link"):
        at.text_area(key="train-own").set_value(TEXTS[label])
        at.button(key="train-start").click().run()
        _check(at, {**kept, "train-own": TEXTS[label]}, f"train <- {label}")
        assert at.error and "train-job" not in at.session_state, label


BAD_NUMBERS = [-1, -1e9, math.nan, math.inf, -math.inf, 10**12, 1e300, True, "3"]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize(
    ("strategy", "name"),
    [
        ("greedy", "max_new_tokens"),
        ("greedy", "repetition_penalty"),
        ("greedy", "no_repeat_ngram_size"),
        ("sample", "temperature"),
        ("sample", "seed"),
        ("top_k", "top_k"),
        ("top_p", "top_p"),
        ("min_p", "min_p"),
        ("beam", "num_beams"),
        ("beam", "length_penalty"),
    ],
)
def test_decoding_settings_refuse_bad_numbers(strategy, name, value):
    if name == "seed" and value == 10**12:
        pytest.skip("a large seed is a valid seed")
    if name == "length_penalty" and value == -1:
        pytest.skip("a negative length penalty is allowed (it favours short beams)")
    tally["tried"] += 1
    with pytest.raises(ValueError, match=name):
        decoding.validate_settings(strategy, **{name: value})
    tally["passed"] += 1


FILTER_CASES = [
    (name, value)
    for name in ("temperature", "top_p", "min_p", "top_k", "repetition_penalty")
    for value in (-1.0, math.nan, math.inf, -math.inf)
] + [("top_p", 1e300), ("min_p", 1e300), ("top_k", -5), ("top_k", 2.5)]


@pytest.mark.parametrize(("name", "value"), FILTER_CASES, ids=repr)
def test_filters_refuse_bad_numbers(name, value):
    """A huge temperature is a valid (flat) one; probabilities above 1 and negatives are not."""
    tally["tried"] += 1
    with pytest.raises(ValueError, match=name):
        filters.build_filters(**{name: value})
    with pytest.raises(ValueError, match=name):
        nt.waterfall(torch.zeros(8), **{name: value})
    tally["passed"] += 1


@pytest.mark.parametrize("text", ["\ud800", "x\udfffy", "ok \ud83d"], ids=repr)
def test_lone_surrogates_are_refused_by_name(smollm2, text):
    """The browser never sends one, but a library caller can: a ValueError, not a TypeError."""
    tally["tried"] += 1
    with pytest.raises(ValueError, match="prompt"):
        nt.next_token_distribution(smollm2, text)
    with pytest.raises(ValueError, match="prompt"):
        decoding.prepare_prompt(smollm2, text, 2)
    tally["passed"] += 1


@pytest.mark.parametrize("label", [k for k in TEXTS if k not in ("empty", "whitespace", "1MB")])
def test_odd_text_runs_in_the_library(smollm2, label):
    """Control characters, marks and markup are ordinary text to the model."""
    tally["tried"] += 1
    distribution = nt.next_token_distribution(smollm2, TEXTS[label])
    assert torch.isfinite(distribution.logits).all()
    text, ids, budget, _ = decoding.prepare_prompt(smollm2, TEXTS[label], 2)
    assert text == TEXTS[label] and ids and budget == 2
    tally["passed"] += 1


def test_zz_every_input_passed():
    print(f"\nhostile inputs: tried {tally['tried']}, passed {tally['passed']}")
    assert tally["tried"] > 0 and tally["tried"] == tally["passed"]


def test_decoding_branches_and_ladder():
    """With a tree of branches on the page, hostile prompts and extreme numbers keep it; the
    ladder takes the same prompts and numbers without a traceback."""
    at = _open("decoding")
    at.selectbox(key="dec-model").set_value(MODEL).run()
    at.slider(key="dec-max-new").set_value(3).run()
    at.button(key="dec-generate").click().run()
    at.button_group(key="dec-chip-0").set_value(1).run()
    at.button(key="dec-branch-go").click().run()
    assert not at.exception and not at.error
    tree = at.session_state["dec-tree"]
    assert len(tree) == 2
    kept = {"dec-tree": tree, "dec-branches": tree.branch_texts()}
    _sweep_text(at, "text_area", "dec-prompt", kept)
    for label in ("empty", "whitespace", "1MB"):  # refused before any run: the tree stays
        at.text_area(key="dec-prompt").set_value(TEXTS[label])
        at.button(key="dec-generate").click().run()
        _check(at, kept, f"dec-prompt + Generate with branches <- {label}")
    _sweep_numbers(at, kept, skip={"dec-max-new"})
    at.text_area(key="dec-prompt").set_value("Once upon a time").run()
    at.segmented_control(key="dec-mode").set_value("Temperature ladder").run()
    at.slider(key="dec-max-new").set_value(2).run()
    for label in ("nul+control", "lone surrogate", "zero-width joiner", "script", "img onerror"):
        at.text_area(key="dec-prompt").set_value(TEXTS[label])
        at.button(key="dec-generate").click().run()
        _check(at, {}, f"ladder: dec-prompt + Generate <- {label}")
        assert "dec-ladder-result" in at.session_state, label
    kept = {"dec-ladder-result": at.session_state["dec-ladder-result"]}
    for label in ("empty", "1MB"):
        at.text_area(key="dec-prompt").set_value(TEXTS[label])
        at.button(key="dec-generate").click().run()
        _check(at, kept, f"ladder: dec-prompt + Generate <- {label}")
    at.multiselect(key="dec-ladder").set_value([]).run()
    at.text_area(key="dec-prompt").set_value("Hi").run()
    at.button(key="dec-generate").click().run()
    _check(at, kept, "ladder: no temperature")
    assert any("at least one temperature" in w.value for w in at.warning)
    _sweep_numbers(at, kept, skip={"dec-max-new"})


def test_class_page(tmp_path, monkeypatch, smollm2):
    monkeypatch.setenv("LLMLAB_DATABASE_URL", f"sqlite:///{tmp_path / 'classes.db'}")
    at = _open("class")
    _sweep_text(at, "text_input", "cls-join-code", {}, click="cls-join")
    at.text_input(key="cls-join-code").set_value("")
    _sweep_text(at, "text_input", "cls-name", {}, click="cls-join")
    for label, text in TEXTS.items():  # each title starts a class (or is refused) anew
        at = _open("class")
        at.text_input(key="cls-title").set_value(text)
        at.button(key="cls-start").click().run()
        _check(at, {}, f"cls-title <- {label}")
    teacher = {"cls-code": at.session_state["cls-code"], "cls-key": at.session_state["cls-key"]}
    _sweep_text(at, "text_area", "cls-guess-prompt", teacher, click="cls-open")
    at.text_area(key="cls-guess-prompt").set_value("The capital of France is")
    at.button(key="cls-open").click().run()
    student = AppTest.from_file(APP_PATH, default_timeout=240).run()
    student.switch_page("app_pages/class.py").run()
    student.text_input(key="cls-join-code").set_value(teacher["cls-code"])
    student.button(key="cls-join").click().run()
    [box] = [w.key for w in student.text_input if w.key.startswith("cls-answer-")]
    kept = {"cls-student": student.session_state["cls-student"]}
    for label, text in TEXTS.items():  # a refused guess leaves the form; an accepted one ends it
        if student.session_state["cls-student"] and box not in [w.key for w in student.text_input]:
            break
        student.text_input(key=box).set_value(text)
        student.button(key=f"{box}-send").click().run()
        _check(student, kept, f"{box} <- {label}")
