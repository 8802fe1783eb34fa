"""Bad frames and refused ticks, kept with their reason: ``<data>/quarantine.jsonl``.

One JSON object per line: ``seq`` (the journal's, so the full frame can always be read back
from the journal), ``received_at`` (epoch s), ``reason`` and the ``frame`` text, cut to
``MAX_KEPT`` characters (``frame_chars`` holds the full length).

A seq is quarantined once: records are appended in seq order, and a frame whose seq is not
above the file's last one (a restart re-applying the journal) is not added again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from lake.datadir import QUARANTINE_FILE

MAX_KEPT = 4096


class Quarantine:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / QUARANTINE_FILE
        self.count = 0
        self.last_seq = _last_seq(self.path)
        self._out: TextIO | None = None

    def add(self, seq: int, received_at_us: int, reason: str, frame: str | bytes) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        record = {
            "seq": seq,
            "received_at": received_at_us / 1e6,
            "reason": reason,
            "frame": text[:MAX_KEPT],
            "frame_chars": len(text),
        }
        if self._out is None:
            self._out = self.path.open("a", encoding="utf-8", errors="replace")
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _last_seq(path: Path, tail: int = 1 << 16) -> int:
    """The seq of the file's last complete record (0 for none): reads only its tail."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - tail))
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0
