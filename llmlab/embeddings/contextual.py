"""Static vs contextual embeddings: a word's table row never changes, its hidden state does.

>>> import llmlab                                                  # doctest: +SKIP
>>> loaded = llmlab.load("smollm2-135m-instruct")                  # doctest: +SKIP
>>> contrast = embedding_contrast(                                 # doctest: +SKIP
...     loaded.model, loaded.tokenizer,
...     ["I sat on the river bank", "I opened a bank account"], "bank")
>>> round(float(contrast.static_similarity[0, 1]), 3)              # doctest: +SKIP
1.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmlab.architecture import require_weights
from llmlab.embeddings.projection import pca_2d
from llmlab.embeddings.similarity import cosine_matrix
from llmlab.forward_pass import token_label

# --- static vs contextual embeddings ---------------------------------------------------------------


def contains_word(sentence: str, word: str) -> bool:
    """Whether `word` occurs in `sentence` as a whole word ("bank" is not in "banks").

    >>> contains_word("a river bank", "bank"), contains_word("two banks", "bank")
    (True, False)
    """
    return _find_word(sentence, word) is not None


def _find_word(sentence: str, word: str) -> re.Match | None:
    # Not preceded or followed by a letter or digit: a whole word, even next to punctuation.
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", sentence) if word else None


def _word_positions(tokenizer: Any, sentence: str, word: str) -> tuple[list[int], list[int]]:
    """Ids of `sentence` and the positions of the tokens covering the first whole-word `word`."""
    match = _find_word(sentence, word)
    if match is None:
        raise ValueError(f"word={word!r} does not occur in sentence={sentence!r}")
    encoded = tokenizer(sentence, return_offsets_mapping=True)
    positions = [
        index
        for index, (start, end) in enumerate(encoded["offset_mapping"])
        if end > start and start < match.end() and end > match.start()
    ]
    return list(encoded["input_ids"]), positions


@dataclass
class EmbeddingContrast:
    word: str
    sentences: list[str]
    token_pieces: list[list[str]]  # the word's token(s) in each sentence
    static: np.ndarray  # (sentences, d): token-embedding rows (averaged over the word's tokens)
    contextual: np.ndarray  # (sentences, d): hidden states after the last block, same averaging
    static_similarity: np.ndarray  # (sentences, sentences) cosine similarities
    contextual_similarity: np.ndarray


class _Vectors:
    """A word's vectors in sentences; each sentence runs through the model at most once."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.hidden: dict[str, np.ndarray] = {}  # sentence -> (T, d) after the last block

    def static(self, sentence: str, word: str) -> tuple[np.ndarray, list[str]]:
        """The word's token-embedding row(s), averaged; and its token pieces."""
        ids, positions = _word_positions(self.tokenizer, sentence, word)
        table = self.model.get_input_embeddings().weight
        row = table[[ids[p] for p in positions]].detach().float().mean(0).numpy()
        return row, [token_label(self.tokenizer, ids[p]) for p in positions]

    def contextual(self, sentence: str, word: str) -> np.ndarray:
        """The word's hidden state(s) after the last block, averaged the same way."""
        import torch

        ids, positions = _word_positions(self.tokenizer, sentence, word)
        if sentence not in self.hidden:
            with torch.no_grad():
                out = self.model.base_model(input_ids=torch.tensor([ids]), use_cache=False)
            self.hidden[sentence] = out.last_hidden_state[0].float().numpy()
        return self.hidden[sentence][positions].mean(0)


def embedding_contrast(
    model: Any, tokenizer: Any, sentences: list[str], word: str
) -> EmbeddingContrast:
    """The same word in several sentences: its embedding-table row never changes (the table is
    a lookup), its hidden state after the blocks does (attention mixed in the context).

    The static rows are the raw table entries (Gemma multiplies them by sqrt(d) inside its
    embedding layer; a constant factor leaves cosine similarity unchanged).
    """
    require_weights(model)
    if len(sentences) < 2:
        raise ValueError(f"sentences={sentences!r} needs at least two sentences to compare")
    if not word.strip():
        raise ValueError(f"word={word!r} is empty; type a word that occurs in every sentence")
    vectors = _Vectors(model, tokenizer)
    rows = [vectors.static(sentence, word) for sentence in sentences]
    static = np.stack([row for row, _ in rows])
    contextual = np.stack([vectors.contextual(sentence, word) for sentence in sentences])
    return EmbeddingContrast(
        word,
        list(sentences),
        [pieces for _, pieces in rows],
        static,
        contextual,
        cosine_matrix(static),
        cosine_matrix(contextual),
    )


@dataclass(frozen=True)
class ProjectedPoint:
    word: str
    sentence: int  # index into the sentences
    kind: str  # "static" or "contextual"
    x: float
    y: float


def embedding_projection(
    model: Any, tokenizer: Any, sentences: list[str], words: list[str], kind: str = "contextual"
) -> tuple[list[ProjectedPoint], np.ndarray]:
    """Each word found in each sentence, as a point of a 2-D PCA map (words missing from a
    sentence are skipped). Static points of one word land on the same spot."""
    if kind not in ("static", "contextual"):
        raise ValueError(f"kind={kind!r} is not allowed; allowed: static, contextual")
    require_weights(model)
    source = _Vectors(model, tokenizer)
    labels, vectors = [], []
    for word in words:
        for index, sentence in enumerate(sentences):
            if not contains_word(sentence, word):
                continue
            labels.append((word, index))
            if kind == "static":
                vectors.append(source.static(sentence, word)[0])
            else:
                vectors.append(source.contextual(sentence, word))
    if len(vectors) < 2:
        raise ValueError(f"words={words!r} occur fewer than two times in the sentences")
    coordinates, explained = pca_2d(np.stack(vectors))
    points = [
        ProjectedPoint(word, index, kind, float(x), float(y))
        for (word, index), (x, y) in zip(labels, coordinates, strict=True)
    ]
    return points, explained
