"""``ticklake decode``: captured frames in, one JSON object per tick out.

Reads frames (v1 or v2, one per line) from files or stdin and writes JSON Lines: a tick
object per decodable frame (see :mod:`recorder.wire.render`), ``{"line": N, "error": "..."}``
for a bad line, nothing for a skipped non-pricing envelope. A summary goes to stderr; it
names the field numbers the schema does not know, or that came with another wire type,
and how often (the ticks are printed without them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, TextIO

from recorder.wire.decode import decode_batch
from recorder.wire.render import tick_records
from ticklake.commands import Command, usage_error

__all__ = ["COMMAND", "decode_files", "decode_stream", "run"]

NAME: Final = "decode"
BATCH_LINES = 10_000


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    parser.add_argument("files", nargs="*", help="files to read ('-' or none: stdin)")


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_stream(
    source: TextIO, out: TextIO, first_line: int = 1, unknown: Counter[int] | None = None
) -> Counter[str]:
    """Decode every line of ``source`` into ``out``; returns counts (ticks, errors, skipped)
    and adds the unknown fields met, by field number, to ``unknown``."""
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
        if unknown is not None:
            unknown.update(decoded.unknown_fields)
        line_no += len(batch)
    counts["lines"] = line_no - first_line
    return counts


def run(ns: argparse.Namespace) -> int:
    """Decode ``ns.files`` (stdin when none); 2 when a file cannot be read."""
    files: list[str] = ns.files
    return decode_files(files)


def decode_files(paths: list[str]) -> int:
    """Decode each path (``-``: stdin) to stdout, a summary to stderr; the exit status."""
    total: Counter[str] = Counter()
    unknown: Counter[int] = Counter()
    for path in paths or ["-"]:
        if path == "-":
            total += decode_stream(sys.stdin, sys.stdout, unknown=unknown)
            continue
        try:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as source:
                total += decode_stream(source, sys.stdout, unknown=unknown)
        except OSError as exc:
            return usage_error(NAME, f"cannot read {path}: {exc.strerror}")
    sys.stdout.flush()
    fields = ", ".join(f"{number} ({count})" for number, count in sorted(unknown.items()))
    print(
        f"decoded {total['ticks']} ticks from {total['lines']} lines: "
        f"{total['errors']} bad, {total['skipped']} skipped"
        + (f"; unknown fields (count): {fields}" if fields else ""),
        file=sys.stderr,
    )
    return 0


COMMAND: Final = Command(
    name=NAME,
    help="decode captured frames (v1 or v2, one per line) into JSON lines",
    description="Decode captured frames (v1 base64 or v2 JSON, one per line) from files "
    "or stdin into one JSON object per tick; bad lines become {'line', 'error'} objects.",
    add_arguments=add_arguments,
    run=run,
)
