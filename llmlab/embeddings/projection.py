"""A map of vectors: principal component analysis (PCA) down to two directions.

PCA finds the directions along which the points spread the most. Here they come from the
eigenvectors of the centred points' covariance matrix (the tests check the result against
numpy's SVD of the same centred points, the other classic way to compute it).

>>> import numpy as np
>>> points, explained = pca_2d(np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 1.0], [2.0, -1.0]]))
>>> (points.round(6) + 0.0).tolist()
[[-2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
>>> explained.round(6).tolist()
[0.8, 0.2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their two main directions.

    Returns the (n, 2) coordinates and the share of the total spread (variance) each direction
    explains. Each direction's sign is chosen so that its largest entry is positive: the sign of
    an eigenvector is arbitrary, and the picture must not flip between runs.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"vectors of shape {vectors.shape} needs at least two rows")
    centred = vectors - vectors.mean(0)
    # The smaller of the two Gram matrices gives the same non-zero eigenvalues.
    if centred.shape[0] < centred.shape[1]:
        values, left = np.linalg.eigh(centred @ centred.T)  # (n, n), ascending
        values, left = values[::-1][:2].clip(min=0), left[:, ::-1][:, :2]
        directions = (centred.T @ left) / np.maximum(np.sqrt(values), 1e-300)  # (d, 2)
        directions[:, values <= values.sum() * 1e-24] = 0.0  # no spread: no direction
        total = float(np.einsum("ij,ij->", centred, centred))
    else:
        values, directions = np.linalg.eigh(centred.T @ centred)  # (d, d), ascending
        values, directions = values[::-1][:2].clip(min=0), directions[:, ::-1][:, :2]
        total = float(np.einsum("ij,ij->", centred, centred))
    if directions.shape[1] < 2:  # one-dimensional data has a single direction
        directions = np.pad(directions, ((0, 0), (0, 2 - directions.shape[1])))
        values = np.pad(values, (0, 2 - len(values)))
    largest = directions[np.argmax(np.abs(directions), axis=0), [0, 1]]
    directions = directions * np.where(largest < 0, -1.0, 1.0)
    coordinates = centred @ directions
    explained = values / total if total > 0 else np.zeros(2)
    return coordinates, explained


@dataclass(frozen=True)
class MapPoint:
    """One text on the map."""

    text: str
    group: str  # the colour: a topic, or "word"
    kind: str  # "sentence" or "word"
    x: float
    y: float


def text_map(
    vectors: np.ndarray, texts: list[str], groups: list[str], kinds: list[str]
) -> tuple[list[MapPoint], np.ndarray]:
    """Texts as points of a 2-D PCA map, with the share of the spread the map shows.

    >>> points, _ = text_map(np.eye(3), ["a", "b", "c"], ["x", "x", "y"], ["word"] * 3)
    >>> [p.group for p in points]
    ['x', 'x', 'y']
    """
    if not len(texts) == len(groups) == len(kinds) == len(vectors):
        raise ValueError(
            f"texts, groups, kinds and vectors must have the same length; got {len(texts)}, "
            f"{len(groups)}, {len(kinds)} and {len(vectors)}"
        )
    if len(vectors) < 3:
        raise ValueError(f"the map needs at least three texts; got {len(vectors)}")
    coordinates, explained = pca_2d(vectors)
    points = [
        MapPoint(text, group, kind, float(x), float(y))
        for text, group, kind, (x, y) in zip(texts, groups, kinds, coordinates, strict=True)
    ]
    return points, explained
