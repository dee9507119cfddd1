"""The Class page in AppTest: a teacher starts a class, students join, each activity runs,
and every refusal (wrong key, expired class, full class, wrong codes) is a clear message.

Each session is its own AppTest, as each browser is its own Streamlit session; they share the
class store through a SQLite file in a temporary folder.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta

import pytest
from app_helpers import html_bodies, page_from_link

from llmlab import generate, tokenization
from llmlab.classroom import activities, store, views
from llmlab.generation.next_token import next_token_distribution, token_text

MODEL = "smollm2-135m-instruct"
LIVE = ("<script", "<img", "javascript:alert")


@pytest.fixture(autouse=True)
def database(tmp_path, monkeypatch):
    """A fresh class store per test (its own file, so its own join limits)."""
    url = f"sqlite:///{tmp_path / 'classes.db'}"
    monkeypatch.setenv("LLMLAB_DATABASE_URL", url)
    yield store.store_for(url)


def start_class(title: str = "Year 10"):
    teacher = page_from_link("class", {})
    teacher.text_input(key="cls-title").set_value(title)
    teacher.button(key="cls-start").click().run()
    assert not teacher.exception and not teacher.error
    return teacher, teacher.session_state["cls-code"], teacher.session_state["cls-key"]


def join(code: str, name: str = ""):
    student = page_from_link("class", {"code": code})
    student.text_input(key="cls-name").set_value(name)
    student.button(key="cls-join").click().run()
    assert not student.exception
    return student


def open_round(teacher, activity: str, **widgets):
    teacher.radio(key="cls-activity").set_value(activity).run()
    for key, value in widgets.items():
        kind = teacher.text_area if key.endswith(("prompt", "sentence")) else None
        if kind is None:
            kind = teacher.toggle if key.endswith("greedy") else teacher.slider
        if key.startswith("cls-tokens-") and len(key) == len("cls-tokens-a"):
            kind = teacher.selectbox
        kind(key=key).set_value(value)
    teacher.button(key="cls-open").click().run()
    assert not teacher.exception and not teacher.error, [e.value for e in teacher.error]
    return store.store_for().class_info(teacher.session_state["cls-code"]).current_round


def send_guess(student, current, guess: str):
    """The student's page polls the store; `run` stands for the poll that shows the round."""
    box = f"cls-answer-{current.id}"
    student.run()
    student.text_input(key=box).set_value(guess)
    student.button(key=f"{box}-send").click().run()
    assert not student.exception
    return student


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    parts += [m.value for kind in ("success", "info", "warning", "error") for m in at.get(kind)]
    return "\n".join(parts)


def test_a_teacher_starts_a_class_and_gets_the_code_links_and_qr(database):
    teacher, code, key = start_class("Year 10, Tuesday")
    assert views.looks_like_code(code) and len(key) >= 32
    assert dict(teacher.query_params) == {"code": code, "key": key}
    links = [c.value for c in teacher.code]
    assert views.join_link("", code) in links and views.teacher_link("", code, key) in links
    assert f"`{views.spaced_code(code)}`" in texts(teacher)
    [image] = teacher.get("image")
    assert image.value[0] and image.captions == ["Scan to join"]  # the QR code
    assert "Year 10, Tuesday" in teacher.header[0].value
    assert "0** of 0 students" not in texts(teacher)  # no round yet
    assert "No round yet" in texts(teacher)


def test_a_student_joins_by_link_and_a_reload_keeps_them(database):
    _, code, _ = start_class()
    student = join(code, "Ada")
    token = student.session_state["cls-student"]
    assert dict(student.query_params) == {"code": code, "student": token}
    assert "You are **Ada**" in texts(student)
    assert "Waiting for the teacher" in texts(student)
    again = page_from_link("class", {"code": code, "student": token})  # a reload
    assert not again.exception and "You are **Ada**" in texts(again)
    assert database.class_info(code).student_count == 1
    unnamed = join(code)  # no name: a pseudonym
    assert database.student(code, unnamed.session_state["cls-student"]).name.strip()


def test_guess_the_next_token_from_guesses_to_reveal(database, smollm2):
    teacher, code, key = start_class()
    prompt = "The capital of France is"
    students = [join(code, f"S{i}") for i in range(3)]
    current = open_round(teacher, "guess", **{"cls-guess-prompt": prompt})
    guesses = ["Paris", "Paris", "London"]
    for student, guess in zip(students, guesses, strict=True):
        send_guess(student, current, guess)
        assert not student.error
        assert "Your answer is in" in texts(student)
    teacher.run()
    assert "**3** of 3 students answered" in texts(teacher)
    [chart] = teacher.get("plotly_chart")
    assert '"The model"' not in chart.proto.spec  # hidden until the reveal
    teacher.button(key="cls-reveal").click().run()
    distribution = next_token_distribution(smollm2, prompt)
    top = token_text(smollm2.tokenizer, int(distribution.probabilities.argmax()))
    assert top == " Paris"
    shown = "\n".join(s.value for s in teacher.success)
    assert "2 of 3 guessed it" in shown and views.markdown_text("·Paris") in shown
    [chart] = teacher.get("plotly_chart")
    assert '"The model"' in chart.proto.spec
    # Each stored score is the model's log-probability for the guess.
    answers = database.answers(code, key, current.id)
    for answer in answers:
        expected = activities.score_guess(smollm2, prompt, answer.answer).log_probability
        # The page's forward pass may have run with another thread count: float32 sums then
        # differ in the last digits, so the same model gives the same score to within 1e-5.
        assert answer.score == pytest.approx(expected, abs=1e-5)
    paris = math.log(float(distribution.probabilities[smollm2.tokenizer(" Paris")["input_ids"][0]]))
    assert answers[0].score == pytest.approx(paris, abs=1e-4)
    students[0].run()
    assert "scored **" in texts(students[0]) and "·Paris" in texts(students[0])


def test_an_answer_is_counted_once_even_from_two_tabs(database, smollm2):
    teacher, code, key = start_class()
    first = join(code, "Ada")
    token = first.session_state["cls-student"]
    second = page_from_link("class", {"code": code, "student": token})  # the same student
    current = open_round(teacher, "guess")
    box = f"cls-answer-{current.id}"
    for tab in (first, second):
        tab.run()
    for tab in (first, second):  # both tabs show the form, then both send
        tab.text_input(key=box).set_value("Paris")
        tab.button(key=f"{box}-send").click().run()
        assert not tab.exception and not tab.error
    assert database.answer_count(code, current.id) == 1
    # The second tab's press finds the answer already there: it shows it, and records nothing.
    assert "Your answer is in: Paris" in texts(second)


def test_a_refused_guess_stays_in_its_box(database, smollm2):
    teacher, code, key = start_class()
    student = join(code, "Ada")
    current = open_round(teacher, "guess")
    box = f"cls-answer-{current.id}"
    student.run()
    teacher.button(key="cls-close").click().run()
    student.text_input(key=box).set_value("Paris")
    student.button(key=f"{box}-send").click().run()
    # The page still showed the form when the round closed: the answer is refused, and kept.
    assert not student.exception
    assert database.answer_count(code, current.id) == 0
    student.run()
    assert "This round is closed" in texts(student)


def test_sample_together_greedy_gives_everyone_the_same_text(database, smollm2):
    teacher, code, key = start_class()
    students = [join(code, f"S{i}") for i in range(2)]
    prompt = "Once upon a time"
    current = open_round(
        teacher, "sample", **{"cls-sample-prompt": prompt, "cls-sample-greedy": True,
                              "cls-sample-length": 5}
    )  # fmt: skip
    assert current.settings["sampling"] == {"strategy": "greedy", "max_new_tokens": 5}
    for student in students:
        student.run()
        student.button(key=f"cls-answer-{current.id}-send").click().run()
        assert not student.exception and not student.error
    expected = generate(smollm2, prompt, strategy="greedy", max_new_tokens=5).text
    answers = database.answers(code, key, current.id)
    assert [a.detail["text"] for a in answers] == [expected, expected]
    teacher.run()
    assert "**2** continuations, **1** different — all the same text." in texts(teacher)


def test_sample_together_with_sampling_gives_each_seed_its_own_text(database, smollm2):
    teacher, code, key = start_class()
    students = [join(code, f"S{i}") for i in range(3)]
    prompt = "Once upon a time"
    current = open_round(
        teacher, "sample", **{"cls-sample-prompt": prompt, "cls-sample-temperature": 1.5,
                              "cls-sample-length": 6}
    )  # fmt: skip
    for student in students:
        student.run()
        student.button(key=f"cls-answer-{current.id}-send").click().run()
    answers = database.answers(code, key, current.id)
    assert len(answers) == 3
    for student in students:
        seed = views.student_seed(student.session_state["cls-student"])
        expected = generate(smollm2, prompt, strategy="top_p", max_new_tokens=6, seed=seed,
                            temperature=1.5, top_p=0.95).text  # fmt: skip
        assert expected in [a.detail["text"] for a in answers]
    teacher.run()
    [table] = [d for d in teacher.dataframe if "continuation" in d.value.columns]
    assert sorted(table.value["continuation"]) == sorted(a.detail["text"] for a in answers)
    assert "first token" in texts(teacher)


def test_how_many_tokens_reveals_the_real_counts(database):
    teacher, code, key = start_class()
    student = join(code, "Ada")
    sentence = "Tokenization isn't always intuitive!"
    current = open_round(teacher, "tokens", **{"cls-tokens-sentence": sentence})
    assert current.settings["tokenizers"] == ["gpt2", "o200k_base"]
    box = f"cls-answer-{current.id}"
    student.run()
    student.number_input(key=f"{box}-gpt2").set_value(7)
    student.number_input(key=f"{box}-o200k_base").set_value(6)
    student.button(key=f"{box}-send").click().run()
    assert not student.exception and not student.error
    # tiktoken's encodings, read from the offline packs (tests/test_tokenization_zoo.py)
    real = {n: len(tokenization.load(n).encode(sentence)) for n in ("gpt2", "o200k_base")}
    [answer] = database.answers(code, key, current.id)
    assert answer.detail == {"gpt2": 7, "o200k_base": 6}
    assert answer.score == -(abs(7 - real["gpt2"]) + abs(6 - real["o200k_base"]))
    teacher.button(key="cls-reveal").click().run()
    [table] = teacher.table
    assert list(table.value["tokens"]) == [real["gpt2"], real["o200k_base"]]
    chips = [m.value for m in teacher.markdown if m.proto.allow_html and 'class="tok ' in m.value]
    assert [c.count('class="tok ') for c in chips] == [real["gpt2"], real["o200k_base"]]
    student.run()
    assert f"{real['gpt2']} tokens" in texts(student)


def test_names_appear_only_with_the_leaderboard(database, smollm2):
    teacher, code, key = start_class()
    ada, bob = join(code, "Ada Lovelace"), join(code, "Bob Builder")
    current = open_round(teacher, "guess")
    for student, guess in ((ada, "Paris"), (bob, "Lyon")):
        send_guess(student, current, guess)
    teacher.run()
    for at in (teacher, ada, bob):
        at.run()
        shown = texts(at) + "".join(str(d.value.to_dict()) for d in at.dataframe)
        assert "Bob Builder" not in shown or at is bob
    teacher.get("toggle")[0].set_value(True).run()
    assert database.class_info(code).leaderboard_shown
    ada.run()
    [board] = [d.value for d in ada.dataframe if "points" in d.value.columns]
    assert list(board["name"]) == ["Ada Lovelace", "Bob Builder"]  # Paris is likelier
    csv = database.export_csv(code, key)
    assert "Ada Lovelace" in csv and "Lyon" in csv


def test_a_wrong_teacher_key_is_refused_clearly(database):
    _, code, _ = start_class()
    other, _, other_key = start_class("another class")
    at = page_from_link("class", {"code": code, "key": other_key})
    assert not at.exception
    assert "key is wrong" in at.error[0].value
    assert not at.get("image") and not any(b.key == "cls-open" for b in at.button)


def test_an_expired_class_says_so(database):
    past = store.ClassStore(os.environ["LLMLAB_DATABASE_URL"],
                            now=lambda: datetime.now(UTC) - timedelta(hours=13))  # fmt: skip
    ticket = past.create_class("yesterday")
    past.dispose()
    for params in ({"code": ticket.code, "key": ticket.teacher_key}, {"code": ticket.code}):
        at = page_from_link("class", params)
        assert not at.exception
        if "key" in params:
            assert "This class has ended" in at.error[0].value
        else:
            at.text_input(key="cls-name").set_value("Ada")
            at.button(key="cls-join").click().run()
            assert "ended at" in at.error[0].value
            assert at.text_input(key="cls-name").value == "Ada"  # nothing typed is lost


def test_a_full_class_refuses_the_next_student(database, monkeypatch):
    monkeypatch.setenv("LLMLAB_MAX_STUDENTS", "2")
    _, code, _ = start_class()
    join(code, "A"), join(code, "B")
    third = join(code, "Carol")
    assert "is full (2 students)" in third.error[0].value
    assert third.text_input(key="cls-name").value == "Carol"
    assert "cls-student" not in third.session_state


def test_wrong_codes_are_refused_then_rate_limited(database):
    _, code, _ = start_class()
    at = page_from_link("class", {})
    messages = []
    for attempt in range(12):
        wrong = "ABCDEF" if code != "ABCDEF" else "ABCDEG"
        at.text_input(key="cls-join-code").set_value(wrong if attempt else "not a code!")
        at.button(key="cls-join").click().run()
        assert not at.exception
        messages.append(at.error[0].value)
    assert messages[0] == messages[1] == "No class has this code: check it on the teacher's screen."
    assert "too many attempts" in messages[-1].lower()
    at.text_input(key="cls-join-code").set_value(code)  # even the right code waits now
    at.button(key="cls-join").click().run()
    assert "too many attempts" in at.error[0].value.lower()


def test_a_student_link_of_another_class_asks_to_join_again(database):
    _, code, _ = start_class()
    _, other_code, _ = start_class()
    stranger = join(other_code, "Eve")
    at = page_from_link("class", {"code": code, "student": stranger.session_state["cls-student"]})
    assert not at.exception
    assert "not from this class" in at.error[0].value
    assert at.text_input(key="cls-join-code").value == code


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "**bold** $x$ :smile: # heading",
    "\u202eevil\u202c",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_guesses_are_shown_as_text(database, smollm2, text):
    teacher, code, key = start_class(text)
    student = join(code, text[:40])
    current = open_round(teacher, "guess")
    send_guess(student, current, text)
    assert not student.error
    teacher.get("toggle")[0].set_value(True).run()
    teacher.button(key="cls-reveal").click().run()
    [answer] = database.answers(code, key, current.id)
    assert answer.answer == text and answer.student_name == text[:40]  # stored as typed
    for at in (teacher, student):
        at.run()
        assert not at.exception
        for body in html_bodies(at):
            assert not any(bad in body for bad in LIVE), body[:200]
        markdown = texts(at) + at.header[0].value
        assert "](javascript" not in markdown
        assert views.markdown_text(text) in markdown  # escaped, so shown as typed
    [board] = [d.value for d in student.dataframe if "points" in d.value.columns]
    assert list(board["name"]) == [text[:40]]
