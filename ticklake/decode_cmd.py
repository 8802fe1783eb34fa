"""``ticklake decode``: captured frames in, one JSON object per tick out.

Reads frames (v1 or v2, one per line) from files or stdin and writes JSON Lines: a tick
object per decodable frame (see :mod:`recorder.wire.render`), ``{"line": N, "error": "..."}``
for a bad line, nothing for a skipped non-pricing envelope. A summary goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TextIO

from recorder.wire.decode import decode_batch
from recorder.wire.render import tick_records

BATCH_LINES = 10_000


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_stream(source: TextIO, out: TextIO, first_line: int = 1) -> Counter[str]:
    """Decode every line of ``source`` into ``out``; returns counts (ticks, errors, skipped)."""
    counts: Counter[str] = Counter()
    line_no = first_line
    for batch in _batches(source, BATCH_LINES):
        decoded = decode_batch(batch)
        errors = {e.index: e.reason for e in decoded.errors}
        records = iter(tick_records(decoded.ticks))
        rows = iter(decoded.frame_index.tolist())
        next_row = next(rows, None)
        for i in range(len(batch)):
            if i == next_row:
                out.write(json.dumps(next(records), separators=(",", ":")) + "\n")
                next_row = next(rows, None)
                counts["ticks"] += 1
            elif i in errors:
                out.write(json.dumps({"line": line_no + i, "error": errors[i]}) + "\n")
                counts["errors"] += 1
        counts["skipped"] += sum(decoded.skipped.values())
        line_no += len(batch)
    counts["lines"] = line_no - first_line
    return counts


def run(paths: list[str]) -> int:
    total: Counter[str] = Counter()
    for path in paths or ["-"]:
        if path == "-":
            total += decode_stream(sys.stdin, sys.stdout)
            continue
        try:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as source:
                total += decode_stream(source, sys.stdout)
        except OSError as exc:
            print(f"ticklake decode: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
    sys.stdout.flush()
    print(
        f"decoded {total['ticks']} ticks from {total['lines']} lines: "
        f"{total['errors']} bad, {total['skipped']} skipped",
        file=sys.stderr,
    )
    return 0
