"""``ticklake record`` as users run it: signals, the journal lock (``record`` and ``replay``
refused while it runs), ``--help``, settings from TOML / environment / flags, traversal on
the command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.kit.lake import tree
from tests.kit.recorder import (
    CRYPTO,
    assert_files_hold_applied,
    assert_lake_is_journal,
    read_journal,
)
from ticklake.cli import build_parser, main
from ticklake.config import load_file
from ticklake.record_cmd import RECORD_OPTIONS
from ticklake.record_cmd import recorder_config as config_from_namespace
from ticklake.simulator import Simulator, SimulatorConfig


def clean_env() -> dict[str, str]:
    """The environment without any TICKLAKE_ variable (the CLI rejects unknown ones)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}


def start_ticklake(cwd: Path, out: IO[str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ticklake.cli", *args]
    return subprocess.Popen(command, cwd=cwd, env=clean_env(), stdout=out, stderr=out, text=True)


def run_ticklake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ticklake.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60
    )


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_flushes_the_lake_and_exits_0_within_5_s(
    tmp_path: Path, sig: signal.Signals
) -> None:
    data, log = tmp_path / "data", tmp_path / "recorder.log"
    with Simulator.in_thread(SimulatorConfig(rate=20, seed=21)) as sim, log.open("w") as out:
        process = start_ticklake(
            tmp_path, out, "record", "--data", str(data), "--url", sim.url,
            "--tickers", ",".join(CRYPTO), "--flush-interval", "30", "--lateness", "1",
        )  # fmt: skip
        try:
            wait_for(lambda: sim.connections > 0)
            time.sleep(0.8)  # the flush interval is long: only the stop can flush these ticks
            if sig is signal.SIGTERM:
                second = run_ticklake(tmp_path, "record", "--data", str(data), "--url", sim.url,
                                      "--tickers", "AMZN")  # fmt: skip
                replay = run_ticklake(tmp_path, "replay", "--data", str(data))
                into = run_ticklake(tmp_path, "replay", "--data", str(data), "--into", "x")
                for refused in (second, replay, into):
                    assert refused.returncode == 2
                    lines = refused.stderr.splitlines()
                    assert len(lines) == 1 and "journal" in lines[0], refused.stderr
                    assert f"process {process.pid}" in lines[0]
                assert "stop it first" in replay.stderr
            asked = time.monotonic()
            process.send_signal(sig)
            code = process.wait(timeout=10)
            took = time.monotonic() - asked
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 0, log.read_text()[-2000:]
    assert took < 5.0
    assert "event=stopped" in log.read_text()
    journal = read_journal(data)
    assert len(journal.seqs) > 20
    assert assert_files_hold_applied(data) <= journal.seqs[-1]
    assert assert_lake_is_journal(data).num_rows > 0


def test_help_documents_every_option_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["record", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert len(RECORD_OPTIONS) >= 13
    for name in ("data", *(o.name for o in RECORD_OPTIONS)):
        flag, env = "--" + name.replace("_", "-"), "TICKLAKE_" + name.upper()
        assert f"{flag} " in text and f"env {env}" in text, name
    for option in RECORD_OPTIONS:
        assert " ".join(option.help.split()) in text


def test_settings_come_from_toml_then_environment_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "ticklake.toml"
    toml.write_text(
        "[ticklake]\n"
        'tickers = ["AMZN", "^GSPC", "EURUSD=X"]\n'
        "flush_interval = 3.0\nlateness = 4.0\nmax_backlog = 7\n"
        'fsync = "always"\nsymbols-per-connection = 50\n'
    )
    monkeypatch.setenv("TICKLAKE_FLUSH_INTERVAL", "2.5")
    monkeypatch.setenv("TICKLAKE_LATENESS", "6")
    ns = build_parser(load_file(toml)).parse_args(["record", "--lateness", "8"])
    assert ns.tickers == ("AMZN", "^GSPC", "EURUSD=X")  # file
    assert ns.max_backlog == 7 and ns.symbols_per_connection == 50  # file
    assert ns.flush_interval == 2.5  # environment over file
    assert ns.lateness == 8.0  # flag over environment over file
    assert ns.group_commit_ms == 200  # default

    config = config_from_namespace(ns)
    assert config.tickers == ("AMZN", "^GSPC", "EURUSD=X")
    assert (config.flush_interval, config.lateness, config.max_backlog) == (2.5, 8.0, 7)
    assert config.fsync.value == "always" and config.feed.symbols_per_connection == 50


# Values are checked once the command is known (a bad value only breaks the commands that
# take it), so their line names the command; an unknown key is caught before.
@pytest.mark.parametrize(
    ("toml", "message", "prefix"),
    [
        ("flush_intervall = 2\n", "unknown setting 'flush_intervall'", "ticklake:"),
        ("flush_interval = -1\n", "bad value for flush_interval", "ticklake record:"),
        ('tickers = "AMZN,../x"\n', "symbol '../x' rejected", "ticklake record:"),
    ],
    ids=["unknown key", "bad value", "evil ticker"],
)
def test_a_bad_config_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str, prefix: str
) -> None:
    path = tmp_path / "ticklake.toml"
    path.write_text(toml)
    data = tmp_path / "data"
    code = main(
        ["--config", str(path), "record", "--data", str(data), "--url", "ws://127.0.0.1:9/"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err and err.startswith(f"{prefix} config file")
    assert not data.exists()


def test_an_evil_ticker_in_the_environment_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLAKE_TICKERS", "AMZN,../x")
    assert main(["record", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TICKLAKE_TICKERS" in err and "'../x'" in err
    assert not (tmp_path / "data").exists()


def test_config_after_the_subcommand_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ticklake.toml"
    path.write_text('tickers = "AMZN"\n')
    ns = build_parser(load_file(path)).parse_args(["record", "--config", str(path)])
    assert ns.tickers == ("AMZN",)


@pytest.mark.parametrize("tickers", ["../x", "AMZN,../x", "/etc", "a\x00b", "x" * 40, ".."])
def test_the_cli_refuses_a_ticker_that_could_leave_the_lake(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tickers: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["record", "--data", "data", "--url", "ws://127.0.0.1:9/", "--tickers", tickers])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.splitlines()[-1]  # after argparse's usage lines
    assert message.startswith("ticklake record: error: argument --tickers: symbol ")
    assert "rejected" in message
    assert tree(tmp_path) == set(), "nothing was created"
