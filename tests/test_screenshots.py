"""A screenshot of each page, as a reader sees it, for the README.

`make screenshots` runs this module with LLMLAB_SCREENSHOTS=docs/screenshots and so refreshes the
pictures in the repository; `make test` runs it too, into a temporary folder. Each page is opened
at 1400 px wide, with its default inputs (plain English: the headless browser has no emoji font),
left to finish (Decoding and Chat vs Base after a short greedy run; Embeddings on its Map tab;
Training after 15 s of its smallest model),
and saved as a PNG of at most MAX_HEIGHT px, reduced to a 256-colour palette so the files stay
small.
"""

from __future__ import annotations

import re

import pytest
from browser_helpers import no_exception, wait_for_app

pytestmark = pytest.mark.browser

WIDTH = 1400
MAX_HEIGHT = 1800
MAX_BYTES = 400_000
RUN_TIMEOUT = 240_000  # a first run may convert or load a model


def _content_height(page) -> int:
    """Height of the page's content once it stops growing (tables and charts arrive late).

    Streamlit scrolls inside its main container, not the document, so that is what is measured.
    """
    measure = """() => Math.max(...Array.from(
        document.querySelectorAll("[data-testid='stMain'], [data-testid='stAppViewContainer']"),
        element => element.scrollHeight))"""
    height = page.evaluate(measure)
    for _ in range(20):
        page.wait_for_timeout(300)
        again = page.evaluate(measure)
        if again == height:
            break
        height = again
    return height


def _save(page, folder, name: str) -> None:
    from PIL import Image

    no_exception(page)
    height = min(max(_content_height(page), 900), MAX_HEIGHT)
    page.set_viewport_size({"width": WIDTH, "height": height})
    wait_for_app(page)
    page.wait_for_timeout(500)  # let charts finish their resize after the viewport change
    path = folder / name
    page.screenshot(path=str(path), animations="disabled")
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    with Image.open(path) as saved:
        assert saved.size == (WIDTH, height)
    assert path.stat().st_size < MAX_BYTES, f"{name}: {path.stat().st_size} bytes"


def _open(page, app_url: str, path: str, heading: str) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    page.goto(f"{app_url}/{path}".rstrip("/"))
    wait_for_app(page, timeout=RUN_TIMEOUT)
    page.get_by_role("heading", name=heading).first.wait_for()


@pytest.mark.parametrize(
    ("path", "heading", "name"),
    [
        ("", "LLM Lab", "home.png"),
        ("tokenizers", "Tokenizers", "tokenizers.png"),
        ("architecture", "Architecture", "architecture.png"),
        ("next_token", "Next-Token", "next_token.png"),
    ],
)
def test_page_as_it_opens(page, app_url, screenshots_dir, path, heading, name):
    _open(page, app_url, path, heading)
    page.locator(
        ".js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stTable']"
    ).first.wait_for()
    _save(page, screenshots_dir, name)


def test_embeddings_map_of_the_corpus(page, app_url, screenshots_dir):
    _open(page, app_url, "embeddings?tab=Map", "Embeddings")
    page.locator(".js-plotly-plot").first.wait_for(timeout=RUN_TIMEOUT)
    wait_for_app(page, timeout=RUN_TIMEOUT)
    _save(page, screenshots_dir, "embeddings.png")


def test_decoding_after_a_short_greedy_run(page, app_url, screenshots_dir):
    _open(page, app_url, "decoding?strategy=greedy&max_new_tokens=16", "Decoding")
    page.get_by_role("button", name="Generate").click()
    page.get_by_role("heading", name=re.compile(r"^Result")).wait_for(timeout=RUN_TIMEOUT)
    wait_for_app(page, timeout=RUN_TIMEOUT)
    _save(page, screenshots_dir, "decoding.png")


def test_chat_vs_base_after_a_short_run(page, app_url, screenshots_dir):
    _open(page, app_url, "chat_vs_base?max_new_tokens=16", "Chat vs Base")
    page.get_by_role("button", name="Run both models").click()
    outputs = page.get_by_text(re.compile(r"^\d+ tokens"))
    outputs.nth(1).wait_for(timeout=RUN_TIMEOUT)  # one caption under each model's output
    wait_for_app(page, timeout=RUN_TIMEOUT)
    _save(page, screenshots_dir, "chat_vs_base.png")


def test_training_after_a_short_run(page, app_url, screenshots_dir):
    _open(page, app_url, "training?preset=tiny&seconds=15", "Training")
    page.get_by_role("button", name="Train").click()
    try:
        page.get_by_text(re.compile(r"Trained for [\d,]+ steps")).wait_for(timeout=RUN_TIMEOUT)
    except Exception:
        page.screenshot(path=str(screenshots_dir / "training-failed.png"), full_page=True)
        raise
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=RUN_TIMEOUT)
    wait_for_app(page, timeout=RUN_TIMEOUT)
    _save(page, screenshots_dir, "training.png")
