"""Offline packs: manifest, verification, repair, idempotence, clear failures.

Each test works in its own cache under tmp_path. The archives are copied from the cache that
the set-up step filled, so nothing here reaches the network (the one "registry unreachable"
test points pip at a closed port on this machine).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmlab import assets

REAL_CACHE = assets.cache_dir()
SMALL_PACKS = ("mistral-tokenizer", "botchan", "openai-tiktoken")


def _seed_downloads(cache: Path, pack_names=SMALL_PACKS) -> None:
    """Copy the archives of some packs from the real cache into a fresh one."""
    target = cache / "downloads"
    target.mkdir(parents=True, exist_ok=True)
    for name in pack_names:
        for artifact in assets.get_pack(name).artifacts:
            archive = assets._archive_for(artifact, REAL_CACHE / "downloads")
            assert archive is not None, f"set-up did not fetch {artifact.requirement}"
            shutil.copy2(archive, target / archive.name)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if a fetch tries to download anything."""

    def refuse(artifact, into):
        raise AssertionError(f"tried to download {artifact.requirement}")

    monkeypatch.setattr(assets, "_pip_download", refuse)


def test_manifest_lists_every_pack_with_pinned_files():
    packs = {p.name: p for p in assets.load_manifest()}
    assert {
        "smollm2-135m-instruct",
        "gemma-3-270m",
        "openai-tiktoken",
        "gpt2-tiktoken",
        "llama-cpp-vocabs",
        "minilm-l6-v2",
        "mistral-tokenizer",
        "botchan",
    } <= set(packs)
    for pack in packs.values():
        assert all("==" in a.requirement for a in pack.artifacts)
        for spec in pack.files:
            assert len(spec.sha256) == 64 and spec.size > 0
    gemma = packs["gemma-3-270m"].file("gemma-3-270m-q4_k_m.gguf")
    assert [m.path[-6:] for m in gemma.members] == ["part00", "part01", "part02", "part03"]
    vocabs = {f.name for f in packs["llama-cpp-vocabs"].files}
    for name in ("gpt-2", "qwen2", "phi-3", "llama-spm", "starcoder", "falcon", "deepseek-coder"):
        assert f"ggml-vocab-{name}.gguf" in vocabs


@pytest.mark.parametrize(
    "text, complaint",
    [
        ('[[pack]]\nname = "x"\ntitle = "x"\nkind = "corpus"\nartifacts = []\n', "malformed"),
        (
            '[[pack]]\nname="x"\ntitle="x"\nkind="corpus"\n'
            'artifacts=[{requirement="nopin", format="wheel"}]\n'
            '[[pack.file]]\nname="a"\nsize=1\nsha256="' + "0" * 64 + '"\n'
            'members=[{artifact=0, path="a"}]\n',
            "name==version",
        ),
        (
            '[[pack]]\nname="x"\ntitle="x"\nkind="corpus"\n'
            'artifacts=[{requirement="a==1", format="wheel"}]\n'
            '[[pack.file]]\nname="a"\nsize=1\nsha256="' + "0" * 64 + '"\n'
            'members=[{artifact=3, path="a"}]\n',
            "missing artifact",
        ),
    ],
)
def test_malformed_manifest_is_refused(tmp_path, text, complaint):
    path = tmp_path / "assets.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=complaint):
        assets.load_manifest(path)


def test_unknown_pack_names_the_available_ones():
    with pytest.raises(ValueError, match="pack='nope' is unknown; available: smollm2"):
        assets.get_pack("nope")


def test_fetch_extracts_and_verifies_then_second_fetch_is_quick(cache, no_network):
    _seed_downloads(cache)
    for name in SMALL_PACKS:
        assert assets.status(name).state == "missing"
    messages = []
    assets.fetch_all(list(SMALL_PACKS), progress=lambda f, m: messages.append((f, m)))
    assert all(assets.status(name, deep=True).verified for name in SMALL_PACKS)
    assert messages[-1][0] == pytest.approx(1.0)
    assert all(0.0 <= f <= 1.0 for f, _ in messages)
    text = (cache / "packs" / "botchan" / "botchan.txt").read_text()
    assert "Botchan" in text[:2000] or "botchan" in text[:2000].lower()

    started = time.perf_counter()
    again = assets.fetch_all(list(SMALL_PACKS))
    assert all(s.verified for s in again)
    assert time.perf_counter() - started < 2.0  # a stat per file, no hashing, no download


def test_corrupted_file_is_detected_by_name_and_repaired(cache, no_network):
    _seed_downloads(cache, ["botchan"])
    assets.fetch("botchan")
    path = cache / "packs" / "botchan" / "botchan.txt"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))

    state = assets.status("botchan")
    assert not state.verified and state.state == "damaged"
    assert "botchan.txt: sha256 mismatch" in state.files[0].problem

    assets.fetch("botchan")
    assert assets.status("botchan", deep=True).verified


def test_truncated_file_is_reported_with_its_size(cache, no_network):
    _seed_downloads(cache, ["mistral-tokenizer"])
    assets.fetch("mistral-tokenizer")
    path = cache / "packs" / "mistral-tokenizer" / "tokenizer.model.v1"
    path.write_bytes(path.read_bytes()[:1000])
    problem = assets.status("mistral-tokenizer").files[0].problem
    assert "tokenizer.model.v1: 1000 bytes, expected" in problem
    with pytest.raises(assets.AssetError, match="not ready"):
        assets.pack_path("mistral-tokenizer", "tokenizer.model.v1")
    assets.fetch("mistral-tokenizer")
    assert assets.pack_path("mistral-tokenizer", "tokenizer.model.v1").stat().st_size > 400_000


def test_deep_status_catches_what_a_stat_cannot(cache, no_network):
    _seed_downloads(cache, ["botchan"])
    assets.fetch("botchan")
    path = cache / "packs" / "botchan" / "botchan.txt"
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide the change from a stat
    assert not assets.status("botchan", deep=True).verified


def test_interrupted_fetch_leaves_no_file_that_passes(cache, no_network, monkeypatch):
    _seed_downloads(cache, ["botchan"])
    real_open = assets._ArchiveReader.open

    class Interrupt(KeyboardInterrupt):
        pass

    def open_then_interrupt(self, member):
        handle = real_open(self, member)
        first = handle.read(4096)

        class Half:
            sent = False

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def read(self, size=-1):
                if not Half.sent:
                    Half.sent = True
                    return first
                raise Interrupt()

        return Half()

    monkeypatch.setattr(assets._ArchiveReader, "open", open_then_interrupt)
    with pytest.raises(Interrupt):
        assets.fetch("botchan")
    folder = cache / "packs" / "botchan"
    assert not (folder / "botchan.txt").exists()
    assert not list(folder.glob("*.part"))
    assert assets.status("botchan").state == "missing"
    monkeypatch.setattr(assets._ArchiveReader, "open", real_open)
    assets.fetch("botchan")
    assert assets.status("botchan", deep=True).verified


def test_damaged_archive_is_fetched_again_and_an_unreachable_registry_is_one_sentence(
    cache, monkeypatch
):
    _seed_downloads(cache, ["botchan"])
    archive = next((cache / "downloads").iterdir())
    archive.write_bytes(archive.read_bytes()[:10_000])  # a truncated download
    # The registry is "unreachable": a closed port on this machine, no other index.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(cache / "no-links"))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(assets.AssetError) as raised:
        assets.fetch("botchan")
    message = str(raised.value)
    assert message.startswith("Could not fetch sentencepiece==0.2.3 from the package registry")
    assert "Traceback" not in message and "\n" not in message
    assert not (cache / "packs" / "botchan" / "botchan.txt").exists()


def test_read_only_cache_gives_a_clear_error(cache, monkeypatch):
    cache.mkdir(parents=True)
    cache.chmod(0o500)
    try:
        if (cache / "probe").exists() or _can_write(cache):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(assets.AssetError, match="not writable"):
            assets.fetch("botchan")
    finally:
        cache.chmod(0o700)


def _can_write(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_read_only_cache_as_root_via_a_file_in_the_way(tmp_path, monkeypatch):
    """Even root cannot create a folder where a file stands: the error is still one sentence."""
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LLMLAB_HOME", str(blocker))
    with pytest.raises(assets.AssetError) as raised:
        assets.fetch("botchan")
    assert "Traceback" not in str(raised.value)


def test_cli_status_prints_a_table():
    result = subprocess.run(
        [sys.executable, "-m", "llmlab", "assets", "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["pack", "kind", "size", "state"]
    for name in ("gemma-3-270m", "smollm2-135m-instruct", "botchan"):
        row = next(line for line in lines if line.startswith(name))
        assert "verified" in row


def test_cli_fetch_of_unknown_pack_is_a_clear_error():
    result = subprocess.run(
        [sys.executable, "-m", "llmlab", "assets", "fetch", "no-such-pack"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: pack='no-such-pack' is unknown")
    assert "Traceback" not in result.stderr
