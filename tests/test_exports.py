"""Downloads: CSV tables read back equal, HTML charts hold the figure and open offline."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import plotly.graph_objects as go
import pytest

from llmlab import charts, exports


@pytest.mark.parametrize(
    ("title", "stem"),
    [
        ("Decoding step 3 candidates", "decoding-step-3-candidates"),
        ("Next-token: top 20 / temperature 0.7", "next-token-top-20-temperature-0-7"),
        ("<script>alert(1)</script>", "script-alert-1-script"),
        ("../../etc/passwd", "etc-passwd"),
        ("日本語", "llmlab"),
        ("", "llmlab"),
        ("x" * 500, "x" * 60),
    ],
)
def test_file_stems_are_safe_file_names(title, stem):
    assert exports.file_stem(title) == stem


def test_csv_reads_back_to_the_same_table_with_awkward_tokens():
    frame = pd.DataFrame(
        {
            "token": [" the", "\n", '"quoted", comma', "=SUM(A1)", "é🙂", "\u200d"],
            "id": [262, 198, 1, 2, 3, 4],
            "probability": [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125],
        }
    )
    text = exports.table_csv(frame)
    assert text.splitlines()[0] == "token,id,probability"
    back = pd.read_csv(io.StringIO(text), keep_default_na=False)
    pd.testing.assert_frame_equal(back, frame)


def test_chart_html_is_standalone_and_holds_the_figure_data():
    figure = charts.base_layout(go.Figure(go.Bar(x=["a", "b"], y=[0.75, 0.25], name="probs")))
    html = exports.figure_html(figure)
    assert html.lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert '<script src="http' not in html and len(html) > 1_000_000  # plotly.js is inside
    call = html[html.rindex("Plotly.newPlot(") :]
    match = re.match(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', call, re.S)
    assert match, "the figure's data is in the file"
    assert json.loads(match.group(1))[0]["y"] == [0.75, 0.25]
