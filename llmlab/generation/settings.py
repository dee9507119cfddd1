"""A request's settings, checked before any work starts, and the filters they stand for.

>>> validate_settings("top_k", top_k=5)["top_k"]
5
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
