"""Running a prompt through a model: the forward pass step by step, attention, one linear layer.

Models are shared by every session of the app, so nothing here changes them: hooks are removed
when a call ends and only record calls made from the calling thread, and attention weights are
computed beside the normal forward pass instead of switching the model's attention code.

    >>> import llmlab                                                  # doctest: +SKIP
    >>> loaded = llmlab.load("smollm2-135m-instruct")                  # doctest: +SKIP
    >>> trace = forward_trace(loaded.model, loaded.tokenizer, "Hi")    # doctest: +SKIP
    >>> trace.steps[-1].name, trace.steps[-1].shape                    # doctest: +SKIP
    ('lm_head', (1, 2, 49152))
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.architecture import config_sizes, require_weights
from llmlab.compute import exclusive
from llmlab.tokenization import pieces

if TYPE_CHECKING:
    import torch


# --- the prompt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    tokens: list[str]  # one readable label per id
    original_length: int  # tokens before cutting

    @property
    def truncated(self) -> bool:
        return self.original_length > len(self.ids)


def token_label(tokenizer: Any, token_id: int) -> str:
    """What a token looks like: its decoded text, or its bytes in hex when it is only part of a
    character, as on the Tokenizers page (`llmlab.tokenization.token_label`)."""
    return pieces.token_label(tokenizer, token_id)


def prepare_prompt(tokenizer: Any, text: str, max_tokens: int) -> Prompt:
    """Token ids of `text` (with the tokenizer's special tokens), cut to the first `max_tokens`."""
    if not isinstance(text, str) or text == "":
        raise ValueError(f"text={text!r} is empty; type a prompt of at least one character")
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r} must be at least 1")
    ids = list(tokenizer(text)["input_ids"])
    kept = ids[:max_tokens]
    return Prompt(kept, [token_label(tokenizer, i) for i in kept], len(ids))


def context_length(model: torch.nn.Module) -> int:
    """How many tokens the model reads at most."""
    return config_sizes(model.config).context


# --- the forward trace ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    order: int  # when the module started (parents before their children)
    name: str  # e.g. "model.layers.0.self_attn"
    kind: str  # the class name
    depth: int
    shape: tuple[int, ...]
    mean: float
    std: float
    max_abs: float


# Top-level parts only: "model.layers.3" is a block, "model.layers.3.mlp" is inside one.
_FLOW = re.compile(
    r"^(?:[a-z_]+\.)?(?:embed_tokens|wte|wpe|norm|ln_f|(?:layers|h)\.\d+)$|^lm_head$"
)


@dataclass
class ForwardTrace:
    prompt: Prompt
    steps: list[TraceStep]
    next_tokens: list[tuple[str, float]]  # the model's top guesses after the last token

    def flow(self) -> list[TraceStep]:
        """The path a student follows: embedding, each block, final norm, LM head."""
        return [step for step in self.steps if _FLOW.match(step.name)]

    def path(self) -> list[tuple[str, tuple[int, ...]]]:
        """From token ids to logits in a few stages, the identical-shaped blocks as one:
        [("token ids", (1, 8)), ("embedding", (1, 8, 576)), ("30 blocks", (1, 8, 576)), ...]."""
        stages = [("token ids", (1, len(self.prompt.ids)))]
        for step in self.flow():
            label = short_name(step.name)
            if label.startswith("block "):
                last, shape = stages[-1]
                if last.endswith(("block", "blocks")) and shape == step.shape:
                    stages[-1] = (f"{int(last.split()[0]) + 1} blocks", shape)
                    continue
                label = "1 block"
            stages.append((label, step.shape))
        return stages


def short_name(step_name: str) -> str:
    """A module path as a student would say it.

    >>> short_name("model.layers.3"), short_name("transformer.ln_f"), short_name("lm_head")
    ('block 3', 'final norm', 'LM head')
    """
    leaf = step_name.rsplit(".", 1)[-1]
    if leaf.isdigit():
        return f"block {leaf}"
    names = {"embed_tokens": "embedding", "wte": "embedding", "wpe": "position embedding"}
    names |= {"norm": "final norm", "ln_f": "final norm", "lm_head": "LM head"}
    return names.get(leaf, leaf)


def _first_tensor(output: Any) -> torch.Tensor | None:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return getattr(output, "last_hidden_state", None)


def forward_trace(
    model: torch.nn.Module, tokenizer: Any, text: str, max_tokens: int | None = None, top: int = 5
) -> ForwardTrace:
    """A real forward pass with every module's output shape and statistics (mean, std, max |x|).

    Only statistics are kept, never the tensors: Gemma 3's logits alone are 262,144 numbers per
    token.
    """
    import torch

    require_weights(model)
    prompt = prepare_prompt(tokenizer, text, max_tokens or context_length(model))
    thread = threading.get_ident()
    started: dict[int, tuple[int, str, int]] = {}
    steps: list[TraceStep] = []
    handles = []

    def before(name: str, depth: int):
        def hook(module: torch.nn.Module, args: Any) -> None:
            if threading.get_ident() == thread:
                started[id(module)] = (len(started) + len(steps), name, depth)

        return hook

    def after(module: torch.nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() != thread or id(module) not in started:
            return
        order, name, depth = started.pop(id(module))
        tensor = _first_tensor(output)
        if tensor is None or not tensor.is_floating_point():
            return
        values = tensor.detach().float()
        steps.append(
            TraceStep(
                order,
                name,
                type(module).__name__,
                depth,
                tuple(values.shape),
                values.mean().item(),
                values.std().item() if values.numel() > 1 else 0.0,
                values.abs().max().item(),
            )
        )

    # Between engine steps: hooks added while the engine runs the model would be met by its
    # forward pass too (and change the hook tables it is reading).
    with exclusive():
        try:
            for name, module in model.named_modules():
                if name:
                    handles.append(module.register_forward_pre_hook(before(name, name.count("."))))
                    handles.append(module.register_forward_hook(after))
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt.ids]), use_cache=False).logits
        finally:
            for handle in handles:
                handle.remove()
    probabilities = torch.softmax(logits[0, -1].float(), dim=-1)
    values, ids = probabilities.topk(top)
    guesses = [(token_label(tokenizer, int(i)), float(v)) for v, i in zip(values, ids, strict=True)]
    return ForwardTrace(prompt, sorted(steps, key=lambda s: s.order), guesses)


# --- attention ------------------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    prompt: Prompt
    layer: int
    layer_kind: str  # "global" or "local: sliding window of 512 tokens"
    weights: np.ndarray  # (heads, T, T): row i = how token i spreads its attention over 0..i


class _EagerView:
    """The attention module seen through a config that asks for the plain ("eager") attention
    code, which returns its weights. The real module and its config stay untouched."""

    def __init__(self, module: torch.nn.Module) -> None:
        import copy

        config = copy.copy(module.config)
        config._attn_implementation = "eager"
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "config", config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    import torch

    layers = config_sizes(model.config).layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == layers:
            return module
    raise ValueError(f"model={type(model).__name__} has no list of {layers} blocks")


def _attention_module(block: torch.nn.Module) -> torch.nn.Module:
    for name in ("self_attn", "attn", "attention"):
        if hasattr(block, name):
            return getattr(block, name)
    raise ValueError(f"block={type(block).__name__} has no attention module")


def causal_mask(length: int, window: int | None, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (1, 1, T, T): 0 where token i may look at token j (j <= i, and within the
    sliding window when there is one), the most negative number elsewhere."""
    import torch

    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    allowed = j <= i
    if window:
        allowed &= i - j < window
    mask = torch.zeros(length, length, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class _LayerDone(Exception):
    """Stops a forward pass once the chosen layer has been seen (no state is left behind: the
    pass runs without a cache, and the hook is removed in `finally`)."""


def attention_maps(
    model: torch.nn.Module, tokenizer: Any, text: str, layer: int, max_tokens: int | None = None
) -> AttentionMaps:
    """Per-head attention weights of one layer for the prompt (rows sum to 1, zero above the
    diagonal). The layer's own attention code recomputes them from the inputs it received."""
    import torch

    require_weights(model)
    blocks = _blocks(model)
    if not isinstance(layer, int) or not 0 <= layer < len(blocks):
        raise ValueError(f"layer={layer!r} is out of range; allowed: 0 to {len(blocks) - 1}")
    prompt = prepare_prompt(tokenizer, text, max_tokens or context_length(model))
    attention = _attention_module(blocks[layer])
    window = getattr(attention, "sliding_window", None)
    thread = threading.get_ident()
    captured: list[torch.Tensor] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if threading.get_ident() != thread or captured:
            return
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        call = dict(kwargs, past_key_values=None)
        call.pop("hidden_states", None)
        call["attention_mask"] = causal_mask(hidden.shape[1], window, hidden.dtype)
        # The class's own forward, run on the eager view: same projections, norms and rotary
        # position code as the model uses, but with the weights returned.
        _, weights = type(module).forward(_EagerView(module), hidden, *args[1:], **call)
        captured.append(weights)
        raise _LayerDone  # the layers above this one cannot change these weights: skip them

    with exclusive():  # between engine steps, as in `forward_trace`
        handle = attention.register_forward_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                model.base_model(input_ids=torch.tensor([prompt.ids]), use_cache=False)
        except _LayerDone:
            pass
        finally:
            handle.remove()
    kind = f"local: sliding window of {window:,} tokens" if window else "global"
    return AttentionMaps(prompt, layer, kind, captured[0][0].float().numpy())


# --- one linear layer -----------------------------------------------------------------------------


@dataclass
class LinearExample:
    weights: list[list[float]]  # (outputs, inputs)
    inputs: list[float]
    bias: list[float]
    outputs: list[float]
    steps: list[str]  # one line of arithmetic per output


def linear_layer(
    weights: list[list[float]], inputs: list[float], bias: list[float]
) -> LinearExample:
    """y = W·x + b, written out one output at a time.

    >>> linear_layer([[1, 2], [0, -1]], [3, 4], [0.5, 0]).outputs
    [11.5, -4.0]
    """
    matrix = np.asarray(weights, dtype=float)
    x = np.asarray(inputs, dtype=float)
    b = np.asarray(bias, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"weights={weights!r} must be a non-empty table of numbers")
    if x.shape != (matrix.shape[1],):
        raise ValueError(f"inputs={inputs!r} must have {matrix.shape[1]} numbers (W's columns)")
    if b.shape != (matrix.shape[0],):
        raise ValueError(f"bias={bias!r} must have {matrix.shape[0]} numbers (W's rows)")
    y = matrix @ x + b
    steps = []
    for row, value in enumerate(y):
        products = " + ".join(f"{w:g}·{v:g}" for w, v in zip(matrix[row], x, strict=True))
        steps.append(f"y{row} = {products} + {b[row]:g} = {value:g}")
    return LinearExample(matrix.tolist(), x.tolist(), b.tolist(), y.tolist(), steps)
