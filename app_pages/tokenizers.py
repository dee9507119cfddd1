"""Tokenizers page: real tokenizers side by side, then word, character and BPE built by hand."""

from __future__ import annotations

from itertools import islice

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmlab import assets, charts, exports, tokenization, ui
from llmlab.app import sharing
from llmlab.page_state import Choice, Choices, Flag, Integer, Text
from llmlab.tokenization import bpe
from llmlab.tokenization.samples import (
    CSS,
    EXAMPLES,
    MULTILINGUAL,
    PieceStats,
    byte_pieces,
    piece_stats,
    pieces_html,
    summary_stats,
)

DEFAULT_CHOICE = ["gpt2", "cl100k_base", "llama-spm", "bert-wordpiece"]
CHIPS = 1000  # tokens drawn as chips per tokenizer; the rest are counted
SAMPLE_CHARS = 2000  # replaying merges is pure Python: a longer sample is cut, with a notice
BPE_SAMPLE = "The tokenizer learns its vocabulary from text; unbelievable words split apart."
STATE = st.session_state

# Widget defaults, shared by the widgets and by the page's link settings.
DEFAULT_TEXT = EXAMPLES["English prose"]
DEFAULT_CORPUS = "\n".join(tokenization.DEFAULT_CORPUS)
DEFAULT_WORD_TEXT = "The quick cat predicts tokens!"
SOURCES = ["botchan.txt (a novel, 280 KB)", "My own text"]
DEFAULT_OWN_TRAINING = BPE_SAMPLE * 5
DEFAULT_VOCAB = 1000
# The replay slider runs from 0 to (vocabulary size - 256) merges, so its default ("all of
# them") moves with the vocabulary size. The link keeps the number of merges only when fewer
# than all are replayed; "all" is stored as the largest possible count, which the page reads
# as "every merge there is".
ALL_MERGES = bpe.MAX_VOCAB - bpe.MIN_VOCAB
AVAILABLE = tokenization.list_tokenizers()
DEFAULT_ZOO = [name for name in DEFAULT_CHOICE if name in AVAILABLE]


class MergeCount(Integer):
    """How many merges the BPE tab replays; the largest value means all of them."""

    def describe(self, value: object) -> str:
        return "all merges" if value == self.high else str(value)


# Every input of the page, as it appears in a shared link or a settings file.
SETTINGS = sharing.PageSettings(
    "tokenizers",
    [
        Text("text", "tok-text", DEFAULT_TEXT, max_chars=tokenization.MAX_CHARS),
        Choices("tokenizers", "tok-zoo", DEFAULT_ZOO, options=tuple(AVAILABLE),
                max_items=len(AVAILABLE)),
        Flag("ids", "tok-show-ids", False),
        Text("corpus", "tok-corpus", DEFAULT_CORPUS, max_chars=tokenization.MAX_CHARS),
        Flag("lowercase", "tok-word-lower", True),
        Flag("punctuation", "tok-word-punct", True),
        Text("word_text", "tok-word-in", DEFAULT_WORD_TEXT, max_chars=tokenization.MAX_CHARS),
        Choice("training", "tok-bpe-src", SOURCES[0], options=tuple(SOURCES)),
        Text("training_text", "tok-bpe-own", DEFAULT_OWN_TRAINING,
             max_chars=tokenization.MAX_CHARS),
        Integer("vocab", "tok-bpe-vocab", DEFAULT_VOCAB, low=bpe.MIN_VOCAB, high=bpe.MAX_VOCAB),
        MergeCount("merges", "tok-bpe-merges", ALL_MERGES, low=0, high=ALL_MERGES),
        Text("sample", "tok-bpe-sample", BPE_SAMPLE, max_chars=SAMPLE_CHARS),
    ],
)  # fmt: skip


# Results are cached per (tokenizer, text): a change of the text recomputes each tokenizer once,
# and any other widget (the ids toggle, the BPE tab) reuses them. Only small results (counts and
# one HTML string per tokenizer) go through `cache_data`, which copies what it returns.
@st.cache_data(show_spinner=False, max_entries=256)
def _view(name: str, text: str, show_ids: bool) -> tuple[PieceStats, str]:
    tokenizer = ui.get_tokenizer(name)
    if tokenizer is None:
        return piece_stats(text, []), pieces_html([])
    # Counts over all tokens; chips for the first 1,000 only (built only for those).
    summary = tokenizer.summary(text, limit=CHIPS)
    chips = pieces_html(summary.first, show_ids=show_ids, limit=CHIPS, total=summary.tokens)
    return summary_stats(text, summary), chips


@st.cache_data(show_spinner=False, max_entries=64)
def _tax_counts(name: str) -> dict[str, int]:
    tokenizer = ui.get_tokenizer(name)
    if tokenizer is None:
        return {}
    return {
        language: len(tokenizer.encode(sentence)) for language, sentence in MULTILINGUAL.items()
    }


# Figures are kept as objects (`cache_resource`): Plotly spends tens of milliseconds building
# each one, and `st.plotly_chart` only reads them.
@st.cache_resource(show_spinner=False, max_entries=32)
def _count_figure(titles: tuple[str, ...], counts: tuple[int, ...]) -> go.Figure:
    return charts.token_count_bars(list(titles), list(counts))


@st.cache_resource(show_spinner=False, max_entries=32)
def _tax_figure(names: tuple[str, ...]) -> go.Figure:
    return charts.multilingual_tax_bars(
        {tokenization.ZOO[name].title: _tax_counts(name) for name in names}
    )


@st.cache_resource(show_spinner=False, max_entries=32)
def _length_figure(labels: tuple[str, ...], values: tuple[int, ...]) -> go.Figure:
    return charts.sequence_length_bars(list(labels), list(values))


# The BPE tab is keyed by its training text and vocabulary size (one hash of the text), not by
# the trace: hashing hundreds of merge steps on every rerun would cost more than the cache saves.
@st.cache_resource(show_spinner=False, max_entries=32)
def _merge_figure(training: str, vocab_size: int, steps: int) -> go.Figure:
    return charts.merge_count_line([s.count for s in _train(training, vocab_size)], steps)


@st.cache_data(show_spinner=False, max_entries=64)
def _replay(training: str, vocab_size: int, sample: str, steps: int) -> list[bytes]:
    return bpe.replay(sample, _train(training, vocab_size), steps)


@st.cache_data(show_spinner=False, max_entries=8)
def _merge_table(training: str, vocab_size: int, exact: bool = False) -> pd.DataFrame:
    """The merges learned, in order; `exact` keeps each token's text as it is (for the CSV),
    with bytes that are only part of a character written as \\x escapes."""

    def shown(token: bytes) -> str:
        if exact:
            return token.decode("utf-8", errors="backslashreplace")
        return tokenization.visible(token.decode("utf-8", errors="replace"))

    return pd.DataFrame(
        [
            {
                "merge": s.rank + 1,
                "new id": s.new_id,
                "token": shown(s.token),
                "count": s.count,
            }
            for s in _train(training, vocab_size)
        ]
    )


@st.cache_data(show_spinner=False, max_entries=8)
def _train(text: str, vocab_size: int) -> list[bpe.MergeStep]:
    return bpe.train(text, vocab_size).trace


@st.cache_data(show_spinner=False)
def _botchan() -> str:
    return assets.pack_path("botchan", "botchan.txt").read_text(encoding="utf-8")


def _use_example() -> None:
    STATE["tok-text"] = EXAMPLES[STATE["tok-example"]]


def _tokens_csv(tokenizer: tokenization.Tokenizer, text: str) -> str:
    """Every token of `text` as CSV: its text (bytes in hex for part of a character), id, span.

    Built only when the button is clicked: a long text has tens of thousands of tokens.
    """
    return exports.table_csv(exports.pieces_frame(tokenizer.pieces(text)))


ui.page_intro(
    "Tokenizers",
    "A language model never sees letters. A tokenizer cuts text into pieces (tokens) and gives "
    "each piece a number; the model only ever sees those numbers.",
)
SETTINGS.restore()
st.markdown(CSS, unsafe_allow_html=True)

# --- inputs -----------------------------------------------------------------------------------
# Every input is drawn first (the tabs below too), then the link is updated, then the work is
# done into the places kept for it: a slow first load never holds back the share controls.
STATE.setdefault("tok-text", DEFAULT_TEXT)
STATE.setdefault("tok-zoo", list(DEFAULT_ZOO))
left, right = st.columns([1, 2])
left.selectbox("Ready examples", list(EXAMPLES), key="tok-example", on_change=_use_example)
titles = {name: tokenization.ZOO[name].title for name in AVAILABLE}
chosen = right.multiselect(
    "Tokenizers to compare",
    AVAILABLE,
    format_func=lambda name: titles.get(name, name),
    key="tok-zoo",
    help="Each real model comes with its own tokenizer, learned from its own training text.",
)
# A pack deleted or damaged while the app runs drops its tokenizers: say why, offer to fetch it.
ui.offer_repairs({entry.pack for entry in tokenization.ZOO.values() if entry.pack}, "tok-fetch")
text = st.text_area("Your text", key="tok-text", height=140)
show_ids = st.toggle("Show token ids", key="tok-show-ids")

text_ok = False
if not text:
    st.info("Type or paste some text above (or pick an example) to see how it is tokenized.")
elif len(text) > tokenization.MAX_CHARS:
    st.error(
        f"This text has {len(text):,} characters; the page accepts at most "
        f"{tokenization.MAX_CHARS:,}. Paste a shorter piece."
    )
else:
    text_ok = True
    if tokenization.has_lone_surrogates(text):
        st.warning("The text holds lone surrogates (broken UTF-16); they are shown as �.")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        st.caption("Control characters are shown as symbols such as ␀ and ␇.")

zoo_area = st.container()  # the tokenizers side by side and the multilingual tax, drawn below

st.header("Build your own")
word_tab, char_tab, bpe_tab = st.tabs(["Word-level", "Character-level", "BPE from scratch"])

with word_tab:
    st.caption(
        "One id per word of a corpus. Simple, but any word the corpus never contained has no id: "
        "it becomes `[UNK]` (out of vocabulary), and the vocabulary of a real language is huge."
    )
    corpus = st.text_area("Corpus (one sentence per line)", DEFAULT_CORPUS, key="tok-corpus")
    c1, c2 = st.columns(2)
    lowercase = c1.checkbox("Lowercase", value=True, key="tok-word-lower")
    punctuation = c2.checkbox("Split punctuation", value=True, key="tok-word-punct")
    word_text = st.text_input("Text to encode", DEFAULT_WORD_TEXT, key="tok-word-in")

with bpe_tab:
    st.caption(
        "Byte-pair encoding starts from the 256 bytes and repeatedly glues the most frequent "
        "neighbouring pair into a new token. Frequent words end up as one token; rare ones stay "
        "in pieces, and nothing is ever unknown."
    )
    source = st.radio("Training text", SOURCES, key="tok-bpe-src")
    own_training = (
        st.text_area("Training text", DEFAULT_OWN_TRAINING, key="tok-bpe-own")
        if source == SOURCES[1]
        else None
    )
    vocab_size = st.slider(
        "Vocabulary size",
        bpe.MIN_VOCAB,
        bpe.MAX_VOCAB,
        DEFAULT_VOCAB,
        step=50,
        key="tok-bpe-vocab",
        help="256 single bytes plus one new token per merge.",
    )
    has_training = own_training is None or bool(own_training.strip())
    if has_training:
        planned = vocab_size - bpe.MIN_VOCAB
        if planned:
            steps = st.slider(
                "Replay the first N merges",
                0,
                planned,
                min(STATE.get("tok-bpe-merges", ALL_MERGES), planned),
                key="tok-bpe-step",
                help="Apply only the first N merges the training learned, to watch tokens grow.",
            )
            STATE["tok-bpe-merges"] = ALL_MERGES if steps == planned else steps
        else:  # a slider from 0 to 0 cannot be drawn
            steps = 0
            st.caption(f"{bpe.MIN_VOCAB} tokens are the single bytes: nothing is merged.")
        shown = st.text_input(
            "Sample text", BPE_SAMPLE, key="tok-bpe-sample", max_chars=SAMPLE_CHARS
        )

SETTINGS.publish()

# --- the zoo ----------------------------------------------------------------------------------
with zoo_area:
    counts: dict[str, int] = {}
    if text_ok and not chosen:
        st.info("Choose at least one tokenizer above.")
    views: dict[str, tuple[tokenization.Tokenizer, PieceStats, str]] = {}
    if text_ok and chosen:
        # First all the work (one spinner: a tokenizer loads only the first time it is chosen)...
        with st.spinner(f"Tokenizing with {len(chosen)} tokenizers..."):
            for name in chosen:
                with ui.friendly_errors():
                    tokenizer = ui.get_tokenizer(name)
                    if tokenizer is not None:
                        views[name] = (tokenizer, *_view(name, text, show_ids))
        # ...then the drawing.
        for name, (tokenizer, stats, chips) in views.items():
            counts[name] = stats.tokens
            with ui.friendly_errors(), st.container(border=True):
                st.markdown(f"**{titles[name]}** · {tokenization.ZOO[name].algorithm}")
                a, b, c, d = st.columns(4)
                a.metric("Tokens", f"{stats.tokens:,}")
                b.metric("Characters per token", stats.characters_per_token)
                c.metric("Vocabulary size", f"{tokenizer.vocab_size:,}")
                d.metric("Unknown tokens", stats.unknown)
                st.markdown(chips, unsafe_allow_html=True)
                notes = []
                if stats.fragments:
                    notes.append(f"{stats.fragments} byte fragments (dashed)")
                if tokenizer.lowercases:
                    notes.append("lowercases the text")
                if tokenizer.adds_prefix_space:
                    notes.append("adds a space before the text (▁)")
                special = ", ".join(islice(tokenizer.special_tokens, 4))
                count = len(tokenizer.special_tokens)
                noun = "special token" if count == 1 else "special tokens"
                notes.append(f"{count} {noun} ({'e.g. ' if count > 1 else ''}{special})")
                st.caption(" · ".join(notes))
                sharing.download(
                    "Tokens as CSV",
                    data=lambda tok=tokenizer, t=text: _tokens_csv(tok, t),
                    file_name=f"{exports.file_stem(name)}-tokens.csv",
                    key=f"tok-csv-{name}",
                    help="Every token of the text with its id and its character span "
                    "[start, end), for a spreadsheet or a notebook.",
                )

    with st.expander("Why do `Ġ`, `▁` and `·` appear? Why is an emoji several tokens?"):
        st.markdown(
            "- **Spaces belong to the next word.** GPT-2 style tokenizers store a space as `Ġ` "
            "and SentencePiece ones (Llama, Mistral, Gemma) as `▁`; here every space is drawn as "
            "`·`, a tab as `→` and a newline as `↵`. So ` world` (with its space) is one token.\n"
            "- **Byte fragments.** Byte-level tokenizers work on UTF-8 bytes. 🚀 is 4 bytes "
            "(F0 9F 9A 80); if no token holds all four, the emoji is split into pieces that are "
            "not characters on their own, drawn dashed as `<F0 9F>`.\n"
            "- **Unknown tokens.** BERT's WordPiece has no bytes to fall back on: characters "
            "missing from its vocabulary become `[UNK]` (red), and their meaning is lost."
        )

    if len(counts) > 1:
        order = sorted(counts, key=counts.get)
        sharing.chart(
            _count_figure(tuple(titles[n] for n in order), tuple(counts[n] for n in order)),
            key="tok-compare",
            title="token counts compared",
            width="stretch",
        )

    # --- multilingual tax ---------------------------------------------------------------------
    st.header("The multilingual tax")
    st.caption(
        "The same sentence in several languages. Tokenizers learned mostly from English text "
        "need more tokens for other scripts, so those users pay more and fit less into the "
        "context."
    )
    if chosen:
        with ui.friendly_errors():
            # Only tokenizers that loaded (a failed one was reported above and is left out).
            loaded = tuple(name for name in chosen if ui.get_tokenizer(name) is not None)
            sharing.chart(
                _tax_figure(loaded), key="tok-tax", title="multilingual tax", width="stretch"
            )
        with st.expander("The sentences"):
            sharing.table(
                pd.DataFrame({"language": list(MULTILINGUAL), "sentence": MULTILINGUAL.values()}),
                key="tok-sentences",
                title="multilingual sentences",
                static=True,
                hide_index=True,
            )

# --- build your own ---------------------------------------------------------------------------
with word_tab:
    words = tokenization.WordTokenizer.from_corpus(
        corpus, lowercase=lowercase, split_punctuation=punctuation
    )
    word_pieces = words.pieces(word_text)
    sharing.table(
        pd.DataFrame(
            [{"word": p.text, "id": p.id, "in vocabulary": not p.unknown} for p in word_pieces],
            columns=["word", "id", "in vocabulary"],
        ),
        key="tok-word-table",
        title="word-level tokens",
        hide_index=True,
    )
    oov = words.oov_words(word_text)
    st.caption(f"Vocabulary: {words.vocab_size} entries ([PAD]=0, [UNK]=1).")
    if oov:
        st.warning(f"Out of vocabulary, encoded as [UNK]: {', '.join(oov)}")

with char_tab:
    st.caption(
        "One token per character: no unknown words, but long sequences. ASCII-only vocabularies "
        "lose accents and other scripts; Unicode needs 1.1 million ids; bytes need only 256 ids "
        "but spend up to 4 tokens per character."
    )
    sample = text if text_ok else EXAMPLES["Emoji"]
    lengths = tokenization.sequence_lengths(sample)
    labels = ["ASCII characters", "Unicode code points", "UTF-8 bytes"]
    values = [lengths.ascii, lengths.unicode, lengths.bytes]
    if counts:
        labels.append(f"{titles[chosen[0]]} tokens")
        values.append(counts[chosen[0]])
    sharing.chart(
        _length_figure(tuple(labels), tuple(values)),
        key="tok-char",
        title="sequence length by unit",
        width="stretch",
    )
    st.caption(f"ASCII unknowns ([UNK]) in your text: {lengths.ascii_unknown}")

with bpe_tab:
    training = own_training
    if training is None:  # the Botchan corpus, from its pack
        try:
            training = _botchan()
        except assets.AssetError as error:
            ui.show_error(error)
            ui.offer_fetch("botchan", key="tok-fetch-botchan")
    if training is None:
        pass  # the message above says why and offers the fetch
    elif not has_training:
        st.info("Paste some training text: BPE learns its merges from it.")
    else:
        with ui.friendly_errors():
            with st.spinner(f"Training BPE to {vocab_size:,} tokens..."):
                trace = _train(training, vocab_size)
            if len(trace) < planned:
                st.info(f"Only {len(trace)} merges were possible: the text is fully merged.")
            steps = min(steps, len(trace))
            if len(shown) > SAMPLE_CHARS:
                st.warning(
                    f"The sample has {len(shown):,} characters; only the first "
                    f"{SAMPLE_CHARS:,} are replayed."
                )
                shown = shown[:SAMPLE_CHARS]
            replayed = _replay(training, vocab_size, shown, steps)
            pieces = byte_pieces(replayed)
            st.markdown(f"After **{steps}** merges: **{len(replayed)}** tokens")
            st.markdown(pieces_html(pieces), unsafe_allow_html=True)
            sharing.chart(
                _merge_figure(training, vocab_size, steps),
                key="tok-bpe-counts",
                title=f"bpe merge counts vocabulary {vocab_size}",
                width="stretch",
            )
            sharing.table(
                _merge_table(training, vocab_size),
                csv=_merge_table(training, vocab_size, exact=True),
                key="tok-merge-table",
                title=f"bpe merges vocabulary {vocab_size}",
                hide_index=True,
                height=300,
            )
