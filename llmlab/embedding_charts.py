"""Plotly figures for the Embeddings page: plain data in, `go.Figure` out; no Streamlit here.

>>> import numpy as np
>>> figure = similarity_figure(np.eye(2), ["s1", "s2"], ["A cat", "A dog"])
>>> figure.data[0].z.tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from llmlab.charts import PALETTE, base_layout

# Blue for negative numbers, red for positive, white at zero: a token vector has both signs.
DIVERGING = "RdBu_r"
WORD_MARKER = "diamond"
TOPIC_COLOURS = [c for c in PALETTE if c != "#000000"]  # black is for the words typed
TOPIC_SYMBOLS = ["circle", "square", "triangle-up", "cross"]


def _short(text: str, limit: int = 90) -> str:
    """Hover text: escaped (a sentence is never markup) and cut to one readable line."""
    text = " ".join(text.split())
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "…")


def token_vectors_heatmap(vectors: np.ndarray, tokens: list[str], title: str = "") -> go.Figure:
    """One row of numbers per token (the encoder's output), one column per dimension.

    >>> token_vectors_heatmap(np.zeros((2, 4)), ["[CLS]", "[SEP]"]).data[0].y
    ('0: [CLS]', '1: [SEP]')
    """
    # Numbered labels: the same token twice must stay two rows, not merge into one category.
    labels = [f"{i}: {token}" for i, token in enumerate(tokens)]
    limit = float(np.abs(vectors).max()) if vectors.size else 1.0
    figure = go.Figure(
        go.Heatmap(
            z=vectors,
            y=labels,
            colorscale=DIVERGING,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "value"},
            hovertemplate="%{y}, number %{x}: %{z:.4f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(title=f"the {vectors.shape[1]} numbers of each token's vector")
    return base_layout(figure, title, height=max(220, 24 * len(tokens) + 130))


def vector_rows_heatmap(rows: list[np.ndarray], labels: list[str], title: str = "") -> go.Figure:
    """A few vectors of the same width as rows of colour (mean, normalised mean...).

    >>> vector_rows_heatmap([np.ones(3)], ["mean"]).data[0].y
    ('mean',)
    """
    matrix = np.stack(rows)
    limit = float(np.abs(matrix).max()) if matrix.size else 1.0
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            y=labels,
            colorscale=DIVERGING,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "value"},
            hovertemplate="%{y}, number %{x}: %{z:.4f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(title=f"the {matrix.shape[1]} numbers")
    return base_layout(figure, title, height=max(200, 40 * len(rows) + 130))


def similarity_figure(matrix: np.ndarray, labels: list[str], sentences: list[str]) -> go.Figure:
    """Cosine similarities of sentence vectors; the hover names both sentences.

    Scores are printed in the cells when there are few enough sentences to read them.
    """
    count = len(labels)
    hover = [[f"{_short(sentences[r], 60)}<br>{_short(sentences[c], 60)}" for c in range(count)]
             for r in range(count)]  # fmt: skip
    options = {}
    if count <= 12:
        options = {"text": [[f"{v:.2f}" for v in row] for row in matrix], "texttemplate": "%{text}"}
    figure = go.Figure(
        go.Heatmap(
            z=np.asarray(matrix, dtype=float),
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=min(0.0, float(np.min(matrix))) if count else 0.0,
            zmax=1,
            customdata=hover,
            colorbar={"title": "cosine"},
            hovertemplate="%{y} vs %{x}: %{z:.4f}<br>%{customdata}<extra></extra>",
            **options,
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return base_layout(figure, "Cosine similarity", height=max(300, 28 * count + 140))


def text_map_figure(points: list, title: str) -> go.Figure:
    """The 2-D map: one colour per group (topic), sentences as dots, words as labelled diamonds.

    >>> from llmlab.embeddings.projection import MapPoint
    >>> figure = text_map_figure([MapPoint("A cat", "animals", "sentence", 0.0, 1.0),
    ...                           MapPoint("dog", "word", "word", 1.0, 0.0)], "Map")
    >>> [trace.name for trace in figure.data]
    ['animals', 'words you typed']
    """
    figure = go.Figure()
    groups = list(dict.fromkeys(p.group for p in points if p.kind == "sentence"))
    for index, group in enumerate(groups):
        chosen = [p for p in points if p.kind == "sentence" and p.group == group]
        figure.add_trace(
            go.Scatter(
                x=[p.x for p in chosen],
                y=[p.y for p in chosen],
                mode="markers",
                name=group,
                marker={
                    "size": 9,
                    "color": TOPIC_COLOURS[index % len(TOPIC_COLOURS)],
                    # Past seven topics the colours come round again, with another shape.
                    "symbol": TOPIC_SYMBOLS[(index // len(TOPIC_COLOURS)) % len(TOPIC_SYMBOLS)],
                    "opacity": 0.85,
                },
                customdata=[_short(p.text) for p in chosen],
                hovertemplate=f"<b>{_short(group, 40)}</b><br>%{{customdata}}<extra></extra>",
            )
        )
    typed = [p for p in points if p.kind == "word"]
    if typed:
        figure.add_trace(
            go.Scatter(
                x=[p.x for p in typed],
                y=[p.y for p in typed],
                mode="markers+text",
                name="words you typed",
                text=[_short(p.text, 30) for p in typed],
                textposition="top center",
                marker={"size": 13, "color": "#000000", "symbol": WORD_MARKER},
                hovertemplate="<b>word</b>: %{text}<extra></extra>",
            )
        )
    figure.update_xaxes(title="direction 1")
    figure.update_yaxes(title="direction 2")
    return base_layout(figure, title, height=520)


def score_bars(labels: list[str], scores: list[float], title: str, axis: str) -> go.Figure:
    """Horizontal bars of scores (a class per bar, a neighbour per bar), best at the top.

    >>> score_bars(["a", "b"], [0.5, 0.2], "T", "cosine").data[0].x
    (0.5, 0.2)
    """
    figure = go.Figure(
        go.Bar(
            x=scores,
            y=[f"{i + 1}. {_short(label, 40)}" for i, label in enumerate(labels)],
            orientation="h",
            marker_color=PALETTE[0],
            text=[f"{s:.3f}" for s in scores],
            textposition="auto",
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(title=axis)
    return base_layout(figure, title, height=90 + 30 * max(len(labels), 2))
