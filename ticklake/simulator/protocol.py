"""The streamer protocol as the server reads it: endpoints and client requests.

Invariants:
- ``/`` is v1 and ``/?version=2`` is v2; every other path or query has no version (404);
- a request is a JSON object whose ``subscribe`` / ``unsubscribe`` keys hold lists of
  symbols, applied in the order the keys appear; a symbol is any string a protobuf
  ``string`` can carry (UTF-8, so no lone surrogates), case and all;
- nothing in a request is fatal: whatever cannot be used is reported as a problem and
  skipped, the rest still applies.
"""

from __future__ import annotations

import json
from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = ["Action", "parse_request", "version_of"]

VERSIONS: Final = {"": 1, "version=2": 2}  # query string -> protocol version
Action = tuple[Literal["subscribe", "unsubscribe"], list[str]]


def version_of(path: str) -> int | None:
    """The protocol version served at a request path, or None when it is not an endpoint."""
    parts = urlsplit(path)
    return VERSIONS.get(parts.query) if parts.path == "/" else None


def parse_request(message: str | bytes) -> tuple[list[Action], list[str]]:
    """The actions a client message asks for, and the problems found (for the log)."""
    if isinstance(message, bytes):
        return [], ["binary_frame"]
    try:
        request = json.loads(message)
    except ValueError:
        return [], ["not_json"]
    if not isinstance(request, dict):
        return [], ["not_an_object"]
    actions: list[Action] = []
    problems = []
    for key, value in request.items():
        if key not in ("subscribe", "unsubscribe") or not isinstance(value, list):
            problems.append(f"unknown_key:{key!r:.40}")
            continue
        valid = [symbol for symbol in value if _is_symbol(symbol)]
        if len(valid) < len(value):
            problems.append(f"bad_symbols:{len(value) - len(valid)}")
        actions.append((key, list(dict.fromkeys(valid))))
    return actions, problems


def _is_symbol(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
