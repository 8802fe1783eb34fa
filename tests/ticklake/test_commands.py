"""What every command shares: the one-line error report and the command list ``cli`` builds."""

from __future__ import annotations

import io

import pytest

from ticklake.cli import COMMANDS, main
from ticklake.commands import USAGE_ERROR, error_text, report_error, usage_error


def test_a_usage_error_is_one_line_and_exit_status_2() -> None:
    err = io.StringIO()
    assert usage_error("sql", ValueError("bad thing\nmore detail"), err) == USAGE_ERROR == 2
    assert err.getvalue() == "ticklake sql: bad thing\n"


def test_an_error_without_a_command_or_text() -> None:
    assert error_text(None, "cannot read config x.toml") == "ticklake: cannot read config x.toml"
    assert error_text("backfill", OSError()) == "ticklake backfill: OSError"


def test_report_error_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    report_error("compact", "failed: AAPL 2024-01-02: disk full")
    assert capsys.readouterr().err == "ticklake compact: failed: AAPL 2024-01-02: disk full\n"


def test_help_lists_every_command_once_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    names = [command.name for command in COMMANDS]
    assert names == [
        "decode", "record", "analyze", "sql", "backfill", "compact", "status", "import",
        "replay", "simulate", "demo",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for command in COMMANDS:
        assert f"{command.name} {' '.join(command.help.split())}" in text


@pytest.mark.parametrize("name", [command.name for command in COMMANDS])
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ticklake {name} [-h] [--config FILE]")
