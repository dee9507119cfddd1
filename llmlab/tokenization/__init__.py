"""Tokenization: from-scratch word, character and BPE tokenizers, and a zoo of real ones.

>>> from llmlab import tokenization
>>> tokenization.load("cl100k_base").encode("hello world")
[15339, 1917]
>>> tokenization.sequence_lengths("héllo").bytes
6
"""

from __future__ import annotations

from llmlab.tokenization.bpe import BPETokenizer, MergeStep, TrainResult, replay, train
from llmlab.tokenization.char import CharTokenizer, SequenceLengths, sequence_lengths
from llmlab.tokenization.pieces import (
    PiecesSummary,
    TokenName,
    TokenPiece,
    bytes_label,
    clean_text,
    fragment_note,
    has_lone_surrogates,
    token_label,
    token_name,
    visible,
    visible_label,
)
from llmlab.tokenization.word import DEFAULT_CORPUS, WordTokenizer
from llmlab.tokenization.zoo import MAX_CHARS, ZOO, Tokenizer, list_tokenizers, load

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "DEFAULT_CORPUS",
    "MAX_CHARS",
    "MergeStep",
    "PiecesSummary",
    "SequenceLengths",
    "TokenName",
    "TokenPiece",
    "Tokenizer",
    "TrainResult",
    "WordTokenizer",
    "ZOO",
    "bytes_label",
    "clean_text",
    "fragment_note",
    "has_lone_surrogates",
    "list_tokenizers",
    "load",
    "replay",
    "sequence_lengths",
    "token_label",
    "token_name",
    "train",
    "visible",
    "visible_label",
]
