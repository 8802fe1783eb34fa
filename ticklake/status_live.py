"""``ticklake status``'s answer to "is it working?": the recorder, its connections, the
seal and the features, at one instant.

- recorder: running when the data directory's writer lock is held by the PID that
  ``state/recorder.json`` names (``recorder.state``); then its PID and start. A free lock
  means not running, whatever the file says (it is stale); a lock held by another PID is a
  ``replay``/``import``, or a recorder before its first cycle;
- connections (a running recorder's only): state, frames received, last frame and its age;
- seal: the watermark and its lag (now - watermark; null before the first seal);
- features: the newest window with features (``max(window_start)``, read-only, one short
  connection) and the lag of the newest sealed window behind it (0 when caught up). While
  markets are closed no window holds ticks, so the lag grows without work being left.

JSON (``live_json``): times ISO 8601 UTC with milliseconds and ``Z``, lags in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from analytics.database import DatabaseError, DatabaseMissingError
from lake.datadir import writer_lock_holder
from lake.seal import SealState
from lake.utc import MINUTE_MS, iso_utc
from recorder.state import RecorderStateError, load_recorder_state
from ticklake.reader import read_database
from ticklake.sql_sandbox import SandboxError

__all__ = ["FEATURES_TIMEOUT", "live_json", "live_lines"]

FEATURES_TIMEOUT: Final = 2.0  # seconds status waits for the job to let go of the database


def live_json(data: Path, seal: SealState, now: float) -> dict[str, Any]:
    """The recorder, its connections, the seal and the features at ``now`` (epoch s)."""
    now_ms = int(now * 1000)
    recorder, connections = _recorder(data)
    out: dict[str, Any] = {"recorder": recorder, "connections": connections}
    for conn in out["connections"]:
        last = conn["last_frame"]
        conn["last_frame_age_s"] = None if last is None else round((now_ms - last) / 1000, 3)
        conn["last_frame"] = None if last is None else iso_utc(last)
    watermark = seal.watermark_ms or None
    out["seal"] = {
        "watermark": None if watermark is None else iso_utc(watermark),
        "lag_s": None if watermark is None else round((now_ms - watermark) / 1000, 3),
    }
    out["features"] = _features(data, watermark)
    return out


def _recorder(data: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recorder's facts, and its connections (none unless it runs); frame times in ms."""
    holder = writer_lock_holder(data)
    out: dict[str, Any] = {"running": False, "pid": None, "since": None, "lock_holder": holder}
    try:
        state = load_recorder_state(data)
    except RecorderStateError as exc:
        out["state_error"] = str(exc)
        return out, []
    if state is None:
        return out, []
    out["state_written"] = iso_utc(state.written_ms)
    if holder is not None and holder == state.pid:
        out.update(running=True, pid=state.pid, since=iso_utc(state.started_ms))
        return out, [
            {
                "connection": c.id,
                "state": c.state,
                "frames_received": c.frames_received,
                "last_frame": c.last_frame_ms,
            }
            for c in state.connections
        ]
    out["stale_pid"] = state.pid
    return out, []


def _features(data: Path, watermark_ms: int | None) -> dict[str, Any]:
    sealed = None if watermark_ms is None else watermark_ms - MINUTE_MS
    out: dict[str, Any] = {
        "newest_window": None,
        "newest_sealed_window": None if sealed is None else iso_utc(sealed),
        "lag_s": None,
    }
    try:
        table = read_database(
            data,
            "SELECT epoch_ms(max(window_start)) FROM features",
            timeout=FEATURES_TIMEOUT,
        )
    except DatabaseMissingError:
        out["error"] = "no features database yet"
        return out
    except (DatabaseError, SandboxError) as exc:
        out["error"] = str(exc).splitlines()[0]
        return out
    newest = None if table is None else table.column(0)[0].as_py()
    if newest is not None:
        out["newest_window"] = iso_utc(int(newest))
        if sealed is not None:
            out["lag_s"] = max(0.0, (sealed - int(newest)) / 1000)
    return out


def live_lines(live: dict[str, Any]) -> list[str]:
    """The text form: one line each for the recorder, its connections, seal and features."""
    rec = live["recorder"]
    if rec["running"]:
        lines = [f"recorder: running, pid {rec['pid']}, since {rec['since']}"]
    else:
        line = "recorder: not running"
        if rec["lock_holder"] is not None:
            line += f" (the writer's lock is held by pid {rec['lock_holder']}: replay, import"
            line += " or a recorder before its first cycle)"
        elif "stale_pid" in rec:
            line += f" (state/recorder.json is stale: pid {rec['stale_pid']}"
            line += f", last written {rec['state_written']})"
        lines = [line]
    if "state_error" in rec:
        lines.append(f"recorder: {rec['state_error']}")
    for conn in live["connections"]:
        if conn["last_frame"] is None:
            heard = "no frame yet"
        else:
            heard = f"last frame {conn['last_frame']} ({conn['last_frame_age_s']:.1f} s ago)"
        lines.append(
            f"connection {conn['connection']}: {conn['state']}, "
            f"{conn['frames_received']:,} frames, {heard}"
        )
    seal = live["seal"]
    if seal["watermark"] is None:
        lines.append("seal: none yet")
    else:
        lines.append(f"seal: watermark {seal['watermark']}, {seal['lag_s']:.1f} s behind now")
    feats = live["features"]
    if "error" in feats:
        lines.append(f"features: {feats['error']}")
    elif feats["newest_window"] is None:
        lines.append("features: no rows yet")
    elif feats["lag_s"] is None:
        lines.append(f"features: newest window {feats['newest_window']}")
    else:
        lines.append(
            f"features: newest window {feats['newest_window']}, "
            f"{feats['lag_s']:.0f} s behind the newest sealed window "
            f"{feats['newest_sealed_window']}"
        )
    return lines
