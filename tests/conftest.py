"""Shared fixtures: the offline models (loaded once per test run) and the app in a browser.

Tests never reach the network: the Hub is switched off here, and the offline packs were
fetched by the set-up step (`make test` runs it first).

At the end of the run every engine and training thread is ended while Python is still whole,
and the process then leaves with the tests' own exit status, skipping the interpreter's
teardown: a C++ extension's thread still alive then (a daemon thread inside torch, say) makes
glibc abort the process ("terminate called without an active exception") after every test
has passed, which would turn a green run red.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The compiled decode step takes a minute to build: only tests/test_compiled.py turns it on.
os.environ["LLMLAB_COMPILE"] = "0"

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
_exit_status: list[int] = []


# The compiled step's check (tests/compiled_check.py) compiles for a minute or two in a process
# of its own. It starts with the run, at a lower priority (nice 5), so that it mostly takes the
# cores the other tests leave idle; on a busy machine compiling takes several times as long, so
# the check waits for it up to 1,400 s. tests/test_compiled.py reads its result when its turn
# comes. The process that starts it (pytest itself, or the controller of a run on several
# workers) makes its folder and writes the exit status there once the check ends; a test waits
# for that file.
_compiled_check: dict[str, object] = {}


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _share_out_cores(config) -> None:
    """On a run over several workers, give each worker cores of its own.

    Each worker runs real models on torch's threads, one per core it may use. Two workers that
    may both use both cores run four threads on two: an OpenMP team then waits at every
    operator for a thread that the other worker's team has taken off a core, and a forward pass
    can take ten times as long. With a core each, both run at full speed side by side, and the
    servers and browsers a worker starts stay on its cores too.
    """
    if not _is_worker(config) or not hasattr(os, "sched_setaffinity"):
        return
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(str(config.workerinput.get("workerid", "gw0")).removeprefix("gw") or 0)
    cores = sorted(os.sched_getaffinity(0))
    if count > 1 and len(cores) >= count:
        os.sched_setaffinity(0, cores[index % count :: count])


def pytest_configure(config):
    _share_out_cores(config)  # before torch is imported, so that its thread count follows


def _compiled_folder(config) -> Path:
    if _is_worker(config):
        return Path(config.workerinput["llmlab_compiled_check"])
    if "folder" not in _compiled_check:
        _compiled_check["folder"] = Path(tempfile.mkdtemp(prefix="llmlab-compiled-check-"))
    return _compiled_check["folder"]


def _start_compiled_check(config) -> None:
    if _is_worker(config) or "process" in _compiled_check:
        return
    folder = _compiled_folder(config)
    env = dict(os.environ, LLMLAB_COMPILE="1", PYTHONUNBUFFERED="1")
    with open(folder / "out", "w") as stdout, open(folder / "err", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "compiled_check.py")],
            env=env,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=lambda: os.nice(5),
        )

    def report() -> None:
        status = process.wait()
        with contextlib.suppress(OSError):  # the run may have ended and removed the folder
            (folder / "returncode.part").write_text(str(status))
            (folder / "returncode.part").rename(folder / "returncode")

    threading.Thread(target=report, name="compiled-check", daemon=True).start()
    _compiled_check["process"] = process


def pytest_collection_finish(session):
    if any(
        item.path.name == "test_compiled.py" and "compiled_result" in item.fixturenames
        for item in session.items
    ):
        _start_compiled_check(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """A run on several workers (pytest-xdist): each worker learns where the check writes."""
    node.workerinput["llmlab_compiled_check"] = str(_compiled_folder(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    if any(Path(i.split("::")[0]).name == "test_compiled.py" for i in ids):
        _start_compiled_check(node.config)


@pytest.fixture(scope="session")
def compiled_result(request) -> tuple[int, str, str]:
    """The compiled step's check: its exit status, its stdout and the end of its stderr."""
    config = request.config
    _start_compiled_check(config)  # a run of this module alone, say with -k
    folder = _compiled_folder(config)
    deadline = time.monotonic() + 1500
    while not (folder / "returncode").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the compiled step's check did not end in 1,500 s: {folder}")
        time.sleep(1)
    return (
        int((folder / "returncode").read_text()),
        (folder / "out").read_text(),
        (folder / "err").read_text()[-4000:],
    )


def pytest_sessionfinish(session, exitstatus):
    from llmlab.generation.engine import close_all
    from llmlab.training.jobs import stop_all

    stop_all()
    close_all()
    process = _compiled_check.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    if not _is_worker(session.config) and "folder" in _compiled_check:
        shutil.rmtree(_compiled_check["folder"], ignore_errors=True)
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _exit_status:  # the run reached its end (not a collection-only or --help call)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])


@pytest.fixture(scope="session")
def smollm2():
    from llmlab import models

    return models.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma():
    from llmlab import models

    return models.load("gemma-3-270m")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """`streamlit run` in a subprocess on a free loopback port; yields its base URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "streamlit_app.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                # The tests write files (screenshots, damaged packs); a watcher would only
                # offer "Rerun" prompts and overflow its event queue.
                "--server.fileWatcherType",
                "none",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
        if process.poll() is not None:
            break
    else:
        process.kill()
        pytest.fail(f"streamlit did not start; log:\n{log_path.read_text()[-3000:]}")
    if process.poll() is not None:
        pytest.fail(f"streamlit exited; log:\n{log_path.read_text()[-3000:]}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    # A traceback through the lab's code is a failure even when no page showed it (say, in a
    # run that was being replaced by the next one).
    log = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
    if "Traceback" in log and re.search(r"(app_pages|llmlab)/\w+\.py", log):
        start = log.index("Traceback")
        pytest.fail(f"the app's server logged a traceback:\n{log[start : start + 6000]}")


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright; skipped with a reason when missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make test installs it when run as root)")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory) -> Path:
    """Where browser tests save page screenshots: $LLMLAB_SCREENSHOTS, else a temporary folder."""
    chosen = os.environ.get("LLMLAB_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temporary folder) for the whole run;
    yields its URL and stops it afterwards. Skipped with a reason only when PostgreSQL's
    server binaries are missing (`make test` installs them when run as root)."""
    from llmlab.classroom.postgres import find_binaries, throwaway_postgres

    if find_binaries() is None:
        pytest.skip("PostgreSQL is not installed (make test installs it when run as root)")
    with throwaway_postgres() as url:
        yield url
