"""Chat vs Base: one prompt through a base model and a chat model, the template, a chat, and one
conversation in every family's chat format."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from llmlab import chat, chat_formats, exports, registry, ui
from llmlab.app import sharing
from llmlab.generation.decoding import MAX_NEW_TOKENS, STRATEGIES
from llmlab.page_state import Choice, Flag, Integer, Number, Text

READY_PROMPTS = [
    "Once upon a time",
    "What is 2+2?",
    "Suggest a party theme.",
    "Write a short apology email to Sarah about a gardening mistake.",
]
# Beam search writes no text until it ends, so it cannot stream; the Decoding page shows it.
STREAMING_STRATEGIES = [name for name in STRATEGIES if name != "beam"]
FRAMES = {"plain": "Plain continuation", "few-shot": "“User: / Assistant:” few-shot frame"}
# Longer prompts are refused (kept in the box, with a notice): both models would read them on a
# CPU, and the page draws every character of what they see.
MAX_PROMPT_CHARS = 4_000
MAX_SYSTEM_CHARS = 2_000
MAX_TOKENS = min(256, MAX_NEW_TOKENS)  # the page's token sliders stop here
MAX_BUDGET = 131_072  # the token budget box; the model's context window is the real limit
# Chat formats: the course notes' Llama 2 example first; the other turns show up as turns are added.
FORMAT_SYSTEM = "You are a helpful AI assistant."
FORMAT_TURNS = [
    "Write a short poem about Python programming.",
    "Indented lines flow,\nno braces to hold them in:\nPython reads like prose.",
    "Now one about tokens.",
    "Words cut into parts,\neach piece a number to learn:\nthe model counts them.",
    "Which one do you like best?",
    "The first: it scans better.",
    "Thanks! Sum up our chat in one line.",
]
MAX_TURN_CHARS = 2_000
STATE = st.session_state


def _preferred(options: list[str], name: str) -> str:
    """What a model picker shows first: `name` when it is on offer, else its first option."""
    return name if name in options else options[0]


BASE_OPTIONS = ui.picker_options(("base",))
CHAT_OPTIONS = ui.picker_options(("chat",))
TALK_OPTIONS = ui.picker_options(("chat", "base"))
_base, _chat = registry.default_pair()
BASE_DEFAULT = _preferred(BASE_OPTIONS, _base)
CHAT_DEFAULT = _preferred(CHAT_OPTIONS, _chat)
TALK_DEFAULT = _preferred(TALK_OPTIONS, _chat)

# Every input of the page, as it appears in a shared link or a settings file. The widgets take
# their first values from these defaults. The conversation itself is not a setting: it stays out
# of links and settings files (it downloads on its own, as JSON).
SETTINGS = sharing.PageSettings(
    "chat_vs_base",
    [
        Text("prompt", "cvb-prompt", READY_PROMPTS[1], max_chars=MAX_PROMPT_CHARS),
        Choice("base_model", "cvb-base-model", BASE_DEFAULT, always=True,
               options=tuple(BASE_OPTIONS)),
        Text("base_hub_id", "cvb-base-model-hub-id", "", max_chars=ui.MAX_HUB_ID_CHARS),
        Choice("chat_model", "cvb-chat-model", CHAT_DEFAULT, always=True,
               options=tuple(CHAT_OPTIONS)),
        Text("chat_hub_id", "cvb-chat-model-hub-id", "", max_chars=ui.MAX_HUB_ID_CHARS),
        # Starts on the precision measured faster on this machine; a link always names it.
        Choice("precision", "cvb-dtype", ui.precision_choice(BASE_DEFAULT).dtype, always=True,
               options=tuple(ui.PRECISIONS)),
        Choice("frame", "cvb-frame", "plain", options=tuple(FRAMES)),
        Flag("template", "cvb-template", True),
        Choice("strategy", "cvb-strategy", "greedy", options=tuple(STREAMING_STRATEGIES)),
        Number("temperature", "cvb-temperature", 0.7, low=0.1, high=2.0, step=0.1),
        Number("top_p", "cvb-top-p", 0.9, low=0.05, high=1.0, step=0.05),
        Integer("max_new_tokens", "cvb-max-tokens", 48, low=4, high=MAX_TOKENS),
        Integer("seed", "cvb-seed", 0, low=0, high=2**31 - 1),
        Choice("chat_with", "cvb-talk-model", TALK_DEFAULT, always=True,
               options=tuple(TALK_OPTIONS)),
        Text("chat_with_hub_id", "cvb-talk-model-hub-id", "", max_chars=ui.MAX_HUB_ID_CHARS),
        Text("system", "cvb-system", "", max_chars=MAX_SYSTEM_CHARS),
        Choice("reply_strategy", "cvb-chat-strategy", "greedy",
               options=tuple(STREAMING_STRATEGIES)),
        Number("reply_temperature", "cvb-chat-temperature", 0.7, low=0.1, high=2.0, step=0.1),
        Integer("reply_max_new_tokens", "cvb-chat-max-tokens", 64, low=8, high=MAX_TOKENS),
        Integer("token_budget", "cvb-budget", 2048, low=64, high=MAX_BUDGET),
        Text("formats_system", "cvb-fmt-system", FORMAT_SYSTEM, max_chars=MAX_SYSTEM_CHARS),
        Integer("formats_user_turns", "cvb-fmt-turns", 1, low=1,
                high=chat_formats.MAX_USER_TURNS),
        *[Text(f"formats_{'user' if i % 2 == 0 else 'assistant'}_{i // 2 + 1}",
               f"cvb-fmt-{'user' if i % 2 == 0 else 'assistant'}-{i // 2 + 1}", text,
               max_chars=MAX_TURN_CHARS) for i, text in enumerate(FORMAT_TURNS)],
    ],
)  # fmt: skip
FIELDS = {spec.key: spec for spec in SETTINGS.fields}

ui.page_intro(
    "Chat vs Base",
    "The same prompt through a base (completion) model and an instruction-tuned chat model, "
    "and the chat template that makes the difference.",
)
SETTINGS.restore()
for _spec in SETTINGS.fields:  # first visit: every widget starts at its field's default
    STATE.setdefault(_spec.key, _spec.default)
STATE.setdefault("cvb-history", [])  # chat messages: {"role", "content", "notices"}
STATE.setdefault("cvb-pending", [])  # messages sent but not yet in the history

intro = st.columns(3)
intro[0].markdown(
    "**Pre-training** teaches a model one skill: guess the next token of text from the web, "
    "books and code. The result, a **base model**, *continues* whatever you give it: a question "
    "may be followed by more questions, as on a quiz page."
)
intro[1].markdown(
    "**Post-training** (instruction tuning, then preference tuning) shows the same model "
    "thousands of conversations where an assistant answers. The result, an **instruct** or "
    "**chat model**, has learnt to reply to a user and then stop."
)
intro[2].markdown(
    "A **chat template** is the hidden text that turns messages into one string, with "
    "**special tokens** marking who speaks and where a turn ends. The chat model only behaves "
    "like an assistant when its input looks like the conversations it was tuned on."
)

pick = st.columns(2)
with pick[0]:
    base_name = ui.model_picker(
        "cvb-base-model", "Base model", kinds=("base",), default=BASE_DEFAULT,
        help="A pre-trained-only model: it continues text.",
    )  # fmt: skip
with pick[1]:
    chat_name = ui.model_picker(
        "cvb-chat-model", "Chat model", kinds=("chat",), default=CHAT_DEFAULT,
        help="An instruction-tuned model with a chat template: it answers.",
    )  # fmt: skip

dtype = ui.precision_picker("cvb-dtype", base_name)

side_tab, chat_tab, formats_tab = st.tabs(["Side by side", "Chat", "Chat formats"])


def _settings(prefix: str) -> chat.DecodingSettings:
    return chat.DecodingSettings(
        strategy=STATE[f"{prefix}strategy"],
        max_new_tokens=int(STATE[f"{prefix}max-tokens"]),
        temperature=float(STATE[f"{prefix}temperature"]),
        top_p=float(STATE.get(f"{prefix}top-p", FIELDS["cvb-top-p"].default)),
        seed=int(STATE.get(f"{prefix}seed", FIELDS["cvb-seed"].default)),
    )


def _pick_ready() -> None:
    chosen = STATE.get("cvb-ready")
    if chosen:
        STATE["cvb-prompt"] = chosen
    STATE["cvb-ready"] = None


def _clear_history() -> None:
    STATE["cvb-history"] = []
    STATE["cvb-pending"] = []


def _keep_message() -> None:
    """A sent message is queued the moment Streamlit hands it over, before the script runs: a
    run cut short by the next message (sent 0.3 s later) can no longer lose it."""
    typed = STATE.get("cvb-chat-input")
    if typed is not None:
        STATE["cvb-pending"].append(typed)


def _too_long(text: str, limit: int, what: str, action: str) -> bool:
    """Refuse text over `limit` characters with a notice; the text stays in its box."""
    if len(text) <= limit:
        return False
    st.warning(
        f"The {what} has {len(text):,} characters; this page takes at most {limit:,}. "
        f"Shorten it to {action}.",
        icon=":material/content_cut:",
    )
    return True


# --- inputs (both tabs), then the link ----------------------------------------------------------

with side_tab:
    st.pills(
        "Ready prompts", READY_PROMPTS, key="cvb-ready", on_change=_pick_ready,
        help="Click one to put it in the box below; then run both models.",
    )  # fmt: skip
    prompt = st.text_area("Prompt", key="cvb-prompt", height=80)
    prompt_refused = _too_long(prompt, MAX_PROMPT_CHARS, "prompt", "run both models")
    left, right = st.columns(2)
    left.radio(
        "How the base model gets the prompt", list(FRAMES), key="cvb-frame",
        format_func=FRAMES.get, horizontal=True,
        help="A base model has no chat format. The few-shot frame shows it two example "
        "exchanges so that answering is the natural continuation.",
    )  # fmt: skip
    right.toggle(
        "Wrap the prompt in the chat template", key="cvb-template",
        help="Off: the chat model gets your raw words, without the special tokens it was "
        "tuned on. Try it with “What is 2+2?”.",
    )  # fmt: skip
    with st.expander("Decoding settings (the same for both models)", expanded=False):
        cols = st.columns(5)
        cols[0].selectbox(
            "Strategy", STREAMING_STRATEGIES, key="cvb-strategy",
            help="Greedy always takes the most likely token; the others draw at random.",
        )  # fmt: skip
        sampling = STATE["cvb-strategy"] != "greedy"
        cols[1].slider("Temperature", 0.1, 2.0, step=0.1, key="cvb-temperature",
                       disabled=not sampling, help="Below 1 sharpens, above 1 flattens.")  # fmt: skip
        cols[2].slider("Top-p", 0.05, 1.0, step=0.05, key="cvb-top-p",
                       disabled=STATE["cvb-strategy"] != "top_p",
                       help="Used by the top_p strategy.")  # fmt: skip
        cols[3].slider("Max new tokens", 4, MAX_TOKENS, key="cvb-max-tokens")
        cols[4].number_input("Seed", 0, 2**31 - 1, step=1, key="cvb-seed", disabled=not sampling,
                             help="Same seed, same settings: the same text every run.")  # fmt: skip

with chat_tab:
    st.caption(
        "A conversation is just a longer prompt: every turn so far is rendered through the chat "
        "template and the model writes the next assistant turn. It has no other memory."
    )
    top = st.columns([3, 2])
    with top[0]:
        talk_name = ui.model_picker(
            "cvb-talk-model", "Model to chat with", kinds=("chat", "base"), default=TALK_DEFAULT,
            help="Chat models only; pick a base model to see why it cannot chat.",
        )  # fmt: skip
        system = st.text_area(
            "System prompt", key="cvb-system", height=80,
            placeholder="Empty: the template's own default (SmolLM2 adds “You are a helpful AI "
            "assistant named SmolLM…”)",
            help="Instructions the model reads before the conversation; never dropped.",
        )  # fmt: skip
        system_refused = _too_long(system, MAX_SYSTEM_CHARS, "system prompt", "chat")
    with top[1]:
        knobs = st.columns(2)
        knobs[0].selectbox("Reply strategy", STREAMING_STRATEGIES, key="cvb-chat-strategy")
        knobs[1].slider("Max reply tokens", 8, MAX_TOKENS, key="cvb-chat-max-tokens")
        knobs[0].slider("Temperature", 0.1, 2.0, step=0.1, key="cvb-chat-temperature",
                        disabled=STATE["cvb-chat-strategy"] == "greedy")  # fmt: skip
        knobs[1].number_input(
            "Token budget", 64, MAX_BUDGET, step=64, key="cvb-budget",
            help="How many tokens of conversation the model may read; never more than its "
            "context window. Make it small, say 200, to watch the oldest turns being dropped.",
        )  # fmt: skip
    st.button("Clear history", key="cvb-clear", on_click=_clear_history, icon=":material/delete:")

with formats_tab:
    st.caption(
        "Every instruction-tuned family writes a conversation its own way, and a model only "
        "behaves when its input has the markup it was tuned on. Edit one conversation; see it in "
        "each format the lab has a real template for."
    )
    format_inputs = st.columns([3, 1])
    format_inputs[0].text_area(
        "System prompt (optional)", key="cvb-fmt-system", height=68,
        help="Leave it empty to see what each template does without one.",
    )  # fmt: skip
    format_inputs[1].number_input(
        "User turns", 1, chat_formats.MAX_USER_TURNS, step=1, key="cvb-fmt-turns",
        help="The conversation alternates user and assistant, and ends with a user turn: the "
        "model would write the next assistant turn.",
    )  # fmt: skip
    format_turns = []
    for _index in range(2 * int(STATE["cvb-fmt-turns"]) - 1):
        _role = "user" if _index % 2 == 0 else "assistant"
        _number = _index // 2 + 1
        format_turns.append(
            st.text_area(
                f"{_role.capitalize()} {_number}", key=f"cvb-fmt-{_role}-{_number}", height=68
            )  # fmt: skip
        )

SETTINGS.publish()


# --- side by side: what each model sees, and both runs -----------------------------------------

REASONS = {
    "eos": "it ended its turn (end-of-turn token)",
    "length": "it reached the token limit",
    "stopped": "it began the user's next line",
    "context": "the context window is full",
}


def _download_csv(label: str, frame: pd.DataFrame, file_stem: str, key: str, help: str) -> None:
    sharing.download(
        label, exports.table_csv(frame), f"{exports.file_stem(file_stem)}.csv", key=key, help=help
    )


def _show_output(column, title: str, saved: dict | None) -> None:
    """A finished output (kept in session state, so it stays after other widgets change)."""
    with column:
        st.markdown(f"**{title}**")
        if not saved:
            st.caption("Press **Run both models** to see the output here.")
            return
        st.markdown(f"> {saved['text']}" if saved["text"].strip() else "*(no text at all)*")
        st.caption(saved["caption"])
        for notice in saved["notices"]:
            st.info(notice)


def _start(loaded, prepared, settings):
    """A run sent to the engine (or the error that refused it, shown later in its column)."""
    try:
        return chat.RunStream(loaded, prepared, settings)
    except Exception as error:  # noqa: BLE001 - shown in the run's own column
        return error


def _stream_into(column, title: str, stream) -> dict | None:
    with column:
        st.markdown(f"**{title}**")
        with ui.friendly_errors():
            if isinstance(stream, Exception):
                raise stream
            with st.container(border=True):
                ui.wait_for_turn(stream, st.empty())
                st.write_stream(stream)
            result = stream.result
            caption = (
                f"{ui.timing(len(result.new_ids), result.seconds)} · stopped because "
                f"{REASONS.get(result.finish_reason, result.finish_reason)}"
            )
            st.caption(caption)
            for notice in result.notices:
                st.info(notice)
            return {
                "text": result.text,
                "caption": caption,
                "notices": list(result.notices),
                "model": stream.prepared.model,
                "how": stream.prepared.how,
                "new_tokens": len(result.new_ids),
                "finish_reason": result.finish_reason,
            }
    return None


def _outputs_frame(saved: dict) -> pd.DataFrame:
    """Both outputs of a run, one row each, with the prompt and the settings that made them."""
    rows = []
    for role in ("base", "chat"):
        output = saved.get(role)
        if output:
            rows.append(
                {
                    "role": role,
                    "model": output.get("model", ""),
                    "prompt": saved.get("prompt", ""),
                    "model input": output.get("how", ""),
                    "output": output["text"],
                    "new tokens": output.get("new_tokens"),
                    "finish reason": output.get("finish_reason", ""),
                    **saved.get("settings", {}),
                }
            )
    return pd.DataFrame(rows)


with side_tab:
    settings = _settings("cvb-")
    base = ui.get_model(base_name, dtype)
    chat_model = ui.get_model(chat_name, dtype)
    prepared: dict = {}
    st.subheader("What the model actually sees")
    st.html(chat.legend_html())
    prompt_empty = not prompt.strip()
    if prompt_empty and not prompt_refused:
        st.info(
            "Type a prompt above (or pick a ready one) to see what each model reads.",
            icon=":material/edit:",
        )
    seen = st.columns(2)
    for column, loaded, role in ((seen[0], base, "base"), (seen[1], chat_model, "chat")):
        if loaded is None or prompt_refused or prompt_empty:
            continue
        with column, ui.friendly_errors():
            if role == "base":
                run = chat.prepare_base(loaded, prompt, STATE["cvb-frame"])
            else:
                run = chat.prepare_chat(loaded, prompt, use_template=STATE["cvb-template"])
            prepared[role] = run
            st.markdown(f"**{loaded.facts.title}** · {run.how} · {len(run.prompt_ids)} tokens")
            segments = chat.run_segments(run, loaded.tokenizer, prompt)
            st.html(chat.segments_html(segments))
            typed = chat.typed_special_tokens(prompt, loaded.tokenizer)
            if typed:
                st.info(chat.typed_special_notice(typed), icon=":material/token:")
            _download_csv(
                "Tokens as CSV", pd.DataFrame(chat.prompt_tokens(run, loaded.tokenizer)),
                f"chat vs base {role} input tokens", f"cvb-{role}-tokens-csv",
                "Every token this model reads: its position, id, text, and whether it is a "
                "special token.",
            )  # fmt: skip
    if not STATE["cvb-template"]:
        st.info(
            "The template is off: the chat model sees your words with no "
            "`<|im_start|>user … <|im_end|>` around them and no `assistant` turn to fill in. "
            "It was never tuned on text like that, so it may stop at once or ramble."
        )

    clicked = st.button("Run both models", key="cvb-run", type="primary",
                        disabled=len(prepared) < 2)  # fmt: skip
    outputs = st.columns(2)
    titles = [
        f"Base · {base.facts.title}" if base else "Base",
        f"Chat · {chat_model.facts.title}" if chat_model else "Chat",
    ]
    if clicked and len(prepared) == 2:
        # Both runs go to their engines before either is shown: the two models work at once.
        with ui.page_run("chat-vs-base"):
            base_run = _start(base, prepared["base"], settings)
            chat_run = _start(chat_model, prepared["chat"], settings)
        saved = {
            "base": _stream_into(outputs[0], titles[0], base_run),
            "chat": _stream_into(outputs[1], titles[1], chat_run),
        }
        saved["prompt"] = prompt
        saved["settings"] = {
            "frame": STATE["cvb-frame"],
            "template": STATE["cvb-template"],
            "precision": dtype,
            "strategy": settings.strategy,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_new_tokens": settings.max_new_tokens,
            "seed": settings.seed,
        }
        STATE["cvb-results"] = saved
    else:
        saved = STATE.get("cvb-results") or {}
        if saved and saved.get("prompt") != prompt:
            st.caption(f"The outputs below are for an earlier prompt: “{saved.get('prompt')}”.")
        _show_output(outputs[0], titles[0], saved.get("base"))
        _show_output(outputs[1], titles[1], saved.get("chat"))
    if saved.get("base") or saved.get("chat"):
        _download_csv(
            "Outputs as CSV", _outputs_frame(saved), "chat vs base outputs", "cvb-outputs-csv",
            "Both outputs side by side: the prompt, each model, what it read, what it wrote, "
            "and the decoding settings and seed.",
        )  # fmt: skip

# --- chat: the conversation and the next reply --------------------------------------------------

with chat_tab:
    loaded = ui.get_model(talk_name, dtype)
    context = loaded.facts.context_length if loaded else 8192
    if loaded is not None and STATE["cvb-budget"] > context:
        st.caption(
            f"The token budget is above {loaded.facts.title}'s context window ({context:,} "
            "tokens), so the context window is the limit."
        )
    can_chat = loaded is not None and chat.has_chat_template(loaded.tokenizer)
    if loaded is not None and not can_chat:
        st.warning(
            f"**{loaded.facts.title} cannot chat.** It is a base model: it was only pre-trained to "
            "continue text and has no chat template, so there is no format to put your messages "
            "in. Pick an instruction-tuned model above, or try the few-shot frame in *Side by side*."
        )
    history = STATE["cvb-history"]
    left_reply = STATE.pop("cvb-live", None)
    if left_reply is not None:  # the page was left (or rerun) while a reply was being written
        reply = left_reply.finish_cancelled()
        history.append(
            {"role": "assistant", "content": reply.text,
             "notices": ["Stopped half-way: the page was left while this reply was written."]}
        )  # fmt: skip
    conversation = st.container()  # new turns go here too, above the input box
    for message in history:
        with conversation.chat_message(message["role"]):
            st.markdown(message["content"] or "*(an empty reply)*")
            for notice in message.get("notices", []):
                st.caption(notice)
    hint = conversation.empty()
    pending = STATE["cvb-pending"]
    if not history and not pending:
        hint.caption("No messages yet. Say hello below.")
    st.chat_input(
        "Message the chat model", key="cvb-chat-input", disabled=not can_chat or system_refused,
        max_chars=20_000, on_submit=_keep_message,
    )  # fmt: skip
    if can_chat and not system_refused:
        # Sent messages join the history in the order they were sent, even several at once
        # (sent while an earlier reply was still being written). Each is added before it leaves
        # the queue, with no Streamlit call in between, so no interruption can drop one.
        while pending:
            try:
                checked = chat.check_message(pending[0], loaded.tokenizer)
            except ValueError as error:
                checked = chat.MessageCheck(None, [str(error)])
            if checked.text is not None:
                history.append(
                    {"role": "user", "content": checked.text, "notices": checked.notices}
                )
            pending.pop(0)
            hint.empty()
            if checked.text is None:
                conversation.info(checked.notices[0], icon=":material/keyboard:")
                continue
            with conversation.chat_message("user"):
                st.markdown(checked.text)
                for notice in checked.notices:
                    st.caption(notice)
    waiting = bool(history) and history[-1]["role"] == "user" and not history[-1].get("failed")
    if waiting and can_chat and not system_refused:
        with ui.friendly_errors():
            past = [{"role": m["role"], "content": m["content"]} for m in history[:-1]]
            try:
                turn = chat.prepare_turn(
                    loaded.tokenizer, past, history[-1]["content"], system=system,
                    context_length=context, max_new_tokens=int(STATE["cvb-chat-max-tokens"]),
                    token_budget=int(STATE["cvb-budget"]), name=loaded.name,
                )  # fmt: skip
            except ValueError:
                history[-1]["failed"] = True  # shown once, not again at every rerun
                raise
            for notice in turn.notices:
                conversation.warning(notice, icon=":material/content_cut:")
            with conversation.chat_message("assistant"), ui.page_run("chat"):
                stream = chat.RunStream(
                    loaded, chat.turn_run(turn, loaded.name), _settings("cvb-chat-")
                )
                STATE["cvb-live"] = stream
                ui.wait_for_turn(stream, st.empty(), " Send another message or leave to cancel.")
                st.write_stream(stream)
                if STATE.pop("cvb-live", None) is not stream:
                    # The page was left mid-reply and the next run (another thread) has
                    # already kept this reply as stopped: it must not be added twice.
                    st.stop()
                reply = stream.result
                st.caption(f"{len(reply.new_ids)} tokens · {len(turn.prompt_ids)}-token prompt")
            history.append({"role": "assistant", "content": reply.text, "notices": turn.notices})
    upcoming = [{"role": m["role"], "content": m["content"]} for m in history]
    if system.strip() and not system_refused:
        upcoming.insert(0, {"role": "system", "content": system})
    if history:
        sharing.download(
            "Conversation as JSON",
            data=json.dumps(upcoming, ensure_ascii=False, indent=2) + "\n",
            file_name="chat-vs-base-conversation.json",
            key="cvb-conversation-json",
            help="The messages as a list of {role, content}: the form a chat template takes "
            "(transformers' apply_chat_template), with the system prompt first when there is one.",
        )  # fmt: skip
    with st.expander("What the chat model sees for the next turn"):
        if not history:
            st.caption("Nothing yet: the first message starts the conversation.")
        elif can_chat:
            with ui.friendly_errors():
                rendered = chat.render_chat(
                    loaded.tokenizer, upcoming, add_generation_prompt=False, name=loaded.name
                )
                st.caption(
                    f"The conversation so far: {rendered.n_tokens} tokens, {rendered.n_special} "
                    "of them special. Your next message and an open assistant turn come after it."
                )
                st.html(chat.segments_html(rendered.segments))


# --- chat formats: one conversation in every family's format ------------------------------------

with formats_tab:
    format_system = STATE["cvb-fmt-system"]
    refused = [
        _too_long(format_system, MAX_SYSTEM_CHARS, "system prompt", "see the formats"),
        *[_too_long(t, MAX_TURN_CHARS, f"turn {i + 1}", "see the formats")
          for i, t in enumerate(format_turns)],
    ]  # fmt: skip
    empty = [i for i, t in enumerate(format_turns) if not t.strip()]
    if empty:
        where = ", ".join(f"{'User' if i % 2 == 0 else 'Assistant'} {i // 2 + 1}" for i in empty)
        st.info(f"Type something in {where} to see the formats.", icon=":material/edit:")
    elif not any(refused):
        st.html(chat.legend_html())
        with ui.friendly_errors():
            messages = chat_formats.conversation(format_system, format_turns)
            formats = ui.get_chat_formats()
            results = chat_formats.render_all(formats, messages)
            for _index, result in enumerate(results):
                if _index % 2 == 0:  # two formats a row: ChatML twice, Llama 2 and Mistral, ...
                    grid = st.columns(2)
                with grid[_index % 2], st.container(border=True):
                    st.markdown(f"**{result.title}**")
                    if isinstance(result, chat_formats.Unavailable):
                        st.info(f"Not available here. {result.reason}", icon=":material/block:")
                        continue
                    st.caption(f"From {result.source}.")
                    st.markdown(
                        f"**{result.n_tokens} tokens** in the {result.tokenizer} tokenizer  \n"
                        f"System prompt: {result.system_handling}"
                    )
                    st.html(chat.segments_html(result.segments))
                    if result.typed:
                        st.info(chat.typed_special_notice(result.typed), icon=":material/token:")
                    for notice in result.notices:
                        st.info(notice, icon=":material/token:")
            with st.expander("Llama 2 in llama-cpp-python: how its `format_llama2` differs"):
                st.markdown(
                    "llama-cpp-python (the sdist this lab reads its vocabularies from) has its own "
                    "`llama-2` chat format. Given the same messages it writes a different text "
                    "from Meta's reference code:\n\n"
                    + "\n".join(f"- {line}" for line in chat_formats.LLAMA_CPP_PYTHON_DIFFERENCES)
                    + "\n\nSpaces matter: SentencePiece makes different tokens of them, so the "
                    "model reads something a little unlike what it was tuned on."
                )
            ready = [f for f in formats if not isinstance(f, chat_formats.Unavailable)]
            st.subheader("The special tokens of each format")
            rows = chat_formats.marker_table(ready)
            table = pd.DataFrame(
                [
                    {
                        "format": row.format,
                        "marker": row.marker,
                        "kind": "special token" if row.special else f"text, {len(row.ids)} tokens",
                        "token ids": " ".join(str(i) for i in row.ids),
                        "meaning": row.meaning,
                    }
                    for row in rows
                ]
            )
            sharing.table(table, "cvb-formats-markers", "chat formats special tokens",
                          static=True)  # fmt: skip
            st.markdown("**Another family's format**")
            st.markdown(
                "\n".join(f"- **{f.title}**: {chat_formats.foreign_note(f, ready)}" for f in ready)
            )
