"""The seal: which windows are final, and which ones late ticks touched since (contract 4).

The recorder publishes this small JSON file, ``<data>/state/seal.json``, replaced atomically
after every lake flush; analytics reads it to know what to compute.

Invariants:
- ``watermark_ms`` only moves forward; every window ``[start, start + 60 s)`` with
  ``start + 60 s <= watermark_ms`` is *sealed*: its ticks received before the seal are in the
  lake. It is a minute boundary: ``floor_minute(now - lateness)``.
- ``applied_seq``: every journal frame up to it has been applied to the lake (fsynced files);
  a restart replays the journal from ``applied_seq + 1``.
- a tick written into an already sealed window makes that window *late*: it is appended to
  ``late`` with an id from the strictly increasing ``next_late_id``; a reader remembers the
  last id it handled. Entries older than ``keep_late_ms`` (the recompute horizon) are trimmed.
- a seal file that exists but does not hold a seal is never replaced by a fresh state (that
  would forget ``applied_seq`` and the late ids): :func:`load_seal` raises SealError, naming
  the file and the way out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lake.atomic import atomic_write_bytes
from lake.datadir import SEAL_FILE
from lake.errors import LakeReadError, first_line
from lake.utc import MINUTE_MS, floor_minute_ms

_COUNTERS = ("watermark_ms", "applied_seq", "next_late_id")
_LATE_FIELDS = {"id": int, "ticker": str, "window_start_ms": int, "marked_at_ms": int}


class SealError(LakeReadError):
    """The seal file exists but cannot be used; the message names it and what to do."""


def watermark_at(now_s: float, lateness_s: float) -> int:
    """The seal watermark (epoch ms) at wall-clock ``now_s`` with the given lateness."""
    return floor_minute_ms(int((now_s - lateness_s) * 1000))


@dataclass(frozen=True)
class LateWindow:
    id: int
    ticker: str
    window_start_ms: int
    marked_at_ms: int


@dataclass
class SealState:
    watermark_ms: int = 0
    applied_seq: int = 0
    next_late_id: int = 1
    late: list[LateWindow] = field(default_factory=list)

    def is_sealed(self, window_start_ms: int) -> bool:
        return window_start_ms + MINUTE_MS <= self.watermark_ms

    def advance(self, watermark_ms: int) -> bool:
        """Move the watermark forward (never back); True if it moved."""
        if watermark_ms <= self.watermark_ms:
            return False
        self.watermark_ms = watermark_ms
        return True

    def mark_late(self, ticker: str, window_start_ms: int, now_ms: int) -> LateWindow:
        entry = LateWindow(self.next_late_id, ticker, window_start_ms, now_ms)
        self.late.append(entry)
        self.next_late_id += 1
        return entry

    def trim(self, now_ms: int, keep_late_ms: int) -> None:
        self.late = [w for w in self.late if w.marked_at_ms >= now_ms - keep_late_ms]

    def late_since(self, last_id: int) -> list[LateWindow]:
        return [w for w in self.late if w.id > last_id]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> SealState:
        """The state :meth:`to_json` wrote; ValueError saying what is wrong otherwise."""
        raw: Any = json.loads(data)
        if not isinstance(raw, dict) or set(raw) != {*_COUNTERS, "late"}:
            raise ValueError(f"expected the keys {', '.join(_COUNTERS)}, late")
        for key in _COUNTERS:
            if not _is(raw[key], int):
                raise ValueError(f"{key} is not an integer")
        if not isinstance(raw["late"], list):
            raise ValueError("late is not a list")
        for entry in raw["late"]:
            if not isinstance(entry, dict) or set(entry) != set(_LATE_FIELDS):
                raise ValueError(f"late entry {entry!r} lacks {', '.join(_LATE_FIELDS)}")
            if not all(_is(entry[k], kind) for k, kind in _LATE_FIELDS.items()):
                raise ValueError(f"late entry {entry!r} has a value of the wrong type")
        late = [LateWindow(**entry) for entry in raw["late"]]
        return cls(raw["watermark_ms"], raw["applied_seq"], raw["next_late_id"], late)


def _is(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def load_seal(data_dir: Path) -> SealState:
    """The published seal state, or a fresh one when the recorder never ran here.

    SealError when the file exists but does not hold a seal (truncated, edited, a disk
    fault): it is left where it is, and nothing starts from a guess.
    """
    path = data_dir / SEAL_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return SealState()
    try:
        return SealState.from_json(raw)
    except ValueError as exc:  # also JSON's and UTF-8's errors
        reason = first_line(exc)
        raise SealError(
            f"{path} is damaged ({reason}); it holds the seal watermark and the last "
            "applied journal seq, which ticklake does not guess: restore it from a backup, "
            "or move it aside and run `ticklake replay` (idempotent), which re-applies the "
            "journal and writes a new one"
        ) from exc


def save_seal(data_dir: Path, state: SealState) -> None:
    atomic_write_bytes(data_dir / SEAL_FILE, state.to_json())
