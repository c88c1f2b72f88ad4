"""The command line answers every command with help, work, or a one-line message: never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from directanimator_core.cli import COMMANDS, Command, main
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


def test_every_command_is_built() -> None:
    assert [name for name, command in COMMANDS.items() if command.module is None] == []


def test_an_unbuilt_command_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The path a command takes while it is not built (none is now): one line, exit 2."""
    monkeypatch.setitem(COMMANDS, "later", Command("a command to come", None, "needs its module"))
    assert main(["later"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: 'later' is not built yet: it needs its module."]


def test_no_command_prints_help_and_fails() -> None:
    result = _run()
    assert result.returncode == 2
    assert "usage:" in result.stdout
