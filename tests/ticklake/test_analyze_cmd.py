"""``ticklake analyze --once``, through its argument parser and handler: the report line, work
left when the database is held, no data directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from analytics.database import database_path
from lake.utc import MINUTE_MS as MIN
from tests.kit.features import hold_database
from tests.kit.lake import seal, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake.analyze_cmd import add_arguments, run


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, {})
    return parser.parse_args(args)


def test_analyze_once_materializes_and_reports(tmp_path: Path, capsys) -> None:
    write_lake(
        tmp_path, [Feed(3).ticks(t, T0 + k * MIN, 1) for t in ("AMZN", "MSFT") for k in range(3)]
    )
    seal(tmp_path, T0 + 3 * MIN)
    ns = parse(["--data", str(tmp_path), "--once"])
    assert run(ns) == 0
    out = capsys.readouterr().out
    assert out.startswith("analyzed 6 windows, wrote 6 rows (0 late); done up to 2024-04-16T14:03Z")
    holder = hold_database(database_path(tmp_path), 30)
    try:
        seal(tmp_path, T0 + 4 * MIN)
        write_lake(tmp_path, [Feed(4).ticks("AMZN", T0 + 3 * MIN, 1)])
        busy = parse(["--data", str(tmp_path), "--once", "--lock-timeout", "0.2"])
        assert run(busy) == 1  # work left for the next run
    finally:
        holder.terminate()
        holder.wait()
    assert "db_locked" in capsys.readouterr().out
    assert run(parse(["--data", str(tmp_path / "none"), "--once"])) == 2
