"""The Training page through AppTest: train a tiny model, stop, bad input, save, use it elsewhere.

Trainings here are the smallest preset for a few steps, so each takes seconds.
"""

from __future__ import annotations

import re
import time

import pytest
import torch
from app_helpers import ROOT, page_from_link
from browser_helpers import no_exception, open_page, wait_for_app
from streamlit.testing.v1 import AppTest

from llmlab.app import sharing
from llmlab.training import loop, presets

OWN_TEXT = (
    "The quick brown fox jumps over the lazy dog. A small model reads this text again and "
    "again, and learns which letter tends to follow which. "
) * 40


def _open() -> AppTest:
    at = page_from_link("training", {})
    assert not at.exception
    return at


def _tiny(at: AppTest, steps: int = 12, text: str | None = OWN_TEXT) -> AppTest:
    if text is not None:
        at.radio(key="train-source").set_value("My own text").run()
        at.text_area(key="train-own").set_value(text)
    at.selectbox(key="train-preset").set_value("tiny")
    at.radio(key="train-budget").set_value("Number of steps").run()
    at.number_input(key="train-steps").set_value(steps).run()
    return at


def _train(at: AppTest, timeout: float = 90.0) -> object:
    at.button(key="train-start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["train-job"]
    ends = time.monotonic() + timeout
    while not job.done:
        assert time.monotonic() < ends, "training did not finish"
        time.sleep(0.3)
        at.run()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return job


def test_each_size_shows_layers_heads_width_and_the_exact_count():
    at = _open()
    options = at.selectbox(key="train-preset").options
    for name, label in zip(presets.PRESETS, options, strict=True):
        preset = presets.PRESETS[name]
        count = presets.parameter_count(preset, 87)
        assert f"{preset.layers} layers, {preset.heads} heads, width {preset.width}" in label
        assert f"{count / 1e6:.2f}M parameters" in label
    assert at.info and "Train" in at.info[0].value


def test_a_training_shows_the_curve_the_lines_to_beat_a_sample_and_what_it_knows():
    at = _tiny(_open())
    job = _train(at)
    assert job.state == "finished"
    assert any("Trained for 12 steps" in s.value for s in at.success)
    assert at.metric[0].label == "Validation loss (nats)"
    assert float(at.metric[0].value) == pytest.approx(job.result.history[-1].validation_loss, 1e-3)
    assert float(at.metric[2].value) == pytest.approx(job.prepared.baselines.bigram, abs=1e-3)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the loss curve, what it knows now
    assert any(c.value == job.result.snapshots[-1].sample for c in at.code)
    at.toggle(key="train-perplexity").set_value(True).run()
    assert not at.exception


def test_use_this_model_puts_it_in_the_pickers_of_three_pages():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=240).run()
    at.switch_page("app_pages/training.py").run()
    _tiny(at)
    job = _train(at)
    at.button(key="train-use").click().run()
    own = job.result.model
    assert at.session_state["llmlab-own-model"] is own
    assert any("(yours)" in s.value for s in at.success)
    label = f"{own.facts.title} (yours)"

    at.switch_page("app_pages/next_token.py").run()
    options = at.selectbox(key="nt-model").options
    at.selectbox(key="nt-model").select_index(options.index(label)).run()
    assert not at.exception and not at.error
    assert at.session_state["nt-model"] == own.name
    # AppTest reads a picked label back through its own formatting when the page changes, so
    # the first model is picked again before leaving (the page itself keeps either).
    at.selectbox(key="nt-model").select_index(0).run()
    at.switch_page("app_pages/decoding.py").run()
    assert label in at.selectbox(key="dec-model").options
    at.switch_page("app_pages/architecture.py").run()
    options = at.selectbox(key="arch-model").options
    at.selectbox(key="arch-model").select_index(options.index(label)).run()
    assert not at.exception and not at.error
    assert at.metric[0].value == f"{own.facts.parameters:,}"


def test_the_model_is_offered_to_its_own_session_only():
    other = AppTest.from_file(str(ROOT / "app_pages" / "next_token.py"), default_timeout=240)
    other.run()
    assert not any("(yours)" in o for o in other.selectbox(key="nt-model").options)


def test_stop_ends_the_run_and_keeps_the_model_so_far():
    at = _tiny(_open(), steps=100_000)
    at.button(key="train-start").click().run()
    job = at.session_state["train-job"]
    while job.progress.step < 3:
        time.sleep(0.2)
    at.button(key="train-stop").click().run()
    job.join(30)
    at.run()
    assert job.state == "stopped" and job.result.model is not None
    assert any("Stopped after" in s.value for s in at.success)
    assert at.button(key="train-start").disabled is False


def test_a_second_training_waits_showing_its_place_and_stop_frees_it(monkeypatch):
    """One training at a time: while another session's run holds the only place, Train queues
    and says so; Stop leaves the queue at once."""
    from llmlab.training import jobs

    slots = jobs.TrainingSlots(limit=1)
    monkeypatch.setattr(jobs, "_slots", slots)
    other = _tiny(_open(), steps=100_000)
    other.button(key="train-start").click().run()
    running = other.session_state["train-job"]
    assert running.slots is slots
    ends = time.monotonic() + 60
    while running.state != "running":
        assert time.monotonic() < ends
        time.sleep(0.1)
    at = _tiny(_open(), steps=5)
    at.button(key="train-start").click().run()
    waiting = at.session_state["train-job"]
    while waiting.queue_position() is None:
        assert time.monotonic() < ends
        time.sleep(0.1)
    at.run()
    assert any("Waiting for the CPU" in i.value and "nobody else ahead" in i.value for i in at.info)
    assert waiting.state == "queued" and waiting.progress.step == 0
    at.button(key="train-stop").click().run()
    waiting.join(30)
    assert waiting.state == "stopped" and slots.position(waiting) is None
    running.stop()
    running.join(30)
    assert slots.running == 0


def test_a_huge_learning_rate_stops_with_a_message_and_offers_nothing_to_keep():
    at = _tiny(_open(), steps=30)
    at.number_input(key="train-lr").set_value(1e9).run()
    job = _train(at)
    assert job.state == "diverged"
    assert any("too large" in e.value for e in at.error)
    assert "train-use" not in [b.key for b in at.button]
    assert "train-save" not in [b.key for b in at.button]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   \n ", "empty"), ("too short", "too short")],
)
def test_text_that_cannot_be_trained_on_gets_a_message_and_is_kept(text, message):
    at = _tiny(_open(), text=text)
    at.button(key="train-start").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert at.text_area(key="train-own").value == text
    assert "train-job" not in at.session_state


def test_a_bpe_vocabulary_larger_than_the_text_allows_gets_a_message():
    at = _tiny(_open(), text="ab ab ab " * 300)
    at.radio(key="train-tokenizer").set_value("bpe").run()
    at.number_input(key="train-vocab").set_value(5000).run()
    at.button(key="train-start").click().run()
    assert not at.exception
    assert any("more than this text allows" in e.value for e in at.error)


def test_a_ten_megabyte_paste_is_cut_with_a_notice_and_kept_whole_in_the_box():
    pasted = ("All work and no play makes Jack a dull boy. " * 250_000)[:10_000_000]
    at = _tiny(_open(), steps=2, text=pasted)
    _train(at)
    assert any(f"first {loop.MAX_TEXT_CHARS:,}" in i.value for i in at.info)
    assert at.text_area(key="train-own").value == pasted


@pytest.mark.parametrize("name", ["a/b", "../up", "x\x00y"])
def test_a_save_name_that_could_leave_the_folder_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    at = _tiny(_open(), steps=2)
    _train(at)
    at.text_input(key="train-name").set_value(name).run()
    at.button(key="train-save").click().run()
    assert not at.exception
    assert any("not allowed" in e.value for e in at.error)
    assert not (tmp_path / "trained").exists() or not any((tmp_path / "trained").iterdir())


def test_save_writes_safetensors_under_llmlab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    at = _tiny(_open(), steps=2)
    _train(at)
    at.text_input(key="train-name").set_value("fox model").run()
    at.button(key="train-save").click().run()
    folder = tmp_path / "trained" / "fox model"
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert any("Saved in" in s.value for s in at.success)
    assert at.get("download_button")  # the same files as a zip


def test_the_settings_go_in_the_link_and_the_weights_do_not():
    at = page_from_link(
        "training", {"preset": "tiny", "seed": "7", "budget": "Number of steps", "steps": "5"}
    )
    assert not at.exception and not at.warning
    assert at.selectbox(key="train-preset").value == "tiny"
    assert at.number_input(key="train-seed").value == 7
    _tiny(at, steps=5)
    _train(at)
    params = {k: list(v) if isinstance(v, list) else [v] for k, v in dict(at.query_params).items()}
    assert params["preset"] == ["tiny"] and params["seed"] == ["7"]
    assert set(params) <= {f.name for f in sharing.DECLARED["training"]}
    assert not any("yours" in str(v) for v in params.values())


def test_a_refused_second_run_keeps_the_first_model_and_says_why():
    at = _tiny(_open(), steps=2)
    first = _train(at)
    at.text_area(key="train-own").set_value("").run()
    at.button(key="train-start").click().run()
    assert not at.exception
    assert any("empty" in e.value for e in at.error)
    assert at.session_state["train-job"] is first and "train-use" in [b.key for b in at.button]


def test_a_saved_model_can_be_loaded_back_into_the_pickers(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    at = _tiny(_open(), steps=4)
    job = _train(at)
    at.text_input(key="train-name").set_value("fox").run()
    at.button(key="train-save").click().run()
    at.run()
    assert at.selectbox(key="train-saved").options == ["fox"]
    at.button(key="train-load").click().run()
    own = at.session_state["llmlab-own-model"]
    assert own.name == "saved-fox" and own is not job.result.model
    ids = torch.tensor([own.tokenizer("The fox")["input_ids"]])
    assert torch.equal(own.model(ids).logits, job.result.model.model(ids).logits)


def test_after_training_any_checkpoint_can_be_looked_at_again():
    at = _tiny(_open(), steps=10)
    job = _train(at)
    steps = [shot.step for shot in job.progress.snapshots]
    assert at.select_slider(key="train-checkpoint").value == steps[-1]
    at.select_slider(key="train-checkpoint").set_value(steps[0]).run()
    assert any(c.value == job.progress.snapshots[0].sample for c in at.code)


# --- in a real browser ------------------------------------------------------------------------

BROWSER_LINK = "training?preset=tiny&budget=Time%20budget&seconds=300&seed=3"


@pytest.mark.browser
def test_train_watch_stop_and_use_it_on_next_token_in_the_browser(page, app_url):
    """A few seconds of the tiny preset on Botchan: the curve and the sample update while it
    trains, Stop keeps the model so far, and Use this model puts it in the Next-Token picker."""
    open_page(page, app_url, BROWSER_LINK)
    page.get_by_role("button", name="Train").click()
    sample_heading = page.get_by_text(re.compile(r"^A sample at step [\d,]+"))
    sample_heading.first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for()
    first = sample_heading.first.inner_text()
    # Live: a later checkpoint replaces the first while the run goes on (no click, no reload).
    page.wait_for_function(
        """first => [...document.querySelectorAll("[data-testid='stMarkdownContainer']")]
            .some(e => /^A sample at step [\\d,]+/.test(e.innerText) && e.innerText !== first)""",
        arg=first,
        timeout=120_000,
    )
    assert page.get_by_text(re.compile(r"tokens/s · about [\d,]+ s left")).count() == 1
    page.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile(r"Stopped after [\d,]+ steps")).wait_for(timeout=60_000)
    wait_for_app(page)
    no_exception(page)
    page.get_by_role("button", name="Use this model").click()
    page.get_by_text("In the pickers of Next-Token, Decoding and Architecture").wait_for()
    # Inside the same session: the page's own link to Next-Token (a new address would be a new
    # session, without the model).
    page.get_by_role("link", name=re.compile("the Next-Token page")).click()
    page.get_by_role("heading", name="Next-Token").first.wait_for(timeout=120_000)
    wait_for_app(page, timeout=240_000)
    page.get_by_role("combobox", name="Model").first.click()
    page.get_by_role("option", name=re.compile(r"Your tiny GPT .*\(yours\)")).wait_for()
    no_exception(page)
