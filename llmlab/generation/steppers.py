"""What one request does with its scores at each step: choose, record, say what comes next.

The engine runs the model for every request at once; a *stepper* holds everything that belongs
to one request alone: its filters, its seeded `torch.Generator`, the text so far and the step
records. Given its rows' next-token logits it returns an `Advance`: the step's record, the
tokens its rows feed next (or that it is done) and, for beam search, which of its rows each row
continues from.

`TokenStepper` serves greedy decoding and the sampling strategies (one row); `BeamStepper` in
`llmlab.generation.beam` serves beam search (one row per beam).

The engine steps many token steppers at once: `advance_together` runs the filters, softmax,
argmax and the top candidates of the records as one tensor operation over every row with the
same settings (same `group_key`), so 32 rows cost a few operations instead of 32 times each.
A row gets the very numbers it gets alone: each of these operations works on each row by
itself, and a stepper alone goes through the same function with one row.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> tokenizer = SimpleNamespace(decode=lambda ids, **kw: "".join(f"<{i}>" for i in ids))
    >>> stepper = TokenStepper(tokenizer, [1, 2], budget=2, strategy="greedy",
    ...                        settings={"top_candidates": 2}, eos=[0])
    >>> first = stepper.advance(torch.tensor([[0.0, 3.0, 1.0]]))
    >>> first.record.chosen_id, first.next_tokens
    (1, [1])
    >>> stepper.advance(torch.tensor([[5.0, 0.0, 1.0]])).finish  # token 0 ends the text
    'eos'
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch

from llmlab.generation.filter_steps import entropy_bits
from llmlab.generation.filters import TopP
from llmlab.generation.records import (
    Candidate,
    IncrementalDecoder,
    StepRecord,
    TokenText,
    top_ids,
)
from llmlab.generation.sampling import draw, draw_clear
from llmlab.generation.settings import SAMPLING, build_processors, run_processors

# Filters that read the row's own text so far run row by row; the others act on each row alone
# (temperature, top-k, top-p, min-p), so rows that share their settings are filtered together.
OWN_TEXT_FILTERS = ("repetition_penalty", "no_repeat_ngram_size")


@dataclass
class Advance:
    """What a request did with one step's logits."""

    record: StepRecord
    next_tokens: list[int] | None  # one per row for the next forward pass; None when done
    parents: list[int] | None = None  # beams: the row (of this request) each row continues
    finish: str | None = None  # when done: "eos" or "length"
    outcome: dict[str, Any] | None = None  # beams, when done: the best finished hypothesis
    if_stopped: dict[str, Any] | None = None  # beams: the result if stopped after this step


class TokenStepper:
    """Greedy and sampling: one row, one token per step (the same arithmetic as `generate`)."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: list[int],
        budget: int,
        strategy: str,
        settings: dict[str, Any],
        eos: list[int],
        device: torch.device | str = "cpu",
        forced: list[int] | None = None,
    ):
        self.prompts = [list(prompt_ids)]  # one row
        self.budget = budget
        self.settings = settings
        self.eos = eos
        self.chain = build_processors(settings, strategy)
        self.own_chain = [p for p in self.chain if p.name in OWN_TEXT_FILTERS]
        self.shared_chain = [p for p in self.chain if p.name not in OWN_TEXT_FILTERS]
        # Own-text filters come first in the chain (transformers' order), so splitting it keeps
        # the order.
        assert self.chain == self.own_chain + self.shared_chain
        self.generator = None
        if strategy in SAMPLING:
            self.generator = torch.Generator(device=device).manual_seed(settings["seed"])
        self.token_text = TokenText(tokenizer)
        self.decoder = IncrementalDecoder(tokenizer, skip_ids=tuple(eos))
        # The whole sequence so far (the filters look at it), allocated once for the whole run.
        self.sequence = torch.zeros((1, len(prompt_ids) + budget), dtype=torch.long)
        self.sequence[0, : len(prompt_ids)] = torch.tensor(prompt_ids, dtype=torch.long)
        self.length = len(prompt_ids)
        self.step = 0
        # Tokens imposed at the first steps (a branch): each step still makes its usual choice,
        # so a seeded generator makes the same draw as in the run being branched, and then
        # the imposed token takes the drawn one's place.
        self.forced = list(forced or [])
        if len(self.forced) > budget:
            raise ValueError(
                f"forced has {len(self.forced)} tokens but only {budget} new tokens are allowed"
            )

    @property
    def rows(self) -> int:
        return 1

    @property
    def group_key(self) -> Hashable:
        """Steppers with equal keys are advanced together: same shared filters (and values),
        same kind of choice, same number of candidates in the records."""
        filters = tuple(
            (type(p).__name__, tuple(sorted(vars(p).items()))) for p in self.shared_chain
        )
        return (self.generator is None, filters, self.settings["top_candidates"])

    def advance(self, logits: torch.Tensor, probs_before: torch.Tensor | None = None) -> Advance:
        """Choose this step's token from `logits` (1, vocab); `probs_before` is their softmax,
        when the caller has it already (the engine takes one softmax for every row at once)."""
        advance = advance_together([self], logits, probs_before)[0]
        if isinstance(advance, Exception):
            raise advance
        return advance

    def finish_step(
        self, chosen: int, candidates: list[Candidate], entropy: float | None = None
    ) -> Advance:
        """Take `chosen` as this step's token and say what comes next; `entropy` (bits) is that
        of the distribution it was drawn from."""
        self.sequence[0, self.length] = chosen
        self.length += 1
        record = StepRecord.for_choice(
            self.step, candidates, chosen, self.decoder.push(chosen), entropy=entropy
        )
        self.step += 1
        if chosen in self.eos:
            return Advance(record, None, finish="eos")
        if self.step >= self.budget:
            return Advance(record, None, finish="length")
        return Advance(record, [chosen])


def advance_together(
    steppers: list[TokenStepper], logits: torch.Tensor, probs_before: torch.Tensor | None = None
) -> list[Advance | Exception]:
    """Advance steppers of one `group_key` by one step; row i of `logits` (rows, vocab) is
    stepper i's. `probs_before` is the rows' softmax, when the caller has it already.

    Returns each stepper's `Advance`, or the exception its own last part (the record and the
    text) raised; an error in the shared work is raised before any stepper has moved, though
    a seeded generator may have drawn (the caller can put it back)."""
    first = steppers[0]
    assert all(s.group_key == first.group_key for s in steppers), "one group at a time"
    raw = logits
    if probs_before is None:
        probs_before = torch.softmax(raw, dim=-1)
    changed = any(s.own_chain for s in steppers) or bool(first.shared_chain)
    scores = raw
    if any(s.own_chain for s in steppers):
        scores = torch.cat([
            run_processors(s.own_chain, raw[i : i + 1], s.sequence[:, : s.length])
            if s.own_chain else raw[i : i + 1]
            for i, s in enumerate(steppers)
        ])  # fmt: skip
    # A sampled row whose top-p cut falls inside a run of equal scores is cut without a full
    # sort (see `TopP.each_row`) and settled below only if the tie could change its draw or its
    # record: that sort is most of a step's choosing on a large vocabulary.
    ties: dict[int, torch.Tensor] = {}
    last = first.shared_chain[-1] if first.shared_chain else None
    nucleus = last if isinstance(last, TopP) and first.generator is not None else None
    before_cut = scores
    for processor in first.shared_chain:
        if processor is nucleus:
            before_cut, scores = scores, nucleus.each_row(scores, ties)
        else:
            each_row = getattr(processor, "each_row", None)
            scores = each_row(scores) if each_row is not None else processor(scores)
    probs_after = torch.softmax(scores, dim=-1) if changed else probs_before
    count = first.settings["top_candidates"]
    top = top_ids(raw, min(count, raw.shape[-1]))  # the records' candidates
    if first.generator is None:
        chosen = greedy_choice(scores, top if scores is raw else None)
    else:
        chosen = []
        for i, stepper in enumerate(steppers):
            token = None
            doubtful = ties.get(i)
            if doubtful is not None:
                if stepper.step >= len(stepper.forced) and not bool(
                    torch.isin(top.indices[i], doubtful).any()
                ):
                    token = draw_clear(probs_after[i], stepper.generator, doubtful)
                if token is None:  # the tie could matter: cut this row as transformers does
                    scores[i] = nucleus.settle(before_cut[i])
                    probs_after[i] = torch.softmax(scores[i : i + 1], dim=-1)[0]
            chosen.append(token if token is not None else draw(probs_after[i], stepper.generator))
    # A branch's imposed tokens take the place of the ones just chosen (the draw was made).
    chosen = [
        s.forced[s.step] if s.step < len(s.forced) else c
        for s, c in zip(steppers, chosen, strict=True)
    ]
    # Each row's entropy is summed over that row alone, so a row's number does not depend on
    # which rows share its batch (a sum over a whole (rows, vocab) tensor may add in another
    # order, and an elementwise pass over it may split it between threads elsewhere).
    entropies = [entropy_bits(row) for row in probs_after]
    tables = candidate_tables(raw, probs_before, probs_after, scores, chosen, count,
                              top=top.indices)  # fmt: skip
    advances: list[Advance | Exception] = []
    for stepper, token, entropy, (ids, table) in zip(
        steppers, chosen, entropies, tables, strict=True
    ):
        try:  # from here on each row is its own: a failure is that row's alone
            advances.append(
                stepper.finish_step(token, candidates_of(ids, table, stepper.token_text), entropy)
            )
        except Exception as error:  # noqa: BLE001 - handed to the caller in the row's place
            advances.append(error)
    return advances


def steps_alone(stepper: Any) -> bool:
    """True for a stepper the engine must ask by itself: beams, or one with its own `advance`."""
    return (
        not isinstance(stepper, TokenStepper) or type(stepper).advance is not TokenStepper.advance
    )


def greedy_choice(scores: torch.Tensor, top: Any = None) -> list[int]:
    """Each row's highest-scoring token, as `torch.argmax` picks it (the first one on a tie).

    `top` is `top_ids(scores, k)` (or `torch.topk`) when the caller has it (k >= 2): a row
    whose best score is strictly above its second is answered from it, which saves a pass over
    the vocabulary; rows with a tie at the top (or NaN) are asked of `argmax` itself.

        >>> scores = torch.tensor([[0.0, 2.0, 1.0], [3.0, 1.0, 3.0]])
        >>> greedy_choice(scores, torch.topk(scores, 2)), greedy_choice(scores)
        ([1, 0], [1, 0])
    """
    if top is None or top.values.shape[-1] < 2:
        return torch.argmax(scores, dim=-1).tolist()
    first, second = top.values[:, 0], top.values[:, 1]
    clear = (first > second).tolist()  # False on a tie or a NaN
    chosen = top.indices[:, 0].tolist()
    unclear = [row for row, ok in enumerate(clear) if not ok]
    if unclear:
        picks = torch.argmax(scores[unclear], dim=-1).tolist()
        for row, pick in zip(unclear, picks, strict=True):
            chosen[row] = pick
    return chosen


def candidate_tables(
    logits: torch.Tensor,
    probs_before: torch.Tensor,
    probs_after: torch.Tensor,
    scores: torch.Tensor,
    chosen: list[int],
    count: int,
    top: torch.Tensor | None = None,
) -> list[tuple[list[int], list[list[float]]]]:
    """Each row's top `count` token ids by raw logit (and its chosen one, if it ranked lower),
    with their logit, probability before and after the filters and filtered score.

    One `topk` and one `.tolist()` for every row, instead of a copy per number.

        >>> logits = torch.tensor([[3.0, 1.0, 2.0]])
        >>> probs = torch.softmax(logits, -1)
        >>> candidate_tables(logits, probs, probs, logits, [1], 1)[0][0]
        [0, 1]
    """
    if top is None:  # (rows, count)
        top = top_ids(logits, min(count, logits.shape[-1])).indices
    wanted = torch.tensor(chosen, dtype=torch.long)[:, None]
    ids = torch.cat([top, wanted], dim=-1)  # (rows, count + 1); the last column maybe dropped
    table = torch.stack([t.gather(-1, ids) for t in (logits, probs_before, probs_after, scores)])
    present = (top == wanted).any(dim=-1).tolist()
    out = []
    for row, (row_ids, raw, before, after, kept) in enumerate(
        zip(ids.tolist(), *table.tolist(), strict=True)
    ):
        width = len(row_ids) - 1 if present[row] else len(row_ids)
        out.append((row_ids[:width], [raw[:width], before[:width], after[:width], kept[:width]]))
    return out


def candidates_of(
    ids: list[int], table: list[list[float]], token_text: TokenText
) -> list[Candidate]:
    raw, before, after, kept = table
    return [
        Candidate(
            i, token_text(i), raw[n], before[n], after[n], kept[n] > -math.inf, token_text.note(i)
        )
        for n, i in enumerate(ids)
    ]
