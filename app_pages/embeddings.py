"""Embeddings page: words and sentences as vectors, similarity, semantic search and a map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from llmlab import charts as lab_charts
from llmlab import embedding_charts as charts
from llmlab import embeddings as emb
from llmlab import registry, ui
from llmlab.app import sharing
from llmlab.embeddings.similarity import READINGS
from llmlab.page_state import Choice, Integer, Text

TABS = ["From text to vectors", "Similarity", "Semantic search", "Map", "Static vs contextual",
        "Classify"]  # fmt: skip
TEXT = "Embeddings turn text into numbers."
SENTENCES = "\n".join(
    [
        "How do I save money?",
        "What is the best way to put cash aside?",
        "Save the file before you close it.",
        "The river bank was muddy after the rain.",
        "A kitten is sleeping on the sofa.",
    ]
)
QUERY = "Is it going to be wet tomorrow?"
SOURCES = ("The lab's corpus (200 sentences)", "My own sentences")
MAP_WORDS = "pizza, guitar, rocket, umbrella"
CONTEXT_SENTENCES = (
    "I sat on the river bank\nI opened a bank account\nThe river was cold\nThe money is in the bank"
)
WORD = "bank"
CONTEXT_WORDS = "bank, river, money"
EXAMPLES = "\n".join(
    [
        "weather: It will rain all afternoon.",
        "weather: The sun is out and it is warm.",
        "food: I baked fresh bread this morning.",
        "food: This soup needs more salt.",
        "sport: She scored the winning goal.",
        "sport: He runs five kilometres every day.",
    ]
)
NEW_SENTENCES = (
    "Snow is expected overnight.\nPasta with tomato sauce for dinner.\nThe match ended in a draw."
)
# What the page embeds at once: a similarity matrix over more sentences is unreadable, and a
# pasted corpus is cut where embedding it would keep a student waiting.
MAX_SIMILARITY = 30
MAX_MAP_WORDS = 30
MAX_WORD_CHARS = 40
MAX_NEW = 50
MAX_TOP = 20
MAX_CORPUS_CHARS = 200_000  # a settings file holds a pasted corpus up to this size
MINILM = "minilm-l6-v2"
MODEL_OPTIONS = ui.model_options()
TABLE_OPTIONS = [MINILM, *MODEL_OPTIONS]
# The smaller offline model loads faster; a copy without it starts with what it has.
DEFAULT_MODEL = (
    "smollm2-135m-instruct" if "smollm2-135m-instruct" in MODEL_OPTIONS else MODEL_OPTIONS[0]
)
STATE = st.session_state

SETTINGS = sharing.PageSettings(
    "embeddings",
    [
        Choice("tab", "emb-tab", TABS[0], options=tuple(TABS)),
        Text("text", "emb-text", TEXT),
        Text("sentences", "emb-sentences", SENTENCES),
        Choice("corpus", "emb-source", SOURCES[0], options=SOURCES),
        Text("own", "emb-own", "", max_chars=MAX_CORPUS_CHARS),
        Text("query", "emb-query", QUERY),
        Integer("top", "emb-top", 5, low=1, high=MAX_TOP),
        Text("words", "emb-map-words", MAP_WORDS),
        Choice("model", "emb-model", DEFAULT_MODEL, options=tuple(MODEL_OPTIONS)),
        Text("context", "emb-context", CONTEXT_SENTENCES),
        Text("word", "emb-word", WORD),
        Text("context_words", "emb-context-words", CONTEXT_WORDS),
        Choice("table", "emb-table", MINILM, options=tuple(TABLE_OPTIONS)),
        Text("a", "emb-a", "king"),
        Text("b", "emb-b", "man"),
        Text("c", "emb-c", "woman"),
        Text("expected", "emb-expected", "queen"),
        Text("examples", "emb-examples", EXAMPLES),
        Text("new", "emb-new", NEW_SENTENCES),
    ],
)

ui.page_intro(
    "Embeddings",
    "What a vector means: words and sentences become lists of numbers, and texts that mean "
    "similar things get similar numbers. Every number here comes from all-MiniLM-L6-v2 (or the "
    "language models' own tables), running on your CPU.",
)
SETTINGS.restore()
# Only the open tab draws its widgets, and Streamlit forgets a widget's value when a run does
# not draw it. Written back as plain session values, the other tabs' inputs are kept.
for spec in SETTINGS.fields:
    if spec.key in STATE:
        STATE[spec.key] = STATE[spec.key]


@st.cache_data(show_spinner=False, max_entries=64)
def embedded(texts: tuple[str, ...]) -> emb.Embedded:
    """Sentence vectors, cached by the texts: a prepared corpus is never embedded twice."""
    return emb.encode_sentences(list(texts), ui.sentence_encoder())


@st.cache_data(show_spinner=False, max_entries=16)
def steps(text: str) -> emb.EmbeddingSteps:
    return emb.embedding_steps(text, ui.sentence_encoder())


@st.cache_data(show_spinner=False, max_entries=16)
def contrast(name: str, with_word: tuple[str, ...], word: str) -> emb.EmbeddingContrast:
    """The word compared across the sentences that hold it."""
    loaded = ui.get_model(name)
    return emb.embedding_contrast(loaded.model, loaded.tokenizer, list(with_word), word)


@st.cache_data(show_spinner=False, max_entries=16)
def contextual_map(name: str, sentences: tuple[str, ...], words: tuple[str, ...]):
    """Every word typed, in every sentence holding it (numbered as in the box), on a PCA map."""
    loaded = ui.get_model(name)
    return emb.embedding_projection(loaded.model, loaded.tokenizer, list(sentences), list(words))


@st.cache_data(show_spinner=False, max_entries=16)
def analogy(table_name: str, a: str, b: str, c: str, expected: str) -> emb.Analogy:
    return emb.word_analogy(static_table(table_name), a, b, c, expected)


def static_table(name: str) -> emb.StaticTable:
    if name == MINILM:
        return emb.encoder_table(ui.sentence_encoder())
    loaded = ui.get_model(name)
    if loaded is None:
        raise ValueError(f"table={name!r}: the model could not be loaded (see above)")
    return emb.model_table(title(loaded.name), loaded.model, loaded.tokenizer)


def title(name: str) -> str:
    spec = registry.MODELS.get(name)
    return spec.title if spec else name


def short(text: str, limit: int = 100) -> str:
    """A sentence for a table cell or caption: one line, cut when very long."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notify(notices: list[str]) -> None:
    for notice in notices:
        st.info(notice, icon=":material/info:")


def cut_notice(vectors: emb.Embedded, sentences: list[str]) -> None:
    if vectors.cut:
        named = ", ".join(emb.label(i) for i in vectors.cut[:10])
        more = " and others" if len(vectors.cut) > 10 else ""
        st.info(
            f"{len(vectors.cut):,} sentence(s) ({named}{more}) are longer than MiniLM reads: "
            f"each was cut at its first {emb.MAX_TOKENS} tokens, and its vector describes only "
            "that part.",
            icon=":material/content_cut:",
        )


def current_corpus() -> tuple[emb.Corpus, list[str]]:
    """The corpus the search and the map use: the lab's, or the student's own lines."""
    if STATE.get("emb-source", SOURCES[0]) == SOURCES[0]:
        return emb.lab_corpus(), []
    corpus, notices = emb.pasted_corpus(STATE.get("emb-own", ""))
    return corpus, notices


def typed_words(text: str, limit: int) -> tuple[list[str], list[str]]:
    """Comma-separated words: blanks dropped, repeats kept once, each at most MAX_WORD_CHARS."""
    words = list(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))
    notices = []
    long = [w for w in words if len(w) > MAX_WORD_CHARS]
    if long:
        notices.append(f"{len(long)} word(s) longer than {MAX_WORD_CHARS} characters left out.")
        words = [w for w in words if len(w) <= MAX_WORD_CHARS]
    if len(words) > limit:
        notices.append(f"Only the first {limit} words are used.")
        words = words[:limit]
    return words, notices


encoder = ui.get_sentence_encoder()
if encoder is None:
    SETTINGS.publish()  # the link and the share controls stay usable
    st.stop()

# Only the open tab runs (on_change="rerun"): a new query does not redraw the map.
tabs = st.tabs(TABS, key="emb-tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open:
        st.markdown(
            "A sentence goes through MiniLM step by step: it is cut into **tokens**; the six "
            "encoder blocks give **every token 384 numbers**; those rows are averaged (**mean "
            "pooling**); the average is scaled to length 1 (**normalisation**). What is left is "
            "**the sentence's vector**: one row of 384 numbers, whatever the sentence's length."
        )
        text = st.text_area("Sentence", TEXT, key="emb-text", height=80)
        if not text.strip():
            st.info("Type a sentence above to see it become a vector.")
        else:
            with st.spinner("Running MiniLM..."), ui.friendly_errors():
                result = steps(text)
                if result.cut:
                    st.info(
                        f"The text is longer than MiniLM reads: only its first "
                        f"{emb.MAX_TOKENS} tokens ([CLS] and [SEP] included) are used.",
                        icon=":material/content_cut:",
                    )
                st.subheader("1. Tokens")
                st.caption(
                    f"{len(result.tokens)} tokens. [CLS] opens and [SEP] closes every text; "
                    "'##' marks a piece that continues the word before it. MiniLM lowercases."
                )
                st.markdown(" ".join(f"`{ui.visible_whitespace(t)}`" for t in result.tokens[:128]))
                st.subheader(f"2. One row of {result.width} numbers per token")
                sharing.chart(
                    charts.token_vectors_heatmap(
                        result.token_vectors, result.tokens, "Token vectors after the encoder"
                    ),
                    key="emb-tokens",
                    title="MiniLM token vectors",
                )
                st.caption(
                    "Red is positive, blue negative. These vectors are contextual: the same "
                    "word gets different numbers in different sentences."
                )
                st.subheader("3. Mean pooling, 4. normalisation, 5. the sentence's vector")
                sharing.chart(
                    charts.vector_rows_heatmap(
                        [result.pooled, result.vector],
                        ["average of the token rows", "divided by its length"],
                        "From many rows to one",
                    ),
                    key="emb-pooled",
                    title="MiniLM mean pooling and normalisation",
                )
                columns = st.columns(3)
                columns[0].metric("Tokens in", f"{len(result.tokens)}")
                columns[1].metric("Length of the average", f"{result.pooled_length:.4f}")
                columns[2].metric("Length of the sentence vector", "1.0000")
                st.caption(
                    "With every vector of length 1, the cosine similarity of two sentences is "
                    "simply the sum of their numbers multiplied pairwise (the dot product)."
                )
                sharing.table(
                    pd.DataFrame({"number": range(result.width), "value": result.vector}),
                    key="emb-vector",
                    title="MiniLM sentence vector",
                    hide_index=True,
                    height=220,
                )

with tabs[1]:
    if tabs[1].open:
        st.markdown(
            "Edit the sentences (one per line): every pair gets a **cosine similarity**, 1 when "
            "the two vectors point the same way, near 0 when they have nothing to do with each "
            "other."
        )
        text = st.text_area("Sentences (one per line)", SENTENCES, key="emb-sentences", height=160)
        lines = emb.sentence_lines(text, MAX_SIMILARITY)
        notify(lines.notices)
        if len(lines.sentences) < 2:
            st.info(
                f"{len(lines.sentences)} sentence here; type at least two, one per line, to "
                "compare them."
            )
        else:
            with st.spinner("Embedding the sentences..."), ui.friendly_errors():
                vectors = embedded(tuple(lines.sentences))
                cut_notice(vectors, lines.sentences)
                for first, repeat in lines.duplicates:
                    st.info(
                        f"{emb.label(repeat)} repeats {emb.label(first)}: the same sentence gets "
                        "the same vector, so their score is 1.",
                        icon=":material/content_copy:",
                    )
                matrix = emb.cosine_matrix(vectors.vectors)
                labels = [emb.label(i) for i in range(len(lines.sentences))]
                sharing.chart(
                    charts.similarity_figure(matrix, labels, lines.sentences),
                    key="emb-similarity",
                    title="MiniLM cosine similarity",
                )
                high, low = emb.most_and_least_similar(matrix)
                for (r, c), what in ((high, "Most similar"), (low, "Least similar")):
                    score = float(matrix[r, c])
                    st.markdown(
                        f"**{what}**: {labels[r]} and {labels[c]}, {score:.3f}: "
                        f"{emb.reading(score)}."
                    )
                st.caption(
                    " · ".join(
                        f"**{tag}**: {ui.escape(short(s, 80))}"
                        for tag, s in zip(labels, lines.sentences, strict=True)
                    )
                )
                with st.expander("How to read a score"):
                    st.markdown(
                        "\n".join(
                            f"- **{low:.1f} and above**: {text}" for low, text in READINGS[1:-1]
                        )
                        + "\n- **below 0.1**: unrelated\n\n"
                        "A rule of thumb for this model, not a law: a score says the two "
                        'sentences are *about* the same thing, not that they agree ("I love '
                        'rain" and "I hate rain" score high).'
                    )
                sharing.table(
                    pd.DataFrame(matrix, index=labels, columns=labels).round(4),
                    key="emb-matrix",
                    title="MiniLM similarity matrix",
                    csv=pd.DataFrame(matrix, columns=labels).assign(sentence=lines.sentences)[
                        ["sentence", *labels]
                    ],
                )

with tabs[2]:
    if tabs[2].open:
        st.markdown(
            "The corpus is embedded once; a query is one more sentence, compared with every "
            "corpus sentence. **Semantic search** ranks them by cosine similarity; the "
            "**keyword match** beside it only finds sentences that share the query's words."
        )
        source = st.radio("Corpus", SOURCES, key="emb-source", horizontal=True)
        if source == SOURCES[1]:
            st.text_area(
                f"My sentences (one per line, up to {emb.MAX_CORPUS:,}; start a line with a "
                "topic and a tab to colour it on the map)",
                "",
                key="emb-own",
                height=160,
            )
        corpus, notices = current_corpus()
        notify(notices)
        query = st.text_input("Query", QUERY, key="emb-query")
        top = st.slider("Results", 1, MAX_TOP, 5, key="emb-top")
        if not len(corpus):
            st.info("The corpus is empty: paste some sentences, one per line.")
        elif not query.strip():
            st.info("Type a query to search the corpus.")
        else:
            with st.spinner(f"Embedding {len(corpus):,} sentences (once)..."), ui.friendly_errors():
                corpus_vectors = embedded(tuple(corpus.sentences))
                cut_notice(corpus_vectors, corpus.sentences)
                query_vectors = embedded((query,))
                if query_vectors.cut:
                    st.info(f"The query was cut at its first {emb.MAX_TOKENS} tokens.")
                hits = emb.semantic_search(
                    query_vectors.vectors[0], corpus_vectors.vectors, corpus, top
                )
                keyword = emb.keyword_search(query, corpus, top)
                left, right = st.columns(2)
                with left:
                    st.subheader("By meaning")
                    sharing.table(
                        pd.DataFrame(
                            {
                                "rank": [h.rank for h in hits],
                                "cosine": [round(h.score, 4) for h in hits],
                                "sentence": [short(h.sentence) for h in hits],
                                "topic": [h.topic for h in hits],
                            }
                        ),
                        key="emb-semantic",
                        width="stretch",
                        title="semantic search results",
                        hide_index=True,
                        csv=pd.DataFrame(
                            {
                                "query": query,
                                "rank": [h.rank for h in hits],
                                "cosine": [h.score for h in hits],
                                "sentence": [h.sentence for h in hits],
                                "topic": [h.topic for h in hits],
                            }
                        ),
                    )
                with right:
                    st.subheader("By shared words")
                    if not keyword:
                        st.info(
                            "No sentence shares a word with the query (small words such as "
                            "'the' or 'is' are ignored). Semantic search still finds the "
                            "sentences on the left: meaning, not words."
                        )
                    else:
                        sharing.table(
                            pd.DataFrame(
                                {
                                    "rank": [h.rank for h in keyword],
                                    "words shared": [", ".join(h.matched) for h in keyword],
                                    "sentence": [short(h.sentence) for h in keyword],
                                    "topic": [h.topic for h in keyword],
                                }
                            ),
                            key="emb-keyword",
                            width="stretch",
                            title="keyword search results",
                            hide_index=True,
                            csv=pd.DataFrame(
                                {
                                    "query": query,
                                    "rank": [h.rank for h in keyword],
                                    "words shared": [" ".join(h.matched) for h in keyword],
                                    "sentence": [h.sentence for h in keyword],
                                    "topic": [h.topic for h in keyword],
                                }
                            ),
                        )
                found = {h.index for h in keyword}
                only_meaning = [h for h in hits if h.index not in found]
                if only_meaning:
                    st.caption(
                        f"{len(only_meaning)} of the {len(hits)} nearest sentences share no "
                        "word with the query: they were found by meaning. This is how "
                        "retrieval for RAG finds the passages a chatbot is then given to read."
                    )

with tabs[3]:
    if tabs[3].open:
        st.markdown(
            "Every sentence of the corpus (and each word you type) as one point: its 384 numbers "
            "squeezed to 2 with **PCA**, which keeps the two directions along which the points "
            "spread the most. The colours are the topics, added only after the map is drawn: the "
            "model never saw them."
        )
        corpus, notices = current_corpus()
        notify(notices)
        st.caption(f"Corpus: {STATE.get('emb-source', SOURCES[0])} (chosen on Semantic search).")
        words_text = st.text_input(
            "Words to place on the map (comma separated)", MAP_WORDS, key="emb-map-words"
        )
        words, word_notices = typed_words(words_text, MAX_MAP_WORDS)
        notify(word_notices)
        texts = [*corpus.sentences, *(w for w in words if w not in corpus.sentences)]
        if len(texts) < 3:
            st.info("The map needs at least three sentences or words.")
        else:
            with st.spinner("Embedding and projecting..."), ui.friendly_errors():
                prepared = embedded(tuple(corpus.sentences))
                cut_notice(prepared, corpus.sentences)
                corpus_vectors = prepared.vectors
                extra = texts[len(corpus) :]
                word_vectors = embedded(tuple(extra)).vectors if extra else np.zeros((0, 384))
                points, explained = emb.text_map(
                    np.concatenate([corpus_vectors, word_vectors]),
                    texts,
                    [*corpus.topics, *(["word"] * len(extra))],
                    [*(["sentence"] * len(corpus)), *(["word"] * len(extra))],
                )
                sharing.chart(
                    charts.text_map_figure(
                        points,
                        f"PCA to 2-D: {explained.sum():.0%} of the spread in 384 dimensions",
                    ),
                    key="emb-map",
                    title="MiniLM sentence map",
                )
                st.caption(
                    "Hover over a point to read its sentence. Two directions keep only part of "
                    "the spread, so neighbours on the map are usually, not always, neighbours in "
                    "meaning; the similarity and search tabs use all 384 numbers."
                )

with tabs[4]:
    if tabs[4].open:
        st.markdown(
            "A language model's **embedding table** gives a word the **same** vector in every "
            "sentence (a lookup, like word2vec). After the blocks, its vector depends on the "
            'words around it (a **contextual** embedding): "bank" by a river is not "bank" '
            "with money."
        )
        name = st.selectbox(
            "Model",
            MODEL_OPTIONS,
            index=MODEL_OPTIONS.index(DEFAULT_MODEL),
            key="emb-model",
            format_func=ui.model_label,
        )
        sentences_text = st.text_area(
            "Sentences (one per line)", CONTEXT_SENTENCES, key="emb-context", height=120
        )
        word = st.text_input("Word to compare", WORD, key="emb-word")
        words_text = st.text_input(
            "Words for the map (comma separated)", CONTEXT_WORDS, key="emb-context-words"
        )
        loaded = ui.get_model(name)
        if loaded is not None:
            sentences = tuple(emb.sentence_lines(sentences_text, MAX_SIMILARITY).sentences)
            words, _ = typed_words(words_text, 8)
            with_word = tuple(s for s in sentences if emb.contains_word(s, word.strip()))
            if len(with_word) < 2:
                st.warning(
                    f"{len(with_word)} sentence(s) contain the word {short(word.strip(), 40)!r}; "
                    "the comparison needs it in at least two sentences."
                )
            else:
                with st.spinner("Comparing vectors..."), ui.friendly_errors():
                    result = contrast(name, with_word, word.strip())
                    labels = [f"s{sentences.index(s) + 1}" for s in result.sentences]
                    columns = st.columns(2)
                    with columns[0]:
                        sharing.chart(
                            lab_charts.similarity_heatmap(
                                result.static_similarity, labels, "Static (table row)"
                            ),
                            key="emb-static",
                            title=f"{title(loaded.name)} static similarity",
                        )
                    with columns[1]:
                        sharing.chart(
                            lab_charts.similarity_heatmap(
                                result.contextual_similarity,
                                labels,
                                "Contextual (after the blocks)",
                            ),
                            key="emb-contextual",
                            title=f"{title(loaded.name)} contextual similarity",
                        )
                    st.caption(
                        "Cosine similarity: 1 means the vectors point the same way. "
                        + " · ".join(
                            f"**{tag}**: {ui.escape(short(s, 80))}"
                            for tag, s in zip(labels, result.sentences, strict=True)
                        )
                    )
            if not words:
                st.info("Type words for the map, separated by commas.")
            else:
                with st.spinner("Placing the words..."), ui.friendly_errors():
                    points, explained = contextual_map(name, sentences, tuple(words))
                    sharing.chart(
                        lab_charts.embedding_scatter(
                            points,
                            list(sentences),
                            f"Contextual vectors, PCA to 2-D ({explained.sum():.0%} of the spread)",
                        ),
                        key="emb-pca",
                        title=f"{title(loaded.name)} contextual vectors map",
                    )
        st.subheader("The input embedding tables")
        rows = []
        with ui.friendly_errors():
            tables = [emb.encoder_table(encoder)]
            if loaded is not None:
                tables.append(static_table(name))
            total = {
                encoder.name: sum(p.numel() for p in encoder.model.parameters()),
                **(
                    {tables[-1].name: sum(p.numel() for p in loaded.model.parameters())}
                    if loaded is not None
                    else {}
                ),
            }
            for table in tables:
                vocabulary, width = table.shape
                rows.append(
                    {
                        "model": table.name,
                        "rows (tokens)": f"{vocabulary:,}",
                        "numbers per row": width,
                        "numbers in the table": f"{vocabulary * width:,}",
                        "share of the model": f"{vocabulary * width / total[table.name]:.0%}",
                    }
                )
            sharing.table(
                pd.DataFrame(rows), key="emb-tables", title="input embedding tables", static=True
            )
            st.caption(
                "One row per token of the vocabulary. Small models spend a large share of "
                "their parameters on this table."
            )
        st.subheader("King − man + woman = ?")
        st.markdown(
            "With word2vec, the vector *king − man + woman* famously lands near *queen*. Try "
            "it on a static table. The three words typed are left out of the answers (otherwise "
            "the nearest row is usually *king* itself); where the expected word really ranks is "
            "shown, even when the arithmetic fails."
        )
        table_name = st.selectbox(
            "Table",
            TABLE_OPTIONS,
            key="emb-table",
            format_func=lambda n: (
                "all-MiniLM-L6-v2 (word pieces)" if n == MINILM else ui.model_label(n)
            ),
        )
        columns = st.columns(4)
        a = columns[0].text_input("Start from", "king", key="emb-a")
        b = columns[1].text_input("Minus", "man", key="emb-b")
        c = columns[2].text_input("Plus", "woman", key="emb-c")
        expected = columns[3].text_input("Expected", "queen", key="emb-expected")
        typed = [w.strip() for w in (a, b, c, expected)]
        if not all(typed):
            st.info("Type a word in each of the four boxes.")
        elif any(len(w) > MAX_WORD_CHARS for w in typed):
            st.warning(f"A word here is at most {MAX_WORD_CHARS} characters.")
        else:
            with st.spinner("Searching the table..."), ui.friendly_errors():
                result = analogy(table_name, *typed)
                if result.worked:
                    st.success(
                        f"It works here: the nearest row to {typed[0]} − {typed[1]} + {typed[2]} "
                        f"is {typed[3]!r} (cosine {result.expected_score:.3f}).",
                        icon=":material/check_circle:",
                    )
                elif result.expected_rank is not None:
                    st.warning(
                        f"It fails here: {typed[3]!r} ranks **{result.expected_rank:,}** "
                        f"(cosine {result.expected_score:.3f}); the nearest row is "
                        f"{result.neighbours[0][0]!r}. A language model's table was trained to "
                        "feed the blocks, not for word arithmetic.",
                        icon=":material/close:",
                    )
                else:
                    st.info(f"{typed[3]!r} is one of the three words typed, so it cannot rank.")
                split = [f"{w!r} → {' + '.join(p)}" for w, p in result.pieces.items() if len(p) > 1]
                if split:
                    st.caption(
                        "Split into several tokens (their rows are averaged): " + "; ".join(split)
                    )
                sharing.chart(
                    charts.score_bars(
                        [ui.visible_whitespace(t) for t, _, _ in result.neighbours],
                        [s for _, _, s in result.neighbours],
                        f"Nearest rows to {typed[0]} − {typed[1]} + {typed[2]}",
                        "cosine similarity",
                    ),
                    key="emb-analogy",
                    title="word analogy neighbours",
                )
                nearest = result.neighbours_with_inputs[0][0]
                st.caption(f"Without leaving the typed words out, the nearest row is {nearest!r}.")

with tabs[5]:
    if tabs[5].open:
        st.markdown(
            "The simplest use of embeddings: a few labelled examples per class, one line each "
            "as `label: sentence`. Each class's **centroid** is the average of its examples' "
            "vectors; a new sentence gets the class whose centroid is nearest. Nothing is "
            "trained."
        )
        examples_text = st.text_area(
            "Labelled examples (label: sentence)", EXAMPLES, key="emb-examples", height=170
        )
        new_text = st.text_area(
            "Sentences to classify (one per line)", NEW_SENTENCES, key="emb-new", height=100
        )
        examples, notices = emb.labelled_examples(examples_text)
        notify(notices)
        new = emb.sentence_lines(new_text, MAX_NEW)
        notify(new.notices)
        if not examples:
            st.info('Type at least one labelled example, as "label: sentence".')
        elif not new.sentences:
            st.info("Type a sentence to classify.")
        else:
            with st.spinner("Embedding and classifying..."), ui.friendly_errors():
                if len(examples) == 1:
                    st.info(
                        "Only one class: every sentence gets it. Add examples of a second class "
                        "to see a choice being made."
                    )
                by_label = {k: embedded(tuple(v)).vectors for k, v in examples.items()}
                centroids = emb.class_centroids(by_label)
                vectors = embedded(tuple(new.sentences))
                cut_notice(vectors, new.sentences)
                results = emb.classify(vectors.vectors, centroids, new.sentences)
                frame = pd.DataFrame(
                    {
                        "sentence": [short(r.sentence) for r in results],
                        "class": [r.label for r in results],
                        "cosine": [round(r.score, 4) for r in results],
                        "ahead of the next class by": [round(r.margin, 4) for r in results],
                        **{
                            f"vs {label}": [round(r.scores[label], 4) for r in results]
                            for label in centroids.labels
                        },
                    }
                )
                sharing.table(
                    frame,
                    key="emb-classes",
                    width="stretch",
                    title="nearest centroid classes",
                    hide_index=True,
                )
                st.caption(
                    "Classes and examples: "
                    + "; ".join(
                        f"**{ui.escape(short(label, 40))}** ({count})"
                        for label, count in zip(centroids.labels, centroids.counts, strict=True)
                    )
                    + ". A small lead means the sentence sits between two classes."
                )

SETTINGS.publish()
