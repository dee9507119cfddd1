"""What if the model had taken another token? Branch a generation at any step and continue it.

`branch(result, step, token_id)` keeps the tokens `result` wrote before `step`, takes `token_id`
at `step` and lets the model go on with the same settings. The branch is a request to the
model's engine like any other (the kept and imposed tokens are fed one step at a time, as
"forced" tokens), so branches are batched with every other session's work.

What "the same settings" means, strategy by strategy:

* **Greedy**: after the imposed token the model again takes its most likely token each step;
  the tokens are those of ``model.generate`` run on the prompt plus the imposed prefix.
* **Sampling** (temperature, top-k, top-p, min-p): *the random stream continues as if the
  imposed token had been drawn at that step.* The branch has the original's seed, and at every
  step up to and including `step` the seeded generator makes its usual draw; the drawn token is
  then replaced by the kept (or imposed) one. A draw uses the same amount of the random stream
  whatever the probabilities are, so from `step + 1` on the branch draws from exactly the random
  numbers the original drew from; only the text they are applied to differs. Branching at a step
  with the token the original took there gives back the original, token for token.
* **Beam search**: the imposed prefix becomes part of the prompt and beam search starts again
  from there with the same number of beams, length penalty and early stopping, for the new
  tokens left; this equals ``model.generate(num_beams=...)`` on the prompt plus the prefix. With
  `beam`, the prefix is that beam's own tokens at `step` (any beam of the step's record, a pruned
  one included), so a pruned beam can be continued.

    >>> original = generate(loaded, "Once upon a time", max_new_tokens=8)       # doctest: +SKIP
    >>> other = branch(original, 2, original.steps[2].candidates[1].token_id)   # doctest: +SKIP
    >>> other.new_ids[:2] == original.new_ids[:2]                                # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.generation.branch_points import BranchPoint
from llmlab.generation.decoding import GenerationStream, start_stream
from llmlab.generation.records import GenerationResult, TokenText
from llmlab.generation.settings import prepare_prompt

if TYPE_CHECKING:
    from llmlab.models import LoadedModel


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _model_for(result: GenerationResult, model: Any) -> LoadedModel:
    if model is None:
        if not result.model:
            raise ValueError(
                "model=None is not allowed here: this result does not name its model; "
                "pass the loaded model (branch(result, step, token_id, model=loaded))"
            )
        from llmlab import models

        return models.load(result.model, dtype=result.dtype or "float32")
    if isinstance(model, str):
        from llmlab import models

        model = models.load(model, dtype=result.dtype or "float32")
    if result.model and model.name != result.model:
        raise ValueError(
            f"model={model.name!r} is not the model that wrote this result; allowed: "
            f"{result.model!r}"
        )
    return model


def forced_prefix(
    result: GenerationResult, step: int, token_id: int, beam: int | None = None
) -> list[int]:
    """The tokens a branch imposes: the kept ones before `step`, then `token_id`.

    >>> from types import SimpleNamespace as R
    >>> forced_prefix(R(new_ids=[5, 6, 7], steps=[0, 1, 2], strategy="greedy"), 1, 9)
    [5, 9]
    >>> forced_prefix(R(new_ids=[5, 6, 7], steps=[0, 1, 2], strategy="greedy"), 3, 9)
    Traceback (most recent call last):
    ...
    ValueError: step=3 is out of range: allowed 0..2 (this run has 3 tokens)
    """
    if not isinstance(result, GenerationResult) and not hasattr(result, "new_ids"):
        raise ValueError(f"result must be a GenerationResult, got {type(result).__name__}")
    if beam is None:
        count = min(len(result.new_ids), len(result.steps))
        if not _is_int(step) or not 0 <= step < count:
            allowed = f"0..{count - 1}" if count else "none"
            raise ValueError(
                f"step={step!r} is out of range: allowed {allowed} (this run has {count} tokens)"
            )
        kept = list(result.new_ids[:step])
    else:
        if result.strategy != "beam":
            raise ValueError(
                f"beam={beam!r} is not allowed for a {result.strategy} run; allowed: None"
            )
        if not _is_int(step) or not 0 <= step < len(result.steps):
            raise ValueError(
                f"step={step!r} is out of range: allowed 0..{len(result.steps) - 1} (the steps "
                "of this beam search)"
            )
        beams = result.steps[step].beams or []
        if not _is_int(beam) or not 0 <= beam < len(beams):
            raise ValueError(
                f"beam={beam!r} is out of range: allowed 0..{len(beams) - 1} (the beams "
                f"recorded at step {step})"
            )
        kept = list(beams[beam].tokens[:-1])
    if not _is_int(token_id) or token_id < 0:
        raise ValueError(f"token_id={token_id!r} is not allowed: use a token id of the model")
    return [*kept, int(token_id)]


def _prepare(result: GenerationResult, model: Any, step: int, token_id: int, beam: int | None):
    forced = forced_prefix(result, step, token_id, beam)
    loaded = _model_for(result, model)
    vocab = loaded.model.config.vocab_size
    if not forced[-1] < vocab:
        raise ValueError(f"token_id={token_id} is out of range: allowed 0..{vocab - 1}")
    settings = {k: v for k, v in result.settings.items() if k not in ("strategy", "stop_at_eos")}
    _, prompt_ids, budget, notices = prepare_prompt(
        loaded, list(result.prompt_ids), settings["max_new_tokens"]
    )
    stop_at_eos = result.settings.get("stop_at_eos", True)
    return loaded, forced, settings, prompt_ids, budget, notices, stop_at_eos


def iter_branch(
    result: GenerationResult,
    step: int,
    token_id: int,
    model: str | LoadedModel | None = None,
    stop: Callable[[], bool] | None = None,
) -> GenerationStream:
    """`branch` step by step (greedy and sampling; a beam search branch needs `branch`)."""
    if result.strategy == "beam":
        raise ValueError("strategy='beam' cannot be streamed here; allowed: use branch()")
    loaded, forced, settings, prompt_ids, budget, notices, stop_at_eos = _prepare(
        result, model, step, token_id, None
    )
    return start_stream(
        loaded, result.prompt, prompt_ids, budget, notices, result.strategy, settings,
        stop_at_eos, stop, forced,
    )  # fmt: skip


def branch(
    result: GenerationResult,
    step: int,
    token_id: int,
    beam: int | None = None,
    model: str | LoadedModel | None = None,
    stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """A new generation: `result`'s tokens before `step`, `token_id` at `step`, then the same
    settings and seed (see the module's docstring for what that means for each strategy).

    `model` defaults to the model named in the result (loaded with its precision); `beam`
    (beam search only) continues that beam of step `step` instead of the final text.
    """
    if result.strategy != "beam":
        if beam is not None:
            raise ValueError(
                f"beam={beam!r} is not allowed for a {result.strategy} run; allowed: None"
            )
        stream = iter_branch(result, step, token_id, model=model, stop=stop)
        for _ in stream:
            pass
        assert stream.result is not None
        return stream.result
    loaded, forced, settings, prompt_ids, budget, notices, stop_at_eos = _prepare(
        result, model, step, token_id, beam
    )
    # First the imposed tokens, one row with the beam search's filters (so each step has its
    # candidates on record), then beam search from the prompt plus those tokens.
    head = start_stream(
        loaded, result.prompt, prompt_ids, len(forced), [], "beam", settings, stop_at_eos, stop,
        forced,
    )  # fmt: skip
    for _ in head:
        pass
    first = head.result
    assert first is not None
    left = budget - len(forced)
    ended = first.finish_reason in ("eos", "stopped")
    if ended or left <= 0:
        reason = first.finish_reason
        if reason in ("length", "context"):  # the imposed tokens used the whole budget
            reason = "context" if budget < settings["max_new_tokens"] else "length"
        return dataclasses.replace(
            first, settings=dict(result.settings), finish_reason=reason, notices=notices
        )
    rest_settings = {**settings, "max_new_tokens": settings["max_new_tokens"] - len(forced)}
    tail = start_stream(
        loaded, result.prompt, prompt_ids + forced, left, [], "beam", rest_settings,
        stop_at_eos, stop,
    )  # fmt: skip
    for _ in tail:
        pass
    rest = tail.result
    assert rest is not None
    return _joined(loaded, result, first, rest, forced, notices)


def _joined(
    loaded: Any,
    original: GenerationResult,
    first: GenerationResult,
    rest: GenerationResult,
    forced: list[int],
    notices: list[str],
) -> GenerationResult:
    """The imposed steps and the beam search after them, as one result counted from step 0."""
    token_text = TokenText(loaded.tokenizer)
    offset = len(forced)
    steps = list(first.steps)
    for record in rest.steps:
        beams = [
            dataclasses.replace(
                b, tokens=forced + b.tokens, text=token_text.text(forced + b.tokens)
            )
            for b in record.beams or []
        ]
        steps.append(dataclasses.replace(record, step=record.step + offset, beams=beams))
    new_ids = forced + rest.new_ids
    reason = rest.finish_reason
    shown = new_ids[:-1] if new_ids and reason == "eos" else new_ids
    return dataclasses.replace(
        rest,
        prompt=original.prompt,
        prompt_ids=list(original.prompt_ids),
        text=loaded.tokenizer.decode(shown, skip_special_tokens=False),
        new_ids=new_ids,
        steps=steps,
        settings=dict(original.settings),
        notices=notices,
        token_probs=first.token_probs + rest.token_probs,
        tokens=first.tokens + rest.tokens,
        seconds=first.seconds + rest.seconds,
    )


# --- a tree of branches ------------------------------------------------------------------------


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first position where two token lists differ (a shorter one differs where it ends).

    >>> first_difference([1, 2, 3], [1, 5, 3]), first_difference([1, 2], [1, 2, 3])
    (1, 2)
    >>> first_difference([1, 2], [1, 2]) is None
    True
    """
    for position, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return position
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass
class BranchTree:
    """The original run (node 0) and its branches, in the order they were made.

    >>> from types import SimpleNamespace as R
    >>> tree = BranchTree([R(new_ids=[1, 2, 3])], [None])
    >>> tree.add(BranchPoint(0, 1, 9), R(new_ids=[1, 9, 4]))
    1
    >>> tree.divergence(1), tree.label(1)
    (1, 'branch 1')
    """

    results: list[GenerationResult]
    points: list[BranchPoint | None] = field(default_factory=lambda: [None])

    def add(self, point: BranchPoint, result: GenerationResult) -> int:
        self.results.append(result)
        self.points.append(point)
        return len(self.results) - 1

    def __len__(self) -> int:
        return len(self.results)

    def parent(self, node: int) -> int | None:
        point = self.points[node]
        return None if point is None else point.parent

    def divergence(self, node: int) -> int | None:
        """The first step where this node's tokens differ from its parent's (None: the original,
        or a branch that took its parent's own token and so never differs)."""
        parent = self.parent(node)
        if parent is None:
            return None
        return first_difference(self.results[parent].new_ids, self.results[node].new_ids)

    def label(self, node: int) -> str:
        return "original" if node == 0 else f"branch {node}"

    def branch_texts(self) -> list[str]:
        """The branch points as link text (``parent.step.token``), original left out."""
        return [point.text for point in self.points if point is not None]


def grow(
    tree: BranchTree,
    point: BranchPoint,
    model: str | LoadedModel | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Make the branch `point` describes and add it to the tree; its node number."""
    if not 0 <= point.parent < len(tree):
        raise ValueError(
            f"parent={point.parent} is out of range: allowed 0..{len(tree) - 1} (the nodes so far)"
        )
    made = branch(tree.results[point.parent], point.step, point.token_id, point.beam, model, stop)
    return tree.add(point, made)


def rebuild(
    original: GenerationResult,
    points: list[BranchPoint],
    model: str | LoadedModel | None = None,
) -> tuple[BranchTree, list[str]]:
    """The tree the points describe, grown from `original`, and a notice for each point that
    does not fit this run (a step past the end of its parent, say); the branches of a refused
    one are left out too, and later parents are renumbered."""
    tree = BranchTree([original], [None])
    notices: list[str] = []
    node_of: dict[int, int] = {0: 0}  # the point's numbering -> the tree's
    for number, point in enumerate(points, start=1):
        if point.parent not in node_of:
            notices.append(f"Branch {number} leaves a branch that was left out, so it is too.")
            continue
        mapped = dataclasses.replace(point, parent=node_of[point.parent])
        try:
            node_of[number] = grow(tree, mapped, model)
        except ValueError as error:
            notices.append(f"Branch {number} does not fit this run and was left out: {error}.")
    return tree, notices
