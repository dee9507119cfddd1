"""The Architecture page: AppTest over the model and layer selectors, and one browser check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

# The page file is also run on its own below; its folder then comes first on the import path,
# where app_pages/tokenizers.py would stand in for the `tokenizers` package. Import it first.
import tokenizers  # noqa: F401
import transformers.tokenization_utils_base  # noqa: F401
from app_helpers import html_bodies
from app_helpers import page_from_link as open_page_from_link
from streamlit.testing.v1 import AppTest

from llmlab import forward_pass, page_state
from llmlab.app import sharing
from tests.browser_helpers import no_exception, open_page, wait_for_app

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/architecture.py").run()
    return at


def test_gpt2_skeleton_by_default(app):
    assert not app.exception and not app.error
    assert [m.value for m in app.metric] == ["124,439,808"]
    assert any("cannot run a prompt" in w.value for w in app.warning)  # a skeleton has no weights


@pytest.mark.parametrize(
    "size, total", [("gpt2-medium", "354,823,168"), ("gpt2-xl", "1,557,611,200")]
)
def test_other_gpt2_sizes(app, size, total):
    app.selectbox(key="arch-model").set_value(size).run()
    assert not app.exception and [m.value for m in app.metric] == [total]


def test_offline_model_runs_prompt_and_layer_selector(app):
    app.selectbox(key="arch-model").set_value("smollm2-135m-instruct").run()
    assert not app.exception and not app.error
    assert [m.value for m in app.metric] == ["134,515,008"]
    assert app.slider(key="arch-layer").max == 29 and app.slider(key="arch-head").max == 8
    assert any("30 blocks" in m.value for m in app.markdown)  # the path from ids to logits
    app.slider(key="arch-layer").set_value(5)
    app.slider(key="arch-head").set_value(2).run()  # both changes in one rerun
    assert not app.exception and not app.error
    assert (app.session_state["arch-layer"], app.session_state["arch-head"]) == (5, 2)


def test_bad_input_keeps_the_page_working(app):
    app.text_area(key="arch-prompt").set_value("").run()
    assert any("Type a prompt" in i.value for i in app.info)
    app.text_area(key="arch-prompt").set_value("word " * 200).run()
    assert any("only the first 128 are used" in w.value for w in app.warning)
    assert not app.exception and not app.error
    assert app.session_state["arch-layer"] == 5  # nothing lost


def test_static_against_contextual_moved_to_the_embeddings_page(app):
    """The tab now lives on the Embeddings page; Architecture links to it."""
    assert "Embeddings" not in app.session_state["_saved-architecture"].get("arch-tab", "")
    links = app.get("page_link")
    assert [link.proto.page for link in links] == ["embeddings"], links
    assert "Embeddings page" in links[0].proto.label
    app.switch_page("app_pages/embeddings.py").run()
    app.session_state["emb-tab"] = "Static vs contextual"
    app.run()
    assert not app.exception and not app.error
    assert any("s1" in c.value and "bank" in c.value for c in app.caption)
    app.switch_page("app_pages/architecture.py").run()


@pytest.mark.browser
def test_browser_shows_the_gpt2_total(page, app_url, screenshots_dir):
    open_page(page, app_url, "architecture")
    page.get_by_text("124,439,808").first.wait_for()
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "architecture-gpt2-total.png"), full_page=True)


# --- the page's inputs in the link ----------------------------------------------------------

# A link with a value other than the default for every input of the page.
LINK = {
    "model": MODEL,
    "tab": "Run a prompt",
    "prompt": "The <b>dog</b> barked at the",
    "layer": "5",
    "head": "2",
    "w11": "3.0",
    "b2": "-2.5",
    "x3": "0.5",
}
RAW_HTML = re.compile(r"<script|<img\s+src=x", re.IGNORECASE)


def page_from_link(params: dict[str, str | list[str]], runs: int = 1) -> AppTest:
    return open_page_from_link("architecture", params, runs=runs, timeout=300)


@pytest.fixture(scope="module")
def linked():
    return page_from_link(LINK)


def test_a_link_reproduces_every_input(linked):
    at = linked
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="arch-model").value == MODEL
    assert at.session_state["arch-tab"] == "Run a prompt"
    assert at.text_area(key="arch-prompt").value == LINK["prompt"]
    assert (at.slider(key="arch-layer").value, at.slider(key="arch-head").value) == (5, 2)
    # The toy layer computes with the numbers from the link (w11, b2 and x3 changed).
    expected = forward_pass.linear_layer([[3.0, -1.0, 0.0], [0.5, 2.0, 1.0]], [2.0, 1.0, 0.5],
                                         [0.5, -2.5])  # fmt: skip
    assert expected.outputs == [5.5, 1.0]
    assert at.main.get("code")[-1].value == "\n".join(expected.steps)
    # The attention chart is the one the link names.
    layouts = [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]
    titles = [layout.get("title", {}).get("text", "") for layout in layouts]
    assert any(t.startswith("Layer 5 (") and t.endswith("head 2") for t in titles), titles
    assert dict(at.query_params) == LINK  # the address bar holds the same link


def test_the_sidebar_offers_the_link_settings_and_a_download_per_chart_and_table(linked):
    at = linked
    sidebar = at.sidebar
    assert "**Share and save**" in [m.value for m in sidebar.markdown]
    link = [c.value for c in sidebar.get("code")]
    assert len(link) == 1 and "layer=5" in link[0] and "model=smollm2-135m-instruct" in link[0]
    assert [b.label for b in sidebar.get("download_button")] == ["Download settings"]
    assert len(sidebar.get("file_uploader")) == 1
    labels = [b.label for b in at.main.get("download_button")]
    # Treemap, memory, forward-pass spread and attention.
    assert labels.count("Chart as HTML") == len(at.get("plotly_chart")) == 4
    # Config, parameter breakdown, architectures compared and the forward-pass table.
    assert labels.count("Table as CSV") == 4
    keys = {b.id.rsplit("-", 1)[0].split("arch-", 1)[-1] for b in at.main.get("download_button")}
    assert keys == {"treemap", "memory", "flow", "attention", "config", "breakdown", "compare",
                    "trace"}  # fmt: skip


def test_a_settings_file_gives_back_the_same_inputs(monkeypatch):
    # The page's own field list, caught as the page hands it to the sharing bridge.
    seen: list[sharing.PageSettings] = []
    publish = sharing.PageSettings.publish

    def spy(self, *args, **kwargs):
        seen.append(self)
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(sharing.PageSettings, "publish", spy)
    at = page_from_link(LINK, runs=2)
    fields, values = seen[-1].fields, at.session_state["_saved-architecture"]
    assert {f.name for f in fields} >= set(LINK)
    document = page_state.settings_document("architecture", fields, values)
    settings = json.loads(document)["settings"]
    assert (
        settings["layer"] == 5 and settings["w11"] == 3.0 and settings["prompt"] == LINK["prompt"]
    )
    assert settings["w12"] == -1.0  # defaults are in the file too
    read = page_state.read_settings_document("architecture", fields, document)
    assert read.notices == [] and read.values == values
    other = page_state.read_settings_document("decoding", fields, document)
    assert other.values == {} and "architecture" in other.notices[0]
    assert not at.exception


def test_a_fresh_page_puts_only_the_model_in_the_link():
    # Any other parameter here means a field's default differs from its widget's default. The
    # second run sees every widget of a real model (the first draws them after the link is set).
    at = page_from_link({"model": MODEL}, runs=2)
    assert not at.exception and not at.warning
    assert dict(at.query_params) == {"model": MODEL}
    skeleton = page_from_link({}, runs=2)
    assert dict(skeleton.query_params) == {"model": "gpt2-small"}


def test_hostile_link_values_fall_back_to_defaults_with_a_notice():
    at = page_from_link(
        {
            "model": "<script>alert(1)</script>",
            "tab": "<img src=x onerror=alert(1)>",
            "layer": "nan",
            "head": "-3",
            "w11": "1e9",
            "x1": "inf",
            "b1": "NaN",
            "prompt": "x" * 100_000,
            "totally_unknown": "1",
        }
    )
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    for setting in ("model", "tab", "layer", "head", "w11", "x1", "b1", "prompt"):
        assert f"**{setting}** in the link" in notices, setting
    assert "1 setting in the link is not used by this page" in notices
    assert "<script" not in notices and "xxxx" not in notices  # values are never repeated
    assert at.selectbox(key="arch-model").value == "gpt2-small"
    assert at.session_state["arch-tab"] == "Parts and parameters"
    assert at.session_state["arch-w11"] == 1.0 and at.session_state["arch-x1"] == 2.0
    for body in html_bodies(at):
        assert RAW_HTML.search(body) is None, body[:200]
    assert dict(at.query_params) == {"model": "gpt2-small"}
    # Text is text: with a real model, the script tag stays plain words in the prompt box.
    at = page_from_link({"model": MODEL, "prompt": "<script>alert(1)</script><b>x"})
    assert not at.exception
    assert at.text_area(key="arch-prompt").value == "<script>alert(1)</script><b>x"
    for body in html_bodies(at):
        assert RAW_HTML.search(body) is None and "<b>x" not in body


def test_a_megabyte_link_opens_the_page_with_defaults_and_a_notice():
    at = page_from_link({"model": MODEL, "prompt": "x" * 1_000_000})
    assert not at.exception and not at.error
    assert any("too long" in w.value for w in at.warning)
    assert at.selectbox(key="arch-model").value == "gpt2-small"


def test_a_block_or_head_the_model_lacks_falls_back_with_a_notice():
    at = page_from_link({"model": "gemma-3-270m", "layer": "20", "head": "3"})
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    assert any("**layer** 20" in n and "18 blocks" in n for n in notices), notices
    assert at.slider(key="arch-layer").value == 0 and at.slider(key="arch-head").value == 3
    assert "layer" not in at.query_params and at.query_params["head"] == "3"


def test_inputs_follow_the_widgets_and_survive_leaving_the_page():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/architecture.py").run()
    at.selectbox(key="arch-model").set_value(MODEL).run()
    at.slider(key="arch-layer").set_value(7)
    at.slider(key="arch-head").set_value(4).run()
    assert not at.exception and not at.error
    assert at.query_params["layer"] == "7"
    # Emptying the prompt hides the layer and head sliders; typing again finds them as they were.
    at.text_area(key="arch-prompt").set_value("").run()
    at.text_area(key="arch-prompt").set_value("One two three four").run()
    assert (at.slider(key="arch-layer").value, at.slider(key="arch-head").value) == (7, 4)
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/architecture.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="arch-model").value == MODEL
    assert at.text_area(key="arch-prompt").value == "One two three four"
    assert (at.slider(key="arch-layer").value, at.slider(key="arch-head").value) == (7, 4)
    assert dict(at.query_params) == {
        "model": MODEL, "prompt": "One two three four", "layer": "7", "head": "4"
    }  # fmt: skip


@pytest.mark.browser
def test_browser_opens_a_shared_link_on_its_tab(page, app_url, screenshots_dir):
    open_page(page, app_url, f"architecture?model={MODEL}&tab=Run+a+prompt&layer=5&head=2")
    page.get_by_text("Layer 5 (").first.wait_for(timeout=240_000)  # the attention chart's title
    no_exception(page)
    selected = page.get_by_role("tab", selected=True)
    assert selected.inner_text().strip() == "Run a prompt"
    link = {"model": [MODEL], "tab": ["Run a prompt"], "layer": ["5"], "head": ["2"]}
    assert parse_qs(urlparse(page.url).query) == link
    page.screenshot(path=str(screenshots_dir / "architecture-link.png"), full_page=True)
    page.get_by_role("tab", name="A linear layer").click()
    page.wait_for_function("() => location.search.includes('linear')", timeout=60_000)
    assert parse_qs(urlparse(page.url).query) == {**link, "tab": ["A linear layer"]}


@pytest.mark.browser
def test_browser_an_edited_weight_goes_into_the_result_and_the_link(page, app_url):
    open_page(page, app_url, "architecture?tab=A+linear+layer")
    page.get_by_text("y0 = 1·2 + -1·1 + 0·3 + 0.5 = 1.5").wait_for(timeout=120_000)
    for value, line in (("4", "y0 = 4·2 + -1·1 + 0·3 + 0.5 = 7.5"),
                        ("-2", "y0 = -2·2 + -1·1 + 0·3 + 0.5 = -4.5")):  # fmt: skip
        wait_for_app(page)
        # The weights grid is the first grid of the open tab; the inputs grid comes after it.
        panel = page.get_by_role("tabpanel").filter(visible=True)
        grid = panel.locator("[data-testid='stDataFrame']").first
        grid.locator("canvas").first.wait_for()
        width = grid.bounding_box()["width"]
        # Row 0, column x1: the grid draws a 35 px header, 35 px rows and a narrow index column.
        # A click through the locator is placed where the grid is when it happens (and only
        # when the grid is the element under the pointer), so a page that is still settling
        # cannot send the click into the grid below.
        grid.dblclick(position={"x": width * 0.25, "y": 35 + 17})
        cell = page.locator(".gdg-input")  # the grid's cell editor
        cell.wait_for(timeout=30_000)
        cell.fill(value)
        page.keyboard.press("Enter")
        page.get_by_text(line).wait_for(timeout=60_000)
        no_exception(page)
        assert parse_qs(urlparse(page.url).query)["w11"] == [f"{float(value)}"]


def test_run_a_prompt_switches_a_part_off(smollm2):
    from llmlab.generation import knockouts

    link = {"model": MODEL, "tab": "Run a prompt", "knock_out": "attention", "ko_layer": "2"}
    at = page_from_link(link)
    assert not at.exception and not at.error and not at.warning
    prompt = at.text_area(key="arch-prompt").value
    effect = knockouts.knock_out_effect(smollm2, prompt, [("attention", 2)], 10, 128)
    kl = next(m for m in at.metric if m.label == "KL divergence")
    assert kl.value == f"{effect.kl_bits:.3f} bits"
    assert dict(at.query_params) == link
    at.selectbox(key="arch-ko-part").set_value("head").run()
    at.number_input(key="arch-ko-head").set_value(8).run()
    effect = knockouts.knock_out_effect(smollm2, prompt, [("head", 2, 8)], 10, 128)
    kl = next(m for m in at.metric if m.label == "KL divergence")
    assert kl.value == f"{effect.kl_bits:.3f} bits"
    assert at.query_params["ko_head"] == "8"
    at.button(key="arch-ko-sweep").click().run()
    assert not at.exception and not at.error
    sweep = knockouts.head_sweep(smollm2, prompt, 128)
    heads = next(t.value for t in at.dataframe if "KL (bits)" in t.value.columns)
    assert heads["KL (bits)"].tolist() == pytest.approx([kl for _, _, kl in sweep.ranked(10)])
