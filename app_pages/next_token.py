"""Next-Token page: from a model's scores to probabilities, with every sampling knob live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmlab import charts, ui
from llmlab.app import sharing
from llmlab.generation import next_token as nt
from llmlab.page_state import Choice, Flag, Integer, Number, Text

# The page reads at most this many tokens of a prompt: every view keeps the scores of every
# position (tokens x vocabulary floats), so a whole 8k context would take minutes and gigabytes.
MAX_TOKENS = 1024
# Longer prompts are refused before tokenizing: cutting to MAX_TOKENS happens after the
# tokenizer has read the whole text, and a megabyte takes it about 12 s.
MAX_PROMPT_CHARS = 20_000
MAX_GUESS_CHARS = 100  # a guess is a word or two
EXAMPLES = ["The capital of France is", "Hello my name", "def fibonacci(n):", "Once upon a time"]
SHOWN = tuple(range(5, 51, 5))  # the "Tokens shown" slider's stops
MAX_INDEX = 1_023  # a link may name any layer and head up to this; the page checks the model
MODEL_OPTIONS = ui.picker_options()
STATE = st.session_state

# Every input of the page, as it appears in a shared link or a settings file. Defaults and
# ranges are the widgets' own.
SETTINGS = sharing.PageSettings(
    "next_token",
    [
        Text("prompt", "nt-prompt", EXAMPLES[0], max_chars=MAX_PROMPT_CHARS),
        Choice("model", "nt-model", MODEL_OPTIONS[0], always=True, options=tuple(MODEL_OPTIONS)),
        Text("hub_id", "nt-model-hub-id", "", max_chars=ui.MAX_HUB_ID_CHARS),
        Number("temperature", "nt-temperature", 0.8, low=0.0, high=2.0, step=0.05),
        Integer("top_k", "nt-top-k", 0, low=0, high=200),
        Number("top_p", "nt-top-p", 0.9, low=0.01, high=1.0, step=0.01),
        Number("min_p", "nt-min-p", 0.0, low=0.0, high=1.0, step=0.01),
        Number("repetition_penalty", "nt-penalty", 1.0, low=1.0, high=2.0, step=0.05),
        Choice("shown", "nt-shown", 20, options=SHOWN),
        Flag("guess_first", "nt-guess-mode", False),
        Text("guess", "nt-guess", "", max_chars=MAX_GUESS_CHARS),
        Integer("candidate", "nt-pick", 1, low=1, high=SHOWN[-1]),
        Integer("seed", "nt-seed", 0, low=0, high=nt.MAX_SEED),
        *ui.knock_out_fields("nt", MAX_INDEX),
    ],
)


ui.page_intro(
    "Next-Token",
    "A model reads your text and gives a score (a *logit*) to every token in its vocabulary. "
    "Softmax turns the scores into probabilities; temperature, top-k, top-p and min-p then "
    "reshape them before a token is picked. Nothing else happens when a model writes.",
)
SETTINGS.restore()
STATE.setdefault("nt-prompt", EXAMPLES[0])


def _use_example() -> None:
    choice = st.session_state.get("nt-example")
    if choice:
        st.session_state["nt-prompt"] = choice


def _append(text: str) -> None:
    st.session_state["nt-prompt"] = text
    st.session_state["nt-revealed"] = False


top_left, top_right = st.columns([3, 2])
with top_right:
    model_name = ui.model_picker("nt-model", "Model")
    st.pills("Examples", EXAMPLES, key="nt-example", on_change=_use_example)
with top_left:
    prompt = st.text_area(
        "Prompt",
        key="nt-prompt",
        height=110,
        help="The model predicts the token that comes right after the last character.",
    )

# --- the knobs -----------------------------------------------------------------------------
knobs, chart_area = st.columns([1, 3])
with knobs:
    st.markdown("**Sampling knobs**")
    temperature = st.slider(
        "Temperature", *SETTINGS.bounds("temperature"), key="nt-temperature",
        help="Divides every logit before softmax. 0 = greedy: always the top token.",
    )  # fmt: skip
    st.caption(
        "Below 1 the favourite gets stronger, above 1 the long tail gets a chance. "
        "At **0** there is no sampling at all: the most likely token is always taken (greedy)."
    )
    top_k = st.slider(
        "Top-k", *SETTINGS.bounds("top_k"), key="nt-top-k",
        help="Keep only the k best tokens. 0 = off.",
    )  # fmt: skip
    st.caption("A fixed-size shortlist: the k highest scores survive, whatever their share.")
    top_p = st.slider(
        "Top-p (nucleus)", *SETTINGS.bounds("top_p"), key="nt-top-p",
        help="Keep the smallest set of top tokens whose probabilities add up to p. 1 = off.",
    )  # fmt: skip
    st.caption("A shortlist that adapts: few tokens when the model is sure, many when it is not.")
    min_p = st.slider(
        "Min-p", *SETTINGS.bounds("min_p"), key="nt-min-p",
        help="Drop tokens less likely than min-p times the top token. 0 = off.",
    )  # fmt: skip
    st.caption("Relative to the favourite: 0.1 drops anything 10x less likely than the top token.")
    penalty = st.slider(
        "Repetition penalty", *SETTINGS.bounds("repetition_penalty"), key="nt-penalty",
        help="Pushes down tokens already in the prompt. 1 = off.",
    )  # fmt: skip
    shown = st.slider(
        "Tokens shown", SHOWN[0], SHOWN[-1], SETTINGS.field("shown").default, SHOWN[1] - SHOWN[0],
        key="nt-shown",
        help="How many of the most likely tokens the chart and the table list.",
    )  # fmt: skip

SETTINGS.publish()

if len(prompt) > MAX_PROMPT_CHARS:
    st.warning(
        f"The prompt has {len(prompt):,} characters; this page reads prompts of at most "
        f"{MAX_PROMPT_CHARS:,}. Shorten it to see what the model expects next.",
        icon=":material/content_cut:",
    )
    st.stop()

loaded = ui.get_model(model_name)
if loaded is None:
    st.stop()
if prompt == "":
    st.info("Type a prompt (or pick an example) to see what the model expects next.")
    st.stop()

with ui.friendly_errors(), st.spinner("Running the model once over your prompt..."):
    distribution = nt.next_token_distribution(loaded, prompt, MAX_TOKENS)
if "distribution" not in dir():
    st.stop()
if distribution.notice:
    st.warning(
        f"This page reads at most {MAX_TOKENS:,} tokens. {distribution.notice}",
        icon=":material/content_cut:",
    )

with ui.friendly_errors():
    flow = nt.waterfall(
        distribution.logits,
        temperature=temperature,
        top_k=top_k or None,
        top_p=top_p,
        min_p=min_p or None,
        repetition_penalty=penalty,
        input_ids=distribution.prompt_ids,
    )
    rows = nt.candidates(flow, loaded.tokenizer, shown)
if "rows" not in dir():
    st.stop()

labels = [ui.visible_whitespace(r.text) for r in rows]
guess_mode = st.session_state.get("nt-guess-mode", False)
hidden = guess_mode and not st.session_state.get("nt-revealed", False)

with chart_area:
    facts = loaded.facts
    st.caption(
        f"{facts.title}: {len(distribution.prompt_ids)} prompt tokens in, one score for each "
        f"of {facts.vocab_size:,} vocabulary entries out."
    )
    st.toggle(
        "Guess first", key="nt-guess-mode",
        help="Hide the answer until you have typed what you think comes next.",
    )  # fmt: skip
    if hidden:
        with st.form("nt-guess-form"):
            st.markdown(f"What comes after **{ui.escape(prompt[-80:])}**?")
            st.text_input("Your guess", key="nt-guess", max_chars=MAX_GUESS_CHARS)
            if st.form_submit_button("Reveal"):
                STATE["nt-revealed"] = True
                st.rerun()
    else:
        typed = STATE.get("nt-guess", "")
        if guess_mode and len(typed) > MAX_GUESS_CHARS:
            st.warning(
                f"A guess is a word or two: at most {MAX_GUESS_CHARS} characters.",
                icon=":material/content_cut:",
            )
        elif guess_mode and typed.strip():
            with ui.friendly_errors():
                g = nt.guess(loaded, distribution.probabilities, typed)
                piece = "" if g.whole_word else " (its first token)"
                st.success(
                    f"Your guess **{ui.escape(g.guess)}**{piece} is token "
                    f"`{ui.visible_whitespace(g.token_text)}`: the model gave it "
                    f"**{g.probability:.2%}**, rank **{g.rank:,}** of {facts.vocab_size:,}."
                )
        sharing.chart(
            charts.next_token_bars(
                labels,
                [r.probability for r in rows],
                [r.final_probability for r in rows],
                [r.removed_by for r in rows],
                title=f"Top {len(rows)} next tokens",
                notes=[r.note for r in rows],
            ),
            key="nt-bars",
            title=f"next token top {len(rows)}",
        )
        before, after = flow.before, flow.after
        m1, m2, m3 = st.columns(3)
        m1.metric(
            "Tokens still possible", f"{after.survivors:,}", f"of {before.survivors:,}",
            delta_color="off", delta_arrow="off",
        )  # fmt: skip
        m2.metric(
            "Entropy", f"{after.entropy_bits:.2f} bits",
            f"{after.entropy_bits - before.entropy_bits:+.2f} vs model",
            delta_color="off", delta_arrow="off",
            help="How unsure the choice is: 0 bits = only one option.",
        )  # fmt: skip
        m3.metric(
            "Effective choices", f"{after.effective_choices:,.1f}",
            f"model alone: {before.effective_choices:,.1f}", delta_color="off", delta_arrow="off",
            help="2^entropy: as unsure as a fair pick among this many tokens.",
        )  # fmt: skip

if hidden:
    st.stop()

tab_table, tab_flow, tab_pick, tab_surprise, tab_lens, tab_off = st.tabs(
    ["Table", "Waterfall", "Pick the next token", "Surprisal", "Logit lens", "Switch a part off"]
)
with tab_table:
    st.caption(
        "Probability is the model's own (temperature 1, no filters); *after filters* is what "
        "sampling would use. Cumulative adds up the model's probabilities from the top. "
        "The CSV file has each token's exact text (spaces as spaces) and unrounded logits. "
        "A token written like `<F0 9F>` is only part of a character (a piece of an emoji, say): "
        "its bytes in hex, as on the Tokenizers page; *byte fragment* says which part."
    )
    shown_table = pd.DataFrame(
        {
            "rank": [r.rank for r in rows],
            "token": labels,
            "id": [r.token_id for r in rows],
            "logit": [round(r.logit, 3) for r in rows],
            "probability": [r.probability for r in rows],
            "cumulative": [r.cumulative for r in rows],
            "after filters": [r.final_probability for r in rows],
            "removed by": [r.removed_by or "" for r in rows],
            "byte fragment": [r.note for r in rows],
        }
    )
    exact_table = pd.DataFrame(
        {
            "rank": [r.rank for r in rows],
            "token": [r.text for r in rows],
            "id": [r.token_id for r in rows],
            "logit": [r.logit for r in rows],
            "probability before filters": [r.probability for r in rows],
            "cumulative": [r.cumulative for r in rows],
            "probability after filters": [r.final_probability for r in rows],
            "removed by": [r.removed_by or "" for r in rows],
            "byte fragment": [r.note for r in rows],
        }
    )
    sharing.table(
        shown_table, key="nt-table", title=f"next token probabilities {facts.name}",
        csv=exact_table, hide_index=True, width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="percent")
            for c in ("probability", "cumulative", "after filters")
        },
    )  # fmt: skip

with tab_flow:
    st.caption(
        "The filters run in the same order as in Hugging Face transformers: repetition penalty, "
        "temperature, top-k, top-p, min-p. Each bar shows what one step left and what it cut."
    )
    sharing.chart(
        charts.filter_waterfall(
            [s.label for s in flow.steps],
            [s.survivors for s in flow.steps],
            [s.removed_mass for s in flow.steps],
            [s.entropy_bits for s in flow.steps],
        ),
        key="nt-waterfall",
        title="next token filter waterfall",
    )
    steps = {
        "step": [s.label for s in flow.steps],
        "tokens left": [s.survivors for s in flow.steps],
        "removed": [s.removed for s in flow.steps],
    }
    sharing.table(
        pd.DataFrame(
            {
                **steps,
                "mass removed": [round(s.removed_mass, 4) for s in flow.steps],
                "entropy (bits)": [round(s.entropy_bits, 3) for s in flow.steps],
                "effective choices": [round(s.effective_choices, 1) for s in flow.steps],
            }
        ),
        key="nt-flow-table", title="next token filter steps",
        csv=pd.DataFrame(
            {
                **steps,
                "mass removed": [s.removed_mass for s in flow.steps],
                "entropy (bits)": [s.entropy_bits for s in flow.steps],
                "effective choices": [s.effective_choices for s in flow.steps],
            }
        ),
        hide_index=True, width="stretch",
    )  # fmt: skip

with tab_pick:
    st.caption(
        "Choose a token to append to the prompt: the model then runs once more and predicts "
        "the token after it. This is all that text generation is, one token at a time."
    )
    ranks = [r.rank for r in rows]
    if STATE.get("nt-pick") not in ranks:  # fewer tokens shown than the rank kept from before
        STATE["nt-pick"] = ranks[0]
    pick = st.selectbox(
        "Candidate", ranks, key="nt-pick",
        format_func=lambda rank: f"{labels[rank - 1]}  ({rows[rank - 1].probability:.1%})",
    )  # fmt: skip
    c1, c2 = st.columns(2)
    c1.button(
        "Append this token", key="nt-append", on_click=_append,
        args=(nt.append_token(loaded, prompt, rows[pick - 1].token_id),),
    )  # fmt: skip
    seed = int(
        c2.number_input(
            "Seed", 0, nt.MAX_SEED, 0, step=1, key="nt-seed",
            help="The random draw below uses this seed: the same prompt, knobs and seed always "
            "draw the same token (here, and from a shared link). Change it to draw again.",
        )
    )  # fmt: skip
    sampled = nt.sample_token(flow.final_probabilities(), seed)
    c2.button(
        "Sample one with these knobs", key="nt-sample", on_click=_append,
        args=(nt.append_token(loaded, prompt, sampled),),
        help="Draws a token at random from the filtered distribution (the blue bars) and "
        "appends it to the prompt.",
    )  # fmt: skip

with tab_surprise:
    surprisal = nt.prompt_surprisal(loaded, prompt, MAX_TOKENS)
    st.caption(
        "How surprised the model was by each token of your own prompt: surprisal = "
        "-log2(probability), in bits. Perplexity = exp(average loss): roughly how many "
        "tokens the model was choosing between, on average."
    )
    scored = [t for t in surprisal.tokens if t.bits is not None]
    if scored:
        st.metric("Perplexity", f"{surprisal.perplexity:,.1f}", help="Lower = less surprised.")
        peak = max(t.bits for t in scored) or 1.0
        chips = []
        for t in surprisal.tokens:
            shade = 0.0 if t.bits is None else min(t.bits / peak, 1.0)
            tip = "first token" if t.bits is None else (
                f"p={t.probability:.2%}, rank {t.rank:,}, {t.bits:.2f} bits"
            )  # fmt: skip
            chips.append(
                f"<span title='{ui.escape(tip)}' style='background: rgba(213,94,0,{shade:.2f});"
                f"border:1px solid #ccc;border-radius:4px;padding:2px 4px;margin:2px;"
                f"display:inline-block;font-family:monospace'>"
                f"{ui.escape(ui.visible_whitespace(t.text))}</span>"
            )
        st.markdown("".join(chips), unsafe_allow_html=True)
        visible = [ui.visible_whitespace(t.text) for t in surprisal.tokens]
        sharing.chart(
            charts.surprisal_bars(
                visible, [t.bits for t in surprisal.tokens], [t.rank for t in surprisal.tokens]
            ),
            key="nt-surprisal",
            title="prompt surprisal",
        )
        numbers = {
            "position": [t.index for t in surprisal.tokens],
            "id": [t.token_id for t in surprisal.tokens],
            "probability": [t.probability for t in surprisal.tokens],
            "rank": [t.rank for t in surprisal.tokens],
            "surprisal (bits)": [t.bits for t in surprisal.tokens],
        }
        with st.expander("Every token's numbers"):
            st.caption("The first token has no score: nothing comes before it.")
            sharing.table(
                pd.DataFrame({"token": visible, **numbers}),
                key="nt-surprisal-table", title=f"prompt surprisal {facts.name}",
                csv=pd.DataFrame({"token": [t.text for t in surprisal.tokens], **numbers}),
                hide_index=True, width="stretch",
                column_config={"probability": st.column_config.NumberColumn(format="percent")},
            )  # fmt: skip
    else:
        st.info("The prompt has one token only: there is nothing before it to predict it from.")

with tab_lens:
    st.caption(
        "The logit lens: after each layer, apply the model's final norm and output layer to "
        "the hidden state of the last position, as if the model stopped there. Early layers "
        "guess vaguely; the answer usually takes shape in the last few layers."
    )
    with ui.friendly_errors(), st.spinner("Reading every layer..."):
        lens = nt.logit_lens(loaded, prompt, top=5, max_tokens=MAX_TOKENS)
        sharing.chart(
            charts.logit_lens_heatmap(
                lens.layers,  # the first row is drawn at the bottom: input low, output high
                [[ui.visible_whitespace(t) for t in row] for row in lens.tokens],
                lens.probabilities,
                title="Top 5 tokens read out after each layer (output at the top)",
                notes=lens.notes,
            ),
            key="nt-lens",
            title="logit lens",
        )

with tab_off:
    ui.knock_out_panel(loaded, prompt, "nt", MAX_TOKENS)
