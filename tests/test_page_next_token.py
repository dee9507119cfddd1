"""The Next-Token page: AppTest over prompt and sliders, and one real-browser check."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

# A page run on its own puts its folder first on sys.path, and app_pages/ holds a
# tokenizers.py: import the Hugging Face package first so transformers finds the real one.
import tokenizers  # noqa: F401
from app_helpers import html_bodies, page_from_link
from streamlit.testing.v1 import AppTest

from llmlab import exports, page_state, ui
from llmlab.generation import next_token as nt
from tests.browser_helpers import no_exception, open_page, wait_for_app

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGE = str(ROOT / "app_pages/next_token.py")
MODEL = "smollm2-135m-instruct"
DEFAULT_MODEL = ui.picker_options()[0]


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("app_pages/next_token.py").run()
    assert not at.exception
    return at


def test_sliders_rerender_without_a_forward_pass(app):
    before = nt.forward_passes()
    for key, value in [
        ("nt-temperature", 0.4),
        ("nt-top-k", 20),
        ("nt-top-p", 0.8),
        ("nt-min-p", 0.1),
        ("nt-penalty", 1.3),
        ("nt-temperature", 0.0),
    ]:
        app.slider(key=key).set_value(value).run()
        assert not app.exception and not app.error, key
    assert nt.forward_passes() == before
    assert any("Tokens still possible" in m.label for m in app.metric)


def test_prompt_edit_append_and_empty_prompt(app):
    app.text_area(key="nt-prompt").set_value("Hello my name").run()
    assert not app.exception
    app.button(key="nt-append").click().run()
    assert not app.exception
    assert app.text_area(key="nt-prompt").value.startswith("Hello my name")
    assert len(app.text_area(key="nt-prompt").value) > len("Hello my name")
    app.text_area(key="nt-prompt").set_value("").run()
    assert not app.exception and any("Type a prompt" in i.value for i in app.info)
    app.text_area(key="nt-prompt").set_value("The capital of France is").run()
    app.toggle(key="nt-guess-mode").set_value(True).run()
    assert not app.exception and app.session_state["nt-prompt"] == "The capital of France is"


# --- links, settings files and downloads ------------------------------------------------------

# A link with a value other than the default for every input the page shows at once.
LINK = {
    "prompt": "Hello my name",
    "model": MODEL,
    "temperature": "0.35",
    "top_k": "12",
    "top_p": "0.75",
    "min_p": "0.05",
    "repetition_penalty": "1.3",
    "shown": "30",
    "candidate": "3",
    "seed": "17",
}
WIDGETS = {  # link name -> (widget kind, key, value the widget must show)
    "prompt": ("text_area", "nt-prompt", "Hello my name"),
    "model": ("selectbox", "nt-model", MODEL),
    "temperature": ("slider", "nt-temperature", 0.35),
    "top_k": ("slider", "nt-top-k", 12),
    "top_p": ("slider", "nt-top-p", 0.75),
    "min_p": ("slider", "nt-min-p", 0.05),
    "repetition_penalty": ("slider", "nt-penalty", 1.3),
    "shown": ("slider", "nt-shown", 30),
    "candidate": ("selectbox", "nt-pick", 3),
    "seed": ("number_input", "nt-seed", 17),
}
RAW_HTML = re.compile(r"<script|<img\s", re.IGNORECASE)


def open_link(params: dict[str, str]) -> AppTest:
    """The page opened from a link carrying `params` (the first page of a new session)."""
    return page_from_link("next_token", params, timeout=180)


def test_a_link_sets_every_input_and_stays_in_the_address_bar():
    at = open_link(LINK)
    assert not at.exception and not at.error and not at.warning
    for name, (kind, key, value) in WIDGETS.items():
        assert getattr(at, kind)(key=key).value == value, name
    assert at.query_params == LINK
    assert any(m.label == "Tokens still possible" and int(m.value) <= 12 for m in at.metric)


def test_the_seed_in_a_link_draws_the_same_token(smollm2):
    at = open_link(LINK)
    at.button(key="nt-sample").click().run()
    distribution = nt.next_token_distribution(smollm2, LINK["prompt"])
    flow = nt.waterfall(
        distribution.logits, temperature=0.35, top_k=12, top_p=0.75, min_p=0.05,
        repetition_penalty=1.3, input_ids=distribution.prompt_ids,
    )  # fmt: skip
    drawn = nt.sample_token(flow.final_probabilities(), 17)
    assert at.text_area(key="nt-prompt").value == nt.append_token(smollm2, LINK["prompt"], drawn)


def test_a_fresh_page_links_only_the_model():
    """Every other input is at its default: a field default unlike its widget's shows here."""
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception and not at.error
    assert at.query_params == {"model": DEFAULT_MODEL}


def test_hostile_link_values_fall_back_with_a_notice():
    at = open_link(
        {
            "prompt": "p" * 30_000,
            "model": "<script>alert(1)</script>",
            "hub_id": "y" * 1_000,
            "temperature": "nan",
            "top_k": "9999",
            "top_p": "-1",
            "min_p": "1e309",
            "repetition_penalty": "<b>1</b>",
            "shown": "7",
            "candidate": "0",
            "guess_first": "maybe",
            "guess": "g" * 101,
            "debug": "1",
        }
    )
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    for name in (
        "prompt", "model", "hub_id", "temperature", "top_k", "top_p", "min_p",
        "repetition_penalty", "shown", "candidate", "guess_first", "guess",
    ):  # fmt: skip
        assert f"**{name}** in the link" in warnings, name
    assert "1 setting in the link is not used" in warnings
    assert "<script" not in warnings and "ppppp" not in warnings  # values are never repeated
    for body in html_bodies(at):
        assert not RAW_HTML.search(body)
    assert at.text_area(key="nt-prompt").value == "The capital of France is"
    assert at.selectbox(key="nt-model").value == DEFAULT_MODEL
    assert at.slider(key="nt-temperature").value == 0.8
    assert at.slider(key="nt-shown").value == 20
    assert at.query_params == {"model": DEFAULT_MODEL}  # nothing refused is passed on


def test_a_one_megabyte_link_opens_the_defaults_with_a_notice():
    at = open_link({"model": MODEL, "prompt": "p" * 1_000_000})
    assert not at.exception and not at.error
    assert any("too long for the app to read" in w.value for w in at.warning)
    assert at.text_area(key="nt-prompt").value == "The capital of France is"
    assert at.query_params == {"model": DEFAULT_MODEL}


def test_markup_in_a_linked_prompt_stays_plain_text():
    text = "<script>alert(1)</script> <img src=x onerror=alert(1)> is"
    at = open_link({"model": MODEL, "prompt": text})
    assert not at.exception and not at.error
    assert at.text_area(key="nt-prompt").value == text
    assert at.query_params == {"model": MODEL, "prompt": text}
    bodies = html_bodies(at)
    assert any("&lt;" in body for body in bodies)  # the surprisal chips, escaped
    for body in bodies:
        assert not RAW_HTML.search(body)


def test_a_linked_guess_waits_behind_the_form(smollm2):
    at = open_link({"model": MODEL, "guess_first": "1", "guess": "Paris"})
    assert not at.exception and not at.error
    assert at.toggle(key="nt-guess-mode").value is True
    assert at.text_input(key="nt-guess").value == "Paris"
    assert not at.get("plotly_chart")  # the answer stays hidden until Reveal
    assert at.query_params == {"model": MODEL, "guess_first": "1", "guess": "Paris"}
    next(b for b in at.button if b.label == "Reveal").click().run()
    assert not at.exception and not at.error
    probabilities = nt.next_token_distribution(smollm2, "The capital of France is").probabilities
    expected = nt.guess(smollm2, probabilities, "Paris")
    assert f"rank **{expected.rank:,}**" in at.success[0].value


def test_long_prompt_is_refused_before_tokenizing(monkeypatch):
    at = open_link({"model": MODEL})
    calls = []
    encode = nt._encode
    monkeypatch.setattr(nt, "_encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    at.slider(key="nt-temperature").set_value(0.5).run()
    assert calls  # the spy sees the page's tokenizing
    calls.clear()
    at.text_area(key="nt-prompt").set_value("lorem ipsum " * 90_000).run()
    assert not at.exception and not at.error
    assert any("20,000" in w.value for w in at.warning)
    assert not calls and not at.get("plotly_chart")
    # The knobs stay, and a short prompt brings the page back.
    assert at.slider(key="nt-temperature").value == 0.5
    at.text_area(key="nt-prompt").set_value("Hello my name").run()
    assert calls and at.get("plotly_chart") and not at.warning


def test_widgets_update_the_link_and_the_share_controls():
    at = open_link({"model": MODEL})
    at.slider(key="nt-temperature").set_value(0.5).run()
    at.slider(key="nt-top-k").set_value(40).run()
    assert at.query_params == {"model": MODEL, "temperature": "0.5", "top_k": "40"}
    kinds = [type(child).__name__ for child in at.sidebar.children.values()]
    assert kinds == ["Markdown", "Block", "DownloadButton", "FileUploader"]
    popover = list(at.sidebar.children.values())[1]
    assert popover.proto.popover.label == "Copy link"
    link = popover.get("code")[0].value
    assert link.endswith(f"?model={MODEL}&temperature=0.5&top_k=40")
    keys = {button.key for button in at.get("download_button")}
    for chart in ("nt-bars", "nt-waterfall", "nt-surprisal", "nt-lens"):
        assert f"{chart}-html" in keys, chart
    for table in ("nt-table", "nt-flow-table", "nt-surprisal-table"):
        assert f"{table}-csv" in keys, table


def test_inputs_survive_leaving_the_page():
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("app_pages/next_token.py").run()
    at.selectbox(key="nt-model").set_value(MODEL).run()
    at.text_area(key="nt-prompt").set_value("Once upon a time").run()
    at.slider(key="nt-min-p").set_value(0.2).run()
    at.toggle(key="nt-guess-mode").set_value(True).run()
    at.text_input(key="nt-guess").set_value("there")
    next(b for b in at.button if b.label == "Reveal").click().run()
    assert "Your guess **there**" in at.success[0].value
    at.switch_page("app_pages/home.py").run()
    assert not at.exception
    at.switch_page("app_pages/next_token.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="nt-model").value == MODEL
    assert at.text_area(key="nt-prompt").value == "Once upon a time"
    assert at.slider(key="nt-min-p").value == 0.2
    assert at.toggle(key="nt-guess-mode").value is True
    assert at.session_state["nt-guess"] == "there"
    assert "Your guess **there**" in at.success[0].value


def test_settings_file_round_trip(monkeypatch):
    """The page's own fields: its settings file reads back to the same values."""
    seen = []
    document = page_state.settings_document
    monkeypatch.setattr(page_state, "settings_document", lambda *a: seen.append(a) or document(*a))
    at = open_link({**LINK, "guess": "Paris"})
    assert not at.exception and seen
    page, fields, values = seen[-1]
    assert page == "next_token"
    text = document(page, fields, values)
    read = page_state.read_settings_document(page, fields, text)
    assert read.notices == []
    assert read.values == {f.key: values.get(f.key, f.default) for f in fields}
    assert read.values["nt-temperature"] == 0.35 and read.values["nt-guess"] == "Paris"
    # A file of another page, or with a value out of range, is refused with a notice.
    other = page_state.read_settings_document("decoding", fields, text)
    assert other.values == {} and "next_token" in other.notices[0]
    bad = text.replace('"temperature": 0.35', '"temperature": 9')
    refused = page_state.read_settings_document(page, fields, bad)
    assert "nt-temperature" not in refused.values
    assert any("**temperature** in the settings file" in n for n in refused.notices)


def test_csv_downloads_hold_the_exact_numbers(monkeypatch, smollm2):
    frames = []
    table_csv = exports.table_csv
    monkeypatch.setattr(
        exports, "table_csv", lambda frame: frames.append(frame) or table_csv(frame)
    )
    at = open_link(LINK)
    assert not at.exception and frames
    by_columns = {tuple(f.columns): f for f in frames}
    probabilities = next(f for c, f in by_columns.items() if "probability after filters" in c)
    surprisal = next(f for c, f in by_columns.items() if "surprisal (bits)" in c)

    prompt = LINK["prompt"]
    distribution = nt.next_token_distribution(smollm2, prompt)
    flow = nt.waterfall(
        distribution.logits, temperature=0.35, top_k=12, top_p=0.75, min_p=0.05,
        repetition_penalty=1.3, input_ids=distribution.prompt_ids,
    )  # fmt: skip
    rows = nt.candidates(flow, smollm2.tokenizer, 30)
    csv = pd.read_csv(io.StringIO(table_csv(probabilities)), keep_default_na=False)
    assert csv["token"].tolist() == [r.text for r in rows]  # spaces kept, not shown as dots
    assert csv["id"].tolist() == [r.token_id for r in rows]
    assert csv["logit"].tolist() == pytest.approx([r.logit for r in rows], rel=1e-5)
    before, after = csv["probability before filters"], csv["probability after filters"]
    assert before.tolist() == pytest.approx([r.probability for r in rows], rel=1e-4, abs=1e-9)
    assert after.tolist() == pytest.approx([r.final_probability for r in rows], abs=1e-6)

    expected = nt.prompt_surprisal(smollm2, prompt)
    assert surprisal["token"].tolist() == [t.text for t in expected.tokens]
    assert surprisal["id"].tolist() == [t.token_id for t in expected.tokens]
    bits = surprisal["surprisal (bits)"].tolist()
    assert pd.isna(bits[0])
    assert bits[1:] == pytest.approx([t.bits for t in expected.tokens[1:]], rel=1e-4)


@pytest.mark.browser
def test_browser_temperature_changes_the_chart(page, app_url, screenshots_dir):
    open_page(page, app_url, "next_token")
    page.wait_for_selector(".js-plotly-plot", timeout=240_000)
    no_exception(page)
    bars = page.locator(".js-plotly-plot").first

    def heights() -> list[str]:
        return bars.locator("g.point path").evaluate_all("els => els.map(e => e.getAttribute('d'))")

    first = heights()
    assert first
    slider = page.get_by_role("slider").first  # temperature is the first slider on the page
    slider.focus()
    for _ in range(8):
        page.keyboard.press("ArrowLeft")  # 1.0 -> 0.6
    wait_for_app(page)
    # Bars are re-scaled to the tallest one, so compare every bar, not just the first.
    page.wait_for_function(
        "old => [...document.querySelectorAll('.js-plotly-plot')[0]"
        ".querySelectorAll('g.point path')].map(e => e.getAttribute('d')).join('|') !== old",
        arg="|".join(first),
        timeout=60_000,
    )
    assert heights() != first
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "next_token-browser.png"), full_page=True)


# --- switching a part off ------------------------------------------------------------------

KNOCK_OUT_LINK = {
    "prompt": "Hello my name",
    "model": MODEL,
    "knock_out": "head",
    "ko_layer": "3",
    "ko_head": "2",
}


def _frame_with(at, column):
    return next(t.value for t in at.dataframe if column in t.value.columns)


def test_switching_a_part_off_from_a_link_and_the_widgets(smollm2):
    from llmlab.generation import knockouts

    at = open_link(KNOCK_OUT_LINK)
    assert not at.exception and not at.error and not at.warning
    prompt = KNOCK_OUT_LINK["prompt"]
    effect = knockouts.knock_out_effect(smollm2, prompt, [("head", 3, 2)], 10, 1024)
    kl = next(m for m in at.metric if m.label == "KL divergence")
    assert kl.value == f"{effect.kl_bits:.3f} bits"
    table = _frame_with(at, "rank after")
    assert table["id"].tolist() == [c.token_id for c in effect.changes]
    assert table["after"].tolist() == pytest.approx([c.after for c in effect.changes], rel=1e-6)
    assert dict(at.query_params) == KNOCK_OUT_LINK
    # The widgets: a whole MLP instead, and the link follows.
    at.selectbox(key="nt-ko-part").set_value("mlp").run()
    at.number_input(key="nt-ko-layer").set_value(7).run()
    assert not at.exception and not at.error
    effect = knockouts.knock_out_effect(smollm2, prompt, [("mlp", 7)], 10, 1024)
    kl = next(m for m in at.metric if m.label == "KL divergence")
    assert kl.value == f"{effect.kl_bits:.3f} bits"
    assert (at.query_params["knock_out"], at.query_params["ko_layer"]) == ("mlp", "7")
    # The sweep: a heatmap of every head and the heads that matter most.
    at.button(key="nt-ko-sweep").click().run()
    assert not at.exception and not at.error
    sweep = knockouts.head_sweep(smollm2, prompt, 1024)
    heads = _frame_with(at, "KL (bits)")
    assert list(zip(heads["layer"], heads["head"], strict=True)) == [
        (layer, head) for layer, head, _ in sweep.ranked(10)
    ]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heatmap = next(
        s
        for s in specs
        if s["data"][0].get("colorbar", {}).get("title", {}).get("text") == "KL (bits)"
    )
    shown = [value for row in heatmap["data"][0]["z"] for value in row]
    assert shown == pytest.approx([value for row in sweep.kl_bits for value in row])
    # Back to nothing switched off: the panel asks for a choice and the link drops the part.
    at.selectbox(key="nt-ko-part").set_value("none").run()
    assert not any(m.label == "KL divergence" for m in at.metric)
    assert "knock_out" not in at.query_params


def test_a_layer_the_model_lacks_falls_back_with_a_notice():
    at = open_link({"model": MODEL, "knock_out": "mlp", "ko_layer": "40", "ko_head": "12"})
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    assert any("**layer** 40 is not in this model" in n and "30" in n for n in notices), notices
    assert any("**head** 12 is not in this model" in n for n in notices), notices
    assert at.number_input(key="nt-ko-layer").value == 0
    assert "ko_layer" not in at.query_params and "ko_head" not in at.query_params
    assert any(m.label == "KL divergence" for m in at.metric)


def test_the_sweep_refuses_a_long_prompt_with_a_message():
    at = open_link({"model": MODEL, "prompt": "word " * 300})
    at.button(key="nt-ko-sweep").click().run()
    assert not at.exception
    assert any("at most 256" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area(key="nt-prompt").value == "word " * 300


@pytest.mark.browser
def test_browser_switching_a_head_off_and_the_sweep(page, app_url, smollm2, screenshots_dir):
    """From a link, in a real browser: the part is switched off, the KL divergence shown is the
    library's, and the sweep over every head draws its heatmap and names the same heads."""
    from urllib.parse import urlencode

    from llmlab.generation import knockouts

    open_page(page, app_url, f"next_token?{urlencode(KNOCK_OUT_LINK)}")
    prompt = KNOCK_OUT_LINK["prompt"]
    effect = knockouts.knock_out_effect(smollm2, prompt, [("head", 3, 2)], 10, 1024)
    page.get_by_role("tab", name="Switch a part off").click()
    kl = page.locator("[data-testid='stMetric']").filter(has_text="KL divergence")
    kl.locator("[data-testid='stMetricValue']").wait_for(timeout=240_000)
    assert kl.locator("[data-testid='stMetricValue']").inner_text() == f"{effect.kl_bits:.3f} bits"
    page.get_by_text(f"Next token with {effect.description} switched off").first.wait_for()
    no_exception(page)
    page.get_by_role("button", name="Switch off each head in turn").click()
    page.get_by_text("The heads that move it most").first.wait_for(timeout=240_000)
    no_exception(page)
    sweep = knockouts.head_sweep(smollm2, prompt, 1024)
    caption = page.get_by_text("The heads that move it most").first.inner_text()
    assert f"({sweep.top_probability:.1%})" in caption
    heatmap = page.locator(".js-plotly-plot").filter(has_text="KL divergence when each head")
    heatmap.first.wait_for()
    assert heatmap.locator("g.hm, image").count() > 0  # the heatmap itself is drawn
    page.screenshot(path=str(screenshots_dir / "next_token-knock-out.png"), full_page=True)
