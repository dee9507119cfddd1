"""The lines a trained model has to beat, computed exactly from counts.

Each baseline is a guess of the next token, scored like the model: the mean negative log
probability (in nats) it gives each token of the validation text.

- uniform: every token of the vocabulary equally likely, so ln(vocabulary size);
- unigram: each token as often as in the training text, ignoring what came before;
- bigram: each token as often as it followed the previous token in the training text.

Counts get add-one (Laplace) smoothing: a pair never seen in training still gets a small
probability, otherwise one new pair would make the loss infinite.

>>> lines = baseline_losses([0, 1, 0, 1, 0, 1], [0, 1, 0], vocab_size=2)
>>> round(lines.uniform, 4), round(lines.unigram, 4), round(lines.bigram, 4)
(0.6931, 0.6931, 0.2554)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Baselines:
    uniform: float
    unigram: float
    bigram: float

    def as_dict(self) -> dict[str, float]:
        return {"uniform": self.uniform, "unigram": self.unigram, "bigram": self.bigram}


def uniform_loss(vocab_size: int) -> float:
    """The loss of guessing blindly.

    >>> round(uniform_loss(85), 2)
    4.44
    """
    return math.log(vocab_size)


def unigram_loss(train: Sequence[int], validation: Sequence[int], vocab_size: int) -> float:
    counts = Counter(train)
    total = len(train) + vocab_size
    return -sum(math.log((counts[t] + 1) / total) for t in validation) / len(validation)


def bigram_loss(train: Sequence[int], validation: Sequence[int], vocab_size: int) -> float:
    """Each validation token after its predecessor (the first one has none and is not scored)."""
    pairs = Counter(zip(train, train[1:], strict=False))
    # How often each token was followed by something: every occurrence but a final one.
    followed = Counter(train[:-1])
    scored = list(zip(validation, validation[1:], strict=False))
    return -sum(
        math.log((pairs[(a, b)] + 1) / (followed[a] + vocab_size)) for a, b in scored
    ) / len(scored)


def baseline_losses(train: Sequence[int], validation: Sequence[int], vocab_size: int) -> Baselines:
    """The three baselines on `validation`, counted on `train`, over `vocab_size` tokens."""
    if len(validation) < 2 or not train:
        raise ValueError("the baselines need a training text and at least 2 validation tokens")
    return Baselines(
        uniform=uniform_loss(vocab_size),
        unigram=unigram_loss(train, validation, vocab_size),
        bigram=bigram_loss(train, validation, vocab_size),
    )
