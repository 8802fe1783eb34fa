"""The ``ticklake`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ticklake import __version__


def _decode(ns: argparse.Namespace) -> int:
    from ticklake import decode_cmd

    return decode_cmd.run(ns.files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticklake",
        description="Record Yahoo! Finance's live prices into a Parquet lake; "
        "one-minute features in DuckDB.",
    )
    parser.add_argument("--version", action="version", version=f"ticklake {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    decode = sub.add_parser(
        "decode",
        help="decode captured frames (v1 or v2, one per line) into JSON lines",
        description="Decode captured frames (v1 base64 or v2 JSON, one per line) from files "
        "or stdin into one JSON object per tick; bad lines become {'line', 'error'} objects.",
    )
    decode.add_argument("files", nargs="*", help="files to read ('-' or none: stdin)")
    decode.set_defaults(handler=_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
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
