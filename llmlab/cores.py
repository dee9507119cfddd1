"""How many cores this process may use: the figure thread counts are set from."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer).

    >>> usable_cores() >= 1
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)
