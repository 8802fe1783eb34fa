"""Moving compacted days to the object store (``lake.remote``), and finding them again.

A day goes through three states, each named by the marker ``.offloaded.json`` in its local
history folder (``history/ticker=…/date=…/``):

1. *uploading* (marker ``state: uploading``, written under the tier lock held exclusively):
   from here on no writer merges into the day (``check_writable``: a late tick of such a
   day, or an import into it, is refused with a one-line error, and stays in the journal or
   the import's file); the local day file is then copied to its object and read back;
2. *verified* (``state: verified``, with the SHA-256 and the time): the object holds the
   same bytes as the local file. Readers serve the day from the object store from the
   moment its object is listed, whichever state the marker is in;
3. *remote*: a ``verified`` day whose grace period has passed has its local day file
   removed; the folder and the marker stay, so writers keep refusing and Python readers
   (``day_source``) know to fetch the object.

A crash at any step leaves a state the next run finishes: an ``uploading`` day is uploaded
again (a PUT replaces nothing a reader could have used: the bytes are the same) or, when
its object already holds the same bytes, just marked verified. An object that holds other
bytes (another data directory offloaded the same ticker-day) is never overwritten: the
day stays local and the run lists it as failed.

Only days older than ``offload_after_days`` (a week by default, beyond any late tick the
feed delivers and beyond the recompute horizon) whose minute files are all gone (the
compaction is finished) are offloaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa

from lake import failpoints
from lake.atomic import atomic_write_bytes
from lake.datadir import HISTORY_DIR
from lake.errors import LakeWriteError, first_line
from lake.history import tier_lock
from lake.layout import PART_NAME, date_dir, encode_ticker, history_dir, lake_days
from lake.logfmt import logfmt
from lake.remote import RemoteDay, RemoteError, RemoteLake, remote_of
from lake.utc import DAY_MS, day_start_ms

__all__ = [
    "DEFAULT_OFFLOAD_AFTER_DAYS",
    "MARKER",
    "DayOffloadedError",
    "OffloadResult",
    "check_writable",
    "day_source",
    "offload_days",
    "readable",
]

log = logging.getLogger(__name__)

MARKER: Final = ".offloaded.json"
DEFAULT_OFFLOAD_AFTER_DAYS: Final = 7.0
UPLOADING: Final = "uploading"
VERIFIED: Final = "verified"


class DayOffloadedError(LakeWriteError):
    """A write into a day that is (being) moved to the object store."""


@dataclass
class OffloadResult:
    """What one pass did."""

    days_uploaded: int = 0
    bytes_uploaded: int = 0
    days_removed: int = 0  # local copies removed after their grace period
    days_waiting: int = 0  # verified, inside the grace period
    failed: list[str] = field(default_factory=list)


def check_writable(root: Path, ticker: str, date: dt.date) -> None:
    """DayOffloadedError when (ticker, date) is in the object store or on its way there.
    Callers hold the tier lock (shared), as every minute writer does."""
    if (history_dir(root, ticker, date) / MARKER).is_file():
        raise DayOffloadedError(
            f"{ticker} {date} is in the object store (offloaded): its ticks are not "
            "rewritten; keep them in their source"
        )


def day_source(
    root: Path, ticker: str, date: dt.date, remote: RemoteLake | None = None
) -> Path | RemoteDay | None:
    """Where (ticker, date)'s day file can be read: the local file while it exists, else
    its object when the day was offloaded from here (or, given ``remote``, when that object
    store holds the day: one request); None when no tier holds a day file for it.
    FileNotFoundError when a day offloaded from here has no object."""
    folder = history_dir(root, ticker, date)
    local = folder / PART_NAME
    if local.is_file():
        return local
    offloaded = (folder / MARKER).is_file()
    store = remote_of(root) if offloaded and remote is None else remote
    if store is None:
        if offloaded:
            raise FileNotFoundError(f"{folder} was offloaded, but state/lake_url.json is gone")
        return None
    found = store.find_day(encode_ticker(ticker), date)
    if found is None and offloaded:
        raise FileNotFoundError(f"{store.url} has no object for offloaded {ticker} {date}")
    return found


def readable(source: Path | RemoteDay) -> Path | pa.NativeFile:
    """What ``lake.history.read_day`` opens for a ``day_source``."""
    return source.open() if isinstance(source, RemoteDay) else source


def offload_days(
    root: Path,
    remote: RemoteLake,
    now: float,
    *,
    after_days: float = DEFAULT_OFFLOAD_AFTER_DAYS,
    grace: float = 600.0,
    stop: threading.Event | None = None,
) -> OffloadResult:
    """One pass over the local history tier (see the module docstring): upload and verify
    the days due, remove the local copies whose grace period has passed.

    RemoteError when the object store cannot be reached at all (nothing changed); a day
    that fails alone is listed in ``failed`` and the others go on.
    """
    result = OffloadResult()
    now_ms = int(now * 1000)
    remote.ensure_placeholder()
    before = now_ms - int(after_days * DAY_MS)
    for ticker, date, folder in list(lake_days(root, HISTORY_DIR)):
        if stop is not None and stop.is_set():
            break
        try:
            marker = _read_marker(folder)
            if marker is not None and marker.get("state") == VERIFIED:
                _remove_after_grace(folder, marker, now_ms, int(grace * 1000), result)
            elif day_start_ms(date) + DAY_MS <= before and (folder / PART_NAME).is_file():
                if marker is None and date_dir(root, ticker, date).exists():
                    continue  # compaction not finished: minute files remain
                _offload_day(root, remote, (ticker, date, folder), now_ms, result)
        except (RemoteError, OSError, ValueError) as exc:
            reason = first_line(exc)
            result.failed.append(f"{ticker} {date}: {reason}")
            log.error(
                "event=offload_failed ticker=%s date=%s reason=%s", ticker, date, logfmt(reason)
            )
    if result.days_uploaded or result.days_removed or result.failed:
        log.info(
            "event=offload_pass url=%s uploaded=%d bytes=%d removed=%d waiting=%d failed=%d",
            remote.url,
            result.days_uploaded,
            result.bytes_uploaded,
            result.days_removed,
            result.days_waiting,
            len(result.failed),
        )
    return result


def _offload_day(
    root: Path,
    remote: RemoteLake,
    day: tuple[str, dt.date, Path],
    now_ms: int,
    result: OffloadResult,
) -> None:
    ticker, date, folder = day
    local = folder / PART_NAME
    with tier_lock(root, exclusive=True):  # no writer is between choosing and writing
        if _read_marker(folder) is None:
            _write_marker(folder, {"state": UPLOADING, "since_ms": now_ms})
    value = encode_ticker(ticker)
    mine = _digest(local)
    theirs = remote.digest(value, date)
    if theirs is None:
        remote.upload(local, value, date)
        failpoints.reach("offload_uploaded")
        theirs = remote.digest(value, date)
        result.days_uploaded += 1
        result.bytes_uploaded += local.stat().st_size
    if theirs != mine:
        raise RemoteError(
            f"{remote.url} holds {ticker} {date} with other bytes (sha256 {theirs}); "
            "the local day stays"
        )
    _write_marker(folder, {"state": VERIFIED, "since_ms": now_ms, "sha256": mine})
    failpoints.reach("offload_verified")
    log.info("event=day_offloaded ticker=%s date=%s url=%s", ticker, date, remote.url)


def _remove_after_grace(
    folder: Path, marker: dict[str, object], now_ms: int, grace_ms: int, result: OffloadResult
) -> None:
    local = folder / PART_NAME
    if not local.is_file():
        return
    since = marker.get("since_ms")
    if not isinstance(since, int) or now_ms < since + grace_ms:
        result.days_waiting += 1
        return
    local.unlink()
    result.days_removed += 1


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _read_marker(folder: Path) -> dict[str, object] | None:
    path = folder / MARKER
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({first_line(exc)}); restore or remove it") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged (not an object); restore or remove it")
    return value


def _write_marker(folder: Path, value: dict[str, object]) -> None:
    atomic_write_bytes(folder / MARKER, (json.dumps(value) + "\n").encode())
