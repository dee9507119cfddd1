"""A language model as a stack of small, countable parts.

GPT-2 is rebuilt from its config on PyTorch's `meta` device: every layer exists with its exact
shape, but no weights are allocated, so even the 1.5-billion-parameter size builds in a fraction
of a second. Any causal LM (those skeletons, the offline models, Hub models) is then described
the same way: its sizes, a comparison record (norms, positions, attention, MLP) and its module
tree. Counting parameters by component lives in `llmlab.parameters`.

    >>> model = gpt2_skeleton("small")
    >>> count_parameters(model)
    124439808
    >>> architecture_summary(model).attention
    'MHA'
"""

from __future__ import annotations

import copy
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The four released GPT-2 sizes: (hidden size n_embd, layers n_layer, heads n_head).
GPT2_SIZES: dict[str, tuple[int, int, int]] = {
    "small": (768, 12, 12),
    "medium": (1024, 24, 16),
    "large": (1280, 36, 20),
    "xl": (1600, 48, 25),
}


def gpt2_skeleton(size: str = "small") -> torch.nn.Module:
    """`GPT2LMHeadModel` of a released size on the `meta` device: exact shapes, no weights.

    >>> gpt2_skeleton("medium").config.n_layer
    24
    """
    if size not in GPT2_SIZES:
        raise ValueError(f"size={size!r} is not a GPT-2 size; allowed: {', '.join(GPT2_SIZES)}")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    hidden, layers, heads = GPT2_SIZES[size]
    with torch.device("meta"):  # parameters get shapes but no storage
        model = GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads))
    model.config.name_or_path = f"gpt2-{size} (skeleton)"
    return model.eval()


def skeleton_from_folder(folder: str) -> torch.nn.Module:
    """Any saved model's architecture on the `meta` device, read from its `config.json` only.

    Lets the page compare architectures without loading a single weight.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def is_skeleton(model: torch.nn.Module) -> bool:
    """True when the model has shapes but no weights (built on the `meta` device)."""
    return any(p.is_meta for p in model.parameters())


def require_weights(model: torch.nn.Module) -> None:
    """Refuse a skeleton where real numbers are needed (running a prompt, reading embeddings)."""
    if is_skeleton(model):
        raise ValueError(
            "model is a skeleton (shapes only, no weights) and cannot run a prompt; "
            "choose an offline model such as smollm2-135m-instruct or gemma-3-270m"
        )


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters: `model.parameters()` yields a tied weight once."""
    return sum(p.numel() for p in model.parameters())


def _weight(module: Any) -> Any:
    return getattr(module, "weight", None)


def embeddings_tied(model: torch.nn.Module) -> bool:
    """Whether the LM head reuses the token-embedding matrix (one tensor, counted once)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is None:
        return False
    return _weight(output) is _weight(model.get_input_embeddings())


# --- sizes read from a config ----------------------------------------------------------------------


def _config_value(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


@dataclass(frozen=True)
class ConfigSizes:
    """The sizes every architecture has, whatever its config calls them (GPT-2: n_embd, ...)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int  # fewer than heads: grouped-query attention
    head_dim: int
    vocab: int
    context: int
    mlp_width: int | None  # None when the config leaves it implicit (GPT-2: 4 x hidden)
    learned_positions: int | None  # rows of a learned position table (GPT-2 only)


def config_sizes(config: Any) -> ConfigSizes:
    """The sizes of a config under one set of names.

    >>> config_sizes(gpt2_skeleton("small").config).hidden
    768
    """
    hidden = _config_value(config, "hidden_size", "n_embd")
    heads = _config_value(config, "num_attention_heads", "n_head")
    positions = _config_value(config, "n_positions")
    return ConfigSizes(
        hidden=hidden,
        layers=_config_value(config, "num_hidden_layers", "n_layer"),
        heads=heads,
        kv_heads=_config_value(config, "num_key_value_heads", default=heads),
        head_dim=_config_value(config, "head_dim", default=hidden // heads),
        vocab=config.vocab_size,
        context=_config_value(config, "max_position_embeddings", default=positions or 0),
        mlp_width=_config_value(config, "intermediate_size", "n_inner"),
        learned_positions=positions if config.model_type == "gpt2" else None,
    )


# --- the module tree ---------------------------------------------------------------------------


@dataclass
class ModuleNode:
    name: str  # attribute name, or "0-29" for a run of identical blocks
    kind: str  # the class name, e.g. "LlamaDecoderLayer"
    detail: str  # the module's own description, e.g. "in_features=576, out_features=192"
    parameters: int  # in this module and below (a run of blocks: all of them)
    repeat: int = 1
    children: list[ModuleNode] = field(default_factory=list)


def _signature(node: ModuleNode) -> tuple:
    return (node.kind, node.detail, node.parameters, tuple(_signature(c) for c in node.children))


def module_tree(
    module: torch.nn.Module, name: str = "", seen: set[int] | None = None
) -> ModuleNode:
    """The model as nested nodes, like `print(model)`: identical neighbours become one run.

    A tied LM head holds the embedding tensor again; `seen` makes sure it is counted once.

    >>> tree = module_tree(gpt2_skeleton("small"))
    >>> [child.name for child in tree.children[0].children]
    ['wte', 'wpe', 'drop', 'h', 'ln_f']
    """
    seen = set() if seen is None else seen
    own = 0
    for parameter in module.parameters(recurse=False):
        if id(parameter) not in seen:
            seen.add(id(parameter))
            own += parameter.numel()
    children = [
        module_tree(child, child_name, seen) for child_name, child in module.named_children()
    ]
    merged: list[ModuleNode] = []
    for child in children:  # `print(model)` style: (0-11): 12 x GPT2Block
        last = merged[-1] if merged else None
        if last and child.name.isdigit() and _signature(last) == _signature(child):
            first = last.name.split("-")[0]
            last.name, last.repeat = f"{first}-{child.name}", last.repeat + 1
            continue
        merged.append(child)
    for node in merged:
        if node.repeat > 1:
            node.parameters *= node.repeat
    return ModuleNode(
        name=name or type(module).__name__,
        kind=type(module).__name__,
        detail=module.extra_repr(),
        parameters=own + sum(c.parameters for c in merged),
        children=merged,
    )


def module_outline_html(node: ModuleNode, depth: int = 0, open_depth: int = 2) -> str:
    """The tree as nested `<details>` elements (collapsible without any script); text escaped."""
    kind = f"{node.repeat} × {node.kind}" if node.repeat > 1 else node.kind
    label = (
        f"<code>{html.escape(node.name)}</code> {html.escape(kind)}"
        + (f" <small>({html.escape(node.detail)})</small>" if node.detail else "")
        + (f" — <b>{node.parameters:,}</b> parameters" if node.parameters else "")
    )
    if not node.children:
        return f"<div style='margin-left:{1.2 if depth else 0}em'>{label}</div>"
    inner = "".join(module_outline_html(c, depth + 1, open_depth) for c in node.children)
    opened = " open" if depth < open_depth else ""
    return (
        f"<details{opened} style='margin-left:{1.2 if depth else 0}em'>"
        f"<summary>{label}</summary>{inner}</details>"
    )


# --- the architecture at a glance ----------------------------------------------------------------


def _norm_description(model: torch.nn.Module) -> str:
    norms = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
    if not norms:
        return "none found"
    kinds = {type(m).__name__ for m in norms}
    if not any("rms" in k.lower() for k in kinds):
        return "LayerNorm"
    probe = next(m for m in norms if "rms" in type(m).__name__.lower())
    # Ask the module itself how it uses its weight: with the weight set to 0 an ordinary RMSNorm
    # outputs zeros, while Gemma's variant multiplies by (1 + w) and passes the input through.
    import torch

    copy_ = copy.deepcopy(probe).to_empty(device="cpu").float()
    weight = _weight(copy_)
    if weight is None:
        return "RMSNorm"
    with torch.no_grad():
        weight.zero_()
        out = copy_(torch.ones(1, weight.shape[-1]))
    return "RMSNorm (scale 1 + w)" if out.abs().max() > 0.5 else "RMSNorm"


def _mlp_description(model: torch.nn.Module, config: Any) -> tuple[str, str]:
    activation = str(
        _config_value(config, "hidden_activation", "hidden_act", "activation_function", default="?")
    )
    gated = any(
        name.endswith(("gate_proj", "w1", "gate_up_proj", "w3"))
        for name, _ in model.named_modules()
    )
    if gated:
        kind = (
            "SwiGLU"
            if activation in ("silu", "swish")
            else "GeGLU"
            if "gelu" in activation
            else f"gated {activation}"
        )
    else:
        kind = "GELU" if "gelu" in activation else activation
    return kind, activation


@dataclass(frozen=True)
class ArchitectureSummary:
    name: str
    model_type: str
    parameters: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    attention: str  # "MHA", "GQA" or "MQA"
    normalization: str  # "LayerNorm", "RMSNorm", "RMSNorm (scale 1 + w)"
    positions: str  # "learned", "RoPE", ...
    mlp: str  # "GELU", "SwiGLU", "GeGLU"
    activation: str  # the config's name, e.g. "gelu_pytorch_tanh"
    mlp_width: int
    vocab_size: int
    context_length: int
    tied_embeddings: bool
    sliding_window: int | None
    layer_pattern: str  # e.g. "5 local : 1 global" or "all global"

    def as_row(self) -> dict[str, Any]:
        return {
            "parameters": f"{self.parameters:,}",
            "layers": self.layers,
            "hidden size": self.hidden_size,
            "MLP width": self.mlp_width,
            "attention": f"{self.attention}: {self.heads} heads, {self.kv_heads} key/value heads",
            "head size": self.head_dim,
            "normalization": self.normalization,
            "positions": self.positions,
            "MLP": f"{self.mlp} ({self.activation})",
            "vocabulary": f"{self.vocab_size:,}",
            "context (tokens)": f"{self.context_length:,}",
            "layer pattern": self.layer_pattern,
            "tied embeddings": "yes" if self.tied_embeddings else "no",
        }


def architecture_summary(model: torch.nn.Module, name: str | None = None) -> ArchitectureSummary:
    """The comparison record, read from the config and the modules (nothing per-model here).

    >>> s = architecture_summary(gpt2_skeleton("small"))
    >>> s.normalization, s.positions, s.attention, s.mlp
    ('LayerNorm', 'learned', 'MHA', 'GELU')
    """
    config, sizes = model.config, config_sizes(model.config)
    heads, kv_heads = sizes.heads, sizes.kv_heads
    attention = "MHA" if kv_heads == heads else "MQA" if kv_heads == 1 else "GQA"
    rope = _config_value(config, "rope_parameters", "rope_scaling", "rope_theta") is not None
    positions = "learned" if sizes.learned_positions else "RoPE" if rope else "none"
    layer_types = list(_config_value(config, "layer_types", default=[]) or [])
    window = _config_value(config, "sliding_window")
    local = sum(t == "sliding_attention" for t in layer_types)
    if local and window:
        positions += f", local/global layers (window {window:,})"
        pattern = f"{local} local (sliding window {window:,}) + {len(layer_types) - local} global"
    else:
        window, pattern = None, "all global"
    mlp, activation = _mlp_description(model, config)
    return ArchitectureSummary(
        name=name or str(getattr(config, "name_or_path", "") or type(model).__name__),
        model_type=str(config.model_type),
        parameters=count_parameters(model),
        hidden_size=sizes.hidden,
        layers=sizes.layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=sizes.head_dim,
        attention=attention,
        normalization=_norm_description(model),
        positions=positions,
        mlp=mlp,
        activation=activation,
        mlp_width=sizes.mlp_width or 4 * sizes.hidden,
        vocab_size=sizes.vocab,
        context_length=sizes.context,
        tied_embeddings=embeddings_tied(model),
        sliding_window=window,
        layer_pattern=pattern,
    )


def kv_cache_bytes(summary: ArchitectureSummary, tokens: int, bytes_per_value: float = 2) -> int:
    """Memory of the key/value cache for `tokens` tokens: 2 (K and V) x layers x kv heads x head
    size per token. Fewer key/value heads (GQA, MQA) is exactly what shrinks it."""
    if tokens < 0:
        raise ValueError(f"tokens={tokens!r} must be 0 or more")
    per_token = 2 * summary.layers * summary.kv_heads * summary.head_dim
    return int(per_token * tokens * bytes_per_value)
