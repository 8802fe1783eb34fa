"""Log values a logfmt parser can trust: ``key=value`` pairs, one event per line.

Every log line of the project is ``event=<name> key=value ...``. A value goes out bare when
it is a non-empty run of printable characters without ``=`` or ``"`` (``reason=stopped``);
otherwise it is double-quoted, with ``"``, ``\\`` and every non-printable character escaped
as JSON escapes them (``reason="closed: \\"bye\\"\\n"``). Never Python's ``repr``
(``'stopped'``), which a logfmt parser reads as a value with quotes in it.

    log.warning("event=connect_failed conn=%d error=%s", conn, logfmt(str(exc)))

:func:`parse_logfmt` reads such a line back by the same rules: pairs separated by single
spaces, a key a run of characters without space, ``=`` or ``"``, a value bare or quoted. A
bare value written as JSON writes a number (``12``, ``-0.5``, ``1e-3``; no leading zero,
so ``007`` stays text) is that number; every other value, and every quoted one, is text.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["Fields", "logfmt", "parse_logfmt"]

Fields = dict[str, str | int | float]
"""A parsed line: each key with its value (a number when it was written as a bare one)."""

_PAIR: Final = re.compile(r'([^\s="]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s="]+))(?: |$)')
_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
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


def parse_logfmt(line: str) -> Fields | None:
    """The ``key=value`` pairs of ``line`` in order (a later key wins over an earlier one);
    None when ``line`` is not logfmt as :func:`logfmt` writes it (a word without ``=``,
    a quote left open, a bad escape, an empty line)."""
    fields: Fields = {}
    at = 0
    while at < len(line):
        match = _PAIR.match(line, at)
        if match is None:
            return None
        key, quoted, bare = match.groups()
        if quoted is None:
            fields[key] = _number(bare)
        else:
            try:
                fields[key] = json.loads('"' + quoted + '"', strict=False)
            except ValueError:
                return None
        at = match.end()
    return fields or None


def _number(text: str) -> str | int | float:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
