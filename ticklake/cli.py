"""The ``ticklake`` command: one entry point, one subcommand per job.

Settings come from ``ticklake.toml``, ``TICKLAKE_*`` variables and flags (see
:mod:`ticklake.config`); ``ticklake COMMAND --help`` lists each with its variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from ticklake import __version__
from ticklake.config import (
    ConfigError,
    Option,
    add_options,
    check_known,
    load_file,
    utc_time,
)

LOG_LEVEL = Option(
    "log_level", str, "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
)


def _decode(ns: argparse.Namespace) -> int:
    from ticklake import decode_cmd

    return decode_cmd.run(ns.files)


def _record(ns: argparse.Namespace) -> int:
    from ticklake import record_cmd

    return record_cmd.record(ns)


def _replay(ns: argparse.Namespace) -> int:
    from ticklake import record_cmd

    return record_cmd.replay_cmd(ns)


def _simulate(ns: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import signal

    from ticklake.simulator import SimulatorConfigError, config_from_args, serve_forever

    try:
        config = config_from_args(ns)
    except SimulatorConfigError as exc:
        print(f"ticklake simulate: {exc}", file=sys.stderr)
        return 2

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # SIGTERM shuts down like Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config))
    return 0


def _demo(ns: argparse.Namespace) -> int:
    from ticklake import demo

    return demo.run(ns.data, ns.minutes, ns.rate)


def _analyze(ns: argparse.Namespace) -> int:
    from ticklake import analyze_cmd

    return analyze_cmd.analyze(ns)


def _sql(ns: argparse.Namespace) -> int:
    from ticklake import analyze_cmd

    return analyze_cmd.sql(ns)


def _import(ns: argparse.Namespace) -> int:
    from ticklake import import_cmd

    return import_cmd.run(ns)


def _compact(ns: argparse.Namespace) -> int:
    from ticklake import compact_cmd

    return compact_cmd.compact(ns)


def _status(ns: argparse.Namespace) -> int:
    from ticklake import compact_cmd

    return compact_cmd.status(ns)


def _backfill(ns: argparse.Namespace) -> int:
    from ticklake import backfill_cmd

    return backfill_cmd.run(ns)


def _options() -> dict[str, tuple[Option, ...]]:
    from ticklake import analyze_cmd, backfill_cmd, compact_cmd, import_cmd, record_cmd

    return {
        "record": (
            record_cmd.DATA,
            *record_cmd.RECORD_OPTIONS,
            record_cmd.ANALYTICS,
            *analyze_cmd.ANALYTICS_OPTIONS,
        ),
        "replay": (record_cmd.DATA,),
        "analyze": analyze_cmd.ANALYZE_OPTIONS,
        "sql": analyze_cmd.SQL_OPTIONS,
        "import": import_cmd.IMPORT_OPTIONS,
        "compact": compact_cmd.COMPACT_OPTIONS,
        "backfill": backfill_cmd.BACKFILL_OPTIONS,
        "status": (*compact_cmd.STATUS_OPTIONS, *compact_cmd.RETENTION_OPTIONS),
    }


def build_parser(file_values: dict[str, object]) -> argparse.ArgumentParser:
    options = _options()
    from ticklake.analyze_cmd import add_analyze_arguments, add_sql_arguments
    from ticklake.simulator.config import SimulatorConfig, add_arguments

    check_known(
        [LOG_LEVEL, *(o for group in options.values() for o in group)],
        file_values,
        os.environ,
        [f"TICKLAKE_SIM_{f.name.upper()}" for f in fields(SimulatorConfig)],
    )
    parser = argparse.ArgumentParser(
        prog="ticklake",
        description="Record Yahoo! Finance's live prices into a Parquet lake; "
        "one-minute features in DuckDB.",
    )
    parser.add_argument("--version", action="version", version=f"ticklake {__version__}")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="settings file (default: ./ticklake.toml)"
    )
    add_options(parser, [LOG_LEVEL], file_values)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --config is read before parsing (it decides the defaults); each command accepts it too.
    config_flag = argparse.ArgumentParser(add_help=False)
    config_flag.add_argument(
        "--config", type=Path, metavar="FILE", help="settings file (default: ./ticklake.toml)"
    )

    decode = sub.add_parser(
        "decode",
        parents=[config_flag],
        help="decode captured frames (v1 or v2, one per line) into JSON lines",
        description="Decode captured frames (v1 base64 or v2 JSON, one per line) from files "
        "or stdin into one JSON object per tick; bad lines become {'line', 'error'} objects.",
    )
    decode.add_argument("files", nargs="*", help="files to read ('-' or none: stdin)")
    decode.set_defaults(handler=_decode)

    record = sub.add_parser(
        "record",
        parents=[config_flag],
        help="record the live stream into the journal and the Parquet lake",
        description="Connect to Yahoo's streamer (or --url), journal every frame, keep the "
        "Parquet lake current and publish the seal watermark. SIGINT/SIGTERM stop it cleanly.",
    )
    add_options(record, options["record"], file_values)
    record.set_defaults(handler=_record)

    analyze = sub.add_parser(
        "analyze",
        parents=[config_flag],
        help="run the per-minute features job alone (beside a recorder in another process)",
        description="Every minute, shortly after the seal, compute the features of every "
        "sealed window not yet in DuckDB and of every window late ticks touched.",
    )
    add_analyze_arguments(analyze, file_values)
    analyze.set_defaults(handler=_analyze)

    sql = sub.add_parser(
        "sql",
        parents=[config_flag],
        help="run a read-only SQL query on the features database (works while recording)",
        description="Query the DuckDB file read-only: tables features, views ticks, bars_5m, "
        "bars_1h, bars_1d, seed_features. Retries while the job is writing.",
    )
    add_sql_arguments(sql, file_values)
    sql.set_defaults(handler=_sql)

    from ticklake import backfill_cmd, compact_cmd, import_cmd

    backfill = sub.add_parser(
        "backfill",
        parents=[config_flag],
        help="recompute features from stored ticks over a time range (idempotent)",
        description=backfill_cmd.DESCRIPTION,
    )
    backfill_cmd.add_backfill_arguments(backfill, file_values)
    backfill.set_defaults(handler=_backfill)

    compact = sub.add_parser(
        "compact",
        parents=[config_flag],
        help="compact sealed days into one Parquet file per ticker and day",
        description="Merge each sealed day's minute files into one time-sorted file per "
        "(ticker, date) under DATA/history, invisibly to readers; --before DATE compacts "
        "every ended day before DATE regardless of the recompute horizon.",
    )
    compact_cmd.add_compact_arguments(compact, file_values)
    compact.set_defaults(handler=_compact)

    status = sub.add_parser(
        "status",
        parents=[config_flag],
        help="files, rows, bytes and time range per tier, and what retention removes next",
    )
    compact_cmd.add_status_arguments(status, file_values)
    status.set_defaults(handler=_status)

    importer = sub.add_parser(
        "import",
        parents=[config_flag],
        help="load ticks from Parquet or CSV files into the lake (all rows checked first)",
        description=import_cmd.DESCRIPTION,
    )
    import_cmd.add_arguments(importer, file_values)
    importer.set_defaults(handler=_import)

    replay = sub.add_parser(
        "replay",
        parents=[config_flag],
        help="rebuild the lake's ticks from the journal",
        description="Apply journaled frames to the lake again, through the same path live "
        "recording takes. Into the data directory it is idempotent and restores anything "
        "missing; --into DIR builds a fresh lake there (e.g. after a decoder fix).",
    )
    add_options(replay, options["replay"], file_values)
    replay.add_argument("--start", type=utc_time, help="first receive time (ISO-8601, UTC)")
    replay.add_argument("--end", type=utc_time, help="receive time to stop before (ISO-8601)")
    replay.add_argument("--into", type=Path, help="build the lake in this directory instead")
    replay.set_defaults(handler=_replay)

    simulate = sub.add_parser(
        "simulate",
        parents=[config_flag],
        help="serve a simulated Yahoo streamer on 127.0.0.1 (offline demo, tests, benchmarks)",
        description="Serve a faithful stand-in for wss://streamer.finance.yahoo.com: v1 at /, "
        "v2 at /?version=2, seeded random walks per symbol, optional fault injection.",
    )
    add_arguments(simulate)
    simulate.set_defaults(handler=_simulate)

    demo = sub.add_parser(
        "demo",
        parents=[config_flag],
        help="simulator + recorder + features in a fresh data directory, offline",
        description="Run the whole pipeline against the built-in simulator, printing each "
        "window's features as it seals (the first within about 75 s).",
    )
    demo.add_argument("--minutes", type=int, default=2, help="sealed minutes to wait for")
    demo.add_argument("--rate", type=float, default=2.0, help="simulated msg/s per symbol")
    demo.add_argument("--data", type=Path, help="fresh data directory (default: a temporary one)")
    demo.set_defaults(handler=_demo)
    return parser


def _config_path(argv: Sequence[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    path: Path | None = known.config
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        file_values = load_file(_config_path(args))
        parser = build_parser(file_values)
    except ConfigError as exc:
        print(f"ticklake: {exc}", file=sys.stderr)
        return 2
    ns = parser.parse_args(args)
    logging.basicConfig(
        level=ns.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        code: int = ns.handler(ns)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
