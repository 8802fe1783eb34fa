"""Symbol validation: Yahoo's odd symbols pass, anything that could address a path fails."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake.symbols import (
    SymbolError,
    is_valid_symbol,
    parse_symbols,
    valid_symbol_mask,
    validate_symbol,
)

YAHOO = ["^GSPC", "EURUSD=X", "ES=F", "BRK-B", "BTC-USD", "RDS.A", "M&M.NS", "AAPL", "1234", "a_b"]

BAD = [
    ("../x", "contains '/'"),
    ("..", "starts with '.'"),
    (".", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("/etc", "contains '/'"),
    ("a/b", "contains '/'"),
    ("a\\b", "contains '\\'"),
    ("a\x00b", "contains NUL"),
    ("a\x1bb", "control character"),
    ("C:x", "contains ':'"),
    ("a%2Fb", "contains '%'"),
    ("a b", "whitespace"),
    ("AAPL\n", "whitespace"),
    ("A*", "glob"),
    ("A?", "glob"),
    ("[A]", "glob"),
    ("x" * 1000, "1000 characters long"),
    ("", "empty"),
    ("é", "allowed: A-Z"),
    ("A+B", "allowed: A-Z"),
    ("__HIVE_DEFAULT_PARTITION__", "reserved"),
]


@pytest.mark.parametrize("symbol", YAHOO)
def test_yahoo_symbols_are_returned_unchanged(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol
    assert is_valid_symbol(symbol)


@pytest.mark.parametrize(("symbol", "reason"), BAD)
def test_bad_symbols_are_rejected_with_the_rule_that_failed(symbol: str, reason: str) -> None:
    with pytest.raises(SymbolError) as info:
        validate_symbol(symbol)
    message = str(info.value)
    assert reason in message
    assert message.startswith("symbol ")
    assert "\n" not in message and "\x00" not in message
    assert len(message) < 160
    assert not is_valid_symbol(symbol)


def test_reason_quotes_the_symbol() -> None:
    with pytest.raises(SymbolError, match=r"^symbol '\.\./x' rejected: contains '/'$"):
        validate_symbol("../x")


def test_symbol_error_is_a_value_error() -> None:
    assert issubclass(SymbolError, ValueError)


def test_length_limit_is_32() -> None:
    assert validate_symbol("A" * 32) == "A" * 32
    with pytest.raises(SymbolError, match="33 characters long"):
        validate_symbol("A" * 33)


def test_non_string_is_rejected() -> None:
    with pytest.raises(SymbolError, match="not a string"):
        validate_symbol(b"AAPL")  # type: ignore[arg-type]


def test_vectorized_mask_agrees_with_validate() -> None:
    symbols = YAHOO + [s for s, _ in BAD] + ["A" * 32, "A" * 33]
    array = pa.array([*symbols, None], pa.string())
    mask = valid_symbol_mask(array).to_pylist()
    assert mask == [is_valid_symbol(s) for s in symbols] + [False]
    assert sum(mask) == len(YAHOO) + 1


def test_vectorized_mask_over_chunked_array() -> None:
    chunked = pa.chunked_array([["AAPL", "a/b"], [None, "ES=F"]])
    assert valid_symbol_mask(chunked).to_pylist() == [True, False, False, True]


def test_parse_symbols_splits_dedups_and_keeps_order() -> None:
    text = "AMZN,MSFT BTC-USD,,AMZN\n^GSPC  EURUSD=X,MSFT"
    assert parse_symbols(text) == ["AMZN", "MSFT", "BTC-USD", "^GSPC", "EURUSD=X"]


def test_parse_symbols_names_the_first_bad_symbol() -> None:
    with pytest.raises(SymbolError, match=r"symbol '\.\./x' rejected"):
        parse_symbols("AMZN,../x,C:x")


def test_parse_symbols_refuses_empty_text() -> None:
    with pytest.raises(SymbolError, match="no symbols"):
        parse_symbols(" , ")
