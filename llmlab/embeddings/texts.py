"""Lists of sentences typed by a student: one per line, blanks dropped, capped, duplicates named.

Every change made to the list is said in a notice, so nothing is dropped silently.

>>> lines = sentence_lines("A cat\\n\\nA dog\\nA cat\\n", limit=10)
>>> lines.sentences, lines.duplicates
(['A cat', 'A dog', 'A cat'], [(0, 2)])
>>> sentence_lines("a\\nb\\nc", limit=2).notices
['3 sentences were given; only the first 2 are used (the limit here).']
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SentenceLines:
    sentences: list[str]
    notices: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (first, repeat) positions
    given: int = 0  # non-blank lines before the cap


def sentence_lines(text: str, limit: int, drop_duplicates: bool = False) -> SentenceLines:
    """The non-blank lines of `text` (stripped), at most `limit` of them.

    A repeated sentence is kept (its similarity with itself is 1, which is worth seeing) or,
    with `drop_duplicates`, left out; either way a notice names it.
    """
    if limit < 1:
        raise ValueError(f"limit={limit!r} must be at least 1")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    result = SentenceLines([], given=len(lines))
    if len(lines) > limit:
        result.notices.append(
            f"{len(lines):,} sentences were given; only the first {limit:,} are used "
            "(the limit here)."
        )
        lines = lines[:limit]
    first: dict[str, int] = {}
    dropped = 0
    for line in lines:
        if line in first:
            if drop_duplicates:
                dropped += 1
                continue
            result.duplicates.append((first[line], len(result.sentences)))
        else:
            first[line] = len(result.sentences)
        result.sentences.append(line)
    if dropped:
        result.notices.append(
            f"{dropped:,} repeated sentence{'s were' if dropped > 1 else ' was'} left out: "
            "each sentence is used once."
        )
    return result


def label(index: int) -> str:
    """The short name of a sentence in charts and tables: s1, s2, ...

    >>> label(0)
    's1'
    """
    return f"s{index + 1}"
