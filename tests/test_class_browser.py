"""A lesson in real browsers: one teacher and eight students through every activity, a server
restart in the middle of a lesson, and two server replicas sharing one PostgreSQL database.

Each test starts its own `streamlit run` with its own class database (a SQLite file in a
temporary folder, or the throwaway PostgreSQL of `postgres_url`), so nothing touches the
lab's real classes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_helpers import no_exception, wait_for_app

from llmlab import generate
from llmlab.classroom import store

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = 8
TIMEOUT = 120_000
GUESSES = ["Paris", "Paris", "London", "Paris", "Lyon", "the", "Paris", "London"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def class_server(database_url: str, log_path: Path, port: int | None = None):
    """`streamlit run` on a loopback port with its own class database; yields its base URL."""
    port = port or _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", LLMLAB_DATABASE_URL=database_url)
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]  # fmt: skip
    with open(log_path, "a") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"streamlit did not start; log:\n{log_path.read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
    if "Traceback" in text and re.search(r"(app_pages|llmlab)/\w+\.py", text):
        start = text.index("Traceback")
        pytest.fail(f"the class server logged a traceback:\n{text[start : start + 4000]}")


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    return context, page


def start_class(page, base: str, title: str) -> tuple[str, str]:
    page.goto(f"{base}/class")
    wait_for_app(page)
    page.get_by_role("textbox", name="Title (optional)").fill(title)
    page.get_by_role("button", name="Start a class").click()
    page.wait_for_url(re.compile(r"key="))
    page.get_by_text("Scan to join").wait_for()
    query = parse_qs(urlsplit(page.url).query)
    return query["code"][0], query["key"][0]


def join(page, base: str, code: str, name: str) -> None:
    page.goto(f"{base}/class?code={code}")
    wait_for_app(page)
    page.get_by_role("textbox", name="Your name (optional)").fill(name)
    page.get_by_role("button", name="Join").click()
    page.get_by_text(f"You are {name}").wait_for()


def open_round(teacher, activity: str) -> None:
    teacher.get_by_text(activity, exact=True).click()
    wait_for_app(teacher)
    teacher.get_by_role("button", name="Open the round").click()


def answered(teacher, count: int, of: int) -> None:
    teacher.get_by_text(f"{count} of {of} students answered").wait_for(timeout=TIMEOUT)


def test_a_teacher_and_eight_students_go_through_every_activity(
    browser, tmp_path, smollm2, screenshots_dir
):
    from test_screenshots import _save

    url = f"sqlite:///{tmp_path / 'classes.db'}"
    classes = store.ClassStore(url)
    contexts = []
    with class_server(url, tmp_path / "server.log") as base:
        try:
            context, teacher = new_page(browser)
            contexts.append(context)
            code, key = start_class(teacher, base, "Year 10, Tuesday")
            students = []
            for i in range(STUDENTS):
                context, page = new_page(browser)
                contexts.append(context)
                join(page, base, code, f"Student {i + 1}")
                students.append(page)

            # Guess the next token: one guess each; two students double-click.
            open_round(teacher, "Guess the next token")
            for i, (page, guess) in enumerate(zip(students, GUESSES, strict=True)):
                page.get_by_role("textbox", name="Your guess").fill(guess)
                button = page.get_by_role("button", name="Send my guess")
                button.dblclick() if i in (0, 4) else button.click()
            for page, guess in zip(students, GUESSES, strict=True):
                try:
                    page.get_by_text(f"Your answer is in: {guess}").wait_for()
                except Exception:  # keep what every student saw, for the failure report
                    for j, other in enumerate(students):
                        other.screenshot(path=str(tmp_path / f"student{j + 1}.png"))
                    raise
            answered(teacher, STUDENTS, STUDENTS)
            round_id = classes.class_info(code).current_round.id
            answers = classes.answers(code, key, round_id)
            assert Counter(a.student_name for a in answers) == {
                f"Student {i + 1}": 1 for i in range(STUDENTS)
            }
            assert sorted(a.answer for a in answers) == sorted(GUESSES)
            teacher.get_by_role("button", name="Reveal").click()
            paris = GUESSES.count("Paris")
            teacher.get_by_text(f"{paris} of {STUDENTS} guessed it").wait_for()
            no_exception(teacher)
            _save(teacher, screenshots_dir, "class_guess.png")
            for page in students:
                page.get_by_text("The model's top token").wait_for()
                no_exception(page)

            # Sample together, greedy: everyone gets the same text.
            teacher.set_viewport_size({"width": 1400, "height": 1000})
            teacher.get_by_text("Sample together", exact=True).click()
            wait_for_app(teacher)
            teacher.get_by_text("Greedy: always the most likely token").click()
            wait_for_app(teacher)
            teacher.get_by_role("button", name="Open the round").click()
            for page in students:  # all at once: the engine batches them
                page.get_by_role("button", name="Write my continuation").click()
            for page in students:
                page.get_by_text("Your answer is in").wait_for(timeout=240_000)
            answered(teacher, STUDENTS, STUDENTS)
            expected = generate(smollm2, "Once upon a time", strategy="greedy", max_new_tokens=8)
            round_id = classes.class_info(code).current_round.id
            texts = [a.detail["text"] for a in classes.answers(code, key, round_id)]
            assert texts == [expected.text] * STUDENTS
            teacher.get_by_text(f"{STUDENTS} continuations, 1 different").wait_for()
            no_exception(teacher)
            _save(teacher, screenshots_dir, "class_sample.png")

            # How many tokens?: counts in two tokenizers, then the real splits.
            teacher.set_viewport_size({"width": 1400, "height": 1000})
            open_round(teacher, "How many tokens?")
            for i, page in enumerate(students):
                page.get_by_role("spinbutton", name="Tokens in gpt2").fill(str(5 + i))
                page.get_by_role("spinbutton", name="Tokens in o200k_base").fill(str(4 + i))
                page.get_by_role("button", name="Send my guesses").click()
            for page in students:
                page.get_by_text("Your answer is in").wait_for()
            answered(teacher, STUDENTS, STUDENTS)
            round_id = classes.class_info(code).current_round.id
            details = sorted(a.detail["gpt2"] for a in classes.answers(code, key, round_id))
            assert details == [5 + i for i in range(STUDENTS)]
            teacher.get_by_role("button", name="Reveal").click()
            teacher.get_by_text("GPT-2 (tiktoken):").first.wait_for()
            no_exception(teacher)
            _save(teacher, screenshots_dir, "class_tokens.png")
            assert len(classes.export_csv(code, key).splitlines()) == 1 + 3 * STUDENTS
        finally:
            for context in contexts:
                context.close()
            classes.dispose()


def test_a_lesson_survives_a_server_restart(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'classes.db'}"
    port = _free_port()
    log = tmp_path / "server.log"
    contexts = []
    try:
        context, teacher = new_page(browser)
        contexts.append(context)
        context, student = new_page(browser)
        contexts.append(context)
        with class_server(url, log, port) as base:
            code, key = start_class(teacher, base, "Restart")
            join(student, base, code, "Ada")
            open_round(teacher, "How many tokens?")
            student.get_by_role("spinbutton", name="Tokens in gpt2").fill("7")
            student.get_by_role("spinbutton", name="Tokens in o200k_base").fill("6")
            student.get_by_role("button", name="Send my guesses").click()
            student.get_by_text("Your answer is in").wait_for()
            answered(teacher, 1, 1)
            teacher_link, student_link = teacher.url, student.url
        with class_server(url, log, port):  # the same address, a new process
            teacher.goto(teacher_link)
            wait_for_app(teacher)
            answered(teacher, 1, 1)
            teacher.get_by_text("Round 1: How many tokens?").wait_for()
            student.goto(student_link)
            wait_for_app(student)
            student.get_by_text("Your answer is in: gpt2: 7, o200k_base: 6").wait_for()
            no_exception(teacher)
            no_exception(student)
    finally:
        for context in contexts:
            context.close()


def test_two_replicas_share_one_class(browser, tmp_path, postgres_url):
    contexts = []
    with (
        class_server(postgres_url, tmp_path / "a.log") as first,
        class_server(postgres_url, tmp_path / "b.log") as second,
    ):
        try:
            context, teacher = new_page(browser)
            contexts.append(context)
            context, student = new_page(browser)
            contexts.append(context)
            code, _ = start_class(teacher, first, "Two replicas")
            join(student, second, code, "Ada")  # the other server
            teacher.get_by_text("No round yet").wait_for()
            open_round(teacher, "How many tokens?")
            student.get_by_role("spinbutton", name="Tokens in gpt2").fill(
                "3"
            )  # the round reached replica two
            student.get_by_role("spinbutton", name="Tokens in o200k_base").fill("3")
            student.get_by_role("button", name="Send my guesses").click()
            student.get_by_text("Your answer is in").wait_for()
            answered(teacher, 1, 1)  # and the answer reached replica one
            no_exception(teacher)
            no_exception(student)
        finally:
            for context in contexts:
                context.close()
