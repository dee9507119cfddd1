"""Logits filters: the knobs that reshape a model's next-token scores before sampling.

Each filter is a small class, validated in `__init__`, that takes logits and returns a *new*
tensor of the same shape (never mutating its input). Removed tokens get the logit ``-inf`` so
that softmax gives them probability exactly 0, the same convention as transformers'
``logits_process.py`` (``filter_value=-inf``, ``min_tokens_to_keep=1``). The results are equal
to transformers' own processors, which the tests check.

Logits may be ``(vocab,)`` for one position or ``(batch, vocab)`` for several rows.

    >>> import torch
    >>> logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    >>> TopK(2)(logits)
    tensor([2., 1., -inf, -inf])
    >>> apply_filters(logits, build_filters(temperature=0.5, top_k=3))
    tensor([4., 2., 0., -inf])

"Off" is expressed as ``None`` in `build_filters`. Values that change nothing are skipped the
way transformers skips them (``temperature=1.0``, ``top_k=0``, ``top_p=1.0``,
``repetition_penalty=1.0``), so the list holds only the filters that act.

Temperature 0 is not a filter: it means *greedy* decoding (always take the highest logit), the
limit of dividing by an ever smaller temperature. Callers handle it by taking the argmax.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np
import torch

from llmlab.compute import usable_cores

_sorting = threading.local()


@contextlib.contextmanager
def sorting_threads(count: int) -> Iterator[None]:
    """Within this block (in this thread), a full top-p sort runs on `count` threads instead of
    every usable core: for work that already runs beside other work, one core each."""
    before = getattr(_sorting, "threads", None)
    _sorting.threads = count
    try:
        yield
    finally:
        _sorting.threads = before


# The order transformers' `GenerationMixin._get_logits_processor` applies them in (5.x):
# the repetition penalty is a "processor" that runs before all sampling "warpers", then
# temperature, top-k, top-p and min-p. Order matters: top-p after temperature sees the
# sharpened/flattened distribution, and min-p is relative to the top probability left after
# top-k/top-p.
FILTER_ORDER: tuple[str, ...] = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")

FILTER_VALUE = -math.inf


def strictly_descending(scores: torch.Tensor) -> torch.Tensor:
    """Which rows of (rows, vocab) `scores` are sorted strictly high to low (no ties): a bool
    per row. The first few columns settle almost every row, so the whole rows are compared
    only for those that pass them.

        >>> strictly_descending(torch.tensor([[3.0, 2.0, 1.0], [3.0, 3.0, 1.0], [1.0, 2.0, 0.0]]))
        tensor([ True, False, False])
    """
    if scores.shape[-1] < 2:
        return torch.zeros(scores.shape[0], dtype=torch.bool)
    head = scores[:, : _HEAD + 1]
    sorted_rows = (head[:, :-1] > head[:, 1:]).all(dim=-1)
    if scores.shape[-1] > _HEAD + 1 and bool(sorted_rows.any()):
        rest = scores[sorted_rows]
        sorted_rows[sorted_rows.clone()] = (rest[:, _HEAD:-1] > rest[:, _HEAD + 1 :]).all(dim=-1)
    return sorted_rows


_HEAD = 16  # `strictly_descending` compares this many neighbours first


def _as_2d(logits: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """View ``(vocab,)`` logits as ``(1, vocab)``; report whether we added the batch dim."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() == 1:
        return logits.unsqueeze(0), True
    if logits.dim() == 2:
        return logits, False
    raise ValueError(
        f"logits must have shape (vocab,) or (batch, vocab), got shape {tuple(logits.shape)}"
    )


def _number(name: str, value: object) -> float:
    """Accept ints and floats (not bools); reject NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return value


class RepetitionPenalty:
    """Make tokens that already appear in the text less likely (CTRL paper, Keskar et al. 2019).

    A seen token's logit is divided by ``penalty`` when positive and multiplied by it when
    negative, so ``penalty > 1`` always pushes it down. 1.0 changes nothing.

        >>> RepetitionPenalty(2.0)(torch.tensor([4.0, -1.0, 3.0]), torch.tensor([0, 1]))
        tensor([ 2., -2.,  3.])
    """

    name = "repetition_penalty"

    def __init__(self, penalty: float):
        penalty = _number("repetition_penalty", penalty)
        if not (penalty > 0 and math.isfinite(penalty)):
            raise ValueError(
                f"repetition_penalty must be a positive number (> 0; 1.0 = off, "
                f"typical 1.0-2.0), got {penalty}"
            )
        self.penalty = penalty

    @property
    def label(self) -> str:
        return f"repetition penalty {self.penalty:g}"

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids is None:
            raise ValueError(
                "repetition_penalty needs input_ids (the tokens seen so far), got None"
            )
        scores, squeezed = _as_2d(logits)
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=scores.device)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0).expand(scores.shape[0], -1)
        if ids.shape[-1] == 0:
            return logits.clone()
        gathered = torch.gather(scores, 1, ids)
        penalised = torch.where(gathered < 0, gathered * self.penalty, gathered / self.penalty)
        # scatter (not scatter_) returns a copy; a token seen twice is penalised once.
        out = scores.scatter(1, ids, penalised)
        return out.squeeze(0) if squeezed else out


class Temperature:
    """Divide logits by ``temperature``: < 1 sharpens the distribution, > 1 flattens it.

    >>> Temperature(2.0)(torch.tensor([2.0, 0.0]))
    tensor([1., 0.])
    """

    name = "temperature"

    def __init__(self, temperature: float):
        temperature = _number("temperature", temperature)
        if temperature == 0:
            raise ValueError(
                "temperature must be > 0 for sampling, got 0: temperature 0 means greedy "
                "decoding (always take the most likely token), which callers do with an argmax"
            )
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be > 0 (0 = greedy, 1.0 = off), got {temperature}")
        self.temperature = temperature

    @property
    def label(self) -> str:
        return f"temperature {self.temperature:g}"

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _as_2d(logits)
        return logits / self.temperature


class TopK:
    """Keep the ``top_k`` highest-scoring tokens (ties with the k-th are kept too).

    >>> TopK(1)(torch.tensor([1.0, 3.0, 2.0]))
    tensor([-inf, 3., -inf])
    """

    name = "top_k"

    def __init__(self, top_k: int):
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number >= 1 (None = off), got {top_k!r}")
        self.top_k = top_k

    @property
    def label(self) -> str:
        return f"top-k {self.top_k}"

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        _as_2d(logits)
        k = min(self.top_k, logits.shape[-1])
        kth_value = torch.topk(logits, k)[0][..., -1, None]
        return logits.masked_fill(logits < kth_value, FILTER_VALUE)


class TopP:
    """Nucleus sampling: keep the smallest set of top tokens whose probabilities add up to
    at least ``top_p`` (Holtzman et al. 2019). The most likely token is always kept.

        >>> TopP(0.7)(torch.tensor([2.0, 1.0, 0.0]))  # probabilities 0.67, 0.24, 0.09
        tensor([2., 1., -inf])
    """

    name = "top_p"

    def __init__(self, top_p: float):
        top_p = _number("top_p", top_p)
        if not (0 < top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1] (1.0 = off), got {top_p}")
        self.top_p = top_p

    @property
    def label(self) -> str:
        return f"top-p {self.top_p:g}"

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        scores, squeezed = _as_2d(logits)
        out = self.each_row(scores)
        return out.squeeze(0) if squeezed else out

    def each_row(
        self, scores: torch.Tensor, ties: dict[int, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The cut of every row of (rows, vocab) `scores`, each exactly transformers' cut.

        transformers sorts each row ascending (`torch.sort`), takes the softmax of the sorted
        scores and its cumulative sum, and removes the low tail whose cumulative mass is
        <= 1 - top_p. Any correct sort gives the same sorted values, hence bit for bit the same
        softmax and cumulative sums: so the values are sorted by numpy (a few times faster
        than `torch.sort`, and no indices), the number of tokens to remove is read from the
        sums, and the row is cut at the lowest kept score. Sorts differ only in the order of
        equal scores, which matters only when equal scores stand on both sides of the cut:
        such rows are cut after `torch.sort`, as transformers does (`by_sorting`).

            >>> rows = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
            >>> TopP(0.7).each_row(rows)
            tensor([[2., 1., -inf],
                    [-inf, 2., 1.]])

        With `ties` (a dict to fill), a row with a tie at its cut is not sorted: it keeps every
        score above the cut and, of the tokens at the cut, as many as transformers keeps, the
        first ones by position; ``ties[row]`` is the ids of all the tokens at the cut. Only
        which of those are kept can differ from transformers' cut; every other token's score is
        the same. The caller checks whether that difference could matter to what it does with
        the row, and if so cuts the row again with `settle`.
        """
        out = torch.empty_like(scores)
        rest = torch.arange(scores.shape[0])
        if scores.shape[-1] > 1:
            on_sorted = strictly_descending(scores)
            if bool(on_sorted.all()):
                return self.on_sorted(scores)  # no ties: the same result, without a sort
            if bool(on_sorted.any()):
                out[on_sorted] = self.on_sorted(scores[on_sorted])
                rest = rest[~on_sorted]
        block = scores if len(rest) == scores.shape[0] else scores[rest]
        cut, removed, lowest_kept, tied, broken = self._cut_by_values(block)
        tied |= broken  # NaN: always torch's own sort
        if ties is not None:
            for index in (tied & ~broken).nonzero()[:, 0].tolist():
                row, at_cut = block[index], lowest_kept[index]
                ids = (row == at_cut).nonzero()[:, 0]
                below = row < at_cut
                # Of the tokens at the cut, transformers removes as many as its sort put
                # before the cut; here, the first ones by position.
                cut[index] = row.masked_fill(below, FILTER_VALUE)
                cut[index, ids[: int(removed[index]) - int(below.sum())]] = FILTER_VALUE
                ties[int(rest[index])] = ids
            tied = broken
        if bool(tied.any()):
            cut[tied] = self.by_sorting(block[tied])
        if len(rest) == scores.shape[0]:
            return cut
        out[rest] = cut
        return out

    def _cut_by_values(
        self, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cut of each row from its sorted values; how many tokens each row removes; its
        lowest kept score; which rows have equal scores on both sides of the cut; and which
        hold a NaN (numpy sorts it last). The cut of those two kinds of rows is not
        transformers' and must be made again."""
        values = torch.from_numpy(np.sort(scores.contiguous().numpy(), axis=-1))
        cumulative = values.softmax(dim=-1).cumsum(dim=-1)  # as transformers takes them
        # The removed tokens are those whose cumulative mass is <= 1 - top_p, a prefix since
        # the sums never decrease: count them by bisection (the comparison in float32, as
        # transformers' `<=` makes it). The most likely token is always kept.
        limit = torch.full((scores.shape[0], 1), 1 - self.top_p, dtype=cumulative.dtype)
        vocab = scores.shape[-1]
        removed = torch.searchsorted(cumulative, limit, right=True)[:, 0].clamp(max=vocab - 1)
        lowest_kept = values.gather(-1, removed[:, None])
        highest_removed = values.gather(-1, (removed - 1).clamp(min=0)[:, None])
        tied = (removed > 0) & (highest_removed[:, 0] == lowest_kept[:, 0])
        # Every score below the lowest kept one is removed (nothing, when none is removed:
        # then the lowest kept score is the row's lowest): `threshold` keeps the scores above
        # the float32 just below it, in one pass a row (a NaN row is cut again by the caller).
        below = torch.nextafter(lowest_kept[:, 0], torch.tensor(-math.inf)).tolist()
        cut = torch.empty_like(scores)
        for row, limit in enumerate(below):
            torch.threshold(scores[row], limit, FILTER_VALUE, out=cut[row])
        return cut, removed, lowest_kept[:, 0], tied, values[:, -1].isnan()

    def by_sorting(self, scores: torch.Tensor) -> torch.Tensor:
        """transformers' cut on (rows, vocab), every row sorted by `torch.sort` in one call, on
        all the cores this process may use (rows are sorted independently, each exactly as it
        would be alone).

            >>> TopP(0.7).by_sorting(torch.tensor([[0.0, 2.0, 1.0]]))
            tensor([[-inf, 2., 1.]])
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(getattr(_sorting, "threads", None) or max(threads, usable_cores()))
        try:
            sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        finally:
            torch.set_num_threads(threads)
        sorted_remove = self._remove_ascending(sorted_logits)
        remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
        return scores.masked_fill(remove, FILTER_VALUE)

    def settle(self, row: torch.Tensor) -> torch.Tensor:
        """transformers' cut of one row (vocab,) of scores that `each_row` left with its tie
        at the cut in order of position."""
        return self.by_sorting(row[None])[0]

    def _remove_ascending(self, sorted_logits: torch.Tensor) -> torch.Tensor:
        """Which of the ascending-sorted scores transformers removes."""
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_remove = cumulative <= (1 - self.top_p)
        sorted_remove[..., -1:] = False
        return sorted_remove

    def on_sorted(self, logits: torch.Tensor) -> torch.Tensor:
        """`__call__` for logits already sorted high-to-low, taking that order as the sort
        order (so among tied logits the later one goes first). Flipping replaces the sort,
        which costs ~100 ms on a 262k vocabulary.

            >>> TopP(0.7).on_sorted(torch.tensor([2.0, 1.0, 0.0]))
            tensor([2., 1., -inf])
        """
        ascending = logits.flip(-1)
        sorted_remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p)
        sorted_remove[..., -1:] = False
        return logits.masked_fill(sorted_remove.flip(-1), FILTER_VALUE)


class MinP:
    """Keep tokens whose probability is at least ``min_p`` times the top token's probability
    (Nguyen et al. 2024): a cut that adapts to how confident the model is.

        >>> MinP(0.5)(torch.tensor([0.0, -0.5, -1.0]))
        tensor([ 0.0000, -0.5000,    -inf])
    """

    name = "min_p"

    def __init__(self, min_p: float):
        min_p = _number("min_p", min_p)
        if not (0 <= min_p <= 1):
            raise ValueError(f"min_p must be in [0, 1] (None or 0 = off), got {min_p}")
        self.min_p = min_p

    @property
    def label(self) -> str:
        return f"min-p {self.min_p:g}"

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        scores, squeezed = _as_2d(logits)
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        # Always keep the single most likely token, as transformers does.
        remove.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)
        out = scores.masked_fill(remove, FILTER_VALUE)
        return out.squeeze(0) if squeezed else out


Filter = RepetitionPenalty | Temperature | TopK | TopP | MinP


def build_filters(
    *,
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> list[Filter]:
    """The filters that act for these settings, in `FILTER_ORDER` (transformers' order).

    ``None`` turns a filter off; values that change nothing are skipped, as transformers does.
    Temperature 0 raises: it means greedy decoding, which is an argmax, not a filter.

        >>> [f.name for f in build_filters(temperature=0.7, top_p=0.9, top_k=0)]
        ['temperature', 'top_p']
    """
    filters: list[Filter] = []
    if repetition_penalty is not None:
        penalty = RepetitionPenalty(repetition_penalty)
        if penalty.penalty != 1.0:
            filters.append(penalty)
    if temperature is not None:
        warper = Temperature(temperature)
        if warper.temperature != 1.0:
            filters.append(warper)
    # top_k=0 means "off" in transformers; accept it here too so settings carry over.
    if top_k is not None and not (
        isinstance(top_k, int) and not isinstance(top_k, bool) and top_k == 0
    ):
        filters.append(TopK(top_k))
    if top_p is not None:
        nucleus = TopP(top_p)
        if nucleus.top_p < 1.0:
            filters.append(nucleus)
    if min_p is not None:
        filters.append(MinP(min_p))
    return filters


def apply_filters(
    logits: torch.Tensor, filters: list[Filter], input_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``filters`` in the given order and return the new logits (input untouched).

    >>> apply_filters(torch.tensor([1.0, 2.0]), [])
    tensor([1., 2.])
    """
    out = logits.clone()
    for step in filters:
        out = step(out, input_ids)
    return out
