"""Next-token library against transformers: logits, filters, surprisal, logit lens, caching."""

from __future__ import annotations

import math

import pytest
import torch
from numerics import float32_softmax_tolerance, float32_sum_tolerance
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmlab import charts
from llmlab.generation import next_token as nt
from llmlab.generation.filters import TopP

PROMPTS = [
    "The capital of France is",
    "안녕하세요, 🙂",
    "def f(x):\n    return",
]


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("prompt", PROMPTS)
def test_distribution_matches_transformers(loaded, prompt):
    dist = nt.next_token_distribution(loaded, prompt)
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert dist.prompt_ids == ids[0].tolist()
    reference = loaded.model(ids).logits[0, -1].float()
    assert dist.logits.dtype == torch.float32
    assert torch.allclose(dist.logits, reference, atol=1e-4)
    assert int(dist.logits.argmax()) == int(reference.argmax())
    # float32 probabilities add up to S / S', S' the float32 normaliser: 1 within its rounding.
    exact = torch.softmax(dist.logits.double(), -1)
    total = float(dist.probabilities.double().sum())
    assert math.isclose(total, 1.0, abs_tol=float32_softmax_tolerance(exact))


def test_known_answer(smollm2):
    dist = nt.next_token_distribution(smollm2, "The capital of France is")
    assert smollm2.tokenizer.decode(int(dist.logits.argmax())) == " Paris"


def test_cache_means_one_forward_pass(smollm2):
    nt.clear_cache()
    calls, handle = count_forwards(smollm2.model)
    try:
        before = nt.forward_passes()
        dist = nt.next_token_distribution(smollm2, "Once upon a time")
        nt.prompt_surprisal(smollm2, "Once upon a time")
        nt.logit_lens(smollm2, "Once upon a time")  # reuses the stored hidden states
        assert len(calls) == 1 and nt.forward_passes() == before + 1
        for settings in [
            {"temperature": 0.3},
            {"temperature": 1.5, "top_k": 10},
            {"temperature": 0.7, "top_p": 0.8, "min_p": 0.05},
            {"temperature": 0},
            {"repetition_penalty": 1.3, "input_ids": dist.prompt_ids},
        ]:
            again = nt.next_token_distribution(smollm2, "Once upon a time")
            nt.candidates(nt.waterfall(again.logits, **settings), smollm2.tokenizer, 10)
        assert len(calls) == 1 and nt.forward_passes() == before + 1
    finally:
        handle.remove()


SETTINGS = [
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.3},
    {"temperature": 1.3, "top_p": 0.95},
    {"temperature": 0.5, "top_p": 0.5},
    {"temperature": 1.0, "min_p": 0.2},
    {"temperature": 2.0, "top_k": 5},
    {},
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())
)
def test_waterfall_final_distribution_matches_transformers(gemma, settings):
    dist = nt.next_token_distribution(gemma, "The capital of France is")
    ids = torch.tensor([dist.prompt_ids])
    steps = []
    if settings.get("repetition_penalty", 1.0) != 1.0:
        steps.append(RepetitionPenaltyLogitsProcessor(settings["repetition_penalty"]))
    if settings.get("temperature", 1.0) != 1.0:
        steps.append(TemperatureLogitsWarper(settings["temperature"]))
    if settings.get("top_k"):
        steps.append(TopKLogitsWarper(settings["top_k"]))
    if settings.get("top_p", 1.0) < 1.0:
        steps.append(TopPLogitsWarper(settings["top_p"]))
    if settings.get("min_p") is not None:
        steps.append(MinPLogitsWarper(settings["min_p"]))
    reference = LogitsProcessorList(steps)(ids, dist.logits[None].clone())[0].softmax(-1)
    flow = nt.waterfall(dist.logits, input_ids=dist.prompt_ids, **settings)
    got = flow.final_probabilities()
    assert torch.equal(got > 0, reference > 0)
    assert torch.allclose(got, reference, atol=1e-6)
    # The record adds up: survivors, removed counts, removed mass, entropy.
    assert flow.after.survivors == int((reference > 0).sum())
    for previous, step in zip(flow.steps, flow.steps[1:], strict=False):
        assert step.removed == previous.survivors - step.survivors
        assert 0.0 <= step.removed_mass <= 1.0
        total = float(step.probabilities.double().sum())  # 1 within the normaliser's rounding
        exact = torch.softmax(step.logits.double(), -1)
        assert math.isclose(total, 1.0, abs_tol=float32_softmax_tolerance(exact))
    assert math.isclose(flow.before.effective_choices, 2**flow.before.entropy_bits)


def test_greedy_keeps_the_argmax(gemma):
    dist = nt.next_token_distribution(gemma, "The capital of France is")
    flow = nt.waterfall(dist.logits, temperature=0, top_k=5)
    assert [s.name for s in flow.steps] == ["model", "greedy"]
    assert flow.after.survivors == 1 and flow.after.entropy_bits == 0.0
    assert int(flow.final_probabilities().argmax()) == int(dist.logits.argmax())


def test_candidates_table(smollm2):
    dist = nt.next_token_distribution(smollm2, "The capital of France is")
    rows = nt.candidates(nt.waterfall(dist.logits, top_k=3), smollm2.tokenizer, 10)
    probs, ids = torch.topk(dist.probabilities, 10)
    assert [r.token_id for r in rows] == ids.tolist()
    # Two float32 softmaxes of the same scores, one over them sorted: each sums in its own
    # order, so each is within the normaliser's rounding of the exact value.
    apart = 2 * float32_softmax_tolerance(torch.softmax(dist.logits.double(), -1))
    assert torch.allclose(torch.tensor([r.probability for r in rows]), probs, rtol=apart, atol=0)
    total = float(probs.sum())
    assert math.isclose(rows[-1].cumulative, total, rel_tol=apart + float32_sum_tolerance(10))
    assert [r.removed_by is None for r in rows] == [True] * 3 + [False] * 7
    assert rows[5].removed_by == "top-k 3" and rows[5].final_probability == 0.0
    assert math.isclose(sum(r.final_probability for r in rows[:3]), 1.0, rel_tol=1e-5)


def test_top_p_on_sorted_matches_transformers():
    logits = torch.sort(torch.randn(4, 1000, generator=torch.Generator().manual_seed(1)) * 3)[0]
    logits = logits.flip(-1)
    for p in (0.1, 0.5, 0.9, 0.99):
        expected = TopPLogitsWarper(p)(torch.zeros(4, 1, dtype=torch.long), logits.clone())
        assert torch.equal(TopP(p).on_sorted(logits), expected)
        assert torch.equal(TopP(p)(logits), expected)


@pytest.mark.parametrize(
    "text", ["The capital of France is Paris.", "def add(a, b):\n    return a + b 🙂 안녕"]
)
def test_surprisal_and_perplexity_match_transformers_loss(loaded, text):
    result = nt.prompt_surprisal(loaded, text)
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    output = loaded.model(ids, labels=ids)
    loss = float(output.loss)
    assert math.isclose(result.perplexity, math.exp(loss), rel_tol=1e-4)
    assert result.tokens[0].bits is None and len(result.tokens) == ids.shape[1]
    log_probs = torch.log_softmax(output.logits[0].float(), -1)
    for token in result.tokens[1:]:
        expected = float(log_probs[token.index - 1, token.token_id])
        assert math.isclose(token.bits, -expected / math.log(2), rel_tol=1e-4, abs_tol=5e-4)
        better = int((log_probs[token.index - 1] > expected).sum())
        assert token.rank == better + 1


def test_logit_lens_last_row_is_the_model_output(loaded):
    assert getattr(loaded.model.config, "final_logit_softcapping", None) is None
    lens = nt.logit_lens(loaded, "The capital of France is", top=5)
    assert len(lens.layers) == loaded.model.config.num_hidden_layers + 1
    dist = nt.next_token_distribution(loaded, "The capital of France is")
    expected = torch.topk(dist.probabilities, 5)
    assert lens.token_ids[-1] == expected.indices.tolist()
    assert torch.allclose(torch.tensor(lens.probabilities[-1]), expected.values, atol=1e-4)
    # A middle layer by hand: final norm + LM head on that layer's hidden state.
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    hidden = loaded.model(ids, output_hidden_states=True).hidden_states[3][0, -1]
    by_hand = loaded.model.lm_head(loaded.model.model.norm(hidden)).softmax(-1)
    assert lens.token_ids[3] == torch.topk(by_hand, 5).indices.tolist()
    figure = charts.logit_lens_heatmap(lens.layers, lens.tokens, lens.probabilities)
    assert len(figure.data[0].z) == len(lens.layers)


def test_guess(smollm2):
    dist = nt.next_token_distribution(smollm2, "The capital of France is")
    g = nt.guess(smollm2, dist.probabilities, "Paris")
    assert g.token_text == " Paris" and g.rank == 1 and g.whole_word
    assert math.isclose(g.probability, float(dist.probabilities.max()))
    long = nt.guess(smollm2, dist.probabilities, "Antidisestablishmentarianism")
    assert not long.whole_word and long.rank > 1
    with pytest.raises(ValueError, match="guess"):
        nt.guess(smollm2, dist.probabilities, "  ")


def test_empty_prompt_and_long_prompt(loaded):
    with pytest.raises(ValueError, match="prompt is empty"):
        nt.next_token_distribution(loaded, "")
    text = "one two three " * 20
    dist = nt.next_token_distribution(loaded, text, max_tokens=16)
    assert len(dist.prompt_ids) == 16 and "only the last" in dist.notice
    full = loaded.tokenizer(text)["input_ids"]
    assert dist.prompt_ids[-10:] == full[-10:]
    if loaded.tokenizer.bos_token_id == full[0]:
        assert dist.prompt_ids[0] == full[0]
    assert nt.next_token_distribution(loaded, "one two").notice is None


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_k": 0.5}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repetition_penalty": 1.2}, "input_ids"),
    ],
)
def test_waterfall_refuses_bad_values(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        nt.waterfall(torch.tensor([1.0, 2.0, 3.0]), **kwargs)


def test_entropy_bits():
    assert nt.entropy_bits(torch.tensor([1.0, 0.0])) == 0.0
    assert math.isclose(nt.entropy_bits(torch.full((8,), 1 / 8)), 3.0, rel_tol=1e-6)


def test_chart_builders_show_removed_tokens_grey():
    figure = charts.next_token_bars(
        ["·a", "·b", "·c"], [0.5, 0.3, 0.2], [0.625, 0.375, 0.0], [None, None, "top-k 2"]
    )
    bars = figure.data[0]
    assert list(bars.y) == [0.625, 0.375, 0.2]
    assert bars.marker.color[2] == charts.REMOVED and bars.marker.color[0] == charts.KEPT
    assert list(figure.data[1].y) == [0.5, 0.3, 0.2]
    flow = charts.filter_waterfall(["model", "top-k 2"], [3, 2], [0.0, 0.2], [1.5, 0.95])
    assert list(flow.data[0].y) == [3, 2] and list(flow.data[1].y) == [0.0, 0.2]
    bits = charts.surprisal_bars(["The", "·cat"], [None, 2.5], [None, 4])
    assert list(bits.data[0].y) == [0.0, 2.5]


def test_append_token(smollm2):
    paris = smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    assert (
        nt.append_token(smollm2, "The capital of France is", paris)
        == "The capital of France is Paris"
    )


def test_sample_token_is_seeded_and_never_draws_a_removed_token():
    probabilities = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    draws = [nt.sample_token(probabilities, seed) for seed in range(300)]
    assert set(draws) == {1, 3, 4}  # every kept token drawn, no removed one
    assert draws.count(3) > draws.count(4) > draws.count(1)
    for seed in (0, 1, 12345):
        generator = torch.Generator().manual_seed(seed)
        assert nt.sample_token(probabilities, seed) == int(
            torch.multinomial(probabilities, 1, generator=generator)
        )
    for bad in (-1, 2**31, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed="):
            nt.sample_token(probabilities, bad)
