"""What a chat model sees, as data: the rendered text, its tokens, and where each part came from.

`llmlab.chat.render_chat` builds a `RenderedChat`; `llmlab.generation.chat_runs` carries one
with a prepared run, and `llmlab.chat_formats` cuts its own renders into the same `Segment`s.

    >>> rendered = RenderedChat(
    ...     "<s>Hi", [1, 9], ["<s>", "Hi"], [True, False],
    ...     [Segment("<s>", "special"), Segment("Hi", "content")],
    ... )
    >>> rendered.n_tokens, rendered.n_special
    (2, 1)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """A stretch of the rendered text, by where it came from."""

    text: str
    kind: str  # "special" (a special token), "template" (added by the template), "content"


@dataclass(frozen=True)
class RenderedChat:
    """The exact text a chat model sees, its token ids, and which tokens are special."""

    text: str
    ids: list[int]
    tokens: list[str]  # each token's text as it appears in `text`
    special: list[bool]  # parallel to ids: True for special tokens such as <|im_start|>
    segments: list[Segment]  # `text` cut into special / template / content stretches

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_special(self) -> int:
        return sum(self.special)
