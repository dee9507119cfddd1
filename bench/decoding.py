"""Decoding speed: our step-by-step loop against transformers' `model.generate`, same run.

For each offline model, dtype and strategy (greedy, top-p, beam) both generate the same number
of new tokens (end-of-text is ignored so the lengths match) and the table prints tokens per
second and the ratio ours / generate. Each cell is the best of ``--repeats`` runs, alternating
ours and theirs, so a busy machine penalises both sides alike.

    .venv/bin/python bench/decoding.py                 # 128 new tokens, float32 and bfloat16
    .venv/bin/python bench/decoding.py --tokens 32 --dtypes float32 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Replace this script's folder on the path by the project root: bench/tokenizers.py would
# otherwise shadow the `tokenizers` package that transformers imports.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from llmlab import models  # noqa: E402
from llmlab.generation import decoding  # noqa: E402

PROMPT = "Once upon a time"
# llama.cpp on the same GGUF files, greedy, on a machine like this one (tokens/s): figures quoted
# from an earlier trial for scale, not built or measured by this script.
LLAMA_CPP = {"smollm2-135m-instruct": 127.0, "gemma-3-270m": 82.0}
STRATEGIES = {
    "greedy": ({}, {"do_sample": False}),
    "top_p": ({"top_p": 0.9, "temperature": 0.8}, {"do_sample": True, "top_p": 0.9,
                                                   "temperature": 0.8, "top_k": 0}),
    "beam": ({"num_beams": 3}, {"do_sample": False, "num_beams": 3}),
}  # fmt: skip


def ours(loaded, strategy: str, settings: dict, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    result = decoding.generate(
        loaded, PROMPT, strategy, max_new_tokens=tokens, stop_at_eos=False, top_candidates=10,
        **settings,
    )  # fmt: skip
    return time.perf_counter() - started, len(result.new_ids)


def theirs(loaded, settings: dict, tokens: int) -> tuple[float, int]:
    ids = torch.tensor([loaded.tokenizer(PROMPT)["input_ids"]])
    torch.manual_seed(0)
    started = time.perf_counter()
    output = loaded.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
        **settings,
    )  # fmt: skip
    return time.perf_counter() - started, output.shape[1] - ids.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--models", nargs="+", default=list(LLAMA_CPP))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    args = parser.parse_args()

    print(f"{args.tokens} new tokens, prompt {PROMPT!r}, torch threads {torch.get_num_threads()}")
    header = (
        f"{'model':24} {'dtype':9} {'strategy':8} {'ours tok/s':>10} {'generate':>9} {'ratio':>6}"
    )
    print(header + f" {'llama.cpp':>10}")
    print("-" * (len(header) + 11))
    for name in args.models:
        for dtype in args.dtypes:
            loaded = models.load(name, dtype=dtype)
            # A short warm-up of both paths, so one-time allocations don't count.
            ours(loaded, "greedy", {}, 4)
            theirs(loaded, {"do_sample": False}, 4)
            for strategy in args.strategies:
                our_settings, their_settings = STRATEGIES[strategy]
                best_ours = best_theirs = 0.0
                for _ in range(args.repeats):
                    seconds, count = ours(loaded, strategy, our_settings, args.tokens)
                    best_ours = max(best_ours, count / seconds)
                    seconds, count = theirs(loaded, their_settings, args.tokens)
                    best_theirs = max(best_theirs, count / seconds)
                ratio = best_ours / best_theirs
                gap = LLAMA_CPP.get(name, 0) / best_ours if strategy == "greedy" else 0
                note = f"{gap:9.1f}x" if gap else ""
                print(
                    f"{name:24} {dtype:9} {strategy:8} {best_ours:10.1f} {best_theirs:9.1f} "
                    f"{ratio:6.2f} {note:>10}",
                    flush=True,
                )
            del loaded
    print("ratio = ours / generate (target >= 0.9)")
    print(
        "llama.cpp column = how much faster llama.cpp was in an earlier greedy trial on the same "
        f"GGUF files ({', '.join(f'{k}: {v:.0f} tok/s' for k, v in LLAMA_CPP.items())}); "
        "quoted, not measured here"
    )


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
