"""The class store's tables (SQLAlchemy 2.x ORM) and the schema's version with its migrations.

A class has students, rounds and answers. One answer per student per round is a unique
constraint, so a double click or a resubmit can never record twice. Times are stored as UTC
without a time zone (SQLite has no time zone type); the store hands them back as aware UTC.

Version history (``SCHEMA_VERSION`` is the newest):

1. classes, students, rounds, answers (an answer was only its text).
2. answers gain ``detail`` (JSON) and ``score``; classes gain ``leaderboard_shown``.

``migrate(engine)`` brings any older database up to date and creates a new one from scratch.

>>> SCHEMA_VERSION
2
>>> sorted(Base.metadata.tables)
['answers', 'classes', 'rounds', 'schema_version', 'students']
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class ClassRow(Base):
    __tablename__ = "classes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    teacher_key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the teacher key
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # No foreign key: rounds point at classes, and a circle of keys would need deferred checks.
    current_round_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    leaderboard_shown: Mapped[bool] = mapped_column(Boolean, default=False)


class StudentRow(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    client: Mapped[str] = mapped_column(Text, default="")
    joined_at: Mapped[datetime] = mapped_column(DateTime)


class RoundRow(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("class_id", "number", name="one_number_per_class"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    activity: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerRow(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("round_id", "student_id", name="one_answer_per_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    answer: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime)


# Version 1, as it was created: kept so the migration can be tested on a real old database.
# (Written for SQLite; `version_1_ddl` gives PostgreSQL its SERIAL keys.)
V1_DDL = (
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY)",
    "CREATE TABLE classes (id INTEGER PRIMARY KEY, code VARCHAR(16) UNIQUE NOT NULL, "
    "title TEXT NOT NULL, teacher_key_hash VARCHAR(64) NOT NULL, created_at TIMESTAMP NOT NULL, "
    "expires_at TIMESTAMP NOT NULL, current_round_id INTEGER)",
    "CREATE TABLE students (id INTEGER PRIMARY KEY, class_id INTEGER NOT NULL "
    "REFERENCES classes(id) ON DELETE CASCADE, name TEXT NOT NULL, "
    "token_hash VARCHAR(64) UNIQUE NOT NULL, client TEXT NOT NULL, joined_at TIMESTAMP NOT NULL)",
    "CREATE TABLE rounds (id INTEGER PRIMARY KEY, class_id INTEGER NOT NULL "
    "REFERENCES classes(id) ON DELETE CASCADE, number INTEGER NOT NULL, "
    "activity VARCHAR(32) NOT NULL, settings JSON NOT NULL, status VARCHAR(16) NOT NULL, "
    "opened_at TIMESTAMP NOT NULL, CONSTRAINT one_number_per_class UNIQUE (class_id, number))",
    "CREATE TABLE answers (id INTEGER PRIMARY KEY, round_id INTEGER NOT NULL "
    "REFERENCES rounds(id) ON DELETE CASCADE, student_id INTEGER NOT NULL "
    "REFERENCES students(id) ON DELETE CASCADE, answer TEXT NOT NULL, "
    "submitted_at TIMESTAMP NOT NULL, "
    "CONSTRAINT one_answer_per_round UNIQUE (round_id, student_id))",
    "INSERT INTO schema_version (version) VALUES (1)",
)


def version_1_ddl(dialect: str) -> list[str]:
    """The statements that created a version 1 database on this dialect ("sqlite", "postgresql")."""
    if dialect != "postgresql":
        return list(V1_DDL)
    return [s.replace("id INTEGER PRIMARY KEY,", "id SERIAL PRIMARY KEY,") for s in V1_DDL]


# version -> the statements that take a database from that version to the next one
UPGRADES: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE answers ADD COLUMN detail JSON",
        "ALTER TABLE answers ADD COLUMN score FLOAT",
        "ALTER TABLE classes ADD COLUMN leaderboard_shown BOOLEAN NOT NULL DEFAULT FALSE",
        "CREATE INDEX IF NOT EXISTS ix_classes_expires_at ON classes (expires_at)",
    ),
}


class SchemaError(RuntimeError):
    """The database holds a schema this version of LLM Lab cannot read."""


def database_version(engine: Engine) -> int | None:
    """The schema version stored in the database, or None for an empty database."""
    with engine.connect() as connection:
        if not engine.dialect.has_table(connection, "schema_version"):
            return None
        return connection.execute(text("SELECT MAX(version) FROM schema_version")).scalar()


def migrate(engine: Engine) -> int:
    """Create the tables, or upgrade an older schema step by step; return the version before.

    Returns 0 for a new database. Several servers may start at once on one PostgreSQL: the
    work happens under an advisory lock, so only one of them creates or upgrades the tables.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(711013)"))
        if not connection.dialect.has_table(connection, "schema_version"):
            Base.metadata.create_all(connection)
            connection.execute(text("INSERT INTO schema_version (version) VALUES (:v)"),
                               {"v": SCHEMA_VERSION})  # fmt: skip
            return 0
        found = connection.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"the class database is at schema version {found}, newer than this LLM Lab "
                f"reads (version {SCHEMA_VERSION}); update LLM Lab or point "
                "LLMLAB_DATABASE_URL at another database"
            )
        version = found
        while version < SCHEMA_VERSION:
            for statement in UPGRADES[version]:
                connection.execute(text(statement))
            version += 1
        if version != found:
            connection.execute(text("DELETE FROM schema_version"))
            connection.execute(text("INSERT INTO schema_version (version) VALUES (:v)"),
                               {"v": version})  # fmt: skip
        return found
