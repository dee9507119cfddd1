"""bfloat16 against float32 on this CPU: one real decode step, and the choice `auto` makes.

For each model, the engine's batched decode step (`Batch.step`, the model's forward pass over
one new token per row with the cache of a short prompt) is timed at 1, 4, 16 and 32 rows in both
precisions, in one run. Beside it: what `llmlab.default_precision` measured (its estimate from
one layer's matrix products, what the pages start on) and whether it picked the precision that
is faster for a class of 16. The goal: the default is never slower than the other precision at
16 rows by more than 10%.

    .venv/bin/python bench/precision.py
    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/precision.py   # PyTorch limited to AVX2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/tokenizers.py would shadow a package

import torch  # noqa: E402

from bench.prompts import PROMPTS  # noqa: E402
from llmlab import models, precision  # noqa: E402
from llmlab.compute import configure_threads  # noqa: E402
from llmlab.generation.batch import Batch  # noqa: E402


def step_ms(loaded, rows: int, repeats: int) -> float:
    """Median wall milliseconds of one decode step for `rows` requests (short prompts)."""
    tokenizer = loaded.tokenizer
    prompts = [tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(rows)]
    times = []
    for run in range(repeats + 1):  # the first is a warm-up
        batch = Batch(loaded.model, pad_id=0)
        batch.prefill(prompts)
        tokens = [p[-1] for p in prompts]
        started = time.perf_counter()
        for _ in range(4):
            batch.step(tokens)
        if run:
            times.append((time.perf_counter() - started) / 4 * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--rows", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    configure_threads()
    print(f"torch threads {torch.get_num_threads()}; decode step after a short prompt\n")
    print("| model | rows | float32 ms/step | bfloat16 ms/step | bfloat16 / float32 | faster |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    verdicts = []
    for name in args.models:
        measured: dict[str, dict[int, float]] = {}
        for dtype in precision.PRECISIONS:
            loaded = models.load(name, dtype=dtype)
            measured[dtype] = {n: step_ms(loaded, n, args.repeats) for n in args.rows}
            if dtype == "float32":
                choice = precision.default_precision(loaded, environ={})
            del loaded
        for n in args.rows:
            f32, b16 = measured["float32"][n], measured["bfloat16"][n]
            faster = "bfloat16" if b16 < f32 else "float32"
            print(f"| {name} | {n} | {f32:.1f} | {b16:.1f} | {b16 / f32:.2f}x | {faster} |")
        verdicts.append((name, choice, measured))
    rows = precision.CLASS_ROWS
    print(f"\n`auto` (llmlab.default_precision) beside the faster precision at {rows} rows\n")
    print(
        "| model | auto picks | its estimate f32 / bf16 ms | measured faster | "
        "default / other at 16 rows | goal ≤ 1.10 | estimate took s |"
    )
    print("| --- | --- | ---: | --- | ---: | --- | ---: |")
    for name, choice, measured in verdicts:
        if rows not in measured["float32"]:
            continue
        other = "bfloat16" if choice.dtype == "float32" else "float32"
        ratio = measured[choice.dtype][rows] / measured[other][rows]
        faster = min(precision.PRECISIONS, key=lambda d: measured[d][rows])
        estimate = f"{choice.step_ms('float32'):.0f} / {choice.step_ms('bfloat16'):.0f}"
        print(
            f"| {name} | {choice.dtype} | {estimate} | {faster} | {ratio:.2f} | "
            f"{'met' if ratio <= 1.10 else 'NOT met'} | {choice.measure_seconds:.2f} |"
        )


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
