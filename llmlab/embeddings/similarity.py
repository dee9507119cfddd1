"""Cosine similarity, and what a score means in plain words.

Two vectors' cosine similarity is the cosine of the angle between them: 1 when they point the
same way, 0 when they are at right angles (unrelated), -1 when opposite. For vectors of length
1, such as MiniLM's sentence vectors, it is just their dot product.

>>> import numpy as np
>>> cosine_matrix(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])).round(3).tolist()
[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
>>> reading(0.83)
'very close in meaning'
"""

from __future__ import annotations

import numpy as np

# How to read a MiniLM cosine score. The bands are a rule of thumb for this model (unrelated
# sentences mostly score between -0.1 and 0.2, paraphrases above 0.7), not a law of embeddings.
READINGS = (
    (0.999, "the same sentence (or the same meaning, word for word)"),
    (0.7, "very close in meaning"),
    (0.5, "clearly related: same topic, similar point"),
    (0.3, "loosely related: they share a topic or some words"),
    (0.1, "barely related"),
    (-1.01, "unrelated"),
)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of `vectors` (a zero row scores 0)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def reading(score: float) -> str:
    """A cosine score of MiniLM sentence vectors in plain words.

    >>> reading(1.0), reading(0.05)
    ('the same sentence (or the same meaning, word for word)', 'unrelated')
    """
    return next(text for low, text in READINGS if score >= low)


def most_and_least_similar(matrix: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The pair of different rows with the highest score and the pair with the lowest.

    >>> most_and_least_similar(np.array([[1, 0.9, 0.1], [0.9, 1, 0.2], [0.1, 0.2, 1]]))
    ((0, 1), (0, 2))
    >>> most_and_least_similar(np.ones((1, 1))) is None
    True
    """
    count = len(matrix)
    if count < 2:
        return None
    upper = np.triu_indices(count, k=1)
    scores = np.asarray(matrix)[upper]
    high, low = int(np.argmax(scores)), int(np.argmin(scores))
    return (int(upper[0][high]), int(upper[1][high])), (int(upper[0][low]), int(upper[1][low]))
