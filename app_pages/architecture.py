"""Architecture page: a language model as a stack of small, countable parts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmlab import architecture as arch
from llmlab import charts, models, registry, ui
from llmlab import forward_pass as fp
from llmlab import parameters as params
from llmlab.app import sharing
from llmlab.page_state import Choice, Integer, Number, Text

# Prompts traced on this page are cut here too: a heatmap of more tokens is unreadable, and
# attention grows with the square of the length.
PAGE_TOKEN_LIMIT = 128
SKELETONS = {f"gpt2-{size}": size for size in arch.GPT2_SIZES}
MODEL_OPTIONS = [*SKELETONS, *ui.model_options()]
TABS = ["Parts and parameters", "Compare architectures", "Run a prompt", "A linear layer"]
PROMPT = "The cat sat on the mat because it"
# A link may name any block and head up to this; the page then checks them against the model.
MAX_INDEX = 1_023
# The toy linear layer y = W·x + b: two outputs, three inputs. In links each number is named as
# in the maths: w12 is row 1, column 2 of W; b2 the second bias; x3 the third input.
GRID = [[1.0, -1.0, 0.0, 0.5], [0.5, 2.0, 1.0, -1.0]]  # a row of W, then its bias
INPUTS = [2.0, 1.0, 3.0]
CELL_LIMIT = 1_000.0  # every number of the toy layer stays within plus or minus this
WEIGHT_NAMES = [[*(f"w{r + 1}{c + 1}" for c in range(3)), f"b{r + 1}"] for r in range(2)]
INPUT_NAMES = [f"x{c + 1}" for c in range(3)]
LINEAR = [
    Number(name, f"arch-{name}", value, low=-CELL_LIMIT, high=CELL_LIMIT)
    for names, values in zip([*WEIGHT_NAMES, INPUT_NAMES], [*GRID, INPUTS], strict=True)
    for name, value in zip(names, values, strict=True)
]
STATE = st.session_state

# Every input of the page, as it appears in a shared link or a settings file.
SETTINGS = sharing.PageSettings(
    "architecture",
    [
        Choice("model", "arch-model", MODEL_OPTIONS[0], always=True, options=tuple(MODEL_OPTIONS)),
        Choice("tab", "arch-tab", TABS[0], options=tuple(TABS)),
        Text("prompt", "arch-prompt", PROMPT),
        Integer("layer", "arch-layer", 0, low=0, high=MAX_INDEX),
        Integer("head", "arch-head", 0, low=0, high=MAX_INDEX),
        *ui.knock_out_fields("arch", MAX_INDEX),
        *LINEAR,
    ],
)  # fmt: skip

ui.page_intro(
    "Architecture",
    "A language model is a stack of small, countable parts: GPT-2 inspected exactly, any model "
    "broken down, a real forward pass traced.",
)
SETTINGS.restore()
for spec in LINEAR:  # plain session values (not widgets), so the link can hold them from the start
    STATE.setdefault(spec.key, spec.default)


@st.cache_resource(show_spinner=False)
def skeleton(name: str):
    """A weightless copy (shared, never mutated): GPT-2 sizes, or a saved model's config."""
    if name in SKELETONS:
        return arch.gpt2_skeleton(SKELETONS[name])
    return arch.skeleton_from_folder(str(models.converted_dir(name)))


@st.cache_data(show_spinner=False, max_entries=16)
def structure(name: str):
    model = skeleton(name)
    tree = arch.module_tree(model)
    return (
        params.parameter_breakdown(model),
        arch.architecture_summary(model, name),
        arch.module_outline_html(tree),
    )


@st.cache_data(show_spinner=False, max_entries=16)
def trace(name: str, text: str):
    loaded = ui.get_model(name)
    return fp.forward_trace(loaded.model, loaded.tokenizer, text, max_tokens=limit(name))


@st.cache_data(show_spinner=False, max_entries=32)
def attention(name: str, text: str, layer: int):
    loaded = ui.get_model(name)
    return fp.attention_maps(loaded.model, loaded.tokenizer, text, layer, limit(name))


def limit(name: str) -> int:
    if ui.is_own_model(name):  # trained on the Training page: no folder to read a config from
        return min(PAGE_TOKEN_LIMIT, ui.own_model().facts.context_length)
    return min(PAGE_TOKEN_LIMIT, structure(name)[1].context_length)


def label(name: str) -> str:
    if name in SKELETONS:
        return f"GPT-2 {SKELETONS[name]} · skeleton (shapes only)"
    return ui.model_label(name)


def check_index(key: str, setting: str, count: int, what: str) -> None:
    """A block or head number this model does not have goes back to 0, with a notice."""
    if STATE.get(key, 0) >= count:
        st.warning(
            f"**{setting}** {STATE[key]} is not in this model: it has {count} {what} "
            f"(0 to {count - 1}). Showing {what[:-1]} 0.",
            icon=":material/info:",
        )
        STATE[key] = 0


def take_edits(editor: str, names: list[list[str]]) -> None:
    """Copy the cells edited in a grid into the toy layer's values (blank cells are ignored)."""
    for row, changes in STATE[editor].get("edited_rows", {}).items():
        for column, value in changes.items():
            position = ["x1", "x2", "x3", "b"].index(column)
            if isinstance(value, int | float) and -CELL_LIMIT <= value <= CELL_LIMIT:
                STATE[f"arch-{names[int(row)][position]}"] = float(value)
    STATE["_arch-linear-round"] = STATE.get("_arch-linear-round", 0) + 1


name = st.selectbox(
    "Model",
    MODEL_OPTIONS,
    key="arch-model",
    format_func=label,
    help="GPT-2 is rebuilt from its published sizes without downloading it: every layer has its "
    "exact shape but holds no numbers. The offline models are real and can run a prompt.",
)
runnable = name not in SKELETONS
if not runnable or (not ui.is_own_model(name) and registry.resolve_model(name).source == "offline"):
    with st.spinner("Building the model's skeleton..."), ui.friendly_errors():
        breakdown, summary, outline = structure(name)
else:  # a Hub model (its config comes with the weights) or the session's own model
    loaded = ui.get_model(name)
    if loaded is None:
        SETTINGS.publish()  # the link and the share controls stay usable
        st.stop()
    breakdown = params.parameter_breakdown(loaded.model)
    summary = arch.architecture_summary(loaded.model, name)
    outline = arch.module_outline_html(arch.module_tree(loaded.model))
if runnable:  # a link (or another model) may name a block or head this model does not have
    check_index("arch-layer", "layer", summary.layers, "blocks")
    check_index("arch-head", "head", summary.heads, "heads")

st.metric("Parameters (tied embeddings counted once)", f"{breakdown.total:,}")
# The open tab is kept (in the link too); every tab's content is still computed on each run.
tabs = st.tabs(TABS, key="arch-tab", on_change="rerun")
SETTINGS.publish()

with tabs[0]:
    st.markdown(
        "**Embedding**: a table with one row of numbers per token. **Attention**: each token "
        "gathers information from the tokens before it. **MLP**: a small two-layer network "
        "applied to every token on its own. **Norm**: rescales the numbers so they stay in a "
        "workable range. **LM head**: turns the last vector into one score per vocabulary token."
    )
    ui.page_link(
        "app_pages/embeddings.py",
        "What the embedding table's rows mean, and how a word's vector changes in context: "
        "the Embeddings page",
        icon=":material/scatter_plot:",
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Config")
        sharing.table(
            pd.DataFrame(summary.as_row().items(), columns=["setting", "value"]).astype(str),
            key="arch-config",
            title=f"{summary.name} config",
            static=True,
        )
    with right:
        st.subheader("Module tree")
        st.caption(
            "Like `print(model)`. Click a line to open or close it; blocks that are "
            "identical are shown once with their count."
        )
        with st.container(height=420):
            st.markdown(outline, unsafe_allow_html=True)  # names only, escaped by the builder
    st.subheader("Where the parameters are")
    st.caption(
        "Box area = number of parameters. The blocks' parts are grouped by kind (all the "
        "attention together, all the MLPs together); click a box to see it block by block, "
        "click the path at the top to go back."
    )
    sharing.chart(
        charts.parameter_treemap(breakdown.rows, breakdown.total),
        key="arch-treemap",
        title=f"{summary.name} parameters treemap",
    )
    letters = ", ".join(f"{k} = {v:,}" for k, v in breakdown.symbols.items())
    st.caption(f"Formulas use: {letters}.")
    if breakdown.tied:
        st.info(
            "The LM head here is **tied** to the token embedding: scoring the next token reuses "
            "the very same table that turned tokens into vectors. It is one tensor, so it is "
            "counted once."
        )
    sharing.table(
        pd.DataFrame(breakdown.table()),
        key="arch-breakdown",
        title=f"{summary.name} parameters",
        hide_index=True,
        width="stretch",
        height=320,
        column_config={"parameters": st.column_config.NumberColumn(format="localized")},
    )
    st.subheader("Memory for the weights")
    sharing.chart(
        charts.memory_bars(params.memory_by_dtype(breakdown.total)),
        key="arch-memory",
        title=f"{summary.name} weights memory",
    )
    st.caption(
        "Weights only. Running also needs room for activations, and generating text keeps a "
        f"key/value cache: {params.human_bytes(arch.kv_cache_bytes(summary, 1000))} per 1,000 "
        "tokens in bf16 for this model."
    )

with tabs[1]:
    st.markdown(
        "Three generations of the same idea, read from their configs. Newer models swap "
        "LayerNorm for the cheaper RMSNorm, learned positions for rotary ones (RoPE), and share "
        "key/value heads between query heads (GQA, or MQA when only one is left) to shrink the "
        "cache used while generating."
    )
    compared = ["gpt2-small", *registry.OFFLINE_PAIR]
    with st.spinner("Reading the configs..."), ui.friendly_errors():
        rows = {structure(n)[1].name: structure(n)[1].as_row() for n in compared}
        sharing.table(
            pd.DataFrame(rows).astype(str).rename_axis("setting").reset_index(),
            key="arch-compare",
            title="architectures compared",
            static=True,
        )

with tabs[2]:
    if not runnable:
        st.warning(
            "A skeleton has shapes but no weights, so it cannot run a prompt. Choose "
            "SmolLM2 or Gemma 3 above to trace a real forward pass."
        )
    else:
        text = st.text_area("Prompt", PROMPT, key="arch-prompt", height=80)
        if not text:
            st.info("Type a prompt above to send it through the model.")
        else:
            context = summary.context_length
            with st.spinner("Running the prompt through every layer..."), ui.friendly_errors():
                result = trace(name, text)
                prompt = result.prompt
                if prompt.truncated:
                    st.warning(
                        f"The prompt has {prompt.original_length:,} tokens; only the first "
                        f"{len(prompt.ids):,} are used (the model reads at most {context:,}, "
                        f"and this page traces at most {PAGE_TOKEN_LIMIT})."
                    )
                st.caption("Tokens: " + " | ".join(ui.visible_whitespace(t) for t in prompt.tokens))
                flow = result.flow()
                st.markdown(
                    "**From token ids to scores**, shapes as (batch, tokens, width): "
                    + " → ".join(
                        f"{label} `{' × '.join(f'{n:,}' for n in shape)}`"
                        for label, shape in result.path()
                    )
                )
                st.caption(
                    "Every block keeps the shape: it reads one vector per token and writes one "
                    "back. Only the LM head changes it, to one score per vocabulary token."
                )
                sharing.chart(
                    charts.trace_flow(
                        [fp.short_name(s.name) for s in flow],
                        [s.shape for s in flow],
                        [s.std for s in flow],
                    ),
                    key="arch-flow",
                    title=f"{summary.name} forward pass spread",
                )
                st.caption(
                    "Spread = standard deviation of a step's output numbers. The norm before "
                    "the LM head brings them back to a workable range however large they grew."
                )
                sharing.table(
                    pd.DataFrame(
                        [
                            {
                                "step": s.name,
                                "module": s.kind,
                                "output shape": " × ".join(map(str, s.shape)),
                                "mean": s.mean,
                                "std": s.std,
                                "max |x|": s.max_abs,
                            }
                            for s in flow
                        ]
                    ),
                    key="arch-trace",
                    title=f"{summary.name} forward pass",
                    hide_index=True,
                    width="stretch",
                    height=260,
                )
                guesses = ", ".join(
                    f"{ui.visible_whitespace(t)!r} {p:.1%}" for t, p in result.next_tokens
                )
                st.markdown(f"**The model's next-token guesses:** {guesses}")
                columns = st.columns(2)
                layer = columns[0].slider("Layer", 0, summary.layers - 1, 0, key="arch-layer")
                head = columns[1].slider("Head", 0, summary.heads - 1, 0, key="arch-head")
                maps = attention(name, text, layer)
                sharing.chart(
                    charts.attention_heatmap(
                        maps.weights[head],
                        [ui.visible_whitespace(t) for t in maps.prompt.tokens],
                        f"Layer {layer} ({maps.layer_kind}), head {head}",
                    ),
                    key="arch-attention",
                    title=f"{summary.name} attention layer {layer} head {head}",
                )
                st.caption(
                    "Each row sums to 1: how one token splits its attention over itself and "
                    "the tokens before it. Above the diagonal is empty: a token never sees "
                    "the future. Many heads pour most of their attention onto the first token "
                    "when nothing else is relevant: a resting place, not a bug."
                )
                st.subheader("Switch a part off")
                if prompt.truncated:
                    st.caption(
                        f"Here the model reads the last {len(prompt.ids):,} tokens of the "
                        "prompt (what comes next depends on the end of the text)."
                    )
                model_now = ui.get_model(name)
                if model_now is not None:
                    ui.knock_out_panel(model_now, text, "arch", limit(name))

with tabs[3]:
    st.markdown(
        "Every Linear box in the tree computes **y = W·x + b**: each output is a weighted sum "
        "of the inputs plus a bias. Edit the numbers."
    )
    st.caption(
        f"Each number can go from {-CELL_LIMIT:,.0f} to {CELL_LIMIT:,.0f}; a cell left blank "
        "keeps its previous number."
    )
    weights = [[STATE[f"arch-{n}"] for n in row] for row in WEIGHT_NAMES]
    inputs = [STATE[f"arch-{n}"] for n in INPUT_NAMES]
    # The grids show the stored numbers; an edit is copied into them and starts a fresh grid.
    edit_round = STATE.get("_arch-linear-round", 0)
    cell = st.column_config.NumberColumn(min_value=-CELL_LIMIT, max_value=CELL_LIMIT)
    for editor, names, rows in (("arch-linear-w", WEIGHT_NAMES, weights),
                                ("arch-linear-x", [INPUT_NAMES], [inputs])):  # fmt: skip
        key = f"{editor}-{edit_round}"
        st.data_editor(
            pd.DataFrame(rows, columns=["x1", "x2", "x3", "b"][: len(rows[0])]),
            key=key,
            width="stretch",
            column_config=dict.fromkeys(["x1", "x2", "x3", "b"], cell),
            on_change=take_edits,
            args=(key, names),
        )
    with ui.friendly_errors():
        example = fp.linear_layer([row[:3] for row in weights], inputs, [row[3] for row in weights])
        st.code("\n".join(example.steps))
