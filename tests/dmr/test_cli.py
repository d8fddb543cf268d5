"""`docker model …` in embedded mode: DMR's commands, columns and messages, against the real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from labkit.dmr import cli
from tests.support import free_port

from .conftest import REF, TAG, Session

COLUMNS = re.compile(r"\s{2,}")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_table(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls")
    assert code == 0
    header, *rows = out.splitlines()
    assert COLUMNS.split(header) == ["MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID",
                                     "CREATED", "CONTEXT", "SIZE"]
    model_id = httpx.get(pulled.base_url + "/models").json()[0]["id"]
    (row,) = [COLUMNS.split(r) for r in rows if r.startswith("smollm2:135M-Q4_1 ")]
    assert row[:5] == ["smollm2:135M-Q4_1", "134.52M", "Q4_1", "llama", model_id[7:19]]
    assert row[5].endswith(" ago") and row[6:] == ["8192", "92.10MiB"]


def test_ls_variants(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    listing = httpx.get(pulled.base_url + "/models").json()
    code, out, _ = run(capsys, "ls", "--json")
    assert code == 0 and json.loads(out) == listing and out.splitlines()[1].startswith("    {")
    code, out, _ = run(capsys, "ls", "-q")
    assert code == 0 and out.split() == [m["id"][7:19] for m in listing]
    code, out, _ = run(capsys, "ls", "--openai")
    assert code == 0 and [m["id"] for m in json.loads(out)["data"]] == [TAG]
    code, out, _ = run(capsys, "ls", "smollm2")
    assert code == 0 and len(out.splitlines()) >= 2
    code, out, _ = run(capsys, "ls", "gemma3")
    assert code == 0 and len(out.splitlines()) == 1  # the header only
    code, _, err = run(capsys, "ls", "-q", "--openai")
    assert code == 1 and err.strip() == "--quiet flag cannot be used with --openai flag or OpenAI backend"


def test_inspect(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    model = httpx.get(pulled.base_url + "/models").json()[0]
    for ref in (REF, model["id"][7:19], model["id"]):
        code, out, _ = run(capsys, "inspect", ref)
        assert code == 0 and json.loads(out) == model, ref
    code, out, _ = run(capsys, "inspect", "--openai", REF)
    assert code == 0 and json.loads(out)["id"] == TAG
    code, _, err = run(capsys, "inspect", "ai/gemma3")
    assert code == 1 and err.splitlines() == ["Failed to get model ai/gemma3: ai/gemma3: model not found",
                                              cli.LS_HINT]


def test_status(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status")
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["Docker Model Runner is running", ""]
    assert COLUMNS.split(lines[2]) == ["BACKEND", "STATUS", "DETAILS"]
    rows = {COLUMNS.split(line)[0]: COLUMNS.split(line)[1:] for line in lines[3:]}
    assert rows["llama.cpp"][0] == "Running" and rows["llama.cpp"][1].startswith("llama.cpp")
    assert rows["vllm"][0] == "Not Installed"
    code, out, _ = run(capsys, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["running"] is True and status["backends"]["llama.cpp"].startswith("Running")
    port = httpx.URL(pulled.base_url).port
    assert status["endpointHost"] == f"http://127.0.0.1:{port}/v1/"


def test_ps_and_df(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    body = {"model": REF, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    httpx.post(pulled.base_url + "/engines/v1/chat/completions", json=body, timeout=60).raise_for_status()
    code, out, _ = run(capsys, "ps")
    header, *rows = out.splitlines()
    assert code == 0 and COLUMNS.split(header) == ["MODEL NAME", "BACKEND", "MODE", "UNTIL"]
    assert ["smollm2:135M-Q4_1", "llama.cpp", "completion", "Forever"] in [COLUMNS.split(r) for r in rows]
    code, out, _ = run(capsys, "df")
    lines = [COLUMNS.split(line) for line in out.splitlines()]
    assert code == 0 and lines[0] == ["TYPE", "SIZE"]
    assert lines[1] == ["Models", "98.36MB"]
    assert lines[2][0] == "Inference engine" and re.fullmatch(r"\d+\.\d\d[kMG]B", lines[2][1])


def test_pull_cached_alias_then_rm(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pull", "ai/smollm2")
    assert code == 0 and out.splitlines() == ["Using cached model: 92.10MiB"]
    code, out, _ = run(capsys, "ls")
    names = [COLUMNS.split(r)[0] for r in out.splitlines()[1:]]
    assert names == ["smollm2", "smollm2:135M-Q4_1"]  # one row per tag, sorted
    # `smollm2` is expanded to the id, which has two tags: DMR refuses without -f.
    code, _, err = run(capsys, "rm", "smollm2")
    assert code == 1 and "409 Conflict" in err and "must be forced" in err
    code, out, _ = run(capsys, "rm", "ai/smollm2")
    assert code == 0 and out == "Untagged: docker.io/ai/smollm2:latest\n"
    code, _, err = run(capsys, "rm", "ai/smollm2")
    assert code == 1 and err.splitlines() == ["Failed to remove model: no such model: ai/smollm2", cli.LS_HINT]
    assert [m["tags"] for m in httpx.get(pulled.base_url + "/models").json()] == [[TAG]]


def test_pull_of_a_model_embedded_mode_cannot_get(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "pull", "ai/gemma3")
    first, second = err.strip().splitlines()
    assert code == 1 and out == ""
    assert first == "Failed to pull model: pulling ai/gemma3 failed with status 404 Not Found: Model not found"
    assert "LABKIT_MODE=live" in second and "ai/smollm2:135M-Q4_1" in second


def test_a_mistyped_pull_suggests_the_shipped_name(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "pull", "ai/smolm2:135M-Q4_1")
    assert code == 1 and out == ""
    assert "Did you mean ai/smollm2:135M-Q4_1?" in err.splitlines()[1], err


def test_run_streams_one_answer(pulled: Session, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "RUN_EXTRA", {"max_tokens": 8, "temperature": 0})
    code, out, _ = run(capsys, "run", REF, "What", "is", "2+2?")
    body = {"model": REF, "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 8,
            "temperature": 0}
    expected = httpx.post(pulled.base_url + "/engines/v1/chat/completions", json=body, timeout=60).json()
    assert code == 0 and out == expected["choices"][0]["message"]["content"] + "\n"


def test_usage_errors(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pull")
    assert code == 1 and err.startswith("'docker model pull' requires 1 argument(s).")
    assert "Usage:  docker model pull MODEL" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 1 and "invalid choice" in err and "--help" in err
    assert cli.docker_main(["ps"]) == 1
    assert "only 'docker model …'" in capsys.readouterr().err
    assert cli.docker_main(["model", "ls", "-q"]) == 0


def test_not_running(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_DMR_PORT", str(free_port()))
    code, out, err = run(capsys, "ls")
    assert code == 1 and out == ""
    assert err.splitlines()[0] == "Docker Model Runner is not running. Please start it and try again."
    assert "labkit up" in err
    code, out, _ = run(capsys, "status")
    assert code == 1 and out.startswith("Docker Model Runner is not running\n")


def test_as_a_command_no_traceback(pulled: Session) -> None:
    proc = subprocess.run([sys.executable, "-m", "labkit", "model", "inspect"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("'docker model inspect' requires 1 argument(s).")
    proc = subprocess.run([sys.executable, "-m", "labkit", "docker", "model", "ls", "-q"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and len(proc.stdout.split()) == 1
