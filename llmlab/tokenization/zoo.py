"""Real tokenizers side by side, all behind one small interface.

    >>> gpt2 = load("gpt2")
    >>> gpt2.encode("hello world")
    [31373, 995]
    >>> [(p.id, p.text, p.start, p.end) for p in gpt2.pieces("hi 🚀")][:2]
    [(5303, 'hi', 0, 2), (12520, None, 2, 4)]

`pieces(text)` is the honest view: GPT-2 spends three tokens on 🚀 (four UTF-8 bytes), so two of
them are byte fragments with no text of their own (`text` is None, `data` holds the bytes), and
every fragment carries the span of the character it belongs to.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from typing import Any

from llmlab import assets, hub_limits, registry
from llmlab.tokenization import _gguf
from llmlab.tokenization.pieces import (
    PiecesSummary,
    TokenPiece,
    align,
    byte_level_decoder,
    clean_text,
    summarize,
)

MAX_CHARS = 100_000
# Each tokenizer keeps the pieces of its latest texts up to this many characters in all (the
# least recently used go first; ~4 characters per token, ~250 bytes per piece: ~6 MB at most).
PIECES_CACHE_CHARS = 100_000
SUMMARY_CACHE = 16  # summaries kept per tokenizer (each holds at most `limit` pieces)
_SPECIAL = {"<|endoftext|>": 50256}
_CL100K = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259}
_CL100K |= {"<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
# Pre-split patterns and special tokens exactly as tiktoken_ext/openai_public.py defines them.
_R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_TIKTOKEN = {
    "gpt2": ("gpt2-tiktoken", "gpt2.tiktoken", _R50K, _SPECIAL),
    "cl100k_base": ("openai-tiktoken", "cl100k_base.tiktoken.gz", _CL100K_PAT, _CL100K),
    "o200k_base": (
        "openai-tiktoken",
        "o200k_base.tiktoken.gz",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    title: str  # what a person reads
    algorithm: str
    pack: str | None  # offline pack that must be present
    model: str | None = None  # offline model whose converted folder holds the tokenizer


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("gpt2", "GPT-2 (tiktoken)", "byte-level BPE", "gpt2-tiktoken"),
        ZooEntry("gpt2-hf", "GPT-2 (Hugging Face)", "byte-level BPE", _gguf.PACK),
        ZooEntry("cl100k_base", "GPT-4 / cl100k_base", "byte-level BPE", "openai-tiktoken"),
        ZooEntry("o200k_base", "GPT-4o / o200k_base", "byte-level BPE", "openai-tiktoken"),
        ZooEntry("bert-wordpiece", "BERT WordPiece (MiniLM)", "WordPiece", "minilm-l6-v2"),
        ZooEntry("llama-spm", "Llama (SentencePiece)", "SentencePiece BPE", _gguf.PACK),
        ZooEntry("phi-3", "Phi-3", "SentencePiece BPE", _gguf.PACK),
        ZooEntry("mistral", "Mistral 7B", "SentencePiece BPE", "mistral-tokenizer"),
        ZooEntry("qwen2", "Qwen2", "byte-level BPE", _gguf.PACK),
        ZooEntry("starcoder", "StarCoder", "byte-level BPE", _gguf.PACK),
        ZooEntry("falcon", "Falcon", "byte-level BPE", _gguf.PACK),
        ZooEntry("deepseek-coder", "DeepSeek-Coder", "byte-level BPE", _gguf.PACK),
        ZooEntry("gemma-3", "Gemma 3", "SentencePiece BPE", "gemma-3-270m", "gemma-3-270m"),
        ZooEntry(
            "smollm2", "SmolLM2", "byte-level BPE", "smollm2-135m-instruct", "smollm2-135m-instruct"
        ),
    )
}


@dataclass
class Tokenizer:
    """One real tokenizer: `encode`, `decode`, `pieces`, and facts a student can compare."""

    name: str
    title: str
    algorithm: str
    vocab_size: int
    special_tokens: dict[str, int]
    lowercases: bool
    adds_prefix_space: bool
    _backend: Any = field(repr=False)
    _kind: str = field(repr=False)  # "tiktoken", "hf" or "sentencepiece"
    _token_bytes: Any = field(repr=False, default=None)  # id -> bytes
    unknown_id: int | None = None
    _recent: OrderedDict[str, list[TokenPiece]] = field(
        repr=False, compare=False, default_factory=OrderedDict
    )
    _summaries: OrderedDict[tuple[str, int], PiecesSummary] = field(
        repr=False, compare=False, default_factory=OrderedDict
    )
    _lock: threading.Lock = field(repr=False, compare=False, default_factory=threading.Lock)

    def encode(self, text: str) -> list[int]:
        """Token ids of the text alone (no BOS/EOS added; special-token text is plain text)."""
        text = clean_text(_check_text(text))
        if self._kind == "tiktoken":
            return self._backend.encode_ordinary(text)
        if self._kind == "sentencepiece":
            return self._backend.encode(text)
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        for index in ids:
            if not isinstance(index, int) or not 0 <= index < self.vocab_size:
                raise ValueError(f"ids contains {index!r}; allowed: 0..{self.vocab_size - 1}")
        if self._kind == "tiktoken":
            return self._backend.decode(ids)
        if self._kind == "sentencepiece":
            return self._backend.decode(ids)
        return self._backend.decode(ids, skip_special_tokens=False)

    def token_bytes(self, index: int) -> bytes:
        """The bytes one token stands for (GPT-2's 'Ġ' is a space, SentencePiece's '▁' too)."""
        return self._token_bytes(index)

    def pieces(self, text: str) -> list[TokenPiece]:
        """Each token with its id, text (or bytes) and character span; see the module docstring.

        The latest results are kept (a page redraws the same text many times), keyed by the
        text itself; the list returned is a fresh copy, so changing it changes nothing here.
        """
        text = clean_text(_check_text(text))
        with self._lock:
            found = self._recent.get(text)
            if found is not None:
                self._recent.move_to_end(text)
                return list(found)
        made = self._make_pieces(text)
        with self._lock:
            self._recent[text] = made
            while len(self._recent) > 1 and sum(map(len, self._recent)) > PIECES_CACHE_CHARS:
                self._recent.popitem(last=False)
        return list(made)

    def summary(self, text: str, limit: int = 1000) -> PiecesSummary:
        """Counts over all of `pieces(text)` (tokens, unknown, byte fragments) and its first
        `limit` pieces, without building the rest (a long text has tens of thousands).

        >>> load("gpt2").summary("hi 🚀", limit=1).fragments  # 🚀 is split into three
        3
        """
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit={limit!r}; allowed: an integer >= 0")
        text = clean_text(_check_text(text))
        with self._lock:
            found = self._recent.get(text)
            made = self._summaries.get((text, limit))
        if made is None and found is not None:
            made = PiecesSummary(
                len(found),
                sum(p.unknown for p in found),
                sum(p.text is None for p in found),
                found[:limit],
            )
        elif made is None and self._is_wordpiece():
            encoding = self._backend.encode(text, add_special_tokens=False)
            ids = encoding.ids
            unknown = ids.count(self.unknown_id) if self.unknown_id is not None else 0
            made = PiecesSummary(len(ids), unknown, 0, self._wordpiece_pieces(encoding, limit))
        elif made is None:
            made = summarize(text, *self._ids_and_bytes(text), self.unknown_id, limit)
        with self._lock:
            self._summaries[(text, limit)] = made
            self._summaries.move_to_end((text, limit))
            while len(self._summaries) > SUMMARY_CACHE:
                self._summaries.popitem(last=False)
        return PiecesSummary(made.tokens, made.unknown, made.fragments, list(made.first))

    def _is_wordpiece(self) -> bool:
        return self._kind == "hf" and self.algorithm == "WordPiece"

    def _wordpiece_pieces(self, encoding: Any, limit: int | None = None) -> list[TokenPiece]:
        # WordPiece drops spaces and lowercases: the tokens do not spell the text, so the
        # spans come from the tokenizer's own offsets. Its tokens are whole strings: no fragments.
        unknown = self.unknown_id
        rows = zip(encoding.ids, encoding.tokens, encoding.offsets, strict=True)
        return [
            TokenPiece(i, token, token.encode(), start, end, i == unknown)
            for i, token, (start, end) in islice(rows, limit)
        ]

    def _ids_and_bytes(self, text: str) -> tuple[list[int], list[bytes]]:
        ids = self.encode(text)
        if self._kind == "tiktoken":
            return ids, self._backend.decode_tokens_bytes(ids)  # one call for all ids
        return ids, [self._token_bytes(i) for i in ids]

    def _make_pieces(self, text: str) -> list[TokenPiece]:
        if self._is_wordpiece():
            return self._wordpiece_pieces(self._backend.encode(text, add_special_tokens=False))
        ids, chunks = self._ids_and_bytes(text)
        return align(text, ids, chunks, self.unknown_id)

    def normalize(self, text: str) -> str:
        """What `decode(encode(text))` gives back: the text itself, except for BERT (lowercased,
        accents stripped, whitespace between words not kept; see the tests)."""
        if self.lowercases and self._kind == "hf":
            return self._backend.normalizer.normalize_str(clean_text(text))
        return clean_text(text)


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ValueError(
            f"text has {len(text):,} characters; allowed: at most {MAX_CHARS:,} characters"
        )
    return text


def _from_tiktoken(entry: ZooEntry) -> Tokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    pack, file, pattern, special = _TIKTOKEN[entry.name]
    path = assets.pack_path(pack, file)
    if path.suffix == ".gz":  # tiktoken reads only plain files: unzip into the cache once
        plain = assets.cache_dir() / "tokenizers" / path.stem
        if not plain.is_file():
            _gguf._write_atomic(plain, gzip.decompress(path.read_bytes()).decode())
        path = plain
    encoding = tiktoken.Encoding(
        name=entry.name,
        pat_str=pattern,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens=special,
    )
    return Tokenizer(
        entry.name,
        entry.title,
        entry.algorithm,
        encoding.n_vocab,
        dict(special),
        False,
        False,
        encoding,
        "tiktoken",
        encoding.decode_single_token_bytes,
    )


def _component(part: Any) -> Any:
    """One pipeline part (normalizer, pre-tokenizer or decoder) as the JSON tokenizer.json holds.

    Each part serializes on its own: asking the whole tokenizer for its JSON (`to_str()`) would
    also write out the vocabulary and merges (Gemma 3: 262,144 tokens, 514,906 merges, seconds).
    """
    return None if part is None else json.loads(part.__getstate__())


def _from_hf(entry: ZooEntry, backend: Any) -> Tokenizer:
    # Some tokenizer.json files switch on padding/truncation (MiniLM pads to 128): a tokenizer
    # shown to students must give exactly the text's tokens, so both are switched off.
    backend.no_padding()
    backend.no_truncation()
    parts = {
        "normalizer": _component(backend.normalizer),
        "pre_tokenizer": _component(backend.pre_tokenizer),
        "decoder": _component(backend.decoder),
    }
    text = json.dumps(parts)
    special = {t.content: i for i, t in backend.get_added_tokens_decoder().items() if t.special}
    lowercases = '"lowercase": true' in text or '"Lowercase"' in text
    prefix = '"prepend_scheme": "always"' in text or '"prepend": "\\u2581"' in text
    prefix = (
        prefix
        or '"prepend": "▁"' in text
        or '"add_prefix_space": true}' in text.split('"decoder"')[0]
    )
    # BPE, WordPiece and WordLevel models name their unknown token (Unigram keeps only its id).
    unk_token = getattr(backend.model, "unk_token", None)
    unknown = backend.token_to_id(unk_token) if unk_token else None
    to_bytes = byte_level_decoder(backend, byte_level='"ByteLevel"' in text)
    return Tokenizer(
        entry.name,
        entry.title,
        entry.algorithm,
        backend.get_vocab_size(with_added_tokens=True),
        special,
        lowercases,
        prefix,
        backend,
        "hf",
        to_bytes,
        unknown,
    )


def _from_sentencepiece(entry: ZooEntry) -> Tokenizer:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(assets.pack_path("mistral-tokenizer", "tokenizer.model.v1"))
    )

    @cache
    def to_bytes(index: int) -> bytes:
        piece = processor.id_to_piece(index)
        if processor.is_byte(index):  # "<0xF0>": a raw byte, used when no piece fits
            return bytes([int(piece[3:5], 16)])
        if processor.is_control(index) or processor.is_unknown(index):
            return b""
        return piece.replace("▁", " ").encode("utf-8")

    special = {processor.id_to_piece(i): i for i in range(3)}
    return Tokenizer(
        entry.name,
        entry.title,
        entry.algorithm,
        processor.get_piece_size(),
        special,
        False,
        True,
        processor,
        "sentencepiece",
        to_bytes,
        processor.unk_id(),
    )


def _load_entry(entry: ZooEntry) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    if entry.name in _TIKTOKEN:
        return _from_tiktoken(entry)
    if entry.name == "mistral":
        return _from_sentencepiece(entry)
    if entry.name == "bert-wordpiece":
        path = assets.pack_path("minilm-l6-v2", "tokenizer.json")
        return _from_hf(entry, RustTokenizer.from_file(str(path)))
    if entry.model:
        from llmlab import models

        folder = models.converted_dir(entry.model)
        if not (folder / "tokenizer.json").is_file():
            raise ValueError(
                f"tokenizer={entry.name!r} needs the converted model {entry.model!r}; "
                "prepare the offline models first (Home page)"
            )
        # The same file `models.load_tokenizer_dir` reads, handed straight to the Rust library
        # (the transformers wrapper adds seconds for Gemma's 262,144 tokens and is not needed).
        return _from_hf(entry, RustTokenizer.from_file(str(folder / "tokenizer.json")))
    family = "gpt-2" if entry.name == "gpt2-hf" else entry.name
    return _from_hf(entry, RustTokenizer.from_file(str(_gguf.convert(family))))


def _available(entry: ZooEntry, ready: dict[str, bool]) -> bool:
    if entry.pack is None or not ready.get(entry.pack, False):
        return False
    if entry.model:
        from llmlab import models

        return (models.converted_dir(entry.model) / "tokenizer.json").is_file()
    return True


def list_tokenizers() -> list[str]:
    """Zoo names that can be loaded now (their offline files are present)."""
    # One manifest read and one check per pack (several tokenizers share a pack).
    packs = {pack.name: pack for pack in assets.load_manifest()}
    needed = {entry.pack for entry in ZOO.values() if entry.pack in packs}
    ready = {name: assets.status(packs[name]).verified for name in needed}
    return [name for name, entry in ZOO.items() if _available(entry, ready)]


def load(name: str) -> Tokenizer:
    """A tokenizer by zoo name (see `ZOO`), or any Hugging Face Hub id when the Hub is reachable
    (and `LLMLAB_ALLOW_HUB_IDS` is not 0)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"tokenizer={name!r} is empty; available: {', '.join(ZOO)}")
    name = name.strip()
    if name in ZOO:
        return _load_entry(ZOO[name])
    if registry.is_hub_id(name) and not hub_limits.hub_ids_allowed():
        raise hub_limits.HubModelRefused(
            f"tokenizer={name!r} is not in the zoo, and this server takes no Hub ids "
            f"(LLMLAB_ALLOW_HUB_IDS=0); available: {', '.join(ZOO)}"
        )
    if registry.is_hub_id(name) and registry.hub_available():
        from transformers import AutoTokenizer

        hub = AutoTokenizer.from_pretrained(name)
        entry = ZooEntry(name, name, "from the Hub", None)
        return _from_hf(entry, hub.backend_tokenizer)
    raise ValueError(
        f"tokenizer={name!r} is not in the zoo; available: {', '.join(ZOO)} "
        "(or a Hugging Face Hub id when the Hub is reachable)"
    )
