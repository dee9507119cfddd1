"""Class page: a live lesson. The teacher starts a class and opens rounds; students join with a
code and answer on their own screens; the projected view shows the class's answers beside the
model's. Everything lives in the class store (`llmlab.classroom`), shared by every session and
every server replica; this page only draws it."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from llmlab import ui
from llmlab.app import sharing
from llmlab.classroom import activities, views
from llmlab.classroom import charts as class_charts
from llmlab.classroom import store as class_store
from llmlab.page_state import Text
from llmlab.tokenization.pieces import visible
from llmlab.tokenization.samples import CSS, pieces_html

STATE = st.session_state
POLL = views.POLL_SECONDS
MAX_TITLE = 80
MAX_PROMPT = 2_000
MODEL_DEFAULT = "smollm2-135m-instruct"
TOKENIZERS = ("gpt2", "cl100k_base", "o200k_base", "llama-spm", "bert-wordpiece")
UNKNOWN_CODE = "No class has this code: check it on the teacher's screen."
PROMPT = "The capital of France is"
STORY = "Once upon a time"
SENTENCE = "Tokenization isn't always intuitive!"

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


def rerun_view() -> None:
    """Draw the live view again now: only the fragment when this run is the fragment's own."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:  # a full run of the page (the first one, or a test's)
        st.rerun()


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
                max_chars=MAX_TITLE,
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
            max_chars=class_store.MAX_NAME,
            help="What the class sees if the teacher shows the leaderboard. Leave it empty for "
            "a made-up name. Up to 40 characters.",
        )
        joined = st.form_submit_button("Join", type="primary", key="cls-join")
    if joined:
        join(views.normalise_code(STATE.get("cls-join-code", "")), STATE.get("cls-name", ""))


def join(typed: str, name: str) -> None:
    """Join the class; a refusal is said in the page and what was typed stays in its box."""
    if not typed:
        st.error("Type the class code first.", icon=":material/error:")
        return
    if not views.looks_like_code(typed):
        st.error(UNKNOWN_CODE, icon=":material/search_off:")
        return
    try:
        ticket = store().join(typed, name, client=client_id())
    except class_store.JoinRefused as refused:
        message = UNKNOWN_CODE if refused.reason == "unknown" else f"{refused}."
        st.error(message[0].upper() + message[1:], icon=":material/block:")
        return
    except Exception as error:  # noqa: BLE001 - a page never shows a traceback
        ui.show_error(error)
        return
    STATE["cls-code"], STATE["cls-student"] = ticket.code, ticket.token
    STATE.pop("cls-key", None)
    st.rerun()


def client_id() -> str:
    """Who is knocking, for the store's join rate limit: the browser's address when known."""
    try:
        address = st.context.ip_address
    except Exception:  # noqa: BLE001 - no browser
        address = None
    return address if isinstance(address, str) and address else "unknown"


# --- the teacher -------------------------------------------------------------------------------


def teacher(code: str, key: str) -> None:
    info = store().class_info(code)
    store().verify_teacher(code, key)
    st.header(views.markdown_text(info.title) if info.title else "Your class", anchor=False)
    join_panel(code, key, info)
    st.divider()
    # Each part in one container: the live view's place on the page (hence its identity) stays
    # the same whichever activity's controls are above it.
    with st.container():
        round_controls(code, key)
    st.divider()
    with st.container():
        projected(code, key)


def join_panel(code: str, key: str, info: class_store.ClassInfo) -> None:
    page = here()
    link = views.join_link(page, code)
    words, picture = st.columns([3, 2], gap="large")
    with words:
        st.markdown(
            "Students join at the address below, or by scanning the QR code, with the code:"
        )
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
    left, right = st.columns([3, 2])
    if activity == "guess":
        st.caption(
            "Students guess the word the model will write next. You see their guesses live; "
            "the model's own probabilities stay hidden until you reveal them."
        )
        with left:
            prompt = st.text_area("Prompt", PROMPT, key="cls-guess-prompt", max_chars=MAX_PROMPT)
        with right:
            model = ui.model_picker("cls-guess-model", default=MODEL_DEFAULT)
            top_n = st.slider("The model's top tokens shown", 5, 20, 10, key="cls-guess-top")
        settings = {"prompt": prompt, "model": model, "top_n": top_n}
    elif activity == "sample":
        st.caption(
            "Every student's model continues the same prompt with the same settings, each with "
            "its own seed. With sampling the texts differ; with greedy everyone gets the same."
        )
        with left:
            prompt = st.text_area("Prompt", STORY, key="cls-sample-prompt", max_chars=MAX_PROMPT)
        with right:
            model = ui.model_picker("cls-sample-model", default=MODEL_DEFAULT)
            greedy = st.toggle("Greedy: always the most likely token", key="cls-sample-greedy")
            temperature = st.slider(
                "Temperature", 0.1, 2.0, 1.0, 0.1, key="cls-sample-temperature", disabled=greedy
            )
            top_p = st.slider(
                "Top-p", 0.05, 1.0, 0.95, 0.05, key="cls-sample-top-p", disabled=greedy
            )
            length = st.slider("New tokens", 1, 24, 8, key="cls-sample-length")
        settings = {"prompt": prompt, "model": model}
        try:
            settings["sampling"] = activities.sample_settings(
                "greedy" if greedy else "top_p",
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=length,
            )
        except ValueError as error:
            ui.show_error(error)
            return
    else:
        st.caption(
            "Students guess how many tokens the sentence costs in two tokenizers. The reveal "
            "shows the real pieces."
        )
        with left:
            sentence = st.text_area(
                "Sentence", SENTENCE, key="cls-tokens-sentence", max_chars=MAX_PROMPT
            )
        with right:
            first = st.selectbox("First tokenizer", TOKENIZERS, 0, key="cls-tokens-a")
            second = st.selectbox("Second tokenizer", TOKENIZERS, 2, key="cls-tokens-b")
        settings = {"sentence": sentence, "tokenizers": list(dict.fromkeys([first, second]))}
    if st.button("Open the round", type="primary", key="cls-open", icon=":material/play_arrow:"):
        text = settings.get("prompt", settings.get("sentence", ""))
        if not text.strip():
            st.error("Type a prompt first: the round needs one.", icon=":material/error:")
            return
        if len(text) > MAX_PROMPT:
            st.error(f"A prompt is at most {MAX_PROMPT:,} characters.", icon=":material/error:")
            return
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
        st.subheader(f"Round {current.number}: {activities.ACTIVITIES[current.activity]}")
        st.markdown(
            f"**{count}** of {info.student_count} students answered · the round is "
            f"**{current.status}**."
        )
        buttons = st.columns(4)
        if current.status == "open" and buttons[0].button(
            "Close the round", key="cls-close", icon=":material/lock:",
            help="No more answers; nothing is revealed yet.",
        ):  # fmt: skip
            store().close_round(code, key, current.id)
            rerun_view()
        if current.status != "revealed" and buttons[1].button(
            "Reveal", type="primary", key="cls-reveal", icon=":material/visibility:",
            help="Closes the round and shows the model's answer on every screen.",
        ):  # fmt: skip
            store().reveal_round(code, key, current.id)
            rerun_view()
        shown = buttons[2].toggle(
            "Show the leaderboard",
            value=info.leaderboard_shown,
            key=f"cls-board-{info.leaderboard_shown}",
            help="Names and points appear on every screen only while this is on.",
        )
        if shown != info.leaderboard_shown:
            store().show_leaderboard(code, key, shown)
            rerun_view()
        with buttons[3]:
            sharing.download(
                "Answers as CSV",
                data=lambda: store().export_csv(code, key),
                file_name=f"class-{code}.csv",
                key="cls-csv",
                help="Every round's answers with names and points, for a spreadsheet.",
            )
        answers = store().answers(code, key, current.id)
        show_round(current, answers, revealed=current.status == "revealed")
        if info.leaderboard_shown:
            leaderboard(store().leaderboard(code, key))


def show_round(current: class_store.RoundInfo, answers: list, revealed: bool) -> None:
    """The class's answers to the round; the model's side too once it is revealed."""
    settings = current.settings
    if current.activity == "guess":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])} …")
        reference = guess_reference(settings["model"], settings["prompt"], settings["top_n"])
        if reference is None:
            return
        table = activities.class_guess_table(reference, answers)
        if revealed:
            matched = activities.matched_count(answers)
            st.success(
                f"The model's top token is **{views.markdown_text(visible(reference.top_token))}**"
                f" ({reference.probabilities[0]:.0%}): {matched} of {len(answers)} guessed it.",
                icon=":material/visibility:",
            )
            st.caption(
                "Orange: the share of the class that guessed each token. Blue: the model's "
                "probability for it. The star marks the model's top token."
            )
            figure = class_charts.guess_chart(table)
        elif answers:
            st.caption("The class's guesses so far; the model's answer comes with the reveal.")
            figure = views.class_guess_figure(table)
        else:
            st.caption("No guesses yet.")
            return
        st.plotly_chart(figure, key="cls-guess-chart", config={"displaylogo": False})
    elif current.activity == "sample":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])}")
        if not answers:
            st.caption("No continuations yet.")
            return
        texts = [(a.detail or {}).get("text", a.answer) for a in answers]
        distinct = len(set(texts))
        st.markdown(
            f"**{len(texts)}** continuations, **{distinct}** different"
            + (" — all the same text." if distinct == 1 and len(texts) > 1 else ".")
        )
        st.caption(
            "The ring shows which first token each student's model drew (inside) and the token "
            "after it (outside): the same settings, different seeds."
        )
        tree = activities.first_token_tree(answers)
        st.plotly_chart(
            class_charts.first_token_chart(tree), key="cls-tree", config={"displaylogo": False}
        )
        seeds = [(a.detail or {}).get("seed") for a in answers]
        st.dataframe(
            pd.DataFrame({"seed": seeds, "continuation": texts}),
            hide_index=True,
            key="cls-continuations",
        )
    else:
        st.markdown(f"**Sentence:** {views.markdown_text(settings['sentence'])}")
        names = settings["tokenizers"]
        guesses = {
            n: [int(a.detail[n]) for a in answers if isinstance((a.detail or {}).get(n), int)]
            for n in names
        }
        with ui.friendly_errors():
            reveal = activities.token_count_reveal(settings["sentence"], names)
            real = {r.tokenizer: r.count for r in reveal} if revealed else {}
            st.plotly_chart(
                class_charts.token_guess_chart(guesses, real),
                key="cls-token-chart",
                config={"displaylogo": False},
            )
            if revealed:
                table = activities.class_token_table(reveal, answers)
                st.table(table[["title", "tokens", "median_guess", "exact", "answers"]])
                token_splits(settings["sentence"], names)


def token_splits(sentence: str, names: list[str]) -> None:
    """Each tokenizer's real pieces, drawn as on the Tokenizers page."""
    for name in names:
        tokenizer = ui.get_tokenizer(name)
        if tokenizer is None:
            continue
        pieces = tokenizer.pieces(sentence)
        st.markdown(f"**{tokenizer.title}**: {len(pieces)} tokens")
        st.markdown(pieces_html(pieces), unsafe_allow_html=True)  # every piece escaped


def leaderboard(rows: list[tuple[str, float]]) -> None:
    st.subheader("Leaderboard")
    st.caption(
        "Points add up each answer's score. A guessed token scores the model's log-probability "
        "for it: 0 when the model was sure, about -5 for a token it gave 1%. A token count "
        "loses one point per token it was off."
    )
    frame = pd.DataFrame(rows, columns=["name", "points"])
    st.dataframe(frame.round({"points": 2}), hide_index=True, key="cls-leaderboard")


@st.cache_data(show_spinner=False, max_entries=32)
def _reference(model: str, prompt: str, top_n: int, _loaded) -> activities.GuessReference:
    return activities.guess_reference(_loaded, prompt, top_n=top_n)


def guess_reference(model: str, prompt: str, top_n: int) -> activities.GuessReference | None:
    """The model's top tokens for the round's prompt (one forward pass per server, cached)."""
    loaded = ui.get_model(model)
    if loaded is None:
        return None
    return _reference(model, prompt, top_n, loaded)


# --- a student -----------------------------------------------------------------------------------


def student(code: str, token: str) -> None:
    info = store().class_info(code)
    me = store().student(code, token)
    st.header(views.markdown_text(info.title) if info.title else "Class", anchor=False)
    st.caption(
        f"You are **{views.markdown_text(me.name)}**. Keep this page open: it follows the "
        "teacher's screen. Reloading keeps you in the class, and so does this page's address, "
        "which is yours alone."
    )
    with st.container():  # one place on the page, so the live view keeps its identity
        follow(code, token)


@st.fragment(run_every=POLL)
def follow(code: str, token: str) -> None:
    """The student's view of the current round, asked of the store every couple of seconds."""
    with ui.friendly_errors():
        info = store().class_info(code)
        current = info.current_round
        if current is None:
            st.info("Waiting for the teacher to open a round.", icon=":material/hourglass_empty:")
        else:
            st.subheader(f"Round {current.number}: {activities.ACTIVITIES[current.activity]}")
            mine = store().my_answer(code, token, current.id)
            if current.status == "open" and mine is None:
                answer_form(code, token, current)
            elif mine is not None:
                st.success(
                    f"Your answer is in: {views.markdown_text(mine.answer)}",
                    icon=":material/check:",
                )
                if notice := STATE.pop("cls-notice", None):
                    st.info(notice, icon=":material/info:")
                if current.status == "revealed":
                    show_my_result(current, mine)
                else:
                    st.caption("Wait for the teacher's reveal.")
            elif current.status == "revealed":
                st.caption("You did not answer this round. The answer:")
                show_my_result(current, None)
            else:
                if problem := STATE.pop(f"cls-answer-{current.id}-problem", None):
                    st.error(problem, icon=":material/lock:")
                st.warning("This round is closed: wait for the next one.", icon=":material/lock:")
        if info.leaderboard_shown:
            leaderboard(store().leaderboard(code))


def answer_form(code: str, token: str, current: class_store.RoundInfo) -> None:
    """The round's answer box. The button sends in its callback, before the page redraws: a
    double click or the live view's next poll cannot lose a press, and a second press finds
    the answer already in (counted once)."""
    settings = current.settings
    box = f"cls-answer-{current.id}"
    send = {"on_click": send_answer, "args": (code, token, current), "type": "primary"}
    if current.activity == "guess":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])} …")
        st.caption("Which word will the model write next? One guess, and it cannot be changed.")
        st.text_input("Your guess", key=box, max_chars=class_store.MAX_ANSWER)
        st.button("Send my guess", key=f"{box}-send", **send)
    elif current.activity == "sample":
        st.markdown(f"**Prompt:** {views.markdown_text(settings['prompt'])}")
        st.caption(
            f"Your model continues the prompt with the teacher's settings and your own seed "
            f"({views.student_seed(token)}). Everyone's runs go to the model together."
        )
        st.button("Write my continuation", key=f"{box}-send", **send)
    else:
        st.markdown(f"**Sentence:** {views.markdown_text(settings['sentence'])}")
        st.caption("How many tokens does this sentence cost in each tokenizer? Guess, then send.")
        for name in settings["tokenizers"]:
            st.number_input(
                f"Tokens in {name}", min_value=0, max_value=10_000, step=1, key=f"{box}-{name}"
            )
        st.button("Send my guesses", key=f"{box}-send", **send)
    if problem := STATE.pop(f"{box}-problem", None):
        st.error(problem, icon=":material/error:")


def send_answer(code: str, token: str, current: class_store.RoundInfo) -> None:
    """The send button's callback: the answer, checked and scored, into the store. A refusal
    is kept for the page to show under the box, where what was typed stays."""
    box = f"cls-answer-{current.id}"
    try:
        answer, detail, score = make_answer(token, current, box)
        recorded = store().submit(code, token, current.id, answer, detail=detail, score=score)
    except class_store.RoundClosed:
        STATE[f"{box}-problem"] = "The round closed before your answer arrived."
    except (ValueError, class_store.ClassError) as error:
        STATE[f"{box}-problem"] = str(error)[:1].upper() + str(error)[1:]
    else:
        if not recorded:
            STATE["cls-notice"] = "Your answer was already in: it is counted once."


def make_answer(token: str, current: class_store.RoundInfo, box: str):
    """(answer, detail, score) for the round's activity from what the student gave."""
    settings = current.settings
    if current.activity == "guess":
        guess = STATE.get(box, "")
        if not guess.strip():
            raise ValueError("type a word first")
        if len(guess) > class_store.MAX_ANSWER:
            raise ValueError(f"a guess is at most {class_store.MAX_ANSWER} characters")
        scored = activities.score_guess(shared_model(settings["model"]), settings["prompt"], guess)
        return guess, scored.as_detail(), scored.log_probability
    if current.activity == "sample":
        seed = views.student_seed(token)
        with ui.page_run("class"):
            result = activities.run_sample(
                shared_model(settings["model"]), settings["prompt"], settings["sampling"], seed
            )
        answer, detail = activities.sample_answer(result, seed)
        return answer, detail, None
    counts = {name: int(STATE.get(f"{box}-{name}", 0)) for name in settings["tokenizers"]}
    answer, detail = activities.token_guess_detail(counts)
    reveal = activities.token_count_reveal(settings["sentence"], settings["tokenizers"])
    return answer, detail, activities.score_token_guess(reveal, counts)


def shared_model(name: str):
    """The server's shared copy of the round's model (loaded once, for every student)."""
    loaded = ui.get_model(name)
    if loaded is None:
        raise ValueError(f"the model {name} cannot be loaded right now: ask the teacher")
    return loaded


def show_my_result(current: class_store.RoundInfo, mine: class_store.Answer | None) -> None:
    settings = current.settings
    if current.activity == "guess":
        reference = guess_reference(settings["model"], settings["prompt"], settings["top_n"])
        if reference is not None:
            st.markdown(
                "The model's top token: "
                f"**{views.markdown_text(visible(reference.top_token))}** "
                f"({reference.probabilities[0]:.0%})."
            )
        if mine is not None and mine.score is not None:
            st.markdown(
                f"Your guess scored **{mine.score:.2f}**: the model's log-probability for it "
                f"(a probability of {math.exp(mine.score):.2%}); closer to 0 is better."
            )
    elif current.activity == "sample":
        if mine is not None:
            st.caption("Your whole continuation:")
            st.text((mine.detail or {}).get("text", mine.answer))
    else:
        with ui.friendly_errors():
            reveal = activities.token_count_reveal(settings["sentence"], settings["tokenizers"])
            st.markdown(", ".join(f"**{r.title}**: {r.count} tokens" for r in reveal))
            token_splits(settings["sentence"], settings["tokenizers"])


# --- which view ------------------------------------------------------------------------------

code = views.normalise_code(STATE.get("cls-code", ""))
try:
    if not code:
        start_or_join()
    elif not views.looks_like_code(code):
        raise class_store.ClassNotFound(UNKNOWN_CODE)
    elif STATE.get("cls-key"):
        teacher(code, STATE["cls-key"])
    elif STATE.get("cls-student"):
        student(code, STATE["cls-student"])
    else:
        st.subheader("Join a class")
        join_form(code)
except class_store.ClassNotFound:
    st.error(
        "This class has ended, or its code is wrong. A class lasts "
        f"{class_store.class_hours():g} hours; then it and its answers are deleted.",
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
except class_store.NotStudent:
    st.error(
        "This student link is not from this class (or the class started again). Join again "
        "with the code.",
        icon=":material/person_off:",
    )
    STATE.pop("cls-student", None)
    join_form(code)
except Exception as error:  # noqa: BLE001 - never a traceback
    ui.show_error(error)
SETTINGS.publish(sidebar=False)
