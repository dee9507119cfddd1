"""Serving a class: N students press Generate at once, three ways, measured in one run.

* **engine**: N threads call `llmlab.generate` on one shared model, as N Streamlit sessions do;
  the model's engine steps them together (continuous batching).
* **thread each**: N threads each run their own loop over the same model, one forward pass per
  token (`engine.run_alone`), which is what every session did before the engine.
* **HF batched**: the same N requests through `model.generate` as left-padded batches, the speed
  batches reach when nothing joins or leaves. One `generate` call decodes one way, so a mixed
  class is two batches, the greedy half and the top-p half (`do_sample=True`, same top-p and
  temperature, no top-k), one after the other: the same decoding work as the engine's.

Requests are 16-token runs (end-of-text ignored, so every run writes 16 tokens) on short prompts
of different lengths, in two mixes: `mixed`, half greedy and half top-p 0.9 at temperature 0.8,
and `greedy`, every request greedy, where HF's side is a single batch. The table gives median and p95 latency (from
pressing Generate to the last token) and total tokens/s, and the ratios the goals are about:
engine median / one request alone, engine tokens/s / HF batched tokens/s. One request alone
(N = 1) is run five times and its row gives the median of the five, since a single request's
time varies most between runs; every other N is run three times through the engine (the
latencies of all three) and three times through HF batched generate (the median run), so that
one slow run on a busy machine does not decide a ratio. A staggered row sends one request every
100 ms instead of all at once (three times, all their latencies).

    .venv/bin/python bench/serving.py                        # both models, bfloat16 and float32
    .venv/bin/python bench/serving.py --models smollm2-135m-instruct --dtypes bfloat16 --ns 1 16
    .venv/bin/python bench/serving.py --thread-each-max 64   # the old path at every N (slow)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/tokenizers.py would shadow a package

import torch  # noqa: E402

from bench.prompts import PROMPTS  # noqa: E402
from llmlab import models, precision  # noqa: E402
from llmlab.generation import decoding  # noqa: E402
from llmlab.generation.engine import IDLE_SECONDS, engine_for, run_alone  # noqa: E402

TOKENS = 16
ONE_REPEATS = 5  # N = 1 is run this many times: its median is what "/ one" divides by
REPEATS = 3  # every other N (engine and HF batched alike), so one slow run moves no ratio


MIXES = ("mixed", "greedy")


def request_settings(index: int, mix: str = "mixed") -> dict:
    if mix == "greedy" or index % 2 == 0:
        return {"strategy": "greedy"}
    return {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": index}


def prompt_of(index: int) -> str:
    return PROMPTS[index % len(PROMPTS)]


def run_threads(n: int, work, stagger: float = 0.0) -> tuple[list[float], float]:
    """Start `work(i)` in n threads (every `stagger` seconds); latencies and the wall time."""
    latencies = [0.0] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        started = time.perf_counter()
        try:
            work(i)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        latencies[i] = time.perf_counter() - started

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
        if stagger:
            time.sleep(stagger)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies, time.perf_counter() - began


def engine_work(loaded, mix: str = "mixed"):
    def work(i: int) -> None:
        result = decoding.generate(
            loaded, prompt_of(i), max_new_tokens=TOKENS, stop_at_eos=False,
            **request_settings(i, mix),
        )  # fmt: skip
        assert len(result.new_ids) == TOKENS

    return work


def alone_work(loaded, mix: str = "mixed"):
    def work(i: int) -> None:
        settings = request_settings(i, mix)
        strategy = settings.pop("strategy")
        valid = decoding.validate_settings(strategy, max_new_tokens=TOKENS, **settings)
        _, ids, budget, _ = decoding.prepare_prompt(loaded, prompt_of(i), TOKENS)
        stepper = decoding.new_stepper(loaded, ids, budget, strategy, valid, stop_at_eos=False)
        assert len(run_alone(loaded, stepper)) == TOKENS

    return work


def hf_batched(loaded, n: int, mix: str = "mixed") -> float:
    """Seconds for `model.generate` to write the n requests' tokens: one left-padded batch per
    way of decoding (greedy; top-p sampling), run one after the other."""
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"
    groups: dict[str, list[int]] = {}
    for i in range(n):
        groups.setdefault(request_settings(i, mix)["strategy"], []).append(i)
    seconds = 0.0
    for strategy, members in groups.items():
        batch = tokenizer([prompt_of(i) for i in members], return_tensors="pt", padding=True)
        if strategy == "greedy":
            how = {"do_sample": False}
        else:
            settings = request_settings(members[0], mix)
            how = {"do_sample": True, "top_p": settings["top_p"], "top_k": 0,
                   "temperature": settings["temperature"]}  # fmt: skip
        started = time.perf_counter()
        with torch.no_grad():
            out = loaded.model.generate(
                **batch, max_new_tokens=TOKENS, min_new_tokens=TOKENS,
                pad_token_id=tokenizer.pad_token_id, **how,
            )  # fmt: skip
        seconds += time.perf_counter() - started
        assert out.shape[1] == batch["input_ids"].shape[1] + TOKENS
    return seconds


def rest(loaded) -> None:
    """Wait for the engine's scheduler thread to end (it does when idle; see `in_a_thread_of_its_own`
    for why the other ways are timed without it)."""
    if not engine_for(loaded).wait_rested(IDLE_SECONDS + 10):
        raise SystemExit("the engine's thread did not end")


def in_a_thread_of_its_own(work, *args):
    """`work(*args)` in a new thread that ends with it. Forward passes run here on several
    cores would leave this thread's OpenMP team alive, and while more OpenMP threads live than
    there are cores, every team's idle threads sleep almost at once instead of waiting for the
    next parallel region: the engine's own steps would then run about 30% slower for the rest
    of the run (one Gemma 3 request: 0.78 s, then 1.01 s after one forward pass in the main
    thread). The engine's own thread does the same to other threads while it lives, so the
    thread-each and HF runs wait until it has ended (`rest`)."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(work(*args)))
    thread.start()
    thread.join()
    return out[0]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(loaded, name: str, dtype: str, mix: str, args) -> None:
    """One table row per N for this model, dtype and mix, then the staggered row."""
    engine_work(loaded, mix)(0)  # warm up: first calls allocate and load kernels
    rest(loaded)
    in_a_thread_of_its_own(alone_work(loaded, mix), 0)
    in_a_thread_of_its_own(hf_batched, loaded, 2, mix)
    one = None
    for n in args.ns:
        latencies, wall = [], 0.0
        repeats = ONE_REPEATS if n == 1 else REPEATS
        for _ in range(repeats):
            some, seconds = run_threads(n, engine_work(loaded, mix))
            latencies += some
            wall += seconds / repeats
        median = statistics.median(latencies)
        rest(loaded)  # the other two ways run with the engine's thread gone
        if one is None and n == 1:
            one = median
        tok_s = n * TOKENS / wall
        if n <= args.thread_each_max:
            old, old_wall = run_threads(n, alone_work(loaded, mix))
            old_cells = f"{statistics.median(old):.2f} s | {n * TOKENS / old_wall:.0f}"
        else:
            old_cells = "— | —"
        hf = statistics.median(
            in_a_thread_of_its_own(hf_batched, loaded, n, mix) for _ in range(REPEATS)
        )
        hf_tok = n * TOKENS / hf
        ratio = f"{median / one:.2f}x" if one else "—"
        print(
            f"| {name} | {dtype} | {mix} | {n} | {median:.2f} s | {p95(latencies):.2f} s | "
            f"{tok_s:.0f} | {old_cells} | {hf:.2f} s | {hf_tok:.0f} | {ratio} | "
            f"{tok_s / hf_tok:.2f}x |"
        )
    if one and args.stagger_n:
        latencies, wall = [], 0.0
        for _ in range(REPEATS):
            some, seconds = run_threads(args.stagger_n, engine_work(loaded, mix), stagger=0.1)
            latencies += some
            wall += seconds / REPEATS
        median = statistics.median(latencies)
        print(
            f"| {name} | {dtype} | {mix} | {args.stagger_n}, one every 100 ms | {median:.2f} s | "
            f"{p95(latencies):.2f} s | {args.stagger_n * TOKENS / wall:.0f} | — | — | — | — | "
            f"{median / one:.2f}x | — |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--ns", nargs="+", type=int, default=[1, 4, 16, 32, 64])
    parser.add_argument(
        "--thread-each-max", type=int, default=16,
        help="largest N for the thread-each path (it takes about N times one request)",
    )  # fmt: skip
    parser.add_argument("--mixes", nargs="+", choices=MIXES, default=list(MIXES))
    parser.add_argument("--stagger-n", type=int, default=16)
    parser.add_argument(
        "--caps", nargs="*", type=int, default=[8, 16, 32, 64],
        help="LLMLAB_MAX_BATCH values to compare on 64 requests (SmolLM2, bfloat16)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, tokens per request: {TOKENS}")
    for name in args.models:  # what the pages start on here (llmlab.default_precision)
        choice = precision.default_precision(name, environ={})
        print(f"{name}: the pages' default precision here is {choice.dtype}")
    print()
    header = (
        "| model | dtype | mix | N | engine median | engine p95 | engine tok/s | thread each median "
        "| thread each tok/s | HF batched | HF tok/s | engine median / one | engine tok/s / HF |"
    )
    print(header)
    print("|" + " --- |" * 13)
    for name in args.models:
        for dtype in args.dtypes:
            loaded = models.load(name, dtype=dtype)
            for mix in args.mixes:
                measure(loaded, name, dtype, mix, args)
            stats = engine_for(loaded).stats
            mean = stats.rows_stepped / max(1, stats.steps)
            print(
                f"|  |  |  | engine: {stats.steps} steps, mean batch {mean:.1f} rows, "
                f"peak {stats.peak_rows} |" + " |" * 9
            )

    if args.caps:
        loaded = models.load(args.models[0], dtype=args.dtypes[0])
        engine = engine_for(loaded)
        saved = engine.max_rows
        print(f"\nLLMLAB_MAX_BATCH on 64 requests at once ({args.models[0]}, {args.dtypes[0]})\n")
        print("| max batch | median | p95 | tok/s |")
        print("| --- | --- | --- | --- |")
        for cap in args.caps:
            engine.max_rows = cap
            latencies, wall = run_threads(64, engine_work(loaded))
            print(
                f"| {cap} | {statistics.median(latencies):.2f} s | {p95(latencies):.2f} s | "
                f"{64 * TOKENS / wall:.0f} |"
            )
        engine.max_rows = saved


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
