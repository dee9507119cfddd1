"""Byte fragments are named the same way in every candidate list, as on the Tokenizers page.

A token that is only part of a UTF-8 character decodes to "\ufffd" on its own. Every list of
tokens (Next-Token chart and table, the step explorer, the beam tree, the logit lens, the CSV
files, Architecture's guesses) names it by its bytes in hex with a note saying which part of a
character they are.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from app_helpers import page_from_link

from llmlab import charts, exports
from llmlab import forward_pass as fp
from llmlab.generation import next_token as nt
from llmlab.generation.decoding import generate
from llmlab.tokenization import fragment_note, load, token_label, token_name, visible_label

# Prompts whose next token is, among the top 20, part of a character. SmolLM2 splits the pizza
# emoji into bytes and expects another emoji; Gemma 3 has whole tokens for most emoji but not
# for Egyptian hieroglyphs (4 bytes each, like an emoji), which it writes byte by byte.
PROMPTS = {"smollm2": "I love pizza 🍕", "gemma": "Hieroglyphs: 𓀀𓀁𓀂𓀃"}
ZOO_NAMES = {"smollm2": "smollm2", "gemma": "gemma-3"}


@pytest.fixture(params=["smollm2", "gemma"])
def model(request):
    return request.param, request.getfixturevalue(request.param)


def _fragments(labels_and_notes):
    return [(label, note) for label, note in labels_and_notes if note]


def _check(labels_and_notes):
    """No list shows "\ufffd"; at least one fragment, each as hex bytes with its note."""
    pairs = list(labels_and_notes)
    assert all("\ufffd" not in label for label, _ in pairs), pairs
    fragments = _fragments(pairs)
    assert fragments, pairs
    for label, note in fragments:
        assert label.rstrip(">").split("<")[-1].replace(" ", "").isalnum(), label
        assert note.startswith("byte fragment: "), note
    return fragments


def test_notes_say_which_part_of_a_character():
    assert fragment_note(b"\xf0") == "byte fragment: start of a 4-byte character (often an emoji)"
    assert fragment_note(b"\xe4\xb8").startswith("byte fragment: the first 2 bytes of a 3-byte")
    assert "2-byte character" in fragment_note(b"\xc3")
    assert fragment_note(b"\x80") == (
        "byte fragment: 1 continuation byte (the middle or end of a longer character)"
    )
    assert "never appears in UTF-8" in fragment_note(b"\xff")


def test_labels_match_the_tokenizers_page(model):
    """Each token of the prompt: the label (whitespace made visible) equals the Tokenizers page's
    chip, and the note equals the chip's explanation."""
    key, loaded = model
    text = PROMPTS[key]
    pieces = [p for p in load(ZOO_NAMES[key]).pieces(text)]
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [p.id for p in pieces] == ids
    names = [token_name(loaded.tokenizer, i) for i in ids]
    assert [visible_label(n.label) for n in names] == [p.label() for p in pieces]
    assert [n.note for n in names] == [p.note() for p in pieces]
    assert any(n.fragment for n in names)


def test_next_token_chart_table_and_csv(model):
    key, loaded = model
    distribution = nt.next_token_distribution(loaded, PROMPTS[key])
    flow = nt.waterfall(distribution.logits, top_p=0.9)
    rows = nt.candidates(flow, loaded.tokenizer, 20)
    fragments = _check((r.text, r.note) for r in rows)
    first = next(r for r in rows if r.note)
    assert first.text == token_label(loaded.tokenizer, first.token_id)
    assert loaded.tokenizer.decode([first.token_id]).endswith("\ufffd")  # what lists showed
    figure = charts.next_token_bars(
        [r.text for r in rows], [r.probability for r in rows],
        [r.final_probability for r in rows], [r.removed_by for r in rows],
        notes=[r.note for r in rows],
    )  # fmt: skip
    assert any(fragments[0][1] in hover for hover in figure.data[0].hovertext)


def test_step_explorer_and_tokens_csv(model):
    """A top-p run's first step (where SmolLM2 listed '\ufffd' at 4.6% before)."""
    key, loaded = model
    result = generate(loaded, PROMPTS[key], strategy="top_p", max_new_tokens=2, seed=0)
    step = result.steps[0]
    _check((c.token, c.note) for c in step.candidates)
    figure = charts.candidates_figure(step.candidates, step.chosen_id)
    note = next(c.note for c in step.candidates if c.note)
    assert any(note in hover for hover in figure.data[0].hovertext)
    assert all("\ufffd" not in label for label in figure.data[0].y)
    frame = exports.generation_frame(result)
    csv = pd.read_csv(io.StringIO(exports.table_csv(frame)), keep_default_na=False)
    assert csv["token"].tolist() == [token_label(loaded.tokenizer, i) for i in result.new_ids]
    assert csv["byte fragment"].tolist() == [
        token_name(loaded.tokenizer, i).note for i in result.new_ids
    ]


def test_beam_tree(smollm2):
    result = generate(smollm2, PROMPTS["smollm2"], strategy="beam", num_beams=3, max_new_tokens=2)
    beams = [beam for step in result.steps for beam in step.beams]
    assert any(beam.text.endswith("\ufffd") for beam in beams)  # an emoji not yet finished
    assert all("\ufffd" not in beam.label for beam in beams)
    unfinished = next(beam for beam in beams if beam.text.endswith("\ufffd"))
    assert unfinished.label.endswith(">") and "<F0 9F" in unfinished.label
    figure = charts.beam_tree_figure(result.steps)
    texts = [t for trace in figure.data if trace.text for t in trace.text]
    assert texts and all("\ufffd" not in t for t in texts)
    _check((c.token, c.note) for step in result.steps for c in step.candidates)


def test_logit_lens(model):
    key, loaded = model
    lens = nt.logit_lens(loaded, PROMPTS[key], top=5)
    pairs = [
        (label, note)
        for labels, notes in zip(lens.tokens, lens.notes, strict=True)
        for label, note in zip(labels, notes, strict=True)
    ]
    _check(pairs)
    figure = charts.logit_lens_heatmap(
        lens.layers, lens.tokens, lens.probabilities, notes=lens.notes
    )
    assert "%{customdata}" in figure.data[0].hovertemplate


def test_architecture_guesses_and_prompt_tokens(model):
    key, loaded = model
    trace = fp.forward_trace(loaded.model, loaded.tokenizer, PROMPTS[key], top=20)
    labels = [label for label, _ in trace.next_tokens] + trace.prompt.tokens
    assert all("\ufffd" not in label for label in labels)
    assert any(token_name(loaded.tokenizer, i).fragment for i in trace.prompt.ids)


def test_next_token_page_shows_fragments_in_table_and_csv(monkeypatch, smollm2):
    frames = []
    table_csv = exports.table_csv
    monkeypatch.setattr(exports, "table_csv", lambda f: frames.append(f) or table_csv(f))
    at = page_from_link(
        "next_token", {"prompt": PROMPTS["smollm2"], "model": "smollm2-135m-instruct"}
    )
    assert not at.exception
    shown = next(t.value for t in at.dataframe if "byte fragment" in t.value.columns)
    assert "\ufffd" not in "".join(shown["token"])
    assert "<F0 9F>" in set(shown["token"])  # as the Tokenizers page draws it: hex spaces kept
    assert any(shown["byte fragment"].str.startswith("byte fragment"))
    exact = next(f for f in frames if "probability after filters" in f.columns)
    csv = pd.read_csv(io.StringIO(table_csv(exact)), keep_default_na=False)
    notes = dict(zip(csv["token"], csv["byte fragment"], strict=True))
    assert notes["<F0 9F>"].startswith("byte fragment: the first 2 bytes of a 4-byte")
