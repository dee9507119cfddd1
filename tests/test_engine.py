"""The engine: many requests on one model, stepped together, each as exact as it is alone.

References are computed in the same run with the same model object: `model.generate` for
greedy and beam ids, and the request run by itself (`engine.run_alone`, no batching) for seeded
sampling and for the step records. Requests join at different steps, with prompts of different
lengths and different strategies, so rows are padded, dropped and reordered under them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from llmlab.generation import decoding
from llmlab.generation.engine import Engine, engine_for, owned_by, run_alone
from llmlab.generation.steppers import TokenStepper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Mixed on purpose: lengths from 2 to ~40 tokens, emoji and Korean, three kinds of strategy.
REQUESTS = [
    ("Once upon a time", {"strategy": "greedy"}),
    (
        "The capital of France is",
        {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": 3},
    ),
    ("안녕하세요 🙂 오늘", {"strategy": "greedy", "repetition_penalty": 1.3}),
    ("def add(a, b):\n    return", {"strategy": "beam", "num_beams": 3}),
    (
        "A long prompt to pad the others: " + "the quick brown fox jumps over the lazy dog " * 4,
        {"strategy": "top_k", "top_k": 20, "seed": 11},
    ),
    ("Hi", {"strategy": "min_p", "min_p": 0.05, "seed": 5, "temperature": 1.2}),
    ("Water boils at", {"strategy": "greedy", "no_repeat_ngram_size": 2}),
]
NEW_TOKENS = 10


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def hf_reference(loaded, prompt: str, settings: dict) -> list[int]:
    """transformers' generate on the same ids, for greedy and beam requests."""
    ids = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    extra = {
        key: settings[key]
        for key in ("num_beams", "repetition_penalty", "no_repeat_ngram_size")
        if key in settings
    }
    out = loaded.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
        **extra,
    )  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


def stepper_for(loaded, prompt: str, settings: dict, tokens: int = NEW_TOKENS):
    """A checked request's stepper, as `iter_generate` makes it."""
    settings = dict(settings)
    strategy = settings.pop("strategy")
    valid = decoding.validate_settings(strategy, max_new_tokens=tokens, **settings)
    _, ids, budget, _ = decoding.prepare_prompt(loaded, prompt, tokens)
    return decoding.new_stepper(loaded, ids, budget, strategy, valid)


def alone(loaded, prompt: str, settings: dict):
    """The request by itself, in this thread, with no engine: its records."""
    return run_alone(loaded, stepper_for(loaded, prompt, settings))


def first_difference(ours, theirs) -> str:
    """Where two step lists part, in words: the step and both tokens' logits there."""
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
        if mine.chosen_id != other.chosen_id:
            by_id = {c.token_id: c.logit for c in other.candidates}
            return (
                f"step {index}: engine chose {mine.chosen_id} ({mine.chosen_token!r}, logit "
                f"{mine.candidates[0].logit:.6f}), alone chose {other.chosen_id} "
                f"({other.chosen_token!r}, logit {by_id.get(other.chosen_id, float('nan')):.6f}); "
                "a tie within float32 rounding flips a token when rows are batched"
            )
    return "the runs have different lengths"


def check_against_references(loaded, prompt, settings, result) -> None:
    reference = alone(loaded, prompt, settings)
    ref_steps = [advance.record for advance in reference]
    if settings["strategy"] in ("greedy", "beam"):
        expected = hf_reference(loaded, prompt, settings)
        assert result.new_ids == expected, first_difference(result.steps, ref_steps)
    else:  # seeded sampling: the same tokens as the request alone
        assert result.new_ids == [r.chosen_id for r in ref_steps], first_difference(
            result.steps, ref_steps
        )
    assert len(result.steps) == len(ref_steps)
    for mine, other in zip(result.steps, ref_steps, strict=True):
        assert mine.chosen_id == other.chosen_id
        assert [c.token_id for c in mine.candidates] == [c.token_id for c in other.candidates]
        for a, b in zip(mine.candidates, other.candidates, strict=True):
            assert abs(a.prob_before - b.prob_before) < 1e-4
            assert abs(a.prob_after - b.prob_after) < 1e-4
            assert a.kept == b.kept


def arrive_in_turn(loaded) -> list:
    """Start every request of REQUESTS, every other one a few steps later, into a running
    batch: (prompt, settings, stream) each."""
    streams = []
    for index, (prompt, settings) in enumerate(REQUESTS):
        settings = dict(settings)
        streams.append(
            (prompt, settings, decoding.iter_generate(loaded, prompt, max_new_tokens=NEW_TOKENS,
                                                      **settings))
        )  # fmt: skip
        if index % 2:
            streams[0][2].wait_started(30)
            time.sleep(0.15)
    return streams


def test_a_mixed_batch_gives_every_request_its_own_exact_result(loaded):
    """Requests arrive while others run: every one equals its reference."""
    engine = engine_for(loaded)
    streams = arrive_in_turn(loaded)
    results = []
    for prompt, settings, stream in streams:
        for _ in stream:
            pass
        results.append((prompt, settings, stream.result))
    assert engine.stats.peak_rows >= 3  # they did share the batch
    for prompt, settings, result in results:
        check_against_references(loaded, prompt, settings, result)


def test_prompts_read_in_small_parts_give_every_request_its_own_exact_result(loaded, monkeypatch):
    """Chunked prefill: with parts of 5 tokens, every prompt but the shortest is read over
    several passes, between the steps of the requests already running (beams included)."""
    from llmlab.generation import engine as engine_module

    monkeypatch.setattr(engine_module, "PREFILL_TOKENS", 8)
    monkeypatch.setattr(engine_module, "CHUNK_TOKENS", 5)
    engine = engine_for(loaded)
    passes_before = engine.stats.prefills
    streams = arrive_in_turn(loaded)
    for prompt, settings, stream in streams:
        for _ in stream:
            pass
        check_against_references(loaded, prompt, settings, stream.result)
    longest = max(len(loaded.tokenizer(p)["input_ids"]) for p, _ in REQUESTS)
    assert longest > 5 * 4  # the longest prompt needs at least four parts of 5
    assert engine.stats.prefills - passes_before >= len(REQUESTS) + 3
    assert wait_until(lambda: engine.snapshot()["rows"] == 0)


def test_a_long_prompt_is_read_in_parts_while_the_others_keep_going(loaded):
    """A prompt of about 700 tokens (past Gemma 3's 512-token sliding window) is read a part at
    a time: a short request that comes after it gets its tokens meanwhile, the long one shows
    its progress, and both equal their references."""
    from llmlab.generation import engine as engine_module

    long_prompt = "The history of the town, told slowly. " + " ".join(
        f"In year {year} the river rose and the people built a wall." for year in range(1, 60)
    )
    _, long_ids, _, _ = decoding.prepare_prompt(loaded, long_prompt, NEW_TOKENS)
    assert len(long_ids) > 2 * engine_module.CHUNK_TOKENS + 100
    # Someone is writing already (alone, a long prompt is read in bigger parts).
    writer = decoding.iter_generate(loaded, "Count:", max_new_tokens=300, stop_at_eos=False)
    assert writer.wait_started(60)
    long = decoding.iter_generate(loaded, long_prompt, max_new_tokens=NEW_TOKENS)
    progress = []
    assert wait_until(lambda: (p := long.reading()) is not None and p[0] > 0, 60)
    progress.append(long.reading())
    short = decoding.iter_generate(loaded, "Once upon a time", max_new_tokens=NEW_TOKENS)
    steps_while_reading = 0
    lanes = set()
    for _ in short:
        now = long.reading()
        lanes.add(engine_for(loaded).snapshot()["lanes"])
        if now is not None:
            steps_while_reading += 1
            progress.append(now)
    assert steps_while_reading >= 1, "the short request waited for the whole long prompt"
    assert max(lanes) >= 2, "the long prompt and the short one were not stepped apart"
    reads = [read for read, _ in progress if read]
    assert reads == sorted(reads) and all(total == len(long_ids) for _, total in progress)
    assert reads[0] % engine_module.CHUNK_TOKENS == 0 and reads[-1] < len(long_ids)
    for _ in long:
        pass
    writer.cancel()
    assert long.reading() is None
    check_against_references(loaded, long_prompt, {"strategy": "greedy"}, long.result)
    check_against_references(loaded, "Once upon a time", {"strategy": "greedy"}, short.result)


def test_a_request_stopped_while_its_prompt_is_read_frees_its_rows(smollm2):
    engine = engine_for(smollm2)
    long_prompt = " ".join(f"Line {i} of a long pasted text." for i in range(300))
    stream = decoding.iter_generate(smollm2, long_prompt, max_new_tokens=5)
    assert wait_until(lambda: (p := stream.reading()) is not None and p[0] > 0, 60)
    stream.cancel()
    assert stream.result.finish_reason == "stopped" and stream.result.new_ids == []
    assert wait_until(lambda: engine.snapshot()["rows"] == 0)
    assert engine.snapshot()["reading"] == 0
    after = decoding.generate(smollm2, "Once upon a time", max_new_tokens=8)
    assert after.new_ids == hf_reference(smollm2, "Once upon a time", {"strategy": "greedy"})[:8]


def test_many_threads_at_once_each_get_the_greedy_text(smollm2):
    """A bounded stress run: 64 threads, two batches' worth with the default cap."""
    prompts = [f"Student {i} asks: what is {i} plus {i}?" for i in range(64)]
    expected = {}
    for prompt in prompts[:8]:  # the references: model.generate, one prompt at a time
        expected[prompt] = hf_reference(smollm2, prompt, {"strategy": "greedy"})[:6]
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def ask(prompt: str) -> None:
        try:
            results[prompt] = decoding.generate(smollm2, prompt, max_new_tokens=6).new_ids
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and len(results) == 64
    for prompt, ids in expected.items():
        assert results[prompt] == ids
    # The others too, against the engine-free path (each alone, in this thread).
    for prompt in prompts[8:]:
        steps = alone(smollm2, prompt, {"strategy": "greedy"})
        assert results[prompt] == [a.record.chosen_id for a in steps][:6]
    assert engine_for(smollm2).snapshot()["rows"] == 0


def wait_until(condition, seconds: float = 30.0) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_cancelled_request_frees_its_row_and_the_next_one_runs(smollm2):
    engine = engine_for(smollm2)
    stream = decoding.iter_generate(
        smollm2, "Tell me a long story.", max_new_tokens=200, stop_at_eos=False
    )
    for _, _ in zip(range(3), stream, strict=False):
        pass
    stream.cancel()
    assert stream.result.finish_reason == "stopped" and len(stream.result.new_ids) == 3
    assert wait_until(lambda: engine.snapshot()["rows"] == 0)
    after = decoding.generate(smollm2, "Once upon a time", max_new_tokens=8)
    assert after.new_ids == hf_reference(smollm2, "Once upon a time", {"strategy": "greedy"})[:8]


def test_a_stream_dropped_unread_is_cancelled(smollm2):
    """A session that goes away leaves its stream behind: the engine lets the request go."""
    import gc

    engine = engine_for(smollm2)
    stream = decoding.iter_generate(
        smollm2, "Tell me a long story.", max_new_tokens=300, stop_at_eos=False
    )
    stream.wait_started(30)
    del stream
    gc.collect()
    assert wait_until(lambda: engine.snapshot()["rows"] == 0)
    assert engine.stats.steps < 10_000


def test_a_bad_request_never_disturbs_the_batch(smollm2):
    prompt = "The three primary colours are"
    good = decoding.iter_generate(smollm2, prompt, max_new_tokens=NEW_TOKENS)
    good.wait_started(30)
    with pytest.raises(ValueError, match="top_p"):  # refused before it joins
        decoding.iter_generate(smollm2, prompt, strategy="top_p", top_p=7.0)

    class Broken(TokenStepper):
        def advance(self, logits, probs_before=None):
            if self.step == 2:
                raise RuntimeError("a filter broke")
            return super().advance(logits, probs_before)

    ids = smollm2.tokenizer(prompt)["input_ids"]
    broken = Broken(smollm2.tokenizer, ids, 20, "greedy", {"top_candidates": 5}, [])
    request = engine_for(smollm2).submit(smollm2, broken)
    items = [request.take(30) for _ in range(3)]
    assert [kind for kind, _ in items] == ["step", "step", "error"]
    for _ in good:
        pass
    assert good.result.new_ids == hf_reference(smollm2, prompt, {"strategy": "greedy"})


def test_a_prompt_that_cannot_be_read_fails_alone(smollm2, monkeypatch):
    """Reading a prompt fails (say, no memory for its cache): that request gets the error,
    and the one already writing goes on to its exact text."""
    from llmlab.generation.batch import Reading

    read = Reading.read

    def failing(self, columns):
        if self.total > 1000:
            raise MemoryError("no room for this prompt's cache")
        return read(self, columns)

    monkeypatch.setattr(Reading, "read", failing)
    prompt = "The three primary colours are"
    good = decoding.iter_generate(smollm2, prompt, max_new_tokens=NEW_TOKENS)
    assert good.wait_started(30)
    long_prompt = " ".join(f"Line {i} of a long pasted text." for i in range(300))
    with pytest.raises(MemoryError, match="no room"):
        decoding.generate(smollm2, long_prompt, max_new_tokens=4)
    for _ in good:
        pass
    assert good.result.new_ids == hf_reference(smollm2, prompt, {"strategy": "greedy"})
    assert wait_until(lambda: engine_for(smollm2).snapshot()["rows"] == 0)


def test_a_merge_that_fails_leaves_the_batch_as_it_was(gemma, monkeypatch):
    """Rows join by merging their cache into the batch's; if that fails half-way (no memory
    for the larger cache), the batch's rows go on exactly as if nothing had been tried."""
    from llmlab.generation import batch as batch_module

    ids = [gemma.tokenizer(t)["input_ids"] for t in ("Once upon a time", "Water boils at")]
    expected = batch_module.Batch(gemma.model)
    expected.prefill(ids)
    reference = expected.step([100, 200])

    batch = batch_module.Batch(gemma.model)
    batch.prefill(ids)
    fitted, calls = batch_module._fitted, []

    def failing(layer, width):
        calls.append(width)
        if len(calls) > 5:  # a few layers in
            raise MemoryError("no room for the larger cache")
        return fitted(layer, width)

    monkeypatch.setattr(batch_module, "_fitted", failing)
    longer = gemma.tokenizer("A prompt a good deal longer than the two before it")["input_ids"]
    with pytest.raises(MemoryError):
        batch.prefill([longer])
    monkeypatch.setattr(batch_module, "_fitted", fitted)
    assert batch.size == 2 and batch.width == max(len(i) for i in ids)
    assert torch.equal(batch.step([100, 200]), reference)


def test_past_the_cap_requests_wait_in_order_and_can_leave_the_queue(smollm2):
    engine = engine_for(smollm2)
    saved = engine.max_rows
    engine.max_rows = 2
    try:
        running = [
            decoding.iter_generate(smollm2, f"Story {i}:", max_new_tokens=40, stop_at_eos=False)
            for i in range(2)
        ]
        assert wait_until(lambda: engine.snapshot()["rows"] == 2)
        third = decoding.iter_generate(smollm2, "Third:", max_new_tokens=4)
        fourth = decoding.iter_generate(smollm2, "Fourth:", max_new_tokens=4)
        assert third.queue_position() == 0 and fourth.queue_position() == 1
        assert third.waiting() and not third.wait_started(0.1)
        fourth.cancel()  # a student who stops waiting
        assert fourth.result.finish_reason == "stopped" and fourth.result.new_ids == []
        assert third.queue_position() == 0
        for stream in running:
            stream.cancel()
        for _ in third:
            pass
        assert (
            third.result.new_ids == decoding.generate(smollm2, "Third:", max_new_tokens=4).new_ids
        )
    finally:
        engine.max_rows = saved
    assert wait_until(lambda: engine.snapshot() == {**engine.snapshot(), "rows": 0, "waiting": 0})


def test_past_the_token_cap_a_long_request_waits_its_turn(smollm2):
    """Memory: the cache a request can take is counted (rows x (prompt + new tokens)); past
    LLMLAB_MAX_BATCH_TOKENS the next request waits, then runs to its exact text."""
    engine = engine_for(smollm2)
    saved = engine.max_tokens
    long_prompt = " ".join(f"Line {i} of a long pasted text." for i in range(40))
    first = decoding.iter_generate(smollm2, "Story:", max_new_tokens=60, stop_at_eos=False)
    assert first.wait_started(30)
    held = engine.snapshot()["tokens"]
    assert held == len(smollm2.tokenizer("Story:")["input_ids"]) + 60
    engine.max_tokens = held + 100  # room for the first, not for a long prompt beside it
    try:
        second = decoding.iter_generate(smollm2, long_prompt, max_new_tokens=5)
        assert second.queue_position() == 0 and not second.wait_started(0.3)
        for _ in first:
            pass
        for _ in second:
            pass
    finally:
        engine.max_tokens = saved
    expected = hf_reference(smollm2, long_prompt, {"strategy": "greedy"})[:5]
    assert second.result.new_ids == expected


def test_an_idle_engine_ends_its_thread_and_the_next_request_starts_it_again(smollm2, monkeypatch):
    from llmlab.generation import engine as engine_module

    monkeypatch.setattr(engine_module, "IDLE_SECONDS", 0.2)
    engine = Engine(model_name="idle")
    for _ in range(2):
        request = engine.submit(
            smollm2, stepper_for(smollm2, "Hello", {"strategy": "greedy"}, tokens=3)
        )
        seen = []
        while (item := request.take(timeout=60)) is not None and item[0] != "done":
            seen.append(item[0])
        assert seen == ["step"] * 3
        assert engine.wait_rested(30)  # the thread ended: nothing keeps its OpenMP team alive
        assert not [t for t in threading.enumerate() if t.name == "llmlab-engine-idle"]
    engine.close()


def test_a_rest_right_after_a_run_ends_the_thread_and_one_during_a_run_ends_it_after(
    smollm2, monkeypatch
):
    """The model cache rests an evicted model's engine right after its last run returned: the
    thread, which holds the model, must end then, not after the idle wait (made an hour here)."""
    from llmlab.generation import engine as engine_module

    monkeypatch.setattr(engine_module, "IDLE_SECONDS", 3600.0)
    engine = Engine(model_name="resting")
    try:
        for _ in range(5):  # the reader hears "done" before the scheduler drops the request
            request = engine.submit(
                smollm2, stepper_for(smollm2, "Hello", {"strategy": "greedy"}, tokens=2)
            )
            while (item := request.take(timeout=60)) is not None and item[0] != "done":
                pass
            assert engine.rest(timeout=60)
            assert not [t for t in threading.enumerate() if t.name == "llmlab-engine-resting"]
        request = engine.submit(
            smollm2, stepper_for(smollm2, "Hello", {"strategy": "greedy"}, tokens=6)
        )
        assert request.take(timeout=60)[0] == "step"
        assert not engine.rest()  # still running: it says so at once ...
        steps = 1
        while (item := request.take(timeout=60)) is not None and item[0] != "done":
            steps += 1
        assert steps == 6  # ... the run is not cut short ...
        assert engine.wait_rested(60)  # ... and the thread ends after it
    finally:
        engine.close()


def test_prompts_that_arrive_while_one_is_read_start_in_the_same_step(smollm2, monkeypatch):
    """Three requests submitted while the first one's prompt is being read are read before
    anyone steps, so all four write from the first step together (three steps for three
    tokens each), and each equals `generate`."""
    from llmlab.generation import engine as engine_module

    engine = Engine(model_name="together")
    prompts = ["Hello", "The capital of France is", "Water boils at", "Once upon a time"]
    later: list = []
    prefill = engine_module.Batch.prefill

    def slow_first_read(self, prompts_ids):
        if not later:  # the first reading pass: the others arrive meanwhile
            later.extend(
                engine.submit(smollm2, stepper_for(smollm2, p, {"strategy": "greedy"}, tokens=3))
                for p in prompts[1:]
            )
        return prefill(self, prompts_ids)

    monkeypatch.setattr(engine_module.Batch, "prefill", slow_first_read)
    first = engine.submit(
        smollm2, stepper_for(smollm2, prompts[0], {"strategy": "greedy"}, tokens=3)
    )
    try:
        assert wait_until(lambda: len(later) == 3)
        for prompt, request in zip(prompts, [first, *later], strict=True):
            chosen = []
            while (item := request.take(timeout=60)) is not None and item[0] != "done":
                assert item[0] == "step", item
                chosen.append(item[1].record.chosen_id)
            assert chosen == hf_reference(smollm2, prompt, {"strategy": "greedy"})[:3]
        assert engine.stats.prefills == 2  # the first prompt, then the three together
        assert engine.stats.steps == 2  # every forward pass after them held all four rows
        assert engine.stats.rows_stepped == 8
    finally:
        engine.close()


def test_prompts_that_arrive_a_moment_apart_on_an_idle_engine_are_read_in_one_pass(smollm2):
    """Four requests submitted 2 ms apart to an engine with nothing running are read in one
    pass and step together from the first step (the engine waits while prompts keep coming),
    and each equals `generate`."""
    from llmlab.generation import engine as engine_module

    engine = Engine(model_name="gather")
    prompts = ["Hello", "The capital of France is", "Water boils at", "Once upon a time"]
    try:
        requests = []
        for prompt in prompts:
            stepper = stepper_for(smollm2, prompt, {"strategy": "greedy"}, tokens=3)
            requests.append(engine.submit(smollm2, stepper))
            time.sleep(0.002)
        for prompt, request in zip(prompts, requests, strict=True):
            chosen = []
            while (item := request.take(timeout=60)) is not None and item[0] != "done":
                assert item[0] == "step", item
                chosen.append(item[1].record.chosen_id)
            assert chosen == hf_reference(smollm2, prompt, {"strategy": "greedy"})[:3]
        assert engine.stats.prefills == 1  # all four prompts in one pass
        assert engine.stats.steps == 2 and engine.stats.rows_stepped == 8
        assert engine_module.GATHER_QUIET > 0.002  # the gap above is within the quiet time
    finally:
        engine.close()


def test_max_tokens_from_env_names_the_variable():
    from llmlab.generation.engine import max_tokens_from_env

    for bad in ("0", "-5", "lots"):
        with pytest.raises(ValueError, match="LLMLAB_MAX_BATCH_TOKENS"):
            max_tokens_from_env({"LLMLAB_MAX_BATCH_TOKENS": bad})
    assert Engine(max_tokens=300).max_tokens == 300


def test_a_new_run_of_the_same_page_cancels_the_earlier_one_only(smollm2):
    with owned_by(("session-a", "decoding")):
        first = decoding.iter_generate(smollm2, "One:", max_new_tokens=100, stop_at_eos=False)
        compared = decoding.iter_generate(
            smollm2, "Two:", max_new_tokens=50, stop_at_eos=False
        )  # same run
    with owned_by(("session-b", "decoding")):
        other = decoding.iter_generate(smollm2, "Three:", max_new_tokens=5)
    with owned_by(("session-a", "decoding")):
        again = decoding.iter_generate(smollm2, "Four:", max_new_tokens=5)
    for stream in (first, compared, other, again):
        for _ in stream:
            pass
    assert first.result.finish_reason == "stopped" and len(first.result.new_ids) < 100
    assert compared.result.finish_reason == "stopped"  # its run was replaced as a whole
    assert other.result.finish_reason in ("length", "eos")  # another session is untouched
    assert again.result.finish_reason in ("length", "eos")


def test_one_engine_per_loaded_model_and_threads_set_once(smollm2, gemma):
    assert engine_for(smollm2) is engine_for(smollm2)
    assert engine_for(smollm2) is not engine_for(gemma)
    cores = len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == cores


def test_max_batch_from_env_names_the_variable():
    from llmlab.generation.engine import max_batch_from_env

    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(ValueError, match="LLMLAB_MAX_BATCH"):
            max_batch_from_env({"LLMLAB_MAX_BATCH": bad})
    assert Engine(max_rows=3).max_rows == 3


def test_the_process_exits_cleanly_with_a_request_in_flight(tmp_path):
    """A thread killed inside a forward pass aborts the process; the engine closes first."""
    script = (
        "import llmlab\n"
        "stream = llmlab.iter_generate('smollm2-135m-instruct', 'Tell me a story.', "
        "max_new_tokens=400, stop_at_eos=False)\n"
        "next(stream); next(stream)\n"
        "print('left mid-run')\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "left mid-run" in done.stdout and "terminate called" not in done.stderr


def test_a_waiting_student_sees_their_place_until_the_run_starts():
    from llmlab import ui

    class Stream:  # the queue as a page sees it: 2 ahead, then 1, then next, then running
        positions = [2, 2, 1, 0, None]

        def wait_started(self, timeout):
            return not self.positions

        def queue_position(self):
            return self.positions.pop(0)

        def reading(self):
            return None  # a short prompt: read in one pass, nothing to show

    class Placeholder:
        def __init__(self):
            self.shown = []

        def info(self, text, icon=None):
            self.shown.append(text)

        def empty(self):
            self.shown.append("(cleared)")

    placeholder = Placeholder()
    ui.wait_for_turn(Stream(), placeholder, " Stop cancels it.")
    assert placeholder.shown == [
        "Waiting for the model: 2 requests are ahead of yours (it serves many at once, in turn)."
        " Stop cancels it.",
        "Waiting for the model: 1 request is ahead of yours (it serves many at once, in turn)."
        " Stop cancels it.",
        "Waiting for the model: it is serving as many requests as it can at once; yours is next."
        " Stop cancels it.",
        "(cleared)",
    ]


def test_a_student_sees_how_much_of_a_long_prompt_is_read():
    from llmlab import ui

    class Stream:  # queued, then read in parts, then its first token
        positions = [0, None, None, None, None]
        progress = [None, (0, 700), (256, 700), (256, 700), (512, 700)]

        def wait_started(self, timeout):
            return not self.positions

        def queue_position(self):
            self.now = self.progress.pop(0)
            return self.positions.pop(0)

        def reading(self):
            return self.now

    shown = []

    class Placeholder:
        def info(self, text, icon=None):
            shown.append(text)

        def empty(self):
            shown.append("(cleared)")

    ui.wait_for_turn(Stream(), Placeholder())
    assert shown == [
        "Waiting for the model: it is serving as many requests as it can at once; yours is next.",
        ui.reading_message(256, 700),
        ui.reading_message(512, 700),
        "(cleared)",
    ]
    assert "256 of 700 tokens" in shown[1]
