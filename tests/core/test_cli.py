"""The command line answers every command with help, work, or a one-line message: never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from directanimator_core.cli import COMMANDS
from harness.paths import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "directanimator_core", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in ("demo", "extract", "animate", "train", "bench"):
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if c.module is None))
def test_unbuilt_command_says_so_in_one_line(name: str) -> None:
    result = _run(name)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not built yet" in lines[0]


def test_no_command_prints_help_and_fails() -> None:
    result = _run()
    assert result.returncode == 2
    assert "usage:" in result.stdout
