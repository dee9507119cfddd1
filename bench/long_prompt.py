"""One student pastes a long prompt while the class is generating: how long the others stall.

N students are writing (greedy, short prompts); then one more request arrives with a prompt of
about 5,000 tokens. Two ways, in one run:

* **in parts, own lane** (the engine's default): the prompt is read `CHUNK_TOKENS` at a time,
  the others' steps going on between the parts, and it then writes in a lane of its own;
* **in one pass, shared lane**: the prompt is read at once, holding every other row still, and
  then shares the others' batch, so every row attends over a cache 5,000 columns wide.
The table gives, for the N running students, the longest pause between two of their tokens and
their median gap while the long prompt is read, and when the long prompt's first token came,
both ways in one run.

    .venv/bin/python bench/long_prompt.py
    .venv/bin/python bench/long_prompt.py --models gemma-3-270m --n 8 --dtype float32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/tokenizers.py would shadow a package

from bench.prompts import PROMPTS  # noqa: E402
from llmlab import models  # noqa: E402
from llmlab.generation import decoding  # noqa: E402
from llmlab.generation import engine as engine_module  # noqa: E402

LONG_PROMPT = " ".join(
    f"Paragraph {i}: the river rose, and the town built a wall." for i in range(330)
)


def one_round(loaded, n: int, tokens: int) -> dict[str, float]:
    """N short requests write; after their first tokens, the long one arrives."""
    warm = [
        decoding.iter_generate(loaded, PROMPTS[i % len(PROMPTS)], max_new_tokens=4)
        for i in range(n)
    ]
    for stream in warm:  # the same batch shapes once, so both rounds start warm
        for _ in stream:
            pass
    times: list[list[float]] = [[] for _ in range(n)]
    streams = [
        decoding.iter_generate(loaded, PROMPTS[i % len(PROMPTS)], max_new_tokens=tokens,
                               stop_at_eos=False)
        for i in range(n)
    ]  # fmt: skip

    def read(index: int) -> None:
        for _ in streams[index]:
            times[index].append(time.perf_counter())

    threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    while min(len(t) for t in times) < 3:
        time.sleep(0.01)
    arrived = time.perf_counter()
    long = decoding.iter_generate(loaded, LONG_PROMPT, max_new_tokens=16, stop_at_eos=False)
    long.wait_started(600)
    first = time.perf_counter()
    for _ in long:
        pass
    last = time.perf_counter()
    for thread in threads:
        thread.join()

    def gaps_in(start: float, end: float) -> list[float]:
        return [b - a for t in times for a, b in zip(t, t[1:], strict=False) if start <= b <= end]

    gaps = gaps_in(arrived, first)
    before = gaps_in(0.0, arrived)
    beside = gaps_in(first, last)
    return {
        "longest pause": max(gaps) if gaps else first - arrived,
        "median gap": statistics.median(gaps) if gaps else first - arrived,
        "tokens while read": len(gaps) / n,
        "long first token": first - arrived,
        "gap before": statistics.median(before),
        "gap beside": statistics.median(beside) if beside else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--n", type=int, default=16, help="students already writing")
    parser.add_argument("--tokens", type=int, default=120, help="each student's new tokens")
    args = parser.parse_args()
    chunk, prefill = engine_module.CHUNK_TOKENS, engine_module.PREFILL_TOKENS
    print(f"{args.n} students writing {args.tokens} tokens; one prompt of about 5,000 tokens "
          f"arrives; {args.dtype}\n")  # fmt: skip
    print("| model | prompt read | long prompt tokens | others' longest pause | others' median "
          "gap | others' tokens while it is read | long prompt's first token | others' gap before "
          "it / while it writes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        loaded = models.load(name, dtype=args.dtype)
        length = len(loaded.tokenizer(LONG_PROMPT)["input_ids"])
        decoding.generate(loaded, "Warm up", max_new_tokens=2)
        results = {}
        whole = 10**9  # every prompt counts as short: read at once, into the shared lane
        for label, part, budget in (
            (f"in parts of {chunk}, own lane", chunk, prefill),
            ("in one pass, shared lane", whole, whole),
        ):
            engine_module.CHUNK_TOKENS, engine_module.PREFILL_TOKENS = part, budget
            results[label] = one_round(loaded, args.n, args.tokens)
        engine_module.CHUNK_TOKENS, engine_module.PREFILL_TOKENS = chunk, prefill
        for label, r in results.items():
            print(f"| {name} | {label} | {length:,} | {r['longest pause']:.2f} s | "
                  f"{r['median gap'] * 1000:.0f} ms | {r['tokens while read']:.1f} | "
                  f"{r['long first token']:.2f} s | {r['gap before'] * 1000:.0f} / "
                  f"{r['gap beside'] * 1000:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
