"""What one request does with its scores at each step: choose, record, say what comes next.

The engine runs the model for every request at once; a *stepper* holds everything that belongs
to one request alone: its filters, its seeded `torch.Generator`, the text so far and the step
records. Given its rows' next-token logits it returns an `Advance`: the step's record, the
tokens its rows feed next (or that it is done) and, for beam search, which of its rows each row
continues from.

`TokenStepper` serves greedy decoding and the sampling strategies (one row); `BeamStepper` in
`llmlab.generation.beam` serves beam search (one row per beam).

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
from dataclasses import dataclass
from typing import Any

import torch

from llmlab.generation.records import IncrementalDecoder, StepRecord, TokenText, record_candidates
from llmlab.generation.settings import SAMPLING, build_processors, run_processors


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

    def advance(self, logits: torch.Tensor, probs_before: torch.Tensor | None = None) -> Advance:
        """Choose this step's token from `logits` (1, vocab); `probs_before` is their softmax,
        when the caller has it already (the engine takes one softmax for every row at once)."""
        raw = logits[0]
        chain = self.chain
        scores = run_processors(chain, logits, self.sequence[:, : self.length])[0] if chain else raw
        probs_before = torch.softmax(raw, dim=-1) if probs_before is None else probs_before[0]
        probs_after = probs_before if scores is raw else torch.softmax(scores, dim=-1)
        if self.generator is None:
            chosen = int(torch.argmax(scores))
        else:
            chosen = int(torch.multinomial(probs_after, 1, generator=self.generator)[0])
        if self.step < len(self.forced):
            chosen = self.forced[self.step]
        self.sequence[0, self.length] = chosen
        self.length += 1
        candidates = record_candidates(
            raw, probs_before, probs_after, scores, chosen, self.settings["top_candidates"],
            self.token_text,
        )  # fmt: skip
        entropy = float(torch.special.entr(probs_after).sum()) / math.log(2)
        record = StepRecord.for_choice(
            self.step, candidates, chosen, self.decoder.push(chosen), entropy=entropy
        )
        self.step += 1
        if chosen in self.eos:
            return Advance(record, None, finish="eos")
        if self.step >= self.budget:
            return Advance(record, None, finish="length")
        return Advance(record, [chosen])
