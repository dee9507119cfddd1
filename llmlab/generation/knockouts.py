"""What if a part of the model were switched off? The next token before and after, and a sweep.

`knock_out_effect` compares the model's next-token distribution with and without some parts
(heads, attention layers, MLPs; see `llmlab.knockout`): how the top tokens' probabilities
change, and the KL divergence between the two distributions. `head_sweep` switches off each
head in turn and measures how far each one moves the prediction: which heads matter for this
prompt.

    >>> effect = knock_out_effect(loaded, "The capital of France is", [("mlp", 0)])  # doctest: +SKIP
    >>> effect.kl_bits > 0                                                         # doctest: +SKIP
    True

KL divergence (in bits) = sum over tokens of p(t) * log2(p(t) / q(t)), with p the model's own
distribution and q the one with the part switched off: 0 when nothing changed, and large when q
gives little probability to the tokens p expected.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llmlab import knockout
from llmlab.generation import next_token as nt
from llmlab.models import LoadedModel
from llmlab.tokenization.pieces import token_name

# The sweep runs about ten forward passes' worth of work on a short prompt, and its cost grows
# with the prompt's length: longer prompts are refused with a clear message.
SWEEP_MAX_TOKENS = 256
_sweeps: OrderedDict[tuple, HeadSweep] = OrderedDict()
_lock = threading.Lock()


@dataclass
class TokenChange:
    token_id: int
    token: str  # as every candidate list names it (byte fragments as hex)
    note: str  # what a byte fragment is, "" otherwise
    before: float  # probability with every part on
    after: float  # probability with the parts switched off
    rank_before: int  # 1 = the model's top guess
    rank_after: int

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass
class KnockOutEffect:
    parts: tuple  # the parts switched off, checked and sorted
    description: str  # the parts in words, e.g. "head 1 of layer 3"
    before: nt.NextTokenDistribution
    after: nt.NextTokenDistribution
    kl_bits: float  # KL(before || after) in bits
    changes: list[TokenChange]  # the top tokens before, then any new ones among the top after

    @property
    def top_changed(self) -> bool:
        """True when the most likely next token is not the same any more."""
        return int(self.before.logits.argmax()) != int(self.after.logits.argmax())


def kl_bits(before_logits: torch.Tensor, after_logits: torch.Tensor) -> float:
    """KL(p || q) in bits, p = softmax(before), q = softmax(after), computed in float64.

    >>> round(kl_bits(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])), 6)
    0.0
    >>> round(kl_bits(torch.tensor([0.0, 0.0]), torch.tensor([math.log(3), 0.0])), 4)  # 1/2, 1/2 vs 3/4, 1/4
    0.2075
    """
    return _kl_rows(before_logits[None], after_logits[None])[0].item()


def _kl_rows(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """KL in bits per row of two (rows, vocab) logit tables."""
    p_log = torch.log_softmax(before.double(), dim=-1)
    q_log = torch.log_softmax(after.double(), dim=-1)
    kl = (p_log.exp() * (p_log - q_log)).sum(dim=-1) / math.log(2)
    return kl.clamp_min(0.0)  # rounding can leave -1e-17 for identical rows


def _ranks(probabilities: torch.Tensor, ids: list[int]) -> list[int]:
    chosen = probabilities[ids]
    return ((probabilities[None, :] > chosen[:, None]).sum(dim=1) + 1).tolist()


def knock_out_effect(
    loaded: LoadedModel,
    prompt: str,
    knock_out: list | tuple,
    top: int = 10,
    max_tokens: int | None = None,
) -> KnockOutEffect:
    """The next-token distribution with every part on and with `knock_out` switched off.

    Two cached forward passes (`next_token_distribution`); `changes` lists the `top` most
    likely tokens before, then any token that enters the top `top` only after.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a whole number >= 1, got {top!r}")
    parts = knockout.check_parts(loaded.model, knock_out)
    if not parts:
        raise ValueError(
            "knock_out=[] switches nothing off; allowed: at least one part such as "
            "('head', 0, 0), ('attention', 0) or ('mlp', 0)"
        )
    before = nt.next_token_distribution(loaded, prompt, max_tokens)
    after = nt.next_token_distribution(loaded, prompt, max_tokens, knock_out=parts)
    first = torch.topk(before.probabilities, top).indices.tolist()
    later = [i for i in torch.topk(after.probabilities, top).indices.tolist() if i not in first]
    ids = first + later
    ranks_before = _ranks(before.probabilities, ids)
    ranks_after = _ranks(after.probabilities, ids)
    changes = []
    for n, token_id in enumerate(ids):
        name = token_name(loaded.tokenizer, token_id)
        changes.append(
            TokenChange(
                token_id, name.label, name.note, float(before.probabilities[token_id]),
                float(after.probabilities[token_id]), ranks_before[n], ranks_after[n],
            )
        )  # fmt: skip
    words = ", ".join(knockout.describe(p) for p in parts)
    return KnockOutEffect(
        parts, words, before, after, kl_bits(before.logits, after.logits), changes
    )


@dataclass
class HeadSweep:
    """Each head switched off in turn: how far it moves the next-token prediction."""

    model_name: str
    prompt_tokens: int
    kl_bits: list[list[float]]  # [layer][head]: KL(model || model without that head)
    top_token: int  # the model's own most likely next token
    top_label: str
    top_probability: float
    top_probability_after: list[list[float]]  # [layer][head]: that token's probability after
    new_top: list[list[int]]  # [layer][head]: the most likely token with that head off

    @property
    def layers(self) -> int:
        return len(self.kl_bits)

    @property
    def heads(self) -> int:
        return len(self.kl_bits[0]) if self.kl_bits else 0

    def ranked(self, n: int = 10) -> list[tuple[int, int, float]]:
        """The `n` heads that move the prediction most: (layer, head, KL in bits)."""
        cells = [
            (layer, head, value)
            for layer, row in enumerate(self.kl_bits)
            for head, value in enumerate(row)
        ]
        return sorted(cells, key=lambda cell: -cell[2])[:n]


def head_sweep(
    loaded: LoadedModel,
    prompt: str,
    max_tokens: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> HeadSweep:
    """Switch off every head in turn (one at a time) and measure the KL each one causes.

    The work below a head's layer is shared between its copies (`llmlab.knockout.sweep_heads`),
    so the whole sweep costs about as much as ten ordinary forward passes on a short prompt.
    Results are cached (a few recent prompts). `progress` gets the fraction done.
    """
    ids, _ = nt._encode(loaded, prompt, max_tokens)
    if not ids:
        raise ValueError("prompt gave no tokens: type a few words for the model to continue")
    if len(ids) > SWEEP_MAX_TOKENS:
        raise ValueError(
            f"prompt is {len(ids):,} tokens; the sweep over every head reads at most "
            f"{SWEEP_MAX_TOKENS} (allowed: a shorter prompt)"
        )
    key = (loaded.name, str(loaded.model.dtype), id(loaded.model), tuple(ids))
    with _lock:
        if key in _sweeps:
            _sweeps.move_to_end(key)
            return _sweeps[key]
    clean, knocked = knockout.sweep_heads(loaded.model, ids, progress)
    layers, heads, vocab = knocked.shape
    flat = knocked.reshape(layers * heads, vocab)
    kl = _kl_rows(clean.expand_as(flat), flat).reshape(layers, heads)
    top = int(clean.argmax())
    after = torch.softmax(flat, dim=-1)[:, top].reshape(layers, heads)
    new_top = flat.argmax(dim=-1).reshape(layers, heads)
    sweep = HeadSweep(
        loaded.name, len(ids), kl.tolist(), top, token_name(loaded.tokenizer, top).label,
        float(torch.softmax(clean, dim=-1)[top]), after.tolist(), new_top.tolist(),
    )  # fmt: skip
    with _lock:
        _sweeps[key] = sweep
        while len(_sweeps) > 8:
            _sweeps.popitem(last=False)
    return sweep
