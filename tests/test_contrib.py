"""contrib/: the systemd units pass ``systemd-analyze verify`` (their ExecStart pointed at this
environment's ``ticklake``), and every option they pass is one the command takes."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "contrib" / "systemd").glob("*.service"))
TICKLAKE = Path(sys.executable).with_name("ticklake")


def exec_start(unit: Path) -> list[str]:
    [line] = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_there_is_a_unit_per_long_running_command() -> None:
    assert [u.name for u in UNITS] == ["ticklake-analyze.service", "ticklake-record.service"]
    for unit in UNITS:
        text = unit.read_text()
        for setting in ("Type=simple", "Restart=on-failure", "KillSignal=SIGTERM"):
            assert f"\n{setting}\n" in text, f"{unit.name}: {setting}"
        [timeout] = re.findall(r"\nTimeoutStopSec=(\d+)\n", text)
        assert int(timeout) > 5, "covers the recorder's stop (at most 5 s)"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    for unit in UNITS:  # only the binary's path differs: /usr/local/bin/ticklake is not here
        text = unit.read_text().replace("/usr/local/bin/ticklake", str(TICKLAKE))
        (tmp_path / unit.name).write_text(text)
    copies = [str(tmp_path / unit.name) for unit in UNITS]
    done = subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_units_pass_only_options_the_command_takes(unit: Path) -> None:
    binary, command, *args = exec_start(unit)
    assert binary == "/usr/local/bin/ticklake" and command in {"record", "analyze"}
    help_text = subprocess.run(
        [str(TICKLAKE), command, "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for flag in (arg for arg in args if arg.startswith("--")):
        assert re.search(rf"{re.escape(flag)}\b", help_text), f"{unit.name}: {flag}"
