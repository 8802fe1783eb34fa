"""What ``ticklake sql`` lets a query do: read the features database and the files under the
data directory; nothing else.

Two layers, each enforced by itself:

- the statements (:func:`check_statements`, before anything runs): queries (``SELECT``,
  ``FROM``, ``WITH``, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``), ``EXPLAIN`` of a
  query, ``SET``/``RESET VARIABLE`` and transactions; every other statement (``COPY``,
  ``EXPORT``, ``ATTACH``, ``INSTALL``, ``LOAD``, a ``SET`` of a setting, ``PRAGMA``,
  ``CALL``, ``CREATE``, writes) is refused, and with it the whole script;
- the connection (:func:`lock_down`): DuckDB's ``enable_external_access`` off with
  ``allowed_directories`` = the data directory (the lake's views read its Parquet files)
  and the prefix of its object store when it has one (``lake.remote``),
  so no file elsewhere is read or written and no URL is fetched; no extension installed or
  loaded, none auto-installed or auto-loaded; then ``lock_configuration``, so no statement
  can undo any of it. The database itself is opened read-only by the caller.

The first layer is what keeps the data directory itself unwritten: DuckDB's
``allowed_directories`` admits writes there as well as reads (``COPY ... TO`` a lake file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import duckdb

from lake.layout import remote_lake

__all__ = ["ALLOWED", "SandboxError", "check_statements", "lock_down", "refusal"]

ALLOWED: Final = "queries (SELECT, FROM, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN), SET VARIABLE"

_QUERY: Final = {duckdb.StatementType.SELECT, duckdb.StatementType.TRANSACTION}
_LEADING_COMMENTS: Final = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN: Final = re.compile(
    r"EXPLAIN\b\s*(?:ANALY[SZ]E\b\s*)?(?:\([^)]*\)\s*)?(?P<rest>.*)\Z", re.IGNORECASE | re.DOTALL
)
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCOPES: Final = {"GLOBAL", "SESSION", "LOCAL"}
_DENIED_PATH: Final = re.compile(r'Cannot access (?:file|directory) "(?P<path>[^"]*)"')


class SandboxError(Exception):
    """A statement ``ticklake sql`` does not run; the message names it and what is allowed."""


def lock_down(con: duckdb.DuckDBPyConnection, data: Path) -> None:
    """Confine ``con`` to reading ``data`` (see the module docstring), for good."""
    root = str(Path(data).resolve()).rstrip("/") + "/"  # the slash: not data2/
    allowed = [root]
    remote = remote_lake(data)
    if remote is not None:  # the object store of its compacted days (lake.remote)
        remote.register(con)
        allowed.append(remote.sql_root.rstrip("/") + "/")
    con.execute("SET allowed_directories = ?", [allowed])
    for setting in (
        "enable_external_access",
        "autoinstall_known_extensions",
        "autoload_known_extensions",
        "allow_community_extensions",
        "allow_persistent_secrets",
        "python_enable_replacements",
    ):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


def check_statements(sql: str) -> None:
    """Raise SandboxError for the first statement of ``sql`` that is not allowed; a script
    that does not parse raises DuckDB's ParserException."""
    with duckdb.connect() as parser:
        for statement in parser.extract_statements(sql):
            refused = _refused(parser, statement)
            if refused is not None:
                raise SandboxError(
                    f"{refused} is not allowed: ticklake sql is read-only and runs only {ALLOWED}"
                )


def refusal(exc: duckdb.Error, data: Path) -> str | None:
    """A one-line message for DuckDB's refusal of what :func:`lock_down` forbids; None for
    any other error."""
    if not isinstance(exc, duckdb.PermissionException):
        return None
    match = _DENIED_PATH.search(str(exc))
    if match is None:  # an extension, a secret, ...
        reason = str(exc).splitlines()[0].removeprefix("Permission Error: ")
        return f"not allowed: {reason} (ticklake sql loads no extension)"
    root = Path(data).resolve()
    return f"access to {match['path']} is not allowed: ticklake sql reads only files under {root}"


def _refused(parser: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> str | None:
    """What ``statement`` is (``COPY``, ``SET threads``, ``EXPLAIN COPY``) if refused."""
    try:
        kind = statement.type
    except ValueError:  # a type the Python API has no name for (UPDATE EXTENSIONS)
        kind = None
    text = _LEADING_COMMENTS.sub("", str(statement.query), count=1)
    words: list[str] = [w.upper() for w in _WORD.findall(text)] or ["an empty statement"]
    if kind in _QUERY:
        return None
    if kind == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(text)
        try:
            inner = [] if match is None else parser.extract_statements(match["rest"])
        except duckdb.ParserException:  # a form the pattern does not take apart
            inner = []
        if len(inner) != 1:
            return "EXPLAIN"  # of what cannot be checked
        refused = _refused(parser, inner[0])
        return None if refused is None else f"EXPLAIN {refused}"
    if kind == duckdb.StatementType.SET:  # also USE
        named = [w for w in _WORD.findall(text)[1:] if w.upper() not in _SCOPES]
        if words[0] in ("SET", "RESET") and [n.upper() for n in named[:1]] == ["VARIABLE"]:
            return None
        return " ".join([words[0], *named[:1]])  # SET threads, RESET enable_external_access
    return words[0]
