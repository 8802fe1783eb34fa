"""``ticklake verify``: is the data directory whole? The journal, the lake's files, and every
journaled tick in the lake exactly once; ``repair`` rebuilds what the journal can.

Three checks, reading only (a scratch DuckDB database lives in a temporary folder outside
the data directory, so memory stays bounded whatever the lake's size):

1. *journal*: every record of every segment is read and its checksum verified
   (``journal_read``, resynchronising past damage). Bad bytes still inside a segment are
   *damage* (a problem: their frames are unreadable); seqs missing between two segments
   are *holes*, reported but no problem: their bytes were moved to ``quarantine/`` when
   the recorder found them, or the journal was restored behind the lake, and nothing can
   rebuild them.
2. *files*: every lake file is read to its last row: through the readers' SQL (step 3), and
   file by file (``lake.verify_files``) those it never opens, or all of them, to name the
   culprits, when it fails.
3. *ticks*: every journaled frame is decoded (``recorder.wire.decode``); the ticks the lake
   must hold follow the ingest rules (a storable symbol and a time; of identical tick
   contents the lowest seq: ``lake.dedupe``) and are compared, by their content keys and
   seqs, with every row the readers' SQL sees (``lake.layout.duckdb_read_sql``):
   - *missing*: a journaled tick no lake row holds (same content, or the same seq);
   - *twice*: a tick content stored more than once, or a seq stored with two contents;
   - *differ*: a lake row whose seq is a journaled frame's but whose content is not what
     that frame decodes to (a lake written by an older decoder; a bad frame's seq).
   Frames after the seqs the lake has applied (``lake_seq_floor``: a running recorder's
   next flush, or a stopped one's next start) are *pending*, not missing; ticks of days
   tick retention removed (``state/maintenance.json``) are not expected either. When the
   readers' SQL fails (an unreadable lake file), the ticks are not compared.

``repair`` holds the writer's lock (no recorder may run), moves unreadable lake files to
``quarantine/`` (never deleted), re-applies the journal to the lake (``recorder.replay``:
idempotent; missing ticks and the quarantined files' ticks come back when the journal still
holds them) and checks again. Journal damage, doubled and differing rows stay: the journal
cannot rebuild them (``ticklake replay --into`` builds a fresh lake from the journal).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.clock import Clock
from lake.datadir import WriterLock, journal_dir
from lake.dedupe import conform, content_keys
from lake.errors import first_line
from lake.layout import duckdb_read_sql, remote_lake
from lake.maintenance import MaintenanceStateError, load_record
from lake.remote import RemoteError
from lake.schema import LAKE_SCHEMA, RECEIVED_TYPE
from lake.symbols import valid_symbol_mask
from lake.utc import day_start_ms, iso_utc
from lake.verify_files import (
    FileCheck,
    check_lake_files,
    lake_file_paths,
    quarantine_lake_files,
    unserved_minute_files,
)
from recorder.ingest import record_columns
from recorder.journal import DamagedRange, Journal, JournalRecord
from recorder.journal_recovery import lake_seq_floor
from recorder.replay import replay
from recorder.segment import list_segments
from recorder.wire.decode import decode_batch

__all__ = ["EXAMPLES", "JournalCheck", "TickCheck", "VerifyReport", "repair", "verify"]

log = logging.getLogger(__name__)
EXAMPLES: Final = 5  # rows named per kind of problem (all are counted)
BATCH: Final = 20_000  # journal records (lake rows) handled at once
MEMORY_LIMIT: Final = "256MB"  # each of the two DuckDB connections (the scratch one spills)
_ROWS: Final = pa.schema(
    [
        ("seq", pa.int64()),
        ("k1", pa.uint64()),
        ("k2", pa.uint64()),
        ("ticker", pa.string()),
        ("time_ms", pa.int64()),
    ]
)
_TABLE: Final = "(seq BIGINT, k1 UBIGINT, k2 UBIGINT, ticker VARCHAR, time_ms BIGINT)"


@dataclass
class JournalCheck:
    segments: int = 0
    records: int = 0
    damage: list[DamagedRange] = field(default_factory=list)  # bad bytes still in segments
    holes: list[DamagedRange] = field(default_factory=list)  # seqs missing between segments

    @property
    def seqs_lost(self) -> int:
        return sum(d.seqs_missing for d in self.damage)


@dataclass
class TickCheck:
    compared: bool = False  # False: an unreadable lake file kept the SQL from reading
    applied_seq: int = 0  # frames up to it must be in the lake
    ticks: int = 0  # distinct journaled ticks compared
    pending: int = 0  # frames after applied_seq: the recorder applies them next
    retention_skipped: int = 0  # ticks of days tick retention removed
    missing: int = 0
    twice: int = 0
    differ: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # missing/twice/differ


@dataclass
class VerifyReport:
    journal: JournalCheck
    files: FileCheck
    ticks: TickCheck
    repaired: list[str] = field(default_factory=list)  # what ``repair`` did

    @property
    def problems(self) -> list[str]:
        """One line per kind of problem found (empty: clean)."""
        found = []
        if self.journal.damage:
            found.append(
                f"journal: {len(self.journal.damage)} damaged ranges "
                f"({self.journal.seqs_lost:,} frames unreadable)"
            )
        if self.files.unreadable:
            found.append(f"lake: {len(self.files.unreadable)} unreadable files")
        elif self.files.sql_error:
            found.append(f"lake: the readers' SQL fails: {self.files.sql_error}")
        t = self.ticks
        for kind in ("missing", "twice", "differ"):
            if getattr(t, kind):
                found.append(f"ticks: {getattr(t, kind):,} {kind}")
        return found

    @property
    def clean(self) -> bool:
        return not self.problems


def verify(data: Path) -> VerifyReport:
    """Check the data directory ``data`` (see the module docstring); reads only."""
    data = Path(data)
    with tempfile.TemporaryDirectory(prefix="ticklake-verify-") as scratch_dir:
        scratch = _scratch(Path(scratch_dir))
        try:
            journal = _load_journal(data, scratch)
            ticks = TickCheck(applied_seq=lake_seq_floor(data) - 1)
            files = _load_lake_files(data, scratch)
            if not files.sql_error:
                _compare(scratch, ticks, _kept_from_ms(data))
        finally:
            scratch.close()
    return VerifyReport(journal, files, ticks)


def repair(data: Path, clock: Clock) -> VerifyReport:
    """Move unreadable lake files to quarantine, re-apply the journal, check again; holds
    the writer's lock throughout (DataLockedError while a recorder runs)."""
    data = Path(data)
    folder = journal_dir(data)
    folder.mkdir(parents=True, exist_ok=True)
    with WriterLock.acquire(folder) as lock:
        before = verify(data)
        done = quarantine_lake_files(data, [path for path, _ in before.files.unreadable])
        t = before.ticks
        if done or t.missing or t.pending or not t.compared:
            kept_from_ms = _kept_from_ms(data)
            start_us = None if kept_from_ms is None else kept_from_ms * 1000
            result = replay(data, int(clock.now() * 1000), start_us=start_us, lock=lock)
            done.append(
                f"re-applied {result.stats.frames:,} journaled frames "
                f"({result.stats.ticks_added:,} ticks added, "
                f"{result.stats.files_written:,} files written)"
            )
        after = verify(data)
    after.repaired = done
    return after


# -- the journal ------------------------------------------------------------------------------


def _scratch(folder: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(folder / "verify.duckdb"))
    con.execute("SET threads = 2")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = '{str(folder).replace(chr(39), chr(39) * 2)}'")
    for name in ("j", "l"):
        con.execute(f"CREATE TABLE {name} {_TABLE}")
    return con


def _load_journal(data: Path, scratch: duckdb.DuckDBPyConnection) -> JournalCheck:
    """Every journal record into table ``j``: one row per storable tick (content keys), and
    one without keys per frame that holds none."""
    check = JournalCheck()
    folder = journal_dir(data)
    if not folder.is_dir():
        return check
    check.segments = len(list_segments(folder))
    with Journal.open_reader(folder) as journal:
        for records in journal.iter_records(batch_size=BATCH):
            check.records += len(records)
            _insert(scratch, "j", _journal_rows(records))
        skipped = list(journal.skipped)
    check.damage = [d for d in skipped if d.size]
    check.holes = [d for d in skipped if not d.size]
    return check


def _journal_rows(records: list[JournalRecord]) -> pa.Table:
    """The ticks the lake must hold of these records (storable, with content keys), and a
    keyless row for each frame without one (a bad frame, a refused symbol, a heartbeat)."""
    frames, seqs, received = record_columns(records)
    batch = decode_batch(frames)
    index = batch.frame_index
    ticks = batch.ticks.append_column(
        "received_at", pa.array(received[index], type=pa.int64()).cast(RECEIVED_TYPE)
    ).append_column("seq", pa.array(seqs[index], type=pa.int64()))
    ticks = ticks.cast(LAKE_SCHEMA)
    ticks = ticks.filter(pc.and_(valid_symbol_mask(ticks["id"]), pc.is_valid(ticks["time"])))
    keyless = np.setdiff1d(seqs, ticks["seq"].to_numpy())
    none = pa.nulls(len(keyless), pa.uint64())
    rest = pa.table(
        [keyless, none, none, pa.nulls(len(keyless), pa.string()), pa.nulls(len(keyless))],
        schema=_ROWS,
    )
    return pa.concat_tables([_key_rows(ticks), rest])


def _key_rows(ticks: pa.Table) -> pa.Table:
    """(seq, content keys, ticker, time ms) of LAKE_SCHEMA rows."""
    first, second = content_keys(ticks)
    return pa.table(
        [ticks["seq"], first, second, ticks["id"], ticks["time"].cast(pa.int64())], schema=_ROWS
    )


def _insert(scratch: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    scratch.register("incoming", rows)
    try:
        scratch.execute(f"INSERT INTO {table} SELECT * FROM incoming")
    finally:
        scratch.unregister("incoming")


# -- the lake ---------------------------------------------------------------------------------


def _load_lake_files(data: Path, scratch: duckdb.DuckDBPyConnection) -> FileCheck:
    """The lake's rows into table ``l`` through the readers' SQL, which reads every file it
    serves; the files it never opens are read one by one. When the SQL fails, every file
    is read one by one to name the unreadable ones; with none to blame (a file deleted
    while listed), the SQL is tried once more before its error is reported."""
    error = _try_load_lake(data, scratch)
    if error is None:
        files = check_lake_files(data, unserved_minute_files(data))
        bad = {path for path, _ in files.unreadable}
        files.read = Counter(kind for kind, path in lake_file_paths(data) if path not in bad)
        return files
    files = check_lake_files(data)
    files.sql_error = error
    if not files.unreadable:
        scratch.execute("DELETE FROM l")
        files.sql_error = _try_load_lake(data, scratch) or ""
    return files


def _try_load_lake(data: Path, scratch: duckdb.DuckDBPyConnection) -> str | None:
    """``_load_lake``; the first line of DuckDB's error if it fails."""
    try:
        _load_lake(data, scratch)
    except (duckdb.Error, RemoteError) as exc:
        return first_line(exc)
    return None


def _load_lake(data: Path, scratch: duckdb.DuckDBPyConnection) -> None:
    """Every row the readers' SQL sees into table ``l``, with its content keys."""
    columns = ", ".join(f'"{name}"' for name in LAKE_SCHEMA.names)
    with duckdb.connect() as con:
        con.execute("SET threads = 2")
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        remote = remote_lake(data)
        if remote is not None:  # offloaded days are read from the object store
            remote.register(con)
        reader = con.sql(f"SELECT {columns} FROM {duckdb_read_sql(data)}").to_arrow_reader(BATCH)
        for batch in reader:
            if batch.num_rows:
                _insert(scratch, "l", _key_rows(conform(pa.Table.from_batches([batch]))))


def _kept_from_ms(data: Path) -> int | None:
    """Start of the first day tick retention kept (ticks before it were removed on
    purpose), from the last maintenance record; None: nothing was removed."""
    try:
        record = load_record(data)
    except MaintenanceStateError as exc:
        log.warning("event=verify_maintenance_record_unreadable reason=%s", exc)
        return None
    kept = record.kept_from() if record is not None else None
    return None if kept is None else day_start_ms(kept)


_EXPECTED: Final = """
CREATE TEMP TABLE e AS
SELECT k1, k2, min(seq) AS seq, arg_min(ticker, seq) AS ticker, arg_min(time_ms, seq) AS time_ms
FROM j WHERE k1 IS NOT NULL GROUP BY k1, k2
"""
_QUERIES: Final = {
    "missing": """
SELECT seq, ticker, time_ms FROM e
WHERE seq <= $applied AND time_ms >= $kept
  AND NOT EXISTS (SELECT 1 FROM l WHERE l.k1 = e.k1 AND l.k2 = e.k2)
  AND NOT EXISTS (SELECT 1 FROM l WHERE l.seq = e.seq)
ORDER BY seq""",
    "twice": """
SELECT min(seq), any_value(ticker), min(time_ms) FROM l GROUP BY k1, k2 HAVING count(*) > 1
UNION ALL
SELECT seq, any_value(ticker), min(time_ms) FROM l GROUP BY seq
HAVING count(DISTINCT (k1, k2)) > 1
ORDER BY 1""",
    "differ": """
SELECT l.seq, l.ticker, l.time_ms FROM l
WHERE l.seq IN (SELECT seq FROM j WHERE seq <= $applied)
  AND NOT EXISTS (SELECT 1 FROM j WHERE j.seq = l.seq AND j.k1 = l.k1 AND j.k2 = l.k2)
ORDER BY l.seq""",
}


def _compare(scratch: duckdb.DuckDBPyConnection, ticks: TickCheck, kept_ms: int | None) -> None:
    """Fill ``ticks`` from tables ``j`` (journal) and ``l`` (lake)."""
    params: dict[str, Any] = {"applied": ticks.applied_seq, "kept": kept_ms or -(1 << 62)}
    scratch.execute(_EXPECTED)
    counts = scratch.execute(
        "SELECT count(*) FILTER (WHERE seq <= $applied AND time_ms >= $kept), "
        "count(*) FILTER (WHERE seq <= $applied AND time_ms < $kept) FROM e",
        params,
    ).fetchone()
    assert counts is not None
    ticks.ticks, ticks.retention_skipped = int(counts[0]), int(counts[1])
    pending = scratch.execute(
        "SELECT count(DISTINCT seq) FROM j WHERE seq > $applied", {"applied": ticks.applied_seq}
    ).fetchone()
    ticks.pending = int(pending[0]) if pending else 0
    for kind, query in _QUERIES.items():
        needed = {k: v for k, v in params.items() if f"${k}" in query}
        found = scratch.execute(f"SELECT count(*) FROM ({query})", needed).fetchone()
        setattr(ticks, kind, int(found[0]) if found else 0)
        rows = scratch.execute(f"{query} LIMIT {EXAMPLES}", needed).fetchall()
        ticks.examples[kind] = [
            f"seq {seq} {ticker} {iso_utc(int(time_ms))}" for seq, ticker, time_ms in rows
        ]
    ticks.compared = True
