"""Chat vs Base: one prompt through a base model and a chat model, the template, and a chat."""

from __future__ import annotations

import streamlit as st

from llmlab import chat, registry, ui
from llmlab.decoding import MAX_NEW_TOKENS, STRATEGIES

READY_PROMPTS = [
    "Once upon a time",
    "What is 2+2?",
    "Suggest a party theme.",
    "Write a short apology email to Sarah about a gardening mistake.",
]
# Beam search writes no text until it ends, so it cannot stream; the Decoding page shows it.
STREAMING_STRATEGIES = [name for name in STRATEGIES if name != "beam"]
FRAMES = {"plain": "Plain continuation", "few-shot": "“User: / Assistant:” few-shot frame"}

# Widget values that should survive a visit to another page (Streamlit forgets the state of
# widgets that a run does not draw, so each is copied to a shadow key and restored from it).
KEPT = {
    "cvb-prompt": READY_PROMPTS[1],
    "cvb-frame": "plain",
    "cvb-template": True,
    "cvb-strategy": "greedy",
    "cvb-temperature": 0.7,
    "cvb-top-p": 0.9,
    "cvb-max-tokens": 48,
    "cvb-seed": 0,
    "cvb-system": "",
    "cvb-chat-strategy": "greedy",
    "cvb-chat-temperature": 0.7,
    "cvb-chat-max-tokens": 64,
    "cvb-budget": 2048,
}
for _key, _default in KEPT.items():
    if _key not in st.session_state:
        st.session_state[_key] = st.session_state.get(f"_{_key}", _default)
st.session_state.setdefault("cvb-history", [])  # chat messages: {"role", "content", "notices"}

ui.page_intro(
    "Chat vs Base",
    "The same prompt through a base (completion) model and an instruction-tuned chat model, "
    "and the chat template that makes the difference.",
)

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

base_default, chat_default = registry.default_pair()
PICKERS = {
    "cvb-base-model": ("base",),
    "cvb-chat-model": ("chat",),
    "cvb-talk-model": ("chat", "base"),
}
for _key, _kinds in PICKERS.items():  # restore a choice only while it is still on offer
    _kept = st.session_state.get(f"_{_key}")
    if _key not in st.session_state and _kept in ui.model_options(_kinds):
        st.session_state[_key] = _kept
pick = st.columns(2)
with pick[0]:
    base_name = ui.model_picker(
        "cvb-base-model", "Base model", kinds=("base",), default=base_default,
        help="A pre-trained-only model: it continues text.",
    )  # fmt: skip
with pick[1]:
    chat_name = ui.model_picker(
        "cvb-chat-model", "Chat model", kinds=("chat",), default=chat_default,
        help="An instruction-tuned model with a chat template: it answers.",
    )  # fmt: skip

dtype = ui.precision_picker("cvb-dtype")

side_tab, chat_tab = st.tabs(["Side by side", "Chat"])


def _settings(prefix: str) -> chat.DecodingSettings:
    state = st.session_state
    return chat.DecodingSettings(
        strategy=state[f"{prefix}strategy"],
        max_new_tokens=int(state[f"{prefix}max-tokens"]),
        temperature=float(state[f"{prefix}temperature"]),
        top_p=float(state.get(f"{prefix}top-p", 0.9)),
        seed=int(state.get(f"{prefix}seed", 0)),
    )


def _pick_ready() -> None:
    chosen = st.session_state.get("cvb-ready")
    if chosen:
        st.session_state["cvb-prompt"] = chosen
    st.session_state["cvb-ready"] = None


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


def _stream_into(column, title: str, loaded, prepared, settings) -> dict | None:
    with column:
        st.markdown(f"**{title}**")
        with ui.friendly_errors():
            stream = chat.RunStream(loaded, prepared, settings)
            with st.container(border=True):
                st.write_stream(stream)
            result = stream.result
            reasons = {
                "eos": "it ended its turn (end-of-turn token)",
                "length": "it reached the token limit",
                "stopped": "it began the user's next line",
                "context": "the context window is full",
            }
            caption = (
                f"{len(result.new_ids)} tokens in {result.seconds:.1f} s · stopped because "
                f"{reasons.get(result.finish_reason, result.finish_reason)}"
            )
            st.caption(caption)
            for notice in result.notices:
                st.info(notice)
            return {"text": result.text, "caption": caption, "notices": list(result.notices)}
    return None


# --- side by side -------------------------------------------------------------------------------

with side_tab:
    st.pills(
        "Ready prompts", READY_PROMPTS, key="cvb-ready", on_change=_pick_ready,
        help="Click one to put it in the box below; then run both models.",
    )  # fmt: skip
    prompt = st.text_area("Prompt", key="cvb-prompt", height=80, max_chars=4000)
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
        sampling = st.session_state["cvb-strategy"] != "greedy"
        cols[1].slider("Temperature", 0.1, 2.0, step=0.1, key="cvb-temperature",
                       disabled=not sampling, help="Below 1 sharpens, above 1 flattens.")  # fmt: skip
        cols[2].slider("Top-p", 0.05, 1.0, step=0.05, key="cvb-top-p",
                       disabled=st.session_state["cvb-strategy"] != "top_p",
                       help="Used by the top_p strategy.")  # fmt: skip
        cols[3].slider("Max new tokens", 4, min(256, MAX_NEW_TOKENS), key="cvb-max-tokens")
        cols[4].number_input("Seed", 0, 2**31 - 1, step=1, key="cvb-seed", disabled=not sampling,
                             help="Same seed, same settings: the same text every run.")  # fmt: skip
    settings = _settings("cvb-")

    base = ui.get_model(base_name, dtype)
    chat_model = ui.get_model(chat_name, dtype)
    prepared: dict = {}
    st.subheader("What the model actually sees")
    st.html(chat.legend_html())
    seen = st.columns(2)
    for column, loaded, role in ((seen[0], base, "base"), (seen[1], chat_model, "chat")):
        if loaded is None:
            continue
        with column, ui.friendly_errors():
            if role == "base":
                run = chat.prepare_base(loaded, prompt, st.session_state["cvb-frame"])
            else:
                run = chat.prepare_chat(
                    loaded, prompt, use_template=st.session_state["cvb-template"]
                )
            prepared[role] = run
            st.markdown(f"**{loaded.facts.title}** · {run.how} · {len(run.prompt_ids)} tokens")
            segments = chat.run_segments(run, loaded.tokenizer, prompt)
            st.html(chat.segments_html(segments))
    if not st.session_state["cvb-template"]:
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
        saved = {
            "base": _stream_into(outputs[0], titles[0], base, prepared["base"], settings),
            "chat": _stream_into(outputs[1], titles[1], chat_model, prepared["chat"], settings),
        }
        saved["prompt"] = prompt
        st.session_state["cvb-results"] = saved
    else:
        saved = st.session_state.get("cvb-results") or {}
        if saved and saved.get("prompt") != prompt:
            st.caption(f"The outputs below are for an earlier prompt: “{saved.get('prompt')}”.")
        _show_output(outputs[0], titles[0], saved.get("base"))
        _show_output(outputs[1], titles[1], saved.get("chat"))

# --- chat ---------------------------------------------------------------------------------------


def _clear_history() -> None:
    st.session_state["cvb-history"] = []


with chat_tab:
    st.caption(
        "A conversation is just a longer prompt: every turn so far is rendered through the chat "
        "template and the model writes the next assistant turn. It has no other memory."
    )
    top = st.columns([3, 2])
    with top[0]:
        talk_name = ui.model_picker(
            "cvb-talk-model", "Model to chat with", kinds=("chat", "base"), default=chat_name,
            help="Chat models only; pick a base model to see why it cannot chat.",
        )  # fmt: skip
    loaded = ui.get_model(talk_name, dtype)
    top[0].text_area(
        "System prompt", key="cvb-system", height=80, max_chars=2000,
        placeholder="Empty: the template's own default (SmolLM2 adds “You are a helpful AI "
        "assistant named SmolLM…”)",
        help="Instructions the model reads before the conversation; never dropped.",
    )  # fmt: skip
    with top[1]:
        knobs = st.columns(2)
        knobs[0].selectbox("Reply strategy", STREAMING_STRATEGIES, key="cvb-chat-strategy")
        knobs[1].slider("Max reply tokens", 8, min(256, MAX_NEW_TOKENS), key="cvb-chat-max-tokens")
        knobs[0].slider("Temperature", 0.1, 2.0, step=0.1, key="cvb-chat-temperature",
                        disabled=st.session_state["cvb-chat-strategy"] == "greedy")  # fmt: skip
        context = loaded.facts.context_length if loaded else 8192
        knobs[1].number_input(
            "Token budget", 64, max(64, context), step=64, key="cvb-budget",
            help=f"How many tokens of conversation the model may read (its context window is "
            f"{context:,}). Make it small, say 200, to watch the oldest turns being dropped.",
        )  # fmt: skip
    st.button("Clear history", key="cvb-clear", on_click=_clear_history, icon=":material/delete:")

    can_chat = loaded is not None and chat.has_chat_template(loaded.tokenizer)
    if loaded is not None and not can_chat:
        st.warning(
            f"**{loaded.facts.title} cannot chat.** It is a base model: it was only pre-trained to "
            "continue text and has no chat template, so there is no format to put your messages "
            "in. Pick an instruction-tuned model above, or try the few-shot frame in *Side by side*."
        )
    history = st.session_state["cvb-history"]
    conversation = st.container()  # new turns go here too, above the input box
    for message in history:
        with conversation.chat_message(message["role"]):
            st.markdown(message["content"] or "*(an empty reply)*")
            for notice in message.get("notices", []):
                st.caption(notice)
    hint = conversation.empty()
    if not history:
        hint.caption("No messages yet. Say hello below.")
    typed = st.chat_input(
        "Message the chat model", key="cvb-chat-input", disabled=not can_chat, max_chars=20_000
    )
    if typed is not None and can_chat:
        with ui.friendly_errors():
            checked = chat.check_message(typed, loaded.tokenizer)
            hint.empty()
            if checked.text is None:
                conversation.info(checked.notices[0], icon=":material/keyboard:")
            else:
                past = [{"role": m["role"], "content": m["content"]} for m in history]
                turn = chat.prepare_turn(
                    loaded.tokenizer, past, checked.text,
                    system=st.session_state["cvb-system"], context_length=context,
                    max_new_tokens=int(st.session_state["cvb-chat-max-tokens"]),
                    token_budget=int(st.session_state["cvb-budget"]), name=loaded.name,
                )  # fmt: skip
                with conversation.chat_message("user"):
                    st.markdown(checked.text)
                    for notice in checked.notices:
                        st.caption(notice)
                for notice in turn.notices:
                    conversation.warning(notice, icon=":material/content_cut:")
                settings = _settings("cvb-chat-")
                with conversation.chat_message("assistant"):
                    stream = chat.RunStream(loaded, chat.turn_run(turn, loaded.name), settings)
                    st.write_stream(stream)
                    reply = stream.result
                    st.caption(f"{len(reply.new_ids)} tokens · {len(turn.prompt_ids)}-token prompt")
                history.append(
                    {"role": "user", "content": checked.text, "notices": checked.notices}
                )
                history.append(
                    {"role": "assistant", "content": reply.text, "notices": turn.notices}
                )
    with st.expander("What the chat model sees for the next turn"):
        if not history:
            st.caption("Nothing yet: the first message starts the conversation.")
        elif can_chat:
            with ui.friendly_errors():
                upcoming = [{"role": m["role"], "content": m["content"]} for m in history]
                if st.session_state["cvb-system"].strip():
                    upcoming.insert(
                        0, {"role": "system", "content": st.session_state["cvb-system"]}
                    )
                rendered = chat.render_chat(
                    loaded.tokenizer, upcoming, add_generation_prompt=False, name=loaded.name
                )
                st.caption(
                    f"The conversation so far: {rendered.n_tokens} tokens, {rendered.n_special} "
                    "of them special. Your next message and an open assistant turn come after it."
                )
                st.html(chat.segments_html(rendered.segments))

for _key in [*KEPT, *PICKERS]:
    if _key in st.session_state:
        st.session_state[f"_{_key}"] = st.session_state[_key]
