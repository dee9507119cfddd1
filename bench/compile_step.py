"""Does `torch.compile` pay for the engine's decode step? Eager against compiled, in one run.

The engine steps a growing batch: every step adds a column to the KV cache, and requests join
and leave, so the shapes a compiled model sees change at every step. This benchmark runs the
engine's own `Batch` (left-padded rows, `DynamicCache`) greedily for N rows, first eager, then
through `torch.compile(model, dynamic=True)`: once cold (the compile is in that time), then warm,
then once more with a different number of rows and prompt lengths (what a class does to the
shapes). It prints the median milliseconds per decode step, the ratio to eager, the seconds
the first compiled run took, and whether the greedy tokens equal the eager ones.

    .venv/bin/python bench/compile_step.py
    .venv/bin/python bench/compile_step.py --models gemma-3-270m --ns 1 16
    .venv/bin/python bench/compile_step.py --static     # one row in a static cache instead

`--static` measures the one case where compiling is known to pay: a single row whose keys and
values live in transformers' `StaticCache` (fixed shapes, so one graph serves every step),
against the engine's eager step of the same row.

`--engine` measures what a student sees with `LLMLAB_COMPILE=1`: a lone request's tokens/s
through `llmlab.generate` (so through the engine), eager first, then again and again while the
compiled step compiles in the background (every request `--gap` seconds after the last, as a
student reads), then once it is ready. Compiling starts from an empty kernel cache (a folder of
its own), as on a new server.

    .venv/bin/python bench/compile_step.py --engine
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/tokenizers.py would shadow a package

import torch  # noqa: E402

from bench.prompts import PROMPTS  # noqa: E402
from llmlab import models  # noqa: E402
from llmlab.compute import usable_cores  # noqa: E402
from llmlab.generation.batch import Batch  # noqa: E402


def greedy_steps(model, tokenizer, n: int, steps: int, shift: int = 0) -> tuple[list, list[float]]:
    """Greedy tokens of n rows over `steps` decode steps, and each step's milliseconds."""
    prompts = [tokenizer(PROMPTS[(i + shift) % len(PROMPTS)])["input_ids"] for i in range(n)]
    batch = Batch(model, pad_id=0)
    logits = batch.prefill(prompts)
    tokens, times = [], []
    for _ in range(steps):
        chosen = torch.argmax(logits, dim=-1).tolist()
        tokens.append(chosen)
        started = time.perf_counter()
        logits = batch.step(chosen)
        times.append((time.perf_counter() - started) * 1e3)
    return tokens, times


def eager_baseline(model, tokenizer, n: int, steps: int) -> tuple[list, list[float]]:
    """`greedy_steps` on the eager model, after two steps that warm up its kernels."""
    greedy_steps(model, tokenizer, n, 2)
    return greedy_steps(model, tokenizer, n, steps)


def static_steps(model, tokenizer, steps: int, forward, length: int) -> tuple[list, list[float]]:
    """Greedy tokens of one row in a `StaticCache` of `length` positions, and each decode
    step's milliseconds; the prompt is read eagerly, each step through `forward`."""
    from transformers import StaticCache

    prompt = tokenizer(PROMPTS[0])["input_ids"]
    cache = StaticCache(config=model.config, max_cache_len=length)
    logits = model(
        input_ids=torch.tensor([prompt]),
        past_key_values=cache,
        cache_position=torch.arange(len(prompt)),
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]
    tokens, times = [], []
    for step in range(steps):
        chosen = int(torch.argmax(logits.float(), dim=-1))
        tokens.append([chosen])
        where = len(prompt) + step
        started = time.perf_counter()
        logits = forward(
            input_ids=torch.tensor([[chosen]]),
            position_ids=torch.tensor([[where]]),
            cache_position=torch.tensor([where]),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        times.append((time.perf_counter() - started) * 1e3)
    return tokens, times


def static_table(args) -> None:
    print(
        "| model | eager step, DynamicCache (ms) | compiled, first run (s) | "
        "compiled step, StaticCache (ms) | compiled / eager | same tokens |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        loaded = models.load(name, dtype=args.dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
        eager_tokens, eager_times = eager_baseline(model, tokenizer, 1, args.steps)
        compiled = torch.compile(model)
        started = time.perf_counter()
        static_steps(model, tokenizer, args.steps, compiled, args.length)
        cold = time.perf_counter() - started
        tokens, times = static_steps(model, tokenizer, args.steps, compiled, args.length)
        eager_ms, compiled_ms = statistics.median(eager_times), statistics.median(times)
        print(
            f"| {name} | {eager_ms:.1f} | {cold:.1f} | {compiled_ms:.1f} | "
            f"{compiled_ms / eager_ms:.2f}x | {tokens == eager_tokens} |"
        )


def lone_rate(loaded, tokens: int) -> float:
    """Tokens a second of one greedy request through the engine (`llmlab.generate`)."""
    from llmlab.generation import decoding

    started = time.perf_counter()
    result = decoding.generate(
        loaded, PROMPTS[0], max_new_tokens=tokens, stop_at_eos=False, strategy="greedy"
    )
    assert len(result.new_ids) == tokens
    return tokens / (time.perf_counter() - started)


def engine_table(args) -> None:
    from llmlab.generation import compiled as compiled_step

    print(
        "| model | eager alone (tok/s) | while compiling: median (min) tok/s | requests | "
        "compile (s) | compiled alone (tok/s) | while compiling / eager | compiled / eager |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        loaded = models.load(name, dtype=args.dtype)
        off, on = {"LLMLAB_COMPILE": "0"}, {"LLMLAB_COMPILE": "1"}
        os.environ.update(off)
        lone_rate(loaded, args.steps)  # warm-up
        eager = statistics.median(lone_rate(loaded, args.steps) for _ in range(3))
        step = compiled_step.compiled_for(loaded.model, on)
        os.environ.update(on)
        during = []
        while not step.wait(args.gap):
            during.append(lone_rate(loaded, args.steps))
        after = statistics.median(lone_rate(loaded, args.steps) for _ in range(3))
        os.environ.update(off)
        middle = statistics.median(during) if during else float("nan")
        print(
            f"| {name} | {eager:.1f} | {middle:.1f} ({min(during, default=float('nan')):.1f}) | "
            f"{len(during)} | {step.compile_seconds or float('nan'):.0f} | {after:.1f} | "
            f"{middle / eager:.2f}x | {after / eager:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--ns", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--static", action="store_true", help="one row in a StaticCache")
    parser.add_argument("--length", type=int, default=256, help="the StaticCache's positions")
    parser.add_argument("--engine", action="store_true", help="a lone request while compiling")
    parser.add_argument("--gap", type=float, default=1.0, help="--engine: seconds between")
    args = parser.parse_args()
    if args.engine:  # compiling starts cold, in a kernel cache of its own
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmlab-inductor-")
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    print(f"{args.dtype}, {args.steps} decode steps, {args.threads} threads\n")
    if args.static:
        static_table(args)
        return
    if args.engine:
        engine_table(args)
        return
    print(
        "| model | N | eager ms/step | compiled, first run (s) | compiled ms/step | "
        "compiled / eager | new shapes: first run (s) | same tokens |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        loaded = models.load(name, dtype=args.dtype)
        compiled = torch.compile(loaded.model, dynamic=True)
        for n in args.ns:
            eager_tokens, eager_times = eager_baseline(
                loaded.model, loaded.tokenizer, n, args.steps
            )
            started = time.perf_counter()
            greedy_steps(compiled, loaded.tokenizer, n, args.steps)
            cold = time.perf_counter() - started
            tokens, times = greedy_steps(compiled, loaded.tokenizer, n, args.steps)
            started = time.perf_counter()
            greedy_steps(compiled, loaded.tokenizer, n + 1, args.steps, shift=1)
            reshaped = time.perf_counter() - started
            eager_ms, compiled_ms = statistics.median(eager_times), statistics.median(times)
            print(
                f"| {name} | {n} | {eager_ms:.1f} | {cold:.1f} | {compiled_ms:.1f} | "
                f"{compiled_ms / eager_ms:.2f}x | {reshaped:.1f} | {tokens == eager_tokens} |"
            )


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
