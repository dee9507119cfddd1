"""Share and save in a real browser: a copied link and a settings file reproduce the same text;
tables, charts and settings download; a hostile link runs no script."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from browser_helpers import no_exception, wait_for_app
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

LINK = {
    "prompt": "The best thing about autumn is",
    "model": "smollm2-135m-instruct",
    "template": "0",
    "precision": "float32",
    "strategy": "top_p",
    "max_new_tokens": "6",
    "seed": "7",
    "temperature": "0.9",
}


def generate_and_download_tokens(page, tmp_path, name: str) -> list[dict[str, str]]:
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Step explorer").wait_for(timeout=180_000)
    wait_for_app(page, timeout=180_000)
    no_exception(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Tokens as CSV").click()
    path = tmp_path / name
    download.value.save_as(path)
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def open_share_link(page) -> str:
    page.get_by_role("button", name="Copy link").click()
    code = page.locator("[data-testid='stPopoverBody'] code").first
    code.wait_for()
    link = code.inner_text().strip()
    page.keyboard.press("Escape")
    return link


def test_a_copied_link_and_a_settings_file_give_the_same_text(
    browser, page, app_url, tmp_path, screenshots_dir
):
    page.goto(f"{app_url}/decoding?{urlencode(LINK)}")
    wait_for_app(page)
    no_exception(page)
    expect(page.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(LINK["prompt"])
    first = generate_and_download_tokens(page, tmp_path, "first.csv")
    assert len(first) == 6 and all(row["id"].isdigit() for row in first)

    # The link in the share box is the address bar's link, and holds every changed input.
    link = open_share_link(page)
    assert link.startswith(f"{app_url}/decoding?")
    assert parse_qs(urlsplit(link).query) == parse_qs(urlsplit(page.url).query)
    assert {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()} == LINK

    with page.expect_download() as download:
        page.get_by_role("button", name="Download settings").click()
    settings_path = tmp_path / "settings.json"
    download.value.save_as(settings_path)
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    assert settings["page"] == "decoding" and settings["settings"]["seed"] == 7

    with page.expect_download() as download:
        page.get_by_role("button", name="Chart as HTML").first.click()
    chart_path = tmp_path / "chart.html"
    download.value.save_as(chart_path)
    assert "Plotly.newPlot" in chart_path.read_text(encoding="utf-8")

    # PNG comes from the chart's own toolbar (the camera icon).
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.hover()
    with page.expect_download() as download:
        chart.get_by_role("button", name="Download plot as a PNG").click()
    png_path = tmp_path / "chart.png"
    download.value.save_as(png_path)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert download.value.suggested_filename.startswith("decoding-step-1-candidates")

    # Another student opens the link: the same view and, with the seed, the same tokens.
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        other.goto(link)
        wait_for_app(other)
        expect(other.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(
            LINK["prompt"]
        )
        assert generate_and_download_tokens(other, tmp_path, "second.csv") == first
    finally:
        other.context.close()

    # A third opens the plain page and loads the settings file instead.
    third = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        third.goto(f"{app_url}/decoding")
        wait_for_app(third)
        assert (
            third.get_by_role("textbox", name="Prompt", exact=True).input_value() != LINK["prompt"]
        )
        third.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(settings_path)
        third.get_by_text("Settings loaded from the file.").wait_for()
        wait_for_app(third)
        expect(third.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(
            LINK["prompt"]
        )
        assert generate_and_download_tokens(third, tmp_path, "third.csv") == first
        third.screenshot(path=str(screenshots_dir / "decoding-shared.png"), full_page=True)
    finally:
        third.context.close()


def test_a_hostile_link_shows_notices_and_runs_no_script(page, app_url):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = {
        "model": "<script>alert(1)</script>",
        "prompt": '<img src=x onerror="alert(2)"> [click](javascript:alert(3))',
        "temperature": "NaN",
        "seed": "-1",
    }
    page.goto(f"{app_url}/decoding?{urlencode(hostile)}")
    wait_for_app(page)
    page.get_by_text("seed in the link").wait_for()
    no_exception(page)
    alerts = page.locator("[data-testid='stAlert']")
    texts = " ".join(alerts.all_inner_texts())
    assert "model in the link" in texts and "seed in the link" in texts
    # The prompt is text: it is kept, shown in the text box, and never becomes markup.
    expect(page.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(
        hostile["prompt"], timeout=30_000
    )
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == []
    # The address bar now holds what the page really uses: the refused values are gone.
    kept = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert kept.pop("precision") in ("float32", "bfloat16")  # measured here: always named
    assert kept == {"prompt": hostile["prompt"], "model": "gemma-3-270m"}


def test_a_bad_settings_file_is_refused_and_the_page_keeps_working(page, app_url, tmp_path):
    page.goto(f"{app_url}/decoding")
    wait_for_app(page)
    bad = tmp_path / "not-settings.json"
    bad.write_text('{"format": "llmlab-settings", "version": 1, "page": "tokenizers"}')
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(bad)
    page.get_by_text("This file holds settings of the").wait_for()
    no_exception(page)
    assert page.get_by_role("button", name="Generate").is_enabled()
