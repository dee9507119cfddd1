"""Where a branch leaves its parent, as plain data that fits in a link: ``parent.step.token``.

A tree of generations is the original (node 0) and its branches, numbered in the order they were
made; each branch names the node it leaves, the step where it leaves it and the token it takes
there. A branch of a beam search may also name the beam (kept or pruned) it continues. No torch
here: links and settings files read these without loading a model.

>>> BranchPoint.from_text("0.3.1234")
BranchPoint(parent=0, step=3, token_id=1234, beam=None)
>>> BranchPoint(1, 5, 42, beam=2).text
'1.5.42.2'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BRANCHES = 12  # a tree a classroom can still read; each branch is a whole generation
MAX_STEP = 511  # steps are counted from 0; a run has at most 512 new tokens
MAX_TOKEN_ID = 2**31 - 1
MAX_BEAM = 15  # a beam search keeps at most 8 beams and records twice as many continuations
_FORM = re.compile(r"(\d{1,4})\.(\d{1,4})\.(\d{1,10})(?:\.(\d{1,2}))?")


@dataclass(frozen=True)
class BranchPoint:
    """A branch: leave node `parent` at `step` (counted from 0) taking `token_id` there."""

    parent: int  # 0 = the original, n = the n-th branch made
    step: int
    token_id: int
    beam: int | None = None  # beam search: the index of the beam in that step's record

    @property
    def text(self) -> str:
        beam = "" if self.beam is None else f".{self.beam}"
        return f"{self.parent}.{self.step}.{self.token_id}{beam}"

    @classmethod
    def from_text(cls, text: str) -> BranchPoint:
        """Read ``parent.step.token`` (or ``parent.step.token.beam``); ValueError if malformed.

        >>> BranchPoint.from_text("0.600.5")
        Traceback (most recent call last):
        ...
        ValueError: branch='0.600.5' is not allowed: the step must be 0..511
        """
        match = _FORM.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"branch={text!r:.40} is not allowed: write parent.step.token (three whole "
                "numbers, a fourth for a beam), for instance 0.3.1234"
            )
        parent, step, token, beam = match.groups()
        point = cls(int(parent), int(step), int(token), None if beam is None else int(beam))
        if point.step > MAX_STEP:
            raise ValueError(f"branch={text!r} is not allowed: the step must be 0..{MAX_STEP}")
        if point.token_id > MAX_TOKEN_ID:
            raise ValueError(f"branch={text!r} is not allowed: the token id is too large")
        if point.beam is not None and point.beam > MAX_BEAM:
            raise ValueError(f"branch={text!r} is not allowed: the beam must be 0..{MAX_BEAM}")
        return point


def read_points(texts: list[str]) -> list[BranchPoint]:
    """A whole tree's branch points; each must leave a node made before it.

    >>> [p.parent for p in read_points(["0.1.7", "1.2.9"])]
    [0, 1]
    >>> read_points(["2.1.7"])
    Traceback (most recent call last):
    ...
    ValueError: branch='2.1.7' is not allowed: branch 1 can only leave the original (0)
    """
    if len(texts) > MAX_BRANCHES:
        raise ValueError(f"branches: {len(texts)} given, at most {MAX_BRANCHES} allowed")
    points = []
    for number, text in enumerate(texts, start=1):
        point = BranchPoint.from_text(text)
        if point.parent >= number:
            allowed = "the original (0)" if number == 1 else f"a node 0..{number - 1}"
            raise ValueError(
                f"branch={text!r} is not allowed: branch {number} can only leave {allowed}"
            )
        points.append(point)
    return points
