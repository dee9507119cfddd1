"""Tiny GPT-2 sizes to train on a CPU, and their exact parameter counts.

The model is a real `transformers.GPT2LMHeadModel`, only small, so every other page of the lab
can use it unchanged. Counts come from `llmlab.parameters.parameter_breakdown`, the formulas of
the Architecture page, applied to the model built on the `meta` device (shapes, no weights).

>>> preset = PRESETS["small"]
>>> preset.layers, preset.heads, preset.width
(4, 4, 128)
>>> parameter_count(preset, vocab_size=87)
812672
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TinyGPTPreset:
    name: str
    layers: int  # transformer blocks, one after the other
    heads: int  # attention heads per block; width / heads numbers each
    width: int  # numbers per token all the way through (n_embd)
    context: int  # how many tokens the model reads at once (n_positions)
    batch: int  # windows of `context` tokens per optimizer step
    dropout: float  # fraction of activations zeroed while training (fights overfitting)

    def describe(self, vocab_size: int) -> str:
        """One line for a picker.

        >>> PRESETS["tiny"].describe(87)
        'tiny: 4 layers, 4 heads, width 64, context 64, 0.21M parameters'
        """
        count = parameter_count(self, vocab_size)
        return (
            f"{self.name}: {self.layers} layers, {self.heads} heads, width {self.width}, "
            f"context {self.context}, {count / 1e6:.2f}M parameters"
        )


PRESETS: dict[str, TinyGPTPreset] = {
    preset.name: preset
    for preset in (
        TinyGPTPreset("tiny", layers=4, heads=4, width=64, context=64, batch=16, dropout=0.0),
        # The default, chosen by `bench/training_sweep.py`: at equal compute, 16 windows per
        # step (twice the steps of 32) and no dropout reach the lowest validation loss in 120 s.
        TinyGPTPreset("small", layers=4, heads=4, width=128, context=64, batch=16, dropout=0.0),
        TinyGPTPreset("medium", layers=6, heads=6, width=192, context=128, batch=16, dropout=0.1),
        TinyGPTPreset("large", layers=6, heads=8, width=256, context=128, batch=16, dropout=0.1),
    )
}
DEFAULT_PRESET = "small"


def get_preset(name: str) -> TinyGPTPreset:
    """A preset by name, or ValueError listing the names."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not a preset; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


def gpt2_config(preset: TinyGPTPreset, vocab_size: int, eos_token_id: int = 0) -> Any:
    """The `GPT2Config` of a preset for a tokenizer of `vocab_size` tokens."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=preset.context,
        n_embd=preset.width,
        n_layer=preset.layers,
        n_head=preset.heads,
        resid_pdrop=preset.dropout,
        embd_pdrop=preset.dropout,
        attn_pdrop=preset.dropout,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def skeleton(preset: TinyGPTPreset, vocab_size: int) -> Any:
    """The preset's model on the `meta` device: exact shapes, no storage."""
    import torch
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        return GPT2LMHeadModel(gpt2_config(preset, vocab_size))


def parameter_count(preset: TinyGPTPreset, vocab_size: int) -> int:
    """Unique parameters (the tied embedding counted once), by the Architecture page's formulas."""
    from llmlab.parameters import parameter_breakdown

    return parameter_breakdown(skeleton(preset, vocab_size)).total
