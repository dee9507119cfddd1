"""Classification by nearest centroid: the simplest use of embeddings.

A few labelled examples per class; each class's centroid is the average of its examples'
vectors; a new sentence gets the class whose centroid is nearest (highest cosine similarity).
No training, no weights changed: the meaning is already in the vectors.

>>> examples, notices = labelled_examples("sport: A goal!\\nfood: Soup\\nfood: Bread\\nhello")
>>> examples, notices[0]
({'sport': ['A goal!'], 'food': ['Soup', 'Bread']}, 'Line 4 has no label: write it as "label: sentence".')
>>> import numpy as np
>>> centroids = class_centroids({"x": np.array([[1.0, 0.0], [0.8, 0.6]]), "y": np.array([[0.0, 1.0]])})
>>> [c.label for c in classify(np.array([[0.9, 0.1]]), centroids, ["new"])]
['x']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_EXAMPLES = 200
MAX_CLASSES = 12
MAX_LABEL_CHARS = 40


def labelled_examples(
    text: str, limit: int = MAX_EXAMPLES
) -> tuple[dict[str, list[str]], list[str]]:
    """Examples written one per line as "label: sentence", grouped by label, and notices."""
    examples: dict[str, list[str]] = {}
    notices: list[str] = []
    count = 0
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for number, line in lines:
        label, colon, sentence = line.partition(":")
        label, sentence = label.strip(), sentence.strip()
        if not colon or not label or not sentence:
            notices.append(f'Line {number} has no label: write it as "label: sentence".')
            continue
        if len(label) > MAX_LABEL_CHARS:
            notices.append(f"Line {number}: a label is at most {MAX_LABEL_CHARS} characters.")
            continue
        if label not in examples and len(examples) == MAX_CLASSES:
            notices.append(f"Line {number}: at most {MAX_CLASSES} classes; {label!r} is left out.")
            continue
        if count == limit:
            notices.append(f"Only the first {limit:,} examples are used.")
            break
        examples.setdefault(label, []).append(sentence)
        count += 1
    return examples, notices[:10]


@dataclass(frozen=True)
class Centroids:
    labels: list[str]
    vectors: np.ndarray  # (classes, d), each of length 1
    counts: list[int]  # examples per class


def class_centroids(vectors_by_label: dict[str, np.ndarray]) -> Centroids:
    """Each class's average example vector, brought back to length 1."""
    if not vectors_by_label:
        raise ValueError("vectors_by_label is empty; give at least one labelled example")
    labels = list(vectors_by_label)
    means = np.stack([np.asarray(vectors_by_label[k], dtype=np.float64).mean(0) for k in labels])
    lengths = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return Centroids(labels, means / lengths, [len(vectors_by_label[k]) for k in labels])


@dataclass(frozen=True)
class Classified:
    sentence: str
    label: str  # the nearest class
    score: float  # cosine similarity with that class's centroid
    margin: float  # how far ahead of the second class (0 with a single class)
    scores: dict[str, float]  # every class's cosine similarity


def classify(vectors: np.ndarray, centroids: Centroids, sentences: list[str]) -> list[Classified]:
    """Each sentence's nearest centroid (a tie goes to the class named first)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) != len(sentences):
        raise ValueError(f"vectors has {len(vectors)} rows for {len(sentences)} sentences")
    units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = units @ centroids.vectors.T  # (sentences, classes)
    results = []
    for sentence, row in zip(sentences, scores, strict=True):
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        second = float(row[order[1]]) if len(order) > 1 else float(row[best])
        results.append(
            Classified(
                sentence,
                centroids.labels[best],
                float(row[best]),
                float(row[best]) - second,
                dict(zip(centroids.labels, map(float, row), strict=True)),
            )
        )
    return results
