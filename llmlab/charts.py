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


GRID = "#EBF0F8"  # plotly_white's grid and axis-line colour


def base_layout(figure: go.Figure, title: str = "", height: int = 360) -> go.Figure:
    """The lab's common look: readable fonts, a white background, tight margins.

    The white background and light grid are plotly_white's, set directly: assigning the whole
    template copies and re-checks it, about 15 ms per figure on every page run. In the app,
    Streamlit's chart theme draws over both; they show in notebooks and exported HTML.

    >>> figure = base_layout(go.Figure(go.Bar(x=[1], y=[2])), "T")
    >>> figure.layout.plot_bgcolor, figure.layout.yaxis.gridcolor, figure.layout.height
    ('white', '#EBF0F8', 360)
    """
    figure.update_layout(
        title=title or None,
        height=height,
        plot_bgcolor="white",
        font={"size": 14},
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        colorway=PALETTE,
    )
    figure.update_xaxes(gridcolor=GRID, linecolor=GRID, zerolinecolor=GRID)
    figure.update_yaxes(gridcolor=GRID, linecolor=GRID, zerolinecolor=GRID)
    return figure


def axis_on_top(figure: go.Figure) -> go.Figure:
    """Put the x axis above the plot, with room for its labels under the title.

    >>> axis_on_top(base_layout(go.Figure(go.Heatmap(z=[[1]])), "T")).layout.margin.t
    90
    """
    figure.update_xaxes(side="top")
    figure.update_layout(margin_t=90 if figure.layout.title.text else 50)
    return figure


# --- tokenizers ---------------------------------------------------------------------------------
# (section: tokenizers)
def token_count_bars(titles: list[str], counts: list[int], title: str = "") -> go.Figure:
    """Horizontal bars of how many tokens each tokenizer needs for the same text.

    >>> token_count_bars(["GPT-2", "cl100k"], [11, 9]).data[0].x
    (11, 9)
    """
    figure = go.Figure(
        go.Bar(
            x=counts,
            y=titles,
            orientation="h",
            marker_color=KEPT,
            text=[f"{count:,}" for count in counts],
            textposition="auto",
            hovertemplate="%{y}: %{x:,} tokens<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title="tokens (fewer = more text fits in the context)")
    return base_layout(figure, title or "Tokens for the same text", 80 + 34 * max(len(titles), 2))


def multilingual_tax_bars(table: dict[str, dict[str, int]], title: str = "") -> go.Figure:
    """Grouped bars: for each language (x), the token count of each tokenizer (one colour each).

    `table` maps tokenizer title -> {language: tokens}.
    """
    figure = go.Figure()
    for index, (tokenizer, counts) in enumerate(table.items()):
        figure.add_bar(
            name=tokenizer,
            x=list(counts),
            y=list(counts.values()),
            marker_color=PALETTE[index % len(PALETTE)],
            hovertemplate=f"{tokenizer}<br>%{{x}}: %{{y}} tokens<extra></extra>",
        )
    figure.update_layout(barmode="group", legend={"orientation": "h", "y": -0.2})
    figure.update_yaxes(title="tokens for the same sentence")
    return base_layout(figure, title or "The multilingual tax", 420)


def sequence_length_bars(labels: list[str], lengths: list[int], title: str = "") -> go.Figure:
    """Bars of the sequence length of one text under several schemes (words, chars, bytes, ...)."""
    figure = go.Figure(
        go.Bar(
            x=labels,
            y=lengths,
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))],
            text=lengths,
            textposition="auto",
        )
    )
    figure.update_yaxes(title="sequence length")
    return base_layout(figure, title or "How long is the same text?", 320)


def merge_count_line(counts: list[int], current: int | None = None, title: str = "") -> go.Figure:
    """How often each learned merge occurred when chosen (falls fast: Zipf's law at work)."""
    figure = go.Figure(
        go.Scatter(
            x=list(range(1, len(counts) + 1)),
            y=counts,
            mode="lines",
            line={"color": KEPT},
            hovertemplate="merge %{x}: pair seen %{y:,} times<extra></extra>",
        )
    )
    if current:
        figure.add_vline(x=current, line_color=CHOSEN, line_dash="dash")
    figure.update_xaxes(title="merge number")
    figure.update_yaxes(title="pair count", type="log")
    return base_layout(figure, title or "Each merge is rarer than the last", 300)


# --- architecture -------------------------------------------------------------------------------
# (section: architecture)


# One colour per kind of part, the same in every model and every size.
COMPONENT_COLOURS = {
    "Token embedding": PALETTE[1],
    "Position embedding": PALETTE[6],
    "Attention": PALETTE[0],
    "MLP": PALETTE[2],
    "Norms": PALETTE[5],
    "Final norm": PALETTE[5],
    "LM head": PALETTE[3],
}


def parameter_treemap(rows: list, total: int, title: str = "") -> go.Figure:
    """Treemap of a parameter breakdown: model -> embeddings / blocks / output -> part -> block.

    `rows` are `parameters.BreakdownRow`s. Per-block rows are grouped by part first (all the
    attention of all blocks together), so the first view answers "attention or MLP?"; clicking a
    part shows its blocks. Box areas are parameter counts (tied rows with 0 have no area).
    """
    ids, labels, parents, values = ["model"], ["whole model"], [""], [total]
    colours = ["#FFFFFF"]
    sums: dict[str, int] = {}
    for row in rows:
        for key in (row.group, f"{row.group}/{row.component}"):
            sums[key] = sums.get(key, 0) + row.parameters
    for key, value in sums.items():
        if value == 0:
            continue
        group, _, component = key.partition("/")
        ids.append(key), labels.append(component or group), values.append(value)
        parents.append(group if component else "model")
        colours.append(COMPONENT_COLOURS.get(component, REMOVED) if component else "#EEEEEE")
    for row in rows:
        if row.block is not None and row.parameters:
            ids.append(f"{row.group}/{row.component}/{row.block}")
            labels.append(f"Block {row.block}")
            parents.append(f"{row.group}/{row.component}")
            values.append(row.parameters)
            colours.append(COMPONENT_COLOURS.get(row.component, REMOVED))
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
            marker={"colors": colours},
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
    """The forward pass as a path: one marker per step, height = spread (std) of its output.

    `names` are short step names ("embedding", "block 3", "final norm", "LM head").
    """
    figure = go.Figure(
        go.Scatter(
            x=names,
            y=spreads,
            mode="lines+markers",
            marker={"color": KEPT, "size": 8},
            customdata=[" × ".join(str(n) for n in shape) for shape in shapes],
            hovertemplate="%{x}<br>output shape %{customdata}<br>std %{y:.3g}<extra></extra>",
        )
    )
    figure.update_yaxes(title="spread (std, log scale)", type="log", dtick=1)  # 1, 10, 100
    figure.update_xaxes(title="", tickangle=-45, type="category")
    return base_layout(figure, "How big the numbers get, step by step", height=380)


def _square_heatmap(matrix, labels: list[str], hover: str, **options) -> go.Figure:
    """A labels x labels heatmap of values in 0..1, first label at the top."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate=hover + "<extra></extra>",
            **options,
        )
    )
    figure.update_yaxes(autorange="reversed")
    return figure


def attention_heatmap(weights, tokens: list[str], title: str = "") -> go.Figure:
    """One head's attention: row = the token looking, column = the token looked at."""
    # Numbered labels: the same token twice must stay two rows, not merge into one category.
    labels = [f"{i}: {token}" for i, token in enumerate(tokens)]
    figure = _square_heatmap(
        weights, labels, "%{y} looks at %{x}: %{z:.3f}", colorbar={"title": "weight"}
    )
    figure.update_yaxes(title="token looking")
    figure.update_xaxes(title="token looked at", tickangle=-45)
    return base_layout(figure, title, height=max(360, 26 * len(tokens) + 160))


def similarity_heatmap(matrix, labels: list[str], title: str) -> go.Figure:
    """Cosine similarities between vectors (1 = same direction)."""
    text = [[f"{v:.3f}" for v in row] for row in matrix]
    figure = _square_heatmap(
        matrix, labels, "%{y} vs %{x}: %{z:.4f}", text=text, texttemplate="%{text}"
    )
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
def next_token_bars(
    labels: list[str],
    probabilities: list[float],
    final_probabilities: list[float],
    removed_by: list[str | None],
    title: str = "",
    notes: list[str] | None = None,
) -> go.Figure:
    """Top next tokens: bars show the probability after the filters; tokens a filter removed
    stay visible in grey at the model's own probability; a marker shows the model's own value.
    ``notes`` (one per token, "" for most) explain byte fragments on hover.

    >>> next_token_bars(["·Paris", "·the"], [0.7, 0.1], [1.0, 0.0], [None, "top-k 1"]).data[0].y
    (1.0, 0.1)
    """
    kept = [cause is None for cause in removed_by]
    heights = [
        f if k else p for f, p, k in zip(final_probabilities, probabilities, kept, strict=True)
    ]
    hover = [
        f"model {p:.2%} → after filters {f:.2%}" if k else f"model {p:.2%} → removed by {cause}"
        for p, f, k, cause in zip(probabilities, final_probabilities, kept, removed_by, strict=True)
    ]
    if notes:
        hover = [f"{h}<br>{note}" if note else h for h, note in zip(hover, notes, strict=True)]
    # Distinct x keys even when two tokens look the same (e.g. two byte pieces).
    x = [f"{i + 1}. {label}" for i, label in enumerate(labels)]
    figure = go.Figure(
        [
            go.Bar(
                x=x, y=heights, name="after filters (grey = removed)",
                marker_color=[KEPT if k else REMOVED for k in kept],
                hovertext=hover, hoverinfo="text",
            ),
            go.Scatter(
                x=x, y=probabilities, name="model's own probability", mode="markers",
                marker={"symbol": "line-ew-open", "size": 18, "color": CHOSEN, "line": {"width": 3}},
                hovertemplate="model %{y:.2%}<extra></extra>",
            ),
        ]
    )  # fmt: skip
    figure.update_yaxes(title="probability", tickformat=".0%", rangemode="tozero")
    figure.update_xaxes(tickangle=-45)
    figure.update_layout(legend={"orientation": "h", "y": 1.12, "x": 0}, bargap=0.25)
    return base_layout(figure, title, height=420)


def filter_waterfall(
    step_labels: list[str],
    survivors: list[int],
    removed_mass: list[float],
    entropy_bits: list[float],
    title: str = "",
) -> go.Figure:
    """One column per filter step: tokens still in the running (log scale) and the share of
    probability each step cut away.

    >>> len(filter_waterfall(["model", "top-k 5"], [1000, 5], [0.0, 0.2], [4.0, 1.5]).data)
    2
    """
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12,
        subplot_titles=("tokens still possible (log scale)", "probability removed by the step"),
    )  # fmt: skip
    figure.add_trace(
        go.Bar(
            x=step_labels, y=survivors, marker_color=KEPT, name="survivors",
            text=[f"{n:,}" for n in survivors], textposition="outside",
            customdata=entropy_bits,
            hovertemplate="%{x}: %{y:,} tokens, entropy %{customdata:.2f} bits<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    figure.add_trace(
        go.Bar(
            x=step_labels, y=removed_mass, marker_color=REMOVED, name="removed mass",
            marker_line={"color": "#555555", "width": 1},
            text=[f"{m:.1%}" for m in removed_mass], textposition="outside",
            hovertemplate="%{x}: removed %{y:.2%} of the probability<extra></extra>",
        ),
        row=1, col=2,
    )  # fmt: skip
    figure.update_yaxes(type="log", row=1, col=1)
    top = max([*removed_mass, 0.05]) * 1.25
    figure.update_yaxes(tickformat=".0%", range=[0, top], row=1, col=2)
    figure.update_layout(showlegend=False)
    return base_layout(figure, title, height=340)


def surprisal_bars(
    labels: list[str], bits: list[float | None], ranks: list[int | None], title: str = ""
) -> go.Figure:
    """Surprisal (bits) of each token of a text; the first token has no context, so no bar.

    >>> surprisal_bars(["The", "·cat"], [None, 3.0], [None, 12]).data[0].y
    (0.0, 3.0)
    """
    values = [b or 0.0 for b in bits]
    hover = [
        "first token: nothing to predict it from" if b is None else f"{b:.2f} bits, rank {r:,}"
        for b, r in zip(bits, ranks, strict=True)
    ]
    x = [f"{i}. {label}" for i, label in enumerate(labels)]
    figure = go.Figure(
        go.Bar(
            x=x, y=values, marker={"color": values, "colorscale": "Oranges", "cmin": 0},
            hovertext=hover, hoverinfo="x+text",
        )
    )  # fmt: skip
    figure.update_yaxes(title="surprisal (bits)", rangemode="tozero")
    figure.update_xaxes(tickangle=-45)
    return base_layout(figure, title, height=340)


def logit_lens_heatmap(
    layers: list[str],
    tokens: list[list[str]],
    probabilities: list[list[float]],
    title: str = "",
    notes: list[list[str]] | None = None,
) -> go.Figure:
    """Rows = layers (input at the bottom), columns = rank; each cell names the token read out
    after that layer and is shaded by its probability; ``notes`` explain byte fragments on hover.

    >>> logit_lens_heatmap(["layer 1"], [["·a", "·b"]], [[0.5, 0.2]]).data[0].z
    ([0.5, 0.2],)
    """
    ranks = [f"#{i + 1}" for i in range(len(probabilities[0]) if probabilities else 0)]
    extra = [[f"<br>{n}" if n else "" for n in row] for row in notes] if notes else None
    figure = go.Figure(
        go.Heatmap(
            z=probabilities, x=ranks, y=layers, text=tokens, texttemplate="%{text}",
            colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "prob.", "tickformat": ".0%"},
            customdata=extra,
            hovertemplate="%{y}, %{x}: %{text} (%{z:.1%})"
            + ("%{customdata}" if extra else "") + "<extra></extra>",
        )
    )  # fmt: skip
    return axis_on_top(base_layout(figure, title, height=max(320, 26 * len(layers) + 80)))


# --- switching a part off -----------------------------------------------------------------------
# (section: knock-outs)
def knock_out_bars(
    labels: list[str],
    before: list[float],
    after: list[float],
    what: str,
    notes: list[str] | None = None,
    title: str = "",
) -> go.Figure:
    """The top tokens' probabilities with every part on (grey) and with `what` switched off
    (blue), side by side; `notes` explain byte fragments on hover.

    >>> fig = knock_out_bars(["·Paris", "·the"], [0.6, 0.1], [0.2, 0.3], "the MLP of layer 0")
    >>> [trace.name for trace in fig.data], fig.data[1].y
    (['model as it is', 'with the MLP of layer 0 switched off'], (0.2, 0.3))
    """
    x = [f"{i + 1}. {label}" for i, label in enumerate(labels)]  # distinct even if alike
    extra = [f"<br>{n}" if n else "" for n in notes] if notes else [""] * len(labels)
    figure = go.Figure(
        [
            go.Bar(
                x=x, y=before, name="model as it is", marker_color=REMOVED,
                customdata=extra, hovertemplate="%{x}: %{y:.2%}%{customdata}<extra>as it is</extra>",
            ),
            go.Bar(
                x=x, y=after, name=f"with {what} switched off", marker_color=KEPT,
                customdata=extra,
                hovertemplate="%{x}: %{y:.2%}%{customdata}<extra>switched off</extra>",
            ),
        ]
    )  # fmt: skip
    figure.update_yaxes(title="probability", tickformat=".0%", rangemode="tozero")
    figure.update_xaxes(tickangle=-45)
    figure.update_layout(barmode="group", legend={"orientation": "h", "y": 1.12, "x": 0})
    return base_layout(figure, title, height=400)


def head_sweep_heatmap(kl_bits: list[list[float]], title: str = "") -> go.Figure:
    """Layers x heads: how far switching off each head moves the next-token prediction (KL in
    bits); layer 0 at the bottom, as in the logit lens.

    >>> head_sweep_heatmap([[0.0, 0.5], [2.0, 0.1]]).data[0].z
    ([0.0, 0.5], [2.0, 0.1])
    """
    layers = [f"layer {n}" for n in range(len(kl_bits))]
    heads = [f"head {n}" for n in range(len(kl_bits[0]) if kl_bits else 0)]
    figure = go.Figure(
        go.Heatmap(
            z=kl_bits, x=heads, y=layers, colorscale="Oranges", zmin=0,
            colorbar={"title": "KL (bits)"},
            hovertemplate="%{y}, %{x} switched off: KL %{z:.3f} bits<extra></extra>",
        )
    )  # fmt: skip
    return axis_on_top(base_layout(figure, title, height=max(320, 18 * len(layers) + 120)))


# --- decoding -----------------------------------------------------------------------------------
# (section: decoding)
def probability_color(probability: float) -> str:
    """A background colour for a token chosen with this probability: vermillion when unlikely,
    blue when likely, so surprising picks stand out.

    >>> probability_color(1.0), probability_color(0.0)
    ('rgba(0,114,178,0.45)', 'rgba(213,94,0,0.45)')
    """
    p = min(max(float(probability), 0.0), 1.0)
    low, high = (213, 94, 0), (0, 114, 178)  # CHOSEN (vermillion) -> KEPT (blue)
    red, green, blue = (round(a + (b - a) * p) for a, b in zip(low, high, strict=True))
    return f"rgba({red},{green},{blue},0.45)"


def token_chips_html(tokens: list[str], probabilities: list[float], labels: list[str]) -> str:
    """Generated tokens as inline chips coloured by probability, with a hover title on each.

    Token text is HTML-escaped here and whitespace made visible, so a chip is never empty.

    >>> token_chips_html(["<b>"], [0.5], ["step 1"]).count("&lt;b&gt;")
    1
    """
    import html

    chips = []
    for token, probability, label in zip(tokens, probabilities, labels, strict=True):
        shown = token.replace(" ", "·").replace("\n", "↵").replace("\t", "→") or "∅"
        title = f"{label}: p = {probability:.1%}"
        chips.append(
            f'<span title="{html.escape(title, quote=True)}" style="background:'
            f"{probability_color(probability)};border-radius:4px;padding:1px 3px;margin:1px;"
            'display:inline-block;font-family:monospace;white-space:pre">'
            f"{html.escape(shown)}</span>"
        )
    return '<div style="line-height:2.0">' + "".join(chips) + "</div>"


def candidates_figure(candidates: list, chosen_id: int, title: str = "") -> go.Figure:
    """One step's candidates (`llmlab.generation.decoding.Candidate`) as horizontal bars, best on top.

    Grey: probability before the filters. Blue: after them (0 when a filter removed the token);
    the chosen token's bar is vermillion. A dashed line marks the filters' cut-off, between the
    last kept and the first removed candidate.

    >>> from types import SimpleNamespace as C
    >>> fig = candidates_figure([C(token=" a", token_id=1, prob_before=0.6, prob_after=1.0,
    ...     kept=True), C(token=" b", token_id=2, prob_before=0.4, prob_after=0.0, kept=False)], 1)
    >>> [len(trace.y) for trace in fig.data], fig.layout.shapes[0].line.dash
    ([2, 2], 'dash')
    """
    labels = [f"{n + 1}. {c.token!r}" for n, c in enumerate(candidates)]
    after_colours = [
        CHOSEN if c.token_id == chosen_id else (KEPT if c.kept else REMOVED) for c in candidates
    ]
    hover = [
        f"{c.token!r} (id {c.token_id})<br>before filters: {c.prob_before:.2%}<br>"
        f"after filters: {c.prob_after:.2%}<br>{'kept' if c.kept else 'removed'}"
        + ("<br><b>chosen</b>" if c.token_id == chosen_id else "")
        + (f"<br>{c.note}" if getattr(c, "note", "") else "")
        for c in candidates
    ]
    figure = go.Figure()
    figure.add_bar(
        y=labels,
        x=[c.prob_before for c in candidates],
        orientation="h",
        name="before filters",
        marker_color="#DDDDDD",
        hovertext=hover,
        hoverinfo="text",
    )
    figure.add_bar(
        y=labels,
        x=[c.prob_after for c in candidates],
        orientation="h",
        name="after filters (chosen in vermillion)",
        marker_color=after_colours,
        hovertext=hover,
        hoverinfo="text",
        text=[f"{c.prob_after:.1%}" if c.prob_after > 0 else "removed" for c in candidates],
        textposition="outside",
    )
    # The cut-off: sorted by raw logit, the kept tokens come first, the removed ones after.
    first_removed = next((n for n, c in enumerate(candidates) if not c.kept), None)
    if first_removed is not None and first_removed > 0:
        figure.add_shape(
            type="line",
            xref="paper",
            x0=0,
            x1=1,
            y0=first_removed - 0.5,
            y1=first_removed - 0.5,
            line={"color": CHOSEN, "dash": "dash", "width": 2},
        )
        figure.add_annotation(
            xref="paper", x=1, y=first_removed - 0.5, text="filter cut-off", showarrow=False,
            xanchor="right", yanchor="bottom", font={"color": CHOSEN},
        )  # fmt: skip
    figure.update_layout(barmode="overlay", bargap=0.25, legend={"orientation": "h", "y": -0.15})
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(title="probability", tickformat=".0%", rangemode="tozero")
    return base_layout(figure, title, height=max(280, 34 * len(candidates) + 120))


def beam_tree_figure(
    steps: list, greedy_tokens: list[str] | None = None, title: str = ""
) -> go.Figure:
    """A beam search as a tree: one column per step, one node per continuation considered.

    Blue nodes continue as live beams, grey ones were pruned, green ones ended (end-of-sequence).
    Hover shows the branch's text and its cumulative log-probability. When ``greedy_tokens`` is
    given, the greedy path is drawn beneath the tree for comparison.

    >>> from types import SimpleNamespace as B
    >>> step = B(beams=[B(tokens=[1], text=" a", score=-0.1, kept=True, parent=None,
    ...     finished=False), B(tokens=[2], text=" b", score=-2.0, kept=False, parent=None,
    ...     finished=False)])
    >>> [trace.name for trace in beam_tree_figure([step], [" a"]).data]
    ['branches', 'pruned', 'live beam', 'greedy path']
    """
    edges_x: list[float | None] = []
    edges_y: list[float | None] = []
    groups: dict[str, dict[str, list]] = {
        name: {"x": [], "y": [], "text": [], "hover": []} for name in ("pruned", "live", "finished")
    }
    previous_y = [0.0]
    for level, step in enumerate(steps):
        beams = step.beams or []
        ys = [-float(n) for n in range(len(beams))]
        for beam, y in zip(beams, ys, strict=True):
            parent_y = previous_y[beam.parent] if beam.parent is not None else 0.0
            edges_x += [level - 1 if level else -1, level, None]
            edges_y += [parent_y if level else 0.0, y, None]
            group = "finished" if beam.finished else ("live" if beam.kept else "pruned")
            # The label shows a character still unfinished at the end by its bytes ("<F0 9F>").
            text = getattr(beam, "label", "") or beam.text
            last = text[-12:] if text else ""
            groups[group]["x"].append(level)
            groups[group]["y"].append(y)
            groups[group]["text"].append(repr(last)[1:-1] if beam.tokens else "")
            groups[group]["hover"].append(
                f"step {level + 1} · {group}<br>{text!r}<br>log-prob {beam.score:.2f}"
            )
        previous_y = ys
    figure = go.Figure()
    figure.add_scatter(
        x=edges_x, y=edges_y, mode="lines", line={"color": "#CCCCCC", "width": 1},
        hoverinfo="skip", name="branches", showlegend=False,
    )  # fmt: skip
    styles = {
        "pruned": (REMOVED, "pruned"),
        "live": (KEPT, "live beam"),
        "finished": (PALETTE[2], "finished"),
    }
    for group, values in groups.items():
        if not values["x"]:
            continue
        colour, name = styles[group]
        figure.add_scatter(
            x=values["x"], y=values["y"], mode="markers+text", name=name,
            marker={"color": colour, "size": 11}, text=values["text"], textposition="top center",
            textfont={"size": 10}, hovertext=values["hover"], hoverinfo="text",
        )  # fmt: skip
    figure.add_annotation(x=-1, y=0, text="prompt", showarrow=False, xanchor="right")
    if greedy_tokens:
        bottom = min([-(len(s.beams or []) - 1) for s in steps] + [0]) - 1.5
        figure.add_scatter(
            x=list(range(len(greedy_tokens))), y=[bottom] * len(greedy_tokens),
            mode="lines+markers+text", name="greedy path", line={"color": CHOSEN},
            marker={"color": CHOSEN, "size": 9}, text=[repr(t)[1:-1] for t in greedy_tokens],
            textposition="bottom center", textfont={"size": 10},
            hovertext=[f"greedy step {n + 1}: {t!r}" for n, t in enumerate(greedy_tokens)],
            hoverinfo="text",
        )  # fmt: skip
    figure.update_xaxes(title="step", dtick=1, zeroline=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(legend={"orientation": "h", "y": -0.15})
    return base_layout(figure, title, height=520)


def repetition_figure(names: list[str], stats: list) -> go.Figure:
    """Distinct-1 and distinct-2 per strategy (`llmlab.generation.repetition.RepetitionStats`): low bars
    mean a text that repeats itself.

    >>> from types import SimpleNamespace as S
    >>> len(repetition_figure(["greedy"], [S(distinct_1=0.5, distinct_2=0.6)]).data)
    2
    """
    figure = go.Figure()
    figure.add_bar(x=names, y=[s.distinct_1 for s in stats], name="distinct-1", marker_color=KEPT)
    figure.add_bar(
        x=names, y=[s.distinct_2 for s in stats], name="distinct-2", marker_color=PALETTE[1]
    )
    figure.update_yaxes(range=[0, 1.05], title="unique / total (1 = no repeats)")
    figure.update_layout(barmode="group", legend={"orientation": "h", "y": -0.2})
    return base_layout(figure, "", height=300)


# --- chat vs base -------------------------------------------------------------------------------
# (section: chat)


def training_loss_chart(
    steps: list[int],
    train_losses: list[float],
    validation_losses: list[float],
    baselines: dict[str, float],
    perplexity: bool = False,
    title: str = "",
) -> go.Figure:
    """Training and validation loss by step, with the baselines to beat as dotted lines; in
    nats, or as perplexity (e^loss: as if choosing among that many tokens).

    >>> figure = training_loss_chart([0, 10], [4.5, 3.0], [4.5, 3.2], {"bigram": 2.83})
    >>> [trace.name for trace in figure.data], figure.layout.shapes[0].y0
    (['training', 'validation'], 2.83)
    >>> round(training_loss_chart([0], [1.0], [1.0], {}, perplexity=True).data[0].y[0], 3)
    2.718
    """
    import math

    def shown(values: list[float]) -> list[float]:
        return [math.exp(min(v, 50.0)) for v in values] if perplexity else values

    figure = go.Figure(
        [
            go.Scatter(x=steps, y=shown(train_losses), name="training", mode="lines+markers",
                       line={"color": PALETTE[0]}),
            go.Scatter(x=steps, y=shown(validation_losses), name="validation",
                       mode="lines+markers", line={"color": PALETTE[3]}),
        ]
    )  # fmt: skip
    for (name, value), colour in zip(baselines.items(), PALETTE[1:3] + PALETTE[5:], strict=False):
        (level,) = shown([value])
        figure.add_hline(
            y=level, line={"dash": "dot", "color": colour},
            annotation_text=f"{name} {level:.2f}", annotation_position="top right",
        )  # fmt: skip
    figure.update_xaxes(title="optimizer step", rangemode="tozero")
    figure.update_yaxes(title="perplexity" if perplexity else "loss (nats per token)")
    figure.update_layout(legend={"orientation": "h", "y": 1.12, "x": 0})
    return base_layout(figure, title, height=380)
