"""Repetition: measuring it in a generated text, and forbidding repeated n-grams while decoding.

Greedy decoding often falls into loops ("the cat sat on the mat. the cat sat on the mat...").
The measures here turn such loops into numbers a student can compare across strategies:

    >>> stats = repetition_stats([5, 6, 7, 5, 6, 7, 5])
    >>> round(stats.distinct_1, 2), round(stats.distinct_2, 2), stats.longest_repeat
    (0.43, 0.5, [5, 6, 7, 5])

`NoRepeatNGram` is the decoding-time remedy: a logits filter that removes every token that would
complete an n-gram already present in the text, as transformers' `NoRepeatNGramLogitsProcessor`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

FILTER_VALUE = -math.inf


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """All contiguous n-grams, in order.

    >>> ngrams([1, 2, 3], 2)
    [(1, 2), (2, 3)]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence[int], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams; 1.0 = no repetition at all.

    An empty text (no n-gram at all) scores 0.0.

    >>> distinct_n([1, 1, 1, 1], 1)
    0.25
    """
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def _repeated_of_length(tokens: Sequence[int], length: int) -> tuple[int, int] | None:
    """Start positions (first, second) of some n-gram of this length seen twice, else None."""
    seen: dict[tuple[int, ...], int] = {}
    for start in range(len(tokens) - length + 1):
        gram = tuple(tokens[start : start + length])
        if gram in seen:
            return seen[gram], start
        seen[gram] = start
    return None


def longest_repeated_ngram(tokens: Sequence[int]) -> tuple[list[int], list[int]]:
    """The longest run of tokens that occurs at least twice (occurrences may overlap).

    Returns the n-gram and the start positions of its first two occurrences. A repeat of length L
    contains one of length L-1, so a binary search over L finds the longest in O(n log n) n-gram
    lookups instead of comparing every pair of positions.

    >>> longest_repeated_ngram([9, 1, 2, 3, 1, 2, 3])
    ([1, 2, 3], [1, 4])
    >>> longest_repeated_ngram([1, 2, 3])
    ([], [])
    """
    best: tuple[int, int, int] | None = None  # (length, first start, second start)
    low, high = 1, len(tokens) - 1
    while low <= high:
        middle = (low + high) // 2
        found = _repeated_of_length(tokens, middle)
        if found is None:
            high = middle - 1
        else:
            best = (middle, *found)
            low = middle + 1
    if best is None:
        return [], []
    length, first, second = best
    return list(tokens[first : first + length]), [first, second]


@dataclass
class RepetitionStats:
    """How repetitive a token sequence is."""

    tokens: int  # how many tokens were measured
    distinct_1: float  # unique tokens / tokens
    distinct_2: float  # unique token pairs / token pairs
    longest_repeat: list[int]  # the longest n-gram that occurs twice (token ids)
    longest_repeat_at: list[int]  # where its first two occurrences start

    @property
    def longest_repeat_length(self) -> int:
        return len(self.longest_repeat)


def repetition_stats(tokens: Sequence[int]) -> RepetitionStats:
    """Distinct-1, distinct-2 and the longest repeated n-gram of a token sequence.

    >>> repetition_stats([]).distinct_1
    0.0
    """
    tokens = list(tokens)
    repeat, where = longest_repeated_ngram(tokens)
    return RepetitionStats(
        tokens=len(tokens),
        distinct_1=distinct_n(tokens, 1),
        distinct_2=distinct_n(tokens, 2),
        longest_repeat=repeat,
        longest_repeat_at=where,
    )


class NoRepeatNGram:
    """Forbid any n-gram of size ``ngram_size`` from occurring twice (Paulus et al. 2017).

    For each row of ``input_ids`` (prompt included, as transformers does), find the tokens that
    followed earlier occurrences of the last ``ngram_size - 1`` tokens and set their logits to
    ``-inf``. Returns a new tensor; ``0`` would mean "off" and is refused here (callers skip it).

        >>> NoRepeatNGram(2)(torch.zeros(1, 4), torch.tensor([[1, 2, 1]]))
        tensor([[0., 0., -inf, 0.]])
    """

    name = "no_repeat_ngram_size"

    def __init__(self, ngram_size: int):
        if isinstance(ngram_size, bool) or not isinstance(ngram_size, int) or ngram_size < 1:
            raise ValueError(
                f"no_repeat_ngram_size must be a whole number >= 1 (0 = off), got {ngram_size!r}"
            )
        self.ngram_size = ngram_size

    @property
    def label(self) -> str:
        return f"no repeated {self.ngram_size}-grams"

    def banned_tokens(self, tokens: Sequence[int]) -> list[int]:
        """Tokens that would complete an n-gram already in ``tokens``.

        >>> NoRepeatNGram(3).banned_tokens([4, 5, 6, 4, 5])
        [6]
        """
        size = self.ngram_size
        if len(tokens) + 1 < size:
            return []
        # The (n-1)-gram the next token would extend; with size 1 it is empty, so every token
        # seen so far is banned (the same as transformers).
        prefix = tuple(tokens[len(tokens) + 1 - size :])
        banned = []
        for start in range(len(tokens) - size + 1):
            if tuple(tokens[start : start + size - 1]) == prefix:
                banned.append(tokens[start + size - 1])
        return banned

    def __call__(self, logits: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids is None:
            raise ValueError("no_repeat_ngram_size needs input_ids (the tokens so far), got None")
        squeezed = logits.dim() == 1
        scores = logits.unsqueeze(0) if squeezed else logits
        ids = torch.as_tensor(input_ids)
        rows = ids.view(1, -1).tolist() if ids.dim() == 1 else ids.tolist()
        out = scores.clone()
        for row, tokens in enumerate(rows):
            banned = self.banned_tokens(tokens)
            if banned:
                out[row, banned] = FILTER_VALUE
        return out.squeeze(0) if squeezed else out
