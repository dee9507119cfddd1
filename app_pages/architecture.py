"""Architecture page: a language model as a stack of small, countable parts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llmlab import architecture as arch
from llmlab import charts, models, registry, ui
from llmlab import embeddings as emb
from llmlab import forward_pass as fp
from llmlab import parameters as params

# Prompts traced on this page are cut here too: a heatmap of more tokens is unreadable, and
# attention grows with the square of the length.
PAGE_TOKEN_LIMIT = 128
SKELETONS = {f"gpt2-{size}": size for size in arch.GPT2_SIZES}

ui.page_intro(
    "Architecture",
    "A language model is a stack of small, countable parts: GPT-2 inspected exactly, any model "
    "broken down, a real forward pass traced.",
)


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


@st.cache_data(show_spinner=False, max_entries=16)
def contrast(name: str, sentences: tuple[str, ...], word: str, words: tuple[str, ...]):
    loaded = ui.get_model(name)
    result = emb.embedding_contrast(loaded.model, loaded.tokenizer, list(sentences), word)
    points, explained = emb.embedding_projection(
        loaded.model, loaded.tokenizer, list(sentences), list(words)
    )
    return result, points, explained


def limit(name: str) -> int:
    return min(PAGE_TOKEN_LIMIT, structure(name)[1].context_length)


def label(name: str) -> str:
    if name in SKELETONS:
        return f"GPT-2 {SKELETONS[name]} · skeleton (shapes only)"
    return ui.model_label(name)


options = [*SKELETONS, *ui.model_options()]
name = st.selectbox(
    "Model",
    options,
    key="arch-model",
    format_func=label,
    help="GPT-2 is rebuilt from its published sizes without downloading it: every layer has its "
    "exact shape but holds no numbers. The offline models are real and can run a prompt.",
)
runnable = name not in SKELETONS
if not runnable or registry.resolve_model(name).source == "offline":
    with st.spinner("Building the model's skeleton..."), ui.friendly_errors():
        breakdown, summary, outline = structure(name)
else:  # a Hub model: its config comes with the weights
    loaded = ui.get_model(name)
    if loaded is None:
        st.stop()
    breakdown = params.parameter_breakdown(loaded.model)
    summary = arch.architecture_summary(loaded.model, name)
    outline = arch.module_outline_html(arch.module_tree(loaded.model))

st.metric("Parameters (tied embeddings counted once)", f"{breakdown.total:,}")
tabs = st.tabs(
    [
        "Parts and parameters",
        "Compare architectures",
        "Run a prompt",
        "Embeddings",
        "A linear layer",
    ]
)

with tabs[0]:
    st.markdown(
        "**Embedding**: a table with one row of numbers per token. **Attention**: each token "
        "gathers information from the tokens before it. **MLP**: a small two-layer network "
        "applied to every token on its own. **Norm**: rescales the numbers so they stay in a "
        "workable range. **LM head**: turns the last vector into one score per vocabulary token."
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Config")
        st.table(pd.DataFrame(summary.as_row().items(), columns=["setting", "value"]).astype(str))
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
    st.plotly_chart(charts.parameter_treemap(breakdown.rows, breakdown.total), key="arch-treemap")
    letters = ", ".join(f"{k} = {v:,}" for k, v in breakdown.symbols.items())
    st.caption(f"Formulas use: {letters}.")
    if breakdown.tied:
        st.info(
            "The LM head here is **tied** to the token embedding: scoring the next token reuses "
            "the very same table that turned tokens into vectors. It is one tensor, so it is "
            "counted once."
        )
    st.dataframe(
        pd.DataFrame(breakdown.table()),
        hide_index=True,
        width="stretch",
        height=320,
        column_config={"parameters": st.column_config.NumberColumn(format="localized")},
    )
    st.subheader("Memory for the weights")
    st.plotly_chart(charts.memory_bars(params.memory_by_dtype(breakdown.total)), key="arch-memory")
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
        st.table(pd.DataFrame(rows).astype(str))

with tabs[2]:
    if not runnable:
        st.warning(
            "A skeleton has shapes but no weights, so it cannot run a prompt. Choose "
            "SmolLM2 or Gemma 3 above to trace a real forward pass."
        )
    else:
        text = st.text_area(
            "Prompt", "The cat sat on the mat because it", key="arch-prompt", height=80
        )
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
                st.plotly_chart(
                    charts.trace_flow(
                        [fp.short_name(s.name) for s in flow],
                        [s.shape for s in flow],
                        [s.std for s in flow],
                    ),
                    key="arch-flow",
                )
                st.caption(
                    "Spread = standard deviation of a step's output numbers. The norm before "
                    "the LM head brings them back to a workable range however large they grew."
                )
                st.dataframe(
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
                st.plotly_chart(
                    charts.attention_heatmap(
                        maps.weights[head],
                        [ui.visible_whitespace(t) for t in maps.prompt.tokens],
                        f"Layer {layer} ({maps.layer_kind}), head {head}",
                    ),
                    key="arch-attention",
                )
                st.caption(
                    "Each row sums to 1: how one token splits its attention over itself and "
                    "the tokens before it. Above the diagonal is empty: a token never sees "
                    "the future. Many heads pour most of their attention onto the first token "
                    "when nothing else is relevant: a resting place, not a bug."
                )

with tabs[3]:
    st.markdown(
        "The embedding table gives a word the **same** vector in every sentence (a lookup). "
        "After the blocks, its vector depends on the words around it."
    )
    if not runnable:
        st.warning("A skeleton has no embedding numbers; choose SmolLM2 or Gemma 3 above.")
    else:
        sentences_text = st.text_area(
            "Sentences (one per line)",
            "I sat on the river bank\nI opened a bank account\nThe river was cold\n"
            "The money is in the bank",
            key="arch-sentences",
            height=120,
        )
        word = st.text_input("Word to compare", "bank", key="arch-word")
        words = st.text_input(
            "Words for the map (comma separated)", "bank, river, money", key="arch-words"
        )
        sentences = tuple(s.strip() for s in sentences_text.splitlines() if s.strip())
        word_list = tuple(w.strip() for w in words.split(",") if w.strip())
        with_word = tuple(s for s in sentences if emb.contains_word(s, word.strip()))
        if len(with_word) < 2:
            st.warning(
                f"{len(with_word)} sentence(s) contain the word {word.strip()!r}; the comparison "
                "needs it in at least two sentences."
            )
        else:
            with st.spinner("Comparing vectors..."), ui.friendly_errors():
                result, points, explained = contrast(name, with_word, word.strip(), word_list)
                labels = [f"s{sentences.index(s) + 1}" for s in result.sentences]
                columns = st.columns(2)
                columns[0].plotly_chart(
                    charts.similarity_heatmap(
                        result.static_similarity, labels, "Static (table row)"
                    ),
                    key="arch-static",
                )
                columns[1].plotly_chart(
                    charts.similarity_heatmap(
                        result.contextual_similarity, labels, "Contextual (after the blocks)"
                    ),
                    key="arch-contextual",
                )
                st.caption(
                    "Cosine similarity: 1 means the vectors point the same way. "
                    + " · ".join(
                        f"**{tag}**: {ui.escape(s)}"
                        for tag, s in zip(labels, result.sentences, strict=True)
                    )
                )
                st.plotly_chart(
                    charts.embedding_scatter(
                        points,
                        list(sentences),
                        f"Contextual vectors, PCA to 2-D ({explained.sum():.0%} of the spread)",
                    ),
                    key="arch-pca",
                )

with tabs[4]:
    st.markdown(
        "Every Linear box in the tree computes **y = W·x + b**: each output is a weighted sum "
        "of the inputs plus a bias. Edit the numbers."
    )
    grid = st.data_editor(
        pd.DataFrame({"x1": [1.0, 0.5], "x2": [-1.0, 2.0], "x3": [0.0, 1.0], "b": [0.5, -1.0]}),
        key="arch-linear-w",
        width="stretch",
    )
    inputs = st.data_editor(
        pd.DataFrame({"x1": [2.0], "x2": [1.0], "x3": [3.0]}), key="arch-linear-x", width="stretch"
    )
    with ui.friendly_errors():
        example = fp.linear_layer(
            grid[["x1", "x2", "x3"]].astype(float).values.tolist(),
            inputs.iloc[0].astype(float).tolist(),
            grid["b"].astype(float).tolist(),
        )
        st.code("\n".join(example.steps))
