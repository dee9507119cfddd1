"""The temperature ladder: one prompt, one seed, several temperatures, side by side.

Temperature divides every logit before the softmax: below 1 the likely tokens get likelier
(the text stays close to greedy decoding), above 1 the unlikely ones catch up (the text wanders
off sooner). The ladder shows it on one prompt: a greedy run and one sampled run per
temperature, all with the same seed, submitted to the model's engine together (every stream is
started before any is read, so they run in one batch), and for each run the first step where it
leaves the greedy text and how spread out its distribution was at every step (its entropy).

    >>> ladder = temperature_ladder(loaded, "Once upon a time", max_new_tokens=12)  # doctest: +SKIP
    >>> [(run.temperature, run.departure) for run in ladder.runs]                    # doctest: +SKIP
    [(0.2, None), (0.7, 4), (1.0, 2), (1.5, 0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmlab.generation.branching import first_difference
from llmlab.generation.decoding import GenerationStream, iter_generate
from llmlab.generation.records import GenerationResult

if TYPE_CHECKING:
    from llmlab.models import LoadedModel

TEMPERATURES = (0.2, 0.7, 1.0, 1.5)
MAX_RUNGS = 6


@dataclass
class LadderRun:
    """One rung: a run at one temperature and where it leaves the greedy text."""

    temperature: float
    result: GenerationResult
    departure: int | None  # the first step whose token differs from greedy's; None: never

    @property
    def entropies(self) -> list[float]:
        """Bits of uncertainty of the distribution each token was drawn from."""
        return [
            step.entropy if step.entropy is not None else math.nan for step in self.result.steps
        ]


@dataclass
class Ladder:
    greedy: GenerationResult
    runs: list[LadderRun]


def check_temperatures(temperatures: object) -> list[float]:
    """The rungs, checked: 1 to 6 different temperatures above 0 and at most 10.

    >>> check_temperatures([1.0, 0.2])
    [1.0, 0.2]
    >>> check_temperatures([0.2, 0.2])
    Traceback (most recent call last):
    ...
    ValueError: temperatures=[0.2, 0.2] is not allowed: each temperature once, 1 to 6 of them
    """
    ok = isinstance(temperatures, (list, tuple)) and 1 <= len(temperatures) <= MAX_RUNGS
    ok = ok and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
        for t in temperatures  # type: ignore[union-attr]
    )
    ok = ok and len(set(temperatures)) == len(temperatures)  # type: ignore[arg-type]
    if not ok:
        raise ValueError(
            f"temperatures={temperatures!r:.80} is not allowed: each temperature once, 1 to "
            f"{MAX_RUNGS} of them"
        )
    for t in temperatures:  # type: ignore[union-attr]
        if not 0 < t <= 10:
            raise ValueError(f"temperature={t!r} is out of range: allowed (0, 10]")
    return [float(t) for t in temperatures]  # type: ignore[union-attr]


def start_ladder(
    model: str | LoadedModel,
    prompt: str | list[int],
    temperatures: list[float] | tuple[float, ...] = TEMPERATURES,
    seed: int = 0,
    max_new_tokens: int = 32,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    top_candidates: int = 10,
    stop: Callable[[], bool] | None = None,
) -> list[GenerationStream]:
    """Start the greedy run and every rung at once (greedy first); read them in any order.

    Each rung samples from the whole distribution reshaped by its temperature ("sample"), so
    the temperature is the only thing that differs between them.
    """
    rungs = check_temperatures(temperatures)
    common = dict(
        max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, top_candidates=top_candidates, stop=stop,
    )  # fmt: skip
    # Every setting is checked before the first request goes out: a bad one starts nothing.
    from llmlab.generation.settings import validate_settings

    for t in rungs:
        validate_settings(
            "sample", max_new_tokens, temperature=t, seed=seed,
            repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
            top_candidates=top_candidates,
        )  # fmt: skip
    streams = [iter_generate(model, prompt, "greedy", **common)]
    streams += [
        iter_generate(model, prompt, "sample", temperature=t, seed=seed, **common) for t in rungs
    ]
    return streams


def finish_ladder(
    temperatures: list[float], greedy: GenerationResult, runs: list[GenerationResult]
) -> Ladder:
    """The ladder from finished results (greedy's and each rung's, in the rungs' order)."""
    return Ladder(
        greedy=greedy,
        runs=[
            LadderRun(t, result, first_difference(greedy.new_ids, result.new_ids))
            for t, result in zip(temperatures, runs, strict=True)
        ],
    )


def temperature_ladder(
    model: str | LoadedModel,
    prompt: str | list[int],
    temperatures: list[float] | tuple[float, ...] = TEMPERATURES,
    seed: int = 0,
    max_new_tokens: int = 32,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    top_candidates: int = 10,
    stop: Callable[[], bool] | None = None,
) -> Ladder:
    """The whole ladder at once; see `start_ladder`."""
    streams = start_ladder(
        model, prompt, temperatures, seed, max_new_tokens, repetition_penalty,
        no_repeat_ngram_size, top_candidates, stop,
    )  # fmt: skip
    results = []
    for stream in streams:
        for _ in stream:
            pass
        assert stream.result is not None
        results.append(stream.result)
    return finish_ladder(check_temperatures(temperatures), results[0], results[1:])
