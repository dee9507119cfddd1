"""Helpers for the browser tests (Playwright pages against `streamlit run`)."""

from __future__ import annotations

from pathlib import Path


def wait_for_app(page, timeout: int = 120_000) -> None:
    """Wait until Streamlit has run the page script to the end.

    The app root carries `data-test-script-state`: "initial" before the first run, "running"
    while the script runs, "notRunning" when it is done. After a widget change, prefer waiting
    for the expected content, since the change may not have started a run yet.
    """
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout
    )
    page.wait_for_selector("[data-testid='stMain']", timeout=timeout)


def open_page(page, base_url: str, path: str = "") -> None:
    page.goto(f"{base_url}/{path}".rstrip("/"))
    wait_for_app(page)


def no_exception(page) -> None:
    """Fail when Streamlit shows an exception box on the page."""
    boxes = page.locator("[data-testid='stException']")
    assert boxes.count() == 0, "\n\n".join(boxes.all_inner_texts())


# AppTest resolves relative paths against the calling file, so tests use this absolute path.
APP_PATH = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
