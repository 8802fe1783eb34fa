"""Ticker symbols: what may be subscribed to and become a lake folder name.

Symbols arrive from the network (a tick's ``id``) and from the CLI, and each one becomes a
folder under the lake, so a symbol is validated before it touches a path.

Invariants:
- a valid symbol is 1..32 characters from ``A-Z a-z 0-9 ^ = . - _ &`` and does not start
  with ``.`` (so ``.``, ``..`` and hidden names are out). That covers Yahoo's ``^GSPC``,
  ``EURUSD=X``, ``ES=F``, ``BRK-B``, ``BTC-USD``, ``RDS.A`` and ``M&M.NS``;
- path separators, NUL and control characters, ``:`` (DuckDB and PyArrow read it back
  differently), ``%`` (percent-decoding would make folder names ambiguous), whitespace and
  glob characters are never valid, and neither is ``__HIVE_DEFAULT_PARTITION__`` (both
  readers turn that folder value into NULL);
- a symbol is never rewritten: validation returns it unchanged or raises. Case is kept
  (``aapl`` and ``AAPL`` are different symbols to ticklake, as they are to the filesystem
  on Linux).
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MAX_SYMBOL_LENGTH",
    "SymbolError",
    "is_valid_symbol",
    "parse_symbols",
    "valid_symbol_mask",
    "validate_symbol",
]

MAX_SYMBOL_LENGTH: Final = 32
HIVE_NULL: Final = "__HIVE_DEFAULT_PARTITION__"
_ALLOWED_TEXT: Final = "A-Z a-z 0-9 ^ = . - _ &"

# Written without look-ahead so that the same pattern runs in Python and in RE2 (Arrow).
SYMBOL_PATTERN: Final = r"^[A-Za-z0-9^=_&-][A-Za-z0-9^=._&-]{0,31}$"
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)
_NAMED: Final = {"/": "'/'", "\\": "'\\'", ":": "':'", "%": "'%'"}
_GLOB: Final = frozenset("*?[]{}")
_SEPARATORS: Final = re.compile(r"[,\s]+")


class SymbolError(ValueError):
    """A symbol that may not be subscribed to or stored; the message names the rule."""


def is_valid_symbol(symbol: str) -> bool:
    """True if ``symbol`` passes ``validate_symbol`` (one regex match, for the hot path)."""
    return _SYMBOL_RE.fullmatch(symbol) is not None and symbol != HIVE_NULL


def valid_symbol_mask(symbols: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Boolean mask over a string array: True where the symbol is valid, False for NULL."""
    matched = pc.match_substring_regex(symbols, SYMBOL_PATTERN)
    usable = pc.and_(matched, pc.not_equal(symbols, HIVE_NULL))
    return pc.fill_null(usable, False)


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` unchanged, or raise SymbolError saying which rule it breaks."""
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol {symbol!r} rejected: not a string")
    if is_valid_symbol(symbol):
        return symbol
    raise SymbolError(f"symbol {_shown(symbol)} rejected: {_reason(symbol)}")


def parse_symbols(text: str) -> list[str]:
    """Symbols from ``--tickers``-style text (comma and/or whitespace separated).

    Duplicates are dropped keeping the first occurrence's position. Raises SymbolError
    naming the first invalid symbol, or when ``text`` holds no symbol at all.
    """
    symbols = [s for s in _SEPARATORS.split(text) if s]
    if not symbols:
        raise SymbolError(f"no symbols in {text!r}: give e.g. 'AMZN,MSFT,BTC-USD'")
    return list(dict.fromkeys(validate_symbol(s) for s in symbols))


def _reason(symbol: str) -> str:
    if not symbol:
        return "empty"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"{len(symbol)} characters long (at most {MAX_SYMBOL_LENGTH})"
    for char in symbol:
        if char in _NAMED:
            return f"contains {_NAMED[char]}"
        if char == "\x00":
            return "contains NUL"
        if not char.isprintable() and not char.isspace():
            return f"contains control character {char!r}"
        if char.isspace():
            return f"contains whitespace {char!r}"
        if char in _GLOB:
            return f"contains glob character {char!r}"
        if _SYMBOL_RE.fullmatch(char) is None and char != ".":
            return f"contains {char!r} (allowed: {_ALLOWED_TEXT})"
    if symbol.startswith("."):
        return "starts with '.'"
    if symbol == HIVE_NULL:
        return "reserved: Hive readers turn this folder name into NULL"
    return f"does not match {SYMBOL_PATTERN}"  # pragma: no cover - rules above are complete


def _shown(symbol: str) -> str:
    """The symbol for an error message: repr'd (control characters visible), capped."""
    if len(symbol) > 40:
        return repr(symbol[:40]) + "..."
    return repr(symbol)
