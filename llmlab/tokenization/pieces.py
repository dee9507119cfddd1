"""Tokens as pieces of the text: id, text (or raw bytes) and the character span they cover.

A token is a run of UTF-8 bytes, and nothing forces it to stop at a character boundary: GPT-2
writes 🚀 (4 bytes: F0 9F 9A 80) as " \\xf0\\x9f" + "\\x9a" + "\\x80". Such a token has no text of
its own, so `TokenPiece.text` is None and `data` holds its bytes; its span is the whole character
it is part of, so all pieces of one emoji share a span.

    >>> [(p.text, p.start, p.end) for p in align("a🚀", [1, 2, 3], [b"a\\xf0", b"\\x9f\\x9a", b"\\x80"])]
    [(None, 0, 2), (None, 1, 2), (None, 1, 2)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import regex

_LONE_SURROGATE = regex.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class TokenPiece:
    id: int
    text: str | None  # None when the token is only part of a UTF-8 character
    data: bytes  # the token's bytes
    start: int  # character span [start, end) in the text
    end: int
    unknown: bool = False  # the tokenizer's [UNK]: the original characters are lost

    @property
    def fragment(self) -> bool:
        return self.text is None

    def label(self) -> str:
        """Readable form: whitespace made visible, byte fragments as hex, e.g. `·<F0 9F>`."""
        if self.text is not None:
            return visible(self.text)
        # Show the complete characters inside the fragment as text and only the rest as hex.
        head = self.data.decode("utf-8", errors="ignore")
        if head and self.data.startswith(head.encode()):
            rest = self.data[len(head.encode()) :]
            return visible(head) + "<" + rest.hex(" ").upper() + ">"
        return "<" + self.data.hex(" ").upper() + ">"


def visible(text: str) -> str:
    """Spaces, tabs, newlines and other control characters as visible marks."""
    out = text.replace(" ", "·").replace("\t", "→").replace("\r", "␍").replace("\n", "↵")
    # Other control characters (U+0000..U+001F, U+007F) as their Unicode "control picture".
    return "".join(
        chr(0x2400 + ord(c)) if ord(c) < 32 else "␡" if ord(c) == 127 else c for c in out
    )


def clean_text(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, the replacement character."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def has_lone_surrogates(text: str) -> bool:
    return bool(_LONE_SURROGATE.search(text))


@cache
def _gpt2_unicode_to_byte() -> dict[str, int]:
    """GPT-2 shows each byte as a printable character (space -> 'Ġ', newline -> 'Ċ'); invert it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


def byte_level_decoder(backend: Any, byte_level: bool) -> Callable[[int], bytes]:
    """id -> bytes for a Hugging Face tokenizer (byte-level 'Ġ' or SentencePiece '▁' style)."""
    table = _gpt2_unicode_to_byte()
    memo: dict[int, bytes] = {}

    def to_bytes(index: int) -> bytes:
        found = memo.get(index)
        if found is not None:
            return found
        token = backend.id_to_token(index) or ""
        if byte_level and all(c in table for c in token):
            data = bytes(table[c] for c in token)
        elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            data = bytes([int(token[3:5], 16)])  # SentencePiece byte fallback
        else:
            data = token.removeprefix("##").replace("▁", " ").encode("utf-8")
        memo[index] = data
        return data

    return to_bytes


def align(
    text: str, ids: list[int], token_bytes: list[bytes], unknown_id: int | None = None
) -> list[TokenPiece]:
    """Give each token its character span by walking the text's UTF-8 bytes.

    SentencePiece tokenizers add a leading space ("▁") that is not in the text: that byte is
    skipped. When the tokens do not spell the text (a normalizing tokenizer), spans are clipped.
    """
    data = text.encode("utf-8", errors="replace")
    joined = b"".join(token_bytes)
    skip = 1 if joined != data and joined == b" " + data else 0
    char_of = []  # byte index -> index of the character it belongs to
    boundaries = {0}
    for index, char in enumerate(text):
        char_of.extend([index] * len(char.encode("utf-8", errors="replace")))
        boundaries.add(len(char_of))
    pieces, position = [], -skip
    for index, chunk in zip(ids, token_bytes, strict=True):
        begin = min(max(position, 0), len(data))
        finish = min(max(position + len(chunk), 0), len(data))
        position += len(chunk)
        start = char_of[begin] if begin < len(data) else len(text)
        end = char_of[finish - 1] + 1 if finish > begin else start
        try:
            piece_text: str | None = chunk.decode("utf-8")
        except UnicodeDecodeError:
            piece_text = None
        if piece_text is not None and (begin not in boundaries or finish not in boundaries):
            piece_text = None
        pieces.append(TokenPiece(index, piece_text, chunk, start, end, index == unknown_id))
    return pieces
