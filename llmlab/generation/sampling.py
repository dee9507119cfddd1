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
    wait = (-torch.log1p(-uniforms[kept])).to(torch.float32)  # torch's exponential variates
    ratio = probs[kept] / wait
    best = int(torch.argmax(ratio))  # the first of equal ratios, as argmax over the full row
    if not float(ratio[best]) > 0 or bool((uniforms == 0).any()):
        return None
    return int(kept[best])


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from `probs` (vocab,) float32, as `torch.multinomial(probs, 1, generator)`."""
    if not _shortcut_allowed() or probs.dim() != 1:
        return int(torch.multinomial(probs, 1, generator=generator)[0])
    low, high = torch.aminmax(probs)
    if not (float(low) >= 0 and math.isfinite(float(high)) and float(high) > 0):
        return int(torch.multinomial(probs, 1, generator=generator)[0])  # raises its own error
    state = generator.get_state()
    uniforms = torch.rand(probs.shape[0], dtype=torch.float64, generator=generator)
    token = race(probs, uniforms)
    if token is None:  # replay the draw the slow way, from the same state
        generator.set_state(state)
        token = int(torch.multinomial(probs, 1, generator=generator)[0])
    return token


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
