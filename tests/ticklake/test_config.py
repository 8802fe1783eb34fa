"""ticklake.config: numbers that must be finite, and a ``ticklake.toml`` that puts settings
both in ``[ticklake]`` and at the top level (refused, naming the top-level keys)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ticklake.cli import main
from ticklake.config import ConfigError, finite_float, load_file, non_negative_float, positive_float
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
        "ticklake: environment TICKLAKE_RECOMPUTE_HORIZON: bad value for recompute_horizon: "
        "'inf' is not a finite number\n"
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
