"""Sentence embeddings against sentence-transformers, PCA against numpy's SVD, search against
exact cosine, and the helpers of the Embeddings page on awkward input."""

from __future__ import annotations

import numpy as np
import pytest
from numerics import float32_cosine_tolerance

import llmlab
from llmlab import assets
from llmlab import embeddings as emb
from llmlab.embeddings import sentences

# Varied sentences: plain, emoji, Korean, code, punctuation only, "empty-ish" ones, and one far
# over the model's 256 tokens.
AWKWARD = [
    "The cat sat on the mat.",
    "I opened an account at the bank.",
    "The river bank was muddy after the rain.",
    "😀🎉🚀",
    "안녕하세요, 만나서 반갑습니다.",
    "def add(a, b):\n    return a + b",
    "?!…",
    "",
    " ",
    "\n\t",
    "a",
    "Ünïcödé àccents, ÇA VA?",
    "word " * 400,
]


@pytest.fixture(scope="module")
def encoder() -> sentences.SentenceEncoder:
    return sentences.load_encoder()


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' all-MiniLM-L6-v2 recipe, built from its parts on the same pack."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    folder = str(assets.pack_dir(sentences.PACK))
    transformer = Transformer(
        folder, max_seq_length=256, model_kwargs={"use_safetensors": True, "local_files_only": True}
    )
    return SentenceTransformer(
        modules=[transformer, Pooling(384, "mean"), Normalize()], device="cpu"
    )


def test_sentence_vectors_equal_the_sentence_transformers_recipe(encoder, reference):
    ours = llmlab.sentence_embeddings(AWKWARD, encoder)
    theirs = reference.encode(AWKWARD, convert_to_numpy=True, batch_size=4)
    assert ours.shape == theirs.shape == (len(AWKWARD), 384)
    cosines = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= 0.99999, dict(zip(AWKWARD, cosines.round(7), strict=True))
    # float32 vectors of 384 numbers divided by their length, measured again in float32.
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=float32_cosine_tolerance(384))


def test_batch_size_and_order_do_not_change_a_vector(encoder):
    alone = np.stack([emb.sentence_embeddings([text], encoder)[0] for text in AWKWARD[:6]])
    together = emb.encode_sentences(AWKWARD[:6], encoder, batch_size=2).vectors
    assert np.allclose(alone, together, atol=1e-5)


def test_the_steps_end_in_the_sentence_vector(encoder):
    text = "Embeddings turn text into numbers."
    steps = emb.embedding_steps(text, encoder)
    assert steps.tokens[0] == "[CLS]" and steps.tokens[-1] == "[SEP]"
    assert steps.token_vectors.shape == (len(steps.tokens), 384)
    assert np.allclose(steps.pooled, steps.token_vectors.mean(0))
    assert steps.pooled_length == pytest.approx(float(np.linalg.norm(steps.pooled)))
    assert np.allclose(steps.vector, emb.sentence_embeddings([text], encoder)[0], atol=1e-5)
    assert not steps.cut


def test_a_megabyte_sentence_is_cut_at_256_tokens(encoder, reference):
    text = ("lorem ipsum " * 90_000)[:1_000_000]
    embedded = emb.encode_sentences(["short one", text], encoder)
    assert embedded.cut == [1] and embedded.token_counts == [4, 256]
    steps = emb.embedding_steps(text, encoder)
    assert steps.cut and len(steps.tokens) == 256 and steps.tokens[-1] == "[SEP]"
    theirs = reference.encode([text], convert_to_numpy=True)[0]
    assert float(embedded.vectors[1] @ theirs) >= 0.99999


def test_empty_list_single_sentence_and_duplicates(encoder):
    assert emb.sentence_embeddings([], encoder).shape == (0, 384)
    one = emb.sentence_embeddings(["Only one"], encoder)
    assert one.shape == (1, 384)
    twice = emb.sentence_embeddings(["Same", "Same"], encoder)
    assert float(twice[0] @ twice[1]) == pytest.approx(1.0, abs=1e-6)
    assert emb.cosine_matrix(one).tolist() == [[pytest.approx(1.0)]]


@pytest.mark.parametrize("bad", ["one string", ["ok", 3], ["x\ud800y"]], ids=repr)
def test_bad_texts_are_refused_by_name(encoder, bad):
    with pytest.raises(ValueError, match="texts"):
        emb.sentence_embeddings(bad, encoder)


def test_meaning_not_words(encoder):
    """A paraphrase sharing no content word scores far above a sentence sharing one."""
    vectors = emb.sentence_embeddings(
        ["How do I save money?", "What is the best way to put cash aside?",
         "Save the file before you close it."], encoder
    )  # fmt: skip
    similarity = emb.cosine_matrix(vectors)
    assert similarity[0, 1] > similarity[0, 2] + 0.2


# --- lists of sentences ---------------------------------------------------------------------


def test_ten_thousand_sentences_are_capped_with_a_notice():
    text = "\n".join(f"Sentence {i}" for i in range(10_000))
    lines = emb.sentence_lines(text, limit=1_000)
    assert len(lines.sentences) == 1_000 and lines.given == 10_000
    assert lines.notices == [
        "10,000 sentences were given; only the first 1,000 are used (the limit here)."
    ]


@pytest.mark.parametrize("text", ["", " \n\t\n", "\n\n\n"], ids=repr)
def test_blank_text_gives_no_sentence(text):
    assert emb.sentence_lines(text, limit=10).sentences == []


def test_duplicates_are_named_or_dropped():
    lines = emb.sentence_lines("a\nb\na\na", limit=10)
    assert lines.sentences == ["a", "b", "a", "a"] and lines.duplicates == [(0, 2), (0, 3)]
    dropped = emb.sentence_lines("a\nb\na\na", limit=10, drop_duplicates=True)
    assert (
        dropped.sentences == ["a", "b"]
        and "2 repeated sentences were left out" in (dropped.notices[0])
    )


# --- PCA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 384), (50, 8), (2, 3), (3, 1)])
def test_pca_equals_numpy_svd_of_the_centred_vectors(shape):
    rng = np.random.default_rng(sum(shape))
    vectors = rng.normal(size=shape) * np.linspace(3, 1, shape[1])
    coordinates, explained = emb.pca_2d(vectors)
    centred = vectors - vectors.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    expected = u[:, :k] * s[:k]
    for column in range(k):  # a direction's sign is a convention: compare up to sign
        ours, theirs = coordinates[:, column], expected[:, column]
        sign = 1.0 if ours @ theirs >= 0 else -1.0
        assert np.allclose(ours, sign * theirs, atol=1e-8), column
    assert np.allclose(explained[:k], s[:k] ** 2 / (s**2).sum())
    if k < 2:
        assert np.allclose(coordinates[:, 1], 0.0) and explained[1] == 0.0


def test_pca_of_sentence_vectors_matches_svd(encoder):
    corpus = emb.lab_corpus()
    vectors = emb.sentence_embeddings(corpus.sentences[::5], encoder)
    coordinates, explained = emb.pca_2d(vectors)
    centred = vectors.astype(np.float64) - vectors.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.abs(coordinates), np.abs(u[:, :2] * s[:2]), atol=1e-6)
    assert np.allclose(explained, s[:2] ** 2 / (s**2).sum())


def test_pca_refuses_one_row_and_survives_identical_rows():
    with pytest.raises(ValueError, match="at least two rows"):
        emb.pca_2d(np.ones((1, 4)))
    coordinates, explained = emb.pca_2d(np.ones((3, 4)))
    assert np.allclose(coordinates, 0.0) and explained.tolist() == [0.0, 0.0]


def test_the_map_of_the_corpus_colours_by_topic(encoder):
    corpus = emb.lab_corpus()
    texts = corpus.sentences[:40] + ["banana"]
    vectors = emb.sentence_embeddings(texts, encoder)
    points, explained = emb.text_map(
        vectors, texts, corpus.topics[:40] + ["word"], ["sentence"] * 40 + ["word"]
    )
    assert [p.group for p in points[:40]] == corpus.topics[:40] and points[-1].kind == "word"
    assert 0 < explained.sum() <= 1
    with pytest.raises(ValueError, match="at least three"):
        emb.text_map(vectors[:2], texts[:2], ["a", "b"], ["word", "word"])


# --- search ---------------------------------------------------------------------------------


def test_search_results_are_ordered_by_exact_cosine(encoder):
    corpus = emb.lab_corpus()
    vectors = emb.sentence_embeddings(corpus.sentences, encoder)
    query = emb.sentence_embeddings(["I need to fix my slow laptop"], encoder)[0]
    hits = emb.semantic_search(query, vectors, corpus, top=len(corpus))
    q = query.astype(np.float64)
    exact = [
        float(np.dot(v, q) / np.linalg.norm(v) / np.linalg.norm(q))
        for v in vectors.astype(np.float64)
    ]
    expected = sorted(range(len(corpus)), key=lambda i: (-exact[i], i))
    assert [hit.index for hit in hits] == expected
    assert [hit.score for hit in hits] == pytest.approx([exact[i] for i in expected], abs=1e-12)
    assert [hit.rank for hit in hits] == list(range(1, len(corpus) + 1))
    assert hits[0].topic == "computers"


def test_search_ties_keep_corpus_order_and_top_is_checked():
    corpus = emb.Corpus(["a", "b", "c"], ["t", "t", "t"])
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert [h.index for h in emb.semantic_search(np.array([1.0, 0.0]), vectors, corpus, 2)] == [
        1,
        2,
    ]
    with pytest.raises(ValueError, match="top"):
        emb.semantic_search(np.array([1.0, 0.0]), vectors, corpus, 0)
    assert emb.semantic_search(np.zeros(2), np.zeros((0, 2)), emb.Corpus([], []), 3) == []


def test_keyword_search_counts_shared_words():
    corpus = emb.lab_corpus()
    hits = emb.keyword_search("Which bank has the best interest rates?", corpus, top=3)
    assert hits[0].sentence == "The bank raised its interest rates again."
    assert hits[0].matched == ("bank", "interest", "rates") and hits[0].score == 3
    assert emb.keyword_search("How do I put money aside?", corpus, top=50)  # "money" is a word
    assert emb.keyword_search("the of and", corpus) == []  # stopwords only: nothing to match


def test_pasted_corpus_takes_topics_and_drops_repeats():
    text = "food\tSoup\nSoup\n\nfood\tBread\n" + "".join(f"line {i}\n" for i in range(5))
    corpus, notices = emb.pasted_corpus(text, limit=3)
    assert corpus.sentences == ["Soup", "Bread", "line 0"]
    assert corpus.topics == ["food", "food", "my sentences"]
    assert notices == [
        "1 repeated sentence was left out: each sentence is used once.",
        "7 sentences were given; only the first 3 are used (the limit here).",
    ]


# --- classification -------------------------------------------------------------------------


def test_nearest_centroid_equals_a_direct_computation(encoder):
    examples, notices = emb.labelled_examples(
        "weather: It is raining hard\nweather: A sunny, warm day\n"
        "food: I baked fresh bread\nfood: The soup is too salty\nno label here"
    )
    assert list(examples) == ["weather", "food"] and len(notices) == 1
    by_label = {k: emb.sentence_embeddings(v, encoder) for k, v in examples.items()}
    centroids = emb.class_centroids(by_label)
    new = ["Snow is expected tonight", "Pasta with tomato sauce"]
    vectors = emb.sentence_embeddings(new, encoder)
    results = emb.classify(vectors, centroids, new)
    assert [r.label for r in results] == ["weather", "food"]
    for result, vector in zip(results, vectors.astype(np.float64), strict=True):
        for label, rows in by_label.items():
            mean = rows.astype(np.float64).mean(0)
            expected = float(vector @ mean / np.linalg.norm(mean) / np.linalg.norm(vector))
            assert result.scores[label] == pytest.approx(expected, abs=1e-9)
        assert result.margin == pytest.approx(abs(np.subtract(*result.scores.values())))


def test_labelled_examples_refuse_clearly():
    assert emb.labelled_examples("") == ({}, [])
    _, notices = emb.labelled_examples(":no label\nlabel:\n" + "x" * 50 + ": long label")
    assert len(notices) == 3
    with pytest.raises(ValueError, match="at least one labelled example"):
        emb.class_centroids({})


# --- word analogy -----------------------------------------------------------------------------


def minilm_table(encoder) -> emb.StaticTable:
    return emb.StaticTable(
        "MiniLM",
        encoder.word_table(),
        lambda word: encoder.tokenizer.encode(word, add_special_tokens=False).ids,
        encoder.token_text,
    )


def test_analogy_ranks_agree_with_a_brute_force_search(encoder):
    table = minilm_table(encoder)
    result = emb.word_analogy(table, "king", "man", "woman", "queen")
    rows = table.rows.astype(np.float64)
    ids = {w: table.token_ids(w) for w in ("king", "man", "woman", "queen")}
    assert all(len(v) == 1 for v in ids.values())  # whole words in BERT's vocabulary
    target = rows[ids["king"][0]] - rows[ids["man"][0]] + rows[ids["woman"][0]]
    scores = rows @ target / np.linalg.norm(rows, axis=1) / np.linalg.norm(target)
    scores[[ids[w][0] for w in ("king", "man", "woman")]] = -2
    order = np.argsort(-scores, kind="stable")
    assert [i for _, i, _ in result.neighbours] == order[:10].tolist()
    assert result.expected_rank == int(np.where(order == ids["queen"][0])[0][0]) + 1
    # A float32 cosine of 384 numbers against float64 (numerics.float32_cosine_tolerance).
    tolerance = float32_cosine_tolerance(rows.shape[1])
    assert result.expected_score == pytest.approx(scores[ids["queen"][0]], abs=tolerance)
    assert result.worked == (result.expected_rank == 1)
    # With nothing left out, one of the three typed words is usually the nearest token.
    assert result.neighbours_with_inputs[0][1] in {i for v in ids.values() for i in v} | set(
        order[:1].tolist()
    )


def test_analogy_refuses_an_empty_word(encoder):
    with pytest.raises(ValueError, match="word"):
        emb.word_analogy(minilm_table(encoder), "king", " ", "woman", "queen")


def test_old_public_names_still_work():
    assert llmlab.embedding_contrast is emb.embedding_contrast
    assert llmlab.sentence_embeddings is emb.sentence_embeddings
    from llmlab.embeddings import contains_word, cosine_matrix, embedding_projection, pca_2d

    assert contains_word("a river bank", "bank") and callable(embedding_projection)
    assert cosine_matrix(np.eye(2)).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert pca_2d(np.eye(3))[0].shape == (3, 2)


def test_the_corpus_file_is_package_data():
    """A built package carries the corpus: pyproject's package-data globs match the file."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = settings["package-data"]["llmlab"]
    package = root / "llmlab"
    matched = {path for pattern in globs for path in package.glob(pattern)}
    assert package / "data" / "corpus.tsv" in matched and package / "assets.toml" in matched
