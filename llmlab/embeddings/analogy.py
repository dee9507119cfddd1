"""Word arithmetic on a static embedding table: king - man + woman = queen?

With word2vec the famous answer often comes out, provided the three words you typed are not
allowed as answers (otherwise "king" itself is usually nearest). A language model's input
table was trained for another job (feeding the blocks), so the arithmetic may well fail; the
page shows where the expected word really ranks.

>>> import numpy as np
>>> table = StaticTable("toy", np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
...                                      [0.0, 1.0, 1.0]]), lambda w: {"king": [0], "man": [1],
...                                      "woman": [2], "queen": [3]}.get(w, []),
...                     lambda i: ["king", "man", "woman", "queen"][i])
>>> result = word_analogy(table, "king", "man", "woman", "queen")
>>> result.neighbours[0][0], result.expected_rank
('queen', 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP = 10


@dataclass(frozen=True)
class StaticTable:
    """An input embedding table: one fixed row per token, whatever the sentence."""

    name: str
    rows: Any  # (vocabulary, width): a numpy array or a torch tensor (not copied)
    token_ids: Callable[[str], list[int]]  # a word's token ids (no special tokens)
    token_text: Callable[[int], str]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rows.shape[0]), int(self.rows.shape[1])

    def word_vector(self, word: str) -> tuple[np.ndarray, list[str]]:
        """The word's row (the average of its rows when it is several tokens) and its pieces."""
        if not word.strip():
            raise ValueError(f"word={word!r} is empty; type a word")
        ids = self.token_ids(word.strip())
        if not ids:
            raise ValueError(f"word={word!r} gives no token in {self.name}")
        rows = np.stack([_row(self.rows, i) for i in ids])
        return rows.mean(0), [self.token_text(i) for i in ids]


def _row(rows: Any, index: int) -> np.ndarray:
    row = rows[index]
    if hasattr(row, "detach"):
        row = row.detach().float().numpy()
    return np.asarray(row, dtype=np.float64)


def nearest_tokens(table: StaticTable, vector: np.ndarray, top: int, skip: set[int]) -> list:
    """The `top` tokens whose rows are nearest `vector` by cosine similarity, as (text, id, score),
    leaving out the ids in `skip`. Computed on the table in place (no copy of it is made)."""
    import torch

    rows = table.rows if hasattr(table.rows, "detach") else torch.from_numpy(table.rows)
    rows = rows.detach()
    query = torch.tensor(vector, dtype=rows.dtype)
    with torch.inference_mode():
        scores = (rows @ query) / (rows.norm(dim=1) * query.norm()).clamp(min=1e-12)
        if skip:
            scores[list(skip)] = -2.0
        values, ids = torch.topk(scores.float(), min(top, len(scores)))
    return [(table.token_text(int(i)), int(i), float(v)) for v, i in zip(values, ids, strict=True)]


@dataclass
class Analogy:
    a: str  # king
    b: str  # man
    c: str  # woman
    expected: str  # queen
    pieces: dict[str, list[str]]  # each word's tokens in this table
    neighbours: list[tuple[str, int, float]]  # nearest tokens, the three words left out
    neighbours_with_inputs: list[tuple[str, int, float]]  # the same, nothing left out
    expected_rank: int | None  # where the expected word ranks (1 = the answer), inputs left out
    expected_score: float | None
    expected_split: bool  # the expected word is several tokens: compared by its average row

    @property
    def worked(self) -> bool:
        return self.expected_rank == 1


def word_analogy(table: StaticTable, a: str, b: str, c: str, expected: str, top: int = TOP):
    """a - b + c on the table's rows, and where `expected` lands among all tokens."""
    import torch

    vectors, pieces = {}, {}
    for word in (a, b, c, expected):
        vectors[word], pieces[word] = table.word_vector(word)
    target = vectors[a] - vectors[b] + vectors[c]
    inputs = {i for word in (a, b, c) for i in table.token_ids(word.strip())}
    neighbours = nearest_tokens(table, target, top, inputs)
    with_inputs = nearest_tokens(table, target, top, set())
    expected_ids = table.token_ids(expected.strip())
    rows = table.rows if hasattr(table.rows, "detach") else torch.from_numpy(table.rows)
    query = torch.tensor(target, dtype=rows.dtype)
    with torch.inference_mode():
        scores = (rows @ query) / (rows.norm(dim=1) * query.norm()).clamp(min=1e-12)
        if inputs:
            scores[list(inputs)] = -2.0
        if len(expected_ids) == 1:
            (token,) = expected_ids
            score = float(scores[token])
            rank = int((scores > scores[token]).sum()) + 1 if token not in inputs else None
        else:  # a word of several tokens is no single row: rank its average among the rows
            wanted = torch.tensor(vectors[expected], dtype=rows.dtype)
            score = float(wanted @ query / (wanted.norm() * query.norm()).clamp(min=1e-12))
            rank = int((scores > score).sum()) + 1
    return Analogy(
        a, b, c, expected, pieces, neighbours, with_inputs, rank, score, len(expected_ids) > 1
    )


def encoder_table(encoder: Any) -> StaticTable:
    """MiniLM's word-piece table (30,522 rows of 384 numbers); a word is looked up as typed."""
    return StaticTable(
        encoder.name,
        encoder.word_table(),
        lambda word: list(encoder.tokenizer.encode(word, add_special_tokens=False).ids),
        encoder.token_text,
    )


def model_table(name: str, model: Any, tokenizer: Any) -> StaticTable:
    """A language model's input embedding table, read in place (no copy).

    A word is looked up with a space in front (" king"): inside a sentence that is how these
    tokenizers see a word, and most common words are then a single token.
    """
    from llmlab.forward_pass import token_label

    return StaticTable(
        name,
        model.get_input_embeddings().weight,
        lambda word: list(tokenizer.encode(" " + word, add_special_tokens=False)),
        lambda token_id: token_label(tokenizer, token_id),
    )
