"""A class answering at once: N simulated students (threads) join and answer one round, on
SQLite and on PostgreSQL, measured in one run.

Each student is a thread with its own `StudentPass`, as each Streamlit session is. After all
have joined, a barrier lets every student press "Submit" at the same moment, while the
projected view polls the teacher's `answers` every 100 ms and the students' pages poll
`class_info` + `answer_count` (as their `st.fragment(run_every=...)` does): by default 20
pages every 200 ms, as many queries as 100 pages polling every second. A second click by
every student checks that nothing is recorded twice.

Columns: join and submit latency (median, p95, max, in ms), "all answered" (from the barrier
to the last recorded answer), "view shows all" (from the barrier to the first poll of the
projected view that returns every answer), one `answers` query with all N answers (median of
20, ms), the write rate (answers committed per second during the burst) and how many answers
were recorded. Goals: all answered within 2 s, the view shows them within 3 s.

    .venv/bin/python bench/classroom.py                 # 100 students, SQLite and PostgreSQL
    .venv/bin/python bench/classroom.py --students 200 --backends sqlite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/tokenizers.py would shadow a package

from llmlab.classroom.postgres import PostgresUnavailable, throwaway_postgres  # noqa: E402
from llmlab.classroom.store import ClassStore  # noqa: E402

POLL = 0.1  # seconds between two polls of the projected view
# 20 pages polling every 0.2 s ask as much as 100 students' pages polling every second.
PAGE_POLL = 0.2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(url: str, students: int, pollers: int) -> dict[str, float]:
    store = ClassStore(url)
    teacher = store.create_class("bench")
    code, key = teacher.code, teacher.teacher_key
    round_ = store.open_round(code, key, "guess", {"prompt": "The capital of France is"})
    joined = threading.Barrier(students + 1)
    go = threading.Event()
    join_ms: list[float] = []
    submit_ms: list[float] = []
    recorded: list[bool] = []
    again: list[bool] = []
    finished: list[float] = []
    lock = threading.Lock()

    def student(index: int) -> None:
        start = time.perf_counter()
        me = store.join(code, None, client=f"student-{index}")
        with lock:
            join_ms.append((time.perf_counter() - start) * 1000)
        joined.wait()
        go.wait()
        start = time.perf_counter()
        ok = store.submit(code, me.token, round_.id, f"guess {index % 7}", {"i": index}, -1.0)
        done = time.perf_counter()
        second = store.submit(code, me.token, round_.id, "double click")
        with lock:
            submit_ms.append((done - start) * 1000)
            recorded.append(ok)
            again.append(second)
            finished.append(done)

    view_all: list[float] = []
    stop = threading.Event()

    def projected_view() -> None:
        while not stop.is_set():
            if len(store.answers(code, key, round_.id)) >= students and not view_all:
                view_all.append(time.perf_counter())
                return
            time.sleep(POLL)

    def student_page() -> None:
        while not stop.is_set():
            store.class_info(code)
            store.answer_count(code, round_.id)
            time.sleep(PAGE_POLL)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(students)]
    for thread in threads:
        thread.start()
    joined.wait()  # everyone is in the class
    background = [threading.Thread(target=projected_view)]
    background += [threading.Thread(target=student_page) for _ in range(pollers)]
    for thread in background:
        thread.start()
    released = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    background[0].join(timeout=30)
    stop.set()
    for thread in background:
        thread.join()
    query_ms = []
    for _ in range(20):
        start = time.perf_counter()
        count = len(store.answers(code, key, round_.id))
        query_ms.append((time.perf_counter() - start) * 1000)
    burst = max(finished) - released
    store.dispose()
    return {
        "join p50": statistics.median(join_ms), "join p95": percentile(join_ms, 0.95),
        "submit p50": statistics.median(submit_ms), "submit p95": percentile(submit_ms, 0.95),
        "submit max": max(submit_ms), "all answered s": burst,
        "view shows all s": (view_all[0] - released) if view_all else float("nan"),
        "answers query ms": statistics.median(query_ms), "answers/s": students / burst,
        "recorded": count, "first clicks True": sum(recorded), "second clicks True": sum(again),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--pollers", type=int, default=20, help="student pages polling meanwhile")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"{args.students} students answer at once; {args.pollers} student pages poll every "
          f"{PAGE_POLL * 1000:.0f} ms meanwhile\n")  # fmt: skip
    columns = ["join p50", "join p95", "submit p50", "submit p95", "submit max", "all answered s",
               "view shows all s", "answers query ms", "answers/s", "recorded",
               "second clicks True"]  # fmt: skip
    print("| backend | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 1))
    failed = False
    for backend in args.backends:
        with ExitStack() as stack:
            if backend == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite:///{folder}/classes.db"
            else:
                try:
                    url = stack.enter_context(throwaway_postgres())
                except PostgresUnavailable as error:
                    print(f"| postgresql | skipped: {str(error).splitlines()[0]} |")
                    continue
            row = run(url, args.students, args.pollers)
        cells = [f"{row[c]:.0f}" if c in ("recorded", "second clicks True", "answers/s")
                 else f"{row[c]:.2f}" if c.endswith(" s") else f"{row[c]:.1f}" for c in columns]  # fmt: skip
        print(f"| {backend} | " + " | ".join(cells) + " |")
        ok = row["recorded"] == args.students and row["second clicks True"] == 0
        ok = ok and row["first clicks True"] == args.students
        failed = failed or not ok
    print("\nGoals: all answered within 2 s, the projected view shows them within 3 s, every answer "
          "recorded once.")  # fmt: skip
    if failed:
        print("FAILED: an answer was lost or recorded twice")
        sys.exit(1)


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
