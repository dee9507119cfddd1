"""Where one engine step's time goes: the forward pass against the requests' own work.

Between two forward passes the engine lets every running request choose its token: filters,
softmax, the seeded draw, the top candidates of the step record, the text delta. Done row by
row, that work grows with the batch while the forward pass barely does, so at 32 rows it can
cost more than the model. This benchmark builds N requests the way `bench/serving.py` does
(half greedy, half top-p 0.9 at temperature 0.8), then times, in one run, the forward pass
(`Batch.step`) and the choosing (`Engine._advance_all`) at each step, and prints their ratio.
Times are CPU time of the process (`time.process_time`, every thread), which other programs on
a busy machine move much less than wall time; the ratio is what to compare between runs.

    .venv/bin/python bench/engine_step.py                       # both models, bfloat16
    .venv/bin/python bench/engine_step.py --ns 1 32 --profile   # and torch.profiler's top ops
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
from llmlab import models  # noqa: E402
from llmlab.compute import usable_cores  # noqa: E402
from llmlab.generation import decoding  # noqa: E402
from llmlab.generation.batch import Batch  # noqa: E402
from llmlab.generation.engine import Engine, Request  # noqa: E402


def request_settings(index: int) -> dict:
    if index % 2 == 0:
        return {"strategy": "greedy"}
    return {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": index}


def new_requests(loaded, n: int, tokens: int) -> list[Request]:
    requests = []
    for index in range(n):
        settings = request_settings(index)
        strategy = settings.pop("strategy")
        valid = decoding.validate_settings(strategy, max_new_tokens=tokens, **settings)
        _, ids, budget, _ = decoding.prepare_prompt(loaded, PROMPTS[index % len(PROMPTS)], tokens)
        stepper = decoding.new_stepper(loaded, ids, budget, strategy, valid, stop_at_eos=False)
        requests.append(Request(stepper, state="running"))
    return requests


def run_steps(loaded, n: int, tokens: int, profiler=None) -> tuple[list[float], list[float]]:
    """Forward and choosing milliseconds of each decode step for n requests."""
    engine = Engine(model_name="bench", max_rows=n)
    engine._running = new_requests(loaded, n, tokens)
    batch = Batch(loaded.model, pad_id=0)
    cores = usable_cores()
    torch.set_num_threads(cores)
    logits = batch.prefill([p for r in engine._running for p in r.stepper.prompts])
    forward, choose = [], []
    while True:
        torch.set_num_threads(1)  # as the engine does between forward passes
        started = time.process_time()
        if profiler is not None:
            with profiler:
                step_tokens, order = engine._advance_all(logits)
        else:
            step_tokens, order = engine._advance_all(logits)
        choose.append((time.process_time() - started) * 1e3)
        batch.select(order)
        if not step_tokens:
            return forward, choose
        torch.set_num_threads(cores)
        started = time.process_time()
        logits = batch.step(step_tokens)
        forward.append((time.process_time() - started) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--ns", nargs="+", type=int, default=[1, 16, 32])
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"{args.dtype}, {args.tokens} tokens per request, {usable_cores()} cores\n")
    print(
        "| model | N | forward CPU ms/step | choosing CPU ms/step | choosing per row | choosing / forward |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    profiles = []
    for name in args.models:
        loaded = models.load(name, dtype=args.dtype)
        run_steps(loaded, 2, 3)  # warm up
        for n in args.ns:
            forward, choose = run_steps(loaded, n, args.tokens)
            f, c = statistics.median(forward), statistics.median(choose[1:-1] or choose)
            print(f"| {name} | {n} | {f:.1f} | {c:.1f} | {c / n:.2f} | {c / f:.2f} |")
            if args.profile:
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                run_steps(loaded, n, 4, profiler=profiler)
                profiles.append((name, n, profiler))
    for name, n, profiler in profiles:
        print(f"\n{name}, N={n}: the choosing of the last step, by operator\n")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
