"""Figures for the projected view (pure Plotly): the class's answers beside the model's.

Large fonts: these are read from the back of a classroom.

>>> import pandas as pd
>>> table = pd.DataFrame({"guess": [" blue", " green"], "model_probability": [0.6, 0.01],
...                       "students": [3, 1], "class_share": [0.75, 0.25], "top": [True, False]})
>>> [trace.name for trace in guess_chart(table).data]
['The class', 'The model']
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from llmlab.charts import PALETTE, base_layout
from llmlab.tokenization.pieces import visible

CLASS = PALETTE[1]  # orange
MODEL = PALETTE[0]  # blue
FONT = {"size": 20}


def guess_chart(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Side-by-side bars per guess: the class's share of answers and the model's probability.

    ``table`` is `activities.class_guess_table`. The model's top token is starred.
    """
    labels = [
        visible(str(g)) + (" ★" if top else "")
        for g, top in zip(table["guess"], table["top"], strict=True)
    ]
    figure = go.Figure(
        [
            go.Bar(name="The class", y=labels, x=table["class_share"], orientation="h",
                   marker_color=CLASS, text=[f"{n}" for n in table["students"]],
                   hovertemplate="%{y}: %{x:.0%} of the class<extra></extra>"),
            go.Bar(name="The model", y=labels, x=table["model_probability"], orientation="h",
                   marker_color=MODEL,
                   hovertemplate="%{y}: model probability %{x:.1%}<extra></extra>"),
        ]
    )  # fmt: skip
    base_layout(figure, title, height=max(360, 44 * len(labels) + 120))
    figure.update_layout(barmode="group", font=FONT, legend={"orientation": "h", "y": 1.08})
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(tickformat=".0%", range=[0, 1])
    return figure


def first_token_chart(tree: pd.DataFrame, title: str = "") -> go.Figure:
    """A sunburst: first tokens inside, the second token after each outside, sized by runs.

    ``tree`` is `activities.first_token_tree`.
    """
    ids, labels, parents, values = [], [], [], []
    for first, group in tree.groupby("first_token", sort=False):
        ids.append(f"1:{first}")
        labels.append(visible(first))
        parents.append("")
        values.append(int(group["runs"].sum()))
        for second, runs in zip(group["second_token"], group["runs"], strict=True):
            ids.append(f"2:{first}\x1f{second}")
            labels.append(visible(second) if second else "(end)")
            parents.append(f"1:{first}")
            values.append(int(runs))
    figure = go.Figure(
        go.Sunburst(ids=ids, labels=labels, parents=parents, values=values,
                    branchvalues="total", hovertemplate="%{label}: %{value} runs<extra></extra>")
    )  # fmt: skip
    base_layout(figure, title, height=520)
    figure.update_layout(font=FONT)
    return figure


def token_guess_chart(
    guesses: dict[str, list[int]], real: dict[str, int], title: str = ""
) -> go.Figure:
    """One histogram of the class's counts per tokenizer, with the real count marked.

    >>> figure = token_guess_chart({"gpt2": [4, 5, 5]}, {"gpt2": 5})
    >>> figure.data[0].name, figure.layout.shapes[0].x0
    ('gpt2', 5)
    """
    figure = go.Figure()
    for index, (name, values) in enumerate(guesses.items()):
        colour = PALETTE[index % len(PALETTE)]
        figure.add_histogram(x=values, name=name, marker_color=colour, opacity=0.75)
        if name in real:
            figure.add_vline(x=real[name], line_color=colour, line_width=4, line_dash="dash",
                             annotation_text=f"{name}: {real[name]}")  # fmt: skip
    base_layout(figure, title)
    figure.update_layout(barmode="overlay", font=FONT, xaxis_title="tokens guessed",
                         yaxis_title="students")  # fmt: skip
    return figure
