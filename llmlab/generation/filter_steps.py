"""The filter waterfall: a next-token distribution after each sampling filter, step by step.

Temperature, top-k, top-p and min-p each remove a tail of the tokens sorted by score, in the
order Hugging Face transformers applies them. `waterfall` records what every step left and
what it cut (tokens, probability mass, entropy); `candidates` lists the top tokens and which
step removed each. Steps are cached, so moving one slider re-uses the steps before it.

>>> flow = waterfall(torch.tensor([0.0, 2.0, 1.0]), temperature=0.5, top_k=2)
>>> [(step.name, step.survivors) for step in flow.steps]
[('model', 3), ('temperature', 3), ('top_k', 2)]
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from llmlab.generation import filters as F
from llmlab.tokenization.pieces import token_label, token_name

_lock = threading.Lock()


@dataclass
class FilterStep:
    """The distribution after one filter, and what that filter did.

    Vectors are in the waterfall's order (most likely first, see `Waterfall.token_ids`) and
    keep only the surviving prefix: a filter always removes a tail of that order.
    """

    name: str  # "model", a `filters.FILTER_ORDER` name, or "greedy"
    label: str
    logits: torch.Tensor  # (survivors,)
    probabilities: torch.Tensor  # (survivors,), sums to 1
    survivors: int  # tokens with probability > 0
    removed: int  # tokens this step removed
    removed_mass: float  # probability (in the previous step's distribution) this step removed
    entropy_bits: float
    effective_choices: float  # 2 ** entropy: "as uncertain as a fair choice among this many"

    def probability(self, position: int) -> float:
        return float(self.probabilities[position]) if position < len(self.probabilities) else 0.0


@dataclass
class Waterfall:
    token_ids: torch.Tensor  # vocabulary ids, most likely first (after any repetition penalty)
    steps: list[FilterStep] = field(default_factory=list)

    @property
    def before(self) -> FilterStep:
        return self.steps[0]

    @property
    def after(self) -> FilterStep:
        return self.steps[-1]

    def final_probabilities(self) -> torch.Tensor:
        """The filtered distribution over the whole vocabulary, indexed by token id."""
        out = torch.zeros(len(self.token_ids))
        kept = self.after.probabilities
        out[self.token_ids[: len(kept)]] = kept
        return out


@dataclass
class Candidate:
    rank: int
    token_id: int
    text: str
    logit: float
    probability: float  # the model's own probability (temperature 1, no filters)
    cumulative: float
    final_probability: float  # after all filters, renormalised
    removed_by: str | None  # label of the step that removed it, None when kept
    note: str = ""  # what a byte fragment is ("" for a token with text of its own)


def entropy_bits(probabilities: torch.Tensor) -> float:
    """Shannon entropy in bits; zero-probability tokens contribute nothing.

    `p ln p` is taken with the vectorised logarithm (the same terms as `torch.special.entr`, in
    a third of the time), in one buffer rather than a fresh tensor for each pass; a removed
    token (p = 0) adds exactly 0.

    >>> round(entropy_bits(torch.tensor([0.5, 0.5, 0.0])), 6)  # float32: 1.0000000027
    1.0
    """
    p = probabilities.float()
    terms = p.clamp_min(torch.finfo(torch.float32).tiny)  # one buffer, worked in place
    terms.log_().mul_(p)
    return max(-float(terms.sum()) / math.log(2), 0.0)


def token_text(tokenizer: Any, token_id: int) -> str:
    """The text of one token; byte pieces of a longer character (emoji) show as hex bytes, as on
    the Tokenizers page (`llmlab.tokenization.token_label`)."""
    return token_label(tokenizer, token_id)


def _finite_prefix(logits: torch.Tensor) -> int:
    """How many leading entries of high-to-low logits are finite (a binary search, no scan)."""
    low, high = 0, len(logits)
    if high == 0 or logits[-1] != -math.inf:
        return high
    while low < high:
        middle = (low + high) // 2
        if logits[middle] == -math.inf:
            high = middle
        else:
            low = middle + 1
    return low


def _step(name: str, label: str, logits: torch.Tensor, previous: FilterStep | None) -> FilterStep:
    # Every filter removes a tail of the sorted order, so the survivors are a prefix and the
    # later filters only look at that (often tiny) prefix.
    survivors = _finite_prefix(logits)
    logits = logits[:survivors]
    probs = torch.softmax(logits, dim=-1)
    removed, mass = 0, 0.0
    if previous is not None:
        removed = previous.survivors - survivors
        mass = float(previous.probabilities[survivors:].sum()) if removed else 0.0
    h = entropy_bits(probs)
    return FilterStep(name, label, logits, probs, survivors, removed, mass, h, 2.0**h)


# Steps already computed, keyed by the logits and the chain of filters that led to them: moving
# the top-p slider re-uses the model, penalty, temperature and top-k steps before it.
_step_cache: OrderedDict[tuple, tuple[torch.Tensor, Any]] = OrderedDict()


def _cached(logits: torch.Tensor, key: tuple, compute):
    key = (id(logits), *key)
    with _lock:
        hit = _step_cache.get(key)
        if hit is not None and hit[0] is logits:  # the id alone could be a recycled one
            _step_cache.move_to_end(key)
            return hit[1]
    value = compute()
    with _lock:
        _step_cache[key] = (logits, value)
        while len(_step_cache) > 24:
            _step_cache.popitem(last=False)
    return value


def _sorted(logits: torch.Tensor, penalty: F.RepetitionPenalty | None, ids: torch.Tensor | None):
    """Penalised logits sorted high-to-low and their token ids (one ~100 ms sort, cached)."""
    base = logits.float() if penalty is None else penalty(logits.float(), ids)
    return torch.sort(base, descending=True)


def _apply_sorted(f: F.Filter, logits: torch.Tensor) -> torch.Tensor:
    return f.on_sorted(logits) if isinstance(f, F.TopP) else f(logits)


def waterfall(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    input_ids: list[int] | torch.Tensor | None = None,
) -> Waterfall:
    """The distribution after each filter, in transformers' order (see `filters.FILTER_ORDER`).

    Temperature 0 is greedy: after the repetition penalty only the top token survives and the
    sampling filters are skipped, exactly as transformers skips them with ``do_sample=False``.

    >>> flow = waterfall(torch.tensor([0.0, 2.0, 1.0]), top_k=2)
    >>> [(s.name, s.survivors) for s in flow.steps], flow.token_ids.tolist()
    ([('model', 3), ('top_k', 2)], [1, 2, 0])
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    greedy = temperature == 0
    chain = F.build_filters(
        temperature=None if greedy else temperature,
        top_k=None if greedy else top_k,
        top_p=None if greedy else top_p,
        min_p=None if greedy else min_p,
        repetition_penalty=repetition_penalty,
    )
    penalty = chain.pop(0) if chain and chain[0].name == "repetition_penalty" else None
    ids = None if input_ids is None else torch.as_tensor(input_ids, dtype=torch.long)
    if penalty is not None and ids is None:
        raise ValueError("repetition_penalty needs input_ids (the prompt's tokens), got None")
    history = (penalty.label if penalty else None, None if ids is None else tuple(ids.tolist()))
    values, order = _cached(logits, ("sort", *history), lambda: _sorted(logits, penalty, ids))
    flow = Waterfall(order)
    model = _cached(
        logits,
        ("model", *history),
        lambda: _step("model", "model output", logits.float()[order], None),
    )
    flow.steps.append(model)
    if penalty is not None:
        flow.steps.append(
            _cached(
                logits,
                ("step", *history),
                lambda: _step(penalty.name, penalty.label, values, model),
            )
        )
    # Each filter sees only the sorted survivors of the step before: removed tokens are -inf
    # and weigh nothing in softmax, so the result equals filtering the whole vocabulary.
    for position, f in enumerate(chain):
        previous = flow.steps[-1]
        key = ("step", *history, *(g.label for g in chain[: position + 1]))
        flow.steps.append(
            _cached(
                logits,
                key,
                lambda f=f, p=previous: _step(f.name, f.label, _apply_sorted(f, p.logits), p),
            )
        )
    if greedy:
        last = flow.steps[-1]
        flow.steps.append(_step("greedy", "temperature 0 = greedy", last.logits[:1], last))
    return flow


def candidates(flow: Waterfall, tokenizer: Any, n: int = 20) -> list[Candidate]:
    """The top ``n`` tokens and what the filters did to each."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    before = flow.before
    n = min(n, len(flow.token_ids))
    cumulative = before.probabilities[:n].double().cumsum(0).tolist()
    rows = []
    for i in range(n):
        tid = int(flow.token_ids[i])
        removed_by = next((s.label for s in flow.steps[1:] if s.probability(i) == 0), None)
        name = token_name(tokenizer, tid)
        rows.append(
            Candidate(
                i + 1, tid, name.label, float(before.logits[i]), before.probability(i),
                cumulative[i], flow.after.probability(i), removed_by, name.note,
            )
        )  # fmt: skip
    return rows
