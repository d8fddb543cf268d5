"""A real embedded lab for the widget and checkpoint tests: model server, policy proxy, sandboxes.

The package gets its own LABKIT_HOME (short, under /tmp: sandbox sockets live there) and
its own free model port, so the state starts fresh — no rules, no audit records — whatever
ran before in the session. The shipped model is pulled through `docker model pull` as Step 1
does, and everything started here is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from labkit.lab import Lab

MODEL = "ai/smollm2:135M-Q4_1"
SHELL_BOX = "wdg-shell"  # the Step 2–7 sandbox
AGENT_BOX = "wdg-agent"  # the Step 8 sandbox
PANEL_BOX = "wdg-panel"  # the widgets' sandbox
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (the proxy writes a record when a request ends)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="package")
def lab_env() -> Iterator[Path]:
    keys = ("LABKIT_HOME", "LABKIT_DMR_PORT", "LABKIT_MODE", "LABKIT_ISOLATION", "LABKIT_PRESENTER")
    saved = {k: os.environ.get(k) for k in keys}
    home = Path(tempfile.mkdtemp(prefix="lkwdg-", dir="/tmp"))
    os.environ["LABKIT_HOME"] = str(home)
    os.environ["LABKIT_DMR_PORT"] = str(_free_port())
    for key in keys[2:]:
        os.environ.pop(key, None)
    try:
        yield home
    finally:
        from labkit import lab_services

        lab_services.down()
        shutil.rmtree(home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="package")
def lab(lab_env: Path) -> Iterator[Lab]:
    import labkit

    lab = labkit.connect(mode="embedded", quiet=True)
    if not any(MODEL.removeprefix("ai/") in tag for m in lab.models() for tag in m.tags):
        lab.host(f"docker model pull {MODEL}", echo=False).check()
    yield lab
    lab.close()


@pytest.fixture(scope="package")
def workspace(lab_env: Path) -> Path:
    """The folder both sandboxes mount (Step 2's `mkdir -p /tmp/dmr-test && cd /tmp/dmr-test`)."""
    path = lab_env / "dmr-test"
    path.mkdir()
    return path


def _sandbox(lab: Lab, name: str, agent: str, workspace: Path) -> Iterator[str]:
    lab.sandbox(name).create(agent, str(workspace), reuse=False)
    yield name
    lab.sandbox(name).rm()


@pytest.fixture(scope="package")
def shell_box(lab: Lab, workspace: Path) -> Iterator[str]:
    yield from _sandbox(lab, SHELL_BOX, "shell", workspace)


@pytest.fixture(scope="package")
def panel_box(lab: Lab, workspace: Path) -> Iterator[str]:
    """The prompt panel's sandbox (its own audit trail, apart from the checkpoint's sandboxes)."""
    yield from _sandbox(lab, PANEL_BOX, "shell", workspace)


@pytest.fixture(scope="package")
def agent_box(lab: Lab, workspace: Path) -> Iterator[str]:
    yield from _sandbox(lab, AGENT_BOX, "shell", workspace)
