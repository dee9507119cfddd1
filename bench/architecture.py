"""Architecture benchmarks: GPT-2 skeletons against their targets, and prompt tracing speed.

1. Each GPT-2 size is built on the `meta` device in a fresh Python process (median of
   `--repeats`), timed after the imports. Memory is the process's resident set size (RSS) after
   the build minus before it, and the growth of its peak RSS. Targets: under 1 s and 200 MB.
2. `forward_trace` and `attention_maps` (first and last layer) on both offline models, for a
   short prompt and for a prompt of the page's 128-token limit; median of `--repeats` after one
   warm-up call.

    .venv/bin/python bench/architecture.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

# The repository root instead of this folder: bench/tokenizers.py would shadow the `tokenizers`
# package that transformers imports.
sys.path[0] = str(Path(__file__).resolve().parents[1])

TARGET_SECONDS, TARGET_MB = 1.0, 200.0
SHORT = "The cat sat on the mat because it"
LONG = "The cat sat on the mat because it was warm. " * 16  # cut to 128 tokens, as on the page


def rss_mb() -> float:
    """Current resident set size (Linux: the second field of /proc/self/statm, in pages)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def child(size: str) -> None:
    """Runs in a fresh process: build one skeleton, print its time and memory as JSON."""
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401 - imports are not timed

    from llmlab import architecture, parameters

    before, peak_before = rss_mb(), peak_mb()
    started = time.perf_counter()
    model = architecture.gpt2_skeleton(size)
    build = time.perf_counter() - started
    held, peak = rss_mb() - before, peak_mb() - peak_before
    started = time.perf_counter()
    breakdown = parameters.parameter_breakdown(model)
    summary = architecture.architecture_summary(model)
    analysis = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": build,
                "held_mb": held,
                "peak_growth_mb": peak,
                "analysis_seconds": analysis,
                "parameters": breakdown.total,
                "layers": summary.layers,
            }
        )
    )


def print_header(title: str, columns: str) -> None:
    print(title)
    print(columns)
    print("-" * len(columns))


def skeleton_table(repeats: int) -> None:
    from llmlab.architecture import GPT2_SIZES

    print_header(
        f"GPT-2 skeletons on the meta device (fresh process each, median of {repeats})",
        f"{'size':<8}{'parameters':>15}{'build s':>10}{'RSS +MB':>10}{'peak +MB':>10}"
        f"{'breakdown+summary s':>21}  target (<{TARGET_SECONDS:g} s, <{TARGET_MB:g} MB)",
    )
    for size in GPT2_SIZES:
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--child", size],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))

        def median(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        seconds, held, peak = median("seconds"), median("held_mb"), median("peak_growth_mb")
        met = seconds < TARGET_SECONDS and max(held, peak) < TARGET_MB
        print(
            f"{size:<8}{runs[0]['parameters']:>15,}{seconds:>10.3f}{held:>10.1f}{peak:>10.1f}"
            f"{median('analysis_seconds'):>21.3f}  {'met' if met else 'MISSED'}"
        )


def timed(call, repeats: int) -> float:
    call()  # warm-up: first-call costs (lazy imports, allocator) are not what we compare
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tracing_table(repeats: int) -> None:
    import torch
    import transformers

    from llmlab import forward_pass, models
    from llmlab.registry import OFFLINE_PAIR

    transformers.utils.logging.disable_progress_bar()
    threads = torch.get_num_threads()
    print_header(
        f"\nTracing a prompt (median of {repeats} after a warm-up; {threads} threads)",
        f"{'model':<24}{'tokens':>7}{'plain pass s':>14}{'forward_trace s':>17}"
        f"{'attention first s':>19}{'attention last s':>18}",
    )
    for name in OFFLINE_PAIR:
        loaded = models.load(name)
        model, tokenizer = loaded.model, loaded.tokenizer
        last = model.config.num_hidden_layers - 1
        for text in (SHORT, LONG):
            prompt = forward_pass.prepare_prompt(tokenizer, text, 128)
            calls = [
                partial(model, input_ids=torch.tensor([prompt.ids]), use_cache=False),
                partial(forward_pass.forward_trace, model, tokenizer, text, max_tokens=128),
                partial(forward_pass.attention_maps, model, tokenizer, text, 0, 128),
                partial(forward_pass.attention_maps, model, tokenizer, text, last, 128),
            ]
            with torch.no_grad():
                first, trace, attention_first, attention_last = (
                    timed(call, repeats) for call in calls
                )
            print(
                f"{name:<24}{len(prompt.ids):>7}{first:>14.3f}{trace:>17.3f}"
                f"{attention_first:>19.3f}{attention_last:>18.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    skeleton_table(args.repeats)
    tracing_table(args.repeats)


if __name__ == "__main__":
    from llmlab.cpu import print_header

    if "--child" not in sys.argv:  # a child process prints only its figures
        print_header()
    main()
