"""The embedded model server, started for real once per test session.

The root conftest already points LABKIT_HOME at a temporary folder and LABKIT_DMR_PORT at
a free port; this one refuses to run against a learner's home or the real 12434, starts
the server as `labkit up` does (a background process), pulls the shipped model once and
stops the server at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from labkit._core import paths
from labkit.dmr import catalog, cli, service
from labkit.dmr.store import Store

REF = catalog.PRIMARY_REFERENCE  # "ai/smollm2:135M-Q4_1"
TAG = "docker.io/ai/smollm2:135M-Q4_1"


def _isolated() -> None:
    home = os.environ.get("LABKIT_HOME", "")
    if not home or Path(home).resolve() == (Path.home() / ".labkit").resolve():
        os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-dmr-test-")
    if paths.dmr_port() == paths.DEFAULT_DMR_PORT:
        raise pytest.UsageError("the DMR tests must not use port 12434; set LABKIT_DMR_PORT to a free port")


@dataclass
class Session:
    """The running server and its store."""

    base_url: str
    store: Store
    pulled: bool = False


@pytest.fixture(scope="session")
def dmr() -> Iterator[Session]:
    _isolated()
    service.start()
    session = Session(service.base_url(), Store())
    yield session
    service.stop()


@pytest.fixture
def pulled(dmr: Session) -> Session:
    """The shipped model pulled through the CLI, as the course's Step 1 does (once per session).

    The server is (re)started if needed before every test: other test folders share this
    LABKIT_HOME and may run `labkit down` between ours. Starting is idempotent and cheap.
    """
    service.start()
    if not dmr.pulled:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["pull", REF]) == 0, out.getvalue()
        dmr.pulled = True
    return dmr


@pytest.fixture
def http(pulled: Session) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pulled.base_url, timeout=60) as client:
        yield client
