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

# --- next token ---------------------------------------------------------------------------------
# (section: next token)

# --- decoding -----------------------------------------------------------------------------------
# (section: decoding)

# --- chat vs base -------------------------------------------------------------------------------
# (section: chat)
