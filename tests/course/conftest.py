"""A fake lab for the checkpoints and exercises: the real `Lab` and the real check code, no model.

``lab`` is `Lab` in live mode on the fakes of tests/fakes/: `sbx` and `docker model` replay the
documented outputs (state in a JSON file per test), ``FakeDmrApi`` is Docker Model Runner's HTTP
API over the fake store, and the fake `sbx exec` runs a command on the host, playing the proxy for
`host.docker.internal:PORT` (FAKE_SBX_GATEWAY): it rewrites the address and writes the `sbx policy
log` row. So a learner's command goes through the same calls as on a real machine.

``embedded_lab`` is `Lab` in embedded mode with nothing started: the request-level exercises read
the proxy's audit records there, and ``ProxyRecords`` appends them as the proxy writes them.
No model, no namespaces, no daemons: this package is in the fast tier.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from labkit._core import runner
from labkit.lab import Lab
from labkit.runtime import modes
from labkit.sbx import audit
from tests.fakes.dmr_api import FakeDmrApi

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "bin"
SANDBOX = "dmr-test"  # the shell sandbox of steps 2–7
AGENT_SANDBOX = "dmr-claude"  # the coding agent's sandbox of step 8
MODEL = "ai/smollm2:360M-Q4_K_M"  # the live model (Lab.LIVE_MODEL), in the fake registry
LISTED = f"docker.io/{MODEL}"  # how the new DMR lists it


def resolution(kind: modes.Kind) -> modes.Resolution:
    return modes.Resolution(kind, "argument", modes.Component("model server", kind, True, f"fake ({kind})"),
                            modes.Component("sandboxes", kind, True, f"fake ({kind})"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The folder the sandboxes mount (the course's /tmp/dmr-test)."""
    path = tmp_path / "dmr-test"
    path.mkdir()
    return path


FAKE_ENV = ("FAKE_FAIL", "FAKE_SBX_VERSION", "FAKE_DMR_VARIANT", "LABKIT_MODE")
INITIALISED = {"daemon_started": True, "preset": "balanced", "rules": [], "sandboxes": {}, "log": []}


class Shared(NamedTuple):
    live: Lab
    embedded: Lab
    api: FakeDmrApi


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One live `Lab` (on the fakes and ``FakeDmrApi``) and one embedded `Lab` per module, as a notebook
    has one: each `Lab` loads the CA bundle for its HTTP client (50 ms). Their state is per test."""
    with pytest.MonkeyPatch.context() as env:
        # the fakes first, with this interpreter as their python3 (a pyenv shim costs 0.2 s a call)
        env.setenv("PATH", os.pathsep.join([str(FAKES), str(Path(sys.executable).parent), os.environ["PATH"]]))
        env.setenv("FAKE_SBX_GATEWAY", "127.0.0.1")  # the fake `sbx exec` plays the proxy for the model port
        env.setenv("LABKIT_HOME", str(tmp_path_factory.mktemp("labkit-home")))
        for name in FAKE_ENV:
            env.delenv(name, raising=False)
        api = FakeDmrApi(tmp_path_factory.mktemp("fake-state"))
        live, embedded = Lab(resolution("live"), port=api.port, timeout=30), Lab(resolution("embedded"), timeout=30)
        try:
            yield Shared(live, embedded, api)
        finally:
            live.close()
            embedded.close()
            api.close()


@pytest.fixture
def fake_state(shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's state of the fakes and of labkit: sbx's daemon running, the balanced policy chosen (a live
    machine is initialised: the probe requires it), as `sbx policy init balanced` leaves it; nothing pulled."""
    state = tmp_path / "fake-state"
    state.mkdir()
    (state / "sbx.json").write_text(json.dumps(INITIALISED))
    monkeypatch.setenv("FAKE_STATE_DIR", str(state))
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "labkit-home"))
    for name in FAKE_ENV:
        monkeypatch.delenv(name, raising=False)
    shared.api.state_dir = state
    return state


@pytest.fixture
def lab(shared: Shared, fake_state: Path) -> Lab:
    """Live mode: `sbx` and `docker model` are the fakes, the model API is ``FakeDmrApi``."""
    return shared.live


@pytest.fixture
def embedded_lab(shared: Shared, fake_state: Path) -> Lab:
    """Embedded mode with nothing started, in this test's LABKIT_HOME: only its audit records are read."""
    return shared.embedded


class ProxyRecords:
    """Appends audit records as the policy proxy writes them for a request to the model port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, sandbox: str, method: str, path: str, *, status: int = 200, rule: str = "allow") -> None:
        """``rule``: "allow" (the allow rule decided), "deny" (a deny rule), "default-deny" (no rule)."""
        target = f"localhost:{self.port}"
        if rule == "default-deny":
            decided = {"id": "default-deny", "text": "no matching allow rule"}
        else:
            rule_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule} {target}"))
            decided = {"id": rule_id, "name": f"local:{rule_id}", "text": f"{rule} {target}"}
        audit.append({
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "sandbox": sandbox, "method": method,
            "url": f"http://host.docker.internal:{self.port}{path}", "host": "host.docker.internal",
            "port": self.port, "normalized": target, "decision": "allow" if rule == "allow" else "deny",
            "rule": decided, "status": status, "bytes_up": 0, "bytes_down": 0, "duration_ms": 1.0})


@pytest.fixture
def records(embedded_lab: Lab) -> ProxyRecords:
    return ProxyRecords(embedded_lab.port)


# ---- what the learner types, verbatim from the notebooks ------------------------------------------


def curl_models(lab: Lab, sandbox: str = SANDBOX) -> None:
    """Notebook 05: list the models from inside the sandbox."""
    lab.sandbox(sandbox).exec(f"curl -s {lab.endpoints.sandbox}/models", echo=False)


def curl_chat(lab: Lab, sandbox: str = SANDBOX) -> runner.Result:
    """Notebook 06's chat completion with curl from inside ``sandbox``; the `sbx exec` result."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]})
    return lab.sandbox(sandbox).exec(["curl", "-s", f"{lab.endpoints.sandbox}/chat/completions",
                                      "-H", "Content-Type: application/json", "-d", body], echo=False)
