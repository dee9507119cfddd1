"""Character-level tokenization, three ways, to compare sequence lengths.

- `ascii`: a fixed vocabulary of `[PAD]`, `[UNK]` and the 52 ASCII letters, digits, punctuation
  and space; anything else (é, 中, 🚀) becomes `[UNK]`.
- `unicode`: one token per Unicode code point (ids are the code points themselves).
- `bytes`: one token per UTF-8 byte (256 ids); 🚀 is 4 bytes, so 4 tokens.

    >>> [len(CharTokenizer(kind).encode("héllo 🚀")) for kind in KINDS]
    [7, 7, 11]
"""

from __future__ import annotations

import string
from dataclasses import dataclass

KINDS = ("ascii", "unicode", "bytes")
ASCII_VOCAB = ["[PAD]", "[UNK]", *string.ascii_letters, *string.digits, *string.punctuation, " "]


@dataclass(frozen=True)
class SequenceLengths:
    characters: int
    ascii: int
    ascii_unknown: int
    unicode: int
    bytes: int


class CharTokenizer:
    """One token per character (`ascii`, `unicode`) or per UTF-8 byte (`bytes`)."""

    def __init__(self, kind: str = "unicode"):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not a character tokenizer; allowed: {KINDS}")
        self.kind = kind
        self.name = f"char-{kind}"
        self._ascii_ids = {char: index for index, char in enumerate(ASCII_VOCAB)}

    @property
    def vocab_size(self) -> int:
        return {"ascii": len(ASCII_VOCAB), "unicode": 0x110000, "bytes": 256}[self.kind]

    def encode(self, text: str) -> list[int]:
        if self.kind == "ascii":
            return [self._ascii_ids.get(char, 1) for char in text]
        if self.kind == "unicode":
            return [ord(char) for char in text]
        # surrogatepass: a lone surrogate still becomes bytes instead of an exception
        return list(text.encode("utf-8", errors="surrogatepass"))

    def decode(self, ids: list[int]) -> str:
        if self.kind == "ascii":
            return "".join(ASCII_VOCAB[i] if 2 <= i < len(ASCII_VOCAB) else "�" for i in ids)
        if self.kind == "unicode":
            return "".join(chr(i) for i in ids)
        return bytes(ids).decode("utf-8", errors="surrogatepass")


def sequence_lengths(text: str) -> SequenceLengths:
    """How long the same text is under each character scheme.

    >>> sequence_lengths("Añ🚀")
    SequenceLengths(characters=3, ascii=3, ascii_unknown=2, unicode=3, bytes=7)
    """
    ascii_ids = CharTokenizer("ascii").encode(text)
    return SequenceLengths(
        characters=len(text),
        ascii=len(ascii_ids),
        ascii_unknown=ascii_ids.count(1),
        unicode=len(text),
        bytes=len(CharTokenizer("bytes").encode(text)),
    )
