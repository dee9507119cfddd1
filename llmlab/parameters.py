"""Counting a model's parameters: rows by component that add up exactly, each with its formula.

The formula of a row is read off the tensor shapes, naming every dimension by the config size it
equals (d = hidden size, V = vocabulary, f = MLP width, ...). For GPT-2 small one block's
attention reads 4·d² + 4·d = 4·768² + 4·768 = 2,362,368.

    >>> from llmlab.architecture import gpt2_skeleton
    >>> breakdown = parameter_breakdown(gpt2_skeleton("small"))
    >>> breakdown.total, sum(row.parameters for row in breakdown.rows)
    (124439808, 124439808)
    >>> round(memory_by_dtype(breakdown.total)[0].megabytes)
    498
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.architecture import config_sizes, count_parameters, embeddings_tied

if TYPE_CHECKING:
    import torch

# Bytes per weight. int4 packs two weights in a byte (quantization scales are left out here).
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16 / fp16": 2.0, "int8": 1.0, "int4": 0.5}

_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|blocks|layer)\.(\d+)\.(.*)$")


# --- formulas --------------------------------------------------------------------------------------

# A formula is a sum of terms; a term maps its sorted letters to an integer coefficient:
# {("d", "d"): 4, ("d",): 4} is 4·d² + 4·d. Integers keep it exact.
Formula = dict[tuple[str, ...], int]


def _times(a: Formula, b: Formula) -> Formula:
    product: Formula = {}
    for letters_a, x in a.items():
        for letters_b, y in b.items():
            key = tuple(sorted(letters_a + letters_b))
            product[key] = product.get(key, 0) + x * y
    return product


def _plus(a: Formula, b: Formula) -> Formula:
    total = dict(a)
    for key, value in b.items():
        total[key] = total.get(key, 0) + value
    return {key: value for key, value in total.items() if value}


def render_formula(formula: Formula) -> str:
    """A formula as a student would write it, highest degree first.

    >>> render_formula({("d", "d"): 4, ("d",): 4})
    '4·d² + 4·d'
    """
    if not formula:
        return "0"
    superscript = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    parts = []
    for letters, coefficient in sorted(formula.items(), key=lambda kv: (-len(kv[0]), kv[0])):
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
    sizes = config_sizes(config)
    symbols = {"d": sizes.hidden, "V": sizes.vocab}
    if sizes.learned_positions:
        symbols["P"] = sizes.learned_positions
    if sizes.mlp_width:
        symbols["f"] = sizes.mlp_width
    symbols.update({"h": sizes.heads, "k": sizes.kv_heads, "dₕ": sizes.head_dim})
    named = [
        (value, {(letter,): 1})
        for letter, value in symbols.items()
        if letter in ("d", "V", "P", "f")
    ]
    named += [(3 * sizes.hidden, {("d",): 3}), (4 * sizes.hidden, {("d",): 4})]
    named += [
        (sizes.heads * sizes.head_dim, {("dₕ", "h"): 1}),
        (sizes.head_dim, {("dₕ",): 1}),
        (sizes.kv_heads * sizes.head_dim, {("dₕ", "k"): 1}),
    ]

    def name_dimension(size: int) -> Formula:
        return next((formula for value, formula in named if value == size), {(): int(size)})

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
    if model.get_parameter(name) is model.get_input_embeddings().weight:
        return "Embeddings", "Token embedding"
    if leaf in ("wpe", "embed_positions", "position_embeddings"):
        return "Embeddings", "Position embedding"
    if leaf in ("lm_head", "embed_out", "output"):
        return "Output", "LM head"
    if "norm" in leaf or leaf.startswith("ln"):
        return "Output", "Final norm"
    return "Output", "Other"


def parameter_breakdown(model: torch.nn.Module) -> ParameterBreakdown:
    """Rows by component (embeddings, each block's attention / MLP / norms, final norm, LM head)
    that sum exactly to the model's parameter count, each with its share and formula.

    The formula is read off the tensor shapes: every dimension is named by the config value it
    equals (d = hidden size, V = vocabulary, f = MLP width, ...), so for GPT-2 small the
    attention row reads 4·d² + 4·d = 4·768² + 4·768 = 2,362,368.
    """
    symbols, dims = dimension_symbols(model.config)
    counts: dict[tuple[str, int | None, str], int] = {}
    formulas: dict[tuple[str, int | None, str], Formula] = {}
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
            factors[0] = {("P",): 1}
        term: Formula = {(): 1}
        for factor in factors:
            term = _times(term, factor)
        formulas[key] = _plus(formulas.get(key, {}), term)
    tied = embeddings_tied(model)
    head_key = ("Output", None, "LM head")
    if head_key not in counts and model.get_output_embeddings() is not None:
        counts[head_key] = 0
        formulas[head_key] = {}
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
        formula = render_formula(formulas[key]) if counts[key] else "0 (shared)"
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
