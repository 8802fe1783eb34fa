"""ticklake.config: numbers that must be finite, a ``ticklake.toml`` that puts settings both
in ``[ticklake]`` and at the top level (refused, naming the top-level keys), converters'
own messages shown by argparse, on/off switches, a bad value breaking only the commands that
take it, the simulator's settings in the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ticklake.cli import build_parser, main
from ticklake.config import (
    ConfigError,
    boolean,
    finite_float,
    load_file,
    non_negative_float,
    positive_float,
    positive_int,
    utc_time,
)
from ticklake.simulator import config_from_args
from ticklake.status_cmd import retention_days


@pytest.mark.parametrize("parse", [finite_float, positive_float, non_negative_float])
@pytest.mark.parametrize("text", ["inf", "-inf", "Infinity", "nan", "1e999"])
def test_numbers_must_be_finite(parse, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a finite number"):
        parse(text)


def test_finite_numbers_still_parse() -> None:
    assert (positive_float("2.5"), non_negative_float("0"), finite_float("-1e300")) == (
        2.5,
        0.0,
        -1e300,
    )
    with pytest.raises(argparse.ArgumentTypeError, match="'ten' is not a number"):
        positive_float("ten")
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive number"):
        positive_float("0")


def test_tick_retention_of_infinity_points_to_forever() -> None:
    assert retention_days("forever") is None and retention_days("7") == 7.0
    for text in ("inf", "Infinity"):
        with pytest.raises(argparse.ArgumentTypeError, match="to keep ticks forever, say"):
            retention_days(text)
    with pytest.raises(argparse.ArgumentTypeError, match="'nan' is not a finite number"):
        retention_days("nan")


@pytest.mark.parametrize("flag", ["--lateness", "--recompute-horizon"])
def test_an_infinite_flag_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--once", "--data", str(tmp_path), flag, "inf"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (  # after argparse's usage lines
        f"ticklake analyze: error: argument {flag}: 'inf' is not a finite number"
    )


def test_an_infinite_setting_in_the_environment_or_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ticklake.toml of the checkout
    monkeypatch.setenv("TICKLAKE_RECOMPUTE_HORIZON", "inf")
    assert main(["analyze", "--once", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ticklake analyze: environment TICKLAKE_RECOMPUTE_HORIZON: bad value for "
        "recompute_horizon: 'inf' is not a finite number\n"
    )
    monkeypatch.delenv("TICKLAKE_RECOMPUTE_HORIZON")
    config = tmp_path / "ticklake.toml"
    config.write_text("lateness = inf\n")  # TOML has an infinity literal
    assert main(["--config", str(config), "analyze", "--once", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad value for lateness: 'inf' is not a finite number" in err


def test_settings_in_the_table_or_at_the_top_level(tmp_path: Path) -> None:
    path = tmp_path / "ticklake.toml"
    path.write_text('[ticklake]\ndata = "d"\nflush-interval = 2\n')
    assert load_file(path) == {"data": "d", "flush_interval": 2}
    path.write_text('data = "d"\nlateness = 3\n')
    assert load_file(path) == {"data": "d", "lateness": 3}


def test_settings_both_in_the_table_and_at_the_top_level_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ticklake.toml"
    path.write_text('lateness = 3\ndata = "top"\n[ticklake]\ndata = "table"\n')
    with pytest.raises(ConfigError) as refused:
        load_file(path)
    assert str(refused.value) == (
        f"config {path}: settings both in [ticklake] and at the top level (data, lateness): "
        "put them all in one of the two"
    )
    data = tmp_path / "data"
    assert main(["--config", str(path), "status", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(data, lateness)" in err and not data.exists()


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (positive_int, "0", "'0' is not a positive integer"),
        (positive_int, "ten", "'ten' is not an integer"),
        (utc_time, "2024-13-45", "'2024-13-45' is not an ISO-8601 date or time"),
        (boolean, "maybe", "'maybe' is not true or false"),
    ],
)
def test_converters_raise_what_argparse_shows(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("argv", "last"),
    [
        (
            ["record", "--group-commit-ms", "0"],
            "ticklake record: error: argument --group-commit-ms: '0' is not a positive integer",
        ),
        (
            ["backfill", "--start", "2024-13-45", "--end", "2024-01-02"],
            "ticklake backfill: error: argument --start: '2024-13-45' is not an ISO-8601 date "
            "or time",
        ),
        (
            ["simulate", "--seed", "x"],
            "ticklake simulate: error: argument --seed: 'x' is not an integer",
        ),
    ],
    ids=["positive_int", "utc_time", "integer"],
)
def test_argparse_shows_the_converters_own_message(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    last: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == last


def test_on_off_options_are_switches_and_their_settings_take_true_or_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = build_parser({})
    ns = parser.parse_args(["record"])
    assert (ns.analytics, ns.compress_journal) == (True, True)
    ns = parser.parse_args(["record", "--no-analytics", "--no-compress-journal"])
    assert (ns.analytics, ns.compress_journal) == (False, False)
    assert parser.parse_args(["import", "--no-ignore-unknown", "a.csv"]).ignore_unknown is False
    with pytest.raises(SystemExit):
        parser.parse_args(["record", "--help"])
    assert "[--analytics | --no-analytics]" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["record", "--analytics", "false"])  # a switch takes no value
    assert exit_.value.code == 2
    capsys.readouterr()
    monkeypatch.setenv("TICKLAKE_ANALYTICS", "False")
    assert build_parser({}).parse_args(["record"]).analytics is False
    assert build_parser({}).parse_args(["record", "--analytics"]).analytics is True
    monkeypatch.delenv("TICKLAKE_ANALYTICS")
    config = tmp_path / "ticklake.toml"
    config.write_text("analytics = false\ncompress_journal = 'off'\n")
    ns = build_parser(load_file(config)).parse_args(["record"])
    assert (ns.analytics, ns.compress_journal) == (False, False)


def test_log_level_goes_before_or_after_the_command_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = build_parser({})
    assert parser.parse_args(["status"]).log_level is None  # the command's own (ticklake.logs)
    assert parser.parse_args(["status", "--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "Error", "status"]).log_level == "ERROR"
    after = parser.parse_args(["--log-level", "error", "status", "--log-level", "warning"])
    assert after.log_level == "WARNING"  # the later one wins
    monkeypatch.setenv("TICKLAKE_LOG_LEVEL", "debug")
    assert build_parser({}).parse_args(["status"]).log_level == "DEBUG"
    monkeypatch.setenv("TICKLAKE_LOG_LEVEL", "loud")
    assert main(["status", "--data", str(tmp_path)]) == 2


def test_log_format_and_quiet_go_where_log_level_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = build_parser({})
    ns = parser.parse_args(["sql", "x"])
    assert (ns.log_format, ns.quiet) == ("text", False)
    assert parser.parse_args(["sql", "--log-format", "JSON", "x"]).log_format == "json"
    assert parser.parse_args(["--log-format", "json", "sql", "x"]).log_format == "json"
    for argv in (["-q", "backfill"], ["backfill", "-q"], ["--quiet", "backfill"]):
        assert parser.parse_args([*argv, "--start", "2026-01-01", "--end", "2026-01-02"]).quiet
    monkeypatch.setenv("TICKLAKE_LOG_FORMAT", "json")
    monkeypatch.setenv("TICKLAKE_QUIET", "yes")
    ns = build_parser({}).parse_args(["status", "--no-quiet"])
    assert (ns.log_format, ns.quiet) == ("json", False)  # the flag wins over the variable
    monkeypatch.delenv("TICKLAKE_LOG_FORMAT")
    monkeypatch.delenv("TICKLAKE_QUIET")
    config = tmp_path / "ticklake.toml"
    config.write_text("log_format = 'json'\nquiet = true\nlog_level = 'debug'\n")
    ns = build_parser(load_file(config)).parse_args(["status"])
    assert (ns.log_format, ns.quiet, ns.log_level) == ("json", True, "DEBUG")
    monkeypatch.setenv("TICKLAKE_LOG_FORMAT", "xml")
    assert main(["status", "--data", str(tmp_path)]) == 2


def test_a_bad_value_breaks_only_the_commands_that_take_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKLAKE_LATENESS", "soon")
    assert main(["status", "--data", str(tmp_path)]) == 0  # status has no --lateness
    capsys.readouterr()
    assert main(["analyze", "--once", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "ticklake analyze: environment TICKLAKE_LATENESS: bad value for lateness: "
        "'soon' is not a number\n"
    )
    # the flag replaces the variable's value
    assert build_parser({}).parse_args(["analyze", "--lateness", "3"]).lateness == 3.0
    monkeypatch.delenv("TICKLAKE_LATENESS")
    monkeypatch.setenv("TICKLAKE_LATENES", "3")  # a typo still breaks every command
    assert main(["status", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "ticklake: environment: unknown variable TICKLAKE_LATENES\n"


def test_record_without_tickers_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--data", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err == (
        "ticklake record: no tickers: pass --tickers AMZN,MSFT (or set them)\n"
    )


def test_the_simulators_settings_go_in_the_file_as_sim_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "ticklake.toml"
    config.write_text("sim_rate = 7.5\nsim_burst = true\nsim_drop_every = 30\n")
    sim = config_from_args(build_parser(load_file(config)).parse_args(["simulate"]))
    assert (sim.rate, sim.burst, sim.drop_every, sim.seed) == (7.5, True, 30.0, 0)
    monkeypatch.setenv("TICKLAKE_SIM_RATE", "2")  # the environment wins over the file
    sim = config_from_args(build_parser(load_file(config)).parse_args(["simulate", "--no-burst"]))
    assert (sim.rate, sim.burst) == (2.0, False)
    config.write_text("rate = 7.5\n")  # a key without its prefix names no option
    assert main(["status", "--data", str(tmp_path)]) == 2
    assert "unknown setting 'rate'" in capsys.readouterr().err
    config.write_text("sim_seed = 'x'\n")  # read by simulate only
    assert main(["status", "--data", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["simulate"]) == 2
    assert capsys.readouterr().err == (
        "ticklake simulate: config file: bad value for sim_seed: 'x' is not an integer\n"
    )
