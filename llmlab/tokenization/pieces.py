"""Tokens as pieces of the text: id, text (or raw bytes) and the character span they cover.

A token is a run of UTF-8 bytes, and nothing forces it to stop at a character boundary: GPT-2
writes 🚀 (4 bytes: F0 9F 9A 80) as " \\xf0\\x9f" + "\\x9a" + "\\x80". Such a token has no text of
its own, so `TokenPiece.text` is None and `data` holds its bytes; its span is the whole character
it is part of, so all pieces of one emoji share a span.

    >>> [(p.text, p.start, p.end) for p in align("a🚀", [1, 2, 3], [b"a\\xf0", b"\\x9f\\x9a", b"\\x80"])]
    [(None, 0, 2), (None, 1, 2), (None, 1, 2)]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
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
        return visible_label(bytes_label(self.data))

    def note(self) -> str:
        """What a byte fragment is, in plain words ("" for a token with text of its own)."""
        return "" if self.text is not None else fragment_note(self.data)


def bytes_label(data: bytes) -> str:
    """A byte fragment as the lab shows it: complete characters as text, the rest as hex.

    >>> bytes_label(b" \\xf0\\x9f"), bytes_label(b"\\x9a\\x80")
    (' <F0 9F>', '<9A 80>')
    """
    head = data.decode("utf-8", errors="ignore")
    if head and data.startswith(head.encode()):
        rest = data[len(head.encode()) :]
        return head + "<" + rest.hex(" ").upper() + ">"
    return "<" + data.hex(" ").upper() + ">"


HEX_TAIL = regex.compile(r"<[0-9A-F]{2}(?: [0-9A-F]{2})*>$")


def visible_label(label: str) -> str:
    """`visible` for a token label: the spaces between a byte fragment's hex bytes stay spaces.

    >>> visible_label(" <F0 9F>"), visible_label("a b")
    ('·<F0 9F>', 'a·b')
    """
    tail = HEX_TAIL.search(label)
    if tail is None:
        return visible(label)
    return visible(label[: tail.start()]) + tail.group()


def _lead_length(byte: int) -> int:
    """How many bytes the UTF-8 character starting with this byte has (0: not a start byte)."""
    if byte < 0x80:
        return 1
    if 0xC2 <= byte <= 0xDF:
        return 2
    if 0xE0 <= byte <= 0xEF:
        return 3
    if 0xF0 <= byte <= 0xF4:
        return 4
    return 0  # 0x80-0xBF continue a character; 0xC0, 0xC1 and 0xF5-0xFF never appear in UTF-8


_KINDS = {
    2: "a 2-byte character (accented letters, Greek, Cyrillic...)",
    3: "a 3-byte character (most Chinese, Japanese and Korean, many symbols)",
    4: "a 4-byte character (often an emoji)",
}


def fragment_note(data: bytes) -> str:
    """A byte fragment explained: which part of a UTF-8 character its bytes are.

    A character is 1 to 4 bytes: the first byte says how many, the others ("continuation
    bytes", 80 to BF in hex) carry the rest. A token may hold only some of them.

    >>> fragment_note(b"\\xf0")
    'byte fragment: start of a 4-byte character (often an emoji)'
    >>> fragment_note(b"\\x9a\\x80")
    'byte fragment: 2 continuation bytes (the middle or end of a longer character)'
    >>> fragment_note(b" \\xf0\\x9f")
    'byte fragment: a space, then the first 2 bytes of a 4-byte character (often an emoji)'
    """
    parts: list[str] = []
    position, size = 0, len(data)
    loose = 0  # continuation bytes before any start byte
    while position < size and 0x80 <= data[position] <= 0xBF:
        loose += 1
        position += 1
    if loose:
        word = "byte" if loose == 1 else "bytes"
        parts.append(f"{loose} continuation {word} (the middle or end of a longer character)")
    text = ""
    while position < size:
        length = _lead_length(data[position])
        chunk = data[position : position + length]
        if length == 0:
            parts.append(f"the byte {data[position]:02X}, which never appears in UTF-8 text")
            position += 1
            continue
        if len(chunk) < length or any(not 0x80 <= b <= 0xBF for b in chunk[1:]):
            if text:
                parts.append(_text_words(text))
                text = ""
            kind = _KINDS[length]
            taken = len(chunk)
            while taken > 1 and not all(0x80 <= b <= 0xBF for b in chunk[1:taken]):
                taken -= 1
            parts.append(f"start of {kind}" if taken == 1 else f"the first {taken} bytes of {kind}")
            position += taken
            continue
        text += chunk.decode("utf-8")
        position += length
    if text:
        parts.append(_text_words(text))
    return "byte fragment: " + ", then ".join(parts)


def _text_words(text: str) -> str:
    return "a space" if text == " " else f"the text {text!r}"


# Spaces, tabs and newlines as marks; other control characters (U+0000..U+001F, U+007F) as their
# Unicode "control picture" (U+2400 + code). One `str.translate` does it all in a single pass.
_VISIBLE = {code: chr(0x2400 + code) for code in range(32)}
_VISIBLE |= {ord(" "): "·", ord("\t"): "→", ord("\r"): "␍", ord("\n"): "↵", 127: "␡"}


def visible(text: str) -> str:
    """Spaces, tabs, newlines and other control characters as visible marks.

    >>> visible("a b\\tc\\n\\x00")
    'a·b→c↵␀'
    """
    return text.translate(_VISIBLE)


def clean_text(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, the replacement character."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def has_lone_surrogates(text: str) -> bool:
    return bool(_LONE_SURROGATE.search(text))


def require_utf8(text: str, name: str = "prompt") -> str:
    """Return `text`, or raise ValueError when it cannot be written as UTF-8.

    A lone surrogate ("\\ud800") is a valid Python str but not text a tokenizer can read.

    >>> require_utf8("\\ud800x")
    Traceback (most recent call last):
    ...
    ValueError: prompt has an invalid character '\\ud800' at position 0: allowed: text that can be written as UTF-8
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} has an invalid character {text[error.start]!r} at position {error.start}: "
            "allowed: text that can be written as UTF-8"
        ) from None
    return text


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


_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True)
class TokenName:
    """One token as every candidate list shows it (see `token_name`)."""

    label: str  # the token's exact text; a byte fragment's bytes in hex, e.g. " <F0 9F>"
    note: str = ""  # what a byte fragment is, in plain words; "" for a token with text

    @property
    def fragment(self) -> bool:
        return bool(self.note)


def _fragment_bytes(tokenizer: Any, token_id: int) -> bytes | None:
    """The bytes of a token whose decoded text is not whole characters (None: not knowable).

    SentencePiece tokenizers (Gemma) name a raw byte "<0xF0>"; byte-level ones (SmolLM2, GPT-2)
    write each byte as a printable character ("ðŁ" is F0 9F).
    """
    raw = tokenizer.convert_ids_to_tokens(int(token_id))
    if not isinstance(raw, str) or not raw:
        return None
    found = _BYTE_TOKEN.fullmatch(raw)
    if found:
        return bytes([int(found[1], 16)])
    table = _gpt2_unicode_to_byte()
    if all(c in table for c in raw):
        return bytes(table[c] for c in raw)
    return None


_names: dict[int, tuple[Any, dict[int, TokenName]]] = {}
_names_lock = threading.Lock()


def token_name(tokenizer: Any, token_id: int) -> TokenName:
    """Name a token of a Hugging Face tokenizer the way the Tokenizers page does.

    Decoding a token that is only part of a UTF-8 character gives "\ufffd", the replacement
    character; such a token is shown by its bytes instead, with a note saying which part of a
    character they are. Names are remembered per tokenizer (lists ask for the same ids often).

    >>> from llmlab import models                                    # doctest: +SKIP
    >>> tokenizer = models.load("smollm2-135m-instruct").tokenizer   # doctest: +SKIP
    >>> token_name(tokenizer, 15107)                                 # doctest: +SKIP
    TokenName(label=' <F0 9F>', note='byte fragment: a space, then the first 2 bytes of a 4-byte character (often an emoji)')
    """
    token_id = int(token_id)
    with _names_lock:
        entry = _names.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:  # an id can be reused by a new object
            entry = (tokenizer, {})
            _names[id(tokenizer)] = entry
            while len(_names) > 32:
                _names.pop(next(iter(_names)))
    known = entry[1]
    name = known.get(token_id)
    if name is None:
        name = _name(tokenizer, token_id)
        known[token_id] = name
    return name


def _name(tokenizer: Any, token_id: int) -> TokenName:
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    if "\ufffd" in text:
        data = _fragment_bytes(tokenizer, token_id)
        if data is not None and not _decodes(data):
            return TokenName(bytes_label(data), fragment_note(data))
    if not text:  # a token that decodes to nothing: show its raw name
        text = str(tokenizer.convert_ids_to_tokens(token_id))
    return TokenName(text)


def token_label(tokenizer: Any, token_id: int) -> str:
    """`token_name(tokenizer, token_id).label`: the token's text, or its bytes as hex."""
    return token_name(tokenizer, token_id).label


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


def char_byte_starts(text: str) -> np.ndarray:
    """Byte offset where each character starts in the text's UTF-8, plus the total at the end.

    A prefix sum of each character's UTF-8 length (1 to 4 bytes; a lone surrogate counts 1, the
    "?" that `errors="replace"` writes for it).

    >>> char_byte_starts("aé🚀").tolist()
    [0, 1, 3, 7]
    """
    starts = np.zeros(len(text) + 1, dtype=np.int64)
    if text.isascii():
        starts[1:] = np.arange(1, len(text) + 1)
        return starts
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    lengths = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
    lengths -= 2 * ((codes >= 0xD800) & (codes <= 0xDFFF))  # lone surrogate: 3 -> 1
    np.cumsum(lengths, out=starts[1:])
    return starts


@dataclass(frozen=True)
class PiecesSummary:
    """All of a text's tokens counted, and only the first `limit` of them made into pieces.

    A page shows the first 1,000 tokens as chips; a 100,000-character text has ~25,000 tokens,
    and building a piece for each would cost more than tokenizing. The counts are those of
    `pieces(text)` (the tests check it).
    """

    tokens: int
    unknown: int  # tokens that are the tokenizer's [UNK]
    fragments: int  # tokens that are only part of a UTF-8 character (`text` is None)
    first: list[TokenPiece]  # the first `limit` pieces


def _spans(text: str, token_bytes: list[bytes]) -> tuple[list[int], list[int], np.ndarray, bool]:
    """Character spans of all tokens at once, whether each token's ends fall on character
    boundaries, and whether the tokens spell the text (then such a token is always valid UTF-8).
    """
    data = text.encode("utf-8", errors="replace")
    size = len(data)
    starts = char_byte_starts(text)  # (characters + 1,) byte offsets, last one == size
    lengths = np.fromiter(map(len, token_bytes), dtype=np.int64, count=len(token_bytes))
    joined = b"".join(token_bytes) if lengths.sum() in (size, size + 1) else b""
    # SentencePiece adds a leading space ("▁") that is not in the text: skip that byte.
    skip = 1 if len(joined) == size + 1 and joined == b" " + data else 0
    spelled = skip == 1 or (len(joined) == size and joined == data)
    # Each token covers bytes [begin, finish) of the text, clipped to the text.
    ends = np.cumsum(lengths) - skip
    begins = np.clip(ends - lengths, 0, size)
    finishes = np.clip(ends, 0, size)
    # The character holding byte b is the last one starting at or before b.
    first = np.searchsorted(starts, begins, side="right") - 1
    last = np.searchsorted(starts, finishes - 1, side="right")  # last character + 1
    spans_start = np.where(begins < size, first, len(text))
    spans_end = np.where(finishes > begins, last, spans_start)
    whole = (starts[np.searchsorted(starts, begins)] == begins) & (
        starts[np.minimum(np.searchsorted(starts, finishes), len(text))] == finishes
    )
    return spans_start.tolist(), spans_end.tolist(), whole, spelled


def _build(
    ids: list[int],
    token_bytes: list[bytes],
    starts: list[int],
    ends: list[int],
    whole: list[bool],
    unknown_id: int | None,
) -> list[TokenPiece]:
    pieces = []
    add = pieces.append
    for index, chunk, start, end, on_boundaries in zip(
        ids, token_bytes, starts, ends, whole, strict=True
    ):
        # A token has text only when both its ends fall on character boundaries.
        try:
            piece_text = chunk.decode("utf-8") if on_boundaries else None
        except UnicodeDecodeError:
            piece_text = None
        add(_piece(index, piece_text, chunk, start, end, index == unknown_id))
    return pieces


def align(
    text: str, ids: list[int], token_bytes: list[bytes], unknown_id: int | None = None
) -> list[TokenPiece]:
    """Give each token its character span by walking the text's UTF-8 bytes.

    SentencePiece tokenizers add a leading space ("▁") that is not in the text: that byte is
    skipped. When the tokens do not spell the text (a normalizing tokenizer), spans are clipped.
    """
    starts, ends, whole, _ = _spans(text, token_bytes)
    return _build(ids, token_bytes, starts, ends, whole.tolist(), unknown_id)


def summarize(
    text: str,
    ids: list[int],
    token_bytes: list[bytes],
    unknown_id: int | None = None,
    limit: int = 1000,
) -> PiecesSummary:
    """`align`, counted for all tokens but built only for the first `limit`.

    >>> s = summarize("a🚀", [1, 2, 3], [b"a\\xf0", b"\\x9f\\x9a", b"\\x80"], limit=1)
    >>> s.tokens, s.fragments, [p.start for p in s.first]
    (3, 3, [0])
    """
    starts, ends, whole, spelled = _spans(text, token_bytes)
    flags = whole.tolist()
    if spelled:  # every token on boundaries is a run of whole characters of the text
        fragments = len(ids) - sum(flags)
    else:
        pairs = zip(token_bytes, flags, strict=True)
        fragments = sum(1 for chunk, ok in pairs if not (ok and _decodes(chunk)))
    first = _build(
        ids[:limit], token_bytes[:limit], starts[:limit], ends[:limit], flags[:limit], unknown_id
    )
    unknown = ids.count(unknown_id) if unknown_id is not None else 0
    return PiecesSummary(len(ids), unknown, fragments, first)


def _decodes(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_new = object.__new__


def _piece(
    id: int, text: str | None, data: bytes, start: int, end: int, unknown: bool
) -> TokenPiece:
    """`TokenPiece(...)` for the hot loop of `align`: the same frozen object, filled without the
    frozen `__init__` (which sets each field through `object.__setattr__`; 2-3x slower)."""
    piece = _new(TokenPiece)
    piece.__dict__.update(id=id, text=text, data=data, start=start, end=end, unknown=unknown)
    return piece
