"""Many students, one server: N browser sessions run greedy decoding at the same moment.

Starts the real app with `streamlit run` on a free loopback port, then for each N drives N
headless Chromium sessions (one browser, N contexts, Playwright's async API) that each open
the Decoding page, pick SmolLM2 in float32, set "Max new tokens" to 16, press Generate and wait
for the text. Prints, per N: how many sessions finished, the median and 95th-percentile latency
(click to finished text), the server's peak RSS, and whether every greedy text equals the
single-user one. Bounded: every session has a time limit and the server is stopped at the end.

    .venv/bin/python bench/load.py [--sessions 1 4 8 16] [--tokens 16] [--timeout 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ would come first on the path (bench/tokenizers.py would hide the
# `tokenizers` library): put the project root there instead.
sys.path[0] = str(ROOT)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
]
DONE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RESULT = "[data-testid='stMarkdown'] div[style*='pre-wrap'] b"


@dataclass
class Outcome:
    ok: bool
    seconds: float
    text: str = ""
    error: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"streamlit did not start; log:\n{log_path.read_text()[-2000:]}")


def rss(process: psutil.Process) -> int:
    """Resident memory of the server and any children it started."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


async def watch_rss(process: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss(process))
        await asyncio.sleep(0.2)


async def one_session(browser: Browser, url: str, tokens: int, timeout_s: float) -> Outcome:
    """Open /decoding, choose SmolLM2 + float32 + `tokens` new tokens, Generate, read the text."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    ms = int(timeout_s * 1000)
    # Every step waits as long as a session may take (Playwright's own default is 30 s): on two
    # busy cores a widget can take longer than that to appear, and a student would wait for it.
    page.set_default_timeout(ms)
    start = time.perf_counter()
    try:
        await page.goto(f"{url}/decoding", timeout=ms)
        await page.wait_for_selector(DONE, timeout=ms)
        model_box = page.get_by_test_id("stSelectbox").filter(has_text="Model").first
        if "SmolLM2" not in await model_box.inner_text():
            await model_box.click()
            await page.get_by_role("option", name=re.compile("SmolLM2")).first.click()
            await page.wait_for_selector(DONE, timeout=ms)
        await page.get_by_text("float32 · exact").click()
        await page.wait_for_selector(DONE, timeout=ms)
        slider = page.get_by_role("slider").first  # "Max new tokens", 1..512
        await slider.focus()
        await page.keyboard.press("Home")
        for _ in range(tokens - 1):
            await page.keyboard.press("ArrowRight")
        await slider_reaches(slider, tokens, timeout_s)
        await page.wait_for_selector(DONE, timeout=ms)
        clicked = time.perf_counter()
        await page.get_by_role("button", name="Generate").click()
        await page.locator(RESULT).first.wait_for(timeout=ms)
        seconds = time.perf_counter() - clicked
        text = await page.locator(RESULT).first.inner_text()
        if await page.locator("[data-testid='stException']").count():
            return Outcome(False, seconds, text, "exception shown")
        return Outcome(True, seconds, text)
    except Exception as error:  # noqa: BLE001 - a failed session is counted, not fatal
        return Outcome(
            False, time.perf_counter() - start, error=f"{type(error).__name__}: {str(error)[:300]}"
        )
    finally:
        await context.close()


async def slider_reaches(slider, value: int, timeout_s: float) -> None:
    """Wait until the slider shows `value` (aria-valuenow, or the value of a range input)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        now = await slider.get_attribute("aria-valuenow") or await slider.input_value()
        if now == str(value):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the slider did not reach {value}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="llmlab-load-")) / "server.log"
    server = start_server(port, log_path)
    proc = psutil.Process(server.pid)
    rows = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # Warm-up (not counted): the first session loads the model into the shared cache.
            warm = await one_session(browser, url, args.tokens, args.timeout)
            if not warm.ok:
                raise SystemExit(f"warm-up session failed ({warm.error}); log: {log_path}")
            reference = warm.text
            print(f"warm-up: {warm.seconds:.1f} s, greedy text {reference!r}", flush=True)
            for n in args.sessions:
                peak, stop = [rss(proc)], asyncio.Event()
                watcher = asyncio.create_task(watch_rss(proc, peak, stop))
                started = time.perf_counter()
                outcomes = await asyncio.gather(
                    *(one_session(browser, url, args.tokens, args.timeout) for _ in range(n))
                )
                wall = time.perf_counter() - started
                stop.set()
                await watcher
                done = [o for o in outcomes if o.ok]
                times = [o.seconds for o in done]
                same = sum(o.text == reference for o in done)
                errors = sorted({o.error for o in outcomes if not o.ok})
                rows.append((n, len(done), times, peak[0], same, wall, errors))
                print(f"N={n}: {len(done)}/{n} done in {wall:.1f} s {errors or ''}", flush=True)
            await browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"\nSmolLM2-135M float32, greedy, {args.tokens} new tokens, {os.cpu_count()} CPU cores")
    print("| N | completed | median s | p95 s | wall s | peak RSS (server) | same greedy text |")
    print("|---|---|---|---|---|---|---|")
    for n, ok, times, peak_rss, same, wall, _ in rows:
        median = f"{statistics.median(times):.1f}" if times else "-"
        high = f"{p95(times):.1f}" if times else "-"
        print(
            f"| {n} | {ok}/{n} ({100 * ok / n:.0f}%) | {median} | {high} | {wall:.1f} | "
            f"{peak_rss / 2**30:.2f} GB | {same}/{ok} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per session")
    args = parser.parse_args()
    if any(n < 1 or n > 64 for n in args.sessions) or not 1 <= args.tokens <= 64:
        parser.error("--sessions must be 1..64 each and --tokens 1..64")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
