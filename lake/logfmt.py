"""Log values a logfmt parser can trust: ``key=value`` pairs, one event per line.

Every log line of the project is ``event=<name> key=value ...``. A value goes out bare when
it is a non-empty run of printable characters without ``=`` or ``"`` (``reason=stopped``);
otherwise it is double-quoted, with ``"``, ``\\`` and every non-printable character escaped
as JSON escapes them (``reason="closed: \\"bye\\"\\n"``). Never Python's ``repr``
(``'stopped'``), which a logfmt parser reads as a value with quotes in it.

    log.warning("event=connect_failed conn=%d error=%s", conn, logfmt(str(exc)))
"""

from __future__ import annotations

import json
from typing import Final

__all__ = ["logfmt"]

_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def logfmt(value: object) -> str:
    """``str(value)`` as one logfmt value, quoted only when it needs to be."""
    text = str(value)
    if text and text.isprintable() and not any(char in text for char in ' ="'):
        return text
    return '"' + "".join(_escaped(char) for char in text) + '"'


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    return json.dumps(char)[1:-1]  # \uXXXX (a surrogate pair beyond the BMP)
