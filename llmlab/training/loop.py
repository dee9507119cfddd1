"""Pre-training a tiny GPT-2 from scratch: the loop, written to be read.

One optimizer step: take `batch` random windows of `context + 1` tokens from the training text;
the model reads the first `context` tokens of each and is scored (cross-entropy, in nats) on
predicting every next one; AdamW moves every weight a little against its gradient. The learning
rate warms up, then follows a cosine down to a tenth of its peak. Every `eval_every` steps a
checkpoint measures the loss on fixed windows of the training and validation text (the last
10%, never trained on), writes a sample, and records what the model expects after a fixed
prompt.

>>> settings = TrainSettings(preset="tiny", steps=2, seconds=None, eval_every=1)
>>> result = train("hello world, " * 40, settings)
>>> result.status, [c.step for c in result.history]
('finished', [0, 1, 2])
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from llmlab.compute import COMPUTE_LOCK, usable_cores
from llmlab.training import baselines as lines
from llmlab.training.data import (  # noqa: F401 - re-exported: the loop's inputs
    EVAL_WINDOWS,
    MAX_TEXT_CHARS,
    PreparedText,
    fixed_windows,
    mean_loss,
    prepare,
)
from llmlab.training.presets import DEFAULT_PRESET, get_preset, gpt2_config

MAX_STEPS = 100_000
MAX_SECONDS = 3_600.0
MAX_SEED = 2**31 - 1
WARMUP = 0.05  # share of the run spent warming the learning rate up
FLOOR = 0.1  # the cosine ends at this share of the peak learning rate
PROBE_SHOWN = 10  # next tokens listed by "what it knows now"


@dataclass(frozen=True)
class TrainSettings:
    tokenizer: str = "char"  # "char" or "bpe"
    vocab_size: int = 512  # BPE only: tokens to learn (256 bytes + merges)
    preset: str = DEFAULT_PRESET  # a name of `presets.PRESETS`
    learning_rate: float = 3e-3  # the peak, reached after the warm-up
    steps: int | None = None  # stop after this many optimizer steps...
    seconds: float | None = 30.0  # ...or after this much time (whichever comes first)
    seed: int = 0  # the same seed, text and settings give the same loss curve on CPU
    validation_share: float = 0.1  # the end of the text, held out
    eval_every: int = 50  # optimizer steps between two checkpoints
    sample_prompt: str = "The "
    sample_tokens: int = 60
    probe_prompt: str = "I was "
    threads: int | None = None  # torch threads for this run; None: half the cores (at least 1)

    def check(self) -> TrainSettings:
        """The settings, or ValueError naming the first bad one."""
        get_preset(self.preset)
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"tokenizer={self.tokenizer!r} is not available; allowed: char, bpe")
        rate = self.learning_rate
        if not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"learning_rate={rate!r} must be a positive number")
        if self.steps is None and self.seconds is None:
            raise ValueError("give steps or seconds (or both): training needs an end")
        if self.steps is not None and not (
            isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS
        ):
            raise ValueError(f"steps={self.steps!r} must be a whole number from 1 to {MAX_STEPS}")
        if self.seconds is not None and not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(
                f"seconds={self.seconds!r} must be above 0 and at most {MAX_SECONDS:g}"
            )
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed={self.seed!r} must be a whole number from 0 to {MAX_SEED}")
        if not 0 < self.validation_share < 0.5:
            raise ValueError(f"validation_share={self.validation_share!r} must be in (0, 0.5)")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ValueError(f"eval_every={self.eval_every!r} must be a whole number of at least 1")
        return self


@dataclass(frozen=True)
class Checkpoint:
    step: int
    seconds: float  # since training started
    tokens: int  # tokens read so far
    learning_rate: float
    train_loss: float  # nats per token, on fixed training windows
    validation_loss: float  # nats per token, on fixed validation windows

    @property
    def train_perplexity(self) -> float:
        return math.exp(min(self.train_loss, 50.0))

    @property
    def validation_perplexity(self) -> float:
        """As if choosing among this many equally likely tokens.

        >>> round(Checkpoint(0, 0.0, 0, 0.0, 1.0, math.log(85)).validation_perplexity)
        85
        """
        return math.exp(min(self.validation_loss, 50.0))


@dataclass(frozen=True)
class Snapshot:
    """What the model writes and expects at a checkpoint (for the live view)."""

    step: int
    sample: str  # continuation of `sample_prompt`, same seed every time
    probe: list[tuple[str, float]]  # the most likely next tokens after `probe_prompt`


@dataclass
class TrainingResult:
    status: str  # "finished", "stopped" or "diverged"
    message: str
    model: Any  # a LoadedModel (eval mode, frozen), or None when the loss diverged
    history: list[Checkpoint]
    snapshots: list[Snapshot]
    baselines: lines.Baselines
    settings: TrainSettings
    steps: int
    seconds: float
    tokens_per_second: float
    notice: str = ""
    checkpoint_seconds: float = 0.0  # of `seconds`, spent measuring, sampling and probing

    def __iter__(self) -> Iterator[Any]:  # `model, history = train_tiny_gpt(...)`
        return iter((self.model, self.history))


@dataclass
class Progress:
    """Updated after every step; read by a live view."""

    step: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    seconds_left: float = 0.0
    learning_rate: float = 0.0
    history: list[Checkpoint] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)


def learning_rate(peak: float, progress: float) -> float:
    """Warm-up (linear, first 5% of the run), then cosine down to 10% of the peak.

    >>> [round(learning_rate(1.0, p), 3) for p in (0.0, 0.025, 0.05, 0.525, 1.0)]
    [0.0, 0.5, 1.0, 0.55, 0.1]
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < WARMUP:
        return peak * progress / WARMUP
    cosine = 0.5 * (1 + math.cos(math.pi * (progress - WARMUP) / (1 - WARMUP)))
    return peak * (FLOOR + (1 - FLOOR) * cosine)


def _sample(model: Any, tokenizer: Any, settings: TrainSettings, context: int) -> str:
    """Continue `sample_prompt` by sampling (temperature 1), with its own seeded generator."""
    import torch

    generator = torch.Generator().manual_seed(settings.seed)
    ids = tokenizer(settings.sample_prompt, add_special_tokens=False)["input_ids"]
    ids = ids or [tokenizer.eos_token_id]
    start = len(ids)
    with torch.no_grad():
        for _ in range(settings.sample_tokens):
            logits = model(input_ids=torch.tensor([ids[-context:]])).logits[0, -1].float()
            probabilities = torch.softmax(logits, dim=-1)
            ids.append(int(torch.multinomial(probabilities, 1, generator=generator)))
    return settings.sample_prompt + tokenizer.decode(ids[start:], skip_special_tokens=True)


def _probe(model: Any, tokenizer: Any, prompt: str, context: int) -> list[tuple[str, float]]:
    import torch

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[-context:]])).logits[0, -1].float()
    top = torch.softmax(logits, dim=-1).topk(PROBE_SHOWN)
    return [
        (tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices, strict=True)
    ]


@contextlib.contextmanager
def _own_random_state(state: dict[str, Any]) -> Iterator[None]:
    """Dropout draws from torch's global generator, which the rest of the process shares: swap
    this run's generator state in for the block and the previous state back afterwards (the
    block runs under COMPUTE_LOCK, so no one else draws meanwhile)."""
    import torch

    outside = torch.get_rng_state()
    torch.set_rng_state(state["rng"])
    try:
        yield
    finally:
        state["rng"] = torch.get_rng_state()
        torch.set_rng_state(outside)


def training_threads() -> int:
    """Half the cores this process may use, at least 1: the other half is left to the
    generation engine (and, on a busy 2-core machine, one thread avoids two threads spinning
    against each other: a step took 0.4 s on one thread and 4 s on two under load)."""
    return max(1, usable_cores() // 2)


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads for the calling thread only: with the OpenMP backend the count
    is a per-thread setting, so the engine's own thread keeps its count (set once at start)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    text: str,
    settings: TrainSettings,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
    prepared: PreparedText | None = None,
) -> TrainingResult:
    """Train a new tiny GPT-2 on `text`; see the module docstring for one step."""
    settings.check()
    with _threads(settings.threads or training_threads()):
        return _train(text, settings, should_stop, progress, prepared)


def _train(
    text: str,
    settings: TrainSettings,
    should_stop: Callable[[], bool],
    progress: Progress | None,
    prepared: PreparedText | None,
) -> TrainingResult:
    import torch
    import torch.nn.functional as F
    from transformers import GPT2LMHeadModel

    data = prepared or prepare(text, settings)
    preset = get_preset(settings.preset)
    tokenizer = data.tokenizer
    progress = progress if progress is not None else Progress()
    config = gpt2_config(preset, len(tokenizer), tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not the process
        torch.manual_seed(settings.seed)
        state = {"rng": torch.get_rng_state()}
        with COMPUTE_LOCK:
            model = GPT2LMHeadModel(config)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.95), weight_decay=0.1
    )
    batches = torch.Generator().manual_seed(settings.seed)
    train_windows = fixed_windows(data.train_ids, preset.context)
    validation_windows = fixed_windows(data.validation_ids, preset.context)
    offsets = torch.arange(preset.context + 1)
    history: list[Checkpoint] = []
    started = time.perf_counter()
    step, status, message, rate = 0, "finished", "", 0.0
    measuring = [0.0]  # seconds spent in checkpoints

    def elapsed() -> float:
        return time.perf_counter() - started

    def fraction_done() -> float:
        by_steps = step / settings.steps if settings.steps else 0.0
        by_time = elapsed() / settings.seconds if settings.seconds else 0.0
        return max(by_steps, by_time)

    def checkpoint() -> bool:
        """Measure and record; False when the loss is no longer a number."""
        began = time.perf_counter()
        with COMPUTE_LOCK, torch.enable_grad():
            point = Checkpoint(
                step=step,
                seconds=elapsed(),
                tokens=step * preset.batch * preset.context,
                learning_rate=rate,
                train_loss=mean_loss(model, train_windows),
                validation_loss=mean_loss(model, validation_windows),
            )
            model.eval()
            snapshot = Snapshot(
                step,
                _sample(model, tokenizer, settings, preset.context),
                _probe(model, tokenizer, settings.probe_prompt, preset.context),
            )
            model.train()
        history.append(point)
        progress.history = [*history]
        progress.snapshots = [*progress.snapshots, snapshot]
        measuring[0] += time.perf_counter() - began
        return math.isfinite(point.train_loss) and math.isfinite(point.validation_loss)

    diverged = not checkpoint()
    while not diverged:
        if settings.steps is not None and step >= settings.steps:
            break
        if settings.seconds is not None and elapsed() >= settings.seconds:
            break
        if should_stop():
            status, message = "stopped", f"Stopped after {step:,} steps."
            break
        rate = learning_rate(settings.learning_rate, fraction_done())
        for group in optimizer.param_groups:
            group["lr"] = rate
        starts = torch.randint(
            len(data.train_ids) - preset.context - 1, (preset.batch,), generator=batches
        )
        windows = data.train_ids[starts[:, None] + offsets]  # (B, T+1)
        # One optimizer step at a time under the process-wide compute lock: the generation
        # engine's steps for the rest of the class run between two training steps.
        with COMPUTE_LOCK, _own_random_state(state), torch.enable_grad():
            logits = model(input_ids=windows[:, :-1]).logits  # (B, T, vocab)
            loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1  # counted under the lock: whoever holds it next sees the step done
            progress.step = step
        seconds = elapsed()
        progress.seconds, progress.learning_rate = seconds, rate
        progress.tokens_per_second = step * preset.batch * preset.context / max(seconds, 1e-9)
        left = []
        if settings.steps:
            left.append((settings.steps - step) * seconds / step)
        if settings.seconds:
            left.append(settings.seconds - seconds)
        progress.seconds_left = max(0.0, min(left))
        if step % settings.eval_every == 0:
            diverged = not checkpoint()
    if diverged:
        status = "diverged"
        message = (
            f"The loss stopped being a number (NaN or infinite) at step {step:,}: the learning "
            f"rate {settings.learning_rate:g} is too large. Training stopped and nothing is "
            "kept; try a learning rate around 1e-3."
        )
    elif not history or history[-1].step != step:
        diverged = not checkpoint()
        if diverged:
            status, message = "diverged", "The final loss is not a number; nothing is kept."
    seconds = elapsed()
    loaded = None if status == "diverged" else as_loaded(model, tokenizer, settings)
    if status == "finished":
        message = f"Trained for {step:,} steps in {seconds:.1f} s."
    return TrainingResult(
        status=status,
        message=message,
        model=loaded,
        history=history,
        snapshots=list(progress.snapshots),
        baselines=data.baselines,
        settings=settings,
        steps=step,
        seconds=seconds,
        tokens_per_second=step * preset.batch * preset.context / max(seconds, 1e-9),
        notice=data.notice,
        checkpoint_seconds=measuring[0],
    )


def as_loaded(model: Any, tokenizer: Any, settings: TrainSettings, name: str = "") -> Any:
    """A finished model as a `LoadedModel` like any other: eval mode, gradients off, frozen."""
    from llmlab.models import LoadedModel, ModelFacts

    model.eval()
    model.requires_grad_(False)
    config = model.config
    name = name or f"yours-{uuid.uuid4().hex[:8]}"
    kind = "characters" if settings.tokenizer == "char" else f"BPE {len(tokenizer):,}"
    parameters = sum(p.numel() for p in model.parameters())
    facts = ModelFacts(
        name=name,
        title=f"Your tiny GPT ({parameters / 1e6:.2f}M, {kind})",
        family="GPT-2 (tiny, trained here)",
        kind="base",
        source="trained",
        parameters=parameters,
        dtype="float32",
        context_length=int(config.n_positions),
        vocab_size=int(config.vocab_size),
        has_chat_template=False,
        architecture=type(model).__name__,
        location="trained in this session",
    )
    return LoadedModel(name, model, tokenizer, facts)


def train_tiny_gpt(
    text: str,
    tokenizer: str = "char",
    preset: str = DEFAULT_PRESET,
    seconds: float | None = 30.0,
    seed: int = 0,
    *,
    steps: int | None = None,
    learning_rate: float = 3e-3,
    vocab_size: int = 512,
    **options: Any,
) -> TrainingResult:
    """Pre-train a tiny GPT-2 on `text`; returns the model (a `LoadedModel`) and the history.

    >>> model, history = train_tiny_gpt("to be or not to be, " * 30, preset="tiny", steps=3)
    >>> model.facts.architecture, history[0].step, history[-1].step
    ('GPT2LMHeadModel', 0, 3)
    """
    settings = TrainSettings(
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        preset=preset,
        learning_rate=learning_rate,
        steps=steps,
        seconds=None if steps is not None and seconds == 30.0 else seconds,
        seed=seed,
    )
    return train(text, replace(settings, **options))
