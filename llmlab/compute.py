"""The machine's compute, shared by everything that runs a model: cores, threads and one lock.

The generation engine, the pages' traced forward passes, knock-outs, the class activities and
training all run on the same few cores. They agree on three things, kept here:

* `usable_cores()`: how many cores this process may run on, the figure thread counts are set
  from;
* `configure_threads()`: torch's thread counts, set once, on purpose;
* `COMPUTE_LOCK` and `exclusive()`: one model's work at a time, so two forward passes never
  fight over the same cores and hooks put on a shared model see only their own pass.

torch is imported only inside the functions that set its threads, so modules that stay light
at import (training, the class activities) can take the lock and the core count from here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

# Model work of every engine (and of the pages' own forward passes, see `exclusive`) takes this
# lock: on a small machine two forward passes side by side only fight over the same cores.
COMPUTE_LOCK = threading.RLock()


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer).

    >>> usable_cores() >= 1
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


_threads_configured = False


def configure_threads() -> None:
    """Set torch's thread counts once, on purpose.

    Intra-op threads (those that split one matrix product) = the cores this process may use;
    inter-op threads = 1, since the engine runs one forward pass at a time. Called when the
    first engine is made.

    The count is the process's, not a thread's: the engine uses every core for its forward
    passes, and sets one only while it holds `COMPUTE_LOCK` to choose. The requests' own work
    between forward passes (filters, sampling, records over a vocabulary of up
    to 262,144 scores) is cut into shares of rows instead, and the scheduler thread and one
    helper per other core each choose a share at a time on one torch thread: splitting one
    quarter-million-element operation between cores costs more in waiting for the other core
    than it saves (ten times more when that core is busy elsewhere), while whole shares side by
    side do not wait for each other.
    """
    global _threads_configured
    if _threads_configured:
        return
    _threads_configured = True
    import torch

    torch.set_num_threads(usable_cores())
    with contextlib.suppress(RuntimeError):  # refused once inter-op work has started
        torch.set_num_interop_threads(1)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Run model work of one's own (a traced forward pass, with hooks) between engine steps.

    The engine holds the same lock for each of its forward passes, so the two never run at the
    same moment on a model: hooks put on a shared model then see only their own pass.

    The work runs on every usable core: torch's thread count is the process's, the last any
    thread set, and a matrix product split another way rounds another way, so a page and the
    library would otherwise differ in the last digits.
    """
    import torch

    with COMPUTE_LOCK:
        torch.set_num_threads(usable_cores())
        yield
