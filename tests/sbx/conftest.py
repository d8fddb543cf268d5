"""Fixtures for the embedded sbx: a private state folder, the real proxy, a small model-like server.

Everything here is real: the proxy daemon is started exactly as ``labkit up`` starts it,
sandboxes are real bubblewrap launches (or plain processes in the process tier), and every
assertion about decisions reads the audit log the proxy wrote. The "model server" is a
threaded HTTP server on a free port (never 12434) that counts the requests it receives.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sbx_helpers import HOST_SECRET, Upstream

from labkit.sbx import isolation, rules, runtime, service, store

# ---- state folder and proxy ---------------------------------------------------------------------

@pytest.fixture(scope="package")
def lab_home() -> Iterator[Path]:
    """A private LABKIT_HOME for this package (short, under /tmp), a host secret, the proxy running.

    Not autouse, so the pure modules (test_policy.py) start no proxy: a module that needs the
    lab asks for it, directly or through ``fresh_policy``.
    """
    saved = {k: os.environ.get(k) for k in ("LABKIT_HOME", "OPENAI_API_KEY", "LABKIT_ISOLATION")}
    home = Path(tempfile.mkdtemp(prefix="lksbx-", dir="/tmp"))
    os.environ["LABKIT_HOME"] = str(home)
    os.environ["OPENAI_API_KEY"] = HOST_SECRET  # the proxy and every CLI inherit it; sandboxes must not
    os.environ.pop("LABKIT_ISOLATION", None)
    service.start()
    try:
        yield home
    finally:
        service.stop()
        shutil.rmtree(home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def fresh_policy(lab_home: Path) -> Iterator[None]:
    """The initial balanced policy, before and after the test."""
    rules.reset()
    yield
    rules.reset()


@pytest.fixture
def proxy_port() -> int:
    port = service.tcp_port()
    assert port, "the proxy wrote no port file"
    return port


# ---- a model-like HTTP server ---------------------------------------------------------------

@pytest.fixture(scope="package")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def other_upstream() -> Iterator[Upstream]:
    """A second server that no rule allows: it must never be reached."""
    server = Upstream()
    yield server
    server.close()


# ---- sandboxes and the CLI -------------------------------------------------------------------

TIERS = ("namespaced", "process")


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test in each isolation tier; tests marked `namespaces` skip in the process tier."""
    name = request.param
    if name == "process":
        if request.node.get_closest_marker("namespaces"):
            pytest.skip("needs Linux namespaces: in the process tier a command is a plain host process "
                        "(host loopback, host files and /proc are visible; no own hostname)")
        monkeypatch.setenv("LABKIT_ISOLATION", "process")
    else:
        monkeypatch.delenv("LABKIT_ISOLATION", raising=False)
        detected = isolation.detect()
        if detected.name != "namespaced":
            pytest.skip(f"namespaces are not available here: {detected.reason}")
    return name


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def sandbox(tier: str, workspace: Path) -> Iterator[str]:
    """A fresh sandbox (unique name) in the current tier; removed afterwards."""
    name = f"t-{tier[:4]}-{uuid.uuid4().hex[:6]}"
    runtime.create("shell", str(workspace), name)
    yield name
    try:
        runtime.remove(name)
    except store.SandboxError:
        pass


