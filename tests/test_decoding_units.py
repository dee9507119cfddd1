"""Decoding pieces that need no model: validation, repetition measures, no-repeat-n-gram, charts."""

from __future__ import annotations

import pytest
import torch
from transformers import NoRepeatNGramLogitsProcessor

from llmlab import charts
from llmlab.generation import decoding
from llmlab.generation.decoding import BeamState, Candidate, StepRecord
from llmlab.generation.repetition import (
    NoRepeatNGram,
    distinct_n,
    longest_repeated_ngram,
    repetition_stats,
)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        (dict(strategy="nucleus"), "strategy"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=513), "max_new_tokens"),
        (dict(max_new_tokens=2.5), "max_new_tokens"),
        (dict(strategy="sample", temperature=0), "temperature"),
        (dict(strategy="sample", temperature=float("nan")), "temperature"),
        (dict(strategy="top_k", top_k=0), "top_k"),
        (dict(strategy="top_k", top_k=True), "top_k"),
        (dict(strategy="top_p", top_p=0), "top_p"),
        (dict(strategy="top_p", top_p=1.01), "top_p"),
        (dict(strategy="min_p", min_p=-0.1), "min_p"),
        (dict(strategy="beam", num_beams=1), "num_beams"),
        (dict(strategy="beam", num_beams=9), "num_beams"),
        (dict(strategy="beam", length_penalty=float("inf")), "length_penalty"),
        (dict(strategy="beam", early_stopping="always"), "early_stopping"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
        (dict(strategy="sample", seed=-1), "seed"),
        (dict(top_candidates=0), "top_candidates"),
    ],
)
def test_invalid_settings_name_the_argument(settings, name):
    with pytest.raises(ValueError, match=rf"^{name}=") as error:
        decoding.validate_settings(**settings)
    assert "allowed" in str(error.value)


def test_generate_validates_before_loading_anything():
    # An unknown model name would fail later: the settings error comes first, without any load.
    with pytest.raises(ValueError, match="cap of 512"):
        decoding.generate("no-such-model", "hi", max_new_tokens=1000)


def test_settings_keep_only_what_the_strategy_uses():
    assert "temperature" not in decoding.validate_settings("greedy", temperature=0.5)
    beam = decoding.validate_settings("beam", num_beams=4, early_stopping="never")
    assert beam["num_beams"] == 4 and beam["early_stopping"] == "never" and "top_p" not in beam


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([], ([], [])),
        ([1], ([], [])),
        ([1, 1], ([1], [0, 1])),
        ([1, 2, 3, 4], ([], [])),
        ([1, 2, 1, 2, 1], ([1, 2, 1], [0, 2])),
        ([5, 1, 2, 3, 9, 1, 2, 3, 7], ([1, 2, 3], [1, 5])),
    ],
)
def test_longest_repeated_ngram(tokens, expected):
    assert longest_repeated_ngram(tokens) == expected


def test_longest_repeated_ngram_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        tokens = torch.randint(0, 4, (40,), generator=generator).tolist()
        best = 0
        for i in range(len(tokens)):
            for j in range(i + 1, len(tokens)):
                n = 0
                while j + n < len(tokens) and tokens[i + n] == tokens[j + n]:
                    n += 1
                best = max(best, n)
        assert len(longest_repeated_ngram(tokens)[0]) == best


def test_distinct_and_stats():
    assert distinct_n([1, 2, 3, 1], 1) == 0.75
    assert distinct_n([1, 2, 1, 2], 2) == pytest.approx(2 / 3)
    assert distinct_n([1], 2) == 0.0
    stats = repetition_stats([3, 3, 3, 3])
    assert (stats.distinct_1, stats.distinct_2, stats.longest_repeat_length) == (0.25, 1 / 3, 3)
    with pytest.raises(ValueError, match="n must be"):
        distinct_n([1, 2], 0)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_no_repeat_ngram_equals_transformers(size):
    generator = torch.Generator().manual_seed(size)
    ids = torch.randint(0, 6, (3, 25), generator=generator)
    scores = torch.randn(3, 6, generator=generator)
    ours = NoRepeatNGram(size)(scores, ids)
    theirs = NoRepeatNGramLogitsProcessor(size)(ids, scores.clone())
    assert torch.equal(ours, theirs)
    assert not torch.isinf(scores).any()  # the input is never changed


def test_no_repeat_ngram_validation():
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        NoRepeatNGram(0)


def _candidates() -> list[Candidate]:
    return [
        Candidate(1, " the", 5.0, 0.5, 0.625, True),
        Candidate(2, " a", 4.0, 0.3, 0.375, True),
        Candidate(3, "<b>", 3.0, 0.2, 0.0, False),
    ]


def test_candidates_figure_marks_chosen_and_cut_off():
    figure = charts.candidates_figure(_candidates(), chosen_id=2, title="step 1")
    before, after = figure.data
    assert list(after.x) == [0.625, 0.375, 0.0]
    assert list(after.marker.color) == [charts.KEPT, charts.CHOSEN, charts.REMOVED]
    assert figure.layout.shapes[0].y0 == 1.5  # between the last kept and the first removed
    assert list(before.x) == [0.5, 0.3, 0.2]


def test_beam_tree_figure_places_every_branch():
    steps = [
        StepRecord(0, [], 1, " a", 0.5, 0.5, "", beams=[
            BeamState([1], " a", -0.7, True, None), BeamState([2], " b", -1.2, True, None),
            BeamState([3], " c", -2.0, False, None), BeamState([4], "", -2.5, False, None, True),
        ]),
        StepRecord(1, [], 5, " d", 0.5, 0.5, "", beams=[
            BeamState([1, 5], " a d", -1.0, True, 0), BeamState([2, 6], " b e", -1.5, True, 1),
            BeamState([1, 7], " a f", -3.0, False, 0), BeamState([2, 8], " b g", -3.1, False, 1),
        ]),
    ]  # fmt: skip
    figure = charts.beam_tree_figure(steps, greedy_tokens=[" a", " d"])
    by_name = {trace.name: trace for trace in figure.data}
    assert len(by_name["live beam"].x) == 4 and len(by_name["pruned"].x) == 3
    assert len(by_name["finished"].x) == 1 and list(by_name["greedy path"].x) == [0, 1]
    edges = by_name["branches"]
    # The step-2 branch " b g" (row 3) hangs from live beam 1 of step 1 (row 1): y -1 -> -3.
    assert (edges.x[-3], edges.y[-3], edges.x[-2], edges.y[-2]) == (0, -1.0, 1, -3.0)


def test_token_chips_escape_and_colour():
    html = charts.token_chips_html(["<script>", " x"], [0.9, 0.1], ["step 1", "step 2"])
    assert "<script>" not in html and "&lt;script&gt;" in html and "·x" in html
    assert charts.probability_color(0.9) in html and 'title="step 2: p = 10.0%"' in html


def test_repetition_figure():
    figure = charts.repetition_figure(
        ["greedy", "top_p"], [repetition_stats([1, 1]), repetition_stats([1, 2])]
    )
    assert list(figure.data[0].y) == [0.5, 1.0]


# --- a stream advanced from two threads ---------------------------------------------------------


def test_a_stream_advanced_from_two_threads_gives_each_step_once():
    """A page left mid-run: its old thread and the next run both advance the same stream."""
    import threading
    import time
    from types import SimpleNamespace

    from llmlab.generation.engine import Request

    request = Request(stepper=SimpleNamespace(rows=1))

    def engine_steps():  # what an engine posts: a step at a time, the end with the last one
        for step in range(12):
            time.sleep(0.02)  # long enough for the other reader to arrive mid-wait
            end = "length" if step == 11 else None
            advance = SimpleNamespace(record=step, finish=end, outcome=None, if_stopped=None)
            request.post(("step", advance), *([("done", None)] if step == 11 else []))

    finished = []
    stream = decoding.GenerationStream(
        request, None, None, lambda seen, reason, outcome: finished.append(reason) or "result"
    )
    threading.Thread(target=engine_steps).start()
    seen: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def consume(name: str) -> None:
        try:
            seen[name].extend(stream)
        except BaseException as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(name,)) for name in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert sorted(seen["a"] + seen["b"]) == list(range(12))
    assert seen["a"] == sorted(seen["a"]) and seen["b"] == sorted(seen["b"])
    assert stream.result == "result" and finished == ["length"]
