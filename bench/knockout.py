"""How long "which heads matter for this prompt" takes: the shared-prefix sweep against one
forward pass per head, in the same run.

Run: .venv/bin/python bench/knockout.py [--sample N]
Prints one row per offline model: a plain forward pass (median of 5), one pass with one head
switched off (median over N heads spread over the layers; times layers x heads = what a sweep
of one pass per head costs), and the sweep itself (median of 2), with the ratios between them.
"""

from __future__ import annotations

import argparse
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

import torch  # noqa: E402

from llmlab import knockout, models  # noqa: E402
from llmlab.architecture import config_sizes  # noqa: E402

PROMPT = "The capital of France is"


def seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, sample: int) -> str:
    loaded = models.load(name)
    model = loaded.model
    ids = loaded.tokenizer(PROMPT)["input_ids"]
    sizes = config_sizes(model.config)
    heads = sizes.layers * sizes.heads
    tokens = torch.tensor([ids])

    def plain() -> None:
        with torch.no_grad():
            model(tokens, use_cache=False, logits_to_keep=1)

    cells = [(n * sizes.layers // sample, n % sizes.heads) for n in range(sample)]

    def one_head_each() -> None:
        for layer, head in cells:
            with knockout.switched_off(model, [("head", layer, head)]):
                plain()

    plain()  # warm up
    plain_s = seconds(plain, 5)
    per_head_s = seconds(one_head_each, 1) / sample
    sweep_s = seconds(lambda: knockout.sweep_heads(model, ids), 2)
    naive_s = per_head_s * heads
    return (
        f"{name:24} {len(ids):>6} {heads:>6} {plain_s:>12.3f} {per_head_s:>14.3f} "
        f"{naive_s:>15.2f} {sweep_s:>8.2f} {sweep_s / plain_s:>12.1f}x "
        f"{naive_s / sweep_s:>15.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=12, help="heads timed one pass each")
    sample = parser.parse_args().sample
    print(
        f"{'model':24} {'tokens':>6} {'heads':>6} {'plain pass s':>12} {'one head off s':>14} "
        f"{'pass per head s':>15} {'sweep s':>8} {'sweep / plain':>13} {'per head / sweep':>16}"
    )
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        print(measure(name, sample), flush=True)


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
