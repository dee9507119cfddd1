"""Decoding page: watch a model write one token at a time, with every choice laid open."""

from __future__ import annotations

import streamlit as st

from llmlab import branch_charts, charts, chat, exports, registry, ui
from llmlab.app import sharing
from llmlab.generation import branching, ladder
from llmlab.generation.branch_points import BranchPoint
from llmlab.generation.decoding import (
    MAX_NEW_TOKENS,
    SAMPLING,
    STRATEGIES,
    GenerationStream,
    iter_generate,
)
from llmlab.generation.repetition import repetition_stats
from llmlab.page_state import BranchPoints, Choice, Choices, Flag, Integer, Number, Text

# Longer prompts are refused before tokenizing: a CPU would take minutes to continue them.
MAX_PROMPT_CHARS = 20_000
EXAMPLES = ["Once upon a time", "What is 2+2?", "Suggest a party theme."]
LABELS = {
    "greedy": "Greedy",
    "sample": "Sampling (temperature)",
    "top_k": "Top-k sampling",
    "top_p": "Top-p (nucleus) sampling",
    "min_p": "Min-p sampling",
    "beam": "Beam search",
}
STATE = st.session_state
LADDER = "Temperature ladder"
MODES = ["One strategy", "Compare strategies", LADDER]
LADDER_OPTIONS = (0.1, 0.2, 0.5, 0.7, 1.0, 1.2, 1.5, 2.0)
EARLY_STOPPING = [False, True, "never"]
MODEL_OPTIONS = ui.picker_options(("base", "chat"))

# Every input of the page, as it appears in a shared link or a settings file.
SETTINGS = sharing.PageSettings(
    "decoding",
    [
        Text("prompt", "dec-prompt", EXAMPLES[0], max_chars=MAX_PROMPT_CHARS),
        Choice("model", "dec-model", MODEL_OPTIONS[0], always=True, options=tuple(MODEL_OPTIONS)),
        Text("hub_id", "dec-model-hub-id", "", max_chars=ui.MAX_HUB_ID_CHARS),
        Flag("template", "dec-template", True),
        Choice("mode", "dec-mode", MODES[0], options=tuple(MODES)),
        # Starts on the precision measured faster on this machine; a link always names it.
        Choice("precision", "dec-dtype", ui.precision_choice(MODEL_OPTIONS[0]).dtype,
               always=True, options=tuple(ui.PRECISIONS)),
        Choice("strategy", "dec-strategy", "greedy", options=tuple(STRATEGIES)),
        Choices("compare", "dec-compare", ["greedy", "top_p"], options=tuple(STRATEGIES),
                max_items=4),
        Integer("max_new_tokens", "dec-max-new", 40, low=1, high=MAX_NEW_TOKENS),
        Integer("seed", "dec-seed", 0, low=0, high=2**31 - 1),
        Number("temperature", "dec-temperature", 1.0, low=0.05, high=2.0, step=0.05),
        Integer("top_k", "dec-top-k", 20, low=1, high=100),
        Number("top_p", "dec-top-p", 0.9, low=0.05, high=1.0, step=0.05),
        Number("min_p", "dec-min-p", 0.1, low=0.0, high=0.5, step=0.01),
        Integer("beams", "dec-beams", 3, low=2, high=5),
        Number("length_penalty", "dec-length-penalty", 1.0, low=-2.0, high=2.0, step=0.5),
        Choice("early_stopping", "dec-early", False, options=tuple(EARLY_STOPPING)),
        Number("repetition_penalty", "dec-repetition", 1.0, low=1.0, high=2.0, step=0.05),
        Integer("no_repeat_ngram_size", "dec-no-repeat", 0, low=0, high=6),
        BranchPoints("branches", "dec-branches", []),
        Choices("ladder", "dec-ladder", list(ladder.TEMPERATURES), options=LADDER_OPTIONS,
                max_items=ladder.MAX_RUNGS),
    ],
)  # fmt: skip

ui.page_intro(
    "Decoding",
    "A language model only ever predicts a probability for every possible next token. "
    "A decoding strategy turns those probabilities into text, one token at a time. Here you "
    "see why greedy decoding loops, why sampling wanders, and what beam search keeps.",
)
SETTINGS.restore()


def use_example() -> None:
    if STATE.get("dec-example"):
        STATE["dec-prompt"] = STATE["dec-example"]


# --- inputs ----------------------------------------------------------------------------------

left, right = st.columns([3, 2])
with left:
    st.pills("Examples", EXAMPLES, key="dec-example", on_change=use_example)
    prompt = st.text_area(
        "Prompt", value=EXAMPLES[0], key="dec-prompt", height=90,
        help="The text the model continues.",
    )  # fmt: skip
with right:
    model_name = ui.model_picker("dec-model", kinds=("base", "chat"))
    spec = registry.MODELS.get(model_name)
    is_base = spec is not None and spec.kind == "base"
    use_template = st.toggle(
        "Wrap the prompt in the chat template",
        value=True,
        key="dec-template",
        disabled=is_base,
        help="Chat models expect the conversation markup they were tuned on; base models have "
        "none, so a base model always gets the plain text.",
    )
    mode = st.segmented_control("Mode", MODES, default=MODES[0], key="dec-mode")
    dtype = ui.precision_picker("dec-dtype", model_name)

if mode == "Compare strategies":
    chosen = st.multiselect(
        "Strategies to compare (same prompt, same seed)",
        list(STRATEGIES),
        default=["greedy", "top_p"],
        format_func=LABELS.get,
        key="dec-compare",
        max_selections=4,
    )
    shown = set(chosen)
elif mode == LADDER:
    temperatures = st.multiselect(
        "Temperatures (same prompt, same seed, one run each)",
        list(LADDER_OPTIONS),
        default=list(ladder.TEMPERATURES),
        key="dec-ladder",
        max_selections=ladder.MAX_RUNGS,
        help="Each run samples from the whole distribution with its logits divided by its "
        "temperature. A greedy run goes with them, to see where each one leaves it.",
    )
    st.caption(
        "Temperature divides the model's scores before they become probabilities. Low "
        "temperatures make the likely tokens even likelier, so the text stays close to the "
        "greedy one; high temperatures give unlikely tokens a real chance, so it wanders off "
        "sooner. All runs use the same seed, so only the temperature differs."
    )
    chosen, shown = ["sample"], set()
else:
    strategy = st.selectbox(
        "Strategy", list(STRATEGIES), format_func=LABELS.get, key="dec-strategy"
    )
    st.caption(STRATEGIES[strategy])
    chosen, shown = [strategy], {strategy}

settings: dict = {}
columns = st.columns(3)
with columns[0]:
    settings["max_new_tokens"] = st.slider(
        "Max new tokens", *SETTINGS.bounds("max_new_tokens"), key="dec-max-new",
        help="Generation stops here, or earlier at the end-of-text token.",
    )  # fmt: skip
    if shown & set(SAMPLING) or mode == LADDER:
        settings["seed"] = int(
            st.number_input(
                "Seed",
                *SETTINGS.bounds("seed"),
                key="dec-seed",
                help="The same seed draws the same random numbers: the same text again.",
            )  # fmt: skip
        )
with columns[1]:
    if shown & set(SAMPLING):
        settings["temperature"] = st.slider(
            "Temperature", *SETTINGS.bounds("temperature"), key="dec-temperature",
            help="Divides the logits: below 1 sharpens the distribution, above 1 flattens it.",
        )  # fmt: skip
    if "top_k" in shown:
        settings["top_k"] = st.slider(
            "Top-k",
            *SETTINGS.bounds("top_k"),
            key="dec-top-k",
            help="Keep only the k most likely tokens.",
        )
    if "top_p" in shown:
        settings["top_p"] = st.slider(
            "Top-p", *SETTINGS.bounds("top_p"), key="dec-top-p",
            help="Keep the most likely tokens until their probabilities add up to p.",
        )  # fmt: skip
    if "min_p" in shown:
        settings["min_p"] = st.slider(
            "Min-p", *SETTINGS.bounds("min_p"), key="dec-min-p",
            help="Keep tokens at least min_p times as likely as the most likely one.",
        )  # fmt: skip
    if "beam" in shown:
        settings["num_beams"] = st.slider(
            "Beams",
            *SETTINGS.bounds("beams"),
            key="dec-beams",
            help="How many partial texts are kept each step.",
        )
        settings["length_penalty"] = st.slider(
            "Length penalty", *SETTINGS.bounds("length_penalty"), key="dec-length-penalty",
            help="Finished texts are ranked by log-prob / length^penalty: > 0 favours longer ones.",
        )  # fmt: skip
        settings["early_stopping"] = st.selectbox(
            "Early stopping", EARLY_STOPPING, key="dec-early",
            format_func=lambda v: {False: "heuristic (False)", True: "as soon as enough "
                                   "finished (True)", "never": "never"}[v],
            help="When to stop once some beams have finished (transformers' definition).",
        )  # fmt: skip
with columns[2]:
    settings["repetition_penalty"] = st.slider(
        "Repetition penalty", *SETTINGS.bounds("repetition_penalty"), key="dec-repetition",
        help="Makes tokens already in the text less likely (1.0 = off).",
    )  # fmt: skip
    settings["no_repeat_ngram_size"] = st.slider(
        "No repeated n-grams of size", *SETTINGS.bounds("no_repeat_ngram_size"),
        key="dec-no-repeat",
        help="Forbids any n tokens in a row from appearing twice (0 = off).",
    )  # fmt: skip

buttons = st.columns([1, 1, 4])
go = buttons[0].button("Generate", type="primary", key="dec-generate", width="stretch")
buttons[1].button(
    "Stop", key="dec-stop", width="stretch", help="Ends the generation after the current token."
)
SETTINGS.publish()


# --- generation ------------------------------------------------------------------------------


def prompt_input(loaded, text: str):
    """The prompt as the model will see it: ids of the chat template, or the plain text."""
    if use_template and loaded.facts.has_chat_template:
        return chat.render_chat(loaded.tokenizer, [{"role": "user", "content": text}]).ids
    return text


def finish_interrupted() -> None:
    """A run cut short by Stop (or any click) is finished as "stopped" and kept, not lost."""
    for key in ("dec-live", "dec-live-compare"):
        running = STATE.pop(key, None)
        if not running:
            continue
        streams = running if isinstance(running, list) else [running]
        results = []
        for name, flag, stream in streams:
            flag["stop"] = True
            for _ in stream:  # the loop sees the flag at its next step and ends
                pass
            results.append((name, stream.result))
        if key == "dec-live":
            STATE["dec-result"] = results[0][1]
        else:
            STATE["dec-compare-results"] = results


def start(loaded, strategy: str, text) -> tuple[dict, GenerationStream]:
    flag = {"stop": False}
    kwargs = {k: v for k, v in settings.items() if k in allowed_settings(strategy)}
    stream = iter_generate(loaded, text, strategy, stop=lambda: flag["stop"], **kwargs)
    return flag, stream


def allowed_settings(strategy: str) -> set[str]:
    common = {"max_new_tokens", "repetition_penalty", "no_repeat_ngram_size"}
    extra = {
        "greedy": set(),
        "sample": {"temperature", "seed"},
        "top_k": {"temperature", "seed", "top_k"},
        "top_p": {"temperature", "seed", "top_p"},
        "min_p": {"temperature", "seed", "min_p"},
        "beam": {"num_beams", "length_penalty", "early_stopping"},
    }
    return common | extra[strategy]


def stream_into(placeholder, stream: GenerationStream, header: str = "") -> None:
    ui.wait_for_turn(stream, placeholder, " Stop cancels it.")
    text, redraw = "", ui.Redraw()
    for step in stream:
        if step.beams is not None:
            text = step.beams[0].text  # beam search: show the best live beam so far
        else:
            text += step.text_delta
        if redraw.due():
            placeholder.markdown(f"{header}{ui.escape(text)}▌", unsafe_allow_html=True)
    placeholder.empty()  # the finished result is shown below, with its details


# --- what if? branches and the temperature ladder ---------------------------------------------
# A branch takes another candidate at one step and lets the model go on from there; branches of
# branches make a tree, kept in STATE["dec-tree"], with its branch points in the link
# ("dec-branches"). The ladder is one run per temperature, started together.


def _signature(result) -> tuple:
    """What makes two originals the same run: model, prompt ids and settings."""
    return (result.model, result.dtype, tuple(result.prompt_ids), sorted(result.settings.items()))


def start_tree(loaded, original) -> None:
    """A new original: keep and rebuild the listed branches if it is the same run as before (or
    the page was opened from a link or a file), otherwise start a tree of its own."""
    previous = STATE.get("dec-tree")
    if previous is not None and _signature(previous.results[0]) != _signature(original):
        STATE["dec-branches"] = []
        SETTINGS.publish(sidebar=False)
    texts = STATE.get("dec-branches") or []
    STATE["dec-node-next"] = 0
    if not texts:
        STATE["dec-tree"] = branching.BranchTree([original])
        return
    points = [BranchPoint.from_text(text) for text in texts]  # checked by the link field
    with st.spinner(f"Rebuilding {len(points)} branch{'es' if len(points) > 1 else ''}..."):
        tree, notices = branching.rebuild(original, points, loaded)
    STATE["dec-tree"] = tree
    if tree.branch_texts() != texts:  # some did not fit: the link keeps only those rebuilt
        STATE["dec-branches"] = tree.branch_texts()
        SETTINGS.publish(sidebar=False)
    for notice in notices:
        st.warning(notice, icon=":material/call_split:")


def shown_result():
    """The node of the tree chosen under "Branches" (the original when there are none)."""
    tree = STATE.get("dec-tree")
    original = STATE.get("dec-result")
    if tree is None or original is None or tree.results[0] is not original:
        return original
    node = STATE.get("dec-node", 0)
    if not isinstance(node, int) or not 0 <= node < len(tree):
        node = STATE["dec-node"] = 0
    result = tree.results[node]
    if isinstance(STATE.get("dec-step"), int) and STATE["dec-step"] > len(result.steps):
        STATE["dec-step"] = max(1, len(result.steps))
    return result


def _token_label(token: str) -> str:
    return ui.visible_whitespace(token)[:16] or "∅"


def token_picker(result, key: str, step_key: str) -> None:
    """The tokens as buttons: clicking one opens its step (and its candidates)."""
    if len(result.steps) < 2:
        return

    def open_step() -> None:
        picked = STATE.get(key)
        if isinstance(picked, int):
            STATE[step_key] = picked + 1

    count = min(len(result.steps), len(result.tokens))
    st.pills(
        "Click a token to open its step",
        list(range(count)),
        format_func=lambda n: f"{n + 1} {_token_label(result.tokens[n])}",
        key=key,
        on_change=open_step,
        help="Opens that step below: the candidates the model weighed there, and the chance "
        "to continue from another one.",
    )


def _candidate_label(candidate, chosen_id: int) -> str:
    taken = " (taken)" if candidate.token_id == chosen_id else ""
    return (
        f"{_token_label(candidate.token)} · {candidate.prob_before:.1%} before filters, "
        f"{candidate.prob_after:.1%} after{taken}"
    )


def _beam_label(beam) -> str:
    state = "finished" if beam.finished else ("kept" if beam.kept else "pruned")
    return f"{ui.visible_whitespace(beam.text)[-40:] or '∅'} · {state} · log-prob {beam.score:.2f}"


def branch_controls(result, step: int) -> None:
    """Choose another candidate (or, for beam search, another beam) at this step and continue."""
    st.markdown("**What if?** Take another token here and let the model continue.")
    record = result.steps[step]
    beam = None
    if result.strategy == "beam":
        beams = record.beams or []
        if not beams:
            return
        index = st.selectbox(
            "Continue this beam", list(range(len(beams))), format_func=lambda n: _beam_label(
                beams[n]), key=f"dec-branch-beam-{step}",
            help="Every continuation beam search considered at this step, the pruned ones "
            "too. The branch keeps that beam's tokens and runs beam search on from there.",
        )  # fmt: skip
        if index is None or index >= len(beams):
            return
        beam, token = index, beams[index].tokens[-1]
    else:
        candidates = record.candidates
        others = [n for n, c in enumerate(candidates) if c.token_id != record.chosen_id]
        index = st.selectbox(
            "Take instead", list(range(len(candidates))),
            index=others[0] if others else 0,
            format_func=lambda n: _candidate_label(candidates[n], record.chosen_id),
            key=f"dec-branch-pick-{step}",
            help="The branch keeps every token before this step, takes this one here, then "
            "goes on with the same settings. With sampling it uses the same seed: the random "
            "numbers after this step are the ones the original run drew.",
        )  # fmt: skip
        if index is None or index >= len(candidates):
            return
        token = candidates[index].token_id
    if st.button("Continue from here", key="dec-branch-go", icon=":material/call_split:"):
        tree = STATE.get("dec-tree")
        parent = STATE.get("dec-node", 0) if tree is not None else 0
        if tree is None or tree.results[parent] is not result:
            st.warning("Press Generate first: the branches start from a finished run.")
            return
        grow_branch(tree, BranchPoint(parent, step, int(token), beam))


def grow_branch(tree, point: BranchPoint) -> None:
    parent = tree.results[point.parent]
    loaded = ui.get_model(model_name, dtype)
    if loaded is None:
        return
    if loaded.name != parent.model or loaded.facts.dtype != parent.dtype:
        st.warning(
            "The model or precision above is not the one that wrote this text. Choose it again "
            "(or press Generate) to branch."
        )
        return
    made = None
    with ui.friendly_errors(), ui.page_run("decoding"):
        if parent.strategy == "beam":
            with st.spinner("Running beam search from the new beam..."):
                made = branching.branch(parent, point.step, point.token_id, point.beam, loaded)
        else:
            flag = {"stop": False}
            stream = branching.iter_branch(
                parent, point.step, point.token_id, loaded, stop=lambda: flag["stop"]
            )
            STATE["dec-live-branch"] = (point, flag, stream)
            stream_into(st.empty(), stream, header="<b>Branch:</b> ")
            STATE.pop("dec-live-branch", None)
            made = stream.result
    if made is not None:
        add_branch(tree, point, made)
        st.rerun()


def add_branch(tree, point: BranchPoint, made) -> None:
    STATE["dec-node-next"] = tree.add(point, made)
    STATE["dec-branches"] = tree.branch_texts()


def finish_interrupted_whatif() -> None:
    """A branch or a ladder cut short by Stop (or any click) is kept as "stopped"."""
    live = STATE.pop("dec-live-branch", None)
    tree = STATE.get("dec-tree")
    if live is not None:
        point, flag, stream = live
        flag["stop"] = True
        for _ in stream:
            pass
        if tree is not None and point.parent < len(tree):
            add_branch(tree, point, stream.result)
    running = STATE.pop("dec-live-ladder", None)
    if running is not None:
        temperatures, flag, streams = running
        flag["stop"] = True
        for stream in streams:
            for _ in stream:
                pass
        results = [stream.result for stream in streams]
        STATE["dec-ladder-result"] = ladder.finish_ladder(temperatures, results[0], results[1:])


def show_tree() -> None:
    if "dec-node-next" in STATE:  # set by a new branch; applied before the picker is drawn
        STATE["dec-node"] = STATE.pop("dec-node-next")
    tree = STATE.get("dec-tree")
    if tree is None or len(tree) < 2 or tree.results[0] is not STATE.get("dec-result"):
        return
    st.subheader("Branches")
    st.caption(
        "Each branch kept the tokens before its step, took another token there, and let the "
        "model write on with the same settings. The figure shows where each one leaves the text "
        "it came from; below, the texts side by side, grey where they agree with that text and "
        "the first different token highlighted."
    )
    labels = [tree.label(n) for n in range(len(tree))]
    tokens = [r.tokens for r in tree.results]
    parents = [tree.parent(n) for n in range(len(tree))]
    divergences = [tree.divergence(n) for n in range(len(tree))]
    notes = ["the run as generated"]
    for n in range(1, len(tree)):
        point = tree.points[n]
        took = _token_label(tree.results[n].tokens[point.step]) if tree.results[n].tokens else ""
        notes.append(f"from {labels[point.parent]}, step {point.step + 1}: took {took}")
    sharing.chart(
        branch_charts.tree_figure(labels, tokens, parents, divergences),
        key="dec-tree-chart",
        title="decoding branches",
    )
    st.html(branch_charts.texts_side_by_side_html(labels, tokens, divergences, notes))
    left, right = st.columns([4, 1])
    left.radio(
        "Show in the step explorer below",
        list(range(len(tree))),
        format_func=lambda n: labels[n],
        key="dec-node",
        horizontal=True,
        help="The text, the tokens and the step explorer below follow this choice; a new "
        "branch leaves the one shown.",
    )

    def clear() -> None:
        STATE["dec-tree"] = branching.BranchTree([tree.results[0]])
        STATE["dec-branches"] = []
        STATE["dec-node"] = 0

    right.button(
        "Clear branches", key="dec-branch-clear", width="stretch", on_click=clear,
        help="Keeps the original run and removes every branch (from the link too).",
    )  # fmt: skip


def run_ladder(loaded, text, temperatures: list[float]) -> None:
    flag = {"stop": False}
    streams = ladder.start_ladder(
        loaded, text, temperatures, seed=settings["seed"],
        max_new_tokens=settings["max_new_tokens"],
        repetition_penalty=settings["repetition_penalty"],
        no_repeat_ngram_size=settings["no_repeat_ngram_size"], stop=lambda: flag["stop"],
    )  # fmt: skip
    STATE.pop("dec-ladder-result", None)
    STATE["dec-live-ladder"] = (list(temperatures), flag, streams)
    names = ["Greedy"] + [f"T = {t:g}" for t in temperatures]
    for name, stream, slot in zip(names, streams, st.columns(len(streams)), strict=True):
        with slot:
            stream_into(st.empty(), stream, header=f"<b>{name}</b><br>")
    STATE.pop("dec-live-ladder", None)
    results = [stream.result for stream in streams]
    STATE["dec-ladder-result"] = ladder.finish_ladder(list(temperatures), results[0], results[1:])


def show_ladder() -> None:
    outcome = STATE.get("dec-ladder-result")
    if outcome is None:
        return
    st.subheader("Temperature ladder")
    st.caption(
        "One greedy run and one sampled run per temperature, same prompt and seed, written in "
        "one batch. In each text the first token where it leaves the greedy text is "
        "highlighted. The chart shows the entropy at each step: how many bits of uncertainty "
        "the distribution the token was drawn from had (0 = one sure token, higher = more "
        "tokens with a real chance). Low temperatures stay near 0 and near greedy."
    )
    labels = ["Greedy"] + [f"T = {run.temperature:g}" for run in outcome.runs]
    results = [outcome.greedy] + [run.result for run in outcome.runs]
    departures = [None] + [run.departure for run in outcome.runs]
    notes = ["the most likely token every step"] + [
        "the same as greedy"
        if run.departure is None
        else f"leaves greedy at step {run.departure + 1}"
        for run in outcome.runs
    ]
    left, right = st.columns([3, 2])
    with left:
        st.html(
            branch_charts.texts_side_by_side_html(
                labels, [r.tokens for r in results], departures, notes
            )
        )
    with right:
        sharing.chart(
            branch_charts.entropy_figure(
                labels, [[s.entropy or 0.0 for s in r.steps] for r in results], departures
            ),
            key="dec-ladder-entropy",
            title="decoding entropy per step",
        )
    st.markdown("**Open a step**: choose a run, then click one of its tokens.")
    run = st.segmented_control(
        "Run", list(range(len(results))), default=0, format_func=lambda n: labels[n],
        key="dec-ladder-run",
    )  # fmt: skip
    run = run if isinstance(run, int) and run < len(results) else 0
    chosen_run = results[run]
    count = min(len(chosen_run.steps), len(chosen_run.tokens))
    if not count:
        return
    picked = st.pills(
        "Tokens of this run", list(range(count)),
        format_func=lambda n: f"{n + 1} {_token_label(chosen_run.tokens[n])}",
        key=f"dec-ladder-token-{run}",
    )  # fmt: skip
    step = picked if isinstance(picked, int) and picked < count else departures[run] or 0
    step = min(step, count - 1)
    record = chosen_run.steps[step]
    sharing.chart(
        charts.candidates_figure(
            record.candidates, record.chosen_id,
            f"{labels[run]}, step {step + 1}: chose {record.chosen_token!r} "
            f"(p = {record.chosen_prob:.1%})",
        ),
        key="dec-ladder-candidates",
        title=f"decoding ladder step {step + 1} candidates",
    )  # fmt: skip


finish_interrupted()
finish_interrupted_whatif()

if go:
    if not prompt.strip():
        st.warning("Type a prompt first (or pick an example above).", icon=":material/edit:")
    elif len(prompt) > MAX_PROMPT_CHARS:
        st.warning(
            f"The prompt has {len(prompt):,} characters; this page continues prompts of at most "
            f"{MAX_PROMPT_CHARS:,}. Shorten it and press Generate again.",
            icon=":material/content_cut:",
        )
    elif not chosen:
        st.warning("Choose at least one strategy to compare.")
    elif mode == LADDER and not temperatures:
        st.warning("Choose at least one temperature for the ladder.")
    else:
        loaded = ui.get_model(model_name, dtype)
        if loaded is not None:
            with ui.friendly_errors(), ui.page_run("decoding"):
                text = prompt_input(loaded, prompt)
                if mode == LADDER:
                    run_ladder(loaded, text, temperatures)
                elif mode == "Compare strategies":
                    slots = st.columns(len(chosen))
                    live = []
                    for name in chosen:
                        flag, stream = start(loaded, name, text)
                        live.append((name, flag, stream))
                    # Settings and prompt are checked when a run starts: a refused run (say,
                    # a prompt longer than the context) keeps the earlier results on the page.
                    STATE.pop("dec-compare-results", None)
                    STATE["dec-live-compare"] = live
                    for (name, _, stream), slot in zip(live, slots, strict=True):
                        with slot:
                            st.markdown(f"**{LABELS[name]}**")
                            stream_into(st.empty(), stream)
                    STATE["dec-compare-results"] = [(n, s.result) for n, _, s in live]
                    STATE.pop("dec-live-compare", None)
                else:
                    flag, stream = start(loaded, chosen[0], text)
                    STATE.pop("dec-result", None)  # only once the new run is accepted
                    STATE["dec-live"] = (chosen[0], flag, stream)
                    stream_into(st.empty(), stream)
                    STATE["dec-result"] = stream.result
                    STATE.pop("dec-live", None)
                    start_tree(loaded, stream.result)
                    if chosen[0] == "beam":
                        with st.spinner(
                            "Running greedy decoding too, for the path beside the tree..."
                        ):
                            greedy = iter_generate(
                                loaded, text, "greedy", max_new_tokens=settings["max_new_tokens"],
                                repetition_penalty=settings["repetition_penalty"],
                                no_repeat_ngram_size=settings["no_repeat_ngram_size"],
                            )  # fmt: skip
                            STATE["dec-greedy"] = [s.chosen_token for s in greedy]


# --- results ---------------------------------------------------------------------------------

FINISH = {
    "eos": "The model produced its end-of-text token.",
    "length": "Reached the maximum number of new tokens.",
    "context": "Reached the end of the model's context window.",
    "stopped": "Stopped by you.",
}


def show_text(result) -> None:
    st.markdown(
        f'<div style="white-space:pre-wrap"><span style="color:#888">{ui.escape(result.prompt)}'
        f"</span><b>{ui.escape(result.text)}</b></div>",
        unsafe_allow_html=True,
    )
    st.caption(f"{ui.timing(len(result.new_ids), result.seconds)} · {FINISH[result.finish_reason]}")
    for notice in result.notices:
        st.info(notice)


def show_chips(result) -> None:
    labels = [
        f"step {n + 1} · {token!r} (id {i})"
        for n, (token, i) in enumerate(zip(result.tokens, result.new_ids, strict=True))
    ]
    st.markdown(
        charts.token_chips_html(result.tokens, result.token_probs, labels), unsafe_allow_html=True
    )


def download_tokens(result, key: str) -> None:
    """The generated tokens as a CSV file: step, token, id and its probability when chosen."""
    sharing.download(
        "Tokens as CSV",
        data=exports.table_csv(exports.generation_frame(result)),
        file_name=f"decoding-{exports.file_stem(result.strategy)}-tokens.csv",
        key=key,
        help="Each new token with its id and the probability it had when it was chosen.",
    )


def show_repetition(result) -> None:
    stats = repetition_stats(result.new_ids)
    a, b, c = st.columns(3)
    a.metric(
        "distinct-1", f"{stats.distinct_1:.2f}", help="Unique tokens / tokens (1 = none repeat)."
    )
    b.metric("distinct-2", f"{stats.distinct_2:.2f}", help="Unique token pairs / pairs.")
    c.metric("longest repeat", f"{stats.longest_repeat_length} tokens",
             help="The longest run of tokens that appears twice.")  # fmt: skip


if mode == "One strategy":
    show_tree()
result = shown_result() if mode == "One strategy" else None
if mode == "One strategy" and result is not None:
    st.subheader(f"Result · {LABELS[result.strategy]}")
    show_text(result)
    st.markdown(
        "**Each token, coloured by the probability it had when chosen** (hover for details)"
    )
    show_chips(result)
    token_picker(result, f"dec-chip-{STATE.get('dec-node', 0)}", "dec-step")
    download_tokens(result, "dec-tokens-csv")
    show_repetition(result)
    if result.steps:
        st.subheader("Step explorer")
        st.caption(
            "Grey bars: the model's probabilities. Blue: after the strategy's filters (temperature, "
            "cut-offs), renormalised. Vermillion: the token that was chosen."
        )
        number = (
            st.slider("Step", 1, len(result.steps), 1, key="dec-step")
            if len(result.steps) > 1
            else 1
        )
        step = result.steps[number - 1]
        sharing.chart(
            charts.candidates_figure(step.candidates, step.chosen_id, f"Step {number}: chose "
                                     f"{step.chosen_token!r} (p = {step.chosen_prob:.1%})"),
            key="dec-candidates",
            title=f"decoding step {number} candidates",
        )  # fmt: skip
        branch_controls(result, number - 1)
    if result.strategy == "beam" and result.steps:
        st.subheader("Beam tree")
        st.caption(
            "Each column is a step. Blue: beams that continue; grey: pruned continuations; green: "
            "finished (end-of-text). Hover for each branch's text and cumulative log-probability. "
            "Beneath in vermillion: the greedy path."
        )
        sharing.chart(
            charts.beam_tree_figure(result.steps[:30], STATE.get("dec-greedy", [])[:30]),
            key="dec-beam-tree",
            title="decoding beam tree",
        )

compared = STATE.get("dec-compare-results")
if mode == "Compare strategies" and compared:
    st.subheader("Side by side")
    for (name, outcome), slot in zip(compared, st.columns(len(compared)), strict=True):
        with slot:
            st.markdown(f"**{LABELS[name]}**")
            show_text(outcome)
            download_tokens(outcome, f"dec-tokens-csv-{name}")
            show_repetition(outcome)
    sharing.chart(
        charts.repetition_figure(
            [LABELS[n] for n, _ in compared], [repetition_stats(o.new_ids) for _, o in compared]
        ),
        key="dec-repetition-chart",
        title="decoding repetition compared",
    )

if mode == LADDER:
    show_ladder()
