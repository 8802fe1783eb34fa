"""Named crash points for durability tests: ``TICKLAKE_FAILPOINT=<name>`` makes the process
SIGKILL itself when it reaches that point, so a test can kill a real recorder at an exact
step (between writing a fold's minute files and publishing its marker, say). Unset, a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["ENV", "NAMES", "kill_also", "reach"]

ENV: Final = "TICKLAKE_FAILPOINT"
NAMES: Final = (
    "fold_files_written",  # a fold wrote and synced its minute files, no marker yet
    "fold_published",  # the marker is out, the seal not yet saved
    "replay_files_written",  # start-up catch-up wrote its minute files, no marker yet
    "delta_written",  # a flush wrote its delta
    "offload_uploaded",  # a day's object is written, its marker still says uploading
    "offload_verified",  # a day's object is verified, its local copy not yet removed
)


_ALSO: list[int] = []  # processes that die with this one (a helper process's parent)


def kill_also(pid: int) -> None:
    """Make a failpoint reached in this process kill ``pid`` first (the whole recorder
    loses power, not one of its processes)."""
    _ALSO.append(pid)


def reach(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if ``TICKLAKE_FAILPOINT`` names this point."""
    if os.environ.get(ENV) == name:
        for pid in _ALSO:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
