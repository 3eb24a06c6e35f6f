"""Peak resident memory (RSS) of this process, per stretch of work: what a learner's 8-16 GB laptop must hold.

Linux keeps the process's high-water mark (``VmHWM`` in ``/proc/self/status``) and lets the process reset it
(writing ``5`` to ``/proc/self/clear_refs``), so each pipeline step gets its own peak rather than the run's.
Elsewhere the peak falls back to ``getrusage``'s lifetime maximum, which is then marked as not per step.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS; ``False`` where the OS does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB since the last :func:`reset_peak` (or since it started)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def children_peak_rss_mb() -> float:
    """The largest peak RSS of any finished child process of this one (e.g. a notebook kernel), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
