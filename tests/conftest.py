"""Session-wide isolation: every test run gets its own LABKIT_HOME and model port.

Nothing a test does may touch a learner's ~/.labkit or a server on the real 12434.
"""

from __future__ import annotations

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    if os.environ.get("LABKIT_TEST_KEEP_ENV"):
        return
    os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-test-home-")
    os.environ["LABKIT_DMR_PORT"] = str(_free_port())
    os.environ.pop("LABKIT_MODE", None)
