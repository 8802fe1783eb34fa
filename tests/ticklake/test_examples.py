"""ticklake.examples: every command's --help ends with examples that its parser accepts."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from ticklake.cli import COMMANDS, build_parser, command_parsers, main
from ticklake.examples import EXAMPLES, epilog

NAMES = [command.name for command in COMMANDS]


@pytest.fixture(autouse=True)
def _no_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ticklake.toml
    for name in [n for n in os.environ if n.startswith("TICKLAKE_")]:
        monkeypatch.delenv(name)


def test_every_command_has_two_or_three_examples_and_no_other_name_has_any() -> None:
    assert set(EXAMPLES) == set(NAMES)
    for name in NAMES:
        assert 2 <= len(EXAMPLES[name]) <= 3, name
        assert all(line.startswith(f"ticklake {name}") for line in EXAMPLES[name]), name


@pytest.mark.parametrize("name", NAMES)
def test_each_example_parses_with_its_commands_parser(name: str) -> None:
    parser = command_parsers(build_parser({}))[name]
    accepted = set(parser._option_string_actions)
    for line in EXAMPLES[name]:
        words = shlex.split(line)
        if "<" in words:  # a shell redirection, not an argument
            words = words[: words.index("<")]
        flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
        unknown = [flag for flag in flags if flag not in accepted]  # no abbreviation either
        assert not unknown, f"{line}: {unknown}"
        parser.parse_args(words[2:])  # a bad value or a missing argument exits: fails


def test_help_ends_with_the_examples_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["backfill", "--help"])
    out = capsys.readouterr().out
    expected = epilog("backfill")
    assert expected is not None and out.rstrip().endswith(expected)
    assert "  ticklake backfill --start 2026-11-24 --end 2026-11-25\n" in out
    assert epilog("no-such-command") is None
