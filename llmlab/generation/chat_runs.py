"""Generation runs: a prepared input (exact ids, stop strings) through a model, streamed.

`llmlab.chat` builds the inputs (a base model's plain or few-shot prompt, a chat model's
template); this module runs them with shared decoding settings and the same seed, and cuts a
base model's text where it starts writing the user's next line. `llmlab.chat` re-exports its
public names, so `chat.run`, `chat.RunStream` and `chat.DecodingSettings` keep working.

    >>> DecodingSettings(strategy="top_p", seed=7).as_kwargs()["top_p"]
    0.9
    >>> _held_back("The answer\\nUs", ["\\nUser:"])  # may begin a stop string: held back
    3
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from llmlab.rendered_chat import RenderedChat


@dataclass(frozen=True)
class DecodingSettings:
    """The decoding knobs both models share in a comparison (same values, same seed)."""

    strategy: str = (
        "greedy"  # a strategy name of llmlab.generation.decoding, e.g. "greedy", "top_p"
    )
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.9
    min_p: float = 0.1
    seed: int = 0
    repetition_penalty: float = 1.0

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "seed": self.seed,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass(frozen=True)
class PreparedRun:
    """One model's input for a run: the exact prompt text and ids, and where to stop."""

    model: str
    role: str  # "base" or "chat"
    how: str  # how the prompt was built, in plain words
    prompt_text: str
    prompt_ids: list[int]
    stop: list[str] | None = None
    rendered: RenderedChat | None = None  # the chat template's render, when one was used


@dataclass
class ModelOutput:
    run: PreparedRun
    result: (
        Any  # llmlab.generation.decoding.GenerationResult: .text, .new_ids, .steps, .finish_reason
    )

    @property
    def text(self) -> str:
        return self.result.text


@dataclass
class Comparison:
    """Both models on one prompt with the same settings and seed."""

    prompt: str
    settings: DecodingSettings
    base: ModelOutput
    chat: ModelOutput


def _settings_from(values: Mapping[str, Any]) -> DecodingSettings:
    allowed = DecodingSettings.__dataclass_fields__
    unknown = [key for key in values if key not in allowed]
    if unknown:
        raise ValueError(
            f"settings={unknown!r} are not decoding settings; allowed: {list(allowed)}"
        )
    return DecodingSettings(**values)


def _decoding_kwargs(settings: DecodingSettings | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(settings, DecodingSettings):
        kwargs = settings.as_kwargs()
    elif isinstance(settings, Mapping):
        kwargs = _settings_from(settings).as_kwargs()
    else:
        raise ValueError(f"settings={settings!r:.60} must be DecodingSettings or a dict of them")
    return kwargs


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might be the start of a stop string (not shown yet)."""
    for size in range(max((len(stop) for stop in stops), default=0) - 1, 0, -1):
        if any(stop.startswith(text[-size:]) for stop in stops) and len(text) >= size:
            return size
    return 0


class RunStream:
    """Text pieces of one run as they are generated; `.result` once the stream is used up.

    Stop strings (the few-shot frame's "\nUser:") end the run: the loop is told to stop, the
    text is cut before the stop string, and a piece that might begin one is held back until it
    is clear, so a page that streams the pieces never shows a stop string.

        >>> stream = RunStream(loaded, prepare_chat(loaded, "Hi"), DecodingSettings())  # doctest: +SKIP
        >>> "".join(stream) == stream.result.text                                      # doctest: +SKIP
        True
    """

    def __init__(
        self, loaded: Any, prepared: PreparedRun, settings: DecodingSettings | Mapping[str, Any]
    ) -> None:
        from llmlab.generation import decoding

        self.prepared = prepared
        self.stops = list(prepared.stop or [])
        self._hit = False
        self._cancelled = False
        kwargs = _decoding_kwargs(settings)
        # `stop` is the loop's "cancel" callback, asked before every step.
        self._inner = decoding.iter_generate(
            loaded, prepared.prompt_ids, stop=lambda: self._hit or self._cancelled, **kwargs
        )
        self.steps: list[Any] = []
        self.result: Any = None

    def queue_position(self) -> int | None:
        """Requests ahead of this run in its model's queue; None once it runs."""
        return self._inner.queue_position()

    def wait_started(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the run's first step; True when it is there."""
        return self._inner.wait_started(timeout)

    def reading(self) -> tuple[int, int] | None:
        """While the model reads the conversation: (tokens read so far, its tokens); else None."""
        return self._inner.reading()

    def finish_cancelled(self) -> Any:
        """End a run that was left half-way (say, its page was left): the loop stops at its next
        step, and the result holds what was written so far, marked "stopped"."""
        self._cancelled = True
        for _ in self:
            pass
        return self.result

    def __iter__(self) -> Iterator[str]:
        text, shown = "", 0
        for record in self._inner:
            self.steps.append(record)
            if self._hit:
                continue
            text += record.text_delta
            cut = _first_stop(text, self.stops)
            if cut is not None:
                self._hit = True
                end = cut
            else:
                end = len(text) - _held_back(text, self.stops)
            if end > shown:
                yield text[shown:end]
                shown = end
        result = self._inner.result
        cut = _first_stop(result.text, self.stops)
        if cut is not None:
            stop = next(s for s in self.stops if result.text.startswith(s, cut))
            result = replace(
                result,
                text=result.text[:cut],
                finish_reason="stopped",
                notices=[
                    *result.notices,
                    f"Stopped where a new {stop.strip()!r} line began: the base model was about "
                    "to write the user's next message too (it only continues the text).",
                ],
            )
        elif len(result.text) > shown:
            yield result.text[shown:]
        self.result = result


def run(loaded: Any, prepared: PreparedRun, settings: DecodingSettings | Mapping[str, Any]) -> Any:
    """Generate from a prepared run (the ids go in as they are); a `GenerationResult`."""
    stream = RunStream(loaded, prepared, settings)
    for _ in stream:
        pass
    return stream.result
