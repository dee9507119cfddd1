"""The Decoding page: AppTest over strategies and parameters, and one run in a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_helpers import page_from_link as open_page_from_link
from browser_helpers import no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab import ui
from llmlab.generation import branching
from llmlab.generation.decoding import generate

MODEL = "smollm2-135m-instruct"
MODEL_OPTIONS = ui.picker_options(("base", "chat"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("app_pages/decoding.py").run()
    assert not at.exception
    return at


def keys(at) -> set[str]:
    found = set()
    for kind in ("slider", "selectbox", "number_input", "multiselect"):
        found |= {w.key for w in getattr(at, kind) if w.key}
    return found


@pytest.mark.parametrize(
    ("strategy", "present", "absent"),
    [
        ("greedy", set(), {"dec-temperature", "dec-seed", "dec-top-k", "dec-beams"}),
        ("sample", {"dec-temperature", "dec-seed"}, {"dec-top-k", "dec-top-p", "dec-beams"}),
        ("top_k", {"dec-top-k", "dec-temperature"}, {"dec-top-p", "dec-min-p"}),
        ("top_p", {"dec-top-p"}, {"dec-top-k", "dec-min-p", "dec-beams"}),
        ("min_p", {"dec-min-p"}, {"dec-top-k", "dec-top-p"}),
        ("beam", {"dec-beams", "dec-length-penalty", "dec-early"}, {"dec-seed", "dec-temperature"}),
    ],
)
def test_only_the_relevant_parameters_show(app, strategy, present, absent):
    app.selectbox(key="dec-strategy").set_value(strategy).run()
    assert not app.exception
    shown = keys(app)
    assert present <= shown and not (absent & shown)


def test_generate_greedy_matches_the_library(app, smollm2):
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.radio(key="dec-dtype").set_value("float32").run()  # like with like: the fixture's dtype
    app.toggle(key="dec-template").set_value(False).run()
    app.slider(key="dec-max-new").set_value(6).run()
    app.slider(key="dec-repetition").set_value(1.3).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    result = app.session_state["dec-result"]
    expected = generate(smollm2, "Once upon a time", max_new_tokens=6, repetition_penalty=1.3)
    assert result.new_ids == expected.new_ids
    assert any("Step explorer" in m.value for m in app.subheader)
    # The result survives a rerun caused by another widget (nothing lost from session state).
    app.slider(key="dec-step").set_value(3).run()
    assert app.session_state["dec-result"].new_ids == expected.new_ids


def test_beam_search_shows_the_tree(app):
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.selectbox(key="dec-strategy").set_value("beam").run()
    app.slider(key="dec-max-new").set_value(4).run()
    app.slider(key="dec-beams").set_value(2).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    assert app.session_state["dec-result"].steps[0].beams
    assert len(app.session_state["dec-greedy"]) == 4
    assert any("Beam tree" in m.value for m in app.subheader)


def test_empty_prompt_gives_a_hint(app):
    app.text_area(key="dec-prompt").set_value("   ").run()
    app.button(key="dec-generate").click().run()
    assert not app.exception
    assert any("Type a prompt" in w.value for w in app.warning)
    assert "dec-result" not in app.session_state


def test_widget_ranges_stay_inside_what_the_library_accepts(app):
    app.selectbox(key="dec-strategy").set_value("top_p").run()
    assert (app.slider(key="dec-max-new").min, app.slider(key="dec-max-new").max) == (1, 512)
    assert app.slider(key="dec-top-p").min > 0 and app.slider(key="dec-top-p").max <= 1
    assert app.slider(key="dec-temperature").min > 0
    assert app.number_input(key="dec-seed").min == 0


def test_compare_in_the_browser(page, app_url, screenshots_dir):
    """Two strategies side by side: greedy and top-p, 8 tokens each, in headless Chromium."""
    open_page(page, app_url, "decoding")
    page.get_by_text("Compare strategies", exact=True).click()
    # The address bar follows the widgets once a run has finished with the new value.
    page.wait_for_function("() => location.search.includes('mode=Compare')", timeout=120_000)
    wait_for_app(page)
    slider = page.get_by_role("slider").first  # "Max new tokens"
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('max_new_tokens') === '8'",
        timeout=120_000,
    )
    wait_for_app(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Side by side").wait_for(timeout=180_000)
    wait_for_app(page, timeout=180_000)
    no_exception(page)
    assert page.get_by_text("distinct-1").count() >= 2
    page.screenshot(path=str(screenshots_dir / "decoding-compare.png"), full_page=True)


# --- the page's inputs in the link ----------------------------------------------------------

LINK = {
    "prompt": "The <b>capital</b> of France is",
    "model": MODEL,
    "template": "0",
    "precision": "float32",
    "strategy": "top_p",
    "max_new_tokens": "7",
    "seed": "1234",
    "temperature": "0.7",
    "top_p": "0.8",
    "repetition_penalty": "1.2",
    "no_repeat_ngram_size": "3",
}


def page_from_link(params: dict[str, str]) -> AppTest:
    return open_page_from_link("decoding", params, timeout=180)


def test_a_link_reproduces_the_inputs_and_the_same_sampled_text(smollm2):
    at = page_from_link(LINK)
    assert not at.exception and not at.warning
    assert at.text_area(key="dec-prompt").value == LINK["prompt"]
    assert at.selectbox(key="dec-strategy").value == "top_p"
    assert at.slider(key="dec-top-p").value == 0.8
    assert at.slider(key="dec-temperature").value == 0.7
    assert at.number_input(key="dec-seed").value == 1234
    assert at.toggle(key="dec-template").value is False
    assert dict(at.query_params) == LINK  # the address bar holds the same link
    at.button(key="dec-generate").click().run()
    expected = generate(
        smollm2, LINK["prompt"], "top_p", max_new_tokens=7, seed=1234, temperature=0.7,
        top_p=0.8, repetition_penalty=1.2, no_repeat_ngram_size=3,
    )  # fmt: skip
    assert at.session_state["dec-result"].new_ids == expected.new_ids
    # A second visitor with the same link gets the same text.
    again = page_from_link(LINK)
    again.button(key="dec-generate").click().run()
    assert again.session_state["dec-result"].text == expected.text


def test_a_fresh_page_puts_only_the_model_and_precision_in_the_link(app):
    # Any other parameter here means a field's default differs from its widget's default. The
    # precision is always named: the default is measured on each machine, and a link made on one
    # must run in the same precision on another.
    assert {k for k in app.query_params} == {"model", "precision"}
    assert app.query_params["precision"] == ui.precision_choice(MODEL_OPTIONS[0]).dtype
    app.selectbox(key="dec-strategy").set_value("beam").run()
    app.slider(key="dec-beams").set_value(4).run()
    assert app.query_params["strategy"] == "beam" and app.query_params["beams"] == "4"


def test_hostile_link_values_fall_back_to_defaults_with_a_notice():
    at = page_from_link(
        {
            "model": "<script>alert(1)</script>",
            "strategy": "javascript:alert(1)",
            "temperature": "nan",
            "top_k": "-5",
            "max_new_tokens": "100000",
            "prompt": "x" * 20_001,
            "compare": ["greedy", "<img src=x onerror=alert(1)>"],
            "totally_unknown": "1",
        }
    )
    assert not at.exception and not at.error
    notices = [w.value for w in at.warning]
    for name in ("model", "strategy", "temperature", "top_k", "max_new_tokens", "prompt"):
        assert any(n.startswith(f"**{name}** in the link") for n in notices), name
    assert any("not used by this page" in n for n in notices)
    assert not any("<script" in n or "<img" in n or "xxxx" in n for n in notices)
    assert at.selectbox(key="dec-strategy").value == "greedy"
    assert at.text_area(key="dec-prompt").value == "Once upon a time"
    assert at.slider(key="dec-max-new").value == 40
    # The address bar is rewritten from the widgets: the refused values are gone.
    assert {k for k in at.query_params} == {"model", "precision"}


def test_a_link_too_long_to_read_opens_the_defaults_with_a_notice():
    at = page_from_link({"prompt": "x" * 1_000_000, "seed": "5"})
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        "This link is too long for the app to read (1,000,014 characters), so the page opened "
        "with its default inputs."
    ]
    assert at.text_area(key="dec-prompt").value == "Once upon a time"


def test_inputs_survive_leaving_the_page_and_coming_back(app):
    app.text_area(key="dec-prompt").set_value("Twinkle twinkle").run()
    app.selectbox(key="dec-strategy").set_value("top_k").run()
    app.slider(key="dec-top-k").set_value(7).run()
    app.switch_page("app_pages/tokenizers.py").run()
    app.switch_page("app_pages/decoding.py").run()
    assert not app.exception
    assert app.text_area(key="dec-prompt").value == "Twinkle twinkle"
    assert app.selectbox(key="dec-strategy").value == "top_k"
    assert app.slider(key="dec-top-k").value == 7


def test_share_controls_and_downloads_are_on_the_page(app):
    kinds = [element.type for element in app.sidebar]
    assert {"popover", "code", "download_button", "file_uploader"} <= set(kinds)
    [link] = [element for element in app.sidebar if element.type == "code"]
    assert "model=" in link.value
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.slider(key="dec-max-new").set_value(3).run()
    app.button(key="dec-generate").click().run()
    labels = [b.proto.label for b in app.get("download_button")]
    assert "Tokens as CSV" in labels and "Chart as HTML" in labels


@pytest.mark.browser
def test_eight_sessions_generate_at_once_and_each_gets_the_greedy_text(browser, app_url, smollm2):
    """A class presses Generate together: 8 browser sessions on one server, one engine."""
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    result = "[data-testid='stMarkdown'] div[style*='pre-wrap'] b"
    prompts = [f"Once upon a time, in village number {i}," for i in range(8)]
    contexts, pages = [], []
    for prompt in prompts:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(240_000)
        query = urlencode({"model": MODEL, "precision": "float32", "max_new_tokens": "12",
                           "template": "0", "prompt": prompt})  # fmt: skip
        open_page(page, app_url, f"decoding?{query}")
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(prompt)
        contexts.append(context)
        pages.append(page)
    try:
        for page in pages:  # as close together as one thread can click
            page.get_by_role("button", name="Generate").click()
        for page, prompt in zip(pages, prompts, strict=True):
            page.get_by_text(re.compile(r"\d+ tokens in [\d.]+ s")).first.wait_for(timeout=300_000)
            wait_for_app(page, timeout=300_000)
            no_exception(page)
            expected = generate(smollm2, prompt, max_new_tokens=12).text
            shown = page.locator(result).first.inner_text()
            assert shown.split() == expected.split()
    finally:
        for context in contexts:
            context.close()


@pytest.mark.browser
def test_a_long_pasted_prompt_never_holds_another_student_still(browser, app_url, smollm2):
    """One student pastes 19,000 characters, another asks a short question just after: the
    long prompt is read a part at a time (its page says how far), and the short one streams
    and finishes meanwhile, with the greedy text."""
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    result = "[data-testid='stMarkdown'] div[style*='pre-wrap'] b"
    done = re.compile(r"\d+ tokens in [\d.]+ s")
    short_prompt = "Once upon a time"
    contexts, pages = [], []
    for prompt in ("", short_prompt):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(240_000)
        query = urlencode({"model": MODEL, "precision": "float32", "max_new_tokens": "8",
                           "template": "0", "prompt": prompt or "x"})  # fmt: skip
        open_page(page, app_url, f"decoding?{query}")
        contexts.append(context)
        pages.append(page)
    long_page, short_page = pages
    try:
        box = long_page.get_by_label("Prompt", exact=True)
        box.fill("x" * 19_000)
        box.press("Control+Enter")
        wait_for_app(long_page)
        long_page.get_by_role("button", name="Generate").click()
        expect(long_page.get_by_text("Reading your prompt:")).to_be_visible(timeout=120_000)
        short_page.get_by_role("button", name="Generate").click()
        short_page.get_by_text(done).first.wait_for(timeout=300_000)
        assert long_page.get_by_text(done).count() == 0, "the long prompt was read first"
        shown = short_page.locator(result).first.inner_text()
        assert shown.split() == generate(smollm2, short_prompt, max_new_tokens=8).text.split()
        long_page.get_by_text(done).first.wait_for(timeout=300_000)
        wait_for_app(long_page, timeout=300_000)
        expect(long_page.get_by_text("Reading your prompt:")).to_have_count(0)
        for page in pages:
            no_exception(page)
    finally:
        for context in contexts:
            context.close()


# --- what if? branches and the temperature ladder -------------------------------------------


def links(at, name: str) -> list[str]:
    """A parameter of the address bar as a list (a repeated one is a list already)."""
    value = at.query_params.get(name, [])
    return value if isinstance(value, list) else [value]


def generated(app, strategy: str = "greedy", tokens: int = 6, **sliders) -> AppTest:
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.radio(key="dec-dtype").set_value("float32").run()
    app.toggle(key="dec-template").set_value(False).run()
    app.selectbox(key="dec-strategy").set_value(strategy).run()
    app.slider(key="dec-max-new").set_value(tokens).run()
    for key, value in sliders.items():
        app.slider(key=key).set_value(value).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    return app


def branch_at(app, step: int) -> None:
    """Click the token chip of `step` (from 0), keep the first other candidate, continue."""
    node = app.session_state["dec-node"] if "dec-node" in app.session_state else 0  # noqa: SIM401
    app.button_group(key=f"dec-chip-{node}").set_value(step).run()
    assert app.slider(key="dec-step").value == step + 1
    app.button(key="dec-branch-go").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]


def test_branching_from_a_chip_twice_builds_a_tree_and_puts_it_in_the_link(app, smollm2):
    generated(app, "top_p", 8)
    original = app.session_state["dec-result"]
    branch_at(app, 2)
    branch_at(app, 5)  # from the branch just made, which the page now shows
    tree = app.session_state["dec-tree"]
    assert len(tree) == 3 and tree.points[2].parent == 1 and tree.points[1].step == 2
    first, second = tree.results[1], tree.results[2]
    expected = branching.branch(original, 2, first.new_ids[2], model=smollm2)
    assert first.new_ids == expected.new_ids and first.new_ids[:2] == original.new_ids[:2]
    assert second.new_ids[:5] == first.new_ids[:5] and second.new_ids[5] != first.new_ids[5]
    assert any("Branches" in m.value for m in app.subheader)
    assert links(app, "branches") == tree.branch_texts()
    # The text, the chips and the step explorer follow the node shown.
    app.radio(key="dec-node").set_value(1).run()
    assert not app.exception
    app.slider(key="dec-step").set_value(3).run()
    bold = [m.value for m in app.markdown if "<b>" in m.value]
    assert any(f"<b>{ui.escape(first.text)}</b>" in value for value in bold)
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("Step 3: chose" in t for t in titles)
    app.button_group(key="dec-chip-1").set_value(6).run()
    assert app.slider(key="dec-step").value == 7
    app.radio(key="dec-node").set_value(0).run()
    app.slider(key="dec-step").set_value(8).run()
    assert app.session_state["dec-node"] == 0 and not app.exception


def test_a_link_with_branches_rebuilds_the_same_tree(smollm2):
    link = {"model": MODEL, "precision": "float32", "template": "0", "strategy": "sample",
            "seed": "3", "max_new_tokens": "7"}  # fmt: skip
    original = generate(smollm2, "Once upon a time", "sample", max_new_tokens=7, seed=3)
    other = next(
        c.token_id for c in original.steps[1].candidates if c.token_id != original.new_ids[1]
    )
    first = branching.branch(original, 1, other, model=smollm2)
    nested = next(c.token_id for c in first.steps[4].candidates if c.token_id != first.new_ids[4])
    at = page_from_link({**link, "branches": [f"0.1.{other}", f"1.4.{nested}"]})
    assert not at.exception and not at.warning
    at.button(key="dec-generate").click().run()
    assert not at.exception and not at.error
    tree = at.session_state["dec-tree"]
    assert [r.new_ids for r in tree.results][:2] == [original.new_ids, first.new_ids]
    assert tree.results[2].new_ids == branching.branch(first, 4, nested, model=smollm2).new_ids
    assert links(at, "branches") == [f"0.1.{other}", f"1.4.{nested}"]


def test_a_link_branch_that_does_not_fit_gives_a_notice():
    at = page_from_link({"model": MODEL, "max_new_tokens": "3", "branches": ["0.20.5"]})
    at.button(key="dec-generate").click().run()
    assert not at.exception and not at.error
    assert any("Branch 1 does not fit this run" in w.value for w in at.warning)
    assert "branches" not in at.query_params


def test_a_beam_branch_continues_a_pruned_beam(app, smollm2):
    generated(app, "beam", 4, **{"dec-beams": 2})
    app.slider(key="dec-step").set_value(2).run()
    beams = app.session_state["dec-result"].steps[1].beams
    pruned = next(n for n, b in enumerate(beams) if not b.kept and not b.finished)
    app.selectbox(key="dec-branch-beam-1").set_value(pruned).run()
    app.button(key="dec-branch-go").click().run()
    assert not app.exception and not app.error
    made = app.session_state["dec-tree"].results[1]
    assert made.new_ids[:2] == beams[pruned].tokens
    assert links(app, "branches") == [f"0.1.{beams[pruned].tokens[-1]}.{pruned}"]


def test_the_temperature_ladder_side_by_side(app, smollm2):
    app.segmented_control(key="dec-mode").set_value("Temperature ladder").run()
    app.selectbox(key="dec-model").set_value(MODEL).run()
    app.radio(key="dec-dtype").set_value("float32").run()
    app.toggle(key="dec-template").set_value(False).run()
    app.slider(key="dec-max-new").set_value(6).run()
    app.multiselect(key="dec-ladder").set_value([0.2, 1.5]).run()
    app.number_input(key="dec-seed").set_value(9).run()
    app.button(key="dec-generate").click().run()
    assert not app.exception and not app.error
    outcome = app.session_state["dec-ladder-result"]
    assert outcome.greedy.new_ids == generate(smollm2, "Once upon a time", max_new_tokens=6).new_ids
    for run in outcome.runs:
        alone = generate(smollm2, "Once upon a time", "sample", max_new_tokens=6, seed=9,
                         temperature=run.temperature)  # fmt: skip
        assert run.result.new_ids == alone.new_ids
    assert any("Temperature ladder" in m.value for m in app.subheader)
    assert links(app, "ladder") == ["0.2", "1.5"]
    # Clicking a token of the T = 1.5 run shows that step's candidates at that temperature.
    app.button_group(key="dec-ladder-run").set_value(2).run()
    app.button_group(key="dec-ladder-token-2").set_value(3).run()
    assert not app.exception
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("T = 1.5, step 4" in t for t in titles)


@pytest.mark.browser
def test_branch_twice_copy_the_link_and_open_it_in_a_new_context(
    browser, app_url, page, screenshots_dir
):
    """Branch from a chip, branch from that branch, then a second visitor opens the copied
    link, presses Generate and gets the same tree."""
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    query = urlencode({"model": MODEL, "precision": "float32", "template": "0",
                       "strategy": "top_k", "top_k": "20", "seed": "5", "max_new_tokens": "8"})  # fmt: skip
    open_page(page, app_url, f"decoding?{query}")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Step explorer").wait_for(timeout=240_000)
    wait_for_app(page, timeout=240_000)
    for step, branches in ((3, 1), (6, 2)):
        chips = page.locator("[data-testid='stButtonGroup']").filter(has_text="Click a token")
        chips.get_by_text(re.compile(rf"^{step} ")).first.click()
        wait_for_app(page)
        page.get_by_role("button", name="Continue from here").click()
        expect(page.get_by_text(f"branch {branches}", exact=True).first).to_be_visible(
            timeout=240_000
        )
        wait_for_app(page, timeout=240_000)
        no_exception(page)
    texts = page.locator("[data-testid='stHtml']").filter(has_text="branch 2").first.inner_text()
    page.get_by_role("button", name="Copy link").click()
    code = page.locator("[data-testid='stCode']").last
    code.wait_for()
    link = code.inner_text().strip()
    assert link.count("branches=") == 2 and "branches=1." in link
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        visitor = other.new_page()
        visitor.set_default_timeout(240_000)
        visitor.goto(link)
        wait_for_app(visitor)
        visitor.get_by_role("button", name="Generate").click()
        expect(visitor.get_by_text("branch 2", exact=True).first).to_be_visible(timeout=240_000)
        wait_for_app(visitor, timeout=240_000)
        no_exception(visitor)
        shown = visitor.locator("[data-testid='stHtml']").filter(has_text="branch 2").first
        assert shown.inner_text() == texts
        shown.scroll_into_view_if_needed()
        visitor.screenshot(path=str(screenshots_dir / "decoding-branches.png"), full_page=True)
    finally:
        other.close()


@pytest.mark.browser
def test_the_temperature_ladder_in_the_browser(app_url, page, screenshots_dir):
    """Greedy and three temperatures side by side; a token of one run opens its candidates."""
    from urllib.parse import urlencode

    from playwright.sync_api import expect

    query = urlencode({"model": MODEL, "precision": "float32", "template": "0",
                       "mode": "Temperature ladder", "max_new_tokens": "6", "seed": "2"})  # fmt: skip
    open_page(page, app_url, f"decoding?{query}")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("leaves greedy at step").first.wait_for(timeout=240_000)
    wait_for_app(page, timeout=240_000)
    no_exception(page)
    runs = page.locator("[data-testid='stButtonGroup']").filter(has_text="Run")
    runs.get_by_text("T = 1.5", exact=True).click()
    wait_for_app(page)
    tokens = page.locator("[data-testid='stButtonGroup']").filter(has_text="Tokens of this run")
    tokens.get_by_text(re.compile(r"^2 ")).first.click()
    expect(page.get_by_text("T = 1.5, step 2").first).to_be_visible(timeout=120_000)
    wait_for_app(page)
    no_exception(page)
    page.screenshot(path=str(screenshots_dir / "decoding-ladder.png"), full_page=True)


@pytest.mark.parametrize("measured", ["float32", "bfloat16"])
def test_the_precision_switch_starts_on_the_precision_chosen_here(monkeypatch, measured):
    """The switch starts on what `llmlab.default_precision` chose (here forced through
    LLMLAB_PRECISION, as a server would), and its labels say how it was chosen."""
    monkeypatch.setenv("LLMLAB_PRECISION", measured)
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("app_pages/decoding.py").run()
    switch = at.radio(key="dec-dtype")
    assert switch.value == measured and not at.exception
    assert "set by LLMLAB_PRECISION" in switch.help
    assert at.query_params["precision"] == measured


@pytest.mark.parametrize("named", ["float32", "bfloat16"])
def test_a_link_that_names_a_precision_keeps_it(named):
    at = page_from_link({"model": MODEL, "precision": named})
    assert at.radio(key="dec-dtype").value == named and not at.exception
    assert at.query_params["precision"] == named
