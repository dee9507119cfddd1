"""Class mode's library: the class store (a real database) and the activities' model side.

- `store`: `ClassStore` (SQLite by default, PostgreSQL by `LLMLAB_DATABASE_URL`), one per URL
  through `store_for`; classes, students, rounds and answers, with the roles enforced.
- `schema`: the tables, the schema version and its migrations.
- `activities`: "Guess the next token", "Sample together", "How many tokens?" against the
  real models and tokenizers.
- `charts`: pure Plotly figures for the projected view.

Every refusal of the store is a `ClassError` (`ClassNotFound`, `ClassExpired`, `NotTeacher`,
`NotStudent`, `JoinRefused` with a `reason`, `RoundClosed`, `LeaderboardHidden`) whose message
is written for the page; bad text or numbers raise `ValueError`. Beyond the methods first
listed, the store also has `rounds(code)` (every round, oldest first) and `student(code,
token)` (who holds a token), and `activities` has `matched_count`, `sample_answer`,
`token_guess_detail`, `score_token_guess` and `class_token_table`.
"""

from __future__ import annotations

from llmlab.classroom.store import (
    Answer,
    ClassError,
    ClassExpired,
    ClassInfo,
    ClassNotFound,
    ClassStore,
    JoinRefused,
    LeaderboardHidden,
    NotStudent,
    NotTeacher,
    RoundClosed,
    RoundInfo,
    StudentPass,
    TeacherPass,
    default_url,
    store_for,
)

__all__ = [
    "Answer", "ClassError", "ClassExpired", "ClassInfo", "ClassNotFound", "ClassStore",
    "JoinRefused", "LeaderboardHidden", "NotStudent", "NotTeacher", "RoundClosed", "RoundInfo",
    "StudentPass", "TeacherPass", "default_url", "store_for",
]  # fmt: skip
