"""The text a tiny GPT trains on: cut, split, tokenized, with its baselines; and the loss on
fixed windows of it, which every checkpoint measures.

>>> import torch
>>> fixed_windows(torch.arange(10), context=3, count=2).tolist()
[[0, 1, 2, 3], [6, 7, 8, 9]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmlab.training import baselines as lines
from llmlab.training.presets import get_preset
from llmlab.training.tokenizer import make_tokenizer

MAX_TEXT_CHARS = 500_000  # longer texts are cut here (Botchan has 274,489 characters)
EVAL_WINDOWS = 48  # windows per split at each checkpoint (a fixed set, so curves are comparable)


@dataclass
class PreparedText:
    text: str  # the text trained on (cut to MAX_TEXT_CHARS)
    notice: str  # why it was cut, or ""
    tokenizer: Any
    train_ids: Any  # 1-D LongTensor
    validation_ids: Any
    baselines: lines.Baselines


def prepare(text: str, settings: Any) -> PreparedText:
    """Cut, split (the last `validation_share` of the characters is validation), tokenize, and
    count the baselines. ValueError with a plain message when the text cannot be trained on."""
    import torch

    if not isinstance(text, str) or not text.strip():
        raise ValueError("The text is empty: give some text to train on (or choose Botchan).")
    notice = ""
    if len(text) > MAX_TEXT_CHARS:
        notice = (
            f"The text has {len(text):,} characters; training uses the first "
            f"{MAX_TEXT_CHARS:,} (the limit)."
        )
        text = text[:MAX_TEXT_CHARS]
    cut = int(len(text) * (1 - settings.validation_share))
    train_text, validation_text = text[:cut], text[cut:]
    context = get_preset(settings.preset).context
    # Character level: every character of the text is in the vocabulary. BPE learns its merges
    # from the training part only, so the validation text stays unseen.
    source = text if settings.tokenizer == "char" else train_text
    tokenizer = make_tokenizer(source, settings.tokenizer, settings.vocab_size)
    train_ids = tokenizer(train_text, add_special_tokens=False)["input_ids"]
    validation_ids = tokenizer(validation_text, add_special_tokens=False)["input_ids"]
    if len(train_ids) < context + 2 or len(validation_ids) < 2:
        shortest = math.ceil((context + 2) / (1 - settings.validation_share)) + 2
        raise ValueError(
            f"The text is too short: its training part is {len(train_ids)} tokens, and the model "
            f"reads {context} tokens at once. Give at least about {shortest:,} characters "
            "(a few pages train far better)."
        )
    vocab_size = len(tokenizer)
    return PreparedText(
        text=text,
        notice=notice,
        tokenizer=tokenizer,
        train_ids=torch.tensor(train_ids, dtype=torch.long),
        validation_ids=torch.tensor(validation_ids, dtype=torch.long),
        baselines=lines.baseline_losses(train_ids, validation_ids, vocab_size),
    )


def fixed_windows(ids: Any, context: int, count: int = EVAL_WINDOWS) -> Any:
    """Up to `count` windows of `context + 1` tokens spread evenly over `ids` (B, T+1).

    >>> import torch
    >>> fixed_windows(torch.arange(10), context=3, count=2).tolist()
    [[0, 1, 2, 3], [6, 7, 8, 9]]
    """
    import torch

    width = min(context + 1, len(ids))
    starts = torch.linspace(0, len(ids) - width, steps=max(1, min(count, len(ids) - width + 1)))
    return torch.stack([ids[int(s) : int(s) + width] for s in starts.round().long().unique()])


def mean_loss(model: Any, windows: Any) -> float:
    """Mean next-token cross-entropy (nats) of `model` on windows (B, T+1), dropout off."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=windows[:, :-1]).logits  # (B, T, vocab)
        loss = F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())
    model.train(was_training)
    return float(loss)
