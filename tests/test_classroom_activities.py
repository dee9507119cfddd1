"""The activities against their references: transformers' logits and softmax, llmlab.generate
alone with the same seed, and tiktoken's own encodings."""

from __future__ import annotations

import gzip
import math
import threading

import pytest
import torch
from numerics import float32_softmax_tolerance

from llmlab.classroom import activities, charts
from llmlab.generation.decoding import generate
from llmlab.generation.next_token import next_token_distribution

PROMPT = "The capital of France is"


@pytest.fixture(params=["smollm2", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def _prompt_ids(loaded, prompt: str) -> list[int]:
    return loaded.tokenizer(prompt)["input_ids"]


def _last_log_probs(loaded, ids: list[int]) -> torch.Tensor:
    """transformers' own answer: log-softmax of the logits at the last position, taken in float64
    (the lab's float32 softmax is checked against the exact one, within its rounding)."""
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits[0, -1].float()
    return torch.log_softmax(logits.double(), dim=-1)


# --- Guess the next token ------------------------------------------------------------------------


def test_guess_reference_is_the_models_top_n(loaded):
    reference = activities.guess_reference(loaded, PROMPT, top_n=10)
    expected = _last_log_probs(loaded, _prompt_ids(loaded, PROMPT)).exp()
    top_probs, top_ids = expected.topk(10)
    assert reference.token_ids == top_ids.tolist()
    # float32 against float64: the normaliser's rounding (numerics.float32_softmax_tolerance).
    tolerance = float32_softmax_tolerance(expected)
    assert reference.probabilities == pytest.approx(top_probs.tolist(), rel=tolerance)
    assert reference.tokens == [loaded.tokenizer.decode([i]) for i in top_ids.tolist()]
    assert reference.top_token == reference.tokens[0]
    if loaded.name == "smollm2-135m-instruct":
        assert reference.top_token == " Paris"
    distribution = next_token_distribution(loaded, PROMPT)
    assert reference.probabilities[0] == pytest.approx(float(distribution.probabilities.max()))
    with pytest.raises(ValueError, match="top_n=0 is out of range"):
        activities.guess_reference(loaded, PROMPT, top_n=0)
    with pytest.raises(ValueError, match="prompt is empty"):
        activities.guess_reference(loaded, "")


_prompt_reference: dict[str, torch.Tensor] = {}


def _after_prompt(loaded) -> torch.Tensor:
    """transformers' log-probabilities after PROMPT (one forward pass per model per run)."""
    if loaded.name not in _prompt_reference:
        _prompt_reference[loaded.name] = _last_log_probs(loaded, _prompt_ids(loaded, PROMPT))
    return _prompt_reference[loaded.name]


@pytest.mark.parametrize(
    ("guess", "reading"),
    [("Paris", " Paris"), (" Paris", " Paris"), ("Paris  \n", " Paris"), ("Lyon", " Lyon")],
)
def test_a_one_token_guess_scores_its_log_probability(smollm2, guess, reading):
    score = activities.score_guess(smollm2, PROMPT, guess)
    ids = smollm2.tokenizer(reading, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 and score.reading == reading and score.token_ids == ids
    expected = _after_prompt(smollm2)
    # float32 against float64: a probability off by a factor 1 + e is a log off by e.
    tolerance = float32_softmax_tolerance(expected.exp())
    assert score.log_probability == pytest.approx(float(expected[ids[0]]), abs=tolerance)
    assert score.probability == pytest.approx(math.exp(score.log_probability))
    first = float(expected[ids[0]].exp())
    assert score.first_token_probability == pytest.approx(first, rel=tolerance)
    assert score.first_token_rank == int((expected > expected[ids[0]]).sum()) + 1
    assert score.matches_top == (reading == " Paris")


@pytest.mark.parametrize(
    ("model", "guess"),
    [("smollm2", "Parisienne"), ("smollm2", "東京 🥐 <b>x</b>"), ("gemma", "the city of light")],
)
def test_a_longer_guess_scores_every_token_given_the_ones_before(request, model, guess):
    loaded = request.getfixturevalue(model)
    score = activities.score_guess(loaded, PROMPT, guess)
    prompt_ids = _prompt_ids(loaded, PROMPT)
    # The reference: transformers' logits over the prompt and the whole reading (teacher
    # forcing); token k of the reading is predicted at position len(prompt) - 1 + k.
    readings, tolerances = {}, {}
    for reading in (guess, " " + guess):
        ids = loaded.tokenizer(reading, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = loaded.model(torch.tensor([prompt_ids + ids])).logits[0].float()
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        start = len(prompt_ids) - 1
        readings[reading] = sum(float(log_probs[start + k, t]) for k, t in enumerate(ids))
        # Each token's float32 log-probability is off by its softmax's rounding; they add up.
        rows = [log_probs[start + k].exp() for k in range(len(ids))]
        tolerances[reading] = sum(float32_softmax_tolerance(row) for row in rows)
    best = max(readings, key=readings.get)
    assert score.reading == best
    assert score.log_probability == pytest.approx(readings[best], abs=tolerances[best])
    assert score.log_probability < 0 and not score.matches_top
    assert len(score.token_ids) == len(score.tokens) > 1


def test_empty_guesses_are_refused(smollm2):
    for guess in ("", "  ", None):
        with pytest.raises(ValueError, match="guess is empty"):
            activities.score_guess(smollm2, PROMPT, guess)


def test_class_guess_table_counts_the_class_beside_the_model(smollm2):
    reference = activities.guess_reference(smollm2, PROMPT, top_n=5)
    guesses = ["Paris", " Paris", "Paris", "Lyon", "Parisienne", "banana"]
    scores = {g: activities.score_guess(smollm2, PROMPT, g) for g in set(guesses)}
    answers = [{"detail": scores[g].as_detail()} for g in guesses]
    table = activities.class_guess_table(reference, answers)
    assert list(table.columns) == ["guess", "model_probability", "model_rank", "students",
                                   "class_share", "top"]  # fmt: skip
    top5 = table.iloc[:5]
    assert top5["guess"].tolist() == reference.tokens
    assert top5["model_probability"].tolist() == reference.probabilities
    assert top5["model_rank"].tolist() == [1, 2, 3, 4, 5] and table["top"].tolist()[0]
    assert table["students"].sum() == len(guesses)
    assert table["class_share"].sum() == pytest.approx(1.0)
    assert table.set_index("guess").loc[" Paris", "students"] == 3
    # A guess outside the top 5 gets its own row with the model's probability for it.
    banana = table.set_index("guess").loc[" banana"]
    assert banana["students"] == 1 and pd_isna(banana["model_rank"])
    assert banana["model_probability"] == pytest.approx(scores["banana"].probability)
    assert activities.matched_count(answers) == 3
    figure = charts.guess_chart(table)
    assert list(figure.data[0].x) == table["class_share"].tolist()
    assert list(figure.data[1].x) == table["model_probability"].tolist()
    assert figure.data[0].y[0] == "·Paris ★"


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# --- Sample together -----------------------------------------------------------------------------


def test_sample_settings_are_checked():
    assert activities.sample_settings("top_p", temperature=0.7, top_p=0.8, max_new_tokens=5) == {
        "strategy": "top_p", "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.8,
    }  # fmt: skip
    with pytest.raises(ValueError, match="top_p=1.5 is out of range"):
        activities.sample_settings("top_p", top_p=1.5)
    with pytest.raises(ValueError, match="temperature=0 is out of range"):
        activities.sample_settings("sample", temperature=0)
    with pytest.raises(ValueError, match="strategy='beam' is not allowed here"):
        activities.sample_settings("beam")


def test_each_students_run_equals_generate_alone_even_when_run_together(smollm2):
    settings = activities.sample_settings("top_p", temperature=1.0, top_p=0.95, max_new_tokens=8)
    seeds = list(range(6))
    together: dict[int, object] = {}
    barrier = threading.Barrier(len(seeds))

    def student(seed: int) -> None:
        barrier.wait()  # every student presses "Run" at once: the engine batches them
        together[seed] = activities.run_sample(smollm2, PROMPT, settings, seed)

    threads = [threading.Thread(target=student, args=(s,)) for s in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in seeds:
        alone = generate(smollm2, PROMPT, strategy="top_p", temperature=1.0, top_p=0.95,
                         max_new_tokens=8, seed=seed)  # fmt: skip
        assert together[seed].new_ids == alone.new_ids and together[seed].text == alone.text
    assert len({together[s].text for s in seeds}) > 1  # different seeds, different texts
    tree = activities.first_token_tree(together.values())
    assert tree["runs"].sum() == len(seeds)
    firsts = {r.tokens[0] for r in together.values()}
    assert set(tree["first_token"]) == firsts
    # The stored form (the answer's detail) gives the same tree.
    stored = [{"detail": activities.sample_answer(r, s)[1]} for s, r in together.items()]
    assert activities.first_token_tree(stored).equals(tree)
    figure = charts.first_token_chart(tree)
    roots = [v for v, p in zip(figure.data[0].values, figure.data[0].parents, strict=True) if not p]
    assert sum(roots) == len(seeds)


def test_greedy_gives_every_student_the_same_text(smollm2):
    settings = activities.sample_settings("greedy", max_new_tokens=8)
    runs = [activities.run_sample(smollm2, PROMPT, settings, seed) for seed in (0, 1, 7, 99)]
    assert len({run.text for run in runs}) == 1
    assert runs[0].new_ids == generate(smollm2, PROMPT, max_new_tokens=8).new_ids
    tree = activities.first_token_tree(runs)
    assert len(tree) == 1 and tree["runs"].tolist() == [4]


def test_sample_answer_fits_the_store(smollm2):
    run = activities.run_sample(smollm2, PROMPT, activities.sample_settings(max_new_tokens=4), 3)
    answer, detail = activities.sample_answer(run, 3)
    assert answer == run.text[:200] and detail["seed"] == 3 and detail["tokens"] == run.tokens
    assert detail["new_ids"] == run.new_ids and detail["text"] == run.text


# --- How many tokens? ----------------------------------------------------------------------------


def _tiktoken_reference(name: str, tmp_path):
    """tiktoken's own constructor for the encoding, reading the lab's offline rank files (their
    sha256 is checked against tiktoken's expected hash)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public

    from llmlab import assets

    files = {"r50k_base": ("gpt2-tiktoken", "gpt2.tiktoken"),
             "o200k_base": ("openai-tiktoken", "o200k_base.tiktoken.gz")}  # fmt: skip
    pack, file = files[name]
    path = assets.pack_path(pack, file)
    if path.suffix == ".gz":
        plain = tmp_path / path.stem
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        path = plain

    def local(_url: str, expected_hash: str | None = None):
        return load_tiktoken_bpe(str(path), expected_hash=expected_hash)

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = local
    try:
        return tiktoken.Encoding(**getattr(openai_public, name)())
    finally:
        openai_public.load_tiktoken_bpe = original


SENTENCES = [
    "The cat sat on the mat.",
    "Tokenization is surprisingly tricky!",
    "안녕하세요, 세계",
    "👩‍💻 writes code: print('hi')",
    "   spaces   and\ttabs\n",
    "<script>alert(1)</script>",
]


@pytest.mark.parametrize("sentence", SENTENCES)
def test_token_count_reveal_matches_tiktoken(sentence, tmp_path):
    reveal = activities.token_count_reveal(sentence)
    assert [r.tokenizer for r in reveal] == ["gpt2", "o200k_base"]
    gpt2 = _tiktoken_reference("r50k_base", tmp_path)  # GPT-2's ranks are r50k_base's
    o200k = _tiktoken_reference("o200k_base", tmp_path)
    assert reveal[0].count == len(gpt2.encode_ordinary(sentence))
    assert reveal[1].count == len(o200k.encode_ordinary(sentence))
    assert all(len(r.pieces) == r.count for r in reveal)


def test_token_count_guesses_and_table():
    reveal = activities.token_count_reveal("The cat sat on the mat.")
    real = {r.tokenizer: r.count for r in reveal}
    assert real == {"gpt2": 7, "o200k_base": 7}
    answer, detail = activities.token_guess_detail({"gpt2": 7, "o200k_base": 5})
    assert answer == "gpt2: 7, o200k_base: 5"
    assert activities.score_token_guess(reveal, detail) == -2.0
    table = activities.class_token_table(reveal, [{"detail": detail}, {"detail": real}])
    assert table["exact"].tolist() == [2, 1] and table["median_guess"].tolist() == [7, 6]
    with pytest.raises(ValueError, match="guess for gpt2=-1 is out of range"):
        activities.token_guess_detail({"gpt2": -1})
    with pytest.raises(ValueError, match="sentence is empty"):
        activities.token_count_reveal("  ")
    figure = charts.token_guess_chart({"gpt2": [7, 7], "o200k_base": [5, 7]}, real)
    assert [t.name for t in figure.data] == ["gpt2", "o200k_base"]
    assert [s.x0 for s in figure.layout.shapes] == [7, 7]
