"""Pre-training a tiny GPT: tokenizers, sizes, baselines, the loop, the queue, saved models.

Every training here is a few dozen steps of the smallest preset: seconds, not minutes.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time
import zipfile
from collections import Counter

import pytest
import torch

import llmlab
from llmlab import assets
from llmlab.tokenization import bpe
from llmlab.training import baselines, jobs, loop, presets, saving
from llmlab.training.tokenizer import bpe_tokenizer, char_tokenizer

AWKWARD = {
    "empty": "",
    "emoji": "The 🌟 star 🚀🔥 👩‍👩‍👧",
    "korean": "안녕하세요, 어떻게 지내세요?",
    "code": "def f(n):\n\treturn n * 2  # twice\n",
    "long": "lorem ipsum dolor sit amet " * 400,
}
TINY = dict(preset="tiny", seconds=None, eval_every=5)


@pytest.fixture(scope="module")
def botchan() -> str:
    return assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small_text(botchan) -> str:
    return botchan[:40_000]


@pytest.fixture(scope="module")
def trained(small_text) -> loop.TrainingResult:
    return loop.train(small_text, loop.TrainSettings(steps=15, **TINY))


# --- tokenizers -------------------------------------------------------------------------------


@pytest.mark.parametrize("label", list(AWKWARD))
def test_char_tokenizer_is_one_id_per_character_and_round_trips(label):
    text = AWKWARD[label]
    tokenizer = char_tokenizer(text + "x")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) == len(set(text + "x")) + 2


def test_char_tokenizer_maps_an_unseen_character_to_unknown():
    tokenizer = char_tokenizer("abc")
    assert tokenizer("aé")["input_ids"] == [tokenizer.convert_tokens_to_ids("a"), 1]
    assert tokenizer.unk_token_id == 1 and tokenizer.eos_token_id == tokenizer.pad_token_id == 0


@pytest.mark.parametrize("label", list(AWKWARD))
def test_bpe_tokenizer_gives_the_from_scratch_ids(botchan, label):
    """The HF tokenizer built from `bpe.train` encodes exactly as `BPETokenizer` does."""
    training = botchan[:60_000]
    wrapped = bpe_tokenizer(training, 400)
    reference = bpe.train(training, 400).tokenizer
    text = AWKWARD[label] + botchan[100_000:101_000]
    ids = wrapped(text, add_special_tokens=False)["input_ids"]
    assert ids == reference.encode(text)
    assert wrapped.decode(ids) == text


def test_a_bpe_vocabulary_larger_than_the_text_allows_is_refused():
    with pytest.raises(ValueError, match="more than this text allows"):
        bpe_tokenizer("abab abab", 1000)


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_preset_counts_are_the_real_models_parameter_count(name):
    """The Architecture page's formulas against the parameters of a real (tiny) model."""
    from transformers import GPT2LMHeadModel

    preset = presets.PRESETS[name]
    model = GPT2LMHeadModel(presets.gpt2_config(preset, 87))
    assert presets.parameter_count(preset, 87) == sum(p.numel() for p in model.parameters())


def test_presets_span_about_a_fifth_of_a_million_to_five_million():
    counts = [presets.parameter_count(p, 87) for p in presets.PRESETS.values()]
    assert counts == sorted(counts)
    assert 0.15e6 < counts[0] < 0.3e6 and 4e6 < counts[-1] < 5.5e6


# --- baselines --------------------------------------------------------------------------------


def _brute_force(train: list[int], validation: list[int], vocab: int) -> tuple[float, float]:
    """Probability tables filled cell by cell (add-one), then the mean negative log."""
    unigram = [(train.count(t) + 1) / (len(train) + vocab) for t in range(vocab)]
    table = [[1.0] * vocab for _ in range(vocab)]
    for a, b in zip(train, train[1:], strict=False):
        table[a][b] += 1
    rows = [[cell / sum(row) for cell in row] for row in table]
    uni = -sum(math.log(unigram[t]) for t in validation) / len(validation)
    pairs = list(zip(validation, validation[1:], strict=False))
    bi = -sum(math.log(rows[a][b]) for a, b in pairs) / len(pairs)
    return uni, bi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_baselines_match_probability_tables_built_by_hand(seed):
    generator = torch.Generator().manual_seed(seed)
    train = torch.randint(0, 6, (300,), generator=generator).tolist()
    validation = torch.randint(0, 6, (50,), generator=generator).tolist()
    lines = baselines.baseline_losses(train, validation, 7)  # one token never seen
    uni, bi = _brute_force(train, validation, 7)
    assert lines.uniform == pytest.approx(math.log(7))
    assert lines.unigram == pytest.approx(uni, abs=1e-12)
    assert lines.bigram == pytest.approx(bi, abs=1e-12)


def test_botchan_baselines_character_level(botchan):
    prepared = loop.prepare(botchan, loop.TrainSettings())
    characters = len(set(botchan))
    assert characters == 85 and len(prepared.tokenizer) == characters + 2
    assert round(math.log(characters), 2) == 4.44
    assert prepared.baselines.uniform == pytest.approx(math.log(characters + 2))
    assert prepared.baselines.unigram == pytest.approx(3.32, abs=0.01)
    assert prepared.baselines.bigram == pytest.approx(2.83, abs=0.01)
    # validation = the last 10% of the characters, never trained on
    assert len(prepared.validation_ids) == len(botchan) - int(len(botchan) * 0.9)


# --- the loop ---------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_a_tenth():
    rates = [loop.learning_rate(1.0, i / 100) for i in range(101)]
    assert rates[0] == 0 and max(rates) == pytest.approx(1.0)
    assert rates.index(max(rates)) == 5 and rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[5:], rates[6:], strict=False))


def test_step_zero_is_the_uniform_guess_and_training_goes_below_it(trained):
    first, last = trained.history[0], trained.history[-1]
    vocab = len(trained.model.tokenizer)
    assert first.step == 0 and abs(first.validation_loss - math.log(vocab)) < 0.1
    assert last.step == 15 and last.validation_loss < first.validation_loss - 0.5
    assert trained.status == "finished" and len(trained.snapshots) == len(trained.history)


def test_same_seed_same_curve_other_seed_other_curve(small_text):
    settings = loop.TrainSettings(steps=10, **TINY)
    first = loop.train(small_text, settings)
    again = loop.train(small_text, settings)
    other = loop.train(small_text, loop.TrainSettings(steps=10, seed=1, **TINY))
    losses = [(c.train_loss, c.validation_loss) for c in first.history]
    assert losses == [(c.train_loss, c.validation_loss) for c in again.history]
    assert losses != [(c.train_loss, c.validation_loss) for c in other.history]
    assert [s.sample for s in first.snapshots] == [s.sample for s in again.snapshots]


def test_training_leaves_the_global_random_state_alone(small_text):
    before = torch.get_rng_state()
    loop.train(small_text, loop.TrainSettings(steps=2, **TINY))
    assert torch.equal(before, torch.get_rng_state())


def test_a_huge_learning_rate_stops_with_a_message_and_keeps_nothing(small_text):
    result = loop.train(small_text, loop.TrainSettings(steps=30, learning_rate=1e9, **TINY))
    assert result.status == "diverged" and result.model is None
    assert "learning rate" in result.message and "1e+09" in result.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), (" \n\t ", "empty"), ("short text", "too short"), ("a" * 70, "too short")],
)
def test_text_that_cannot_be_trained_on_is_refused_plainly(text, message):
    with pytest.raises(ValueError, match=message):
        loop.prepare(text, loop.TrainSettings(preset="tiny"))


def test_a_ten_megabyte_paste_is_cut_to_the_limit_with_a_notice():
    text = ("All work and no play. " * 500_000)[:10_000_000]
    prepared = loop.prepare(text, loop.TrainSettings(preset="tiny"))
    assert len(prepared.text) == loop.MAX_TEXT_CHARS
    assert "10,000,000 characters" in prepared.notice


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"steps": 0}, "steps"),
        ({"seconds": -1.0}, "seconds"),
        ({"seed": -1}, "seed"),
        ({"preset": "huge"}, "preset"),
        ({"tokenizer": "word"}, "tokenizer"),
        ({"steps": None, "seconds": None}, "steps or seconds"),
    ],
)
def test_bad_settings_name_the_argument(change, argument):
    with pytest.raises(ValueError, match=argument):
        loop.TrainSettings(**{"steps": 5, **change}).check()


def test_bpe_training_runs_on_the_same_loop(small_text):
    result = llmlab.train_tiny_gpt(
        small_text, tokenizer="bpe", vocab_size=300, preset="tiny", steps=3
    )
    assert len(result.model.tokenizer) == 302
    assert abs(result.history[0].validation_loss - math.log(302)) < 0.1


# --- the trained model, like any other ----------------------------------------------------------


def test_the_trained_model_decodes_through_llmlab_generate_like_model_generate(trained):
    loaded = trained.model
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    result = llmlab.generate(loaded, "I was ", strategy="greedy", max_new_tokens=12)
    ids = loaded.tokenizer("I was ", return_tensors="pt")["input_ids"]
    reference = loaded.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert result.new_ids == reference[0, ids.shape[1] :].tolist()


def test_the_next_token_view_reads_the_trained_model(trained):
    distribution = llmlab.next_token_distribution(trained.model, "I was ")
    probe = trained.snapshots[-1].probe
    top = distribution.probabilities.topk(3)
    assert [trained.model.tokenizer.decode([int(i)]) for i in top.indices] == [
        token for token, _ in probe[:3]
    ]
    assert top.values.tolist() == pytest.approx([p for _, p in probe[:3]], abs=1e-5)


def test_save_and_load_give_the_same_logits(trained, tmp_path):
    folder = saving.save(trained.model, "my model", home=tmp_path)
    files = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    back = saving.load("my model", home=tmp_path)
    ids = torch.tensor([trained.model.tokenizer("I was a boy")["input_ids"]])
    assert torch.equal(trained.model.model(ids).logits, back.model(ids).logits)
    assert back.tokenizer("I was a boy")["input_ids"] == ids[0].tolist()
    assert saving.saved_names(tmp_path) == ["my model"]


def test_the_zip_holds_the_saved_files(trained, tmp_path):
    names = zipfile.ZipFile(io.BytesIO(saving.zip_bytes(trained.model, "mine"))).namelist()
    folder = saving.save(trained.model, "mine", home=tmp_path)
    assert sorted(names) == sorted(f"mine/{p.name}" for p in folder.iterdir())


@pytest.mark.parametrize("name", ["a/b", "../up", "..", "x\x00y", "/etc", "", " lead", "a" * 65])
def test_a_name_that_could_leave_the_folder_is_refused(trained, tmp_path, name):
    with pytest.raises(ValueError, match="not allowed"):
        saving.save(trained.model, name, home=tmp_path)
    assert not (tmp_path / "trained").exists() or not any((tmp_path / "trained").iterdir())


# --- background runs and the queue --------------------------------------------------------------


def _wait(condition, timeout: float = 60.0) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.05)


def test_one_training_at_a_time_the_next_waits_its_turn(small_text):
    slots = jobs.TrainingSlots(limit=1)
    prepared = loop.prepare(small_text, loop.TrainSettings(preset="tiny"))
    long = loop.TrainSettings(steps=100_000, **TINY)
    first = jobs.TrainingJob(prepared, long, slots=slots).start()
    _wait(lambda: first.state == "running")
    second = jobs.TrainingJob(prepared, loop.TrainSettings(steps=2, **TINY), slots=slots).start()
    third = jobs.TrainingJob(prepared, loop.TrainSettings(steps=2, **TINY), slots=slots).start()
    _wait(lambda: second.queue_position() == 0 and third.queue_position() == 1)
    third.stop()  # leaving the queue frees the place behind
    _wait(lambda: third.done)
    assert third.state == "stopped" and third.result is None
    first.stop()
    _wait(lambda: first.done and second.done)
    assert first.state == "stopped" and first.result.model is not None
    assert second.state == "finished" and slots.running == 0


def test_a_run_nobody_watches_stops_and_frees_its_place(small_text):
    slots = jobs.TrainingSlots(limit=1)
    prepared = loop.prepare(small_text, loop.TrainSettings(preset="tiny"))
    job = jobs.TrainingJob(
        prepared, loop.TrainSettings(steps=100_000, **TINY), slots=slots, heartbeat_seconds=0.5
    ).start()
    _wait(lambda: job.done)
    assert job.state == "stopped" and "left" in job.message and slots.running == 0


def test_training_steps_interleave_with_other_model_work(small_text):
    """Each step takes the compute lock, so work holding it (an engine step) gets in between."""
    from llmlab.compute import exclusive

    prepared = loop.prepare(small_text, loop.TrainSettings(preset="tiny"))
    job = jobs.TrainingJob(
        prepared, loop.TrainSettings(steps=100_000, **TINY), slots=jobs.TrainingSlots()
    ).start()
    _wait(lambda: job.progress.step > 2)
    got_in = []
    for _ in range(5):
        with exclusive():
            step = job.progress.step
            time.sleep(0.05)
            got_in.append(job.progress.step == step)  # no training step while we hold it
        time.sleep(0.05)
    job.stop()
    _wait(lambda: job.done)
    assert all(got_in) and job.progress.step > 3


def test_the_class_keeps_generating_while_a_model_trains(small_text, smollm2):
    """A real generation through the engine finishes, with the ids `model.generate` gives, while
    a training runs, and the training goes on meanwhile: neither waits for the other's end."""
    prepared = loop.prepare(small_text, loop.TrainSettings(preset="tiny"))
    job = jobs.TrainingJob(
        prepared, loop.TrainSettings(steps=100_000, **TINY), slots=jobs.TrainingSlots()
    ).start()
    _wait(lambda: job.progress.step > 2)
    before = job.progress.step
    result = llmlab.generate(smollm2, "The capital of France is", max_new_tokens=8)
    during = job.progress.step - before
    still_running = job.state == "running"
    job.stop()
    _wait(lambda: job.done)
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    reference = smollm2.model.generate(ids, max_new_tokens=8, do_sample=False)
    assert result.new_ids == reference[0, ids.shape[1] :].tolist()
    assert still_running and during > 0 and job.state == "stopped"
    assert loop.training_threads() == max(1, len(os.sched_getaffinity(0)) // 2)


def test_the_training_thread_count_is_set_for_its_own_thread_only():
    before = torch.get_num_threads()
    seen = []
    with loop._threads(1):
        seen.append(torch.get_num_threads())
        other = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        other.start()
        other.join()
    assert seen[0] == 1 and torch.get_num_threads() == before
    assert loop.training_threads() >= 1


def test_max_trainings_refuses_a_bad_value():
    with pytest.raises(ValueError, match="LLMLAB_MAX_TRAININGS"):
        jobs.max_trainings_from_env({"LLMLAB_MAX_TRAININGS": "0"})


def test_counts_of_the_snapshot_tokens_are_probabilities(trained):
    probe = trained.snapshots[-1].probe
    assert len(probe) == loop.PROBE_SHOWN and 0 < sum(p for _, p in probe) <= 1.0 + 1e-6
    assert Counter(token for token, _ in probe).most_common(1)[0][1] == 1


def test_a_run_counts_toward_the_memory_budget(small_text):
    from llmlab.memory import MemoryBudget

    prepared = loop.prepare(small_text, loop.TrainSettings(preset="tiny"))
    settings = loop.TrainSettings(steps=2, **TINY)
    needed = jobs.memory_needed(settings, prepared.tokenizer.vocab_size)
    rss = 500 * 1024**2
    unloaded = []

    def unload() -> bool:  # a model cache with one model to give up
        unloaded.append(True)
        return len(unloaded) == 1

    tight = MemoryBudget(rss + needed // 2, rss=lambda: rss, release=lambda: None)
    tight.add_reclaimer(unload)
    refused = jobs.TrainingJob(prepared, settings, slots=jobs.TrainingSlots(), budget=tight)
    refused.start().join(60)
    assert refused.state == "failed" and refused.result is None
    assert "Training did not start" in refused.message and "needs about" in refused.message
    assert len(unloaded) == 2  # the cache was asked to make room first

    roomy = MemoryBudget(rss + 2 * needed, rss=lambda: rss, release=lambda: None)
    job = jobs.TrainingJob(prepared, settings, slots=jobs.TrainingSlots(), budget=roomy)
    job.start().join(120)
    assert job.state == "finished" and roomy.reserved() == 0  # the run's share is given back


def test_the_training_estimate_grows_with_the_model():
    sizes = [jobs.memory_needed(loop.TrainSettings(preset=p), 87) for p in ("tiny", "large")]
    assert sizes[0] < sizes[1]
    assert jobs.memory_needed(loop.TrainSettings(), 512) > jobs.memory_needed(
        loop.TrainSettings(), 87
    )
