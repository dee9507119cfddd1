"""The server's memory, page by page: the real app in headless Chromium, one or more visitors.

Starts `streamlit run streamlit_app.py` on a free loopback port (its own class database in a
temporary folder) and drives headless Chromium through every page: Home, Tokenizers,
Architecture, Next-Token, Decoding (Generate), Chat vs Base (Compare, then a Chat message),
Embeddings (a semantic search), Training (about 20 s of the smallest model) and Class (a
teacher starts a class, a student answers a round, the teacher reveals it). A thread samples
the server's RSS every 50 ms; after each action the table shows the RSS then, the highest
sample so far, and the kernel's own high-water mark (`VmHWM` in /proc/<pid>/status), which
also catches a peak between two samples.

With `--visitors 4`, four visitors go through the same steps at the same moment; a row is
printed when the last of them has finished the step. `--limit-gb 2.7` starts the server with
LLMLAB_MEMORY_LIMIT_GB=2.7 (Streamlit Community Cloud's memory for one app). The goals are
printed beside the figures: at 2.7 GB, a peak of at most 2.4 GB for one visitor and 2.7 GB for
four, with every page working.

    .venv/bin/python bench/memory.py [--visitors 1] [--limit-gb 2.7] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ would come first on the path (bench/tokenizers.py would hide the
# `tokenizers` library): put the project root there instead.
sys.path[0] = str(ROOT)
from bench.load import CHROMIUM, CHROMIUM_ARGS, DONE  # noqa: E402 - one browser setup

MB = 1024**2
GOALS_GB = {1: 2.4, 4: 2.7}  # the peak allowed at LLMLAB_MEMORY_LIMIT_GB=2.7


class Sampler:
    """The server's RSS every `interval` seconds in a thread, and the highest value seen."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        with contextlib.suppress(psutil.Error):
            return int(self.process.memory_info().rss)
        return 0

    def high_water_mark(self) -> int:
        """The kernel's high-water mark of the server's RSS (VmHWM, in kB)."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    page: str
    action: str
    rss: int
    peak: int
    hwm: int
    ok: int  # visitors for whom the step worked
    visitors: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, folder: Path, limit_gb: float | None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env["LLMLAB_DATABASE_URL"] = f"sqlite:///{folder / 'classes.db'}"
    env.pop("LLMLAB_MEMORY_LIMIT_GB", None)
    if limit_gb is not None:
        env["LLMLAB_MEMORY_LIMIT_GB"] = str(limit_gb)
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    log_path = folder / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"streamlit did not start; log:\n{log_path.read_text()[-2000:]}")


# --- what a visitor does ---------------------------------------------------------------------


async def ready(page: Page) -> None:
    await page.wait_for_selector(DONE)
    await page.wait_for_selector("[data-testid='stMain']")


async def open_page(page: Page, url: str, path: str, heading: str) -> None:
    await page.goto(f"{url}/{path}".rstrip("/"))
    await ready(page)
    await page.get_by_role("heading", name=heading).first.wait_for()


async def check(page: Page) -> None:
    """Fail on an exception box or an error message (a refused load shows one)."""
    boxes = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
    if await boxes.count():
        texts = await boxes.all_inner_texts()
        raise RuntimeError(" | ".join(t.strip()[:300] for t in texts))


async def home(page: Page, url: str) -> None:
    await open_page(page, url, "", "LLM Lab")


async def tokenizers(page: Page, url: str) -> None:
    await open_page(page, url, "tokenizers", "Tokenizers")


async def architecture(page: Page, url: str) -> None:
    await open_page(page, url, "architecture", "Architecture")
    await page.locator(".js-plotly-plot, [data-testid='stTable']").first.wait_for()


async def next_token(page: Page, url: str) -> None:
    await open_page(page, url, "next_token", "Next-Token")
    await page.locator(".js-plotly-plot").first.wait_for()


async def decoding(page: Page, url: str) -> None:
    await open_page(page, url, "decoding?strategy=greedy&max_new_tokens=16", "Decoding")
    await page.get_by_role("button", name="Generate").click()
    await page.get_by_role("heading", name=re.compile(r"^Result")).wait_for()
    await ready(page)


async def compare(page: Page, url: str) -> None:
    await open_page(page, url, "chat_vs_base?max_new_tokens=16", "Chat vs Base")
    await page.get_by_role("button", name="Run both models").click()
    await page.get_by_text(re.compile(r"^\d+ tokens")).nth(1).wait_for()
    await ready(page)


async def chat(page: Page, url: str) -> None:
    await page.get_by_role("tab", name="Chat", exact=True).click()
    box = page.locator("[data-testid='stChatInput'] textarea")
    await box.fill("What is 2+2?")
    await box.press("Enter")
    messages = page.locator("[data-testid='stChatMessage']")
    await messages.nth(1).wait_for()
    await ready(page)
    await page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stChatInput'] textarea\").disabled"
    )


async def embeddings(page: Page, url: str) -> None:
    query = "embeddings?tab=Semantic+search&query=a+trip+abroad+by+plane"
    await open_page(page, url, query, "Embeddings")
    await page.locator("[data-testid='stDataFrame']").first.wait_for()
    await ready(page)


async def training(page: Page, url: str) -> None:
    await open_page(page, url, "training?preset=tiny&seconds=20", "Training")
    await page.get_by_role("button", name="Train").click()
    await page.get_by_text(re.compile(r"Trained for [\d,]+ steps")).wait_for()
    await ready(page)


async def class_round(page: Page, url: str) -> None:
    """A teacher starts a class and opens a round; a student (a second tab) guesses; the teacher
    reveals the model's answer."""
    await page.goto(f"{url}/class")
    await ready(page)
    await page.get_by_role("textbox", name="Title (optional)").fill("Memory")
    await page.get_by_role("button", name="Start a class").click()
    await page.wait_for_url(re.compile(r"key="))
    await page.get_by_text("Scan to join").wait_for()
    code = re.search(r"code=([^&]+)", page.url).group(1)  # type: ignore[union-attr]
    await page.get_by_text("Guess the next token", exact=True).click()
    await ready(page)
    await page.get_by_role("button", name="Open the round").click()
    await page.get_by_text("0 of 0 students answered").wait_for()
    student = await page.context.new_page()
    await student.goto(f"{url}/class?code={code}")
    await ready(student)
    await student.get_by_role("textbox", name="Your name (optional)").fill("Ada")
    await student.get_by_role("button", name="Join").click()
    await student.get_by_text("You are Ada").wait_for()
    await student.get_by_role("textbox", name="Your guess").fill("Paris")
    await student.get_by_role("button", name="Send my guess").click()
    await student.get_by_text("Your answer is in: Paris").wait_for()
    await page.get_by_text("1 of 1 students answered").wait_for()  # the view refreshes itself
    await page.get_by_role("button", name="Reveal").click()
    await page.get_by_text(re.compile(r"guessed it")).wait_for()
    await ready(page)
    await check(student)
    await student.close()


STEPS: list[tuple[str, str, Callable[[Page, str], Awaitable[None]]]] = [
    ("Home", "open", home),
    ("Tokenizers", "open", tokenizers),
    ("Architecture", "open", architecture),
    ("Next-Token", "open", next_token),
    ("Decoding", "Generate", decoding),
    ("Chat vs Base", "Compare", compare),
    ("Chat vs Base", "a Chat message", chat),
    ("Embeddings", "a semantic search", embeddings),
    ("Training", "Train (20 s)", training),
    ("Class", "a round, revealed", class_round),
]


async def visitor(
    browser, url: str, timeout_s: float, barrier: asyncio.Barrier, log: list[tuple[int, str]]
) -> None:
    """One visitor's tab through every step; waits at `barrier` after each step so that the
    visitors start every step together. Appends (step, error) for a step that failed."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(timeout_s * 1000)
    page = await context.new_page()
    try:
        for index, (_, _, step) in enumerate(STEPS):
            try:
                await step(page, url)
                await check(page)
            except Exception as error:  # noqa: BLE001 - a failed step is reported, not fatal
                log.append((index, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"))
            await barrier.wait()
    finally:
        await context.close()


async def run(args: argparse.Namespace) -> tuple[list[Row], Row]:
    folder = Path(tempfile.mkdtemp(prefix="llmlab-memory-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, folder, args.limit_gb)
    rows: list[Row] = []
    try:
        with Sampler(server.pid) as sampler:
            start = Row("(server started)", "-", sampler.rss(), sampler.peak,
                        sampler.high_water_mark(), args.visitors, args.visitors, 0.0)  # fmt: skip
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                failures: list[tuple[int, str]] = []
                step_done: list[float] = []
                barrier = asyncio.Barrier(args.visitors + 1)
                tasks = [
                    asyncio.create_task(visitor(browser, url, args.timeout, barrier, failures))
                    for _ in range(args.visitors)
                ]
                began = time.perf_counter()
                for index, (name, action, _) in enumerate(STEPS):
                    await barrier.wait()  # every visitor has finished step `index`
                    step_done.append(time.perf_counter())
                    errors = [e for i, e in failures if i == index]
                    row = Row(
                        name, action, sampler.rss(), sampler.peak, sampler.high_water_mark(),
                        args.visitors - len(errors), args.visitors,
                        step_done[-1] - (step_done[-2] if index else began), errors,
                    )  # fmt: skip
                    rows.append(row)
                    print(
                        f"{name} / {action}: RSS {row.rss / MB:,.0f} MB, peak "
                        f"{row.peak / MB:,.0f} MB, VmHWM {row.hwm / MB:,.0f} MB, "
                        f"{row.ok}/{row.visitors} ok {errors or ''}",
                        flush=True,
                    )
                await asyncio.gather(*tasks)
                await browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    log = re.sub(r"\x1b\[[0-9;]*m", "", (folder / "server.log").read_text(errors="replace"))
    if "Traceback" in log:
        at = log.index("Traceback")
        print(f"\nThe server logged a traceback ({folder / 'server.log'}):\n{log[at : at + 3000]}")
    return rows, start


def report(rows: list[Row], start: Row, args: argparse.Namespace) -> None:
    limit = (
        f"LLMLAB_MEMORY_LIMIT_GB={args.limit_gb}"
        if args.limit_gb is not None
        else "the default budget (the container's or the machine's memory)"
    )
    who = "1 visitor" if args.visitors == 1 else f"{args.visitors} visitors at once"
    print(f"\n{who}, {limit}; {psutil.virtual_memory().total / 1024**3:.1f} GB machine")
    print(
        "RSS: the server's resident memory once the step is done (by every visitor); peak: the "
        "highest RSS sampled every 50 ms so far; VmHWM: the kernel's high-water mark so far."
    )
    print("| page | action | RSS | peak so far | VmHWM so far | pages working | seconds |")
    print("|---|---|---|---|---|---|---|")
    for row in [start, *rows]:
        print(
            f"| {row.page} | {row.action} | {row.rss / MB:,.0f} MB | {row.peak / MB:,.0f} MB | "
            f"{row.hwm / MB:,.0f} MB | {row.ok}/{row.visitors} | {row.seconds:.0f} |"
        )
    peak = max(max(r.peak, r.hwm) for r in rows)
    working = all(r.ok == r.visitors for r in rows)
    goal = GOALS_GB.get(args.visitors)
    if args.limit_gb == 2.7 and goal is not None:
        met = peak <= goal * 1024**3 and working
        print(
            f"\nGoal at LLMLAB_MEMORY_LIMIT_GB=2.7, {who}: peak <= {goal} GB with every page "
            f"working. Measured: peak {peak / 1024**3:.2f} GB, "
            f"{'every page working' if working else 'some steps failed'}: "
            f"{'met' if met else 'NOT met'}."
        )
    else:
        print(f"\nPeak {peak / 1024**3:.2f} GB; every page working: {working}.")
    for row in rows:
        for error in row.errors:
            print(f"- {row.page} / {row.action}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=1)
    parser.add_argument("--limit-gb", type=float, default=None, help="LLMLAB_MEMORY_LIMIT_GB")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per step")
    args = parser.parse_args()
    if not 1 <= args.visitors <= 16:
        parser.error("--visitors must be 1..16")
    rows, start = asyncio.run(run(args))
    report(rows, start, args)


if __name__ == "__main__":
    from llmlab.cpu import print_header

    print_header()
    main()
