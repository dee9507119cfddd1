"""Our decoding loop against transformers' `model.generate`, on both offline models.

Generations are short (8-12 new tokens) so the suite stays fast; the references are computed in
the same run with the same model object, so both sides use the same weights and dtype.
"""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmlab.generation import decoding
from llmlab.generation.decoding import IncrementalDecoder, generate, iter_generate

PROMPTS = ["Once upon a time", "안녕하세요 🙂", "def add(a, b):\n    return"]


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def reference(loaded, prompt, new_tokens: int, **settings) -> list[int]:
    """transformers' own generate on the same prompt ids (what our loop must reproduce)."""
    ids = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    output = loaded.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, **settings
    )
    return output[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_generate(loaded, prompt):
    ours = generate(loaded, prompt, "greedy", max_new_tokens=8)
    assert ours.new_ids == reference(loaded, prompt, 8, do_sample=False)
    assert len(ours.steps) == len(ours.new_ids)
    assert ours.finish_reason in ("length", "eos")


@pytest.mark.parametrize(
    ("model", "num_beams", "length_penalty", "early_stopping", "prompt"),
    [
        ("smollm2", 2, 1.0, False, "Once upon a time"),
        ("gemma", 3, 0.0, True, "What is 2+2?"),
        ("smollm2", 4, -1.0, "never", "def add(a, b):\n    return"),
        ("gemma", 5, 1.0, False, "Once upon a time"),
    ],
)
def test_beam_search_equals_generate(
    request, model, num_beams, length_penalty, early_stopping, prompt
):
    loaded = request.getfixturevalue(model)
    settings = dict(
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping
    )
    ours = generate(loaded, prompt, "beam", max_new_tokens=6, **settings)
    assert ours.new_ids == reference(loaded, prompt, 6, do_sample=False, **settings)
    live = [beam for beam in ours.steps[0].beams if beam.kept]
    assert len(live) == num_beams and len(ours.steps[0].beams) == 2 * num_beams


@pytest.mark.parametrize(("early_stopping", "length_penalty"), [(True, 1.0), (False, 2.0)])
def test_beam_search_with_finished_hypotheses_equals_generate(
    smollm2, early_stopping, length_penalty
):
    """With "." as a second end-of-sequence id, hypotheses finish within a few tokens: then the
    finished-beam rules (length normalisation, early stopping, 3 x num_beams candidates for two
    end ids) decide the answer. Both sides read the same generation config."""
    config = smollm2.model.generation_config
    original = config.eos_token_id
    period = smollm2.tokenizer.convert_tokens_to_ids(".")
    config.eos_token_id = [2, period]
    try:
        settings = dict(num_beams=3, length_penalty=length_penalty, early_stopping=early_stopping)
        prompt = "The cat sat on the mat"
        ours = generate(smollm2, prompt, "beam", max_new_tokens=10, **settings)
        assert ours.new_ids == reference(smollm2, prompt, 10, do_sample=False, **settings)
        assert len(ours.steps[0].beams) == 9
    finally:
        config.eos_token_id = original
    assert any(beam.finished for step in ours.steps for beam in step.beams)
    if early_stopping is True:  # with length_penalty 2 a longer unfinished text may win instead
        assert ours.finish_reason == "eos" and ours.new_ids[-1] == period


@pytest.mark.parametrize(
    ("strategy", "settings"),
    [
        ("greedy", dict(repetition_penalty=1.5, no_repeat_ngram_size=3)),
        ("beam", dict(num_beams=3, repetition_penalty=1.3, no_repeat_ngram_size=2)),
    ],
)
def test_repetition_controls_equal_generate(loaded, strategy, settings):
    ours = generate(loaded, "the the the the", strategy, max_new_tokens=8, **settings)
    assert ours.new_ids == reference(loaded, "the the the the", 8, do_sample=False, **settings)


@pytest.mark.parametrize(
    ("strategy", "ours", "theirs"),
    [
        ("top_p", dict(top_p=0.8, temperature=0.7), dict(top_p=0.8, temperature=0.7, top_k=0)),
        ("top_k", dict(top_k=5, temperature=1.2), dict(top_k=5, temperature=1.2, top_p=1.0)),
        ("min_p", dict(min_p=0.05), dict(min_p=0.05, top_k=0, top_p=1.0)),
    ],
)
def test_sampling_equals_generate_with_the_same_seed(smollm2, strategy, ours, theirs):
    """Our generator seeded with s draws what transformers draws after torch.manual_seed(s)."""
    result = generate(smollm2, "Once upon a time", strategy, max_new_tokens=10, seed=7, **ours)
    torch.manual_seed(7)
    assert result.new_ids == reference(smollm2, "Once upon a time", 10, do_sample=True, **theirs)


def test_sampling_is_reproducible_and_seed_dependent(gemma):
    runs = [
        generate(gemma, "Suggest a party theme.", "sample", max_new_tokens=8, seed=s)
        for s in (1, 1, 2, 3)
    ]
    assert runs[0].new_ids == runs[1].new_ids
    assert len({tuple(r.new_ids) for r in runs}) >= 3


@pytest.mark.parametrize(
    ("settings", "warpers"),
    [
        (dict(temperature=0.7, top_p=0.9), [TemperatureLogitsWarper(0.7), TopPLogitsWarper(0.9)]),
        (dict(temperature=1.5, top_k=20), [TemperatureLogitsWarper(1.5), TopKLogitsWarper(20)]),
        (dict(temperature=1.0, min_p=0.1), [MinPLogitsWarper(0.1)]),
    ],
)
def test_filtered_distributions_equal_transformers_warpers(gemma, settings, warpers):
    strategy = next(name for name in ("top_p", "top_k", "min_p") if name in settings)
    valid = decoding.validate_settings(strategy, **settings)
    ids = torch.tensor([gemma.tokenizer("The capital of France is")["input_ids"]])
    logits = gemma.model(ids).logits[:, -1, :].float()
    ours = decoding.run_processors(decoding.build_processors(valid, strategy), logits, ids)
    theirs = LogitsProcessorList(warpers)(ids, logits)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert torch.allclose(torch.softmax(ours, -1), torch.softmax(theirs, -1), atol=1e-7)


@pytest.mark.parametrize(
    ("strategy", "settings"),
    [
        ("greedy", {}),
        ("top_k", dict(top_k=5)),
        ("top_p", dict(top_p=0.5, top_candidates=100)),
        ("min_p", dict(min_p=0.2, top_candidates=100)),
        ("beam", dict(num_beams=2)),
    ],
)
def test_step_records_are_consistent(smollm2, strategy, settings):
    result = generate(smollm2, "Suggest a party theme.", strategy, max_new_tokens=6, **settings)
    assert [s.chosen_id for s in result.steps][: len(result.new_ids)] == result.new_ids[
        : len(result.steps)
    ]
    for step in result.steps:
        chosen = [c for c in step.candidates if c.token_id == step.chosen_id]
        assert len(chosen) == 1 and chosen[0].kept
        assert 0 < step.chosen_prob <= 1 and 0 < step.chosen_prob_before <= 1
        assert all(c.prob_after == 0 for c in step.candidates if not c.kept and strategy != "beam")
        if strategy in ("top_k", "top_p", "min_p"):
            # Every kept token is among the recorded candidates: their probabilities sum to 1.
            assert math.isclose(sum(c.prob_after for c in step.candidates), 1.0, abs_tol=1e-5)
        logits = [c.logit for c in step.candidates[: settings.get("top_candidates", 10)]]
        assert logits == sorted(logits, reverse=True)
    if strategy == "top_k":
        assert all(sum(c.kept for c in s.candidates) == 5 for s in result.steps)
    if strategy != "beam":
        assert "".join(s.text_delta for s in result.steps) == result.text


def test_streaming_gives_the_same_steps_as_generate(gemma):
    stream = iter_generate(gemma, "What is 2+2?", "top_p", max_new_tokens=6, seed=3)
    streamed = [step.chosen_id for step in stream]
    whole = generate(gemma, "What is 2+2?", "top_p", max_new_tokens=6, seed=3)
    assert streamed == whole.new_ids == stream.result.new_ids
    assert whole.token_probs == [s.chosen_prob for s in whole.steps]


@pytest.mark.parametrize(
    "text", ["", "🙂🎉 party", "안녕하세요 세계", "naïve café\n\tdef f(): pass", "long " * 200]
)
def test_incremental_decoding_keeps_characters_whole(smollm2, gemma, text):
    for loaded in (smollm2, gemma):
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        decoder = IncrementalDecoder(loaded.tokenizer)
        deltas = [decoder.push(i) for i in ids]
        assert "".join(deltas) == loaded.tokenizer.decode(ids)
        assert not any("\ufffd" in delta for delta in deltas)


def test_stop_callback_ends_the_run_after_the_steps_its_reader_saw(smollm2):
    # The engine may run ahead of a slow reader; a stopped result still holds exactly the
    # steps that were handed out, as if the loop had run in the reader's thread.
    seen = []
    stream = iter_generate(
        smollm2, "Once upon a time", max_new_tokens=20, stop=lambda: len(seen) >= 3
    )
    for step in stream:
        seen.append(step)
        time.sleep(0.05)  # a slow reader: the engine has made more steps by now
    result = stream.result
    assert result.finish_reason == "stopped" and len(result.new_ids) == 3
    assert (
        result.new_ids
        == [step.chosen_id for step in seen]
        == generate(smollm2, "Once upon a time", max_new_tokens=3).new_ids
    )


def test_context_window_cuts_or_refuses(smollm2):
    small = dataclasses.replace(smollm2, facts=dataclasses.replace(smollm2.facts, context_length=8))
    result = generate(small, "Once upon a time", max_new_tokens=10)  # 4 prompt tokens
    assert len(result.new_ids) == 4 and result.finish_reason == "context"
    assert "Only 4 new tokens fit" in result.notices[0]
    with pytest.raises(ValueError, match="reads at most 8"):
        generate(small, "one two three four five six seven eight nine", max_new_tokens=1)


def test_empty_and_invalid_prompts_are_refused(smollm2):
    with pytest.raises(ValueError, match="prompt=''"):
        generate(smollm2, "")
    with pytest.raises(ValueError, match="outside"):
        generate(smollm2, [10**7])
