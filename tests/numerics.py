"""How far apart two correct float computations may be: tolerances that follow from the arithmetic.

A float32 result compared with a float64 reference, or two float32 results whose sums were taken
in different orders (another vector width, another thread count, rows batched or alone), differ
by rounding alone. Every rounding to nearest changes a value by at most the unit roundoff u
(float32: u = 2**-24 ≈ 6.0e-8; machine epsilon, the gap above 1.0, is 2u ≈ 1.19e-7). The bounds
below are first order in u (the u**2 terms are far below anything a test can see).

The orders a CPU kernel sums in depend on the machine: a sum is split between vector lanes (4,
8 or 16 floats wide, often several registers of them) and threads, and the partial sums are then
combined. A tolerance that holds for one order may fail for another, so these bounds hold for
any order.
"""

from __future__ import annotations

import torch

FLOAT32_U = 2.0**-24  # float32's unit roundoff
FLOAT64_U = 2.0**-53  # float64's

# A float32 sum as CPU kernels take it: every term is added once into one of several partial
# sums (vector lanes times registers times threads), which are then added together. 64 partial
# sums is more than any CPU's widest vector (16 floats) times the registers a kernel keeps.
PARTIAL_SUMS = 64


def float32_sum_tolerance(n: int) -> float:
    """Relative error of a float32 sum of ``n`` terms of one sign, in any order: ``n·u``.

    Each of the n - 1 additions rounds its result, a partial sum no larger than the whole, by at
    most u of it; the errors add up to at most (n - 1)·u of the sum (Higham, *Accuracy and
    Stability of Numerical Algorithms*, §4.2). The same bound holds for a dot product of n
    terms relative to the sum of the terms' absolute values; for a cosine of two vectors that
    sum is at most 1 (Cauchy–Schwarz), so it is an absolute bound on the cosine.

        >>> f"{float32_sum_tolerance(49_152):.1e}"
        '2.9e-03'
    """
    return n * FLOAT32_U


def float32_softmax_tolerance(probabilities: torch.Tensor) -> float:
    """Relative error of each probability of a float32 softmax, against float64 on the same scores.

    ``probabilities`` is the float64 reference (one distribution). A float32 softmax computes
    e_i = exp(s_i - max s) and divides by S = sum of e_i. The sum's rounding dominates: adding
    the term e_i to a partial sum never larger than S rounds by at most u·S, and by at most e_i
    (the partial sum itself is a candidate result), so the term costs at most min(p_i, u) of S;
    the terms' total, sum of min(p_i, u), is at most V·u (`float32_sum_tolerance`) and far
    less when a few tokens hold most of the probability. Combining up to `PARTIAL_SUMS`
    partial sums costs at most that many u more. The rest is a few dozen u at most: the
    exponential (within 2 units in the last place, 4u), the shift by the top score (|s_i -
    max s|·u, below 40u for any token a test looks at) and the division. Every probability
    shares the same normaliser, so a wrong one is off by the same relative amount for all.

    For the two models' next-token distributions this comes to 7e-4 to 4e-3 (V·u is 2.9e-3 for
    SmolLM2's 49,152 scores, 1.6e-2 for Gemma's 262,144); the errors measured were 1e-7 to
    1.5e-4 with torch's kernels and up to 9e-4 summing one term after another.
    """
    p = probabilities.double()
    normaliser = float(torch.clamp(p, max=FLOAT32_U).sum())
    return normaliser + (PARTIAL_SUMS + 64) * FLOAT32_U


def float32_cosine_tolerance(n: int) -> float:
    """Absolute error of a cosine (or of a unit vector's length) from float32 vectors of ``n``
    numbers, against the exact value: ``2·n·u + 4u``.

    The dot product is within n·u of the sum of its terms' absolute values, which is at most
    the product of the two lengths (`float32_sum_tolerance`). Each length is the square root of
    a sum of n squares: n·u for the sum, half of that after the root, so n·u for the two. The
    division and the roots' own roundings add a few u.

        >>> f"{float32_cosine_tolerance(384):.1e}"
        '4.6e-05'
    """
    return (2 * n + 4) * FLOAT32_U
