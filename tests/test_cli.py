"""The console script dispatches and reports its version."""

import subprocess
import sys

from hm2bp.orchestration import cli


def test_help_without_command_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: hm2bp" in capsys.readouterr().out


def test_console_script_reports_version():
    out = subprocess.run(
        [sys.executable, "-m", "hm2bp.orchestration.cli", "--version"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith("hm2bp ")
