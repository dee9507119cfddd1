"""Choosing the default tiny GPT by measurement: candidates compared on equal work, not on time.

Run: .venv/bin/python bench/training_sweep.py [reference_steps [candidate ...]]   (default 660)
On a busy machine time is no fair measure, so each candidate is judged by what does not depend
on the load:

1. the cost of one optimizer step of each candidate, relative to the first, measured in one
   run with the steps of all candidates interleaved (every candidate sees the same load);
2. each candidate trains for the number of steps the reference would make in the same time
   (`reference_steps / relative cost`), character level on Botchan, validation = last 10%, one
   torch thread, and its validation loss is printed at a quarter, half and the end of that
   budget (30, 60 and 120 s when `reference_steps` is what the reference makes in 120 s),
   its training loss at the end and the first checkpoint (every 1/32 of the run) at or below
   2.2 nats.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from llmlab import assets  # noqa: E402
from llmlab.training import loop, presets  # noqa: E402

P = presets.TinyGPTPreset
CANDIDATES: list[tuple[P, float]] = [  # (size, context, batch, dropout), peak learning rate
    (P("ref-4x128-b32-d0.1", 4, 4, 128, 64, 32, 0.1), 2e-3),
    (P("4x128-b16-d0", 4, 4, 128, 64, 16, 0.0), 3e-3),
    (P("4x128-b8-d0", 4, 4, 128, 64, 8, 0.0), 2e-3),
    (P("4x128-b16-d0-lr5", 4, 4, 128, 64, 16, 0.0), 5e-3),
    (P("3x128-b16-d0", 3, 4, 128, 64, 16, 0.0), 4e-3),
    (P("6x192-b8-d0.1", 6, 6, 192, 64, 8, 0.1), 2e-3),
    (P("4x128-T128-b8-d0", 4, 4, 128, 128, 8, 0.0), 3e-3),
    (P("4x96-b16-d0", 4, 4, 96, 64, 16, 0.0), 4e-3),
]


def step_costs(vocab_size: int, chosen: list[int], rounds: int = 6) -> list[float]:
    """Median seconds per optimizer step of the chosen candidates, interleaved."""
    torch.set_num_threads(1)
    runs = []
    for preset, rate in [CANDIDATES[i] for i in chosen]:
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel(presets.gpt2_config(preset, vocab_size))
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=rate)
        batch = torch.randint(vocab_size, (preset.batch, preset.context + 1))
        runs.append((model, optimizer, batch))
    times: list[list[float]] = [[] for _ in chosen]
    for round_ in range(rounds + 1):
        for index, (model, optimizer, batch) in enumerate(runs):
            started = time.perf_counter()
            for _ in range(3):
                logits = model(input_ids=batch[:, :-1]).logits
                loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            if round_:  # the first round warms up
                times[index].append((time.perf_counter() - started) / 3)
    return [sorted(t)[len(t) // 2] for t in times]


def main() -> None:
    reference_steps = int(sys.argv[1]) if len(sys.argv) > 1 else 660
    only = sys.argv[2:]  # optional candidate names
    text = assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    vocab_size = len(set(text)) + 2
    names = [preset.name for preset, _ in CANDIDATES]
    chosen = sorted({0, *(names.index(name) for name in only)}) if only else list(range(len(names)))
    costs = dict(zip(chosen, step_costs(vocab_size, chosen), strict=True))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; one torch thread")
    print(f"{'candidate':<22} {'params':>8} {'tokens/step':>11} {'cost':>6} {'steps':>6}"
          f" {'q':>6} {'half':>6} {'end':>6} {'train':>6} {'<=2.2':>6}")  # fmt: skip
    for name in only or names:  # in the order asked for
        (preset, rate), cost = CANDIDATES[names.index(name)], costs[names.index(name)]
        relative = cost / costs[0]
        steps = max(4, round(reference_steps / relative))
        presets.PRESETS[preset.name] = preset
        settings = loop.TrainSettings(
            preset=preset.name, learning_rate=rate, steps=steps, seconds=None,
            eval_every=max(1, steps // 32), threads=1,
        )  # fmt: skip
        result = loop.train(text, replace(settings))
        history = result.history

        def at(share: float, history=history, steps=steps) -> float:
            return [c for c in history if c.step <= share * steps + 1e-9][-1].validation_loss

        below = [c.step for c in history if c.validation_loss <= 2.2]
        first = f"{below[0]:>6}" if below else f"{'-':>6}"
        count = presets.parameter_count(preset, vocab_size)
        print(f"{preset.name:<22} {count / 1e6:7.2f}M {preset.batch * preset.context:>11} "
              f"{relative:6.2f} {steps:>6} {at(0.25):6.3f} {at(0.5):6.3f} {at(1.0):6.3f} "
              f"{history[-1].train_loss:6.3f} {first}  lr {rate:g}", flush=True)  # fmt: skip


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
