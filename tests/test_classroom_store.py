"""The class store on both backends: SQLite (a WAL file) and PostgreSQL (a throwaway server).

Every method, the roles (wrong key, another class's key, a student's token), expiry with an
injected clock, a full class, 1,000 wrong join attempts, double submits under threads, hostile
text stored verbatim, and the migration from schema version 1.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, event, text

from llmlab.classroom import schema
from llmlab.classroom import store as store_module
from llmlab.classroom.store import (
    CODE_ALPHABET,
    CODE_LENGTH,
    FAILED_JOINS_GLOBAL,
    FAILED_JOINS_PER_CLIENT,
    ClassError,
    ClassExpired,
    ClassNotFound,
    ClassStore,
    JoinRefused,
    LeaderboardHidden,
    NotStudent,
    NotTeacher,
    RoundClosed,
    default_url,
    store_for,
)

START = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
TABLES = ("classes", "students", "rounds", "answers")
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "**bold** # heading",
    "\u202eabc\u200fdef\u202c",
    "👩\u200d💻 a\u200bb",
    "Robert'); DROP TABLE students;--",
    '=HYPERLINK("http://x")',
    "a\x01c\x07d\x1b[31mred\x7f\r\n",
    "이름",
]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'classes.db'}"
    from llmlab.classroom.postgres import create_database

    server = request.getfixturevalue("postgres_url")
    return create_database(server, "t_" + uuid.uuid4().hex[:12])


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(store_url, clock):
    made = ClassStore(store_url, now=clock)
    yield made
    made.dispose()


def _rows(store: ClassStore) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in TABLES}


def _lesson(store: ClassStore, students: int = 2):
    teacher = store.create_class("Year 9")
    passes = [store.join(teacher.code, f"S{i}", client=f"c{i}") for i in range(students)]
    round_ = store.open_round(teacher.code, teacher.teacher_key, "guess", {"prompt": "Hi"})
    return teacher, passes, round_


# --- configuration -------------------------------------------------------------------------------


def test_default_url_is_a_wal_sqlite_file_under_llmlab_home(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMLAB_DATABASE_URL", raising=False)
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path / 'home' / 'classes.db'}"
    made = ClassStore()
    try:
        assert (tmp_path / "home" / "classes.db").exists()
        with made.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        made.dispose()
    monkeypatch.setenv("LLMLAB_DATABASE_URL", "postgresql://lab@db/lab")
    assert default_url() == "postgresql://lab@db/lab"
    assert store_module.engine_url(default_url()) == "postgresql+psycopg://lab@db/lab"


def test_an_unwritable_home_is_a_clear_message(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(ClassError, match="cannot be created in .*set LLMLAB_HOME"):
        ClassStore(f"sqlite:///{blocked / 'sub' / 'classes.db'}")


def test_store_for_is_one_store_per_url(tmp_path):
    first = store_for(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert store_for(f"sqlite:///{tmp_path / 'a.db'}") is first
        other = store_for(f"sqlite:///{tmp_path / 'b.db'}")
        assert other is not first
    finally:
        for url in (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"):
            store_module._stores.pop(url).dispose()


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf"])
def test_bad_class_hours_is_a_clear_error(value, monkeypatch, tmp_path, clock):
    monkeypatch.setenv("LLMLAB_CLASS_HOURS", value)
    made = ClassStore(f"sqlite:///{tmp_path / 'c.db'}", now=clock)
    try:
        with pytest.raises(ValueError, match=rf"LLMLAB_CLASS_HOURS='{value}'.*allowed"):
            made.create_class()
    finally:
        made.dispose()


# --- the teacher --------------------------------------------------------------------------------


def test_create_class_gives_a_readable_code_a_secret_key_and_an_expiry(store, monkeypatch):
    teacher = store.create_class("Year 9 <b>")
    assert len(teacher.code) == CODE_LENGTH and set(teacher.code) <= set(CODE_ALPHABET)
    assert len(teacher.teacher_key) >= 32
    assert teacher.expires_at == START + timedelta(hours=12)
    monkeypatch.setenv("LLMLAB_CLASS_HOURS", "1.5")
    assert store.create_class().expires_at == START + timedelta(hours=1.5)
    info = store.class_info(teacher.code)
    assert (info.code, info.title, info.student_count) == (teacher.code, "Year 9 <b>", 0)
    assert info.current_round is None and info.leaderboard_shown is False
    assert info.created_at == START
    assert store.class_info(teacher.code.lower()).code == teacher.code
    # The key itself is never stored, only its hash.
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT teacher_key_hash FROM classes")).scalars().all()
    assert teacher.teacher_key not in stored and len(stored[0]) == 64


def test_codes_are_distinct(store):
    codes = {store.create_class().code for _ in range(30)}
    assert len(codes) == 30


@pytest.mark.parametrize("code", ["", "   ", "ZZZZZZ", None, 12])
def test_unknown_code_is_class_not_found(store, code):
    store.create_class()
    with pytest.raises(ClassNotFound):
        store.class_info(code)


def test_teacher_key_checks(store):
    one, two = store.create_class("one"), store.create_class("two")
    store.verify_teacher(one.code, one.teacher_key)
    student = store.join(one.code, "Ada", client="x")
    for wrong in ("", "nope", two.teacher_key, one.teacher_key + "x", student.token, None):
        with pytest.raises(NotTeacher, match=one.code):
            store.verify_teacher(one.code, wrong)
        with pytest.raises(NotTeacher):
            store.open_round(one.code, wrong, "guess", {})
        with pytest.raises(NotTeacher):
            store.show_leaderboard(one.code, wrong, True)
        with pytest.raises(NotTeacher):
            store.export_csv(one.code, wrong)
    with pytest.raises(ClassNotFound):
        store.verify_teacher("ZZZZZZ", one.teacher_key)
    # Nothing was opened by the wrong keys.
    assert store.rounds(one.code) == []


def test_open_round_numbers_rounds_and_closes_the_open_one(store):
    teacher, (ada, _), first = _lesson(store)
    assert (first.number, first.activity, first.status) == (1, "guess", "open")
    assert first.settings == {"prompt": "Hi"} and first.opened_at == START
    second = store.open_round(teacher.code, teacher.teacher_key, "tokens", {"sentence": "x"})
    assert second.number == 2
    assert store.class_info(teacher.code).current_round == second
    assert [r.status for r in store.rounds(teacher.code)] == ["closed", "open"]
    with pytest.raises(RoundClosed):
        store.submit(teacher.code, ada.token, first.id, "late")
    with pytest.raises(ValueError, match="activity='quiz' is unknown; allowed: guess, sample"):
        store.open_round(teacher.code, teacher.teacher_key, "quiz", {})
    with pytest.raises(ValueError, match="settings must be JSON data"):
        store.open_round(teacher.code, teacher.teacher_key, "guess", {"x": object()})
    with pytest.raises(ValueError, match="settings must be a dict"):
        store.open_round(teacher.code, teacher.teacher_key, "guess", ["x"])


def test_close_and_reveal(store):
    teacher, (ada, bob), round_ = _lesson(store)
    assert store.submit(teacher.code, ada.token, round_.id, "there")
    closed = store.close_round(teacher.code, teacher.teacher_key, round_.id)
    assert closed.status == "closed" and closed.id == round_.id
    with pytest.raises(RoundClosed, match="closed"):
        store.submit(teacher.code, bob.token, round_.id, "late")
    assert store.reveal_round(teacher.code, teacher.teacher_key, round_.id).status == "revealed"
    assert store.close_round(teacher.code, teacher.teacher_key, round_.id).status == "revealed"
    assert store.class_info(teacher.code).current_round.status == "revealed"
    with pytest.raises(RoundClosed, match="revealed"):
        store.submit(teacher.code, bob.token, round_.id, "late")
    # A round of another class cannot be touched with this class's key.
    other = store.create_class()
    theirs = store.open_round(other.code, other.teacher_key, "sample", {})
    with pytest.raises(RoundClosed, match="not a round of class"):
        store.close_round(teacher.code, teacher.teacher_key, theirs.id)
    with pytest.raises(RoundClosed):
        store.submit(teacher.code, ada.token, theirs.id, "x")
    with pytest.raises(RoundClosed):
        store.reveal_round(teacher.code, teacher.teacher_key, 10**9)


# --- the students --------------------------------------------------------------------------------


def test_join_with_a_name_or_a_pseudonym(store):
    teacher = store.create_class()
    ada = store.join(teacher.code, "Ada", client="a")
    assert (ada.code, ada.name) == (teacher.code, "Ada") and len(ada.token) >= 32
    names = [store.join(teacher.code, name, client="b").name for name in (None, "", "   ")] * 1
    assert all(name and name.strip() and name not in ("Ada",) for name in names)
    assert len(set(names)) == 3  # pseudonyms are distinct within a class
    assert store.join(teacher.code.lower(), "x" * 40, client="c").name == "x" * 40
    assert store.class_info(teacher.code).student_count == 5
    assert store.student(teacher.code, ada.token) == ada
    with pytest.raises(NotStudent):
        store.student(teacher.code, "not a token")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 41, "name is 41 characters long: allowed at most 40"),
        ("a\x00b", "name contains a NUL character"),
        ("x\ud800y", "name"),
        (42, "name must be text"),
    ],
)
def test_bad_names_are_refused_with_a_message(store, name, message):
    teacher = store.create_class()
    with pytest.raises(ValueError, match=message):
        store.join(teacher.code, name, client="a")
    assert store.class_info(teacher.code).student_count == 0


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_and_answers_are_stored_verbatim(store, hostile):
    teacher = store.create_class()
    student = store.join(teacher.code, hostile[:40], client="a")
    assert student.name == hostile[:40]
    round_ = store.open_round(teacher.code, teacher.teacher_key, "guess", {"prompt": hostile})
    assert store.submit(teacher.code, student.token, round_.id, hostile, {"raw": hostile})
    (answer,) = store.answers(teacher.code, teacher.teacher_key, round_.id)
    assert (answer.student_name, answer.answer, answer.detail) == (
        hostile[:40], hostile, {"raw": hostile},
    )  # fmt: skip
    assert store.class_info(teacher.code).current_round.settings == {"prompt": hostile}
    exported = list(csv.reader(io.StringIO(store.export_csv(teacher.code, teacher.teacher_key))))
    assert exported[1][2:4] == [hostile[:40], hostile]


def test_the_hostile_input_catalogue_is_stored_verbatim_or_refused_with_a_message(store):
    from test_hostile_inputs import TEXTS

    teacher = store.create_class()
    round_ = store.open_round(teacher.code, teacher.teacher_key, "guess", {})
    for label, hostile in TEXTS.items():
        for name in (hostile, hostile[:40]):
            try:
                student = store.join(teacher.code, name, client=label)
            except ValueError as error:  # too long, or a NUL: the message says what is allowed
                assert "allowed" in str(error), label
                continue
            assert student.name == (name if name.strip() else student.name), label
            for answer in (hostile, hostile[:200]):
                try:
                    recorded = store.submit(teacher.code, student.token, round_.id, answer)
                except ValueError as error:
                    assert "allowed" in str(error) or "empty" in str(error), label
                    continue
                assert recorded, label
                assert store.my_answer(teacher.code, student.token, round_.id).answer == answer
                break
    names = {a.student_name for a in store.answers(teacher.code, teacher.teacher_key, round_.id)}
    assert "<script>alert(1)</script>" in names and "# heading" in names


def test_full_class_refuses_the_next_student(store, monkeypatch):
    monkeypatch.setenv("LLMLAB_MAX_STUDENTS", "3")
    teacher = store.create_class()
    for i in range(3):
        store.join(teacher.code, f"S{i}", client="room")
    with pytest.raises(JoinRefused, match="full") as refused:
        store.join(teacher.code, "late", client="room")
    assert refused.value.reason == "full"
    assert store.class_info(teacher.code).student_count == 3
    monkeypatch.setenv("LLMLAB_MAX_STUDENTS", "many")
    with pytest.raises(ValueError, match="LLMLAB_MAX_STUDENTS='many'"):
        store.join(teacher.code, "x", client="room")


def test_default_max_students_is_200(monkeypatch):
    monkeypatch.delenv("LLMLAB_MAX_STUDENTS", raising=False)
    assert store_module.max_students() == 200


def test_1000_wrong_codes_are_refused_without_touching_the_database(store, clock):
    teacher = store.create_class()
    before = _rows(store)
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    reasons = []
    for i in range(1000):
        with pytest.raises(JoinRefused) as refused:
            store.join(f"W{i:05d}", "guesser", client="attacker")
        reasons.append(refused.value.reason)
    # A few honest "unknown code" answers, then only "wait": the code stays unguessable.
    assert reasons[:FAILED_JOINS_PER_CLIENT] == ["unknown"] * FAILED_JOINS_PER_CLIENT
    assert set(reasons[FAILED_JOINS_PER_CLIENT:]) == {"rate_limited"}
    # Refused attempts write nothing, and the limited ones do not even read.
    lookups = [s for s in statements if "FROM classes" in s]
    assert len(lookups) == FAILED_JOINS_PER_CLIENT
    assert not [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert _rows(store) == before
    # Another client in the room still joins with the right code; the attacker cannot.
    assert store.join(teacher.code, "Ada", client="student").name == "Ada"
    with pytest.raises(JoinRefused, match="wait a minute"):
        store.join(teacher.code, "guesser", client="attacker")
    clock.advance(minutes=1)
    assert store.join(teacher.code, "back", client="attacker").name == "back"


def test_wrong_codes_from_many_clients_hit_the_overall_cap(store):
    teacher = store.create_class()
    reasons = []
    for i in range(FAILED_JOINS_GLOBAL + 50):
        with pytest.raises(JoinRefused) as refused:
            store.join("ZZZZZZ", None, client=f"client-{i}")
        reasons.append(refused.value.reason)
    assert reasons.count("unknown") == FAILED_JOINS_GLOBAL
    assert reasons[FAILED_JOINS_GLOBAL:] == ["rate_limited"] * 50
    assert store.class_info(teacher.code).student_count == 0


def test_any_client_label_is_storable(store):
    teacher = store.create_class()
    for client in ("a\x00b", "x\ud800y", "<script>", "z" * 5000, 12345):
        assert store.join(teacher.code, None, client=client).name
    assert store.class_info(teacher.code).student_count == 5


def test_successful_joins_are_not_limited(store):
    teacher = store.create_class()
    for _ in range(3 * FAILED_JOINS_PER_CLIENT):  # a class behind one school address
        store.join(teacher.code, None, client="school")
    assert store.class_info(teacher.code).student_count == 3 * FAILED_JOINS_PER_CLIENT


# --- answers -------------------------------------------------------------------------------------


def test_submit_once_per_round(store, clock):
    teacher, (ada, bob), round_ = _lesson(store)
    detail = {"token_ids": [3], "reading": " there"}
    assert store.my_answer(teacher.code, ada.token, round_.id) is None
    assert store.submit(teacher.code, ada.token, round_.id, "there", detail, score=-1.5)
    assert not store.submit(teacher.code, ada.token, round_.id, "other", score=0.0)
    clock.advance(seconds=5)
    assert store.submit(teacher.code, bob.token, round_.id, "x" * 200)
    mine = store.my_answer(teacher.code, ada.token, round_.id)
    assert (mine.answer, mine.detail, mine.score, mine.student_name) == (
        "there",
        detail,
        -1.5,
        "S0",
    )
    assert mine.submitted_at == START and mine.round_id == round_.id
    got = store.answers(teacher.code, teacher.teacher_key, round_.id)
    assert [(a.student_name, a.answer, a.score) for a in got] == [
        ("S0", "there", -1.5), ("S1", "x" * 200, None),
    ]  # fmt: skip
    assert store.answer_count(teacher.code, round_.id) == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [("x" * 201, "answer is 201 characters long: allowed at most 200"), ("", "answer is empty"),
     ("  \n", "answer is empty"), ("a\x00", "NUL"), (None, "answer must be text")],
)  # fmt: skip
def test_bad_answers_are_refused(store, answer, message):
    teacher, (ada, _), round_ = _lesson(store)
    with pytest.raises(ValueError, match=message):
        store.submit(teacher.code, ada.token, round_.id, answer)
    for score in (float("nan"), float("-inf"), True, "1"):
        with pytest.raises(ValueError, match="score=.* is not allowed: allowed a finite number"):
            store.submit(teacher.code, ada.token, round_.id, "ok", score=score)
    assert store.answer_count(teacher.code, round_.id) == 0


def test_a_student_acts_only_in_their_own_class(store):
    teacher, (ada, bob), round_ = _lesson(store)
    other, (stranger,), _ = _lesson(store, students=1)
    for token in ("", "nope", stranger.token, teacher.teacher_key, None):
        with pytest.raises(NotStudent):
            store.submit(teacher.code, token, round_.id, "x")
        with pytest.raises(NotStudent):
            store.my_answer(teacher.code, token, round_.id)
    store.submit(teacher.code, ada.token, round_.id, "mine")
    assert store.my_answer(teacher.code, bob.token, round_.id) is None  # only one's own answer


def test_names_stay_hidden_from_students(store):
    teacher, (ada, bob), round_ = _lesson(store)
    store.submit(teacher.code, ada.token, round_.id, "a", score=-2.0)
    store.submit(teacher.code, bob.token, round_.id, "b", score=-0.5)
    # A student's token is not a teacher key: no names through answers or the CSV.
    for token in (ada.token, bob.token):
        with pytest.raises(NotTeacher):
            store.answers(teacher.code, token, round_.id)
        with pytest.raises(NotTeacher):
            store.export_csv(teacher.code, token)
        with pytest.raises(NotTeacher):
            store.leaderboard(teacher.code, token)
    with pytest.raises(LeaderboardHidden):
        store.leaderboard(teacher.code)
    assert store.leaderboard(teacher.code, teacher.teacher_key) == [("S1", -0.5), ("S0", -2.0)]
    store.show_leaderboard(teacher.code, teacher.teacher_key, True)
    assert store.class_info(teacher.code).leaderboard_shown is True
    assert store.leaderboard(teacher.code) == [("S1", -0.5), ("S0", -2.0)]
    store.show_leaderboard(teacher.code, teacher.teacher_key, False)
    with pytest.raises(LeaderboardHidden):
        store.leaderboard(teacher.code)


def test_leaderboard_adds_up_rounds_and_breaks_ties_by_name(store):
    teacher, (ada, bob), first = _lesson(store)
    store.submit(teacher.code, ada.token, first.id, "a", score=-1.0)
    store.submit(teacher.code, bob.token, first.id, "b", score=-3.0)
    second = store.open_round(teacher.code, teacher.teacher_key, "guess", {})
    store.submit(teacher.code, bob.token, second.id, "b", score=1.0)
    store.submit(teacher.code, ada.token, second.id, "unscored")
    assert store.leaderboard(teacher.code, teacher.teacher_key) == [("S0", -1.0), ("S1", -2.0)]


def test_export_csv_has_every_round(store, clock):
    teacher, (ada, bob), first = _lesson(store)
    store.submit(teacher.code, ada.token, first.id, "one", {"k": "é"}, score=-1.25)
    second = store.open_round(teacher.code, teacher.teacher_key, "tokens", {})
    clock.advance(minutes=1)
    store.submit(teacher.code, bob.token, second.id, "gpt2: 3", {"gpt2": 3})
    rows = list(csv.DictReader(io.StringIO(store.export_csv(teacher.code, teacher.teacher_key))))
    assert [(r["round"], r["activity"], r["student"], r["answer"], r["score"]) for r in rows] == [
        ("1", "guess", "S0", "one", "-1.25"), ("2", "tokens", "S1", "gpt2: 3", ""),
    ]  # fmt: skip
    assert rows[0]["detail"] == '{"k": "é"}'
    assert rows[1]["submitted_at"] == (START + timedelta(minutes=1)).isoformat()


def test_double_submit_under_threads_records_once(store):
    teacher, passes, round_ = _lesson(store, students=4)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def click(index: int) -> None:
        student = passes[index % 4]
        barrier.wait()
        try:
            results.append((index % 4, store.submit(teacher.code, student.token, round_.id,
                                                    f"answer {index}")))  # fmt: skip
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for student in range(4):
        assert sorted(ok for who, ok in results if who == student) == [False, False, False, True]
    assert store.answer_count(teacher.code, round_.id) == 4
    assert _rows(store)["answers"] == 4


def test_concurrent_joins_respect_the_class_size(store, monkeypatch):
    monkeypatch.setenv("LLMLAB_MAX_STUDENTS", "5")
    teacher = store.create_class()
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def join(index: int) -> None:
        barrier.wait()
        try:
            store.join(teacher.code, None, client=f"c{index}")
            outcomes.append("joined")
        except JoinRefused as refused:
            outcomes.append(refused.reason)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["full"] * 7 + ["joined"] * 5
    assert store.class_info(teacher.code).student_count == 5


# --- expiry, restarts, replicas ------------------------------------------------------------------


def test_expired_classes_give_a_clear_error_and_are_deleted(store, clock):
    old, (ada, _), round_ = _lesson(store)
    store.submit(old.code, ada.token, round_.id, "a")
    clock.advance(hours=6)
    fresh, _, _ = _lesson(store, students=1)
    clock.advance(hours=6)  # the first class is 12 hours old now
    with pytest.raises(ClassExpired, match=rf"class {old.code} ended at 20:30 UTC"):
        store.class_info(old.code)
    with pytest.raises(JoinRefused, match="ended") as refused:
        store.join(old.code, "late", client="x")
    assert refused.value.reason == "expired"
    with pytest.raises(ClassExpired):
        store.submit(old.code, ada.token, round_.id, "b")
    with pytest.raises(ClassExpired):
        store.verify_teacher(old.code, old.teacher_key)
    assert store.class_info(fresh.code).student_count == 1
    assert _rows(store) == {"classes": 2, "students": 3, "rounds": 2, "answers": 1}
    assert store.purge_expired() == 1
    assert _rows(store) == {"classes": 1, "students": 1, "rounds": 1, "answers": 0}
    with pytest.raises(ClassNotFound) as gone:
        store.class_info(old.code)
    assert not isinstance(gone.value, ClassExpired)
    assert store.purge_expired() == 0
    clock.advance(hours=6)
    store.create_class()  # creating a class also clears the expired ones
    assert _rows(store)["classes"] == 1


def test_a_second_store_on_the_same_database_sees_the_same_class(store_url, store):
    teacher, (ada, _), round_ = _lesson(store)
    store.submit(teacher.code, ada.token, round_.id, "there")
    replica = ClassStore(store_url, now=store._now)  # another server, or the same one restarted
    try:
        assert replica.class_info(teacher.code) == store.class_info(teacher.code)
        assert replica.my_answer(teacher.code, ada.token, round_.id).answer == "there"
        bob = replica.join(teacher.code, "Bob", client="b")
        assert replica.submit(teacher.code, bob.token, round_.id, "you")
        assert store.answer_count(teacher.code, round_.id) == 2
    finally:
        replica.dispose()


def test_servers_starting_together_on_a_new_database_create_it_once(store_url):
    made: list[ClassStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            made.append(ClassStore(store_url))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        teacher = made[0].create_class()
        assert all(s.class_info(teacher.code).code == teacher.code for s in made)
        assert schema.database_version(made[0].engine) == schema.SCHEMA_VERSION
        with made[0].engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM schema_version")).scalar() == 1
    finally:
        for each in made:
            each.dispose()


# --- the schema ----------------------------------------------------------------------------------


def _version_1_database(url: str) -> None:
    engine = create_engine(store_module.engine_url(url))
    with engine.begin() as connection:
        for statement in schema.version_1_ddl(engine.dialect.name):
            connection.execute(text(statement))
        connection.execute(text(
            "INSERT INTO classes (code, title, teacher_key_hash, created_at, expires_at, "
            "current_round_id) VALUES ('ABCDEF', 'old', :h, :t, :e, 1)"),
            {"h": store_module._hash("key"), "t": START.replace(tzinfo=None),
             "e": (START + timedelta(hours=12)).replace(tzinfo=None)},
        )  # fmt: skip
        connection.execute(
            text(
                "INSERT INTO students (class_id, name, token_hash, client, joined_at) "
                "VALUES (1, 'Ada', :h, 'c', :t)"
            ),
            {"h": store_module._hash("tok"), "t": START.replace(tzinfo=None)},
        )
        connection.execute(
            text(
                "INSERT INTO rounds (class_id, number, activity, settings, status, opened_at) "
                "VALUES (1, 1, 'guess', '{\"prompt\": \"Hi\"}', 'open', :t)"
            ),
            {"t": START.replace(tzinfo=None)},
        )
        connection.execute(
            text(
                "INSERT INTO answers (round_id, student_id, answer, submitted_at) "
                "VALUES (1, 1, 'there', :t)"
            ),
            {"t": START.replace(tzinfo=None)},
        )
    engine.dispose()


def test_migration_from_version_1_keeps_the_lesson(store_url, clock):
    _version_1_database(store_url)
    engine = create_engine(store_module.engine_url(store_url))
    assert schema.database_version(engine) == 1
    migrated = ClassStore(store_url, now=clock)
    try:
        assert schema.database_version(engine) == schema.SCHEMA_VERSION == 2
        info = migrated.class_info("ABCDEF")
        assert (info.title, info.student_count, info.leaderboard_shown) == ("old", 1, False)
        assert info.current_round.settings == {"prompt": "Hi"}
        (answer,) = migrated.answers("ABCDEF", "key", 1)
        assert (answer.student_name, answer.answer, answer.detail, answer.score) == (
            "Ada", "there", None, None,
        )  # fmt: skip
        bob = migrated.join("ABCDEF", "Bob", client="b")
        assert migrated.submit("ABCDEF", bob.token, 1, "you", {"k": 1}, score=-0.5)
        assert migrated.leaderboard("ABCDEF", "key") == [("Bob", -0.5)]
        # Opening the upgraded database again changes nothing.
        assert schema.migrate(migrated.engine) == 2
    finally:
        migrated.dispose()
        engine.dispose()


def test_a_newer_schema_is_refused(store_url):
    made = ClassStore(store_url)
    made.dispose()
    engine = create_engine(store_module.engine_url(store_url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema_version SET version = 99"))
    with pytest.raises(schema.SchemaError, match="schema version 99, newer"):
        ClassStore(store_url)
    engine.dispose()
