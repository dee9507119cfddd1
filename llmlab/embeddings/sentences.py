"""Sentence embeddings with all-MiniLM-L6-v2: a sentence becomes one list of 384 numbers.

The recipe, as sentence-transformers runs it for this model: cut the sentence into WordPiece
tokens (at most 256, [CLS] and [SEP] included); run the six encoder blocks, which give every
token its own 384 numbers; average those token vectors (mean pooling, padding left out); divide
by the average's length (L2 normalisation), so every sentence vector has length 1 and the cosine
similarity of two sentences is the dot product of their vectors.

>>> vectors = sentence_embeddings(["A cat sat on the mat.", "A kitten rested on the rug."])
>>> vectors.shape
(2, 384)
>>> round(float(vectors[0] @ vectors[0]), 5)
1.0
>>> bool(vectors[0] @ vectors[1] > 0.5)
True
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PACK = "minilm-l6-v2"
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (the tokenizer itself allows 512):
# the model was trained on pieces of text this long, and longer input is cut, not refused.
MAX_TOKENS = 256
WIDTH = 384  # numbers per token vector, and per sentence vector
BATCH_SIZE = 64
PACK_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class SentenceEncoder:
    """MiniLM loaded once and shared: never mutated, safe to use from several threads."""

    model: Any  # transformers BertModel, eval mode
    tokenizer: Any  # tokenizers.Tokenizer: truncation at MAX_TOKENS, no padding
    name: str = "all-MiniLM-L6-v2"
    max_tokens: int = MAX_TOKENS

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    def word_table(self) -> np.ndarray:
        """The static embedding table: one row of 384 numbers per vocabulary token."""
        return self.model.embeddings.word_embeddings.weight.detach().float().numpy()

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(token_id) or f"[{token_id}]"


def load_encoder(folder: Path | str | None = None) -> SentenceEncoder:
    """MiniLM from the offline `minilm-l6-v2` pack (or `folder`): safetensors weights only.

    Raises `AssetError`, with the command that fixes it, when the pack is missing or damaged.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    if folder is None:
        from llmlab import assets

        folder = assets.pack_path(PACK, PACK_FILES[0]).parent
        for name in PACK_FILES[1:]:
            assets.pack_path(PACK, name)  # each file is checked, not only the first
    folder = Path(folder)
    model = BertModel.from_pretrained(
        str(folder), use_safetensors=True, local_files_only=True, dtype=torch.float32
    )
    model.eval().requires_grad_(False)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The pack's tokenizer.json pads and cuts every text to 128 tokens; the sentence-transformers
    # recipe pads each batch only to its longest text and cuts at 256.
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    return SentenceEncoder(model, tokenizer)


_DEFAULT_LOCK = threading.Lock()


@functools.cache
def _default_encoder() -> SentenceEncoder:
    return load_encoder()


def default_encoder() -> SentenceEncoder:
    """The process's one MiniLM (loaded on first use)."""
    with _DEFAULT_LOCK:
        return _default_encoder()


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"texts={texts[:40]!r} must be a list of sentences, not one string")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}]={text!r} is not text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"texts[{index}] holds a lone surrogate (half of an emoji's code); "
                "it is not valid Unicode text"
            ) from None
    return texts


@dataclass
class Embedded:
    """Sentence vectors and what the tokenizer did to each sentence."""

    vectors: np.ndarray  # (sentences, 384), each of length 1
    token_counts: list[int]  # tokens the model read, [CLS] and [SEP] included
    cut: list[int]  # indices of the sentences cut at MAX_TOKENS


def encode_sentences(
    texts: list[str], encoder: SentenceEncoder | None = None, batch_size: int = BATCH_SIZE
) -> Embedded:
    """Every text's sentence vector, computed in batches of similar length.

    Sorting by length first means each batch is padded only to its own longest text, so short
    sentences do not pay for a long one.
    """
    import torch

    texts = _check_texts(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be at least 1")
    encoder = encoder or default_encoder()
    encodings = encoder.tokenizer.encode_batch(texts) if texts else []
    lengths = [len(e.ids) for e in encodings]
    vectors = np.zeros((len(texts), encoder.width), dtype=np.float32)
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            longest = max(lengths[i] for i in chosen)
            ids = torch.zeros((len(chosen), longest), dtype=torch.long)  # 0 is [PAD]
            mask = torch.zeros((len(chosen), longest), dtype=torch.long)
            for row, index in enumerate(chosen):
                ids[row, : lengths[index]] = torch.tensor(encodings[index].ids)
                mask[row, : lengths[index]] = 1
            hidden = encoder.model(
                input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
            ).last_hidden_state  # (B, T, 384)
            vectors[chosen] = normalise(mean_pool(hidden, mask)).numpy()
    return Embedded(vectors, lengths, [i for i, e in enumerate(encodings) if e.overflowing])


def sentence_embeddings(texts: list[str], encoder: SentenceEncoder | None = None) -> np.ndarray:
    """MiniLM's sentence vectors, one row of 384 numbers (length 1) per text.

    The same numbers as sentence-transformers' all-MiniLM-L6-v2 (mean pooling over the
    attention mask, then L2 normalisation), from the same weights. An empty list gives an empty
    (0, 384) array; a text longer than 256 tokens is cut there.

    >>> sentence_embeddings([]).shape
    (0, 384)
    """
    return encode_sentences(texts, encoder).vectors


def mean_pool(hidden: Any, mask: Any) -> Any:
    """The average of each row's token vectors where `mask` is 1 (padding is left out).

    >>> import torch
    >>> mean_pool(torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), torch.tensor([[1, 1, 0]]))
    tensor([[2., 3.]])
    """
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def normalise(vectors: Any) -> Any:
    """Each row divided by its length, so it has length 1 (a zero row stays zero).

    >>> import torch
    >>> normalise(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """
    import torch

    return torch.nn.functional.normalize(vectors, p=2, dim=1)


@dataclass
class EmbeddingSteps:
    """One sentence through MiniLM, every step kept for the page to show."""

    text: str
    ids: list[int]
    tokens: list[str]  # WordPiece pieces: "##" marks a piece that continues a word
    token_vectors: np.ndarray  # (tokens, 384): the encoder's output, one row per token
    pooled: np.ndarray  # (384,): their average
    pooled_length: float  # the average's length, before normalisation
    vector: np.ndarray  # (384,): the sentence vector, length 1
    cut: bool  # the text was longer than MAX_TOKENS tokens

    @property
    def width(self) -> int:
        return int(self.token_vectors.shape[1])


def embedding_steps(text: str, encoder: SentenceEncoder | None = None) -> EmbeddingSteps:
    """The steps from a sentence to its vector: tokens, token vectors, mean, normalised mean."""
    import torch

    (text,) = _check_texts([text])
    encoder = encoder or default_encoder()
    encoding = encoder.tokenizer.encode(text)
    ids = torch.tensor([encoding.ids])
    with torch.inference_mode():
        hidden = encoder.model(
            input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state[0]  # (T, 384)
    token_vectors = hidden.float().numpy()
    pooled = token_vectors.mean(0)
    length = float(np.linalg.norm(pooled))
    return EmbeddingSteps(
        text,
        list(encoding.ids),
        list(encoding.tokens),
        token_vectors,
        pooled,
        length,
        pooled / max(length, 1e-12),
        bool(encoding.overflowing),
    )
