"""Pure Plotly figure builders: plain data in, `go.Figure` out; no Streamlit here.

Colours come from the Okabe-Ito palette, which stays distinguishable for the common kinds of
colour blindness and on a classroom projector.
"""

from __future__ import annotations

import plotly.graph_objects as go

# Okabe-Ito: blue, orange, bluish green, vermillion, sky blue, reddish purple, yellow, black.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]
KEPT = "#0072B2"
REMOVED = "#BBBBBB"
CHOSEN = "#D55E00"


def base_layout(figure: go.Figure, title: str = "", height: int = 360) -> go.Figure:
    """The lab's common look: readable fonts, a white background, tight margins."""
    figure.update_layout(
        title=title or None,
        height=height,
        template="plotly_white",
        font={"size": 14},
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        colorway=PALETTE,
    )
    return figure


# --- tokenizers ---------------------------------------------------------------------------------
# (section: tokenizers)

# --- architecture -------------------------------------------------------------------------------
# (section: architecture)


def parameter_treemap(rows: list, total: int, title: str = "Where the parameters are") -> go.Figure:
    """Treemap of a parameter breakdown: model -> embeddings / blocks / output -> parts.

    `rows` are `architecture.BreakdownRow`s; box areas are parameter counts (tied rows with 0
    parameters have no area).
    """
    ids, labels, parents, values = ["model"], ["whole model"], [""], [total]
    groups: dict[str, int] = {}
    blocks: dict[int, int] = {}
    for row in rows:
        groups[row.group] = groups.get(row.group, 0) + row.parameters
        if row.block is not None:
            blocks[row.block] = blocks.get(row.block, 0) + row.parameters
    for group, value in groups.items():
        ids.append(group), labels.append(group), parents.append("model"), values.append(value)
    for block, value in blocks.items():
        ids.append(f"block{block}"), labels.append(f"Block {block}")
        parents.append("Blocks"), values.append(value)
    for row in rows:
        if row.parameters == 0:
            continue
        ids.append(f"{row.group}/{row.label}")
        labels.append(row.component)
        parents.append(row.group if row.block is None else f"block{row.block}")
        values.append(row.parameters)
    figure = go.Figure(
        go.Treemap(
            ids=ids,
            labels=labels,
            parents=parents,
            values=values,
            branchvalues="total",  # a box is exactly the sum of its children
            maxdepth=3,
            texttemplate="%{label}<br>%{value:,}<br>%{percentRoot:.1%}",
            hovertemplate="%{label}: %{value:,} parameters (%{percentRoot:.2%})<extra></extra>",
            marker={"colors": [PALETTE[i % 5] for i in range(len(ids))]},
        )
    )
    return base_layout(figure, title, height=460)


def memory_bars(rows: list, title: str = "Memory for the weights") -> go.Figure:
    """Bars of weight memory per storage type (`architecture.MemoryRow`s), in megabytes."""
    figure = go.Figure(
        go.Bar(
            x=[row.dtype for row in rows],
            y=[row.bytes / 1e6 for row in rows],
            marker_color=KEPT,
            text=[f"{row.bytes / 1e6:,.0f} MB" for row in rows],
            textposition="outside",
            hovertemplate="%{x}: %{y:,.1f} MB<extra></extra>",
        )
    )
    figure.update_yaxes(title="megabytes", rangemode="tozero")
    figure.update_xaxes(title="bytes per weight: 4 · 2 · 1 · ½")
    return base_layout(figure, title, height=340)


def trace_flow(names: list[str], shapes: list[tuple], spreads: list[float]) -> go.Figure:
    """The forward pass as a path: one marker per step, height = spread (std) of its output."""
    labels = [f"{i}. {name}" for i, name in enumerate(names)]
    figure = go.Figure(
        go.Scatter(
            x=labels,
            y=spreads,
            mode="lines+markers",
            marker={"color": KEPT, "size": 8},
            customdata=[" × ".join(str(n) for n in shape) for shape in shapes],
            hovertemplate="%{x}<br>output shape %{customdata}<br>std %{y:.3g}<extra></extra>",
        )
    )
    figure.update_yaxes(title="std of the output (log scale)", type="log")
    figure.update_xaxes(title="", tickangle=-45, showticklabels=len(names) <= 40)
    return base_layout(figure, "How big the numbers get, step by step", height=380)


def attention_heatmap(weights, tokens: list[str], title: str = "") -> go.Figure:
    """One head's attention: row = the token looking, column = the token looked at."""
    # Numbered labels: the same token twice must stay two rows, not merge into one category.
    labels = [f"{i}: {token}" for i, token in enumerate(tokens)]
    figure = go.Figure(
        go.Heatmap(
            z=weights,
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "weight"},
            hovertemplate="%{y} looks at %{x}: %{z:.3f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", title="token looking")
    figure.update_xaxes(title="token looked at", tickangle=-45)
    return base_layout(figure, title, height=max(360, 26 * len(tokens) + 160))


def similarity_heatmap(matrix, labels: list[str], title: str) -> go.Figure:
    """Cosine similarities between vectors (1 = same direction)."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            text=[[f"{v:.3f}" for v in row] for row in matrix],
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: %{z:.4f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    return base_layout(figure, title, height=300)


def embedding_scatter(points: list, sentences: list[str], title: str) -> go.Figure:
    """PCA map of word vectors (`embeddings.ProjectedPoint`s): colour = word, label = sentence."""
    figure = go.Figure()
    words = list(dict.fromkeys(point.word for point in points))
    for index, word in enumerate(words):
        chosen = [p for p in points if p.word == word]
        figure.add_trace(
            go.Scatter(
                x=[p.x for p in chosen],
                y=[p.y for p in chosen],
                mode="markers+text",
                name=word,
                text=[f"{word} (s{p.sentence + 1})" for p in chosen],
                textposition="top center",
                marker={"size": 13, "color": PALETTE[index % len(PALETTE)]},
                customdata=[sentences[p.sentence] for p in chosen],
                hovertemplate="%{text}<br>%{customdata}<extra></extra>",
            )
        )
    figure.update_xaxes(title="direction 1")
    figure.update_yaxes(title="direction 2")
    return base_layout(figure, title, height=420)


# --- next token ---------------------------------------------------------------------------------
# (section: next token)

# --- decoding -----------------------------------------------------------------------------------
# (section: decoding)

# --- chat vs base -------------------------------------------------------------------------------
# (section: chat)
