"""What every command shares: the one-line error report (whole when every line matters), the
command list ``cli`` builds, a missing data directory and a damaged seal file reported on one
line by every command that reads them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lake.datadir import journal_dir, seal_file
from ticklake.cli import COMMANDS, main
from ticklake.commands import USAGE_ERROR, data_problem, error_text, report_error, usage_error


def test_a_usage_error_is_one_line_and_exit_status_2() -> None:
    err = io.StringIO()
    assert usage_error("sql", ValueError("bad thing\nmore detail"), err) == USAGE_ERROR == 2
    assert err.getvalue() == "ticklake sql: bad thing\n"


def test_an_error_without_a_command_or_text() -> None:
    assert error_text(None, "cannot read config x.toml") == "ticklake: cannot read config x.toml"
    assert error_text("backfill", OSError()) == "ticklake backfill: OSError"


def test_a_whole_error_keeps_every_line() -> None:
    message = 'Catalog Error: Table with name featurs does not exist!\nDid you mean "features"?\n'
    assert error_text("sql", message, whole=True) == (
        "ticklake sql: Catalog Error: Table with name featurs does not exist!\n"
        'Did you mean "features"?'
    )
    assert error_text("sql", OSError(), whole=True) == "ticklake sql: OSError"


def test_data_problem_names_a_missing_directory_or_a_file(tmp_path: Path) -> None:
    assert data_problem(tmp_path) is None
    assert data_problem(tmp_path / "typo") == f"no data directory {tmp_path / 'typo'}"
    (tmp_path / "file").write_text("")
    assert data_problem(tmp_path / "file") == f"{tmp_path / 'file'} is not a directory"


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],
        ["sql", "SELECT 1"],
        ["compact"],
        ["status"],
        ["analyze", "--once"],
        ["maintain"],
        ["verify"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_missing_data_directory_is_one_line_and_never_created(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "dta"
    assert main([argv[0], "--data", str(typo), *argv[1:]]) == USAGE_ERROR
    assert capsys.readouterr().err == f"ticklake {argv[0]}: no data directory {typo}\n"
    assert not typo.exists()


def test_report_error_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    report_error("compact", "failed: AAPL 2024-01-02: disk full")
    assert capsys.readouterr().err == "ticklake compact: failed: AAPL 2024-01-02: disk full\n"


def test_help_lists_every_command_once_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    names = [command.name for command in COMMANDS]
    assert names == [
        "decode", "record", "analyze", "sql", "tail", "plot", "backfill", "compact", "maintain",
        "status", "verify", "import", "replay", "simulate", "demo",
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


@pytest.mark.parametrize(
    "argv",
    [
        ["record", "--tickers", "AMZN", "--url", "ws://127.0.0.1:9/", "--no-analytics"],
        ["replay"],
        ["compact"],
        ["status"],
        ["analyze", "--once"],
        ["maintain"],
        ["verify"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_damaged_seal_file_is_a_one_line_error_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ticklake.toml of the checkout
    data = tmp_path / "data"
    path = seal_file(data)
    path.parent.mkdir(parents=True)
    journal_dir(data).mkdir()  # replay reads a journal
    path.write_bytes(b'{"watermark_ms": 17132760')  # torn
    assert main([argv[0], "--data", str(data), *argv[1:]]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # after any log line
    assert last.startswith(f"ticklake {argv[0]}: ") and f"{path} is damaged (" in last
    assert "ticklake replay" in last
    assert path.read_bytes() == b'{"watermark_ms": 17132760', "left for the operator"
