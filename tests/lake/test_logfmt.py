"""lake.logfmt: values a logfmt parser reads back exactly, bare when they can be."""

from __future__ import annotations

import json
import re

import pytest

from lake.logfmt import logfmt, parse_logfmt

# A logfmt pair as parsers read it: a bare value runs to the next space and holds no quote
# or equals sign; a quoted one is a JSON string.
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s="]+)')


def parse(line: str) -> dict[str, str]:
    pairs = {}
    for key, value in PAIR.findall(line):
        pairs[key] = json.loads(value) if value.startswith('"') else value
    assert " ".join(f"{k}={v}" for k, v in PAIR.findall(line)) == line, "every byte a pair"
    return pairs


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("stopped", "stopped"),
        (3, "3"),
        ("/srv/ticklake/journal", "/srv/ticklake/journal"),
        ("back\\slash", "back\\slash"),  # a backslash alone needs no quotes
        ("é", "é"),
        ("", '""'),
        ("EURUSD=X", '"EURUSD=X"'),
        ("ws://127.0.0.1:9/?version=2", '"ws://127.0.0.1:9/?version=2"'),
        ("connection closed", '"connection closed"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("line\nnext\tend", '"line\\nnext\\tend"'),
        ("\x00\x7f\xa0", '"\\u0000\\u007f\\u00a0"'),
        ("\udc80", '"\\udc80"'),  # a lone surrogate (undecodable bytes) stays printable
    ],
)
def test_a_value_is_bare_or_quoted_as_json(value: object, text: str) -> None:
    assert logfmt(value) == text


def test_a_line_of_such_values_parses_back_exactly() -> None:
    values = {
        "reason": 'error: ConnectionClosedError: received 1011 (internal error) "x=y"',
        "url": "ws://127.0.0.1:9/?version=2",
        "ticker": "ES=F",
        "path": "/tmp/with space/part.parquet",
        "empty": "",
        "count": "12",
    }
    line = "event=test " + " ".join(f"{k}={logfmt(v)}" for k, v in values.items())
    assert parse(line) == {"event": "test", **values}


@pytest.mark.parametrize(
    "value",
    ["stopped", "", "EURUSD=X", 'say "hi"', "line\nnext\tend", "\x00\x7f\xa0", "\udc80", "é x"],
)
def test_parse_logfmt_reads_back_what_logfmt_wrote(value: str) -> None:
    assert parse_logfmt(f"event=x value={logfmt(value)} n=1") == {
        "event": "x",
        "value": value,
        "n": 1,
    }


def test_bare_numbers_are_numbers_and_everything_else_is_text() -> None:
    line = 'a=12 b=-0.5 c=1e-3 d=007 e=inf f=nan g=1.2.3 h="12" i=0 j=AAPL'
    assert parse_logfmt(line) == {
        "a": 12,
        "b": -0.5,
        "c": 0.001,
        "d": "007",  # a leading zero: an identifier, not a number
        "e": "inf",  # JSON has no infinity
        "f": "nan",
        "g": "1.2.3",
        "h": "12",  # quoted: text
        "i": 0,
        "j": "AAPL",
    }


@pytest.mark.parametrize(
    "line",
    ["", "Scheduler started", "event=x stray", 'event=x reason="open', "event=x  double=space"],
)
def test_a_line_that_is_not_logfmt_parses_to_none(line: str) -> None:
    assert parse_logfmt(line) is None
