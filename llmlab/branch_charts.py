"""Figures and HTML for "what if?": a tree of branched generations, texts side by side with the
first differing token marked, and the temperature ladder's entropy per step. Pure: plain data
in, a `go.Figure` or an HTML string out; every token is HTML-escaped here.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from llmlab.charts import CHOSEN, KEPT, PALETTE, base_layout

MARK = "rgba(213,94,0,0.30)"  # vermillion, light: the token where a text leaves the other


def _short(token: str) -> str:
    return repr(token)[1:-1][:14]


def tree_figure(
    labels: list[str],
    tokens: list[list[str]],
    parents: list[int | None],
    divergences: list[int | None],
    title: str = "",
) -> go.Figure:
    """The original (top row) and each branch (a row below), drawn from the step where it leaves
    its parent; a dashed line joins it to its parent there. Steps are numbered from 1.

    >>> figure = tree_figure(["original", "branch 1"], [[" a", " b"], [" a", " c"]], [None, 0],
    ...                      [None, 1])
    >>> [trace.name for trace in figure.data]
    ['original', 'branch 1', 'branch 1 leaves original']
    >>> figure.data[1].x, figure.data[1].text[0].endswith(" c")
    ((2,), True)
    """
    figure = go.Figure()
    links_x: list[float | None] = []
    links_y: list[float | None] = []
    names: list[str] = []
    for node, (label, node_tokens) in enumerate(zip(labels, tokens, strict=True)):
        parent = parents[node]
        start = 0 if parent is None else divergences[node]
        if start is None:  # took the parent's own token: it is the parent's text again
            start = max(len(node_tokens) - 1, 0)
        shown = node_tokens[start:]
        xs = list(range(start + 1, start + 1 + len(shown)))
        text = [_short(t) for t in shown]
        if parent is not None and text:
            text[0] = "\u2192 " + text[0]
        figure.add_scatter(
            x=xs, y=[-node] * len(xs), mode="lines+markers+text",
            name=label, line={"color": PALETTE[node % len(PALETTE)], "width": 2},
            marker={"size": 9, "color": PALETTE[node % len(PALETTE)]},
            text=text if parent is not None else [_short(t) for t in shown],
            textposition="top center", textfont={"size": 10},
            hovertext=[f"{label} · step {x}: {t!r}" for x, t in zip(xs, shown, strict=True)],
            hoverinfo="text",
        )  # fmt: skip
        if parent is not None:
            links_x += [start, start + 1, None]
            links_y += [-parent, -node, None]
            names.append(f"{label} leaves {labels[parent]}")
    if links_x:
        figure.add_scatter(
            x=links_x, y=links_y, mode="lines", line={"color": "#888888", "dash": "dash"},
            hoverinfo="skip", showlegend=False, name=" · ".join(names),
        )  # fmt: skip
    figure.update_xaxes(title="step", dtick=1 if max(map(len, tokens), default=0) <= 40 else 5)
    figure.update_yaxes(tickvals=[-n for n in range(len(labels))], ticktext=labels, zeroline=False)
    figure.update_layout(showlegend=False)
    return base_layout(figure, title, height=max(220, 70 * len(labels) + 110))


def texts_side_by_side_html(
    labels: list[str],
    tokens: list[list[str]],
    marks: list[int | None],
    notes: list[str] | None = None,
) -> str:
    """Texts in columns; in each, the token at its mark (the first one that differs) is
    highlighted and the tokens before it, shared with the text it is compared with, are grey.

    >>> page = texts_side_by_side_html(["a", "b"], [[" x", "<b>"], [" x", " y"]], [None, 1])
    >>> page.count("&lt;b&gt;"), page.count("<mark"), "first different token" in page
    (1, 1, True)
    """
    notes = notes or [""] * len(labels)
    columns = []
    for label, node_tokens, mark, note in zip(labels, tokens, marks, notes, strict=True):
        parts = []
        for position, token in enumerate(node_tokens):
            text = html.escape(token)
            if mark is not None and position < mark:
                parts.append(f'<span style="color:#888">{text}</span>')
            elif position == mark:
                parts.append(
                    f'<mark title="step {position + 1}: first different token" style="background:'
                    f'{MARK};border:1px solid {CHOSEN};border-radius:3px;padding:0 1px">'
                    f"{text or '∅'}</mark>"
                )
            else:
                parts.append(text)
        caption = (
            f'<div style="color:#666;font-size:0.85em">{html.escape(note)}</div>' if note else ""
        )
        columns.append(
            '<div style="flex:1 1 240px;min-width:220px;border:1px solid #ddd;border-radius:6px;'
            f'padding:8px"><b>{html.escape(label)}</b>{caption}<div style="white-space:pre-wrap;'
            f'margin-top:4px">{"".join(parts)}</div></div>'
        )
    return '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(columns) + "</div>"


def entropy_figure(
    labels: list[str], entropies: list[list[float]], departures: list[int | None], title: str = ""
) -> go.Figure:
    """Entropy (bits) of the distribution each token was drawn from, one line per run; a cross
    marks the step where the run left the greedy text.

    >>> figure = entropy_figure(["T = 0.2", "T = 1.5"], [[0.1, 0.2], [3.0, 4.0]], [None, 1])
    >>> [trace.name for trace in figure.data]
    ['T = 0.2', 'T = 1.5', 'T = 1.5 leaves greedy']
    >>> figure.data[2].x
    (2,)
    """
    figure = go.Figure()
    for n, (label, values) in enumerate(zip(labels, entropies, strict=True)):
        colour = PALETTE[n % len(PALETTE)]
        steps = list(range(1, len(values) + 1))
        figure.add_scatter(
            x=steps, y=[None if math.isnan(v) else v for v in values], mode="lines+markers",
            name=label, line={"color": colour}, marker={"size": 6},
            hovertemplate=f"{label}<br>step %{{x}}: %{{y:.2f}} bits<extra></extra>",
        )  # fmt: skip
    for n, (label, values, departure) in enumerate(zip(labels, entropies, departures, strict=True)):
        if departure is not None and departure < len(values):
            figure.add_scatter(
                x=[departure + 1], y=[values[departure]], mode="markers",
                name=f"{label} leaves greedy", showlegend=False,
                marker={"symbol": "x", "size": 14, "color": PALETTE[n % len(PALETTE)],
                        "line": {"width": 2, "color": KEPT}},
                hovertemplate=f"{label} leaves the greedy text at step %{{x}}<extra></extra>",
            )  # fmt: skip
    figure.update_xaxes(title="step", rangemode="tozero")
    figure.update_yaxes(title="entropy (bits)", rangemode="tozero")
    figure.update_layout(legend={"orientation": "h", "y": -0.2})
    return base_layout(figure, title, height=380)
