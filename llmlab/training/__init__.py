"""Pre-train a tiny GPT-2 from scratch: sizes (`presets`), tokenizers (`tokenizer`), the lines
to beat (`baselines`), the text and the loss on it (`data`), the loop (`loop`), a background run
and its queue (`jobs`), and saved models (`saving`).

>>> from llmlab.training import PRESETS, train_tiny_gpt
>>> sorted(PRESETS)
['large', 'medium', 'small', 'tiny']
"""

from llmlab.training.baselines import Baselines, baseline_losses
from llmlab.training.loop import (
    MAX_TEXT_CHARS,
    Checkpoint,
    TrainingResult,
    TrainSettings,
    prepare,
    train,
    train_tiny_gpt,
)
from llmlab.training.presets import DEFAULT_PRESET, PRESETS, TinyGPTPreset, parameter_count
from llmlab.training.saving import load as load_trained
from llmlab.training.saving import save as save_trained

__all__ = [
    "DEFAULT_PRESET",
    "MAX_TEXT_CHARS",
    "PRESETS",
    "Baselines",
    "Checkpoint",
    "TinyGPTPreset",
    "TrainSettings",
    "TrainingResult",
    "baseline_losses",
    "load_trained",
    "parameter_count",
    "prepare",
    "save_trained",
    "train",
    "train_tiny_gpt",
]
