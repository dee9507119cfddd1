"""Files to take away: tables as CSV, charts as standalone HTML, names safe for any disk.

>>> file_stem("Next-token: top 20 / temperature 0.7")
'next-token-top-20-temperature-0-7'
>>> import pandas as pd
>>> table_csv(pd.DataFrame({"token": ["a", "b"], "p": [0.75, 0.25]}))
'token,p\\na,0.75\\nb,0.25\\n'
"""

from __future__ import annotations

import re
from typing import Any


def file_stem(title: str, fallback: str = "llmlab") -> str:
    """A lowercase file name (no extension) from any title: letters, digits and dashes only."""
    stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-")
    return stem or fallback


def table_csv(frame: Any) -> str:
    """A table (pandas DataFrame) as CSV text, without the row index; UTF-8 when saved.

    Token texts are written exactly, even one like "=SUM": a spreadsheet may read such a cell
    as a formula, so open the file as text (or import it) to see the tokens as they are.
    """
    return frame.to_csv(index=False, lineterminator="\n")


def figure_html(figure: Any) -> str:
    """A Plotly figure as one HTML file that opens offline (plotly.js is inside, a few MB)."""
    return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
