"""The logits filters against transformers' own processors and warpers."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmlab.generation import filters
from llmlab.generation.filters import MinP, RepetitionPenalty, Temperature, TopK, TopP

INF = math.inf


def hand_built() -> dict[str, torch.Tensor]:
    """Small (batch, vocab) logits with the awkward cases: ties, -inf entries, one-hot, flat."""
    return {
        "ties": torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0, -2.0]]),
        "neg_inf": torch.tensor([[2.0, -INF, 1.5, -INF, 0.5, 0.0]]),
        "one_hot": torch.tensor([[0.0, 0.0, 50.0, 0.0, 0.0, 0.0]]),
        "flat": torch.zeros(1, 6),
        "negative": torch.tensor([[-1.0, -3.0, -0.5, -7.0, -2.0, -2.0]]),
        "batch": torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 0.0, 0.0, -INF, 1.0, 1.0]]),
    }


def random_logits(seed: int, batch: int = 3, vocab: int = 500) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=generator) * 3


CASES = [*hand_built().items()] + [(f"random{s}", random_logits(s)) for s in range(3)]

SETTINGS = [
    ("temperature", 0.3, Temperature, lambda v: TemperatureLogitsWarper(v)),
    ("temperature", 1.7, Temperature, lambda v: TemperatureLogitsWarper(v)),
    ("top_k", 1, TopK, lambda v: TopKLogitsWarper(v)),
    ("top_k", 3, TopK, lambda v: TopKLogitsWarper(v)),
    ("top_k", 10_000, TopK, lambda v: TopKLogitsWarper(v)),
    ("top_p", 0.05, TopP, lambda v: TopPLogitsWarper(v)),
    ("top_p", 0.5, TopP, lambda v: TopPLogitsWarper(v)),
    ("top_p", 0.9, TopP, lambda v: TopPLogitsWarper(v)),
    ("top_p", 1.0, TopP, lambda v: TopPLogitsWarper(v)),
    ("min_p", 0.0, MinP, lambda v: MinPLogitsWarper(v)),
    ("min_p", 0.1, MinP, lambda v: MinPLogitsWarper(v)),
    ("min_p", 0.9, MinP, lambda v: MinPLogitsWarper(v)),
    ("min_p", 1.0, MinP, lambda v: MinPLogitsWarper(v)),
]


@pytest.mark.parametrize("case_name,logits", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(
    "name,value,ours,theirs", SETTINGS, ids=[f"{s[0]}={s[1]}" for s in SETTINGS]
)
def test_warper_matches_transformers(case_name, logits, name, value, ours, theirs):
    before = logits.clone()
    dummy_ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)
    expected = theirs(value)(dummy_ids, logits.clone())
    got = ours(value)(logits)
    assert torch.equal(torch.isinf(got), torch.isinf(expected)), (case_name, name, value)
    finite = torch.isfinite(expected)
    assert torch.allclose(got[finite], expected[finite])
    assert torch.equal(logits, before), "a filter must not mutate its input"
    # One row, no batch dim: the same answer as row 0.
    single = ours(value)(logits[0])
    assert single.shape == logits[0].shape
    assert torch.equal(torch.isinf(single), torch.isinf(expected[0]))


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
@pytest.mark.parametrize("case_name,logits", CASES, ids=[c[0] for c in CASES])
def test_repetition_penalty_matches_transformers(case_name, logits, penalty):
    vocab = logits.shape[-1]
    # Repeated ids and ids at both ends of the vocabulary.
    seen = torch.tensor([0, 2, 2, vocab - 1, 1])
    input_ids = seen.unsqueeze(0).expand(logits.shape[0], -1)
    before = logits.clone()
    expected = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, logits.clone())
    got = RepetitionPenalty(penalty)(logits, input_ids)
    assert torch.equal(got, expected)
    assert torch.equal(logits, before)
    assert torch.equal(RepetitionPenalty(penalty)(logits[0], seen), expected[0])


def test_repetition_penalty_hand_computed():
    got = RepetitionPenalty(2.0)(torch.tensor([4.0, -1.0, 3.0]), torch.tensor([0, 1, 0]))
    assert got.tolist() == [2.0, -2.0, 3.0]


def test_top_k_keeps_ties_with_the_kth():
    got = TopK(2)(torch.tensor([3.0, 1.0, 1.0, 0.0]))
    assert got.tolist() == [3.0, 1.0, 1.0, -INF]


@pytest.mark.parametrize("seed", range(4))
def test_full_chain_matches_transformers_order(seed):
    logits = random_logits(seed, batch=2, vocab=300)
    input_ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(seed))
    reference = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.3),
            TemperatureLogitsWarper(0.8),
            TopKLogitsWarper(40),
            TopPLogitsWarper(0.9),
            MinPLogitsWarper(0.05),
        ]
    )(input_ids, logits.clone())
    chain = filters.build_filters(
        temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.3
    )
    assert [f.name for f in chain] == list(filters.FILTER_ORDER)
    got = filters.apply_filters(logits, chain, input_ids)
    assert torch.equal(torch.isinf(got), torch.isinf(reference))
    assert torch.allclose(got.softmax(-1), reference.softmax(-1))


def test_build_filters_skips_no_ops_like_transformers():
    assert filters.build_filters() == []
    off = filters.build_filters(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    assert off == []
    assert [f.name for f in filters.build_filters(temperature=None, min_p=0.0)] == ["min_p"]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"temperature": 0}, "greedy"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.01}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1.0}, "repetition_penalty"),
        ({"top_p": "high"}, "top_p"),
    ],
)
def test_invalid_values_name_argument_and_value(kwargs, needle):
    with pytest.raises(ValueError) as excinfo:
        filters.build_filters(**kwargs)
    message = str(excinfo.value)
    assert needle in message
    value = next(iter(kwargs.values()))
    assert str(value) in message or repr(value) in message


def test_classes_validate_directly():
    for make, bad in [(Temperature, 0.0), (TopK, 0), (TopP, 0), (MinP, 2), (RepetitionPenalty, 0)]:
        with pytest.raises(ValueError):
            make(bad)


def test_repetition_penalty_needs_ids_and_accepts_empty_history():
    with pytest.raises(ValueError, match="input_ids"):
        RepetitionPenalty(1.5)(torch.zeros(4))
    logits = torch.tensor([1.0, -1.0])
    assert torch.equal(RepetitionPenalty(1.5)(logits, torch.tensor([], dtype=torch.long)), logits)


def test_bad_logits_shape():
    with pytest.raises(ValueError, match="shape"):
        TopK(1)(torch.zeros(1, 2, 3))


@pytest.mark.parametrize("vocab", [49_152, 262_144])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("spread", [1.0, 3.0, 8.0])
def test_top_p_over_a_real_vocabulary_size_matches_transformers(vocab, top_p, spread):
    """Large vocabularies take the top-k path (no full sort) where it is safe: same result."""
    generator = torch.Generator().manual_seed(vocab + int(top_p * 100) + int(spread))
    logits = torch.randn(3, vocab, generator=generator) * spread
    logits[1] /= 4  # a flat row: its cut falls outside the top 1024, so the full sort decides
    ours = TopP(top_p)(logits)
    theirs = TopPLogitsWarper(top_p)(None, logits.clone())
    assert torch.equal(ours == -math.inf, theirs == -math.inf)
    assert torch.equal(ours[ours > -math.inf], theirs[theirs > -math.inf])


def test_top_p_sorts_a_row_with_torch_only_for_a_tie_at_the_cut(monkeypatch):
    """A row is cut from its sorted values; only equal scores on both sides of the cut need
    `torch.sort`'s own order of them, and then that order decides, as in transformers."""
    sorts = []
    by_sorting = TopP.by_sorting

    def counted(self, rows):
        sorts.append(rows.shape[0])
        return by_sorting(self, rows)

    monkeypatch.setattr(TopP, "by_sorting", counted)
    peaked = torch.zeros(1, 50_000)
    peaked[0, 5:15] = torch.arange(10, 0, -1).float() * 2
    peaked[0, 3] = 20.5  # not sorted high to low
    assert torch.equal(TopP(0.9)(peaked), TopPLogitsWarper(0.9)(None, peaked.clone()))
    assert not sorts
    flat = torch.zeros(1, 50_000)  # every score tied: the cut falls among them
    assert torch.equal(TopP(0.9)(flat), TopPLogitsWarper(0.9)(None, flat.clone()))
    assert sorts == [1]
    ties = {}
    TopP(0.9).each_row(flat, ties)
    assert torch.equal(ties[0], torch.arange(50_000))
