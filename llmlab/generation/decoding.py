"""Decoding: how a model writes text one token at a time, with every step returned as data.

Our own loop over the model's forward pass (with a KV cache, so each step feeds only the newest
token), giving the same tokens as transformers' `model.generate` for the same settings. Every
request goes to its model's engine (`llmlab.generation.engine`), which steps the requests of
every session together; a request gets the same result as it would alone:

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

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmlab.generation.beam import BeamStepper
from llmlab.generation.engine import Request, engine_for
from llmlab.generation.records import (  # noqa: F401 - the decoding API names these too
    BeamState,
    Candidate,
    GenerationResult,
    IncrementalDecoder,
    StepRecord,
    TokenText,
    record_candidates,
)
from llmlab.generation.settings import (  # noqa: F401 - the decoding API names these too
    FINISH_REASONS,
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    SAMPLING,
    STRATEGIES,
    build_processors,
    eos_ids,
    prepare_prompt,
    resolve_model,
    run_processors,
    validate_settings,
)
from llmlab.generation.steppers import Advance, TokenStepper

if TYPE_CHECKING:
    from llmlab.models import LoadedModel

# How often a waiting reader with a stop test looks at it. A reader without one sleeps until the
# engine posts (a step, the end or an error), so 32 waiting callers cost the scheduler nothing.
POLL_SECONDS = 0.05


class GenerationStream:
    """An iterator of `StepRecord`s; once exhausted, `.result` holds the `GenerationResult`.

    The steps are made by the model's engine, together with other sessions' requests; this
    object reads them as they arrive. The `stop` test is asked before each step is handed out,
    so a run that is stopped ends exactly after the last step its reader saw, as if the loop
    had run in the reader's own thread.

    It may be advanced from more than one thread, one step at a time. A Streamlit page that is
    left mid-run needs this: the old run's thread can still be reading when the next run
    finishes the stream as "stopped"; that call waits for the step to be handed out first.

    While the engine is full, the request waits its turn: `queue_position()` says how many
    requests are ahead of it. A stream that is dropped unread cancels its request.

    >>> stream = iter_generate("gemma-3-270m", "Hello", max_new_tokens=3)  # doctest: +SKIP
    >>> "".join(step.text_delta for step in stream) == stream.result.text  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        request: Request,
        engine: Any,
        stop: Callable[[], bool] | None,
        finish: Callable[[list[Advance], str, dict[str, Any] | None], GenerationResult],
    ):
        self._request = request
        self._engine = engine
        self._stop = stop
        self._finish = finish
        self._seen: list[Advance] = []
        self._lock = threading.Lock()
        self.result: GenerationResult | None = None
        weakref.finalize(self, request.cancel)  # a stream nobody reads frees its rows

    def __iter__(self) -> GenerationStream:
        return self

    def queue_position(self) -> int | None:
        """Requests ahead of this one in the engine's queue; None once it runs."""
        return self._engine.queue_position(self._request)

    def waiting(self) -> bool:
        return self._request.state == "waiting"

    def reading(self) -> tuple[int, int] | None:
        """While the model reads the prompt: (tokens read so far, prompt tokens); else None."""
        return self._request.progress()

    def wait_started(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the first step (or the end); True when it is there."""
        return self.result is not None or bool(self._seen) or self._request.wait(timeout)

    def cancel(self) -> None:
        """Stop the run now; `.result` holds what was written so far, marked "stopped"."""
        with self._lock:
            if self.result is None:
                self._end_stopped()

    def _stopped(self) -> bool:
        return bool(self._stop and self._stop())

    def _end_stopped(self) -> None:
        self._request.cancel()
        last = self._seen[-1].if_stopped if self._seen else None
        self.result = self._finish(self._seen, "stopped", last)

    def __next__(self) -> StepRecord:
        with self._lock:
            if self.result is not None:
                raise StopIteration
            request = self._request
            while True:
                item = request.peek()
                if item is not None and item[0] == "done":
                    request.take()
                    # A run that ends with this step was not stopped, whatever the flag says
                    # now: its loop would not have asked again.
                    final = self._seen[-1] if self._seen else None
                    if final is None or final.finish is None:
                        self._end_stopped()  # left the queue or the batch when stopped
                    else:
                        self.result = self._finish(self._seen, final.finish, final.outcome)
                    raise StopIteration
                if self._stopped():
                    self._end_stopped()
                    raise StopIteration
                if item is None:  # wakes as soon as something arrives
                    request.wait(POLL_SECONDS if self._stop is not None else None)
                    continue
                kind, value = request.take()  # type: ignore[misc]
                if kind == "error":
                    self.result = self._finish(self._seen, "stopped", None)
                    raise value
                self._seen.append(value)
                return value.record


def new_stepper(
    loaded: LoadedModel,
    prompt_ids: list[int],
    budget: int,
    strategy: str,
    settings: dict[str, Any],
    stop_at_eos: bool = True,
    forced: list[int] | None = None,
) -> TokenStepper | BeamStepper:
    """The per-request state of one run (settings as `validate_settings` returns them).

    With `forced` tokens a beam search's settings step one row (its filters, no beams): the
    imposed tokens of a branch, after which `llmlab.generation.branching` runs the beams.
    """
    eos = eos_ids(loaded) if stop_at_eos else []
    if strategy == "beam" and not forced:
        return BeamStepper(loaded.tokenizer, prompt_ids, budget, settings, eos)
    return TokenStepper(
        loaded.tokenizer, prompt_ids, budget, strategy, settings, eos, loaded.device, forced
    )


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

    Settings are checked before any work starts (a `ValueError` names the bad one), so a bad
    request never reaches the engine.
    """
    settings = validate_settings(
        strategy, max_new_tokens, temperature, top_k, top_p, min_p, num_beams, length_penalty,
        early_stopping, repetition_penalty, no_repeat_ngram_size, seed, top_candidates,
    )  # fmt: skip
    loaded = resolve_model(model)
    text, prompt_ids, budget, notices = prepare_prompt(loaded, prompt, settings["max_new_tokens"])
    return start_stream(
        loaded, text, prompt_ids, budget, notices, strategy, settings, stop_at_eos, stop
    )


def start_stream(
    loaded: LoadedModel,
    text: str,
    prompt_ids: list[int],
    budget: int,
    notices: list[str],
    strategy: str,
    settings: dict[str, Any],
    stop_at_eos: bool = True,
    stop: Callable[[], bool] | None = None,
    forced: list[int] | None = None,
) -> GenerationStream:
    """Submit a checked request (see `iter_generate`) to the model's engine; its stream.

    `forced` imposes the first tokens (greedy and sampling only; `llmlab.generation.branching`).
    """
    stepper = new_stepper(loaded, prompt_ids, budget, strategy, settings, stop_at_eos, forced)
    token_text = TokenText(loaded.tokenizer)
    started = time.perf_counter()

    def finish(
        seen: list[Advance], reason: str, outcome: dict[str, Any] | None
    ) -> GenerationResult:
        steps = [advance.record for advance in seen]
        if strategy == "beam" and not forced:
            outcome = outcome or {"new_ids": [], "token_probs": []}
            new_ids, token_probs = list(outcome["new_ids"]), list(outcome["token_probs"])
        else:
            new_ids = [record.chosen_id for record in steps]
            token_probs = [record.chosen_prob for record in steps]
        if reason == "length" and budget < settings["max_new_tokens"]:
            reason = "context"
        shown = new_ids[:-1] if new_ids and reason == "eos" else new_ids
        return GenerationResult(
            prompt=text,
            prompt_ids=prompt_ids,
            text=loaded.tokenizer.decode(shown, skip_special_tokens=False),
            new_ids=new_ids,
            steps=steps,
            strategy=strategy,
            settings={"strategy": strategy, **settings, "stop_at_eos": stop_at_eos},
            finish_reason=reason,
            notices=notices,
            token_probs=token_probs,
            tokens=[token_text(i) for i in new_ids],
            seconds=time.perf_counter() - started,
            model=loaded.name,
            dtype=loaded.facts.dtype,
        )

    engine = engine_for(loaded)
    request = engine.submit(loaded, stepper)
    return GenerationStream(request, engine, stop, finish)


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
