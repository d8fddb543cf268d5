"""The `Lab` facade: one short course script, unchanged, against embedded mode (for real) and
against live mode (the fake `sbx` and `docker` that replay the documented outputs).

The live run drives the fakes for every CLI call and uses the running embedded model server as
the stand-in for Docker Model Runner's HTTP API (there is no Docker here); the fake `sbx exec`
emulates the proxy's `host.docker.internal` → `localhost:PORT` rule (FAKE_SBX_GATEWAY).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from labkit._core import paths
from labkit.commands import up as lab_services
from labkit.lab import Lab
from labkit.runtime import modes
from tests.support import free_port

MODEL = "ai/smollm2:135M-Q4_1"
FAKES = Path(__file__).resolve().parent / "fakes" / "bin"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def own_lab(tmp_path_factory):
    """This module's own state folder and model port (other suites keep their servers running)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_HOME", str(tmp_path_factory.mktemp("labkit-home")))
        mp.setenv("LABKIT_DMR_PORT", str(free_port()))
        yield


def course_script(lab: Lab, workdir: Path, name: str) -> dict:
    """Connect → models → sandbox → allow → curl inside → chat → audit → clean up, as records."""
    lab.host(f"docker model pull {lab.default_model}").check()
    models = sorted(m.name for m in lab.models())
    box = lab.sandbox(name)
    box.create("shell", ".", cwd=workdir)
    listed = box.info
    lab.policy.allow(lab.endpoints.rule)
    rule = [(r.decision, r.resources) for r in lab.policy.rules_for(lab.endpoints.rule)]
    inside = box.exec(f"curl -s {lab.endpoints.sandbox}/models")
    inside_ids = [m["id"] for m in json.loads(inside.stdout)["data"]] if inside.ok else []
    reply = lab.chat(lab.model_ids()[0], "Say hello.", max_tokens=8)
    log = [(e.sandbox, e.host, e.blocked, e.rule) for e in lab.audit.log(name)]
    box.rm()
    lab.policy.rm(lab.endpoints.rule)
    return {
        "models": models, "listed": (listed.name, listed.agent, listed.workspaces) if listed else None,
        "rule": rule, "inside_exit": inside.returncode, "inside_ids": inside_ids,
        "reply_has_text": bool(reply.content.strip()), "log": log,
        "gone": not box.exists, "rule_gone": not lab.policy.rules_for(lab.endpoints.rule),
    }


@pytest.fixture(scope="module")
def embedded_result(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ws")
    try:
        lab = labkit.connect(mode="embedded")
        yield course_script(lab, workdir, "contract-embedded"), workdir
    finally:
        lab_services.down()


def test_script_runs_for_real_in_embedded_mode(embedded_result):
    result, workdir = embedded_result
    port = paths.dmr_port()
    assert result["models"] == ["smollm2:135M-Q4_1"]
    assert result["listed"] == ("contract-embedded", "shell", (str(workdir),))
    assert result["rule"] == [("allow", (f"localhost:{port}",))]
    assert result["inside_exit"] == 0 and result["inside_ids"] == [f"docker.io/{MODEL}"]
    assert result["reply_has_text"]
    assert result["log"] == [("contract-embedded", f"host.docker.internal:{port}", False, "domain-allowed")]
    assert result["gone"] and result["rule_gone"]


@pytest.mark.parametrize("version", ["0.23.0", "0.34.0", "0.42.1"])
def test_same_script_same_records_against_the_live_fakes(embedded_result, version, tmp_path, monkeypatch):
    embedded, _ = embedded_result
    workdir = tmp_path / "ws"
    workdir.mkdir()
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_SBX_VERSION", version)
    monkeypatch.setenv("FAKE_SBX_GATEWAY", "127.0.0.1")
    monkeypatch.setenv("FAKE_DMR_VARIANT", "new")
    from labkit.dmr import service as dmr_service

    dmr_service.start()  # the HTTP API's stand-in for Docker Model Runner
    try:
        Component = modes.Component
        res = modes.Resolution("live", "argument", Component("model server", "live", True, "fake docker"),
                               Component("sandboxes", "live", True, "fake sbx"))
        lab = Lab(res)
        assert lab.sbx.prefix[0] == "sbx" and lab.model_cli.prefix[:2] == ["docker", "model"]
        lab.sbx.policy_init("balanced")  # a live machine is initialised (the probe requires it)
        result = course_script(lab, workdir, "contract-embedded")
    finally:
        dmr_service.stop()
    result["listed"] = (result["listed"][0], result["listed"][1], ("WS",))
    embedded = {**embedded, "listed": (embedded["listed"][0], embedded["listed"][1], ("WS",))}
    assert result == embedded


def test_connect_says_what_is_real_and_why(capsys):
    try:
        lab = labkit.connect(mode="embedded")
        line = capsys.readouterr().out.strip()
        assert line.startswith("mode: embedded") and "isolation" in line
        assert lab.tier in ("namespaced", "process") and f"isolation {lab.isolation}" in line
        assert lab.default_model == MODEL and lab.small_agent(MODEL).sandbox_agent == "shell"
    finally:
        lab_services.down()


def test_forced_live_without_tools_is_a_clear_error():
    with pytest.raises(labkit.errors.ToolError) as err:
        labkit.connect(mode="live")
    assert "labkit doctor" in str(err.value)


def test_labkit_shell_runs_the_seeds_steps_1_to_6(tmp_path):
    """The seed's commands verbatim (but the model name and the port), typed into `labkit shell -c`."""
    port = paths.dmr_port()
    ws = tmp_path / "dmr-test"
    message = {"role": "user", "content": "Reply with exactly: sbx to DMR works"}
    body = json.dumps({"model": MODEL, "messages": [message], "max_tokens": 20})
    steps = [
        "docker model ls",
        f"curl -s http://localhost:{port}/engines/llama.cpp/v1/models | head -20",
        f"docker model pull {MODEL}",
        f"mkdir -p {ws} && cd {ws} && sbx create --name dmr-test shell .",
        f"sbx policy allow network localhost:{port}",
        # the seed greps plain `sbx policy ls`; since sbx v0.35 that prints one summary line per policy,
        # so the rule itself is in the --wide listing (notebook 03 explains this difference)
        "sbx policy ls --wide | grep localhost",
        "sbx exec dmr-test hostname",
        "sbx exec dmr-test bash -c 'cat /etc/os-release | head -2'",
        f"sbx exec dmr-test curl -s http://host.docker.internal:{port}/engines/llama.cpp/v1/models | head -30",
        f"sbx exec dmr-test curl -s http://host.docker.internal:{port}/engines/llama.cpp/v1/chat/completions "
        f"-H 'Content-Type: application/json' -d '{body}'",
    ]
    env = {**os.environ, "LABKIT_MODE": "embedded"}
    try:
        subprocess.run([sys.executable, "-m", "labkit", "up"], env=env, check=True, capture_output=True, timeout=120)
        outputs = []
        for step in steps:
            proc = subprocess.run([sys.executable, "-m", "labkit", "shell", "-c", f"set -o pipefail; {step}"],
                                  env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"{step!r} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}"
            outputs.append(proc.stdout)
        assert "Model pulled successfully" in outputs[2] or "Using cached model" in outputs[2]
        assert f"localhost:{port}" in outputs[5]
        assert outputs[6].strip() == "dmr-test"
        assert f"docker.io/{MODEL}" in outputs[8]
        assert json.loads(outputs[9])["choices"][0]["message"]["content"]
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "sbx", "rm", "-f", "dmr-test"], env=env, capture_output=True,
                       timeout=60)
        subprocess.run([sys.executable, "-m", "labkit", "down"], env=env, capture_output=True, timeout=60)
