"""Where a tick lives in the lake: paths of both tiers, and the one SQL expression over them.

Layout under the lake root::

    ticks/ticker=<folder value>/date=<YYYY-MM-DD>/minute=<HHMM>/part.parquet   minute tier
    history/ticker=<folder value>/date=<YYYY-MM-DD>/part.parquet               history tier

The minute tier holds one file per (ticker, UTC minute): the live edge. The history tier holds
one time-sorted file per (ticker, UTC date) once that day is compacted (``compact.py``).
Readers go through ``duckdb_read_sql`` (SQL) or ``lake.read_minutes`` (exact paths), which
both see each tick exactly once whichever tier holds it.

Invariants:
- only symbols that pass ``validate_symbol`` become folders, and every built path is
  checked to stay inside the root after normalisation (lexically: a ``ticks`` folder that
  is a symlink to another disk is fine);
- folder value = symbol with each ``=`` written as ``%3D``. DuckDB cannot read a Hive value
  that contains ``=`` (``ticker=EURUSD=X`` fails to bind), and both DuckDB and PyArrow
  percent-decode values, so ``ticker=EURUSD%3DX`` reads back as ``EURUSD=X`` in both.
  Symbols never contain ``%``, so the encoding is unambiguous and exactly reversible; a
  folder whose value is not the canonical encoding of a valid symbol is not ours;
- minutes are ``[start, start + 60 s)`` in UTC; ``minute_start_ms`` is a multiple of 60,000;
- readers must pass ``hive_types`` (DuckDB) or an explicit partitioning schema (PyArrow):
  otherwise a ticker such as ``1234`` comes back as an integer;
- a *placeholder* is a zero-row LAKE_SCHEMA file under the folder value ``!empty`` (never a
  symbol) and date 1970-01-01. ``lake.write_minute`` creates the history tier's; compaction
  creates the minute tier's when it first hides a day, long before it deletes minute files.
  So both globs always match a file (DuckDB refuses a glob without files) and
  ``duckdb_read_sql`` keeps one shape; and ``!`` sorts before every symbol, so the file
  DuckDB opens while binding to learn the schema is the placeholder, which is never deleted;
- a lake whose placeholders lack some of today's columns (written before fields 35-45 had
  names: ``lake.schema.LEGACY_COLUMNS``), or that has none yet, may hold files of both
  vintages: its expressions read files by column name (``union_by_name``, which opens every
  file of a glob while binding) and give the same columns, an old file's new ones NULL
  except those its placeholders already held (``lake.schema.LEGACY_SOURCES``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.parquet as pq

from lake.atomic import list_names
from lake.datadir import DELTAS_DIR, HISTORY_DIR, TICKS_DIR
from lake.deltas import DELTA_GLOB, FOLD_GLOB, PLACEHOLDER_NAME, latest_fold
from lake.remote import PLACEHOLDER_FOLDER, RemoteLake, remote_of
from lake.schema import LAKE_SCHEMA, LEGACY_COLUMNS, LEGACY_SOURCES, TICK_SCHEMA
from lake.symbols import SymbolError, validate_symbol
from lake.utc import MINUTE_MS

if TYPE_CHECKING:
    import pyarrow.dataset as ds

__all__ = [
    "HIDDEN_MARKER",
    "HISTORY_GLOB",
    "HIVE_TYPES_SQL",
    "PARTITION_SCHEMA",
    "PART_NAME",
    "PLACEHOLDER_VALUE",
    "TICKS_GLOB",
    "date_dir",
    "decode_ticker",
    "duckdb_read_sql",
    "duckdb_ticker_sql",
    "encode_ticker",
    "hidden_days_sql",
    "hidden_marker",
    "history_dir",
    "history_file",
    "history_placeholder",
    "lake_days",
    "minute_dir",
    "minute_file",
    "minute_placeholder",
    "parse_history_file",
    "parse_minute_dir",
    "pyarrow_partitioning",
    "remote_lake",
    "ticker_dir",
]

PART_NAME: Final = "part.parquet"
TICKS_GLOB: Final = f"{TICKS_DIR}/*/*/*/*.parquet"
"""Every minute file, relative to the lake root (temporaries end in ``.tmp``, not matched)."""
HISTORY_GLOB: Final = f"{HISTORY_DIR}/*/*/*.parquet"
"""Every day file of the history tier, relative to the lake root."""
HIDDEN_MARKER: Final = ".compacted.json"
"""In a minute-tier date folder: the day is in the history tier; its minute files await
deletion (written by ``compact.py``)."""
PLACEHOLDER_VALUE: Final = "!empty"
_PLACEHOLDER_DATE: Final = "date=1970-01-01"

HIVE_TYPES_SQL: Final = "{'ticker': 'VARCHAR', 'date': 'DATE', 'minute': 'VARCHAR'}"
_HISTORY_TYPES_SQL: Final = "{'ticker': 'VARCHAR', 'date': 'DATE'}"
_HIVE_COLUMNS: Final = {
    HIVE_TYPES_SQL: ", date, minute, ticker",
    _HISTORY_TYPES_SQL: ", date, ticker",
}
PARTITION_SCHEMA: Final = pa.schema(
    [("ticker", pa.string()), ("date", pa.date32()), ("minute", pa.string())]
)
_GLOB_CHARS: Final = re.compile(r"[*?\[\]{}]")
_DATE_RE: Final = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_MINUTE_RE: Final = re.compile(r"minute=([01]\d|2[0-3])([0-5]\d)")


def encode_ticker(symbol: str) -> str:
    """The folder value for a valid symbol (``EURUSD=X`` -> ``EURUSD%3DX``)."""
    return validate_symbol(symbol).replace("=", "%3D")


def decode_ticker(value: str) -> str:
    """The symbol a folder value names; SymbolError unless it is a canonical encoding."""
    symbol = value.replace("%3D", "=")
    if "%" in symbol or "=" in value:
        raise SymbolError(f"folder value {value!r} rejected: not an encoded symbol")
    return validate_symbol(symbol)


# -- minute tier ------------------------------------------------------------------------------


def ticker_dir(root: Path, ticker: str) -> Path:
    """``<root>/ticks/ticker=<folder value>``."""
    return _inside(root, Path(root, TICKS_DIR, f"ticker={encode_ticker(ticker)}"))


def date_dir(root: Path, ticker: str, date: dt.date) -> Path:
    """``<root>/ticks/ticker=…/date=YYYY-MM-DD``."""
    return ticker_dir(root, ticker) / f"date={date.isoformat()}"


def minute_dir(root: Path, ticker: str, minute_start_ms: int) -> Path:
    """The folder of one (ticker, UTC minute); ``minute_start_ms`` must be minute-aligned."""
    if minute_start_ms % MINUTE_MS:
        raise ValueError(f"minute_start_ms={minute_start_ms} is not a multiple of {MINUTE_MS}")
    start = dt.datetime.fromtimestamp(minute_start_ms / 1000, tz=dt.UTC)
    return date_dir(root, ticker, start.date()) / f"minute={start:%H%M}"


def minute_file(root: Path, ticker: str, minute_start_ms: int) -> Path:
    """The Parquet file of one (ticker, UTC minute)."""
    return minute_dir(root, ticker, minute_start_ms) / PART_NAME


def hidden_marker(root: Path, ticker: str, date: dt.date) -> Path:
    """The marker saying (ticker, date)'s minute files are hidden behind its day file."""
    return date_dir(root, ticker, date) / HIDDEN_MARKER


def parse_minute_dir(path: Path) -> tuple[str, int]:
    """(ticker, minute_start_ms) of a minute folder or of the ``part.parquet`` inside it.

    Raises SymbolError for a foreign ticker folder and ValueError for any other name that
    ``minute_dir`` would not have produced.
    """
    path = Path(path)
    if path.name == PART_NAME:
        path = path.parent
    ticker_part, date_part, minute_part = path.parts[-3:] if len(path.parts) >= 3 else ("",) * 3
    date_match = _DATE_RE.fullmatch(date_part)
    minute_match = _MINUTE_RE.fullmatch(minute_part)
    if not ticker_part.startswith("ticker=") or date_match is None or minute_match is None:
        raise ValueError(f"{path} is not a minute folder (…/ticker=…/date=…/minute=HHMM)")
    ticker = decode_ticker(ticker_part.removeprefix("ticker="))
    day = dt.date.fromisoformat(date_match[1])
    hour, minute = int(minute_match[1]), int(minute_match[2])
    start = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
    return ticker, int(start.timestamp()) * 1000


# -- history tier -----------------------------------------------------------------------------


def history_dir(root: Path, ticker: str, date: dt.date) -> Path:
    """``<root>/history/ticker=<folder value>/date=YYYY-MM-DD``."""
    folder = Path(root, HISTORY_DIR, f"ticker={encode_ticker(ticker)}", f"date={date}")
    return _inside(root, folder)


def history_file(root: Path, ticker: str, date: dt.date) -> Path:
    """The day file of (ticker, UTC date) in the history tier."""
    return history_dir(root, ticker, date) / PART_NAME


def parse_history_file(path: Path) -> tuple[str, dt.date]:
    """(ticker, date) of a day file or its folder; SymbolError/ValueError if not ours."""
    path = Path(path)
    if path.name == PART_NAME:
        path = path.parent
    ticker_part, date_part = path.parts[-2:] if len(path.parts) >= 2 else ("", "")
    date_match = _DATE_RE.fullmatch(date_part)
    if not ticker_part.startswith("ticker=") or date_match is None:
        raise ValueError(f"{path} is not a history folder (…/ticker=…/date=YYYY-MM-DD)")
    return decode_ticker(ticker_part.removeprefix("ticker=")), dt.date.fromisoformat(date_match[1])


def lake_days(root: Path, tier: str) -> Iterator[tuple[str, dt.date, Path]]:
    """(ticker, date, date folder) of every day folder of a tier (``TICKS_DIR`` or
    ``HISTORY_DIR``), sorted; placeholders and foreign folders are skipped."""
    top = Path(root, tier)
    for ticker_name in sorted(list_names(top)):
        if not ticker_name.startswith("ticker=") or ticker_name == f"ticker={PLACEHOLDER_VALUE}":
            continue
        try:
            ticker = decode_ticker(ticker_name.removeprefix("ticker="))
        except SymbolError:
            continue
        for date_name in sorted(list_names(top / ticker_name)):
            match = _DATE_RE.fullmatch(date_name)
            if match is not None:
                try:
                    date = dt.date.fromisoformat(match[1])
                except ValueError:
                    continue
                yield ticker, date, top / ticker_name / date_name


def minute_placeholder(root: Path) -> Path:
    """The minute tier's zero-row placeholder file."""
    value = f"ticker={PLACEHOLDER_VALUE}"
    return Path(root, TICKS_DIR, value, _PLACEHOLDER_DATE, "minute=0000", PART_NAME)


def history_placeholder(root: Path) -> Path:
    """The history tier's zero-row placeholder file."""
    return Path(root, HISTORY_DIR, f"ticker={PLACEHOLDER_VALUE}", _PLACEHOLDER_DATE, PART_NAME)


# -- readers ----------------------------------------------------------------------------------


def duckdb_read_sql(
    root: Path | str, hidden: Sequence[str] | None = None, remote: RemoteLake | None = None
) -> str:
    """One expression, usable as ``FROM <expr>``, over every tick of both tiers.

    Columns: LAKE_SCHEMA's, then ``date`` (DATE), ``minute`` (VARCHAR ``HHMM``, UTC;
    computed from ``time`` for history rows) and ``ticker`` (VARCHAR), in the order DuckDB
    gives a Hive glob's columns. Build it again each time a connection opens: its shape
    depends on which tiers hold files (DuckDB fails on a glob without files, so such a tier
    is left out; an empty lake reads as no rows), and it names the days hidden right now.

    Exactly once: the history day files are listed first, by ``read_blob`` (names only,
    nothing is read), then the minute files and the history files by ``read_parquet``; DuckDB
    makes all three listings, in that order, while binding (``glob()`` would list lazily,
    while executing). A (ticker, date) is served by its history rows if the first listing
    had its day file, else by its minute rows. Day files only appear (compaction) and the
    minute files of a compacted day stay until its grace period has passed, so each day
    comes from exactly one tier, whatever compaction does meanwhile (pinned by
    ``test_duckdb_lists_every_history_day_before_the_history_files``). Days already hidden
    when the expression is built are also filtered out of the minute glob by constants,
    so DuckDB prunes those files unopened and their deletion cannot fail the query.

    The object store (``lake.remote``: ``remote``, else the one the data directory names)
    comes first: a (ticker, date) it lists is served from it, every other from the local
    tiers as above. The connection must be able to read it (``RemoteLake.register``).
    """
    base, quoted = _lake_root(root)
    legacy = _legacy(base)
    files = _files_sql(base, quoted, hidden, legacy)
    store = _remote(base, remote)
    if store is not None:
        files = _with_remote(files, f"'{store.sql_root}/{HISTORY_GLOB}'", legacy=legacy)
    return _with_deltas(base, files, legacy=legacy)


def remote_lake(root: Path | str, remote: RemoteLake | None = None) -> RemoteLake | None:
    """The object store a reader of ``root`` must register on its connection: ``remote``,
    else the one the data directory names; None when neither holds a day yet."""
    return _remote(_lake_root(root)[0], remote)


def _remote(base: Path, remote: RemoteLake | None) -> RemoteLake | None:
    """The object store to read: the one the data directory is bound to (its placeholder
    was written before the binding: no request), else ``remote`` if it holds any day (one
    request; RemoteError when it cannot be reached)."""
    bound = remote_of(base)
    if bound is not None and (remote is None or remote.url == bound.url):
        return bound
    if remote is None:
        return None
    return remote if remote.has_placeholder() else None


def _with_remote(files_sql: str, day_files: str, where: str = "", *, legacy: bool) -> str:
    """``files_sql`` (the local tiers) with the object store's days: each (ticker, date)
    its listing ``day_files`` holds from the object store, every other from ``files_sql``
    (``lake.remote``: a local day file outlives its upload by a grace period)."""
    rows = _read_parquet_sql(day_files, _HISTORY_TYPES_SQL, ", allow_empty = true", legacy=legacy)
    days = _listed_days_sql(f"read_blob({day_files})")
    return (
        f"(SELECT l.* FROM {files_sql} AS l ANTI JOIN ({days}) AS r "
        f"ON l.ticker = r.ticker AND l.date = r.date "
        f"UNION ALL SELECT * FROM ({_HISTORY_ROWS} FROM {rows}){where})"
    )


def _files_sql(base: Path, quoted: str, hidden: Sequence[str] | None, legacy: bool) -> str:
    minute = _holds_parquet(base / TICKS_DIR, 3, minute_placeholder(base))
    history = _holds_parquet(base / HISTORY_DIR, 2, history_placeholder(base))
    minute_sql = _read_parquet_sql(f"'{quoted}/{TICKS_GLOB}'", HIVE_TYPES_SQL, legacy=legacy)
    history_sql = _read_parquet_sql(f"'{quoted}/{HISTORY_GLOB}'", _HISTORY_TYPES_SQL, legacy=legacy)
    if not history:
        return minute_sql if minute else _EMPTY_SQL
    if not minute:
        return f"({_HISTORY_ROWS} FROM {history_sql})"
    hidden = hidden_days_sql(base) if hidden is None else hidden
    # read_blob lists every file while binding (glob() would list lazily)
    days = f"read_blob('{quoted}/{HISTORY_GLOB}')"
    return _exactly_once_sql(minute_sql, history_sql, days, hidden)


def _with_deltas(base: Path, files_sql: str, where: str = "", *, legacy: bool) -> str:
    """``files_sql`` plus the rows of the open edge (``lake.deltas``), each row served from
    exactly one of them by the newest fold marker; unchanged while no marker exists.

    The marker is listed once and joined to both sides, so both use the same one. Delta rows
    are deduplicated among themselves (two deltas may hold the same seq after a restart; a
    reconnect may re-send a tick), keeping the lowest seq, as a fold would."""
    if latest_fold(base) is None:
        return files_sql
    quoted = _lake_root(base)[1]
    fold = (
        f"(SELECT {_FOLD_FIELDS} FROM (SELECT max(filename) AS name "
        f"FROM read_blob('{quoted}/{FOLD_GLOB}')))"
    )
    delta_files = f"read_parquet('{quoted}/{DELTA_GLOB}'"
    delta_files = _by_name(delta_files, "") if legacy else delta_files + ")"
    deltas = (
        f"(SELECT {_COLUMNS}, {_DATE_OF_TIME} AS date, {_MINUTE_OF_TIME} AS minute, "
        f"id AS ticker, true AS delta FROM {delta_files} "
        f"WHERE seq >= 1{where} "
        f"QUALIFY row_number() OVER (PARTITION BY {_TICK_COLUMNS} ORDER BY seq) = 1)"
    )
    in_files = '(u.seq <= k.b OR (u.seq <= k.s AND epoch_ms(u."time") < k.w))'
    return (
        f"(SELECT {_U_COLUMNS}, u.date, u.minute, u.ticker FROM "
        f"(SELECT *, false AS delta FROM {files_sql} UNION ALL BY NAME {deltas}) AS u, "
        f"{fold} AS k WHERE u.delta <> {in_files})"
    )


def duckdb_ticker_sql(
    root: Path | str,
    symbol: str,
    day: str | None = None,
    hidden: Sequence[str] | None = None,
    remote: RemoteLake | None = None,
) -> str | None:
    """``duckdb_read_sql`` for one ticker: ``symbol`` is a SQL expression (a macro's
    parameter) giving the symbol, ``day`` one giving a DATE or NULL (every day); only that
    ticker's folders (of that day) are listed, so a query's cost does not grow with the
    number of tickers the lake holds (the whole-lake expression lists every file of both
    tiers; README, Benchmarks: ticker-day query).

    The same exactly-once rule; each tier's glob is listed together with its placeholder
    (``allow_empty``: a ticker without files in a tier reads as no rows there). None unless
    both placeholders exist (a lake no writer of this version has written to yet) or the
    object store (see ``duckdb_read_sql``) has days: then use the whole-lake expression
    filtered by ticker. The object store's days of that ticker come first, as there.
    """
    base, quoted = _lake_root(root)
    placeholders = minute_placeholder(base), history_placeholder(base)
    store = _remote(base, remote)
    local = all(p.is_file() for p in placeholders)
    if not local and (store is None or _has_local_files(base)):
        return None  # local files without placeholders: the whole-lake expression reads them
    legacy = _legacy(base)
    folder = f"replace({symbol}, '=', '%3D')"
    date = "'*'" if day is None else f"coalesce(strftime(CAST({day} AS DATE), '%Y-%m-%d'), '*')"
    on_day = f" AND ({day} IS NULL OR {_DATE_OF_TIME} = CAST({day} AS DATE))" if day else ""
    files = None
    if local:
        files = _local_ticker_sql(base, quoted, (symbol, folder, date), hidden, legacy)
    if store is not None:
        top = f"'{store.sql_root}/{HISTORY_DIR}/ticker='"
        glob = f"{top} || {folder} || '/date=' || {date} || '/*.parquet'"
        placeholder = f"'{store.sql_root}/{HISTORY_DIR}/{PLACEHOLDER_FOLDER}/{PART_NAME}'"
        where = f" WHERE ticker = {symbol}"
        files = _with_remote(files or _EMPTY_SQL, f"[{glob}, {placeholder}]", where, legacy=legacy)
    assert files is not None
    return _with_deltas(base, files, f" AND id = {symbol}{on_day}", legacy=legacy)


def _local_ticker_sql(
    base: Path,
    quoted: str,
    ticker: tuple[str, str, str],
    hidden: Sequence[str] | None,
    legacy: bool,
) -> str:
    """Both local tiers for one ticker (``duckdb_ticker_sql``): ``ticker`` is the SQL of
    its symbol, its folder value and its date's folder value (or ``'*'``)."""
    symbol, folder, date = ticker
    placeholders = minute_placeholder(base), history_placeholder(base)
    minute_ph, history_ph = (os.fspath(p).replace("'", "''") for p in placeholders)
    minute_glob = (
        f"'{quoted}/{TICKS_DIR}/ticker=' || {folder} || '/date=' || {date} || '/*/*.parquet'"
    )
    history_glob = (
        f"'{quoted}/{HISTORY_DIR}/ticker=' || {folder} || '/date=' || {date} || '/*.parquet'"
    )
    empty = ", allow_empty = true"
    minute_files = f"[{minute_glob}, '{minute_ph}']"
    minute_sql = _read_parquet_sql(minute_files, HIVE_TYPES_SQL, empty, legacy=legacy)
    history_files = f"[{history_glob}, '{history_ph}']"
    history_sql = _read_parquet_sql(history_files, _HISTORY_TYPES_SQL, empty, legacy=legacy)
    hidden = hidden_days_sql(base) if hidden is None else hidden
    days = f"read_blob({history_files}{empty})"
    return _exactly_once_sql(minute_sql, history_sql, days, hidden, f" AND u.ticker = {symbol}")


def _lake_root(root: Path | str) -> tuple[Path, str]:
    """The lake root as a path and as the text of a SQL string literal."""
    text = os.fspath(root).rstrip("/") or "/"
    if _GLOB_CHARS.search(text):
        raise ValueError(f"lake root {text!r} contains a glob character; move the lake")
    return Path(text), text.replace("'", "''")


def _read_parquet_sql(files: str, hive_types: str, options: str = "", *, legacy: bool) -> str:
    call = f"read_parquet({files}, hive_partitioning = true, hive_types = {hive_types}{options}"
    if not legacy:
        return call + ")"
    return _by_name(call, _HIVE_COLUMNS[hive_types])


def _by_name(call: str, hive: str) -> str:
    """``call`` (a ``read_parquet(...`` without its closing parenthesis) reading files of
    both vintages by column name, as exactly LAKE_SCHEMA's columns and then ``hive``'s."""
    return (
        f"(SELECT {_UPGRADED_COLUMNS}{hive} FROM (SELECT * FROM {call}, union_by_name = true) "
        f"UNION ALL BY NAME {_LEGACY_EMPTY_SQL}))"
    )


def _legacy(base: Path) -> bool:
    """Whether the lake may hold files without some of today's columns (see the module's
    invariants): a placeholder lacks one, or no placeholder exists yet."""
    found = False
    for path in (
        minute_placeholder(base),
        history_placeholder(base),
        base / DELTAS_DIR / PLACEHOLDER_NAME,
    ):
        try:
            names = pq.read_schema(path).names
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowException):
            return True
        if not set(LAKE_SCHEMA.names) <= set(names):
            return True
        found = True
    return not found


def _exactly_once_sql(
    minute_sql: str, history_sql: str, day_files: str, hidden: Sequence[str], where: str = ""
) -> str:
    """Both tiers, each (ticker, date) from exactly one (see ``duckdb_read_sql``):
    ``day_files`` is the ``read_blob(...)`` listing the history files first, ``hidden``
    the days pruned from the minute glob by constants, ``where`` more conditions."""
    prune = f" WHERE (ticker, date) NOT IN ({', '.join(hidden)})" if hidden else ""
    days = _listed_days_sql(day_files)
    both = (
        f"SELECT {_COLUMNS}, date, minute, ticker, false AS compacted FROM {minute_sql}{prune} "
        f"UNION ALL {_HISTORY_ROWS}, true AS compacted FROM {history_sql}"
    )
    return (
        f"(SELECT {_U_COLUMNS}, u.date, u.minute, u.ticker FROM ({days}) AS d "
        f"RIGHT JOIN ({both}) AS u ON d.ticker = u.ticker AND d.date = u.date "
        f"WHERE u.compacted = (d.ticker IS NOT NULL){where})"
    )


def _listed_days_sql(listing: str) -> str:
    """(ticker, date) of every day file a ``read_blob(...)`` ``listing`` names (from the
    names alone: nothing is read)."""
    return (
        f"SELECT DISTINCT replace(regexp_extract(filename, {_DAY_RE}, 1), '%3D', '=') AS ticker, "
        f"TRY_CAST(regexp_extract(filename, {_DAY_RE}, 2) AS DATE) AS date "
        f"FROM {listing}"
    )


def pyarrow_partitioning() -> ds.Partitioning:
    """Hive partitioning for ``pyarrow.dataset`` that reads tickers back exactly.
    (``pyarrow.dataset`` is imported here, not with this module: importing it imports
    pandas when installed, ~0.2 s that every command and ``ticklake.open`` would pay.)"""
    import pyarrow.dataset as ds

    return ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    if pa.types.is_list(arrow_type):
        return f"{_duckdb_type(arrow_type.value_type)}[]"
    names = {pa.string(): "VARCHAR", pa.float32(): "FLOAT", pa.float64(): "DOUBLE"}
    return names.get(arrow_type, "BIGINT")


_COLUMNS: Final = ", ".join(f'"{name}"' for name in LAKE_SCHEMA.names)
_U_COLUMNS: Final = ", ".join(f'u."{name}"' for name in LAKE_SCHEMA.names)
_MINUTE_OF_TIME: Final = "strftime(\"time\" AT TIME ZONE 'UTC', '%H%M')"
_DAY_RE: Final = "'/ticker=([^/]*)/date=([^/]*)/[^/]*$'"
_HISTORY_ROWS: Final = f"SELECT {_COLUMNS}, date, {_MINUTE_OF_TIME} AS minute, ticker"
_DATE_OF_TIME: Final = "CAST(\"time\" AT TIME ZONE 'UTC' AS DATE)"
_TICK_COLUMNS: Final = ", ".join(f'"{name}"' for name in TICK_SCHEMA.names)
_FOLD_FIELDS: Final = ", ".join(
    f"CAST(regexp_extract(name, 'fold-\\d+-(\\d+)-(\\d+)-(\\d+)-\\d+$', {i}) AS BIGINT) AS {n}"
    for i, n in ((1, "b"), (2, "s"), (3, "w"))
)
_UPGRADED_COLUMNS: Final = ", ".join(
    f'coalesce("{name}", "{LEGACY_SOURCES[name]}") AS "{name}"'
    if name in LEGACY_SOURCES
    else f'"{name}"'
    for name in LAKE_SCHEMA.names
)
_LEGACY_EMPTY_SQL: Final = (
    "SELECT "
    + ", ".join(
        [f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in LAKE_SCHEMA]
        + [f'CAST(NULL AS BIGINT) AS "{name}"' for name in LEGACY_COLUMNS]
    )
    + " WHERE false"
)
_EMPTY_SQL: Final = (
    "(SELECT "
    + ", ".join(
        [f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in LAKE_SCHEMA]
        + ["CAST(NULL AS DATE) AS date, CAST(NULL AS VARCHAR) AS minute"]
        + ["CAST(NULL AS VARCHAR) AS ticker"]
    )
    + " WHERE false)"
)


def _holds_parquet(tree: Path, depth: int, placeholder: Path) -> bool:
    """Whether ``tree`` has a ``*.parquet`` file ``depth`` folders down (placeholder first;
    otherwise stops at the first file found, skipping hidden folders)."""
    if placeholder.is_file():
        return True
    try:
        with os.scandir(tree) as entries:
            names = [e for e in entries if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return False
    for entry in names:
        if depth == 0:
            if entry.name.endswith(".parquet") and entry.is_file():
                return True
        elif entry.is_dir() and _holds_parquet(Path(entry.path), depth - 1, placeholder):
            return True
    return False


def _has_local_files(base: Path) -> bool:
    """Whether either local tier holds a Parquet file (stops at the first)."""
    return _holds_parquet(base / TICKS_DIR, 3, minute_placeholder(base)) or _holds_parquet(
        base / HISTORY_DIR, 2, history_placeholder(base)
    )


def hidden_days_sql(root: Path) -> list[str]:
    """``('TICKER', DATE 'YYYY-MM-DD')`` of every minute-tier day marked compacted whose
    day file exists (lists the minute tier: pass it to both expression builders when
    building both)."""
    return [
        f"('{ticker}', DATE '{date}')"  # symbols hold no quote
        for ticker, date, folder in lake_days(root, TICKS_DIR)
        if (folder / HIDDEN_MARKER).is_file() and history_file(root, ticker, date).is_file()
    ]


def _inside(root: Path, path: Path) -> Path:
    """``path`` if it normalises to a location under ``root``, else SymbolError."""
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, full]) != base or full == base:
        raise SymbolError(f"path {full!r} escapes the lake root {base!r}")
    return path
