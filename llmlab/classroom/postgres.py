"""A throwaway PostgreSQL server in a temporary folder: class mode on several replicas on one
machine, the store's tests and its benchmark, without touching any system database.

It uses Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``): a new cluster in a folder of
its own, listening on a free loopback port and a unix socket in the same folder, with fsync off
(the data is thrown away afterwards). PostgreSQL refuses to run as root, so as root the folder
belongs to the ``postgres`` user and the binaries run through ``runuser``.

    with throwaway_postgres() as url:   # 'postgresql+psycopg://postgres@127.0.0.1:PORT/postgres'
        store = ClassStore(url)
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the server would not start."""


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres(max_connections: int = 300) -> Iterator[str]:
    """Start a new PostgreSQL cluster, yield its SQLAlchemy URL, then stop and delete it."""
    binaries = find_binaries()
    if binaries is None:
        raise PostgresUnavailable(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install Debian's "
            "postgresql package (scripts/ensure_postgresql.sh does it as root)"
        )
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="llmlab-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    port = _free_port()

    def run(*command: str, timeout: float = 120) -> None:
        result = subprocess.run(prefix + list(command), capture_output=True, text=True,
                                timeout=timeout, cwd=folder)  # fmt: skip
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(command[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout)[-2000:]}\n{tail}"
            )

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={max_connections}"
        )
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
            "-t", "60", "start")  # fmt: skip
    except (PostgresUnavailable, subprocess.TimeoutExpired, OSError):
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired, OSError):
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop",
                timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new empty database on the server of ``url``; returns its URL (tests: one each)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not name.isidentifier():
        raise ValueError(f"name={name!r} is not allowed: allowed letters, digits and _")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
