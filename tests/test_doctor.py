"""`labkit doctor`: every prerequisite line, JSON, exit codes, and a missing bubblewrap explained."""

import json
import os
import subprocess
import sys

import pytest

from labkit.commands import doctor as checks

LABKIT = [sys.executable, "-m", "labkit"]


def doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LABKIT, "doctor", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def report():
    proc = doctor("--json")
    assert "Traceback" not in proc.stderr
    return proc, json.loads(proc.stdout)


def test_text_report_has_every_line():
    proc = doctor()
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    for needle in ("Python 3.", "Python packages", "embedded model", "llama.cpp", "bwrap", "socat",
                   "network namespace", "sbx", "docker model", "Docker Model Runner", "port "):
        assert needle in out, f"missing line about {needle!r}:\n{out}"
    last = out.strip().splitlines()[-1]
    assert "mode: embedded" in last and "auto" in last


def test_json_parses_and_selects_embedded_here(report):
    proc, data = report
    keys = {c["key"] for c in data["checks"]}
    assert {"python", "packages", "model", "llama", "bwrap", "socat", "namespaces", "sbx",
            "docker-model", "dmr", "port"} <= keys
    assert data["mode"]["label"] == "embedded"
    assert data["runnable"] is True and proc.returncode == 0
    for check in data["checks"]:
        assert check["ok"] or check["fix"], f"a failed check without a fix: {check}"


def test_missing_bubblewrap_is_explained(tmp_path):
    # a PATH with the usual tools but no bwrap: link everything from /usr/bin except bwrap
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in os.listdir("/usr/bin"):
        if name != "bwrap":
            (bindir / name).symlink_to(os.path.join("/usr/bin", name))
    proc = doctor(env={"PATH": str(bindir)})
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    bwrap_line = next(line for line in out.splitlines() if "bwrap" in line)
    assert bwrap_line.startswith("✗")
    assert "apt-get install -y bubblewrap" in out
    assert "process" in out.strip().splitlines()[-1], "without bwrap the sandboxes fall back to the process tier"


def test_forced_live_mode_cannot_run_here():
    proc = doctor("--mode", "live")
    assert proc.returncode == 1
    assert "cannot run the course" in proc.stdout.strip().splitlines()[-1]


def test_bad_mode_is_one_clear_line():
    proc = doctor(env={"LABKIT_MODE": "cloud"})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "use one of: live, embedded, auto" in proc.stdout


def test_llama_check_runs_one_real_token():
    check = checks.check_llama()
    assert check.ok, check.line()
    assert check.detail.startswith("llama.cpp (llama-cpp-python 0.3.") and " answers one token in " in check.detail
    assert "built for this CPU only" not in check.detail  # the set-up builds it portably


CRASHING_PROBE = r"""
import os, signal, sys
print("features: CPU : AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 |", flush=True)
os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_llama_check_turns_a_crash_into_its_cause_and_the_rebuild():
    """A real crash: the probe process kills itself with SIGSEGV after printing a native build's features."""
    check = checks.check_llama([sys.executable, "-c", CRASHING_PROBE])
    assert not check.ok
    assert check.detail == ("llama.cpp crashed at its first inference (SIGSEGV): the llama.cpp build uses "
                            "instructions this CPU cannot run (compiled with AMX_INT8, AVX512)")
    assert check.fix.startswith("scripts/llama-build.sh --force .venv/bin/python")
    assert check.line().count("\n") == 1  # two lines: what happened, the fix
    plain = checks.check_llama([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert not plain.ok and plain.detail.startswith("llama.cpp crashed at its first inference (SIGKILL): ")


def test_a_healthy_embedded_run_shows_live_only_items_as_dashes_not_crosses():
    out = doctor("--mode", "embedded").stdout
    dashed = [line for line in out.splitlines() if line.startswith("— ")]
    assert {line.split(":")[0] for line in dashed} == {"— docker model", "— sbx", "— Docker Model Runner"}, out
    assert all("live mode only" in line for line in dashed)
    assert not [line for line in out.splitlines() if line.startswith("✗")], out
    assert "fix: docker desktop" not in out and "fix: install Docker Sandboxes" not in out
    forced = doctor("--mode", "live").stdout  # the same items block live mode: crosses, with their fixes
    assert "✗ sbx: not on PATH" in forced and "fix: install Docker Sandboxes" in forced
