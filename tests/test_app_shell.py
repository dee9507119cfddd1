"""The app shell: every page renders without an exception, in AppTest and in a real browser."""

from __future__ import annotations

import pytest
from browser_helpers import APP_PATH, no_exception, wait_for_app
from streamlit.testing.v1 import AppTest

PAGES = {
    "app_pages/home.py": ("", "LLM Lab"),
    "app_pages/tokenizers.py": ("tokenizers", "Tokenizers"),
    "app_pages/architecture.py": ("architecture", "Architecture"),
    "app_pages/next_token.py": ("next_token", "Next-Token"),
    "app_pages/decoding.py": ("decoding", "Decoding"),
    "app_pages/chat_vs_base.py": ("chat_vs_base", "Chat vs Base"),
    "app_pages/embeddings.py": ("embeddings", "Embeddings"),
    "app_pages/training.py": ("training", "Training"),
    "app_pages/class.py": ("class", "Class"),
}


@pytest.fixture(scope="module")
def app():
    return AppTest.from_file(APP_PATH, default_timeout=300).run()


def test_home_lists_models_and_packs(app):
    assert not app.exception
    assert app.title[0].value == "LLM Lab"
    frames = [table.value for table in app.table]
    models_table = frames[0]
    packs_table = next(frame for frame in frames if "pack" in frame.columns)
    assert set(models_table["name"]) >= {"gemma-3-270m", "smollm2-135m-instruct", "gpt2"}
    assert set(models_table.loc[models_table["source"] == "offline pack", "status"]) == {"ready"}
    assert "Offline packs." in " ".join(box.value for box in app.success)
    assert set(packs_table["status"]) == {"verified"}


@pytest.mark.parametrize("script", list(PAGES))
def test_every_page_renders_without_exception(app, script):
    app.switch_page(script).run()
    assert not app.exception, app.exception
    assert app.title[0].value == PAGES[script][1]


@pytest.mark.browser
def test_every_page_opens_in_a_real_browser(page, app_url, screenshots_dir):
    for path, title in PAGES.values():
        page.goto(f"{app_url}/{path}")
        wait_for_app(page)
        page.get_by_role("heading", name=title).first.wait_for()
        no_exception(page)
    page.goto(app_url)
    wait_for_app(page)
    page.screenshot(path=str(screenshots_dir / "shell-home.png"), full_page=True)
