"""Beam search, step by step, with the same arithmetic as transformers 5's `_beam_search`.

Instead of committing to one token per step, beam search keeps the ``num_beams`` best partial
texts ("beams"), ranked by the sum of their tokens' log-probabilities. Each step it extends every
beam by every token, keeps the best ``2 * num_beams`` continuations (so that enough stay alive even
if some end), continues the best ``num_beams`` that did not end, and files the ones that ended as
finished hypotheses, ranked by ``score / length ** length_penalty``:

* ``length_penalty > 0`` favours longer finished texts (a longer text's sum of log-probabilities
  is more negative; dividing by a larger length shrinks it), ``< 0`` favours shorter ones.
* ``early_stopping=True`` stops as soon as ``num_beams`` hypotheses are finished; ``False`` stops
  when the best live beam, divided by the current length, can no longer beat the worst finished
  one; ``"never"`` makes that estimate with the longest possible length instead.

Every tensor operation below mirrors transformers' (`torch.topk` on the same shapes, the same
``-1e9`` masks), so the chosen tokens are exactly those of ``model.generate(num_beams=...)``.

    >>> result = generate("gemma-3-270m", "Once upon a time", strategy="beam", num_beams=3,
    ...                   max_new_tokens=8)                                      # doctest: +SKIP
    >>> [b.kept for b in result.steps[0].beams]                                   # doctest: +SKIP
    [True, True, True, False, False, False]
"""

from __future__ import annotations

from typing import Any

import torch

from llmlab.generation.records import BeamState, StepRecord, TokenText, record_candidates
from llmlab.generation.settings import build_processors, run_processors
from llmlab.generation.steppers import Advance

BLOCKED = -1.0e9  # transformers' "impossible" score: large but finite, so sums stay ordered


def _gather(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Pick beams along dim 1: (1, beams, ...) with (1, chosen) -> (1, chosen, ...)."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


class BeamStepper:
    """Beam search for the engine: one row per beam, reordered after every step."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: list[int],
        budget: int,
        settings: dict[str, Any],
        eos: list[int],
    ):
        self.num_beams = num_beams = settings["num_beams"]
        self.length_penalty = settings["length_penalty"]
        self.early_stopping = settings["early_stopping"]
        self.settings = settings
        self.chain = build_processors(settings, "beam")
        self.eos = eos
        self.eos_tensor = torch.tensor(eos, dtype=torch.long)
        self.token_text = TokenText(tokenizer)
        # The prompt goes in once per beam, as transformers expands it: same batch, same numbers.
        self.prompts = [list(prompt_ids) for _ in range(num_beams)]

        self.prompt_len = prompt_len = len(prompt_ids)
        self.max_length = prompt_len + budget
        # Keep (eos count + 1) * num_beams continuations: even if the best num_beams all end,
        # enough live ones remain.
        self.keep = keep = max(2, 1 + len(eos)) * num_beams
        self.top_mask = torch.cat(
            [
                torch.ones(num_beams, dtype=torch.bool),
                torch.zeros(keep - num_beams, dtype=torch.bool),
            ]
        )
        fill = eos[0] if eos else -1
        self.running = torch.full((1, num_beams, self.max_length), fill, dtype=torch.long)
        self.running[:, :, :prompt_len] = torch.tensor(prompt_ids)
        self.finished_seqs = self.running.clone()
        # Only beam 0 is live at first (the others would duplicate it): they start at -1e9.
        self.running_scores = torch.zeros((1, num_beams))
        self.running_scores[:, 1:] = BLOCKED
        self.finished_scores = torch.full((1, num_beams), BLOCKED)
        self.is_finished = torch.zeros((1, num_beams), dtype=torch.bool)
        self.can_improve = torch.ones((1, 1), dtype=torch.bool)
        # Which beam each token came from (-1 = not generated) tells the length of a hypothesis.
        self.running_origin = torch.full((1, num_beams, budget), -1, dtype=torch.int32)
        self.finished_origin = self.running_origin.clone()
        # Each token's own log-probability, carried along to colour the final text by it.
        self.running_token_lp = torch.zeros((1, num_beams, budget))
        self.finished_token_lp = self.running_token_lp.clone()
        self.cur_len = prompt_len
        self.step = 0

    @property
    def rows(self) -> int:
        return self.num_beams

    def advance(self, logits: torch.Tensor, probs_before: torch.Tensor | None = None) -> Advance:
        """One beam-search step from the beams' logits (num_beams, vocab)."""
        num_beams, prompt_len, cur_len = self.num_beams, self.prompt_len, self.cur_len
        length_penalty, early_stopping = self.length_penalty, self.early_stopping
        running, running_scores = self.running, self.running_scores
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # (beams, vocab)
        log_probs = run_processors(self.chain, raw_log_probs, running[0, :, :cur_len])
        vocab = log_probs.shape[-1]
        totals = (log_probs + running_scores[0, :, None]).reshape(1, -1)  # (1, beams * vocab)

        # c. the best `keep` continuations over all beams
        top_scores, top_flat = torch.topk(totals, k=self.keep)
        top_parent = top_flat // vocab
        top_ids = top_flat % vocab
        top_seqs = _gather(running, top_parent)
        top_seqs[:, :, cur_len] = top_ids
        top_origin = _gather(self.running_origin, top_parent)
        top_origin[:, :, cur_len - prompt_len] = top_parent.to(torch.int32)
        top_token_lp = _gather(self.running_token_lp, top_parent)
        top_token_lp[:, :, cur_len - prompt_len] = log_probs.reshape(1, -1)[0, top_flat[0]]

        # d. which continuations end here (end-of-sequence token, or the length limit)
        hits = torch.isin(top_ids, self.eos_tensor) | (cur_len + 1 >= self.max_length)

        # e. the best num_beams that did not end continue
        live_scores = top_scores + hits.to(torch.float32) * BLOCKED
        next_live = torch.topk(live_scores, k=num_beams)[1]
        self.running = running = _gather(top_seqs, next_live)
        self.running_scores = running_scores = _gather(live_scores, next_live)
        self.running_origin = _gather(top_origin, next_live)
        self.running_token_lp = _gather(top_token_lp, next_live)

        # f. the ones that ended compete with earlier finished hypotheses, length-normalised
        just_finished = hits & self.top_mask[None, :]
        normalised = top_scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        all_full = torch.all(self.is_finished, dim=-1, keepdim=True) & (early_stopping is True)
        normalised = normalised + all_full.to(torch.float32) * BLOCKED
        normalised = normalised + (~self.can_improve).to(torch.float32) * BLOCKED
        normalised = normalised + (~just_finished) * BLOCKED
        merged_scores = torch.cat((self.finished_scores, normalised), dim=1)
        best = torch.topk(merged_scores, k=num_beams)[1]
        self.finished_seqs = _gather(torch.cat((self.finished_seqs, top_seqs), dim=1), best)
        self.finished_scores = finished_scores = _gather(merged_scores, best)
        self.finished_origin = _gather(torch.cat((self.finished_origin, top_origin), dim=1), best)
        self.finished_token_lp = _gather(
            torch.cat((self.finished_token_lp, top_token_lp), dim=1), best
        )
        self.is_finished = is_finished = _gather(
            torch.cat((self.is_finished, just_finished), dim=1), best
        )

        # g. the cache follows the beams: row i now holds the parent of live beam i
        parents = self.running_origin[0, :, cur_len - prompt_len].to(torch.long).tolist()
        self.cur_len = cur_len = cur_len + 1

        # Early-stop estimate: could the best live beam still beat the worst finished one?
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = self.max_length - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_possible = running_scores[:, :1] / (best_length**length_penalty)
        worst_finished = torch.where(
            is_finished, torch.min(finished_scores, dim=1, keepdim=True)[0], BLOCKED
        )
        self.can_improve = self.can_improve & torch.any(
            best_possible > worst_finished, dim=-1, keepdim=True
        )
        open_beam = not (bool(torch.all(is_finished)) and early_stopping is True)
        done = not (bool(self.can_improve.any()) and open_beam and not bool(torch.all(hits)))

        record = _step_record(
            self.step, logits, raw_log_probs, log_probs, top_parent, top_ids, top_scores,
            top_seqs, next_live, hits, self.eos_tensor, prompt_len, cur_len, self.settings,
            self.token_text,
        )  # fmt: skip
        self.step += 1
        if done:
            outcome = self.final_outcome()
            return Advance(record, None, finish=outcome["finish_reason"], outcome=outcome)
        # If the run is stopped after this step, its result is the best live beam so far.
        best_live = running[0, 0, prompt_len:cur_len].tolist()
        if_stopped = {
            "new_ids": best_live,
            "token_probs": self.running_token_lp[0, 0, : len(best_live)].exp().tolist(),
        }
        next_tokens = running[0, :, cur_len - 1].tolist()
        return Advance(record, next_tokens, parents=parents, if_stopped=if_stopped)

    def final_outcome(self) -> dict[str, Any]:
        """The best finished hypothesis, cut to its own length (transformers crops the same way)."""
        prompt_len = self.prompt_len
        length = int((self.finished_origin[0, 0] >= 0).sum())
        new_ids = self.finished_seqs[0, 0, prompt_len : prompt_len + length].tolist()
        return {
            "new_ids": new_ids,
            "token_probs": self.finished_token_lp[0, 0, :length].exp().tolist(),
            "finish_reason": "eos" if new_ids and new_ids[-1] in self.eos else "length",
            "beam_score": float(self.finished_scores[0, 0]),
        }


def _step_record(
    step: int,
    logits: torch.Tensor,
    raw_log_probs: torch.Tensor,
    log_probs: torch.Tensor,
    top_parent: torch.Tensor,
    top_ids: torch.Tensor,
    top_scores: torch.Tensor,
    top_seqs: torch.Tensor,
    next_live: torch.Tensor,
    hits: torch.Tensor,
    eos_tensor: torch.Tensor,
    prompt_len: int,
    cur_len: int,
    settings: dict[str, Any],
    token_text: TokenText,
) -> StepRecord:
    """The step as data: the tree's new level, and the candidates of the best continuation's
    parent beam (kept = that continuation is among the beams that survived this step)."""
    parents = top_parent[0].tolist()
    ids = top_ids[0].tolist()
    scores = top_scores[0].tolist()
    live = next_live[0].tolist()
    ended = (torch.isin(top_ids[0], eos_tensor)).tolist()
    order = live + [k for k in range(len(ids)) if k not in live]
    beams = []
    for k in order:
        tokens = top_seqs[0, k, prompt_len:cur_len].tolist()
        beams.append(
            BeamState(
                tokens=tokens,
                text=token_text.text(tokens),
                score=scores[k],
                kept=k in live and not ended[k],
                parent=None if step == 0 else parents[k],
                finished=ended[k],
                label=token_text.label(tokens),
            )
        )
    parent = parents[0]
    chosen = ids[0]
    surviving = {ids[k] for k in live if parents[k] == parent and not ended[k]}
    candidates = record_candidates(
        logits[parent],
        raw_log_probs[parent].exp(),
        torch.softmax(log_probs[parent], dim=-1),
        log_probs[parent],
        chosen,
        settings["top_candidates"],
        token_text,
    )
    for candidate in candidates:
        candidate.kept = candidate.token_id in surviving or candidate.token_id == chosen
    return StepRecord.for_choice(step, candidates, chosen, "", beams)
