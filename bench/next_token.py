"""How long the Next-Token page takes: the first run (one forward pass) vs a slider move.

Run: .venv/bin/python bench/next_token.py
Prints one table per offline model: the library + chart work the page does on each rerun,
and a full page rerun through Streamlit's AppTest, for the first run and a slider change.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on the path, where bench/tokenizers.py would hide
# the `tokenizers` package; the project root goes there instead.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from llmlab import charts, models  # noqa: E402
from llmlab.generation import next_token as nt  # noqa: E402

PROMPT = "The capital of France is"
SLIDERS = [
    {"temperature": t, "top_p": p} for t, p in [(0.7, 0.9), (0.5, 0.8), (1.2, 0.95), (0.9, 0.6)]
]


def rerun(loaded, prompt: str, settings: dict) -> None:
    """What one page run computes: the (cached) forward pass, waterfall, table, charts."""
    dist = nt.next_token_distribution(loaded, prompt)
    flow = nt.waterfall(dist.logits, input_ids=dist.prompt_ids, **settings)
    rows = nt.candidates(flow, loaded.tokenizer, 20)
    charts.next_token_bars(
        [r.text for r in rows], [r.probability for r in rows],
        [r.final_probability for r in rows], [r.removed_by for r in rows],
    )  # fmt: skip
    steps = flow.steps
    charts.filter_waterfall(
        [s.label for s in steps], [s.survivors for s in steps],
        [s.removed_mass for s in steps], [s.entropy_bits for s in steps],
    )  # fmt: skip
    nt.prompt_surprisal(loaded, prompt)
    nt.logit_lens(loaded, prompt)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    print(
        f"{'model':24} {'first run (forward) ms':>23} {'slider change ms':>17} {'ratio':>7} {'forwards on slider':>19}"
    )
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        loaded = models.load(name)
        nt.next_token_distribution(loaded, "warm up")  # first-call costs of torch itself
        nt.clear_cache()
        first = timed(lambda loaded=loaded: rerun(loaded, PROMPT, {}))
        before = nt.forward_passes()
        moves = [timed(lambda s=s, loaded=loaded: rerun(loaded, PROMPT, s)) for s in SLIDERS * 3]
        forwards = nt.forward_passes() - before
        median = statistics.median(moves)
        print(f"{name:24} {first:23.0f} {median:17.1f} {first / median:7.0f} {forwards:19d}")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    start = time.perf_counter()
    at.switch_page("app_pages/next_token.py").run()
    first = (time.perf_counter() - start) * 1000
    moves = []
    for value in (0.7, 0.5, 1.2, 0.9, 0.6, 1.1):
        start = time.perf_counter()
        at.slider(key="nt-temperature").set_value(value).run()
        moves.append((time.perf_counter() - start) * 1000)
    median = statistics.median(moves)
    print(f"\nfull page through AppTest ({at.selectbox(key='nt-model').value}):")
    print(f"{'first page run ms':>18} {'slider rerun ms':>16} {'ratio':>7}")
    print(f"{first:18.0f} {median:16.1f} {first / median:7.0f}")


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
