"""One table: each zoo tokenizer's cold load, 10 KB encode and pieces times, and the Tokenizers
page's rerun time after a text change with every tokenizer selected, each next to its target.

.venv/bin/python bench/tokenizers.py [--repeat 3] [--reruns 5]

- wall s / cpu s: the cold load of each tokenizer, and the page rerun on the last line.
- cold load: `tokenization.load(name)` in a fresh process (the libraries already imported, as
  they are once the app runs), median over `--repeat` processes; wall and CPU seconds, because
  on a busy machine the wall time mostly measures waiting for a core.
- encode / pieces: median over `--repeat` different 10 KB slices of botchan.txt (a new text each
  time, so nothing comes from the tokenizer's cache of recent pieces).
- page rerun: AppTest, all tokenizers selected, median over `--reruns` text changes (each a new
  10 KB text, so every tokenizer tokenizes again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This script shares its name with the `tokenizers` library: take its own folder off the
# import path so that `import tokenizers` finds the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from llmlab import assets, tokenization  # noqa: E402

LOAD_TARGET = 2.0  # seconds, cold load of a tokenizer cached as tokenizer.json
RERUN_TARGET = 1.0  # seconds, page rerun after a text change, all tokenizers, 10 KB
COLD_LOAD = """
import time
from llmlab import models, tokenization
import sentencepiece, tiktoken, tokenizers
wall, cpu = time.perf_counter(), time.process_time()
tokenization.load({name!r})
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def cold_load(name: str, repeat: int) -> tuple[float, float]:
    """Median (wall, cpu) seconds of loading one tokenizer in a fresh Python process."""
    walls, cpus = [], []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", COLD_LOAD.format(name=name)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wall, cpu = map(float, done.stdout.split()[-2:])
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def page_reruns(text: str, names: list[str], reruns: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each rerun (AppTest runs the page in a thread of this process)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    at.switch_page("app_pages/tokenizers.py").run()
    at.multiselect(key="tok-zoo").set_value(names).run()  # loads everything once
    at.text_area(key="tok-text").set_value(text[20_000:30_000]).run()
    walls, cpus = [], []
    for offset in range(1, reruns + 1):  # each a new 10 KB text: nothing comes from a cache
        changed = text[20_000 + offset * 97 : 30_000 + offset * 97]
        box = at.text_area(key="tok-text").set_value(changed)
        cpu = time.process_time()
        walls.append(timed(box.run))
        cpus.append(time.process_time() - cpu)
        assert not at.exception, at.exception
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="processes/texts per tokenizer")
    parser.add_argument("--reruns", type=int, default=5, help="page reruns")
    args = parser.parse_args()
    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    samples = [text[40_000 + i * 10_000 : 50_000 + i * 10_000] for i in range(args.repeat)]
    names = tokenization.list_tokenizers()
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    print(f"{len(names)} tokenizers; 10,000-character slices of botchan.txt; medians of")
    print(f"{args.repeat} (tokenizers) and {args.reruns} (page reruns)\n")
    header = (
        f"{'':>38} | {'wall s':>11} | {'cpu s':>10} | {'encode ms':>9} | "
        f"{'pieces ms':>9} | {'tokens':>6} | target"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        wall, cpu = cold_load(name, args.repeat)
        tokenizer = tokenization.load(name)
        encode = statistics.median(timed(tokenizer.encode, sample) for sample in samples)
        pieces = statistics.median(timed(tokenizer.pieces, sample) for sample in samples)
        verdict = "met" if wall < LOAD_TARGET else "MISSED"
        print(
            f"{name:>38} | {wall:11.2f} | {cpu:10.2f} | {encode * 1000:9.1f} | "
            f"{pieces * 1000:9.1f} | {len(tokenizer.encode(samples[0])):6,} | "
            f"load < {LOAD_TARGET:.0f} s {verdict}"
        )
    walls, cpus = page_reruns(text, names, args.reruns)
    rerun, rerun_cpu = statistics.median(walls), statistics.median(cpus)
    verdict = "met" if rerun < RERUN_TARGET else "MISSED"
    label = f"page rerun, text changed, all {len(names)} (s)"
    print(
        f"{label:>38} | {rerun:11.2f} | {rerun_cpu:10.2f} | {'':>9} | {'':>9} | {'':>6} | ", end=""
    )
    print(f"rerun < {RERUN_TARGET:.0f} s {verdict}")
    print(f"\npage reruns, wall s: {', '.join(f'{t:.2f}' for t in walls)}")
    print(f"page reruns, cpu s:  {', '.join(f'{t:.2f}' for t in cpus)}")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
