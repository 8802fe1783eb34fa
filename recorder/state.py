"""``state/recorder.json``: what only the running recorder knows, for ``ticklake status``.

The recorder replaces it at every cycle (``Recorder.cycle``): its PID, when it started, when
the file was written, and per connection its state, the frames it received and the time of
its last frame. Small enough to read by eye::

    {"pid": 4242, "started_ms": 1713276000000, "written_ms": 1713276305000,
     "connections": [{"id": 1, "state": "open", "frames_received": 1523,
                      "last_frame_ms": 1713276304871}]}

Invariants:
- the file is replaced atomically (``lake.atomic``) but never fsynced: it describes a living
  process, and a crash that loses its last version loses nothing the lake needs;
- a connection's ``last_frame_ms`` survives its reconnects (the feed forgets it at each new
  session, as ``ticklake.metrics`` also works around); null until its first frame;
- the file speaks for a running recorder only while the data directory's writer lock is held
  by the PID it names (``lake.datadir.writer_lock_holder``); otherwise it is stale, the last
  words of a recorder that stopped or crashed;
- failing to write it (a full disk) never fails a cycle: it is logged once per outage.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from lake.atomic import atomic_write_bytes, deferred_sync
from lake.datadir import RECORDER_STATE_FILE
from lake.errors import LakeReadError
from lake.logfmt import logfmt
from recorder.feed import ConnectionStatus

__all__ = [
    "ConnectionRecord",
    "RecorderState",
    "RecorderStateError",
    "RecorderStateFile",
    "load_recorder_state",
]

log = logging.getLogger(__name__)


class RecorderStateError(LakeReadError):
    """``state/recorder.json`` exists but does not hold a recorder's state."""


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    state: str  # recorder.feed.ConnectionState's value: connecting, open, waiting, stopped
    frames_received: int
    last_frame_ms: int | None  # epoch ms of its newest frame, any session; None: none yet


@dataclass(frozen=True)
class RecorderState:
    pid: int
    started_ms: int
    written_ms: int
    connections: tuple[ConnectionRecord, ...]


class RecorderStateFile:
    """Writes one recorder's ``state/recorder.json``; :meth:`save` at every cycle."""

    def __init__(self, data: Path, started: float, pid: int | None = None) -> None:
        self.path = Path(data, RECORDER_STATE_FILE)
        self.pid = os.getpid() if pid is None else pid
        self.started_ms = int(started * 1000)
        self._last_frame: dict[int, float] = {}  # across sessions (the feed resets its own)
        self._failing = False

    def state(self, connections: Iterable[ConnectionStatus], now: float) -> RecorderState:
        records = []
        for status in connections:
            if status.last_frame_at is not None:
                self._last_frame[status.id] = status.last_frame_at
            last = self._last_frame.get(status.id)
            records.append(
                ConnectionRecord(
                    status.id,
                    str(status.state.value),
                    status.frames_received,
                    None if last is None else int(last * 1000),
                )
            )
        return RecorderState(self.pid, self.started_ms, int(now * 1000), tuple(records))

    def save(self, connections: Iterable[ConnectionStatus], now: float) -> None:
        """Replace the file with the state at ``now``; an OSError is logged, not raised."""
        body = json.dumps(asdict(self.state(connections, now))).encode() + b"\n"
        try:
            with deferred_sync():
                atomic_write_bytes(self.path, body)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "event=recorder_state_failed path=%s reason=%s", logfmt(self.path), logfmt(exc)
                )
            self._failing = True
        else:
            self._failing = False


def load_recorder_state(data: Path) -> RecorderState | None:
    """The state the last recorder wrote (None: no file); RecorderStateError if damaged."""
    path = Path(data, RECORDER_STATE_FILE)
    try:
        raw = json.loads(path.read_bytes())
        return RecorderState(
            pid=int(raw["pid"]),
            started_ms=int(raw["started_ms"]),
            written_ms=int(raw["written_ms"]),
            connections=tuple(
                ConnectionRecord(
                    int(c["id"]),
                    str(c["state"]),
                    int(c["frames_received"]),
                    None if c["last_frame_ms"] is None else int(c["last_frame_ms"]),
                )
                for c in raw["connections"]
            ),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecorderStateError(f"{path} is not a recorder's state ({exc}); delete it") from exc
