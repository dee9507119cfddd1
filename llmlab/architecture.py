"""A language model as a stack of small, countable parts.

GPT-2 is rebuilt from its config on PyTorch's `meta` device: every layer exists with its exact
shape, but no weights are allocated, so even the 1.5-billion-parameter size builds in a fraction
of a second. Any causal LM (those skeletons, the offline models, Hub models) is then broken down
into components whose parameter counts sum exactly to the model's total.

    >>> model = gpt2_skeleton("small")
    >>> count_parameters(model)
    124439808
    >>> breakdown = parameter_breakdown(model)
    >>> sum(row.parameters for row in breakdown.rows) == breakdown.total
    True
"""

from __future__ import annotations

import copy
import html
import re
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
# Bytes per weight. int4 packs two weights in a byte (quantization scales are left out here).
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16 / fp16": 2.0, "int8": 1.0, "int4": 0.5}

_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|blocks|layer)\.(\d+)\.(.*)$")


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


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters: `model.parameters()` yields a tied weight once."""
    return sum(p.numel() for p in model.parameters())


# --- formulas ----------------------------------------------------------------------------------


@dataclass
class Polynomial:
    """A sum of products of named sizes, e.g. 4·d² + 4·d, kept exact with integer coefficients.

    >>> d = Polynomial.symbol("d")
    >>> (d * d * 4 + d * 4).render()
    '4·d² + 4·d'
    """

    terms: dict[tuple[str, ...], int] = field(default_factory=dict)  # sorted letters -> coefficient

    @classmethod
    def symbol(cls, name: str, coefficient: int = 1) -> Polynomial:
        return cls({(name,): coefficient})

    @classmethod
    def constant(cls, value: int) -> Polynomial:
        return cls({(): value})

    @classmethod
    def product(cls, factors: list[Polynomial]) -> Polynomial:
        result = cls.constant(1)
        for factor in factors:
            result = result * factor
        return result

    def __add__(self, other: Polynomial) -> Polynomial:
        terms = dict(self.terms)
        for key, value in other.terms.items():
            terms[key] = terms.get(key, 0) + value
        return Polynomial({k: v for k, v in terms.items() if v})

    def __mul__(self, other: Polynomial | int) -> Polynomial:
        if isinstance(other, int):
            other = Polynomial.constant(other)
        terms: dict[tuple[str, ...], int] = {}
        for a, x in self.terms.items():
            for b, y in other.terms.items():
                key = tuple(sorted(a + b))
                terms[key] = terms.get(key, 0) + x * y
        return Polynomial(terms)

    def evaluate(self, values: dict[str, int]) -> int:
        total = 0
        for letters, coefficient in self.terms.items():
            term = coefficient
            for letter in letters:
                term *= values[letter]
            total += term
        return total

    def render(self) -> str:
        if not self.terms:
            return "0"
        superscript = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
        parts = []
        # Highest degree first, as a student would write it: 4·d² + 4·d.
        for letters, coefficient in sorted(self.terms.items(), key=lambda kv: (-len(kv[0]), kv[0])):
            powers = []
            for letter in dict.fromkeys(letters):
                power = letters.count(letter)
                powers.append(letter + (str(power).translate(superscript) if power > 1 else ""))
            factors = ([] if coefficient == 1 and powers else [f"{coefficient:,}"]) + powers
            parts.append("·".join(factors))
        return " + ".join(parts)


def dimension_symbols(config: Any) -> tuple[dict[str, int], Any]:
    """Letters for the sizes in a config, and a function naming a tensor dimension with them.

    A dimension takes the first name whose value it equals: d (hidden size), V (vocabulary),
    P (learned positions), f (MLP width), then 3·d, 4·d, h·dₕ, dₕ, k·dₕ; otherwise it is a number.
    """
    hidden = _config_value(config, "hidden_size", "n_embd")
    heads = _config_value(config, "num_attention_heads", "n_head")
    kv_heads = _config_value(config, "num_key_value_heads", default=heads)
    head_dim = _config_value(config, "head_dim", default=hidden // heads)
    symbols = {"d": hidden, "V": config.vocab_size}
    width = _config_value(config, "intermediate_size", "n_inner")
    positions = _config_value(config, "n_positions") if config.model_type == "gpt2" else None
    if positions:
        symbols["P"] = positions
    if width:
        symbols["f"] = width
    symbols.update({"h": heads, "k": kv_heads, "dₕ": head_dim})
    d, s = Polynomial.symbol("d"), Polynomial.symbol
    candidates: list[tuple[int, Polynomial]] = [(hidden, d), (config.vocab_size, s("V"))]
    if positions:
        candidates.append((positions, s("P")))
    if width:
        candidates.append((width, s("f")))
    candidates += [(3 * hidden, d * 3), (4 * hidden, d * 4)]
    candidates += [(heads * head_dim, s("h") * s("dₕ")), (head_dim, s("dₕ"))]
    candidates.append((kv_heads * head_dim, s("k") * s("dₕ")))

    def name_dimension(size: int) -> Polynomial:
        for value, polynomial in candidates:
            if value == size:
                return polynomial
        return Polynomial.constant(int(size))

    return symbols, name_dimension


# --- parameter breakdown -----------------------------------------------------------------------


@dataclass(frozen=True)
class BreakdownRow:
    group: str  # "Embeddings", "Blocks", "Output"
    block: int | None  # block index for per-block rows
    component: str  # e.g. "Token embedding", "Attention", "MLP", "Norms", "LM head"
    parameters: int
    share: float  # of the model's total, 0..1
    formula: str  # e.g. "4·d² + 4·d"
    note: str = ""

    @property
    def label(self) -> str:
        return self.component if self.block is None else f"Block {self.block} · {self.component}"


@dataclass
class ParameterBreakdown:
    total: int
    rows: list[BreakdownRow]
    symbols: dict[str, int]  # the letters used in the formulas and their values
    tied: bool

    def by_component(self) -> dict[str, int]:
        """Totals per component summed over blocks, e.g. {"Attention": ..., "MLP": ...}."""
        sums: dict[str, int] = {}
        for row in self.rows:
            sums[row.component] = sums.get(row.component, 0) + row.parameters
        return sums

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "component": row.label,
                "parameters": row.parameters,
                "share %": round(100 * row.share, 3),
                "formula": row.formula,
                "note": row.note,
            }
            for row in self.rows
        ]


def _component(local_name: str) -> str:
    """Which part of a transformer block a parameter (named inside the block) belongs to."""
    head = local_name.split(".")[0]
    if head in ("attn", "self_attn", "attention", "crossattention"):
        return "Attention"
    if head in ("mlp", "feed_forward", "ffn", "block_sparse_moe"):
        return "MLP"
    if "norm" in head or head.startswith("ln"):
        return "Norms"
    return "Other"


def _outside_component(name: str, model: torch.nn.Module) -> tuple[str, str]:
    leaf = name.rsplit(".", 2)[-2] if "." in name else name
    if model.get_parameter(name) is _weight(model.get_input_embeddings()):
        return "Embeddings", "Token embedding"
    if leaf in ("wpe", "embed_positions", "position_embeddings"):
        return "Embeddings", "Position embedding"
    if leaf in ("lm_head", "embed_out", "output"):
        return "Output", "LM head"
    if "norm" in leaf or leaf.startswith("ln"):
        return "Output", "Final norm"
    return "Output", "Other"


def _weight(module: Any) -> Any:
    return getattr(module, "weight", None)


def embeddings_tied(model: torch.nn.Module) -> bool:
    """Whether the LM head reuses the token-embedding matrix (one tensor, counted once)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is None:
        return False
    return _weight(output) is _weight(model.get_input_embeddings())


def parameter_breakdown(model: torch.nn.Module) -> ParameterBreakdown:
    """Rows by component (embeddings, each block's attention / MLP / norms, final norm, LM head)
    that sum exactly to the model's parameter count, each with its share and formula.

    The formula is read off the tensor shapes: every dimension is named by the config value it
    equals (d = hidden size, V = vocabulary, f = MLP width, ...), so for GPT-2 small the
    attention row reads 4·d² + 4·d = 4·768² + 4·768 = 2,362,368.
    """
    symbols, dims = dimension_symbols(model.config)
    counts: dict[tuple[str, int | None, str], int] = {}
    formulas: dict[tuple[str, int | None, str], Polynomial] = {}
    # named_parameters() skips a tied LM head weight: it is the embedding tensor seen again.
    for name, tensor in model.named_parameters():
        match = _BLOCK.search(name)
        if match:
            key = ("Blocks", int(match.group(1)), _component(match.group(2)))
        else:
            group, component = _outside_component(name, model)
            key = (group, None, component)
        counts[key] = counts.get(key, 0) + tensor.numel()
        factors = [dims(size) for size in tensor.shape]
        if key[2] == "Position embedding" and "P" in symbols:
            # One row per position: say P even when P equals d (GPT-2 medium: both are 1,024).
            factors[0] = Polynomial.symbol("P")
        term = Polynomial.product(factors)
        formulas[key] = formulas.get(key, Polynomial()) + term
    tied = embeddings_tied(model)
    head_key = ("Output", None, "LM head")
    if head_key not in counts and model.get_output_embeddings() is not None:
        counts[head_key] = 0
        formulas[head_key] = Polynomial()
    total = count_parameters(model)
    order = {"Embeddings": 0, "Blocks": 1, "Output": 2}
    parts = ["Token embedding", "Position embedding", "Attention", "MLP", "Norms", "Final norm"]

    def position(key: tuple[str, int | None, str]) -> tuple:
        rank = parts.index(key[2]) if key[2] in parts else len(parts)
        return (order[key[0]], -1 if key[1] is None else key[1], rank)

    rows = []
    for key in sorted(counts, key=position):
        group, block, component = key
        note = ""
        if component == "LM head" and tied:
            note = "tied: reuses the token-embedding matrix, counted once (0 new parameters)"
        elif component == "Token embedding" and tied:
            note = "also used by the LM head"
        formula = formulas[key].render() if counts[key] else "0 (shared)"
        rows.append(
            BreakdownRow(group, block, component, counts[key], counts[key] / total, formula, note)
        )
    return ParameterBreakdown(total, rows, symbols, tied)


# --- memory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryRow:
    dtype: str
    bytes_per_parameter: float
    bytes: int

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6


def memory_by_dtype(parameters: int) -> list[MemoryRow]:
    """Weight memory for each storage type (weights only: running also needs activations).

    >>> round(memory_by_dtype(124_439_808)[0].megabytes)
    498
    """
    if parameters < 0:
        raise ValueError(f"parameters={parameters!r} must be a count of 0 or more")
    return [MemoryRow(name, size, int(parameters * size)) for name, size in DTYPE_BYTES.items()]


def human_bytes(count: float) -> str:
    """1_500_000 -> '1.5 MB' (decimal units, as disk and download sizes are shown)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,.0f} B"


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


def _config_value(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


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
    config = model.config
    hidden = _config_value(config, "hidden_size", "n_embd")
    heads = _config_value(config, "num_attention_heads", "n_head")
    kv_heads = _config_value(config, "num_key_value_heads", default=heads)
    head_dim = _config_value(config, "head_dim", default=hidden // heads)
    attention = "MHA" if kv_heads == heads else "MQA" if kv_heads == 1 else "GQA"
    learned = any(
        n.endswith(("wpe.weight", "embed_positions.weight")) for n, _ in model.named_parameters()
    )
    rope = _config_value(config, "rope_parameters", "rope_scaling", "rope_theta") is not None
    positions = "learned" if learned else "RoPE" if rope else "none"
    layer_types = list(_config_value(config, "layer_types", default=[]) or [])
    window = _config_value(config, "sliding_window")
    local = sum(t == "sliding_attention" for t in layer_types)
    if local and window:
        positions += f", local/global layers (window {window:,})"
        pattern = f"{local} local (sliding window {window:,}) + {len(layer_types) - local} global"
    else:
        window, pattern = None, "all global"
    mlp, activation = _mlp_description(model, config)
    layers = _config_value(config, "num_hidden_layers", "n_layer")
    return ArchitectureSummary(
        name=name or str(getattr(config, "name_or_path", "") or type(model).__name__),
        model_type=str(config.model_type),
        parameters=count_parameters(model),
        hidden_size=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        attention=attention,
        normalization=_norm_description(model),
        positions=positions,
        mlp=mlp,
        activation=activation,
        mlp_width=_config_value(config, "intermediate_size", "n_inner", default=4 * hidden),
        vocab_size=config.vocab_size,
        context_length=_config_value(config, "max_position_embeddings", "n_positions", default=0),
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
