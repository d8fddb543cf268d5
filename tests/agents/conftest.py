"""Fixtures for the real agents: skip with the fix when they are not installed, and an embedded
model server (started in this session's temporary LABKIT_HOME) in the DMR behaviour a test asks for.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labkit.agents import install
from labkit.dmr import catalog, cli, service
from tests.support import free_port

REF = catalog.PRIMARY_REFERENCE


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "agents: runs a pinned coding agent from .agents/ (make lab installs them)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [f"{name}: {exc}" for name in install.pins() for exc in _missing(name)]
    for item in items:
        if item.get_closest_marker("agents") and missing:
            item.add_marker(pytest.mark.skip(reason="; ".join(missing)))


def _missing(name: str) -> list[str]:
    try:
        install.require(name)
    except install.NotInstalled as exc:
        return [str(exc)]
    return []


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    """A HOME for the agent (its caches and state stay in the test's folder)."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@contextlib.contextmanager
def dmr_server(compat: str) -> Iterator[str]:
    """The embedded server behaving as DMR ``compat``, model pulled, in its own state folder and on its
    own port (the session's server and store, which other suites count on, stay as they are)."""
    own = {"LABKIT_DMR_COMPAT": compat, "LABKIT_HOME": tempfile.mkdtemp(prefix="labkit-agents-"),
           "LABKIT_DMR_PORT": str(free_port())}
    old = {key: os.environ.get(key) for key in own}
    os.environ.update(own)
    try:
        service.start()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["pull", REF]) == 0
        yield service.base_url()
    finally:
        service.stop()
        shutil.rmtree(own["LABKIT_HOME"], ignore_errors=True)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def request_log(base_url: str) -> list[dict]:
    """The agent's records in DMR's request log (``GET /engines/requests``), all models; the
    server's own warm-up chat completion at start is left out."""
    data = httpx.get(base_url + "/engines/requests", headers={"Accept": "application/json"}, timeout=10).json()
    return [rec for model in data for rec in model.get("records", []) if not rec["url"].endswith("/chat/completions")]
