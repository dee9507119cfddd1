"""Training page: pre-train a tiny GPT-2 from scratch, live, then use it on the other pages."""

from __future__ import annotations

import streamlit as st

from llmlab import assets, charts, ui
from llmlab.app import sharing
from llmlab.page_state import Choice, Integer, Number, Text
from llmlab.tokenization import bpe
from llmlab.training import jobs, loop, presets, saving

SOURCES = ["Botchan (a novel, 274 KB)", "My own text"]
TOKENIZERS = {"char": "Character-level", "bpe": "BPE (learnt as on the Tokenizers page)"}
BUDGETS = ["Time budget", "Number of steps"]
JOB = "train-job"  # this session's TrainingJob
HEARTBEAT_SECONDS = 30.0  # a run nobody has looked at for this long was left: it stops
REFRESH_SECONDS = 1.0
STATE = st.session_state

SETTINGS = sharing.PageSettings(
    "training",
    [
        Choice("text", "train-source", SOURCES[0], options=tuple(SOURCES)),
        Text("own_text", "train-own", "", max_chars=loop.MAX_TEXT_CHARS),
        Choice("tokenizer", "train-tokenizer", "char", options=tuple(TOKENIZERS)),
        Integer("vocab", "train-vocab", 512, low=bpe.MIN_VOCAB, high=bpe.MAX_VOCAB),
        Choice("preset", "train-preset", presets.DEFAULT_PRESET, options=tuple(presets.PRESETS)),
        Number(
            "learning_rate",
            "train-lr",
            loop.TrainSettings.learning_rate,
            low=1e-6,
            high=1e9,
            step=1e-6,
        ),
        Choice("budget", "train-budget", BUDGETS[0], options=tuple(BUDGETS)),
        Integer("seconds", "train-seconds", 60, low=1, high=int(loop.MAX_SECONDS)),
        Integer("steps", "train-steps", 300, low=1, high=loop.MAX_STEPS),
        Integer("seed", "train-seed", 0, low=0, high=loop.MAX_SEED),
    ],
)

ui.page_intro(
    "Training",
    "Watch pre-training happen: a real GPT-2, tiny, trained from random numbers on this CPU. "
    "It learns to predict the next token of a text, and goes from gibberish to words.",
)
SETTINGS.restore()


def botchan() -> str | None:
    try:
        return assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")
    except assets.AssetError as error:
        ui.show_error(error)
        ui.offer_fetch("botchan", key="train-fetch-botchan")
        return None


def current_job() -> jobs.TrainingJob | None:
    return STATE.get(JOB)


settings_column, live_column = st.columns([1, 2])
with settings_column:
    source = st.radio("Text", SOURCES, key="train-source")
    if source == SOURCES[1]:
        st.text_area(
            "Your text", key="train-own", height=150,
            help=f"Up to {loop.MAX_TEXT_CHARS:,} characters are used; a few pages or more train "
            "best.",
        )  # fmt: skip
    tokenizer = st.radio(
        "Tokenizer", list(TOKENIZERS), key="train-tokenizer", format_func=TOKENIZERS.get,
        help="Character-level: one token per character. BPE: pieces learnt from the text, as on "
        "the Tokenizers page.",
    )  # fmt: skip
    vocab = 512
    if tokenizer == "bpe":
        vocab = st.number_input(
            "BPE vocabulary size", *SETTINGS.bounds("vocab"), key="train-vocab",
            help="256 bytes plus the merges learnt from the training part of the text.",
        )  # fmt: skip
    if tokenizer == "char":  # every character of the text, plus the 2 special tokens
        chosen_text = botchan() if source == SOURCES[0] else STATE.get("train-own", "")
        shown_vocab = len(set((chosen_text or "")[: loop.MAX_TEXT_CHARS])) + 2
    else:
        shown_vocab = int(vocab) + 2
    preset_name = st.selectbox(
        "Model size", list(presets.PRESETS), key="train-preset",
        format_func=lambda n: presets.PRESETS[n].describe(shown_vocab),
        help="Parameters counted by the same formulas as the Architecture page, for this "
        f"text's vocabulary ({shown_vocab:,} tokens, 2 of them special).",
    )  # fmt: skip
    rate = st.number_input(
        "Learning rate (peak)", *SETTINGS.bounds("learning_rate"), key="train-lr",
        format="%.6f",
        help="How far each step moves the weights. Warm-up, then cosine decay to a tenth.",
    )  # fmt: skip
    budget = st.radio("Train for", BUDGETS, key="train-budget", horizontal=True)
    if budget == BUDGETS[0]:
        seconds = st.number_input("Seconds", *SETTINGS.bounds("seconds"), key="train-seconds")
        steps = None
    else:
        steps = st.number_input("Steps", *SETTINGS.bounds("steps"), key="train-steps")
        seconds = None
    seed = st.number_input(
        "Seed", *SETTINGS.bounds("seed"), key="train-seed",
        help="Same seed, text and settings: the same loss curve.",
    )  # fmt: skip
SETTINGS.publish()

job = current_job()
running = job is not None and not job.done
with settings_column:
    start, stop = st.columns(2)
    train_clicked = start.button(
        "Train", key="train-start", type="primary", disabled=running, icon=":material/play_arrow:"
    )
    if stop.button("Stop", key="train-stop", disabled=not running, icon=":material/stop:"):
        job.stop()  # type: ignore[union-attr]

if train_clicked:
    current = job
    text = botchan() if source == SOURCES[0] else STATE.get("train-own", "")
    if text is not None:
        settings = loop.TrainSettings(
            tokenizer=tokenizer, vocab_size=int(vocab), preset=preset_name,
            learning_rate=float(rate), steps=None if steps is None else int(steps),
            seconds=None if seconds is None else float(seconds), seed=int(seed),
        )  # fmt: skip
        with ui.friendly_errors(), st.spinner("Reading the text and counting the baselines..."):
            prepared = loop.prepare(text, settings.check())
            job = jobs.TrainingJob(prepared, settings, heartbeat_seconds=HEARTBEAT_SECONDS)
            STATE[JOB] = job.start()
        if STATE.get(JOB) is not None and STATE[JOB] is not current:
            st.rerun()  # draw Train disabled and Stop enabled for the run that started


def show_progress(job: jobs.TrainingJob) -> None:
    """Everything that changes while the model trains (reads the job; never waits for it)."""
    job.touch()
    progress = job.progress
    if job.prepared.notice:
        st.info(job.prepared.notice, icon=":material/content_cut:")
    if job.state == "queued":
        ahead = job.queue_position() or 0
        who = (
            "nobody else" if ahead == 0 else ("1 training" if ahead == 1 else f"{ahead} trainings")
        )
        st.info(
            f"Waiting for the CPU: another training is running; {who} ahead of yours. Stop "
            "frees your place.",
            icon=":material/hourglass_top:",
        )
    elif job.state == "running":
        st.caption(
            f"Step {progress.step:,} · {progress.tokens_per_second:,.0f} tokens/s · about "
            f"{progress.seconds_left:,.0f} s left · learning rate {progress.learning_rate:.1e}"
        )
    history = progress.history
    if not history:
        return
    last = history[-1]
    baselines = job.prepared.baselines.as_dict()
    left, middle, right = st.columns(3)
    left.metric("Validation loss (nats)", f"{last.validation_loss:.3f}")
    middle.metric("Validation perplexity", f"{last.validation_perplexity:,.1f}")
    right.metric("Bigram line to beat", f"{baselines['bigram']:.3f}")
    perplexity = st.toggle("Show as perplexity", key="train-perplexity")
    figure = charts.training_loss_chart(
        [c.step for c in history], [c.train_loss for c in history],
        [c.validation_loss for c in history], baselines, perplexity=perplexity,
    )  # fmt: skip
    sharing.chart(figure, key="train-loss-chart", title="Loss while training")
    snapshot = progress.snapshots[-1]
    if job.done and len(progress.snapshots) > 1:  # look back at any checkpoint
        steps = [shot.step for shot in progress.snapshots]
        chosen = st.select_slider("Checkpoint", steps, value=steps[-1], key="train-checkpoint")
        snapshot = progress.snapshots[steps.index(chosen)]
    st.markdown(f"**A sample at step {snapshot.step:,}** (same prompt, same seed every time)")
    st.code(snapshot.sample, language=None, wrap_lines=True)
    st.markdown(
        f"**What it knows now**: the next token after “{job.settings.probe_prompt}” "
        f"at step {snapshot.step:,}"
    )
    labels = [ui.visible_whitespace(token) for token, _ in snapshot.probe]
    shares = [p for _, p in snapshot.probe]
    sharing.chart(
        charts.next_token_bars(labels, shares, shares, [None] * len(shares)),
        key="train-probe-chart", title="What it knows now",
    )  # fmt: skip
    ui.page_link(
        "app_pages/next_token.py",
        "The same view, with every sampling knob: the Next-Token page (use this model there)",
        icon=":material/bar_chart:",
    )


@st.fragment(run_every=REFRESH_SECONDS if running else None)
def live_view() -> None:
    job = current_job()
    if job is None:
        st.info("Choose a text and a model size, then press **Train**.", icon=":material/school:")
        return
    show_progress(job)
    if job.done and STATE.get("train-shown") is not job:
        STATE["train-shown"] = job
        st.rerun()  # the whole page, so the buttons below appear


def after_training(job: jobs.TrainingJob) -> None:
    result = job.result
    if job.state in ("diverged", "failed") or result is None or result.model is None:
        st.error(job.message or "Training ended without a model.", icon=":material/error:")
        return
    loaded = result.model
    st.success(
        f"{job.message} Tokens per second: {result.tokens_per_second:,.0f}.",
        icon=":material/check_circle:",
    )
    use, save, download = st.columns(3)
    if ui.is_own_model(loaded.name):
        use.success("In the pickers of Next-Token, Decoding and Architecture, as “(yours)”.")
    elif use.button("Use this model", key="train-use", icon=":material/input:"):
        ui.use_own_model(loaded)
        st.rerun()
    with save:
        name = st.text_input("Save as", key="train-name", max_chars=64, placeholder="my-model")
        if st.button("Save", key="train-save", icon=":material/save:", disabled=not name.strip()):
            with ui.friendly_errors():
                folder = saving.save(loaded, name.strip())
                st.success(f"Saved in {folder} (safetensors and config).")
    with download:
        stem = name.strip() if name.strip() and _safe(name.strip()) else "my-tiny-gpt"
        st.download_button(
            "Download (zip)", data=lambda: saving.zip_bytes(loaded, stem),
            file_name=f"{stem}.zip", mime="application/zip", on_click="ignore",
            icon=":material/download:", key="train-download",
        )  # fmt: skip


def _safe(name: str) -> bool:
    try:
        saving.check_name(name)
    except ValueError:
        return False
    return True


def load_saved() -> None:
    """A model saved earlier (on this server, under LLMLAB_HOME) back into the pickers."""
    names = saving.saved_names()
    if not names:
        return
    with st.expander("Models saved on this server", icon=":material/folder_open:"):
        chosen = st.selectbox("Saved model", names, key="train-saved")
        if st.button("Load and use it", key="train-load"):
            with ui.friendly_errors():
                ui.use_own_model(saving.load(chosen))
                st.success(
                    f"{chosen} is in the pickers of Next-Token, Decoding and Architecture, "
                    "as “(yours)”."
                )


with settings_column:
    load_saved()
with live_column:
    live_view()
    job = current_job()
    if job is not None and job.done:
        after_training(job)
