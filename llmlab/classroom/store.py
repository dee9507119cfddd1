"""The class store: classes, students, rounds and answers in a real database.

One `ClassStore` per database URL serves every session of the server (`store_for`). It holds
no per-session state: each call is one unit of work in its own `Session`, so it is safe to call
from many threads at once, and from several servers sharing one PostgreSQL.

Roles are enforced here, not in the page:

- the teacher key (`secrets.token_urlsafe`) runs the lesson; only its sha256 is stored and it is
  compared with `hmac.compare_digest`;
- a student's token (also a secret, also stored hashed) submits that student's answers;
- a student never gets another student's name: `answers` needs the teacher key and
  `leaderboard` needs the teacher key or the teacher's "show the leaderboard".

>>> from datetime import datetime, timezone
>>> store = ClassStore("sqlite://", now=lambda: datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
>>> teacher = store.create_class("Year 9")
>>> student = store.join(teacher.code, "Ada", client="tablet-1")
>>> round_ = store.open_round(teacher.code, teacher.teacher_key, "guess", {"prompt": "Hi"})
>>> store.submit(teacher.code, student.token, round_.id, "there")
True
>>> store.submit(teacher.code, student.token, round_.id, "there")  # a double click
False
>>> [(a.student_name, a.answer) for a in store.answers(teacher.code, teacher.teacher_key, round_.id)]
[('Ada', 'there')]
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from llmlab.classroom.activities import ACTIVITIES
from llmlab.classroom.schema import AnswerRow, ClassRow, RoundRow, StudentRow, migrate
from llmlab.tokenization.pieces import require_utf8

# Letters and digits a class reads off a projector without mixing them up: no 0/O, 1/I/L, 5/S...
CODE_ALPHABET = "ABCDEFGHJKMNPQRTUVWXYZ2346789"
CODE_LENGTH = 6  # 29**6 = 595 million codes
MAX_NAME = 40
MAX_ANSWER = 200
STATUSES = ("open", "closed", "revealed")
DEFAULT_CLASS_HOURS = 12.0
DEFAULT_MAX_STUDENTS = 200
# Join attempts with a code that is unknown or expired, per sliding minute. Only failures count,
# so thirty students behind one school address all join; one client trying codes is stopped
# after a few, and the global cap stops many clients trying together.
FAILED_JOINS_PER_CLIENT = 10
FAILED_JOINS_GLOBAL = 300
JOIN_WINDOW = timedelta(minutes=1)

_ADJECTIVES = (
    "Brave", "Calm", "Clever", "Curious", "Eager", "Gentle", "Happy", "Jolly", "Keen", "Kind",
    "Lively", "Lucky", "Merry", "Nimble", "Patient", "Quick", "Quiet", "Sunny", "Swift", "Witty",
)  # fmt: skip
_ANIMALS = (
    "Badger", "Crane", "Dolphin", "Falcon", "Fox", "Heron", "Koala", "Lynx", "Marten", "Otter",
    "Owl", "Panda", "Puffin", "Rabbit", "Raven", "Seal", "Sparrow", "Tiger", "Turtle", "Wren",
)  # fmt: skip


# --- errors ------------------------------------------------------------------------------------


class ClassError(Exception):
    """Base of the store's refusals; the message is written for the person on the page."""


class ClassNotFound(ClassError):
    """No class has this code (never created, or expired and deleted)."""


class ClassExpired(ClassNotFound):
    """The class's time is up; its rows are deleted by `purge_expired`."""


class NotTeacher(ClassError):
    """The teacher key is missing or wrong for this class."""


class NotStudent(ClassError):
    """The student token does not belong to this class."""


class JoinRefused(ClassError):
    """A join was refused; `reason` is one of "unknown", "expired", "full", "rate_limited"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RoundClosed(ClassError):
    """The round takes no more answers (closed or revealed), or it is not this class's round."""


class LeaderboardHidden(ClassError):
    """The teacher has not shown the leaderboard, and the caller has no teacher key."""


# --- what the store hands out ------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherPass:
    code: str
    teacher_key: str  # the secret of the teacher link; shown once, stored only as a hash
    title: str
    expires_at: datetime


@dataclass(frozen=True)
class StudentPass:
    code: str
    student_id: int
    name: str
    token: str  # the student's secret: keep it in the student's session only


@dataclass(frozen=True)
class RoundInfo:
    id: int
    number: int  # 1, 2, ... within the class
    activity: str
    settings: dict[str, Any]
    status: str  # "open" | "closed" | "revealed"
    opened_at: datetime


@dataclass(frozen=True)
class ClassInfo:
    code: str
    title: str
    created_at: datetime
    expires_at: datetime
    student_count: int
    current_round: RoundInfo | None
    leaderboard_shown: bool


@dataclass(frozen=True)
class Answer:
    round_id: int
    student_name: str
    answer: str
    detail: dict[str, Any] | None
    score: float | None
    submitted_at: datetime


# --- configuration -----------------------------------------------------------------------------


def default_url() -> str:
    """LLMLAB_DATABASE_URL, else a SQLite file ``<LLMLAB_HOME>/classes.db``.

    >>> import os
    >>> os.environ["LLMLAB_DATABASE_URL"] = "postgresql://lab@db/lab"
    >>> default_url()
    'postgresql://lab@db/lab'
    >>> del os.environ["LLMLAB_DATABASE_URL"]
    """
    url = os.environ.get("LLMLAB_DATABASE_URL", "").strip()
    if url:
        return url
    from llmlab.assets import cache_dir

    return f"sqlite:///{cache_dir() / 'classes.db'}"


def engine_url(url: str) -> str:
    """The URL SQLAlchemy gets: plain PostgreSQL URLs use psycopg 3 (the pinned driver).

    >>> engine_url("postgres://lab@db/lab")
    'postgresql+psycopg://lab@db/lab'
    >>> engine_url("sqlite:///classes.db")
    'sqlite:///classes.db'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _env_number(name: str, default: float, low: float, whole: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name}={raw!r} is not allowed: allowed {kind} of at least {low:g}")
    return value


def class_hours() -> float:
    """LLMLAB_CLASS_HOURS: how long a class lives (default 12)."""
    return _env_number("LLMLAB_CLASS_HOURS", DEFAULT_CLASS_HOURS, 0.01)


def max_students() -> int:
    """LLMLAB_MAX_STUDENTS: how many students one class takes (default 200)."""
    return int(_env_number("LLMLAB_MAX_STUDENTS", DEFAULT_MAX_STUDENTS, 1, whole=True))


# --- helpers -----------------------------------------------------------------------------------


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _naive(moment: datetime) -> datetime:
    """UTC without a time zone, as stored."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_text(value: object, name: str, limit: int) -> str:
    """A name or an answer as given, or a ValueError saying what is allowed.

    Text is stored exactly as typed (the page shows it as text, never as HTML). Only what no
    database can hold is refused: a NUL character and lone surrogates.

    >>> check_text("<b>Ada</b>", "name", 40)
    '<b>Ada</b>'
    >>> check_text("x" * 41, "name", 40)
    Traceback (most recent call last):
    ...
    ValueError: name is 41 characters long: allowed at most 40
    """
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long: allowed at most {limit}")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character (\\x00): allowed any other text")
    require_utf8(value, name)
    return value


def _json_safe(value: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be JSON data (text, numbers, lists, dicts): {error}"
        ) from None


class _JoinLimiter:
    """Failed join attempts in a sliding window, per client and in total (in memory).

    Nothing is written to the database for a refused attempt, so trying many codes cannot fill
    it. Each server keeps its own counts: with several replicas the caps add up.
    """

    def __init__(self, per_client: int, overall: int, window: timedelta, max_clients: int = 10_000):
        self.per_client, self.overall, self.window = per_client, overall, window
        self.max_clients = max_clients
        self.failures: dict[str, deque[datetime]] = {}
        self.all_failures: deque[datetime] = deque()
        self.lock = threading.Lock()

    def _trim(self, times: deque[datetime], now: datetime) -> None:
        while times and now - times[0] >= self.window:
            times.popleft()

    def allowed(self, client: str, now: datetime) -> bool:
        with self.lock:
            self._trim(self.all_failures, now)
            if len(self.all_failures) >= self.overall:
                return False
            times = self.failures.get(client)
            if times is None:
                return True
            self._trim(times, now)
            return len(times) < self.per_client

    def failed(self, client: str, now: datetime) -> None:
        with self.lock:
            self.all_failures.append(now)
            if client not in self.failures and len(self.failures) >= self.max_clients:
                for old in [
                    c for c, t in self.failures.items() if not t or now - t[-1] >= self.window
                ]:
                    del self.failures[old]
                if len(self.failures) >= self.max_clients:  # still full: forget the oldest
                    del self.failures[next(iter(self.failures))]
            self.failures.setdefault(client, deque()).append(now)


# --- the store ---------------------------------------------------------------------------------


class ClassStore:
    """Every class of one database. Thread-safe; shared by every session (never mutated by one).

    ``now`` gives the current time (aware UTC); tests pass their own clock to see expiry.
    """

    def __init__(self, url: str | None = None, *, now: Callable[[], datetime] = _utc_now):
        self.url = url or default_url()
        self._now = now
        self.engine = _make_engine(self.url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # Units of work that write start with BEGIN IMMEDIATE on SQLite (see _make_engine): two
        # servers starting at once on one file then migrate one after the other.
        self._write_engine = self.engine.execution_options(llmlab_write=True)
        migrate(self._write_engine)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._joins = _JoinLimiter(FAILED_JOINS_PER_CLIENT, FAILED_JOINS_GLOBAL, JOIN_WINDOW)
        self.purge_expired()  # a server restarting after a class's end clears it out

    def __repr__(self) -> str:
        return f"ClassStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        """Close the database connections (a test's or a benchmark's end)."""
        self.engine.dispose()

    def now(self) -> datetime:
        return _naive(self._now())

    # --- lookups inside a unit of work ---

    def _class(self, session: Session, code: object, lock: bool = False) -> ClassRow:
        if not isinstance(code, str) or not code.strip():
            raise ClassNotFound("no class code given: type the code shown on the board")
        query = select(ClassRow).where(ClassRow.code == code.strip().upper())
        if lock:  # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers
            query = query.with_for_update()
        row = session.scalars(query).one_or_none()
        if row is None:
            raise ClassNotFound(f"no class has the code {code.strip()[:16]!r}: check the code")
        if row.expires_at <= self.now():
            raise ClassExpired(
                f"class {row.code} ended at {row.expires_at:%H:%M} UTC: ask for a new code"
            )
        return row

    def _teacher(self, session: Session, code: object, key: object, lock: bool = False) -> ClassRow:
        row = self._class(session, code, lock)
        given = _hash(key) if isinstance(key, str) else ""
        if not hmac.compare_digest(given, row.teacher_key_hash):
            raise NotTeacher(f"this is not the teacher link of class {row.code}")
        return row

    def _student(self, session: Session, row: ClassRow, token: object) -> StudentRow:
        student = None
        if isinstance(token, str) and token:
            student = session.scalars(
                select(StudentRow).where(StudentRow.token_hash == _hash(token))
            ).one_or_none()
        if student is None or student.class_id != row.id:
            raise NotStudent(f"you have not joined class {row.code}: join again with its code")
        return student

    def _round(self, session: Session, row: ClassRow, round_id: object) -> RoundRow:
        found = session.get(RoundRow, round_id) if isinstance(round_id, int) else None
        if found is None or found.class_id != row.id:
            raise RoundClosed(f"round {round_id!r} is not a round of class {row.code}")
        return found

    # --- the teacher ---

    def create_class(self, title: str = "") -> TeacherPass:
        """A new class: its code, the teacher's key and when it expires."""
        title = check_text(title, "title", 200)
        self.purge_expired()
        key = secrets.token_urlsafe(24)
        created = self.now()
        expires = created + timedelta(hours=class_hours())
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self._writer.begin() as session:
                    session.add(ClassRow(code=code, title=title, teacher_key_hash=_hash(key),
                                         created_at=created, expires_at=expires,
                                         leaderboard_shown=False))  # fmt: skip
            except IntegrityError:  # that code is taken: draw another
                continue
            return TeacherPass(code, key, title, _aware(expires))
        raise RuntimeError("could not find a free class code after 20 draws")

    def verify_teacher(self, code: str, key: str) -> None:
        """Raise NotTeacher unless `key` is this class's teacher key (ClassNotFound for no class)."""
        with self._session() as session:
            self._teacher(session, code, key)

    def class_info(self, code: str) -> ClassInfo:
        """What anyone with the code may know: no names, no answers."""
        with self._session() as session:
            row = self._class(session, code)
            count = session.scalar(
                select(func.count()).select_from(StudentRow).where(StudentRow.class_id == row.id)
            )
            current = session.get(RoundRow, row.current_round_id) if row.current_round_id else None
            return ClassInfo(
                row.code, row.title, _aware(row.created_at), _aware(row.expires_at), int(count or 0),
                _round_info(current) if current is not None else None, bool(row.leaderboard_shown),
            )  # fmt: skip

    def open_round(self, code: str, key: str, activity: str, settings: dict) -> RoundInfo:
        """A new round of `activity`; it becomes the current round. An open earlier round closes."""
        if activity not in ACTIVITIES:
            raise ValueError(f"activity={activity!r} is unknown; allowed: {', '.join(ACTIVITIES)}")
        if not isinstance(settings, dict):
            raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
        settings = _json_safe(settings, "settings")
        with self._writer.begin() as session:
            row = self._teacher(session, code, key, lock=True)
            last = session.scalar(
                select(func.max(RoundRow.number)).where(RoundRow.class_id == row.id)
            )
            session.execute(
                update(RoundRow)
                .where(RoundRow.class_id == row.id, RoundRow.status == "open")
                .values(status="closed")
            )
            new = RoundRow(class_id=row.id, number=(last or 0) + 1, activity=activity,
                           settings=settings, status="open", opened_at=self.now())  # fmt: skip
            session.add(new)
            session.flush()
            row.current_round_id = new.id
            return _round_info(new)

    def _set_status(self, code: str, key: str, round_id: int, status: str) -> RoundInfo:
        with self._writer.begin() as session:
            row = self._teacher(session, code, key)
            found = self._round(session, row, round_id)
            if not (status == "closed" and found.status == "revealed"):  # a reveal stays
                found.status = status
            return _round_info(found)

    def close_round(self, code: str, key: str, round_id: int) -> RoundInfo:
        """Stop taking answers (a revealed round stays revealed)."""
        return self._set_status(code, key, round_id, "closed")

    def reveal_round(self, code: str, key: str, round_id: int) -> RoundInfo:
        """Stop taking answers and show the model's answer to everyone."""
        return self._set_status(code, key, round_id, "revealed")

    def show_leaderboard(self, code: str, key: str, shown: bool) -> None:
        """Let students see the leaderboard (names and scores), or hide it again."""
        with self._writer.begin() as session:
            self._teacher(session, code, key).leaderboard_shown = bool(shown)

    def rounds(self, code: str) -> list[RoundInfo]:
        """Every round of the class, oldest first (anyone in the class may see them)."""
        with self._session() as session:
            row = self._class(session, code)
            found = session.scalars(
                select(RoundRow).where(RoundRow.class_id == row.id).order_by(RoundRow.number)
            )
            return [_round_info(r) for r in found]

    # --- the students ---

    def join(self, code: str, name: str | None, client: str) -> StudentPass:
        """Join with the code; an empty name gets a pseudonym. `client` identifies who tries
        (the page passes the session's address), for the limit on failed attempts."""
        if name is not None:
            check_text(name, "name", MAX_NAME)
        # Who tries is for the limiter and the record only: made storable whatever it holds.
        client = str(client)[:200].encode("utf-8", "replace").decode().replace("\x00", "")
        now = self.now()
        if not self._joins.allowed(client, now):
            raise JoinRefused(
                "rate_limited", "too many attempts with wrong codes: wait a minute and try again"
            )
        token = secrets.token_urlsafe(24)
        try:
            with self._writer.begin() as session:
                row = self._class(session, code, lock=True)
                taken = set(
                    session.scalars(select(StudentRow.name).where(StudentRow.class_id == row.id))
                )
                if _count(session, row) >= max_students():
                    raise JoinRefused(
                        "full", f"class {row.code} is full ({max_students()} students)"
                    )
                if name is None or not name.strip():
                    name = _pseudonym(taken)
                student = StudentRow(class_id=row.id, name=name, token_hash=_hash(token),
                                     client=client, joined_at=now)  # fmt: skip
                session.add(student)
                session.flush()
                return StudentPass(row.code, student.id, name, token)
        except ClassExpired as error:
            self._joins.failed(client, now)
            raise JoinRefused("expired", str(error)) from None
        except ClassNotFound as error:
            self._joins.failed(client, now)
            raise JoinRefused("unknown", str(error)) from None

    def student(self, code: str, token: str) -> StudentPass:
        """Who holds this token (a student's page checks it after a restart)."""
        with self._session() as session:
            row = self._class(session, code)
            found = self._student(session, row, token)
            return StudentPass(row.code, found.id, found.name, token)

    def submit(
        self,
        code: str,
        token: str,
        round_id: int,
        answer: str,
        detail: dict | None = None,
        score: float | None = None,
    ) -> bool:
        """Record the student's answer: True when recorded, False when they already answered
        this round (the unique constraint; a double click is harmless). RoundClosed when the
        round takes no answers."""
        check_text(answer, "answer", MAX_ANSWER)
        if not answer.strip():
            raise ValueError("answer is empty: type your answer first")
        detail = _json_safe(detail, "detail")
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            raise ValueError(f"score={score!r} is not allowed: allowed a finite number or None")
        # Who and which round are read first, outside the write lock; the write itself is two
        # statements, so the many students of a burst hold SQLite's one writer lock briefly.
        with self._session() as session:
            row = self._class(session, code)
            student_id = self._student(session, row, token).id
            found = self._round(session, row, round_id)
            if found.status != "open":
                raise RoundClosed(f"round {found.number} is {found.status}: no more answers")
            number = found.number
        try:
            with self._write_engine.begin() as connection:
                # FOR SHARE on PostgreSQL: a teacher closing the round waits for this answer.
                status = connection.scalar(
                    select(RoundRow.status)
                    .where(RoundRow.id == round_id)
                    .with_for_update(read=True)
                )
                if status != "open":
                    raise RoundClosed(f"round {number} is {status}: no more answers")
                connection.execute(
                    insert(AnswerRow).values(
                        round_id=round_id, student_id=student_id, answer=answer, detail=detail,
                        score=None if score is None else float(score), submitted_at=self.now(),
                    )
                )  # fmt: skip
        except IntegrityError:
            return False
        return True

    def my_answer(self, code: str, token: str, round_id: int) -> Answer | None:
        """The student's own answer to a round, or None."""
        with self._session() as session:
            row = self._class(session, code)
            student = self._student(session, row, token)
            found = self._round(session, row, round_id)
            mine = session.scalars(
                select(AnswerRow).where(
                    AnswerRow.round_id == found.id, AnswerRow.student_id == student.id
                )
            ).one_or_none()
            return None if mine is None else _answer(mine, student.name)

    def answers(self, code: str, key: str, round_id: int) -> list[Answer]:
        """Every answer of a round with the student's name, first submitted first (teacher only)."""
        with self._session() as session:
            row = self._teacher(session, code, key)
            found = self._round(session, row, round_id)
            pairs = session.execute(
                select(AnswerRow, StudentRow.name)
                .join(StudentRow, StudentRow.id == AnswerRow.student_id)
                .where(AnswerRow.round_id == found.id)
                .order_by(AnswerRow.submitted_at, AnswerRow.id)
            )
            return [_answer(a, n) for a, n in pairs]

    def answer_count(self, code: str, round_id: int) -> int:
        """How many have answered a round (anyone in the class may know; no names)."""
        with self._session() as session:
            row = self._class(session, code)
            found = self._round(session, row, round_id)
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(AnswerRow)
                    .where(AnswerRow.round_id == found.id)
                )
                or 0
            )

    def leaderboard(self, code: str, key: str | None = None) -> list[tuple[str, float]]:
        """(name, total score) per student with a score, best first; ties by name.

        Students see it only once the teacher shows it; the teacher key sees it always.
        """
        with self._session() as session:
            if key is not None:
                row = self._teacher(session, code, key)
            else:
                row = self._class(session, code)
                if not row.leaderboard_shown:
                    raise LeaderboardHidden("the teacher has not shown the leaderboard yet")
            totals = session.execute(
                select(StudentRow.name, func.sum(AnswerRow.score))
                .join(AnswerRow, AnswerRow.student_id == StudentRow.id)
                .where(StudentRow.class_id == row.id, AnswerRow.score.is_not(None))
                .group_by(StudentRow.id, StudentRow.name)
            )
            board = [(name, float(total)) for name, total in totals]
            return sorted(board, key=lambda pair: (-pair[1], pair[0]))

    def export_csv(self, code: str, key: str) -> str:
        """Every round's answers as CSV (teacher only). Text is written exactly as typed: a
        spreadsheet may read a cell starting with "=" as a formula, so open it as text."""
        with self._session() as session:
            row = self._teacher(session, code, key)
            found = session.execute(
                select(RoundRow, AnswerRow, StudentRow.name)
                .join(AnswerRow, AnswerRow.round_id == RoundRow.id)
                .join(StudentRow, StudentRow.id == AnswerRow.student_id)
                .where(RoundRow.class_id == row.id)
                .order_by(RoundRow.number, AnswerRow.submitted_at, AnswerRow.id)
            )
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["round", "activity", "student", "answer", "score", "submitted_at",
                             "detail"])  # fmt: skip
            for round_, answer, name in found:
                writer.writerow([
                    round_.number, round_.activity, name, answer.answer,
                    "" if answer.score is None else repr(answer.score),
                    _aware(answer.submitted_at).isoformat(),
                    "" if answer.detail is None else json.dumps(answer.detail, ensure_ascii=False),
                ])  # fmt: skip
            return out.getvalue()

    def purge_expired(self) -> int:
        """Delete every expired class with its students, rounds and answers; return how many."""
        with self._writer.begin() as session:
            expired = list(
                session.scalars(select(ClassRow.id).where(ClassRow.expires_at <= self.now()))
            )
            if not expired:
                return 0
            rounds = select(RoundRow.id).where(RoundRow.class_id.in_(expired))
            session.execute(delete(AnswerRow).where(AnswerRow.round_id.in_(rounds)))
            session.execute(delete(RoundRow).where(RoundRow.class_id.in_(expired)))
            session.execute(delete(StudentRow).where(StudentRow.class_id.in_(expired)))
            session.execute(delete(ClassRow).where(ClassRow.id.in_(expired)))
            return len(expired)


def _count(session: Session, row: ClassRow) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(StudentRow).where(StudentRow.class_id == row.id)
        )
        or 0
    )


def _pseudonym(taken: set[str]) -> str:
    """A friendly name not yet taken in the class, e.g. "Curious Otter" (then "Curious Otter 2")."""
    for _ in range(40):
        name = f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_ANIMALS)}"
        if name not in taken:
            return name
    number = 2
    while f"{name} {number}" in taken:
        number += 1
    return f"{name} {number}"


def _round_info(row: RoundRow) -> RoundInfo:
    return RoundInfo(row.id, row.number, row.activity, dict(row.settings or {}), row.status,
                     _aware(row.opened_at))  # fmt: skip


def _answer(row: AnswerRow, name: str) -> Answer:
    return Answer(row.round_id, name, row.answer, row.detail, row.score, _aware(row.submitted_at))


def _make_engine(url: str) -> Engine:
    """An engine with the settings a class server needs.

    SQLite: WAL (readers never wait for the writer), a busy timeout (writers queue instead of
    failing), foreign keys on, and BEGIN IMMEDIATE for units of work that write. Without the
    last, two deferred transactions that both read then write can deadlock, and SQLite answers
    one of them "database is locked" at once, whatever the timeout.
    """
    url = engine_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    if not memory:
        path = url.split("///", 1)[1] if "///" in url else ""
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(folder, exist_ok=True)
                if not os.access(folder, os.W_OK):
                    raise PermissionError(13, "permission denied", folder)
            except OSError as error:
                raise ClassError(
                    f"the class database cannot be created in {folder} "
                    f"({error.strerror or error}): set LLMLAB_HOME to a writable folder, or "
                    "LLMLAB_DATABASE_URL to a database"
                ) from None
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # An in-memory database lives in its one connection; a file gets a pool of them.
        **({"poolclass": StaticPool} if memory else {"pool_size": 10, "max_overflow": 20}),
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we send BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        if not memory:
            _switch_to_wal(cursor)
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit is one fsync less
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get("llmlab_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _switch_to_wal(cursor: Any, patience: float = 30.0) -> None:
    """Put a SQLite file in WAL mode (it stays so: later connections find it done).

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without
    waiting for its busy timeout, when another connection is in the middle of the same switch:
    servers starting together on a new file then retry for a while instead of failing.
    """
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


_stores: dict[str, ClassStore] = {}
_stores_lock = threading.Lock()


def store_for(url: str | None = None) -> ClassStore:
    """The process-wide store for a URL (default: `default_url()`), created on first use."""
    url = url or default_url()
    with _stores_lock:
        if url not in _stores:
            _stores[url] = ClassStore(url)
        return _stores[url]


__all__ = [
    "Answer", "ClassError", "ClassExpired", "ClassInfo", "ClassNotFound", "ClassStore",
    "JoinRefused", "LeaderboardHidden", "NotStudent", "NotTeacher", "RoundClosed", "RoundInfo",
    "StudentPass", "TeacherPass", "class_hours", "default_url", "max_students", "store_for",
]  # fmt: skip
