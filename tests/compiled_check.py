"""The compiled decode step against its references, in a process of its own (compiling leaves
threads and caches behind that the other tests should not share). Run by tests/test_compiled.py;
prints one JSON object of findings.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["LLMLAB_COMPILE"] = "1"

import torch  # noqa: E402

from llmlab import models  # noqa: E402
from llmlab.generation import compiled  # noqa: E402
from llmlab.generation.batch import Batch  # noqa: E402
from llmlab.generation.decoding import generate  # noqa: E402
from llmlab.generation.engine import engine_for  # noqa: E402

WAIT_FOR_COMPILE = 1400  # seconds; the test waits 1,500 s for this process to end
LENGTH = 64  # a short slot: rows outgrow it within the run, and move back to the batch
# Neither reaches its end-of-text token within the tokens asked for (checked: `reference_length`).
PROMPTS = ["Once upon a time, in a small village,", "The capital of France is"]


def main() -> None:
    torch.set_grad_enabled(False)
    compiled.LENGTHS = (LENGTH,)
    loaded = models.load("smollm2-135m-instruct", dtype="float32")
    model, tokenizer = loaded.model, loaded.tokenizer
    engine = engine_for(loaded)  # starts compiling
    step = compiled.compiled_for(model)
    # This process runs at a low priority beside the other tests, so compiling (about a minute
    # alone) can take many times that on a busy machine: wait as long as the run may last.
    started = time.monotonic()
    found: dict = {"ready": step.wait(WAIT_FOR_COMPILE), "error": step.error}
    found["compile_wait_seconds"] = round(time.monotonic() - started, 1)
    # Another model loaded after compiling (a new model class) must not invalidate the graph.
    found["gemma_compiles"] = compiled.full_attention_only(
        models.load("gemma-3-270m", dtype="float32").model.config
    )

    # One request alone, through the public API and so through the engine.
    prompt = tokenizer(PROMPTS[0])["input_ids"]
    reference = model.generate(
        torch.tensor([prompt]), max_new_tokens=72, do_sample=False,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    ref_ids = reference.sequences[0, len(prompt) :].tolist()
    ref_probs = [
        float(torch.softmax(score[0].float(), -1)[token])
        for score, token in zip(reference.scores, ref_ids, strict=True)
    ]
    before = engine.stats.compiled_steps
    result = generate(loaded, prompt, max_new_tokens=72, stop_at_eos=False)
    found["alone_ids_equal"] = result.new_ids == ref_ids
    found["reference_lengths"] = [len(ref_ids)]
    found["alone_prob_gap"] = max(
        abs(record.chosen_prob - p) for record, p in zip(result.steps, ref_probs, strict=False)
    )
    found["engine_compiled_steps"] = engine.stats.compiled_steps - before

    # The same row stepped by hand: in the slot first, then (past 64 columns) in the batch.
    batch = Batch(model, pad_id=0, solo=step)
    logits = batch.prefill([prompt])
    chosen, slot_steps = [], []
    for _ in range(72):
        token = int(torch.argmax(logits))
        chosen.append(token)
        logits = batch.step([token])
        slot_steps.append(batch.slot is not None)
    found["by_hand_ids_equal"] = chosen == ref_ids
    found["slot_then_batch"] = [slot_steps[0], slot_steps[-1], batch.compiled_steps]
    batch.reset()

    # A second row joins a lone row in its slot: both go on in the batch, both still exact.
    other = tokenizer(PROMPTS[1])["input_ids"]
    other_ref = model.generate(torch.tensor([other]), max_new_tokens=24, do_sample=False)
    other_ids = other_ref[0, len(other) :].tolist()
    batch = Batch(model, pad_id=0, solo=step)
    logits = batch.prefill([prompt])
    first = []
    for _ in range(6):
        token = int(torch.argmax(logits))
        first.append(token)
        logits = batch.step([token])
    in_slot = batch.slot is not None
    logits = torch.cat([logits, batch.prefill([other])])
    found["joined"] = [in_slot, batch.slot is None, batch.size]
    second = []
    for _ in range(24):
        tokens = torch.argmax(logits, dim=-1).tolist()
        first.append(tokens[0])
        second.append(tokens[1])
        logits = batch.step(tokens)
    found["reference_lengths"].append(len(other_ids))
    found["joined_ids_equal"] = [first == ref_ids[:30], second == other_ids]
    batch.reset()

    found["prompt_tokens"] = len(prompt)

    # Two threads at once go through the engine together (the batch, not the slot) and the
    # request left alone afterwards goes back to the slot.
    results: list = [None, None]

    def run(index: int) -> None:
        results[index] = generate(
            loaded, PROMPTS[index], max_new_tokens=24, stop_at_eos=False
        ).new_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found["threads_ids_equal"] = [results[0] == ref_ids[:24], results[1] == other_ids]
    engine.close()
    print(json.dumps(found))


if __name__ == "__main__":
    main()
