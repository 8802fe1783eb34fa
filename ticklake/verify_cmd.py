"""``ticklake verify``: check the journal, every lake file and every journaled tick's place in
the lake (``recorder.verify``); with ``--repair``, rebuild what the journal can.

Without ``--repair`` it only reads (safe beside a running recorder: frames the recorder has
not flushed yet are counted as pending, not missing). ``--repair`` takes the writer's lock,
so the recorder must be stopped. A short report in text, or one JSON object with
``--format json``.

Exit status 0 when clean (after a repair: when the repair left it clean), 1 when a problem
remains, 2 without a data directory, with a damaged seal file, or when ``--repair`` finds
the writer's lock held.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from lake.clock import SystemClock
from lake.datadir import DataLockedError
from lake.seal import SealError
from recorder.journal import DamagedRange
from recorder.verify import VerifyReport, repair, verify
from ticklake.commands import Command, data_problem, usage_error
from ticklake.config import add_options
from ticklake.options import DATA

__all__ = ["COMMAND", "VERIFY_OPTIONS", "add_arguments", "format_report", "report_json", "run"]

NAME: Final = "verify"
VERIFY_OPTIONS: Final = (DATA,)
_SHOWN: Final = 3  # damaged ranges, holes and files named on a line


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, VERIFY_OPTIONS, file_values)
    parser.add_argument(
        "--repair",
        action="store_true",
        help="move unreadable lake files to DATA/quarantine and re-apply the journal "
        "(takes the writer's lock: stop the recorder first)",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output (default: text)"
    )


def run(ns: argparse.Namespace) -> int:
    """Verify (and repair); print the report; see the module docstring for the status."""
    data: Path = ns.data
    problem = data_problem(data)
    if problem is not None:
        return usage_error(NAME, problem)
    try:
        report = repair(data, SystemClock()) if ns.repair else verify(data)
    except (SealError, DataLockedError) as exc:
        return usage_error(NAME, exc)
    if ns.format == "json":
        print(json.dumps(report_json(report)))
    else:
        print(format_report(report))
    return 0 if report.clean else 1


def format_report(report: VerifyReport) -> str:
    """A few lines: journal, lake files, ticks, what a repair did, and the verdict."""
    j, f = report.journal, report.files
    lines = [
        f"journal: {j.segments:,} segments, {j.records:,} records read, checksums verified"
        + (f"; {_damage(j.damage)}" if j.damage else "")
    ]
    if j.holes:
        missing = sum(h.seqs_missing for h in j.holes)
        at = ", ".join(f"after seq {h.after_seq:,}" for h in j.holes[:_SHOWN])
        lines.append(
            f"journal: {missing:,} seqs missing between segments ({at}): lost before, "
            "nothing can rebuild them"
        )
    read = ", ".join(f"{n:,} {kind}" for kind, n in f.read.items()) or "none"
    line = f"lake files: {read} read"
    if f.unreadable:
        shown = "; ".join(f"{path} ({reason})" for path, reason in f.unreadable[:_SHOWN])
        more = len(f.unreadable) - _SHOWN
        line += f"; {len(f.unreadable)} unreadable: {shown}" + (
            f" and {more} more" if more > 0 else ""
        )
    lines.append(line)
    lines.append(_ticks_line(report))
    lines += [f"repaired: {action}" for action in report.repaired]
    problems = report.problems
    verdict = "clean" if not problems else f"{len(problems)} problems: {'; '.join(problems)}"
    lines.append(f"verify: {verdict}")
    return "\n".join(lines)


def _ticks_line(report: VerifyReport) -> str:
    t = report.ticks
    if not t.compared:
        return "ticks: not compared (an unreadable lake file stops the readers' SQL)"
    line = f"ticks: {t.ticks:,} journaled ticks compared (frames up to seq {t.applied_seq:,})"
    parts = []
    for kind in ("missing", "twice", "differ"):
        count = getattr(t, kind)
        examples = t.examples.get(kind, [])
        parts.append(f"{count:,} {kind}" + (f" ({', '.join(examples)})" if count else ""))
    line += ": " + ", ".join(parts)
    if t.pending:
        line += f"; {t.pending:,} frames after seq {t.applied_seq:,} not in the lake yet"
    if t.retention_skipped:
        line += f"; {t.retention_skipped:,} ticks of days tick retention removed"
    return line


def _damage(damage: list[DamagedRange]) -> str:
    shown = ", ".join(f"{d.segment.name}@{d.offset}+{d.size} ({d.reason})" for d in damage[:_SHOWN])
    lost = sum(d.seqs_missing for d in damage)
    return f"{len(damage)} damaged ranges, {lost:,} frames unreadable: {shown}"


def report_json(report: VerifyReport) -> dict[str, Any]:
    """The report as one JSON object."""

    def ranges(found: list[DamagedRange]) -> list[dict[str, Any]]:
        return [
            {
                "segment": str(d.segment),
                "offset": d.offset,
                "bytes": d.size,
                "after_seq": d.after_seq,
                "resume_seq": d.resume_seq,
                "seqs_missing": d.seqs_missing,
                "reason": d.reason,
            }
            for d in found
        ]

    j, f = report.journal, report.files
    return {
        "clean": report.clean,
        "problems": report.problems,
        "journal": {
            "segments": j.segments,
            "records": j.records,
            "damage": ranges(j.damage),
            "holes": ranges(j.holes),
        },
        "files": {
            "read": dict(f.read),
            "unreadable": [{"path": str(p), "reason": r} for p, r in f.unreadable],
        },
        "ticks": asdict(report.ticks),
        "repaired": report.repaired,
    }


COMMAND: Final = Command(
    name=NAME,
    help="check the journal, the lake's files and every journaled tick; --repair rebuilds",
    description="Read every journal record (checksums), every lake file (minute, day and "
    "delta files) and check that every journaled tick since the oldest kept segment is in "
    "the lake exactly once. Reads only, safe beside a running recorder; --repair (recorder "
    "stopped) moves unreadable lake files to DATA/quarantine and re-applies the journal. "
    "Exit status 0 only when clean.",
    add_arguments=add_arguments,
    run=run,
    settings=VERIFY_OPTIONS,
)
