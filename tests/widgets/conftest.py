"""A real embedded lab for the widget and checkpoint tests: model server, policy proxy, sandboxes.

The package gets its own LABKIT_HOME (short, under /tmp: sandbox sockets live there) and
its own free model port, so the state starts fresh — no rules, no audit records — whatever
ran before in the session. The shipped model is pulled through `docker model pull` as Step 1
does, and everything started here is stopped at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from widget_helpers import MODEL, free_port

from labkit.lab import Lab

SHELL_BOX = "wdg-shell"  # the Step 2–7 sandbox
AGENT_BOX = "wdg-agent"  # the Step 8 sandbox
PANEL_BOX = "wdg-panel"  # the widgets' sandbox


@pytest.fixture(scope="package")
def lab_env() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="lkwdg-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LABKIT_HOME", str(home))
        env.setenv("LABKIT_DMR_PORT", str(free_port()))
        for key in ("LABKIT_MODE", "LABKIT_ISOLATION", "LABKIT_PRESENTER"):
            env.delenv(key, raising=False)
        try:
            yield home
        finally:
            from labkit.commands import up as lab_services

            lab_services.down()
            shutil.rmtree(home, ignore_errors=True)


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
