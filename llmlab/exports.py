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


def pieces_frame(pieces: Any) -> Any:
    """A tokenizer's pieces as a table: token text (hex bytes for part of a character), id,
    and character span [start, end)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "token": [p.text if p.text is not None else p.label() for p in pieces],
            "id": [p.id for p in pieces],
            "start": [p.start for p in pieces],
            "end": [p.end for p in pieces],
        }
    )


def generation_frame(result: Any) -> Any:
    """A generation's new tokens as a table: step, token text (a byte fragment as its bytes in
    hex, e.g. "<F0 9F>"), id, the probability each had when it was chosen, and what a byte
    fragment is (from the steps' candidate lists; "" for a token with text)."""
    import pandas as pd

    notes = {c.token_id: c.note for step in result.steps for c in step.candidates}
    return pd.DataFrame(
        {
            "step": range(1, len(result.new_ids) + 1),
            "token": result.tokens,
            "id": result.new_ids,
            "probability": result.token_probs,
            "byte fragment": [notes.get(i, "") for i in result.new_ids],
        }
    )


def figure_html(figure: Any) -> str:
    """A Plotly figure as one HTML file that opens offline (plotly.js is inside, a few MB)."""
    return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
