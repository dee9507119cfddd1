"""Pre-training the default tiny GPT on Botchan, character level: loss against time.

Run: .venv/bin/python bench/training.py [seconds]   (default 120)
One run of the Training page's default settings (the `small` preset, validation = the last 10%
of the text, a checkpoint every 50 steps). Prints the machine's load, tokens/s, the
validation loss at 30, 60 and 120 s against the goals (below the bigram line within 30 s,
at most 2.2 nats within 120 s), and the whole validation text's loss at the end.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from llmlab import assets  # noqa: E402
from llmlab.training import loop, presets  # noqa: E402


def at_time(history: list[loop.Checkpoint], seconds: float) -> loop.Checkpoint:
    """The last checkpoint measured at or before `seconds`."""
    return [c for c in history if c.seconds <= seconds + 1e-6][-1]


def main() -> None:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    settings = loop.TrainSettings(seconds=budget)
    preset = presets.get_preset(settings.preset)
    load_before = os.getloadavg()
    started = time.perf_counter()
    prepared = loop.prepare(text, settings)
    prepare_seconds = time.perf_counter() - started
    result = loop.train(text, settings, prepared=prepared)
    # Windows side by side (about `context` apart) over the whole validation text.
    count = len(prepared.validation_ids) // preset.context
    everything = loop.fixed_windows(prepared.validation_ids, preset.context, count=count)
    full = loop.mean_loss(result.model.model, everything)
    lines = prepared.baselines
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")  # fmt: skip
    print(f"preset {preset.describe(len(prepared.tokenizer))}; batch {preset.batch} x "
          f"{preset.context}; dropout {preset.dropout}; peak lr {settings.learning_rate:g}; "
          f"{settings.threads or loop.training_threads()} torch thread(s)")  # fmt: skip
    print(f"text and baselines prepared in {prepare_seconds:.1f} s; uniform {lines.uniform:.3f}, "
          f"unigram {lines.unigram:.3f}, bigram {lines.bigram:.3f} nats")  # fmt: skip
    print(f"{result.steps:,} steps in {result.seconds:.1f} s: {result.steps / result.seconds:.2f} "
          f"steps/s, {result.tokens_per_second:,.0f} tokens/s (checkpoints included)")  # fmt: skip
    share = result.checkpoint_seconds / result.seconds
    print(f"{len(result.history)} checkpoints took {result.checkpoint_seconds:.1f} s "
          f"({share:.0%} of the run)\n")  # fmt: skip
    print(f"{'at':>6} {'step':>6} {'train':>7} {'validation':>11} {'perplexity':>11}  goal")
    goals = {30: f"< bigram {lines.bigram:.2f}", 60: "", 120: "<= 2.2 (stretch 2.0)"}
    for seconds, goal in goals.items():
        if seconds > budget + 1e-6:
            continue
        point = at_time(result.history, seconds)
        met = ""
        if seconds == 30:
            met = "met" if point.validation_loss < lines.bigram else "not met"
        if seconds == 120:
            met = "met" if point.validation_loss <= 2.2 else "not met"
        print(f"{seconds:>5}s {point.step:>6} {point.train_loss:7.3f} {point.validation_loss:11.3f}"
              f" {point.validation_perplexity:11.2f}  {goal} {met}")  # fmt: skip
    below = [c for c in result.history if c.validation_loss < lines.bigram]
    if below:
        print(f"\nfirst below the bigram line: step {below[0].step} at {below[0].seconds:.1f} s")
    print(f"whole validation text ({len(everything)} windows) at the end: {full:.3f} nats")
    print(f"sample: {result.snapshots[-1].sample!r}")


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
