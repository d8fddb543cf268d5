"""The `labkit` dispatcher: help, unknown commands, and the console script."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_commands():
    proc = labkit("--help")
    assert proc.returncode == 0
    for name in ("up", "down", "status", "doctor", "sbx", "model", "audit"):
        assert f"  {name}" in proc.stdout


def test_no_arguments_prints_usage_and_fails():
    proc = labkit()
    assert proc.returncode == 2 and "usage: labkit" in proc.stdout


def test_unknown_command_is_one_line():
    proc = labkit("frobnicate")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "labkit: unknown command 'frobnicate'. Run `labkit --help` for the list."
