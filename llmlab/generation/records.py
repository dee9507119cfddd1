"""What a generation leaves behind, as plain data: a record per step and the whole result.

Every strategy fills in the same records, so a page, a CSV export or a notebook reads a greedy
run, a sampled run and a beam search the same way.

    >>> Candidate(11, " Paris", 14.2, 0.62, 0.62, True).kept
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from llmlab.tokenization.pieces import token_name


@dataclass
class Candidate:
    """One possible next token at a step, before and after the filters."""

    token_id: int
    token: str
    logit: float  # the model's raw score
    prob_before: float  # softmax of the raw logits
    prob_after: float  # after repetition penalty, temperature and the cut-offs (0 if removed)
    kept: bool  # False when a filter removed it (or, for beams, the branch was pruned)
    note: str = ""  # what a byte fragment is ("" for a token with text of its own)


@dataclass
class BeamState:
    """One branch of a beam search after a step."""

    tokens: list[int]  # the branch's new tokens (prompt excluded)
    text: str
    score: float  # cumulative log-probability of the new tokens
    kept: bool  # True: continues into the next step; False: pruned (or finished)
    parent: int | None  # index of the live beam it extends in the previous step (None: prompt)
    finished: bool = False  # ended with the end-of-sequence token (a finished hypothesis)
    label: str = ""  # `text`, with trailing bytes of an unfinished character in hex ("<F0 9F>")


@dataclass
class StepRecord:
    """What happened when one token was chosen."""

    step: int
    candidates: list[Candidate]  # the top candidates by raw logit (+ the chosen one)
    chosen_id: int
    chosen_token: str
    chosen_prob: float  # its probability in the distribution it was drawn from
    chosen_prob_before: float  # its probability before any filter
    text_delta: str  # new text this step adds (whole characters only; "" for beam search)
    beams: list[BeamState] | None = None  # beam search: live beams first, then pruned ones
    # How spread out the distribution the token was drawn from is, in bits (None for beams):
    # 0 = one certain token; log2(vocab) = every token equally likely.
    entropy: float | None = None

    @classmethod
    def for_choice(
        cls,
        step: int,
        candidates: list[Candidate],
        chosen: int,
        text_delta: str,
        beams: list[BeamState] | None = None,
        entropy: float | None = None,
    ) -> StepRecord:
        """The record of a step whose chosen token is among `candidates`."""
        mine = next(c for c in candidates if c.token_id == chosen)
        return cls(
            step=step,
            candidates=candidates,
            chosen_id=chosen,
            chosen_token=mine.token,
            chosen_prob=mine.prob_after,
            chosen_prob_before=mine.prob_before,
            text_delta=text_delta,
            beams=beams,
            entropy=entropy,
        )


@dataclass
class GenerationResult:
    """A whole generation: the new text, the new ids and a record per step."""

    prompt: str
    prompt_ids: list[int]
    text: str  # the new text only (the end-of-sequence token is not shown)
    new_ids: list[int]  # the new token ids (an end-of-sequence token included, as generate does)
    steps: list[StepRecord]
    strategy: str
    settings: dict[str, Any]
    finish_reason: str  # "eos" | "length" | "context" | "stopped"
    notices: list[str] = field(default_factory=list)
    token_probs: list[float] = field(default_factory=list)  # per new token, when it was chosen
    tokens: list[str] = field(default_factory=list)  # each new token as text
    seconds: float = 0.0
    model: str = ""  # the model's name, so the run can be continued (`llmlab.branch`)
    dtype: str = ""


class TokenText:
    """Token ids -> readable strings, remembered (a run asks for the same ids again and again).

    A token that is only part of a character (a piece of an emoji) is named by its bytes in hex,
    as on the Tokenizers page: `llmlab.tokenization.token_name`.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._names: dict[int, Any] = {}  # this run's own, read without a lock

    def _name(self, token_id: int) -> Any:
        token_id = int(token_id)
        name = self._names.get(token_id)
        if name is None:
            name = self._names[token_id] = token_name(self.tokenizer, token_id)
        return name

    def __call__(self, token_id: int) -> str:
        return self._name(token_id).label

    def note(self, token_id: int) -> str:
        return self._name(token_id).note

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def label(self, ids: list[int]) -> str:
        """`text(ids)`, with the bytes of a character still unfinished at the end in hex."""
        text = self.text(ids)
        if not text.endswith("\ufffd"):
            return text
        cut = len(ids)
        while cut and token_name(self.tokenizer, ids[cut - 1]).fragment:
            cut -= 1
        return self.text(ids[:cut]) + "".join(self(i) for i in ids[cut:])


class IncrementalDecoder:
    """Turn a growing list of ids into text deltas that hold whole characters only.

    An emoji can span several byte-level tokens; decoding a lone one gives "\ufffd". So each
    step decodes a short window twice (up to the last emitted token, and with the new ones) and
    emits the difference only once it no longer ends in a replacement character. Decoding the
    same window start twice also keeps tokenizers that strip a leading space consistent.

        >>> from types import SimpleNamespace
        >>> fake = SimpleNamespace(decode=lambda ids, **kw: "".join(map(str, ids)))
        >>> decoder = IncrementalDecoder(fake)
        >>> decoder.push(1), decoder.push(2)
        ('1', '2')
    """

    def __init__(self, tokenizer: Any, skip_ids: tuple[int, ...] = ()):
        self.tokenizer = tokenizer
        self.skip_ids = set(skip_ids)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        if token_id in self.skip_ids:
            return ""
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=False)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=False)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before) :]
        return ""


def record_candidates(
    logits: torch.Tensor,
    probs_before: torch.Tensor,
    probs_after: torch.Tensor,
    scores: torch.Tensor,
    chosen: int,
    count: int,
    token_text: TokenText,
) -> list[Candidate]:
    """The top ``count`` candidates by raw logit (and the chosen one, if it ranked lower).

    All numbers leave the tensors in a single `.tolist()`: one copy instead of dozens of `.item()`.
    """
    top = top_ids(logits[None], min(count, logits.shape[-1])).indices[0]
    if not bool((top == chosen).any()):
        top = torch.cat([top, top.new_tensor([chosen])])
    table = torch.stack([logits[top], probs_before[top], probs_after[top], scores[top]])
    ids = top.tolist()
    raw, before, after, kept_scores = table.tolist()
    return [
        Candidate(
            i, token_text(i), raw[n], before[n], after[n], kept_scores[n] > -math.inf,
            token_text.note(i),
        )
        for n, i in enumerate(ids)
    ]  # fmt: skip


class Top(NamedTuple):
    """The best scores of each row, high to low, and their token ids (as `torch.topk` gives)."""

    values: torch.Tensor
    indices: torch.Tensor


_CHUNK = 256  # `top_ids` first finds each run of this many scores' highest
_RUNS_FROM = 32_768  # vocabularies from this size are looked at run by run


def top_ids(scores: torch.Tensor, k: int) -> Top:
    """The `k` highest scores of each row of (rows, vocab) float32 `scores` and their ids,
    high to low: the scores `torch.topk` gives, each row found from that row alone.

    On a large vocabulary (SmolLM2's 49,152, Gemma 3's 262,144) `torch.topk` over every score
    is most of the records' cost; here it runs only over the k runs of 256 scores with the
    highest maxima. No score left out can beat the k-th best: the k runs taken hold k scores
    at least as high as any maximum left out. One can only equal it, so among equal scores
    another order, or another one of them at the k-th place, may come than a `torch.topk` of
    the whole row gives: the row alone decides which.

        >>> top_ids(torch.tensor([[1.0, 3.0, 0.0, 2.0]]), 2)
        Top(values=tensor([[3., 2.]]), indices=tensor([[1, 3]]))
    """
    rows, vocab = scores.shape
    if vocab < _RUNS_FROM or vocab <= _CHUNK * k:
        best = torch.topk(scores, k, dim=-1)
        return Top(best.values, best.indices)
    padded = scores
    if vocab % _CHUNK:
        padded = F.pad(scores, (0, -vocab % _CHUNK), value=-math.inf)
    runs = padded.view(rows, -1, _CHUNK)
    run_ids = torch.topk(runs.amax(dim=-1), k, dim=-1).indices  # NaN runs first, as topk's
    values = runs.gather(1, run_ids[:, :, None].expand(rows, k, _CHUNK)).reshape(rows, -1)
    best = torch.topk(values, k, dim=-1)
    positions = run_ids.gather(-1, best.indices // _CHUNK) * _CHUNK + best.indices % _CHUNK
    return Top(best.values, positions)
