"""Decoding: how a model writes text one token at a time, with every step returned as data.

Our own loop over the model's forward pass (with a KV cache, so each step feeds only the newest
token), giving the same tokens as transformers' `model.generate` for the same settings:

    >>> result = generate("smollm2-135m-instruct", "Once upon a time", max_new_tokens=5)  # doctest: +SKIP
    >>> result.text, result.finish_reason                                   # doctest: +SKIP
    (' there was a little', 'length')
    >>> result.steps[0].candidates[0]                                        # doctest: +SKIP
    Candidate(token_id=..., token=' there', logit=..., prob_before=0.62, prob_after=0.62, kept=True)

Strategies: ``greedy`` (always the most likely token), ``sample`` (draw from the distribution,
reshaped by the temperature), ``top_k``, ``top_p`` and ``min_p`` (draw after cutting the unlikely
tail) and ``beam`` (keep the ``num_beams`` best partial texts; see `llmlab.generation.beam`). Repetition
penalty and no-repeat-n-gram apply to all of them. Sampling uses its own seeded
`torch.Generator`, so a seed gives the same text every run.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from llmlab.generation import filters as filters_module
from llmlab.generation.repetition import NoRepeatNGram
from llmlab.tokenization.pieces import require_utf8

if TYPE_CHECKING:
    from llmlab.models import LoadedModel

STRATEGIES: dict[str, str] = {
    "greedy": "Always take the most likely token. Deterministic; tends to loop.",
    "sample": "Draw the next token at random from the whole distribution (shaped by temperature).",
    "top_k": "Draw only among the k most likely tokens.",
    "top_p": "Draw among the smallest set of top tokens whose probabilities add up to p.",
    "min_p": "Draw among tokens at least min_p times as likely as the most likely one.",
    "beam": "Keep the num_beams most likely partial texts and extend them all; deterministic.",
}
SAMPLING = ("sample", "top_k", "top_p", "min_p")
MAX_NEW_TOKENS = 512  # the cap: enough to see loops and drift, short enough to stay interactive
MAX_BEAMS = 8
FINISH_REASONS = ("eos", "length", "context", "stopped")


@dataclass
class Candidate:
    """One possible next token at a step, before and after the filters."""

    token_id: int
    token: str
    logit: float  # the model's raw score
    prob_before: float  # softmax of the raw logits
    prob_after: float  # after repetition penalty, temperature and the cut-offs (0 if removed)
    kept: bool  # False when a filter removed it (or, for beams, the branch was pruned)


@dataclass
class BeamState:
    """One branch of a beam search after a step."""

    tokens: list[int]  # the branch's new tokens (prompt excluded)
    text: str
    score: float  # cumulative log-probability of the new tokens
    kept: bool  # True: continues into the next step; False: pruned (or finished)
    parent: int | None  # index of the live beam it extends in the previous step (None: prompt)
    finished: bool = False  # ended with the end-of-sequence token (a finished hypothesis)


@dataclass
class StepRecord:
    """What happened when one token was chosen."""

    step: int
    candidates: list[Candidate]  # the top candidates by raw logit (+ the chosen one)
    chosen_id: int
    chosen_token: str
    chosen_prob: float  # its probability in the distribution it was drawn from
    chosen_prob_before: float  # its probability before any filter
    text_delta: str  # new text this step adds (whole characters only; "" for beam search)
    beams: list[BeamState] | None = None  # beam search: live beams first, then pruned ones

    @classmethod
    def for_choice(
        cls,
        step: int,
        candidates: list[Candidate],
        chosen: int,
        text_delta: str,
        beams: list[BeamState] | None = None,
    ) -> StepRecord:
        """The record of a step whose chosen token is among `candidates`."""
        mine = next(c for c in candidates if c.token_id == chosen)
        return cls(
            step=step,
            candidates=candidates,
            chosen_id=chosen,
            chosen_token=mine.token,
            chosen_prob=mine.prob_after,
            chosen_prob_before=mine.prob_before,
            text_delta=text_delta,
            beams=beams,
        )


@dataclass
class GenerationResult:
    """A whole generation: the new text, the new ids and a record per step."""

    prompt: str
    prompt_ids: list[int]
    text: str  # the new text only (the end-of-sequence token is not shown)
    new_ids: list[int]  # the new token ids (an end-of-sequence token included, as generate does)
    steps: list[StepRecord]
    strategy: str
    settings: dict[str, Any]
    finish_reason: str  # "eos" | "length" | "context" | "stopped"
    notices: list[str] = field(default_factory=list)
    token_probs: list[float] = field(default_factory=list)  # per new token, when it was chosen
    tokens: list[str] = field(default_factory=list)  # each new token as text
    seconds: float = 0.0


# --- validation ------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: object, low: int, high: int, note: str = "") -> int:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise ValueError(
            f"{name}={value!r} is out of range: allowed whole numbers {low}..{high}{note}"
        )
    return int(value)  # type: ignore[arg-type]


def _check_float(
    name: str, value: object, low: float, high: float, low_open: bool = False
) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(number) and (number > low if low_open else number >= low)
        ok = ok and number <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is out of range: allowed {bracket}{low:g}, {high:g}]")
    return float(value)  # type: ignore[arg-type]


def validate_settings(
    strategy: str = "greedy",
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    min_p: float = 0.1,
    num_beams: int = 3,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    seed: int = 0,
    top_candidates: int = 10,
) -> dict[str, Any]:
    """Check every setting; return the ones that matter for this strategy.

    >>> validate_settings("top_k", top_k=5)["top_k"]
    5
    >>> validate_settings("top_p", top_p=1.5)
    Traceback (most recent call last):
    ...
    ValueError: top_p=1.5 is out of range: allowed (0, 1]
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; allowed: {', '.join(STRATEGIES)}")
    if _is_int(max_new_tokens) and max_new_tokens > MAX_NEW_TOKENS:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} is above the cap of {MAX_NEW_TOKENS} tokens this "
            "lab allows (longer runs take minutes on a CPU); allowed: 1..512"
        )
    settings: dict[str, Any] = {
        "max_new_tokens": _check_int("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS),
        "repetition_penalty": _check_float(
            "repetition_penalty", repetition_penalty, 0.0, 10.0, low_open=True
        ),
        "no_repeat_ngram_size": _check_int(
            "no_repeat_ngram_size", no_repeat_ngram_size, 0, 20, " (0 = off)"
        ),
        "top_candidates": _check_int("top_candidates", top_candidates, 1, 100),
    }
    if strategy in SAMPLING:
        settings["temperature"] = _check_float("temperature", temperature, 0.0, 10.0, True)
        settings["seed"] = _check_int("seed", seed, 0, 2**63 - 1)
    if strategy == "top_k":
        settings["top_k"] = _check_int("top_k", top_k, 1, 1_000_000)
    if strategy == "top_p":
        settings["top_p"] = _check_float("top_p", top_p, 0.0, 1.0, low_open=True)
    if strategy == "min_p":
        settings["min_p"] = _check_float("min_p", min_p, 0.0, 1.0)
    if strategy == "beam":
        settings["num_beams"] = _check_int("num_beams", num_beams, 2, MAX_BEAMS)
        settings["length_penalty"] = _check_float("length_penalty", length_penalty, -5.0, 5.0)
        if early_stopping not in (True, False, "never") or not isinstance(
            early_stopping, (bool, str)
        ):
            raise ValueError(
                f"early_stopping={early_stopping!r} is not allowed; allowed: True, False, 'never'"
            )
        settings["early_stopping"] = early_stopping
    return settings


def build_processors(settings: dict[str, Any], strategy: str) -> list[Callable[..., torch.Tensor]]:
    """The logits filters for these settings, in transformers' order.

    Repetition penalty, then no-repeat-n-gram (both "processors"), then for sampling the
    "warpers": temperature, top-k, top-p, min-p.

    >>> [p.name for p in build_processors({"repetition_penalty": 1.2, "temperature": 0.7,
    ...     "no_repeat_ngram_size": 3, "top_p": 0.9}, "top_p")]
    ['repetition_penalty', 'no_repeat_ngram_size', 'temperature', 'top_p']
    """
    chain: list[Callable[..., torch.Tensor]] = list(
        filters_module.build_filters(
            temperature=None, repetition_penalty=settings.get("repetition_penalty", 1.0)
        )
    )
    if settings.get("no_repeat_ngram_size", 0) > 0:
        chain.append(NoRepeatNGram(settings["no_repeat_ngram_size"]))
    if strategy in SAMPLING:
        chain += filters_module.build_filters(
            temperature=settings["temperature"],
            top_k=settings.get("top_k"),
            top_p=settings.get("top_p"),
            min_p=settings.get("min_p"),
        )
    return chain


def run_processors(
    chain: list[Callable[..., torch.Tensor]], scores: torch.Tensor, input_ids: torch.Tensor
) -> torch.Tensor:
    for processor in chain:
        scores = processor(scores, input_ids)
    return scores


# --- model plumbing --------------------------------------------------------------------------


def resolve_model(model: str | LoadedModel) -> LoadedModel:
    if isinstance(model, str):
        from llmlab import models

        return models.load(model)
    return model


def eos_ids(loaded: LoadedModel) -> list[int]:
    """The end-of-sequence ids generate stops at (the generation config's, else the tokenizer's)."""
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def forward(model: Any, input_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """One forward pass; returns the last position's logits as float32 and the updated cache.

    ``logits_to_keep=1`` skips the vocabulary projection for every prompt position but the last
    (Gemma's vocabulary has 262,144 entries: that projection is most of a long prefill's cost).
    Logits are cast to float32 so that a bfloat16 model's softmax is not rounded to 3 digits.
    """
    output = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return output.logits[:, -1, :].to(torch.float32), output.past_key_values


class TokenText:
    """Token ids -> readable strings, remembered (a run asks for the same ids again and again)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.known: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.known.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False)
            self.known[token_id] = text
        return text

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


class IncrementalDecoder:
    """Turn a growing list of ids into text deltas that hold whole characters only.

    An emoji can span several byte-level tokens; decoding a lone one gives "\ufffd". So each
    step decodes a short window twice (up to the last emitted token, and with the new ones) and
    emits the difference only once it no longer ends in a replacement character. Decoding the
    same window start twice also keeps tokenizers that strip a leading space consistent.

        >>> from types import SimpleNamespace
        >>> fake = SimpleNamespace(decode=lambda ids, **kw: "".join(map(str, ids)))
        >>> decoder = IncrementalDecoder(fake)
        >>> decoder.push(1), decoder.push(2)
        ('1', '2')
    """

    def __init__(self, tokenizer: Any, skip_ids: tuple[int, ...] = ()):
        self.tokenizer = tokenizer
        self.skip_ids = set(skip_ids)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        if token_id in self.skip_ids:
            return ""
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=False)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=False)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before) :]
        return ""


def prepare_prompt(
    loaded: LoadedModel, prompt: str | list[int], max_new_tokens: int
) -> tuple[str, list[int], int, list[str]]:
    """Tokenize the prompt and fit the request into the context window.

    Returns (prompt text, prompt ids, new-token budget, notices). A prompt that leaves no room is
    refused; a budget that would run past the context is cut, with a notice saying so.
    """
    tokenizer = loaded.tokenizer
    if isinstance(prompt, str):
        require_utf8(prompt)  # a lone surrogate is not text a tokenizer can read
        # The tokenizer's defaults add what the model expects at the start (Gemma's <bos>).
        ids = list(tokenizer(prompt)["input_ids"])
        text = prompt
    elif isinstance(prompt, (list, tuple)) and all(_is_int(i) for i in prompt):
        ids = [int(i) for i in prompt]
        text = tokenizer.decode(ids, skip_special_tokens=False)
    else:
        raise ValueError(
            f"prompt must be a text or a list of token ids, got {type(prompt).__name__}"
        )
    if not ids:
        raise ValueError("prompt='' gives no tokens for this model; type a few words to start")
    vocab = loaded.model.config.vocab_size
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"prompt has token ids outside 0..{vocab - 1}: {bad[:5]}")
    context = loaded.facts.context_length or 0
    notices: list[str] = []
    if context and len(ids) >= context:
        raise ValueError(
            f"the prompt is {len(ids):,} tokens but {loaded.facts.title} reads at most "
            f"{context:,}; shorten it"
        )
    if context and len(ids) + max_new_tokens > context:
        room = context - len(ids)
        notices.append(
            f"Only {room} new tokens fit: the prompt ({len(ids):,} tokens) plus "
            f"{max_new_tokens} new ones would exceed the {context:,}-token context window."
        )
        max_new_tokens = room
    return text, ids, max_new_tokens, notices


# --- the loop --------------------------------------------------------------------------------


class GenerationStream:
    """An iterator of `StepRecord`s; once exhausted, `.result` holds the `GenerationResult`.

    It may be advanced from more than one thread, one step at a time. A Streamlit page that is
    left mid-run needs this: the old run's thread can still be inside a step (a forward pass
    does not notice the page change) when the next run finishes the stream as "stopped". That
    call waits for the step to end instead of failing with "generator already executing".

    >>> stream = iter_generate("gemma-3-270m", "Hello", max_new_tokens=3)  # doctest: +SKIP
    >>> "".join(step.text_delta for step in stream) == stream.result.text  # doctest: +SKIP
    True
    """

    def __init__(self, steps: Iterator[StepRecord], finish: Callable[[], GenerationResult]):
        self._steps = steps
        self._finish = finish
        self._lock = threading.Lock()
        self.result: GenerationResult | None = None

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> StepRecord:
        with self._lock:
            try:
                return next(self._steps)
            except StopIteration:
                if self.result is None:
                    self.result = self._finish()
                raise


def record_candidates(
    logits: torch.Tensor,
    probs_before: torch.Tensor,
    probs_after: torch.Tensor,
    scores: torch.Tensor,
    chosen: int,
    count: int,
    token_text: TokenText,
) -> list[Candidate]:
    """The top ``count`` candidates by raw logit (and the chosen one, if it ranked lower).

    All numbers leave the tensors in a single `.tolist()`: one copy instead of dozens of `.item()`.
    """
    top = torch.topk(logits, min(count, logits.shape[-1])).indices
    if not bool((top == chosen).any()):
        top = torch.cat([top, top.new_tensor([chosen])])
    table = torch.stack([logits[top], probs_before[top], probs_after[top], scores[top]])
    ids = top.tolist()
    raw, before, after, kept_scores = table.tolist()
    return [
        Candidate(i, token_text(i), raw[n], before[n], after[n], kept_scores[n] > -math.inf)
        for n, i in enumerate(ids)
    ]


# No autograd graph: a Streamlit script thread has gradients on by default (the mode is
# per thread), and the decorator applies to every resumption of this generator.
@torch.no_grad()
def _token_loop(
    loaded: LoadedModel,
    prompt_ids: list[int],
    budget: int,
    strategy: str,
    settings: dict[str, Any],
    stop_at_eos: bool,
    stop: Callable[[], bool] | None,
    outcome: dict[str, Any],
) -> Iterator[StepRecord]:
    """Greedy and sampling: one token per step, one forward pass per token."""
    model, tokenizer = loaded.model, loaded.tokenizer
    chain = build_processors(settings, strategy)
    eos = eos_ids(loaded) if stop_at_eos else []
    generator = None
    if strategy in SAMPLING:
        generator = torch.Generator(device=loaded.device).manual_seed(settings["seed"])
    token_text = TokenText(tokenizer)
    decoder = IncrementalDecoder(tokenizer, skip_ids=tuple(eos))
    # The whole sequence so far (processors look at it), pre-allocated so no step copies it.
    sequence = torch.zeros((1, len(prompt_ids) + budget), dtype=torch.long, device=loaded.device)
    sequence[0, : len(prompt_ids)] = torch.tensor(prompt_ids)
    length = len(prompt_ids)
    logits, cache = forward(model, sequence[:, :length], None)
    outcome["finish_reason"] = "length"
    for step in range(budget):
        if stop is not None and stop():
            outcome["finish_reason"] = "stopped"
            return
        raw = logits[0]
        scores = run_processors(chain, logits, sequence[:, :length])[0] if chain else raw
        probs_after = torch.softmax(scores, dim=-1)
        probs_before = probs_after if scores is raw else torch.softmax(raw, dim=-1)
        if generator is None:
            chosen_tensor = torch.argmax(scores)
        else:
            chosen_tensor = torch.multinomial(probs_after, 1, generator=generator)[0]
        chosen = int(chosen_tensor)
        sequence[0, length] = chosen
        length += 1
        candidates = record_candidates(
            raw, probs_before, probs_after, scores, chosen, settings["top_candidates"], token_text
        )
        record = StepRecord.for_choice(step, candidates, chosen, decoder.push(chosen))
        outcome["new_ids"].append(chosen)
        outcome["token_probs"].append(record.chosen_prob)
        yield record
        if chosen in eos:
            outcome["finish_reason"] = "eos"
            return
        if step + 1 < budget:  # the last token needs no forward pass
            logits, cache = forward(model, sequence[:, length - 1 : length], cache)


def iter_generate(
    model: str | LoadedModel,
    prompt: str | list[int],
    strategy: str = "greedy",
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    min_p: float = 0.1,
    num_beams: int = 3,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    seed: int = 0,
    stop_at_eos: bool = True,
    top_candidates: int = 10,
    stop: Callable[[], bool] | None = None,
) -> GenerationStream:
    """Generate step by step: iterate for the `StepRecord`s, then read `.result`.

    Settings are checked before any work starts (a `ValueError` names the bad one).
    """
    import time

    settings = validate_settings(
        strategy, max_new_tokens, temperature, top_k, top_p, min_p, num_beams, length_penalty,
        early_stopping, repetition_penalty, no_repeat_ngram_size, seed, top_candidates,
    )  # fmt: skip
    loaded = resolve_model(model)
    text, prompt_ids, budget, notices = prepare_prompt(loaded, prompt, settings["max_new_tokens"])
    outcome: dict[str, Any] = {"new_ids": [], "token_probs": [], "finish_reason": "length"}
    steps: list[StepRecord] = []
    token_text = TokenText(loaded.tokenizer)
    started = time.perf_counter()
    if strategy == "beam":
        from llmlab.generation.beam import beam_loop

        inner = beam_loop(loaded, prompt_ids, budget, settings, stop_at_eos, stop, outcome)
    else:
        inner = _token_loop(
            loaded, prompt_ids, budget, strategy, settings, stop_at_eos, stop, outcome
        )

    def recorded() -> Iterator[StepRecord]:
        for record in inner:
            steps.append(record)
            yield record

    def finish() -> GenerationResult:
        new_ids: list[int] = outcome["new_ids"]
        reason = outcome["finish_reason"]
        if reason == "length" and budget < settings["max_new_tokens"]:
            reason = "context"
        shown = new_ids[:-1] if new_ids and reason == "eos" else new_ids
        return GenerationResult(
            prompt=text,
            prompt_ids=prompt_ids,
            text=loaded.tokenizer.decode(shown, skip_special_tokens=False),
            new_ids=list(new_ids),
            steps=steps,
            strategy=strategy,
            settings={"strategy": strategy, **settings, "stop_at_eos": stop_at_eos},
            finish_reason=reason,
            notices=notices,
            token_probs=list(outcome["token_probs"]),
            tokens=[token_text(i) for i in new_ids],
            seconds=time.perf_counter() - started,
        )

    return GenerationStream(recorded(), finish)


def generate(
    model: str | LoadedModel,
    prompt: str | list[int],
    strategy: str = "greedy",
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    min_p: float = 0.1,
    num_beams: int = 3,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    seed: int = 0,
    stop_at_eos: bool = True,
    top_candidates: int = 10,
    stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Generate the whole text at once; see `iter_generate` for the streaming form.

    >>> generate("gemma-3-270m", "What is 2+2?", max_new_tokens=600)  # doctest: +SKIP
    Traceback (most recent call last):
    ValueError: max_new_tokens=600 is above the cap of 512 tokens ...
    """
    stream = iter_generate(
        model, prompt, strategy, max_new_tokens, temperature, top_k, top_p, min_p, num_beams,
        length_penalty, early_stopping, repetition_penalty, no_repeat_ngram_size, seed,
        stop_at_eos, top_candidates, stop,
    )  # fmt: skip
    for _ in stream:
        pass
    assert stream.result is not None
    return stream.result
