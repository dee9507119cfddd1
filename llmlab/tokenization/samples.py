"""Ready-made texts for the Tokenizers page, and the token-span view as escaped HTML.

>>> from llmlab.tokenization.pieces import PiecesSummary, TokenPiece
>>> chip = pieces_html([TokenPiece(1, "<b> ", b"<b> ", 0, 4)], show_ids=True)
>>> "&lt;b&gt;·" in chip, "<b>" in chip
(True, False)
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from llmlab.tokenization.pieces import PiecesSummary, TokenPiece

EXAMPLES: dict[str, str] = {
    "English prose": (
        "Unbelievable tokenization powers! Language models never see letters: they see numbers, "
        "one per token, and a token is often a whole common word or just a piece of a rare one."
    ),
    "Python code": (
        "def fibonacci(n: int) -> int:\n"
        "    if n < 2:\n"
        "        return n\n"
        "    return fibonacci(n - 1) + fibonacci(n - 2)\n"
    ),
    "Numbers and arithmetic": "12345 + 67890 = 80235\n3.14159 * 2 = 6.28318\n1,000,000 / 7 ≈ 142857",
    "Emoji": "The 🌟 star-player scored 40 points! 🚀🔥 Family: 👩‍👩‍👧 Flags: 🇯🇵 🇧🇷",
    "Several languages": (
        "Hello, how are you?\nBonjour, comment ça va ?\nHola, ¿cómo estás?\n"
        "你好，你好吗？\n안녕하세요, 어떻게 지내세요?\nمرحبا، كيف حالك؟\nनमस्ते, आप कैसे हैं?"
    ),
}

# One sentence, translated: the "multilingual tax" is how many more tokens other languages pay.
MULTILINGUAL: dict[str, str] = {
    "English": "The weather is nice today, so we are going for a walk in the park.",
    "French": "Il fait beau aujourd'hui, alors nous allons nous promener dans le parc.",
    "German": "Das Wetter ist heute schön, also gehen wir im Park spazieren.",
    "Chinese": "今天天气很好，所以我们要去公园散步。",
    "Japanese": "今日は天気がいいので、公園に散歩に行きます。",
    "Korean": "오늘 날씨가 좋아서 우리는 공원에 산책하러 갑니다.",
    "Arabic": "الطقس جميل اليوم، لذلك سنذهب في نزهة في الحديقة.",
    "Hindi": "आज मौसम अच्छा है, इसलिए हम पार्क में टहलने जा रहे हैं।",
}

# Light tints of the Okabe-Ito colours: dark text stays readable on every one.
TINTS = ["#CCE3F0", "#FAE7BF", "#BFE7DC", "#F5D6BF", "#D5ECFA", "#F2DDEA", "#FBF8CF"]
FRAGMENT = "#E0E0E0"
UNKNOWN = "#F4B6B6"


@dataclass(frozen=True)
class PieceStats:
    tokens: int
    characters: int
    characters_per_token: float
    unknown: int
    fragments: int


def piece_stats(text: str, pieces: list[TokenPiece]) -> PieceStats:
    """Counts shown above each tokenizer's spans.

    >>> piece_stats("hello", [TokenPiece(1, "hello", b"hello", 0, 5)]).characters_per_token
    5.0
    """
    tokens = len(pieces)
    return PieceStats(
        tokens=tokens,
        characters=len(text),
        characters_per_token=round(len(text) / tokens, 2) if tokens else 0.0,
        unknown=sum(p.unknown for p in pieces),
        fragments=sum(p.text is None for p in pieces),  # `p.fragment`, without a call per piece
    )


def summary_stats(text: str, summary: PiecesSummary) -> PieceStats:
    """`piece_stats` from a `PiecesSummary` (the counts over all tokens, not only the first)."""
    tokens = summary.tokens
    return PieceStats(
        tokens=tokens,
        characters=len(text),
        characters_per_token=round(len(text) / tokens, 2) if tokens else 0.0,
        unknown=summary.unknown,
        fragments=summary.fragments,
    )


def pieces_html(
    pieces: list[TokenPiece], show_ids: bool = False, limit: int = 1000, total: int | None = None
) -> str:
    """Each token as a coloured chip (escaped), whitespace visible, byte fragments dashed.

    Only the first `limit` tokens become chips (a browser slows down on tens of thousands of
    them); the rest are counted (`total`: how many tokens there are in all, when `pieces` holds
    only the first ones, as `Tokenizer.summary` gives them). Colours are CSS classes (see `CSS`), so each chip stays short:
    a 10 KB text gives ~2,500 tokens, and all chosen tokenizers' rows go to the browser at once.

    >>> pieces_html([TokenPiece(7, "a", b"a", 0, 1)] * 3, limit=2).count('class="tok ')
    2
    """
    chips = []
    add = chips.append
    tints = len(TINTS)
    for index, piece in enumerate(pieces[:limit]):
        if piece.unknown:
            kind = "tok-unk"
            about = "unknown token: the original characters are lost · "
        elif piece.text is None:
            kind, about = "tok-frag", "byte fragment: only part of a character · "
        else:
            kind, about = f"tok-c{index % tints}", ""
        if piece.text is None:
            kind += " tok-dash"
        # The title holds only fixed words, digits and hex: nothing in it needs escaping.
        title = f"{about}id {piece.id} · bytes {piece.data.hex(' ').upper() or '(none)'}"
        body = html.escape(piece.label())
        if show_ids:
            body += f'<sub class="tok-id">{piece.id}</sub>'
        add(f'<span class="tok {kind}" title="{title}">{body}</span>')
        if piece.text is not None and piece.text.endswith("\n"):
            add("<br>")
    more = (len(pieces) if total is None else total) - limit
    tail = f'<span class="tok-more">… and {more:,} more tokens</span>' if more > 0 else ""
    return f'<div class="tok-row">{"".join(chips)}{tail}</div>'


CSS = (
    """<style>
.tok-row {line-height: 2.1; font-family: ui-monospace, monospace; font-size: 0.95rem;}
.tok {padding: 2px 3px; margin: 0 1px; border-radius: 4px; color: #111; white-space: pre;}
.tok-id {color: #555; font-size: 0.7rem; margin-left: 2px;}
.tok-more {color: #555; font-style: italic; margin-left: 6px;}
.tok-dash {border: 1px dashed #555;}
"""
    + "".join(f".tok-c{i} {{background: {color};}}\n" for i, color in enumerate(TINTS))
    + f".tok-frag {{background: {FRAGMENT};}}\n.tok-unk {{background: {UNKNOWN};}}\n</style>"
)


def byte_pieces(chunks: list[bytes]) -> list[TokenPiece]:
    """Token pieces for raw byte chunks (a BPE replay): text when the bytes are whole characters.

    >>> [p.label() for p in byte_pieces([b"hi ", b"\\xf0\\x9f", b"\\x9a\\x80"])]
    ['hi·', '<F0 9F>', '<9A 80>']
    """
    out, position = [], 0
    for index, chunk in enumerate(chunks):
        try:
            text: str | None = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        out.append(TokenPiece(index, text, chunk, position, position + len(chunk)))
        position += len(chunk)
    return out
