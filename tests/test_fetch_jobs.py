"""Fetching packs in the server's background: from a package index served here on loopback,
with the progress every visitor of Home sees, before and after a reload.

The index is a folder served by `http.server` on 127.0.0.1 in the PEP 503 layout that pip
reads; pip is pointed at it with PIP_INDEX_URL and reads no configuration file, so nothing
leaves the machine.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest
from browser_helpers import APP_PATH
from streamlit.testing.v1 import AppTest

from llmlab import assets, fetch_jobs

PROJECT = "llmlab-fake-pack"
WHEEL = "llmlab_fake_pack-1.0.0-py3-none-any.whl"
CONTENT = b"Hello from a pack.\n"


def _wheel() -> bytes:
    """A minimal wheel holding one data file."""
    info = "llmlab_fake_pack-1.0.0.dist-info"
    files = {
        "llmlab_fake_pack/data/hello.txt": CONTENT,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: 1.0.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", record)
    return buffer.getvalue()


def _manifest(path: Path, sha256: str) -> Path:
    path.write_text(
        f"""
[[pack]]
name = "fake-pack"
title = "A pack for tests"
kind = "corpus"
artifacts = [{{ requirement = "{PROJECT}==1.0.0", format = "wheel" }}]
[[pack.file]]
name = "hello.txt"
size = {len(CONTENT)}
sha256 = "{sha256}"
members = [{{ artifact = 0, path = "llmlab_fake_pack/data/hello.txt" }}]
"""
    )
    return path


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A package index on loopback holding the fake pack's wheel; yields the paths it served."""
    root = tmp_path / "index"
    wheel = _wheel()
    (root / "files").mkdir(parents=True)
    (root / "files" / WHEEL).write_bytes(wheel)
    digest = hashlib.sha256(wheel).hexdigest()
    (root / "simple" / PROJECT).mkdir(parents=True)
    (root / "simple" / PROJECT / "index.html").write_text(
        f'<html><body><a href="../../files/{WHEEL}#sha256={digest}">{WHEEL}</a></body></html>'
    )
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):
            served.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's indexes stay out
    for variable in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    manifest = _manifest(tmp_path / "assets.toml", hashlib.sha256(CONTENT).hexdigest())
    real = assets.load_manifest
    monkeypatch.setattr(assets, "load_manifest", lambda path=manifest: real(path))
    yield served
    server.shutdown()


def test_a_pack_is_fetched_from_the_configured_index_in_the_background(index):
    assert assets.status("fake-pack").state == "missing"
    job = fetch_jobs.start("fake-pack")
    assert fetch_jobs.start("fake-pack") is job or job.done  # a second press joins it
    job.join(300)
    assert (job.state, job.error, job.fraction) == ("finished", "", 1.0)
    assert assets.status("fake-pack", deep=True).verified
    assert (assets.pack_dir("fake-pack") / "hello.txt").read_bytes() == CONTENT
    assert f"/simple/{PROJECT}/" in index and f"/files/{WHEEL}" in index


def test_a_file_that_does_not_match_its_pin_fails_the_job_with_the_reason(index, tmp_path):
    _manifest(tmp_path / "assets.toml", "0" * 64)  # the pack's file is pinned to other bytes
    job = fetch_jobs.start("fake-pack")
    job.join(300)
    assert job.state == "failed" and "sha256" in job.error
    assert not assets.status("fake-pack").verified


def test_several_packs_are_fetched_one_after_another_in_one_thread():
    order, release = [], threading.Event()

    def fetch(name, progress):
        order.append((name, threading.current_thread().name))
        release.wait(60)
        progress(0.5, "half way")

    first, second = fetch_jobs.start_many(["test-a", "test-b"], fetch)
    assert (first.state, second.state) == ("running", "waiting")
    release.set()
    second.join(60)
    assert [name for name, _ in order] == ["test-a", "test-b"]
    assert len({thread for _, thread in order}) == 1
    assert (first.state, second.state, second.fraction) == ("finished", "finished", 1.0)


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "empty"))


def test_home_shows_a_fetch_in_progress_to_a_visitor_who_reloads(empty_home, monkeypatch):
    release = threading.Event()

    def slow(name, progress):
        progress(0.25, "downloading the archive")
        release.wait(120)

    try:
        job = fetch_jobs.start("botchan", fetch=slow)
        for _ in range(2):  # the visitor who pressed Fetch, then the same visitor after a reload
            at = AppTest.from_file(APP_PATH, default_timeout=120).run()
            assert not at.exception
            bars = [e.proto for e in at.get("progress")]
            assert any("botchan: downloading the archive" in bar.text for bar in bars), bars
            assert any(bar.value == 25 for bar in bars)
            labels = {button.label for button in at.button}
            assert "Fetch botchan" not in labels and "Fetch gemma-3-270m" in labels
        assert fetch_jobs.start("botchan", fetch=slow) is job  # pressing again joins it
    finally:
        release.set()
        job.join(60)
