"""Fetching a pack in the background: one job per pack per server, seen by every visitor.

A fetch takes minutes (Gemma 3's pack is 253 MB, then its conversion), longer than a visitor
may stay on a page. So the Fetch button starts a job in a thread of the server process and
returns at once; the job writes its progress where any page run can read it. A visitor who
reloads Home, or a second visitor, sees the same job and its progress, and pressing Fetch
again while it runs joins it instead of starting another. A model pack is also converted to
safetensors in the same job (counted in the server's memory budget), so the first page that
uses the model loads it in seconds.

>>> from llmlab import fetch_jobs
>>> job = fetch_jobs.start("demo", fetch=lambda name, progress: progress(1.0, "done"))
>>> job.join(); job.state, job.fraction, job.message
('finished', 1.0, 'done')
>>> fetch_jobs.start("demo", fetch=lambda name, progress: None) is job  # a new job after it ends
False
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from llmlab import assets

log = logging.getLogger("llmlab.fetch")

Fetch = Callable[[str, assets.Progress], object]


@dataclass
class FetchJob:
    """One pack being fetched (and its model converted). `state`: waiting (for the packs before
    it), running, finished or failed."""

    pack: str
    state: str = "running"
    fraction: float = 0.0  # 0..1
    message: str = "Starting..."
    error: str = ""  # why it failed, in plain words
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed")

    def report(self, fraction: float, message: str) -> None:
        self.fraction = min(max(float(fraction), self.fraction), 1.0)  # never goes back
        self.message = message

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


_jobs: dict[str, FetchJob] = {}
_lock = threading.Lock()


def fetch_and_convert(pack_name: str, progress: assets.Progress) -> None:
    """Fetch a pack; for a model pack, convert its model too (fetching takes the first 60% of
    the bar, converting the rest)."""
    from llmlab import registry

    models_of_pack = [s for s in registry.MODELS.values() if s.pack == pack_name]
    if not models_of_pack:
        assets.fetch(pack_name, progress=progress)
        return
    assets.fetch(pack_name, progress=lambda f, m: progress(0.6 * f, m))
    from llmlab import memory, models

    for spec in models_of_pack:
        if models.is_converted(spec.name):
            continue
        gguf = assets.pack_path(spec.pack, spec.gguf_file)  # type: ignore[arg-type]
        needed = models.CONVERSION_BYTES_PER_GGUF_BYTE * gguf.stat().st_size
        with memory.shared_budget().reserve(needed, f"Converting {spec.title}"):
            models.convert(spec.name, lambda f, m: progress(0.6 + 0.4 * f, m))
    progress(1.0, f"{pack_name}: ready")


def start(pack_name: str, fetch: Fetch = fetch_and_convert) -> FetchJob:
    """The running job for `pack_name`, or a new one started now."""
    return start_many([pack_name], fetch)[0]


def start_many(pack_names: list[str], fetch: Fetch = fetch_and_convert) -> list[FetchJob]:
    """A job for each pack, run one after another in one thread (one download and one
    conversion at a time keep the server's memory low); a pack already on its way keeps its
    job."""
    with _lock:
        jobs_now, todo = [], []
        for name in pack_names:
            job = _jobs.get(name)
            if job is None or job.done:
                job = _jobs[name] = FetchJob(
                    name, "waiting", message="waiting for the packs before it"
                )
                todo.append(job)
            jobs_now.append(job)
        if todo:
            thread = threading.Thread(
                target=_run_all, args=(todo, fetch), name="llmlab-fetch", daemon=True
            )
            for job in todo:
                job._thread = thread
            thread.start()
        return jobs_now


def _run_all(todo: list[FetchJob], fetch: Fetch) -> None:
    for job in todo:
        job.state, job.message = "running", "starting"
        _run(job, fetch)


def _run(job: FetchJob, fetch: Fetch) -> None:
    try:
        fetch(job.pack, job.report)
    except Exception as error:  # noqa: BLE001 - shown on Home, never a traceback
        if not isinstance(error, (assets.AssetError, ValueError)):
            log.exception("fetching %s failed", job.pack)
        job.error = str(error) or type(error).__name__
        job.state = "failed"
    else:
        job.fraction, job.state = 1.0, "finished"


def job(pack_name: str) -> FetchJob | None:
    """The latest job for `pack_name` (running or ended), or None."""
    with _lock:
        return _jobs.get(pack_name)


def jobs() -> list[FetchJob]:
    """Every pack's latest job, in the order they started."""
    with _lock:
        return list(_jobs.values())


def running() -> list[FetchJob]:
    return [j for j in jobs() if not j.done]
