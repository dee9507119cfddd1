"""What if? benchmarks: the temperature ladder in one batch, and what a branch costs.

1. The ladder (greedy + N temperatures) started together, against the same runs one after the
   other, on one loaded model: the ratio of wall times, and the engine's forward passes (decode
   steps) for each, which do not depend on the machine's load.
2. A branch at step k of an n-token run: its decode steps and wall time against the original's.
   The imposed tokens are fed one step at a time, so a branch costs about as many steps as the
   original whatever k is (the steps are shared with every other request in the batch).

    .venv/bin/python bench/whatif.py [--model smollm2-135m-instruct] [--tokens 24]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

PROMPT = "Once upon a time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()

    from llmlab import models
    from llmlab.generation.branching import branch
    from llmlab.generation.decoding import generate
    from llmlab.generation.engine import engine_for
    from llmlab.generation.ladder import TEMPERATURES, temperature_ladder

    loaded = models.load(args.model, dtype=args.dtype)
    engine = engine_for(loaded)
    generate(loaded, PROMPT, max_new_tokens=2)  # warm-up

    def measured(work):
        steps, started = engine.stats.steps, time.perf_counter()
        value = work()
        return value, time.perf_counter() - started, engine.stats.steps - steps

    n = args.tokens
    _, together, together_steps = measured(
        lambda: temperature_ladder(loaded, PROMPT, TEMPERATURES, seed=0, max_new_tokens=n)
    )

    def one_by_one():
        generate(loaded, PROMPT, max_new_tokens=n)
        for t in TEMPERATURES:
            generate(loaded, PROMPT, "sample", max_new_tokens=n, temperature=t, seed=0)

    _, apart, apart_steps = measured(one_by_one)
    print(f"\n{args.model} ({args.dtype}), {n} new tokens, greedy + {len(TEMPERATURES)} rungs")
    print("| ladder | wall s | decode steps |")
    print("| --- | ---: | ---: |")
    print(f"| together (one batch) | {together:.2f} | {together_steps} |")
    print(f"| one after the other | {apart:.2f} | {apart_steps} |")
    print(
        f"| ratio apart / together | {apart / together:.2f} | {apart_steps / together_steps:.2f} |"
    )

    original, base_s, base_steps = measured(
        lambda: generate(loaded, PROMPT, "top_p", max_new_tokens=n, seed=1)
    )
    print("\n| branch at step | wall s | decode steps | wall / original's |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| (original) | {base_s:.2f} | {base_steps} | 1.00 |")
    for k in (0, n // 2, n - 2):
        other = next(
            c.token_id for c in original.steps[k].candidates if c.token_id != original.new_ids[k]
        )
        _, seconds, steps = measured(
            lambda k=k, other=other: branch(original, k, other, model=loaded)
        )
        print(f"| {k + 1} | {seconds:.2f} | {steps} | {seconds / base_s:.2f} |")


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
