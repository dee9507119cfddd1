"""The model's side of the class activities: what the real model says, and how a guess scores.

Three activities (``ACTIVITIES``):

- **guess** — everyone guesses the token after a prompt. `guess_reference` is the model's top-N,
  `score_guess` the model's log-probability for one student's guess, `class_guess_table` the
  class's guesses beside the model's probabilities.
- **sample** — everyone runs the same prompt and settings with their own seed (`run_sample`
  goes through `llmlab.generate`, so the runs of a whole class batch in the model's engine);
  `first_token_tree` counts which first tokens they drew.
- **tokens** — everyone guesses how many tokens a sentence costs; `token_count_reveal` gives
  the real splits of each tokenizer.

Nothing here touches the database or Streamlit: the page stores what these functions return in
an answer's ``detail`` (plain JSON data) and the projected view turns it back into tables.

>>> sorted(ACTIVITIES)
['guess', 'sample', 'tokens']
>>> [(r.tokenizer, r.count) for r in token_count_reveal("Hello world")]
[('gpt2', 2), ('o200k_base', 2)]
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

ACTIVITIES: dict[str, str] = {
    "guess": "Guess the next token",
    "sample": "Sample together",
    "tokens": "How many tokens?",
}
SAMPLE_STRATEGIES = ("greedy", "sample", "top_k", "top_p", "min_p")
DEFAULT_TOKENIZERS = ("gpt2", "o200k_base")


def _detail(item: Any) -> dict[str, Any] | None:
    """An answer's detail, whether given an `Answer`, a dict with "detail", or the detail."""
    if isinstance(item, dict):
        inner = item.get("detail", item)
        return inner if isinstance(inner, dict) else None
    return getattr(item, "detail", None)


# --- Guess the next token ----------------------------------------------------------------------


@dataclass(frozen=True)
class GuessReference:
    """The model's top-N next tokens for a prompt, most likely first."""

    model_name: str
    prompt: str
    token_ids: list[int]
    tokens: list[str]  # each token's text, e.g. " Paris" (leading space included)
    probabilities: list[float]

    @property
    def top_token(self) -> str:
        return self.tokens[0]


@dataclass(frozen=True)
class GuessScore:
    """What the model thinks of one guess.

    ``reading`` is the text that was scored: the guess without trailing whitespace, as typed or
    with one leading space (a word in mid-sentence starts with a space in these tokenizers),
    whichever the model finds more likely. ``log_probability`` is the natural log of the
    probability that the model continues the prompt with exactly the reading's tokens (the sum
    over its tokens, each given the prompt and the tokens before it); the leaderboard adds
    these up, so 0 is the best a guess can score.
    """

    guess: str
    reading: str
    token_ids: list[int]
    tokens: list[str]
    log_probability: float
    probability: float  # exp(log_probability)
    first_token_probability: float
    first_token_rank: int  # 1 = the model's top token
    matches_top: bool  # the reading is exactly the model's top token

    def as_detail(self) -> dict[str, Any]:
        """Plain JSON data for the store's answer ``detail``."""
        return asdict(self)


def guess_reference(loaded: Any, prompt: str, top_n: int = 10) -> GuessReference:
    """The model's ``top_n`` most likely next tokens (from `llmlab.next_token_distribution`)."""
    from llmlab.generation.next_token import next_token_distribution, token_text

    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= 100:
        raise ValueError(f"top_n={top_n!r} is out of range: allowed whole numbers 1..100")
    distribution = next_token_distribution(loaded, prompt)
    probabilities, ids = distribution.probabilities.topk(top_n)
    ids_list = [int(i) for i in ids]
    return GuessReference(
        loaded.name, prompt, ids_list, [token_text(loaded.tokenizer, i) for i in ids_list],
        [float(p) for p in probabilities],
    )  # fmt: skip


def _continuation_log_probs(
    loaded: Any, prompt_ids: list[int], first: Any, ids: list[int]
) -> list[float]:
    """log p(ids[k] | prompt, ids[:k]) for each k.

    ``first`` is the log-softmax after the prompt (already computed for the top-N), so a
    one-token guess costs no forward pass and a longer one costs one, over the prompt and all
    but its last token.
    """
    scores = [float(first[ids[0]])]
    if len(ids) == 1:
        return scores
    import torch

    from llmlab.compute import exclusive

    sequence = torch.tensor([prompt_ids + ids[:-1]], device=loaded.device)
    with exclusive(), torch.no_grad():
        logits = loaded.model(sequence, use_cache=False).logits[0].float().cpu()
    # The logits at position t predict token t + 1: ids[k] is predicted at len(prompt) - 1 + k.
    log_probs = torch.log_softmax(logits[len(prompt_ids) :], dim=-1)
    return scores + [float(log_probs[k - 1, token]) for k, token in enumerate(ids) if k > 0]


def score_guess(loaded: Any, prompt: str, guess: str) -> GuessScore:
    """Score one student's guess for the text after ``prompt`` (see `GuessScore`)."""
    from llmlab.generation.next_token import _encode, next_token_distribution, token_text

    if not isinstance(guess, str) or not guess.strip():
        raise ValueError("guess is empty: type the word you expect next")
    distribution = next_token_distribution(loaded, prompt)
    prompt_ids = distribution.prompt_ids or _encode(loaded, prompt, None)[0]
    probabilities = distribution.probabilities
    first_log_probs = distribution.logits.float().log_softmax(dim=-1)
    top_id = int(probabilities.argmax())
    text = guess.rstrip()
    readings = [text] if text[0].isspace() else [text, " " + text]
    best: GuessScore | None = None
    for reading in readings:
        ids = loaded.tokenizer(reading, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        # Long guesses are cut to the model's context (they score very low anyway).
        room = max(1, loaded.facts.context_length - len(prompt_ids))
        ids = ids[:room]
        log_probability = sum(_continuation_log_probs(loaded, prompt_ids, first_log_probs, ids))
        first = float(probabilities[ids[0]])
        found = GuessScore(
            guess, reading, ids, [token_text(loaded.tokenizer, i) for i in ids], log_probability,
            math.exp(log_probability), first, int((probabilities > first).sum()) + 1,
            ids == [top_id],
        )  # fmt: skip
        if best is None or found.log_probability > best.log_probability:
            best = found
    if best is None:
        raise ValueError(f"guess={guess!r} gave no tokens: type a word")
    return best


def class_guess_table(reference: GuessReference, answers: Iterable[Any]) -> pd.DataFrame:
    """The class's guesses beside the model's probabilities, one row per distinct reading.

    ``answers`` are the round's answers (`Answer`s or dicts) whose ``detail`` is
    `GuessScore.as_detail()`. Guesses that read as the same tokens ("Paris" and " Paris") share
    a row. The model's top-N rows come first (most likely first), then the class's other
    guesses (most chosen first). Columns: ``guess`` (the token text), ``model_probability``
    (the model's probability for exactly that text), ``model_rank`` (1..N among the model's
    top-N, else missing), ``students``, ``class_share`` (of the scored answers) and ``top``.

    >>> ref = GuessReference("m", "The sky is", [1, 2], [" blue", " clear"], [0.6, 0.1])
    >>> rows = [{"detail": {"token_ids": [1], "reading": " blue", "probability": 0.6}}] * 3
    >>> rows += [{"detail": {"token_ids": [9, 4], "reading": " green", "probability": 0.01}}]
    >>> class_guess_table(ref, rows)[["guess", "students", "class_share", "top"]]
        guess  students  class_share    top
    0    blue         3         0.75   True
    1   clear         0         0.00  False
    2   green         1         0.25  False
    """
    counts: Counter[tuple[int, ...]] = Counter()
    readings: dict[tuple[int, ...], tuple[str, float]] = {}
    for item in answers:
        detail = _detail(item)
        if not detail or "token_ids" not in detail:
            continue
        key = tuple(int(i) for i in detail["token_ids"])
        counts[key] += 1
        readings.setdefault(key, (str(detail.get("reading", "")), float(detail["probability"])))
    total = sum(counts.values())
    rows = []
    for rank, (token_id, token, p) in enumerate(
        zip(reference.token_ids, reference.tokens, reference.probabilities, strict=True),
        start=1,
    ):
        rows.append((token, p, rank, counts.pop((token_id,), 0), rank == 1))
    for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], readings[kv[0]][0])):
        reading, p = readings[key]
        rows.append((reading, p, None, count, False))
    frame = pd.DataFrame(rows, columns=["guess", "model_probability", "model_rank", "students",
                                        "top"])  # fmt: skip
    frame["model_rank"] = frame["model_rank"].astype("Int64")
    frame.insert(4, "class_share", frame["students"] / total if total else 0.0)
    return frame


def matched_count(answers: Iterable[Any]) -> int:
    """How many answers are exactly the model's top token."""
    return sum(1 for item in answers if (_detail(item) or {}).get("matches_top"))


# --- Sample together ---------------------------------------------------------------------------


def sample_settings(
    strategy: str = "top_p",
    temperature: float = 0.8,
    top_p: float = 0.9,
    top_k: int = 50,
    min_p: float = 0.1,
    max_new_tokens: int = 24,
) -> dict[str, Any]:
    """The round's shared settings, checked (`llmlab.generate`'s own rules); no seed in them.

    >>> sample_settings("greedy", max_new_tokens=8)
    {'strategy': 'greedy', 'max_new_tokens': 8}
    >>> sample_settings("beam")
    Traceback (most recent call last):
    ...
    ValueError: strategy='beam' is not allowed here; allowed: greedy, sample, top_k, top_p, min_p
    """
    from llmlab.generation.settings import validate_settings

    if strategy not in SAMPLE_STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r} is not allowed here; allowed: {', '.join(SAMPLE_STRATEGIES)}"
        )
    checked = validate_settings(strategy, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, min_p=min_p)  # fmt: skip
    keep = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p")
    return {"strategy": strategy} | {k: checked[k] for k in keep if k in checked}


def run_sample(loaded: Any, prompt: str, settings: dict[str, Any], seed: int) -> Any:
    """One student's run: the round's settings with the student's seed, via `llmlab.generate`.

    Called from every student's session at once, the runs go to the model's engine together;
    each result is the same as that request alone.
    """
    from llmlab.generation.decoding import generate

    settings = sample_settings(**settings)
    strategy = settings.pop("strategy")
    return generate(loaded, prompt, strategy=strategy, seed=seed, **settings)


def sample_answer(result: Any, seed: int) -> tuple[str, dict[str, Any]]:
    """What a student's run stores: the answer text (cut to the store's 200 characters) and a
    detail with the whole text, the seed and the tokens drawn."""
    detail = {"seed": int(seed), "text": result.text, "tokens": list(result.tokens),
              "new_ids": [int(i) for i in result.new_ids]}  # fmt: skip
    return (result.text or "(no text)")[:200], detail


def first_token_tree(items: Iterable[Any]) -> pd.DataFrame:
    """How many runs drew each first token, and each second token after it.

    ``items`` are `GenerationResult`s or answers whose detail is from `sample_answer`. Rows
    (``first_token``, ``second_token``, ``runs``), the most common first; a run of one token
    has an empty second token.

    >>> runs = [{"detail": {"tokens": t}} for t in ([" a", " b"], [" a", " c"], [" a", " b"], [" d"])]
    >>> first_token_tree(runs)
      first_token second_token  runs
    0           a            b     2
    1           a            c     1
    2           d                  1
    """
    counts: Counter[tuple[str, str]] = Counter()
    firsts: Counter[str] = Counter()
    for item in items:
        tokens = getattr(item, "tokens", None)
        if tokens is None:
            tokens = (_detail(item) or {}).get("tokens")
        if not tokens:
            continue
        pair = (tokens[0], tokens[1] if len(tokens) > 1 else "")
        counts[pair] += 1
        firsts[pair[0]] += 1
    rows = sorted(counts.items(), key=lambda kv: (-firsts[kv[0][0]], kv[0][0], -kv[1], kv[0][1]))
    return pd.DataFrame(
        [(first, second, n) for (first, second), n in rows],
        columns=["first_token", "second_token", "runs"],
    )


# --- How many tokens? --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCount:
    tokenizer: str
    title: str
    count: int
    pieces: list[str]  # each token's readable label (spaces as "·", byte fragments as hex)


def token_count_reveal(
    sentence: str, tokenizers: Sequence[str] = DEFAULT_TOKENIZERS
) -> list[TokenCount]:
    """The real split of ``sentence`` by each tokenizer (`llmlab.tokenization`)."""
    from llmlab import tokenization

    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("sentence is empty: type a sentence to count")
    reveal = []
    for name in tokenizers:
        tokenizer = tokenization.load(name)
        pieces = tokenizer.pieces(sentence)
        reveal.append(TokenCount(name, tokenizer.title, len(pieces), [p.label() for p in pieces]))
    return reveal


def token_guess_detail(guesses: dict[str, int]) -> tuple[str, dict[str, int]]:
    """A student's counts as the answer text and detail.

    >>> token_guess_detail({"gpt2": 7, "o200k_base": 6})
    ('gpt2: 7, o200k_base: 6', {'gpt2': 7, 'o200k_base': 6})
    """
    for name, value in guesses.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
            raise ValueError(f"guess for {name}={value!r} is out of range: allowed 0..100000")
    return ", ".join(f"{k}: {v}" for k, v in guesses.items()), dict(guesses)


def score_token_guess(reveal: Sequence[TokenCount], guesses: dict[str, int]) -> float:
    """Minus the total distance from the real counts: 0 is a perfect guess.

    >>> score_token_guess([TokenCount("gpt2", "GPT-2", 5, [])], {"gpt2": 7})
    -2.0
    """
    return -float(sum(abs(guesses.get(r.tokenizer, 0) - r.count) for r in reveal))


def class_token_table(reveal: Sequence[TokenCount], answers: Iterable[Any]) -> pd.DataFrame:
    """Per tokenizer: the real count, the class's median guess, how many guessed it exactly.

    >>> reveal = [TokenCount("gpt2", "GPT-2", 5, [])]
    >>> class_token_table(reveal, [{"detail": {"gpt2": 5}}, {"detail": {"gpt2": 8}}])
      tokenizer  title  tokens  median_guess  exact  answers
    0      gpt2  GPT-2       5           6.5      1        2
    """
    details = [d for d in (_detail(item) for item in answers) if d]
    rows = []
    for r in reveal:
        values = [int(d[r.tokenizer]) for d in details if isinstance(d.get(r.tokenizer), int)]
        rows.append((r.tokenizer, r.title, r.count,
                     statistics.median(values) if values else math.nan,
                     sum(v == r.count for v in values), len(values)))  # fmt: skip
    return pd.DataFrame(
        rows, columns=["tokenizer", "title", "tokens", "median_guess", "exact", "answers"]
    )
