"""Many students, one server: N browser sessions press Generate at the same moment.

Starts the real app with `streamlit run` on a free loopback port, then for each N drives N
headless Chromium sessions (one browser, N contexts, Playwright's async API) that each open the
Decoding page from a link (SmolLM2 in float32, 16 new tokens, greedy), wait until every page is
ready, then all press Generate together and wait for the text. Prints, per N: how many sessions
finished, the median and 95th-percentile latency (click to finished text), the server's peak
RSS, and whether every greedy text equals the single-user one; then, for one student at a time
(three fresh tabs, at `--tokens` and at the page's default of 40 new tokens), the rate the page
reports beside the library's own rate for the same request. Bounded: every session has
a time limit and the server is stopped at the end.

On two cores the browsers share the CPU with the server: `bench/serving.py` measures the same
requests in-process, without them.

    .venv/bin/python bench/load.py [--sessions 1 4 8 16 32] [--tokens 16] [--timeout 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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
from urllib.parse import urlencode

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
CAPTION = re.compile(r"(\d+) tokens? in ([\d.]+) s")
SPEED = re.compile(r"\(([\d.]+) tokens a second\)")  # from the unrounded time
PROMPT = "Once upon a time"
PAGE_DEFAULT_TOKENS = 40  # the Decoding page's own "Max new tokens"
REPEATS = 3  # single-student rates: the median of this many runs


@dataclass
class Outcome:
    ok: bool
    seconds: float
    text: str = ""
    error: str = ""
    page_rate: float = 0.0  # tokens/s from the page's caption ("16 tokens in 0.9 s")
    clicked: float = 0.0  # time.perf_counter() at the click (the text was there `seconds` later)


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


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds used so far by these processes (gone ones count as 0)."""
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def cpu_split(server: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of the server (with its children) and of the browsers (every other
    process this benchmark started: Playwright's driver and Chromium's processes)."""
    served = [server, *server.children(recursive=True)]
    ids = {proc.pid for proc in served}
    others = [p for p in psutil.Process().children(recursive=True) if p.pid not in ids]
    return cpu_seconds(served), cpu_seconds(others)


async def watch_rss(process: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss(process))
        await asyncio.sleep(0.2)


async def open_session(browser: Browser, url: str, tokens: int, timeout_s: float):
    """A student's tab on the Decoding page, opened from a link: SmolLM2, float32, `tokens`
    new tokens, greedy, the template off. Returns (context, page) once the page is ready."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    # Every step waits as long as a session may take (Playwright's own default is 30 s): on two
    # busy cores a page can take longer than that to appear, and a student would wait for it.
    page.set_default_timeout(int(timeout_s * 1000))
    query = urlencode(
        {"model": "smollm2-135m-instruct", "precision": "float32", "template": "0",
         "strategy": "greedy", "max_new_tokens": str(tokens), "prompt": PROMPT}
    )  # fmt: skip
    await page.goto(f"{url}/decoding?{query}")
    await page.wait_for_selector(DONE)
    await page.get_by_role("button", name="Generate").wait_for()
    return context, page


async def press_generate(page, timeout_s: float) -> Outcome:
    """Click Generate, wait for the text; the latency and the rate the page itself reports."""
    clicked = time.perf_counter()
    try:
        await page.get_by_role("button", name="Generate").click()
        await page.locator(RESULT).first.wait_for()
        seconds = time.perf_counter() - clicked
        text = await page.locator(RESULT).first.inner_text()
        caption = await page.get_by_text(CAPTION).first.inner_text()
        found = CAPTION.search(caption)
        rate = int(found.group(1)) / float(found.group(2)) if found and float(found.group(2)) else 0
        if speed := SPEED.search(caption):
            rate = float(speed.group(1))
        if await page.locator("[data-testid='stException']").count():
            return Outcome(False, seconds, text, "exception shown")
        return Outcome(True, seconds, text, page_rate=rate, clicked=clicked)
    except Exception as error:  # noqa: BLE001 - a failed session is counted, not fatal
        seconds = time.perf_counter() - clicked
        return Outcome(False, seconds, error=f"{type(error).__name__}: {str(error)[:300]}")


async def one_round(
    browser: Browser,
    url: str,
    n: int,
    tokens: int,
    timeout_s: float,
    server: psutil.Process | None,
):
    """N students open the page, then all press Generate at the same moment. Returns the
    outcomes and the CPU seconds the server and the browsers used from the clicks to the end."""
    opened = await asyncio.gather(
        *(open_session(browser, url, tokens, timeout_s) for _ in range(n)),
        return_exceptions=True,
    )
    ready = [item for item in opened if not isinstance(item, BaseException)]
    failed = [
        Outcome(False, 0.0, error=f"page did not open: {type(item).__name__}")
        for item in opened
        if isinstance(item, BaseException)
    ]
    before = cpu_split(server) if server else (0.0, 0.0)
    try:
        outcomes = await asyncio.gather(*(press_generate(p, timeout_s) for _, p in ready))
        after = cpu_split(server) if server else (0.0, 0.0)
    finally:
        for context, _ in ready:
            await context.close()
    used = (after[0] - before[0], after[1] - before[1])
    return [*outcomes, *failed], used


async def page_rates(
    browser: Browser, url: str, tokens: int, timeout_s: float
) -> tuple[list[float], list[float]]:
    """One student at a time, each in a fresh tab: the rate the page reports, `REPEATS` times,
    and the idle seconds before each click (since the last text was there: the new tab opens)."""
    rates, idle = [], []
    last = time.perf_counter()
    for _ in range(REPEATS):
        (outcome,), _ = await one_round(browser, url, 1, tokens, timeout_s, None)
        if not outcome.ok:
            raise SystemExit(f"a single session failed ({outcome.error})")
        rates.append(outcome.page_rate)
        idle.append(outcome.clicked - last)
        last = outcome.clicked + outcome.seconds
    return rates, idle


@functools.cache
def _library_model():
    from llmlab import models

    return models.load("smollm2-135m-instruct", dtype="float32")


def library_rates(tokens: int, idle: list[float] | None = None) -> list[float]:
    """The same request in this process, through the library alone: tokens per second,
    `REPEATS` times after a warm-up, back to back or each after the given idle seconds.

    Idle matters on this machine: the first passes after a few idle seconds are slower (SmolLM2,
    one row: about 100 ms for the first pass instead of 55, after 6 s asleep), and the engine's
    thread has ended after 5 s. A student's click comes after such a pause (the tab opening),
    so the page is compared with the library after the same pauses."""
    from llmlab.generation import decoding

    loaded = _library_model()
    decoding.generate(loaded, PROMPT, max_new_tokens=tokens)  # warm-up
    rates = []
    for pause in idle or [0.0] * REPEATS:
        time.sleep(pause)
        result = decoding.generate(loaded, PROMPT, max_new_tokens=tokens)
        rates.append(len(result.new_ids) / result.seconds)
    return rates


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
            (warm,), _ = await one_round(browser, url, 1, args.tokens, args.timeout, proc)
            if not warm.ok:
                raise SystemExit(f"warm-up session failed ({warm.error}); log: {log_path}")
            reference = warm.text
            print(f"warm-up: {warm.seconds:.1f} s, greedy text {reference!r}", flush=True)
            for n in args.sessions:
                peak, stop = [rss(proc)], asyncio.Event()
                watcher = asyncio.create_task(watch_rss(proc, peak, stop))
                started = time.perf_counter()
                outcomes, used = await one_round(browser, url, n, args.tokens, args.timeout, proc)
                wall = time.perf_counter() - started
                stop.set()
                await watcher
                done = [o for o in outcomes if o.ok]
                same = sum(o.text == reference for o in done)
                errors = sorted({o.error for o in outcomes if not o.ok})
                rows.append((n, done, peak[0], same, errors, used))
                print(f"N={n}: {len(done)}/{n} done in {wall:.1f} s {errors or ''}", flush=True)
            lengths = sorted({args.tokens, PAGE_DEFAULT_TOKENS})
            pages = {t: await page_rates(browser, url, t, args.timeout) for t in lengths}
            await browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"\nSmolLM2-135M float32, greedy, {args.tokens} new tokens, {os.cpu_count()} CPU cores")
    print("Latency: from the Generate click (all N at once) to the finished text in the page.")
    print(
        "CPU: seconds of CPU from the clicks to the last text, used by the server and by the "
        "browsers (Chromium and its driver), which share the same cores here."
    )
    print(
        "| N | completed | median s | p95 s | peak RSS (server) | same greedy text "
        "| server CPU s | browsers CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, done, peak_rss, same, _, (server_cpu, browser_cpu) in rows:
        times = [o.seconds for o in done]
        median = f"{statistics.median(times):.1f}" if times else "-"
        high = f"{p95(times):.1f}" if times else "-"
        print(
            f"| {n} | {len(done)}/{n} ({100 * len(done) / n:.0f}%) | {median} | {high} | "
            f"{peak_rss / 2**30:.2f} GB | {same}/{len(done)} | {server_cpu:.1f} | "
            f"{browser_cpu:.1f} |"
        )
    print(
        f"\nOne student at a time, each in a fresh tab, greedy: the rate the page reports against "
        f"the library alone on the same request in this process (medians of {REPEATS} runs; "
        f"{PAGE_DEFAULT_TOKENS} tokens is the page's default length)."
    )
    print(
        "The library runs each after the same idle pause as the page's click had (the new tab "
        "opening), and also back to back."
    )
    print(
        "| new tokens | idle before each click | the page (tokens/s) | the library after the "
        "same pauses | page / library | the library back to back | page / back to back |"
    )
    print("|---|---|---|---|---|---|---|")
    for tokens, (rates, idle) in pages.items():
        page = statistics.median(rates)
        paused = statistics.median(library_rates(tokens, idle))
        warm = statistics.median(library_rates(tokens))
        pauses = ", ".join(f"{pause:.1f}" for pause in idle)
        print(
            f"| {tokens} | {pauses} s | {page:.1f} | {paused:.1f} | {page / paused:.2f}x | "
            f"{warm:.1f} | {page / warm:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per session")
    args = parser.parse_args()
    if any(n < 1 or n > 64 for n in args.sessions) or not 1 <= args.tokens <= 64:
        parser.error("--sessions must be 1..64 each and --tokens 1..64")
    asyncio.run(run(args))


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
