"""Per-tokenizer encode time on 10 KB of text, and the Tokenizers page's rerun time (AppTest).

.venv/bin/python bench/tokenizers.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This script shares its name with the `tokenizers` library: take its own folder off the
# import path so that `import tokenizers` finds the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from llmlab import assets, tokenization  # noqa: E402


def main() -> None:
    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    sample = text[20_000:30_000]
    names = tokenization.list_tokenizers()
    print(f"{len(sample):,} characters of botchan.txt, {len(names)} tokenizers\n")
    print(f"{'tokenizer':>16} | {'load s':>6} | {'encode ms':>9} | {'pieces ms':>9} | tokens")
    print("-" * 62)
    for name in names:
        start = time.perf_counter()
        tokenizer = tokenization.load(name)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        ids = tokenizer.encode(sample)
        encoded = time.perf_counter() - start
        start = time.perf_counter()
        tokenizer.pieces(sample)
        pieces = time.perf_counter() - start
        print(
            f"{name:>16} | {loaded:6.2f} | {encoded * 1000:9.1f} | {pieces * 1000:9.1f} | "
            f"{len(ids):,}"
        )

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600).run()
    at.switch_page("pages/tokenizers.py").run()
    at.multiselect(key="tok-zoo").set_value(names).run()  # loads everything once
    at.text_area(key="tok-text").set_value(sample).run()
    timings = []
    for offset in (1, 2, 3):  # each a new 10 KB text: nothing comes from the pieces cache
        changed = text[20_000 + offset * 97 : 30_000 + offset * 97]
        start = time.perf_counter()
        at.text_area(key="tok-text").set_value(changed).run()
        timings.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    print(f"\npage rerun after a text change, all {len(names)} tokenizers, 10 KB:")
    print(f"{'run':>5} | seconds")
    print("-" * 16)
    for index, seconds in enumerate(timings, 1):
        print(f"{index:>5} | {seconds:7.3f}")
    print(f"{'best':>5} | {min(timings):7.3f}")


if __name__ == "__main__":
    main()
