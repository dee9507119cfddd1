"""Class page: a live lesson. The teacher starts a class and opens rounds; students join with a
code and answer on their own screens; the projected view shows the class's answers beside the
model's. Everything lives in the class store (`llmlab.classroom`), shared by every session and
every server replica; this page only draws it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmlab import sharing, ui
from llmlab.classroom import activities, store as class_store, views
from llmlab.classroom import charts as class_charts
from llmlab.page_state import Text
from llmlab.tokenization.samples import CSS, pieces_html

STATE = st.session_state
POLL = views.POLL_SECONDS
MAX_TITLE_CHARS = 80
MAX_PROMPT_CHARS = 2_000
MAX_GUESS_CHARS = 200
MODEL_DEFAULT = "smollm2-135m-instruct"
TOKENIZER_CHOICES = ("gpt2", "cl100k_base", "o200k_base", "llama-spm", "gemma-3")

# The link carries who you are in the class: the code (anyone), plus the teacher's key or the
# student's token. Nothing else of the page goes into the address bar.
SETTINGS = sharing.PageSettings(
    "class",
    [
        Text("code", "cls-code", "", max_chars=views.MAX_CODE_CHARS),
        Text("key", "cls-key", "", max_chars=views.MAX_SECRET_CHARS),
        Text("student", "cls-student", "", max_chars=views.MAX_SECRET_CHARS),
    ],
)

ui.page_intro(
    "Class",
    "A live lesson: the teacher starts a class, students join with a code on their own "
    "screens, and the projected screen shows the class's answers beside the real model's.",
)
SETTINGS.restore()
st.markdown(CSS, unsafe_allow_html=True)  # the token chips' colours (fixed CSS, no user text)


def store() -> class_store.ClassStore:
    return class_store.store_for()


def here() -> str:
    return views.page_address(sharing._current_url())


def leave() -> None:
    for key in ("cls-code", "cls-key", "cls-student", "cls-name"):
        STATE.pop(key, None)


# --- no class yet: start one, or join one ----------------------------------------------------


def start_or_join() -> None:
    teacher, student = st.columns(2, gap="large")
    with teacher, st.container(border=True):
        st.subheader("Start a class")
        st.caption(
            "For the teacher. You get a short code and a QR code to show the class, and a "
            "teacher link that only you should keep: it is what runs the lesson."
        )
        with st.form("cls-start-form", border=False):
            st.text_input(
                "Title (optional)",
                key="cls-title",
                max_chars=MAX_TITLE_CHARS,
                placeholder="Year 10, Tuesday",
                help="Shown at the top of the students' pages.",
            )
            started = st.form_submit_button("Start a class", type="primary", key="cls-start")
        if started:
            with ui.friendly_errors():
                ticket = store().create_class(STATE.get("cls-title", ""))
                STATE["cls-code"], STATE["cls-key"] = ticket.code, ticket.teacher_key
                STATE.pop("cls-student", None)
                st.rerun()
    with student, st.container(border=True):
        st.subheader("Join a class")
        st.caption(
            "For students. Type the code on the teacher's screen (or scan its QR code). "
            "No account: you get a made-up name unless you type one."
        )
        join_form(STATE.get("cls-code", ""))


def join_form(code: str) -> None:
    if code and "cls-join-code" not in STATE:
        STATE["cls-join-code"] = code
    with st.form("cls-join-form", border=False):
        st.text_input(
            "Class code", key="cls-join-code", max_chars=views.MAX_CODE_CHARS, placeholder="K7F 2QX"
        )
        st.text_input(
            "Your name (optional)",
            key="cls-name",
            max_chars=class_store.MAX_NAME_CHARS,
            help="What the class sees if the teacher shows the leaderboard. Leave it empty for "
            "a made-up name. Up to 40 characters.",
        )
        joined = st.form_submit_button("Join", type="primary", key="cls-join")
    if joined:
        typed = views.normalise_code(STATE.get("cls-join-code", ""))
        if not typed:
            st.error("Type the class code first.", icon=":material/error:")
            return
        try:
            ticket = store().join(typed, STATE.get("cls-name", ""), client=client_id())
        except class_store.JoinRefused as refused:
            st.error(str(refused), icon=":material/block:")
            return
        except Exception as error:  # noqa: BLE001 - a page never shows a traceback
            ui.show_error(error)
            return
        STATE["cls-code"], STATE["cls-student"] = typed, ticket.token
        STATE["cls-me"] = ticket.name
        STATE.pop("cls-key", None)
        st.rerun()


def client_id() -> str:
    """Who is knocking, for the store's join rate limit: the browser's address when known."""
    try:
        return st.context.ip_address or "unknown"
    except Exception:  # noqa: BLE001 - no browser (tests)
        return "unknown"


# --- the teacher -------------------------------------------------------------------------------


def teacher(code: str, key: str) -> None:
    info = store().class_info(code)
    store().verify_teacher(code, key)
    st.header(views.markdown_text(info.title) if info.title else "Your class", anchor=False)
    join_panel(code, key, info)
    st.divider()
    round_controls(code, key)
    st.divider()
    projected(code, key)


def join_panel(code: str, key: str, info: class_store.ClassInfo) -> None:
    page = here()
    link = views.join_link(page, code)
    words, picture = st.columns([3, 2], gap="large")
    with words:
        st.markdown("Students join at the address below, or by scanning the QR code, with the code:")
        st.markdown(f"# `{views.spaced_code(code)}`")
        st.code(link, language=None, wrap_lines=True)
        if views.is_local_address(page):
            st.caption(
                "This address names this computer itself, which students' devices cannot "
                "open: open the lab by the machine's network address (`http://<machine>:8501`) "
                "before you show the code."
            )
        st.caption(
            f"Ends at {info.expires_at:%H:%M} UTC; then the class and every answer are deleted."
        )
        with st.expander("Teacher link (keep it to yourself)", icon=":material/key:"):
            st.caption(
                "Only this link runs the lesson. Bookmark it to come back to the class. The "
                "address bar holds it too: project in full screen (F11) so the class cannot "
                "read it."
            )
            st.code(views.teacher_link(page, code, key), language=None, wrap_lines=True)
    with picture:
        st.image(views.qr_png(link), width=320, caption="Scan to join")


def round_controls(code: str, key: str) -> None:
    st.subheader("Open a round")
    st.caption(
        "Pick an activity and its settings, then open a round: every student's page shows it "
        "within a couple of seconds. Opening a new round closes the one before."
    )
    activity = st.radio(
        "Activity",
        list(activities.ACTIVITIES),
        format_func=activities.ACTIVITIES.get,
        horizontal=True,
        key="cls-activity",
    )
    if activity == "guess":
        st.caption(
            "Students guess the word the model will write next. You see their guesses live; "
            "the model's own probabilities stay hidden until you reveal them."
        )
        left, right = st.columns([3, 2])
        with left:
            prompt = st.text_area(
                "Prompt", "The capital of France is", key="cls-guess-prompt", max_chars=MAX_PROMPT_CHARS
            )
        with right:
            model = ui.model_picker("cls-guess-model", default=MODEL_DEFAULT)
            top_n = st.slider("Model's top tokens shown", 5, 20, 10, key="cls-guess-top")
        settings = {"prompt": prompt, "model": model, "top_n": top_n}
    elif activity == "sample":
        st.caption(
            "Every student's model continues the same prompt with the same settings, each with "
            "its own seed. With sampling, the texts differ; with greedy, everyone gets the same."
        )
        left, right = st.columns([3, 2])
        with left:
            prompt = st.text_area(
                "Prompt", "Once upon a time", key="cls-sample-prompt", max_chars=MAX_PROMPT_CHARS
            )
        with right:
            model = ui.model_picker("cls-sample-model", default=MODEL_DEFAULT)
            greedy = st.toggle("Greedy (always the most likely token)", key="cls-sample-greedy")
            temperature = st.slider(
                "Temperature", 0.1, 2.0, 1.0, 0.1, key="cls-sample-temperature", disabled=greedy
            )
            top_p = st.slider("Top-p", 0.05, 1.0, 0.95, 0.05, key="cls-sample-top-p", disabled=greedy)
            length = st.slider("New tokens", 1, 24, 8, key="cls-sample-length")
        settings = activities.sample_settings(
            prompt=prompt,
            model=model,
            greedy=greedy,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=length,
        )
    else:
        st.caption(
            "Students guess how many tokens the sentence costs in two tokenizers. The reveal "
            "shows the real pieces."
        )
        left, right = st.columns([3, 2])
        with left:
            sentence = st.text_area(
                "Sentence",
                "Tokenization isn't always intuitive!",
                key="cls-tokens-sentence",
                max_chars=MAX_PROMPT_CHARS,
            )
        with right:
            first = st.selectbox("First tokenizer", TOKENIZER_CHOICES, 0, key="cls-tokens-a")
            second = st.selectbox("Second tokenizer", TOKENIZER_CHOICES, 2, key="cls-tokens-b")
        settings = {"sentence": sentence, "tokenizers": [first, second]}
    if st.button("Open the round", type="primary", key="cls-open", icon=":material/play_arrow:"):
        with ui.friendly_errors():
            store().open_round(code, key, activity, settings)
            st.toast("Round open: the students' pages show it now.")


@st.fragment(run_every=POLL)
def projected(code: str, key: str) -> None:
    """The projected view: what the class answered, live; the model's side after the reveal."""
    with ui.friendly_errors():
        info = store().class_info(code)
        current = info.current_round
        if current is None:
            st.info("No round yet: open one above.", icon=":material/hourglass_empty:")
            return
        count = store().answer_count(code, current.id)
        title = activities.ACTIVITIES[current.activity]
        st.subheader(f"Round {current.number}: {title}")
        status = {"open": "open", "closed": "closed", "revealed": "revealed"}[current.status]
        st.markdown(f"**{count}** of {info.student_count} students answered · the round is {status}.")
        buttons = st.columns(4)
        if current.status == "open" and buttons[0].button("Close the round", key="cls-close"):
            store().close_round(code, key, current.id)
            st.rerun(scope="fragment")
        if current.status != "revealed" and buttons[1].button(
            "Reveal", type="primary", key="cls-reveal", icon=":material/visibility:"
        ):
            store().reveal_round(code, key, current.id)
            st.rerun(scope="fragment")
        shown = buttons[2].toggle(
            "Show the leaderboard",
            value=info.leaderboard_shown,
            key=f"cls-board-{info.leaderboard_shown}",
            help="Names appear on screens only while this is on.",
        )
        if shown != info.leaderboard_shown:
            store().show_leaderboard(code, key, shown)
            st.rerun(scope="fragment")
        with buttons[3]:
            sharing.download(
                "Answers as CSV",
                data=lambda: store().export_csv(code, key),
                file_name=f"class-{code}.csv",
                key="cls-csv",
                help="Every round's answers, with names and scores, for a spreadsheet.",
            )
        answers = store().answers(code, key, current.id)
        show_round(current, answers, revealed=current.status == "revealed")
        if info.leaderboard_shown:
            leaderboard(store().leaderboard(code, key))


def show_round(current: class_store.RoundInfo, answers: list, revealed: bool) -> None:
    settings = current.settings
    if current.activity == "guess":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])} …")
        reference = guess_reference(settings["model"], settings["prompt"], settings["top_n"])
        if reference is None:
            return
        table = activities.class_guess_table(reference, answers)
        figure = class_charts.guess_chart(table, reveal=revealed)
        st.plotly_chart(figure, key="cls-guess-chart", config={"displaylogo": False})
        if revealed:
            matched = int(table.attrs.get("matched", 0))
            st.success(
                f"The model's top token is **{views.markdown_text(reference.top_token)}** "
                f"({reference.probabilities[0]:.0%}); {matched} of {len(answers)} guessed it.",
                icon=":material/visibility:",
            )
    elif current.activity == "sample":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])}")
        if answers:
            tree = activities.first_token_tree(answers)
            st.plotly_chart(
                class_charts.first_token_chart(tree), key="cls-tree", config={"displaylogo": False}
            )
            st.dataframe(
                pd.DataFrame(
                    {"seed": [a.detail.get("seed") for a in answers], "continuation": [a.answer for a in answers]}
                ),
                hide_index=True,
                key="cls-continuations",
            )
    else:
        st.markdown(f"**Sentence:** {views.markdown_text(settings['sentence'])}")
        reveal = activities.token_count_reveal(settings["sentence"], tuple(settings["tokenizers"]))
        st.plotly_chart(
            class_charts.token_guess_chart(reveal, answers, reveal=revealed),
            key="cls-token-chart",
            config={"displaylogo": False},
        )
        if revealed:
            token_splits(reveal)


def token_splits(reveal: list) -> None:
    for split in reveal:
        st.markdown(f"**{split.tokenizer}**: {split.count} tokens")
        st.markdown(pieces_html(split.pieces), unsafe_allow_html=True)  # escaped chips


def leaderboard(rows: list[tuple[str, float]]) -> None:
    st.subheader("Leaderboard")
    st.caption(
        "Points add up the model's log-probability for each guess: 0 is a guess the model was "
        "sure of, -5 one it gave less than 1%."
    )
    st.dataframe(
        pd.DataFrame(rows, columns=["name", "points"]).round({"points": 2}),
        hide_index=True,
        key="cls-leaderboard",
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _reference(model: str, prompt: str, top_n: int, _loaded) -> activities.GuessReference:
    return activities.guess_reference(_loaded, prompt, top_n=top_n)


def guess_reference(model: str, prompt: str, top_n: int):
    loaded = ui.get_model(model)
    if loaded is None:
        return None
    return _reference(model, prompt, top_n, loaded)


# --- a student -----------------------------------------------------------------------------------


def student(code: str, token: str) -> None:
    info = store().class_info(code)
    st.header(views.markdown_text(info.title) if info.title else "Class", anchor=False)
    me = STATE.get("cls-me")
    st.caption(
        (f"You are {views.markdown_text(me)}. " if me else "")
        + "Keep this page open: it follows the teacher's screen. Reloading it keeps you in "
        "the class; so does its address, which is yours alone."
    )
    follow(code, token)


@st.fragment(run_every=POLL)
def follow(code: str, token: str) -> None:
    with ui.friendly_errors():
        info = store().class_info(code)
        current = info.current_round
        if current is None:
            st.info("Waiting for the teacher to open a round.", icon=":material/hourglass_empty:")
        else:
            title = activities.ACTIVITIES[current.activity]
            st.subheader(f"Round {current.number}: {title}")
            mine = store().my_answer(code, token, current.id)
            if current.status == "open" and mine is None:
                answer_form(code, token, current)
            elif mine is not None:
                st.success(f"Your answer is in: {views.markdown_text(mine.answer)}", icon=":material/check:")
                if current.status == "revealed":
                    show_my_result(current, mine)
                else:
                    st.caption("Wait for the teacher's reveal.")
            else:
                st.warning("This round is closed: wait for the next one.", icon=":material/lock:")
        if info.leaderboard_shown:
            leaderboard(store().leaderboard(code))


def answer_form(code: str, token: str, current: class_store.RoundInfo) -> None:
    settings = current.settings
    box = f"cls-answer-{current.id}"
    if current.activity == "guess":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])} …")
        st.caption("What word will the model write next? One guess; it cannot be changed.")
        with st.form(f"cls-form-{current.id}"):
            st.text_input("Your guess", key=box, max_chars=MAX_GUESS_CHARS)
            sent = st.form_submit_button("Send my guess", type="primary")
        if sent:
            submit_guess(code, token, current, STATE.get(box, ""))
    elif current.activity == "sample":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])}")
        seed = views.student_seed(token)
        st.caption(
            f"Your model continues the prompt with the teacher's settings and your own seed "
            f"({seed}). Press the button; everyone's runs go to the model together."
        )
        if st.button("Write my continuation", type="primary", key=f"cls-run-{current.id}"):
            submit_sample(code, token, current, seed)
    else:
        st.markdown(f"**Sentence:** {views.markdown_text(settings['sentence'])}")
        st.caption("How many tokens does this sentence cost in each tokenizer? Guess, then send.")
        with st.form(f"cls-form-{current.id}"):
            for name in settings["tokenizers"]:
                st.number_input(
                    f"Tokens in {name}", min_value=0, max_value=10_000, step=1, key=f"{box}-{name}"
                )
            sent = st.form_submit_button("Send my guesses", type="primary")
        if sent:
            counts = {name: int(STATE.get(f"{box}-{name}", 0)) for name in settings["tokenizers"]}
            submit(code, token, current, activities.token_answer(counts), detail=counts)


def submit(code, token, current, answer: str, detail=None, score=None) -> None:
    try:
        recorded = store().submit(code, token, current.id, answer, detail=detail, score=score)
    except class_store.RoundClosed:
        st.error("The teacher closed this round before your answer arrived.", icon=":material/lock:")
        return
    except Exception as error:  # noqa: BLE001
        ui.show_error(error)
        return
    if not recorded:
        st.info("Your answer was already in; it is counted once.", icon=":material/check:")
    st.rerun(scope="fragment")


def submit_guess(code: str, token: str, current: class_store.RoundInfo, guess: str) -> None:
    settings = current.settings
    if not guess.strip():
        st.error("Type a word first.", icon=":material/error:")
        return
    if len(guess) > MAX_GUESS_CHARS:
        st.error(f"A guess is at most {MAX_GUESS_CHARS} characters.", icon=":material/error:")
        return
    loaded = ui.get_model(settings["model"])
    if loaded is None:
        return
    try:
        scored = activities.score_guess(loaded, settings["prompt"], guess)
    except ValueError as error:
        ui.show_error(error)
        return
    submit(code, token, current, guess, detail=scored.detail(), score=scored.log_probability)


def submit_sample(code: str, token: str, current: class_store.RoundInfo, seed: int) -> None:
    settings = current.settings
    loaded = ui.get_model(settings["model"])
    if loaded is None:
        return
    with st.spinner("Your model is writing..."), ui.page_run("class"):
        result = activities.run_sample(loaded, settings["prompt"], settings, seed)
    detail = {"seed": seed, "first_token": activities.first_token(loaded, result)}
    submit(code, token, current, result.text, detail=detail)


def show_my_result(current: class_store.RoundInfo, mine) -> None:
    settings = current.settings
    if current.activity == "guess":
        reference = guess_reference(settings["model"], settings["prompt"], settings["top_n"])
        if reference is not None:
            st.markdown(
                f"The model's top token: **{views.markdown_text(reference.top_token)}** "
                f"({reference.probabilities[0]:.0%}). Your guess scored "
                f"{mine.score:.2f} (its log-probability: closer to 0 is better)."
            )
    elif current.activity == "tokens":
        reveal = activities.token_count_reveal(settings["sentence"], tuple(settings["tokenizers"]))
        token_splits(reveal)


# --- which view ------------------------------------------------------------------------------

code = views.normalise_code(STATE.get("cls-code", ""))
try:
    if not code:
        start_or_join()
    elif STATE.get("cls-key"):
        teacher(code, STATE["cls-key"])
    elif STATE.get("cls-student"):
        student(code, STATE["cls-student"])
    else:
        st.subheader("Join a class")
        join_form(code)
except class_store.ClassNotFound:
    st.error(
        "This class has ended or its code is wrong: classes close after "
        f"{class_store.class_hours():g} hours and their answers are deleted.",
        icon=":material/event_busy:",
    )
    st.button("Start or join another class", on_click=leave, key="cls-leave")
except class_store.NotTeacher:
    st.error(
        "This teacher link's key is wrong, so it cannot run the lesson. Open the teacher link "
        "you were given when you started the class, or join as a student.",
        icon=":material/key_off:",
    )
    st.button("Start or join another class", on_click=leave, key="cls-leave")
except Exception as error:  # noqa: BLE001 - never a traceback
    ui.show_error(error)
SETTINGS.publish(sidebar=False)
