"""The seeded draw: the token `torch.multinomial(probs, 1, generator=g)` picks, at a fraction of the cost.

On a CPU, PyTorch draws one sample by the "exponential race" (Gumbel-max with the exponent
taken): it fills a vocabulary-sized tensor with exponential variates ``q`` from the generator and
returns ``argmax(probs / q)``. Each variate is ``-log1p(-u)`` of one double-precision uniform
``u``, computed in float64 and stored as float32, so the generator advances by exactly one
``torch.rand(vocab, dtype=torch.float64)`` (see ``multinomial`` in
``aten/src/ATen/native/Distributions.cpp`` and the CPU ``exponential_kernel``). Over Gemma's
262,144 tokens the logarithms are most of the ~5 ms a draw takes.

`draw` takes the same uniforms from the same generator, but computes the logarithm and the
ratio only where the probability is above zero: a token a filter removed has ratio 0 and can
never win the race. The token is the same and the generator ends in the same state, so a
seeded run stays the same run. `matches_torch` checks that claim against `torch.multinomial`
once per process; if a PyTorch release ever draws differently, `draw` uses `torch.multinomial`
itself.

    >>> import torch
    >>> probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    >>> mine, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    >>> draw(probs, mine) == int(torch.multinomial(probs, 1, generator=theirs)[0])
    True
    >>> torch.equal(mine.get_state(), theirs.get_state())
    True
"""

from __future__ import annotations

import math
import threading

import torch

_checked: bool | None = None  # None: not checked yet; then whether `draw` may take its shortcut
_check_lock = threading.Lock()


def race(probs: torch.Tensor, uniforms: torch.Tensor) -> int | None:
    """The winner of the exponential race among the tokens with probability above 0, or None
    where the shortcut would not give torch's answer (a uniform of exactly 0, where torch's
    ratio is 0/0 = NaN; or every ratio rounding to 0)."""
    kept = (probs > 0).nonzero().squeeze(-1)  # ascending, like argmax's scan
    ratio = probs[kept] / waits(uniforms[kept])
    best = int(torch.argmax(ratio))  # the first of equal ratios, as argmax over the full row
    if not float(ratio[best]) > 0 or float(uniforms.min()) == 0:
        return None
    return int(kept[best])


def waits(uniforms: torch.Tensor) -> torch.Tensor:
    """torch's exponential variates from its float64 uniforms, stored as float32."""
    return (-torch.log1p(-uniforms)).to(torch.float32)


def _uniforms(
    probs: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The generator's state, then the uniforms a draw over `probs` takes from it; None where
    the shortcut does not apply (not checked against torch here, or not a distribution:
    `torch.multinomial` raises its own error for those)."""
    if not _shortcut_allowed() or probs.dim() != 1:
        return None
    low, high = torch.aminmax(probs)
    if not (float(low) >= 0 and math.isfinite(float(high)) and float(high) > 0):
        return None
    state = generator.get_state()
    return state, torch.rand(probs.shape[0], dtype=torch.float64, generator=generator)


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from `probs` (vocab,) float32, as `torch.multinomial(probs, 1, generator)`."""
    taken = _uniforms(probs, generator)
    if taken is None:
        return int(torch.multinomial(probs, 1, generator=generator)[0])
    state, uniforms = taken
    token = race(probs, uniforms)
    if token is None:  # replay the draw the slow way, from the same state
        generator.set_state(state)
        token = int(torch.multinomial(probs, 1, generator=generator)[0])
    return token


def draw_clear(
    probs: torch.Tensor, generator: torch.Generator, doubtful: torch.Tensor
) -> int | None:
    """`draw`'s token, when it is the same whichever of the `doubtful` tokens were kept; else
    None, with the generator put back where it was.

    `probs` (vocab,) is the softmax of a row cut in one order of equal scores; the cut that
    counts may keep other `doubtful` tokens (all of one score, so of one probability) in place
    of the ones kept here, the same number of them. Every other token's probability is then
    the same up to float rounding: the same exponentials over the same kept scores, summed in
    another order. Such a sum of n positive float32 terms is within (n - 1) units of rounding
    of the exact one in any order, so each probability, and each race ratio, moves by less than
    `margin_of(n)` / 2 in relative terms. The token stands if it is not doubtful and its ratio
    beats every other kept token's, and every doubtful token's at the tied probability, by more
    than that margin.

        >>> probs = torch.tensor([0.97, 0.0, 0.03, 0.0])  # tokens 2 and 3 tie; 2 was kept
        >>> draw_clear(probs, torch.Generator().manual_seed(0), torch.tensor([2, 3]))
        0
        >>> generator = torch.Generator().manual_seed(0)
        >>> before = generator.get_state()
        >>> print(draw_clear(torch.tensor([0.0, 0.5, 0.5, 0.0]), generator, torch.tensor([1, 2])))
        None
        >>> torch.equal(generator.get_state(), before)  # put back: a tied token won
        True
    """
    taken = _uniforms(probs, generator)
    if taken is None:
        return None
    state, uniforms = taken
    token = race(probs, uniforms)
    kept = probs > 0
    tied_probability = probs[doubtful].max()
    if token is not None and not bool((doubtful == token).any()) and float(tied_probability) > 0:
        rivals = kept.clone()
        rivals[doubtful] = True
        rivals[token] = False
        ids = rivals.nonzero()[:, 0]
        weight = probs[ids].clone()
        weight[torch.isin(ids, doubtful)] = tied_probability
        best_rival = float((weight / waits(uniforms[ids])).max()) if len(ids) else 0.0
        mine = float(probs[token] / waits(uniforms[token : token + 1]))
        if mine > best_rival * (1 + margin_of(int(kept.sum()))):
            return token
    generator.set_state(state)
    return None


def margin_of(kept: int) -> float:
    """The relative gap `draw_clear` asks for among `kept` tokens: twice the largest relative
    change float32 rounding can make to one race ratio when the kept probabilities are summed
    in another order ((kept - 1) units for the sum, one each for the exponential, the
    normalisation and the ratio), with room to spare."""
    unit = 2.0**-24
    return 4 * (2 * kept + 8) * unit


def matches_torch(vocab: int = 4099, seeds: int = 24) -> bool:
    """Whether `race` over `torch.rand` uniforms gives `torch.multinomial`'s token and state.

    Checked on full distributions, on ones with most tokens removed (as after top-k / top-p)
    and on one token left, for several seeds.

        >>> matches_torch(vocab=257, seeds=3)
        True
    """
    shapes = torch.Generator().manual_seed(0)
    for seed in range(seeds):
        logits = torch.randn(vocab, generator=shapes) * (1 + seed % 4)
        if seed % 3 == 1:  # a filtered distribution: only a few tokens left
            logits[torch.rand(vocab, generator=shapes) < 0.97] = -math.inf
        if seed % 6 == 5:
            logits[1:] = -math.inf
        probs = torch.softmax(logits, dim=-1)
        mine = torch.Generator().manual_seed(seed)
        theirs = torch.Generator().manual_seed(seed)
        expected = int(torch.multinomial(probs, 1, generator=theirs)[0])
        got = race(probs, torch.rand(vocab, dtype=torch.float64, generator=mine))
        if got != expected or not torch.equal(mine.get_state(), theirs.get_state()):
            return False
    return True


def _shortcut_allowed() -> bool:
    global _checked
    if _checked is None:
        with _check_lock:
            if _checked is None:
                _checked = matches_torch()
    return _checked
