"""The durable log of connection sessions, and the coverage gaps it implies.

A *session* is one open WebSocket connection: from the moment it is open and subscribed
(``start``) to the moment it ends (``end``, with a ``reason`` such as ``dropped: ...``,
``stale: no data for 61 s``, ``stopped`` or ``error: ...``). The log is a JSON-lines file;
each session writes two lines, both carrying the whole record::

    {"connection": 1, "session": 7, "url": "...", "symbols": ["AMZN"], "start": 1.7e9,
     "end": null, "reason": null}
    {"connection": 1, "session": 7, ..., "end": 1.7e9, "reason": "dropped: 1006"}

Invariants:
- ``session`` numbers are unique in the file and increase with each start, across restarts
  of the recorder (a new :class:`SessionLog` continues after the highest number it finds);
  ``connection`` is the connection's index within one recorder process;
- every line is flushed and fsynced before the call returns (sessions are rare); a line
  that cannot be written is logged (``event=session_log_failed``) and counted in
  ``write_errors``, never raised: coverage bookkeeping must not stop the recording;
- a line torn by a crash is skipped when reading (and a newline is added before the next
  line is appended); a session whose end line never made it has ``end=None``;
- within one recorder a symbol is carried by one connection at a time, so the sessions
  carrying a symbol do not overlap: :func:`gaps` relies on this to close a session whose end
  is unknown at the start of the next session carrying the symbol.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from lake.atomic import fsync_directory
from lake.logfmt import logfmt

__all__ = ["Session", "SessionLog", "SessionLogError", "gaps", "read_sessions"]

log = logging.getLogger(__name__)


class SessionLogError(OSError):
    """The session log cannot be opened; the message names the file and the OS error."""


@dataclass(frozen=True, slots=True)
class Session:
    """One connection session; ``end`` and ``reason`` are None while open or when unknown."""

    connection: int
    session: int
    url: str
    symbols: tuple[str, ...]
    start: float
    end: float | None = None
    reason: str | None = None


class SessionLog:
    """Appends session starts and ends to ``path``, durably (flush + fsync per line)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._open: dict[int, Session] = {}
        self.write_errors = 0
        try:
            existing = read_sessions(self.path)
            self._next = max((s.session for s in existing), default=0) + 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._file: IO[str] = self.path.open("a", encoding="utf-8")
            if created:
                fsync_directory(self.path.parent)
            elif _lacks_final_newline(self.path):
                self._file.write("\n")  # isolate a line torn by a crash
        except OSError as exc:
            raise SessionLogError(f"cannot open session log {self.path}: {exc}") from exc

    def start(self, connection: int, url: str, symbols: Sequence[str], at: float) -> int:
        """Record that ``connection`` opened at ``at``; returns the new session's number."""
        session = Session(connection, self._next, url, tuple(symbols), at)
        self._next += 1
        self._open[session.session] = session
        self._write(session)
        return session.session

    def end(self, session: int, at: float, reason: str) -> None:
        """Record that ``session`` ended at ``at`` because of ``reason``."""
        ended = replace(self._open.pop(session), end=at, reason=reason)
        self._write(ended)

    def close(self) -> None:
        self._file.close()

    def _write(self, session: Session) -> None:
        record = {
            "connection": session.connection,
            "session": session.session,
            "url": session.url,
            "symbols": list(session.symbols),
            "start": session.start,
            "end": session.end,
            "reason": session.reason,
        }
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except (OSError, ValueError) as exc:  # ValueError: the file was closed
            self.write_errors += 1
            log.error("event=session_log_failed path=%s error=%s", logfmt(self.path), logfmt(exc))


def read_sessions(path: Path | str) -> list[Session]:
    """Every session in the log, ordered by session number, start and end lines merged.

    A missing file holds no sessions; unreadable lines (a crash's torn line) are skipped
    and logged.
    """
    path = Path(path)
    if not path.exists():
        return []
    sessions: dict[int, Session] = {}
    with path.open(encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            session = _parse(line)
            if session is None:
                log.warning("event=session_log_bad_line path=%s line=%d", logfmt(path), number)
                continue
            known = sessions.get(session.session)
            if known is None or session.end is not None:
                sessions[session.session] = session
    return [sessions[n] for n in sorted(sessions)]


def gaps(
    sessions: Iterable[Session],
    symbol: str,
    start_s: float,
    end_s: float,
    *,
    open_until: float = math.inf,
) -> list[tuple[float, float]]:
    """The intervals inside ``[start_s, end_s)`` when no session carrying ``symbol`` was open.

    A session whose end is unknown (still open, or the recorder died) is taken to last until
    the start of the next session carrying ``symbol``, and at most until ``open_until``
    (pass the time of the last journaled frame for a recorder that died; the default keeps
    the newest session open forever, which is right while it is still running).
    """
    if end_s < start_s:
        raise ValueError(f"gaps: end {end_s} is before start {start_s}")
    carrying = sorted((s for s in sessions if symbol in s.symbols), key=lambda s: s.start)
    covered: list[tuple[float, float]] = []
    for i, session in enumerate(carrying):
        end = session.end
        if end is None:
            following = carrying[i + 1].start if i + 1 < len(carrying) else math.inf
            end = min(following, open_until)
        if end > session.start:
            covered.append((session.start, end))
    result: list[tuple[float, float]] = []
    cursor = start_s
    for begin, end in covered:  # sorted by begin
        if begin > cursor:
            result.append((cursor, min(begin, end_s)))
        cursor = max(cursor, end)
        if cursor >= end_s:
            break
    if cursor < end_s:
        result.append((cursor, end_s))
    return [(a, b) for a, b in result if a < b]


def _parse(line: str) -> Session | None:
    try:
        raw: Any = json.loads(line)
        end, reason = raw["end"], raw["reason"]
        symbols = raw["symbols"]
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            return None
        return Session(
            connection=int(raw["connection"]),
            session=int(raw["session"]),
            url=str(raw["url"]),
            symbols=tuple(symbols),
            start=float(raw["start"]),
            end=None if end is None else float(end),
            reason=None if reason is None else str(reason),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _lacks_final_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return False
        file.seek(-1, os.SEEK_END)
        return file.read(1) != b"\n"
