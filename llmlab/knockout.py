"""Switching a part of the model off: an attention head, a whole attention layer, or an MLP.

A part is named plainly: ``("head", layer, head)``, ``("attention", layer)`` or
``("mlp", layer)`` (layers and heads count from 0). Switching it off sets its output to zero:

* a head: its slice of the attention output, just before the output projection (`o_proj`,
  GPT-2's `c_proj`) mixes the heads together. The same as zeroing that head's input columns of
  the projection's weight.
* an attention layer: the whole attention block's output (the projection's output).
* an MLP: the MLP block's output (its down projection's output).

Models are shared by every session, so nothing here changes a weight: forward (pre-)hooks do
the zeroing, act only on calls from the thread that added them, and are removed when the block
ends. They are added inside `exclusive()`, so the engine never runs a step while they are on.

    >>> parts_of("mlp", 3), parts_of("head", 2, 1)
    (('mlp', 3), ('head', 2, 1))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.architecture import config_sizes
from llmlab.compute import exclusive
from llmlab.forward_pass import _attention_module, _blocks

if TYPE_CHECKING:
    import torch

KINDS = ("head", "attention", "mlp")
Part = tuple  # ("head", layer, head) | ("attention", layer) | ("mlp", layer)


def parts_of(kind: str, layer: int, head: int | None = None) -> Part:
    """One part as a tuple (the form `knock_out=[...]` takes)."""
    return (kind, layer, head) if kind == "head" else (kind, layer)


def describe(part: Part) -> str:
    """A part in words.

    >>> describe(("head", 3, 1)), describe(("attention", 0)), describe(("mlp", 29))
    ('head 1 of layer 3', 'the attention of layer 0', 'the MLP of layer 29')
    """
    if part[0] == "head":
        return f"head {part[2]} of layer {part[1]}"
    return f"the {'attention' if part[0] == 'attention' else 'MLP'} of layer {part[1]}"


def _allowed(layers: int, heads: int) -> str:
    return (
        f"('head', layer, head), ('attention', layer) or ('mlp', layer) with layer 0 to "
        f"{layers - 1} and head 0 to {heads - 1}"
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_parts(model: Any, knock_out: Iterable[Any] | None) -> tuple[Part, ...]:
    """The parts as sorted, distinct tuples; ValueError for anything this model does not have.

    Lists are taken for tuples (a settings file holds JSON lists).
    """
    if knock_out is None:
        return ()
    sizes = config_sizes(model.config)
    allowed = _allowed(sizes.layers, sizes.heads)
    if isinstance(knock_out, (str, bytes)) or not isinstance(knock_out, Iterable):
        raise ValueError(
            f"knock_out={knock_out!r} is not a list of parts; allowed: a list of {allowed}"
        )
    parts: set[Part] = set()
    for item in knock_out:
        part = tuple(item) if isinstance(item, (list, tuple)) else None
        good = (
            part is not None
            and len(part) >= 2
            and part[0] in KINDS
            and len(part) == (3 if part[0] == "head" else 2)
            and all(_whole(n) for n in part[1:])
            and 0 <= part[1] < sizes.layers
            and (part[0] != "head" or 0 <= part[2] < sizes.heads)
        )
        if not good:
            raise ValueError(
                f"knock_out has the part {item!r}, which is not allowed; allowed: {allowed}"
            )
        parts.add(part)
    return tuple(sorted(parts, key=lambda p: (p[1], KINDS.index(p[0]), p[2:])))


def _output_projection(attention: Any) -> Any:
    for name in ("o_proj", "c_proj", "out_proj", "dense"):
        if hasattr(attention, name):
            return getattr(attention, name)
    raise ValueError(f"attention={type(attention).__name__} has no output projection")


def _mlp(block: Any) -> Any:
    for name in ("mlp", "feed_forward", "ffn"):
        if hasattr(block, name):
            return getattr(block, name)
    raise ValueError(f"block={type(block).__name__} has no MLP")


@dataclass(frozen=True)
class LayerParts:
    """Where one block's parts sit in the module tree."""

    block: Any
    projection: Any  # the attention output projection: its input is the heads side by side
    mlp: Any


def layer_parts(model: Any, layer: int) -> LayerParts:
    block = _blocks(model)[layer]
    return LayerParts(block, _output_projection(_attention_module(block)), _mlp(block))


def _zeros(module: Any, args: Any, output: Any) -> Any:
    import torch

    return torch.zeros_like(output)


@contextlib.contextmanager
def switched_off(model: Any, parts: Iterable[Part]) -> Iterator[None]:
    """Inside this block, forward passes from this thread run with `parts` switched off.

    Give parts checked by `check_parts`. Holds the compute lock (`exclusive`) throughout: the
    engine's steps on the shared model wait, so they never meet these hooks.
    """
    parts = tuple(parts)
    heads = config_sizes(model.config).heads
    thread = threading.get_ident()
    by_layer: dict[int, list[int]] = {}
    handles = []

    def mine(hook: Callable) -> Callable:
        def guarded(*args: Any) -> Any:
            if threading.get_ident() == thread:
                return hook(*args)
            return None

        return guarded

    def zero_heads(chosen: list[int]) -> Callable:
        def hook(module: Any, args: tuple) -> tuple:
            # (batch, tokens, heads * head_dim): the heads' outputs side by side.
            x = args[0].clone()
            size = x.shape[-1] // heads
            for head in chosen:
                x[..., head * size : (head + 1) * size] = 0
            return (x, *args[1:])

        return hook

    with exclusive():
        try:
            for part in parts:
                where = layer_parts(model, part[1])
                if part[0] == "head":
                    by_layer.setdefault(part[1], []).append(part[2])
                elif part[0] == "attention":
                    handles.append(where.projection.register_forward_hook(mine(_zeros)))
                else:
                    handles.append(where.mlp.register_forward_hook(mine(_zeros)))
            for layer, chosen in by_layer.items():
                projection = layer_parts(model, layer).projection
                handles.append(projection.register_forward_pre_hook(mine(zero_heads(chosen))))
            yield
        finally:
            for handle in handles:
                handle.remove()


# --- every head in turn -------------------------------------------------------------------------

# Rows x tokens in one sweep pass: memory stays small (about 40 MB of activations per layer for
# SmolLM2) while short prompts still go through in a single pass.
SWEEP_ROW_TOKENS = 4096


def _groups(layers: int, heads: int, tokens: int, row_tokens: int) -> list[list[int]]:
    """Layers per pass: each pass adds `heads` rows at each of its layers, within the budget.

    >>> _groups(4, 2, 10, 50)  # 1 + 2 * 2 = 5 rows of 10 tokens fit in 50
    [[0, 1], [2, 3]]
    """
    per_pass = max(1, (row_tokens // max(tokens, 1) - 1) // heads)
    return [list(range(s, min(s + per_pass, layers))) for s in range(0, layers, per_pass)]


def _sweep_pass(model: Any, ids: list[int], group: list[int], heads: int):
    """One pass: a row per head of each layer in `group` added at that layer's input.

    Returns the last position's logits (rows, vocab) and each layer's first row.
    """
    import torch

    thread = threading.get_ident()
    start: dict[int, int] = {}  # layer -> first row of its copies
    handles = []

    def grow(layer: int) -> Callable:
        def hook(module: Any, args: tuple, kwargs: dict) -> Any:
            if threading.get_ident() != thread:
                return None
            hidden = args[0]  # (rows, tokens, hidden); row 0 has nothing switched off
            start[layer] = hidden.shape[0]
            copies = hidden[:1].expand(heads, *hidden.shape[1:])
            return (torch.cat([hidden, copies]), *args[1:]), kwargs

        return hook

    def zero(layer: int) -> Callable:
        def hook(module: Any, args: tuple) -> Any:
            if threading.get_ident() != thread:
                return None
            x = args[0].clone()  # (rows, tokens, heads * head_dim)
            size = x.shape[-1] // heads
            first = start[layer]
            for head in range(heads):
                x[first + head, :, head * size : (head + 1) * size] = 0
            return (x, *args[1:])

        return hook

    with exclusive():
        try:
            for layer in group:
                where = layer_parts(model, layer)
                handles.append(where.block.register_forward_pre_hook(grow(layer), with_kwargs=True))
                handles.append(where.projection.register_forward_pre_hook(zero(layer)))
            with torch.no_grad():
                output = model(
                    input_ids=torch.tensor([ids], device=model.device), use_cache=False,
                    logits_to_keep=1,
                )  # fmt: skip
        finally:
            for handle in handles:
                handle.remove()
    return output.logits[:, -1].float().cpu(), start


def sweep_heads(
    model: Any,
    ids: list[int],
    progress: Callable[[float], None] | None = None,
    row_tokens: int = SWEEP_ROW_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-position logits with each head switched off in turn, and with nothing off.

    Returns ``(clean, knocked)``: float32 logits ``(vocab,)`` and ``(layers, heads, vocab)``.

    Switching off a head of layer L leaves layers 0..L-1 as they were, so their work is shared:
    the pass starts with one row (the prompt), and at layer L a hook adds one copy of that
    row per head, each with its own head of layer L switched off. One pass over
    ``1 + heads * layers`` rows at the top does the whole sweep; a long prompt is split into
    several such passes (``row_tokens`` bounds rows x tokens). `progress` gets the fraction done
    after each pass.
    """
    import torch

    sizes = config_sizes(model.config)
    layers, heads = sizes.layers, sizes.heads
    groups = _groups(layers, heads, len(ids), row_tokens)
    clean: torch.Tensor | None = None
    knocked: torch.Tensor | None = None
    done = 0
    for group in groups:
        logits, start = _sweep_pass(model, ids, group, heads)
        if clean is None:
            clean = logits[0].clone()
            knocked = torch.empty(layers, heads, logits.shape[-1])
        for layer in group:
            knocked[layer] = logits[start[layer] : start[layer] + heads]
        done += len(group)
        if progress is not None:
            progress(done / layers)
    return clean, knocked
