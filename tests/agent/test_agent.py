"""labkit's agent: end to end against the real model, and its loop against real scripted servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit import agent
from tests.support import free_port

from .conftest import AgentRunner, ModelServer, Scripted

pytestmark = pytest.mark.timeout(30)

BLOCKED = ("Blocked by network policy: domain host.docker.internal:12434\n"
           "  detail: no matching allow rule — blocked by default deny policy\n")


def chats(script: Scripted) -> list[dict]:
    return [r["json"] for r in script.requests if r["path"].endswith("/chat/completions")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- the real thing ------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.timeout(150)
def test_real_model_end_to_end_reports_what_happened(model_server: ModelServer, run_agent: AgentRunner,
                                                    tmp_path: Path) -> None:
    with urllib.request.urlopen(f"{model_server.base_url}/models", timeout=10) as resp:
        first_model = json.load(resp)["data"][0]["id"]

    done = run_agent("--max-steps", "2", "print the squares of the numbers 1 to 5",
                     env={"OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_KEY": "not-needed"}, timeout=140)

    assert "Traceback" not in done.stderr, done.stderr
    assert f"model: {first_model} (the first of" in done.stdout
    program = tmp_path / "squares.py"
    assert program.is_file(), done.stdout
    steps = done.stdout.count("── step ")
    assert 1 <= steps <= 2
    assert done.stdout.count(f"running: python3 {program.name}") >= 1
    # Run the last program the agent wrote ourselves: the agent's verdict must match it.
    rerun = subprocess.run([sys.executable, program.name], cwd=tmp_path, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
    last_lines = done.stdout.strip().splitlines()[-2:]
    if done.returncode == 0:
        assert rerun.returncode == 0 and rerun.stdout.strip(), rerun.stderr
        assert rerun.stdout.strip() in done.stdout
        assert last_lines[0] == f"result: step {steps} of 2: squares.py ran (exit 0)."
        assert "135M model's code is often wrong — check the output" in last_lines[1]
    else:
        assert done.returncode == 1, (done.returncode, done.stderr)
        assert rerun.returncode != 0 or not (rerun.stdout + rerun.stderr).strip()
        assert steps == 2
        assert last_lines[-1] == "result: no step of 2 worked: the model's program never ran successfully."


# -- the loop, against a real HTTP server with chosen answers ---------------------------------------


def test_error_goes_back_to_the_model_and_the_retry_runs(scripted: Callable[..., Scripted], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    script = scripted(models=["a/first:360M-Q4_K_M", "b/second"], replies=[
        "Here you go:\n```python\nprint(undefined_name)\n```\nThis prints the total for you.",
        "```python\nprint(sum(range(5)))\n```",
    ])
    monkeypatch.setenv("OPENAI_BASE_URL", script.base_url)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)

    code = agent.main(["--workspace", str(tmp_path), "add up the numbers 0 to 4"])

    out = capsys.readouterr().out
    assert code == 0, out
    first, second = chats(script)
    assert first["model"] == second["model"] == "a/first:360M-Q4_K_M"  # the first listed model
    assert first["stream"] is True and first["temperature"] == 0 and first["seed"] == 42
    assert second["temperature"] > 0 and second["seed"] == 42
    assert "add up the numbers 0 to 4" in first["messages"][-1]["content"]
    assert "NameError: name 'undefined_name' is not defined" in second["messages"][-1]["content"]
    assert str(tmp_path) not in second["messages"][-1]["content"]  # same question wherever the workspace is
    assert (tmp_path / "add.py").read_text() == "print(sum(range(5)))\n"
    assert "This prints the total for you." not in out  # it stopped reading once the block closed
    assert "\n10\n" in out
    assert out.strip().splitlines()[-2:] == [
        f"result: step 2 of 3: {tmp_path / 'add.py'} ran (exit 0).",
        "The program ran; a 360M model's code is often wrong — check the output above.",
    ]


def test_every_kind_of_failure_is_fed_back_and_the_step_cap_holds(
        scripted: Callable[..., Scripted], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    script = scripted(replies=[
        "I am sorry, I cannot write programs.",
        "```python\nimport sys\nsys.exit(4)\n```",
        "```python\ndef answer():\n    print(42)\n```",
        "```python\nwhile True:\n    pass\n```",
        "```python\nprint('a fifth step would have worked')\n```",
    ])
    monkeypatch.setenv("OPENAI_BASE_URL", script.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "env/model:7B")

    code = agent.main(["--max-steps", "4", "--timeout", "1", "--workspace", str(tmp_path),
                       "--output", "answer.py", "print the answer"])

    out = capsys.readouterr().out
    assert code == 1, out
    requests = chats(script)
    assert len(requests) == 4 and len(script.replies) == 1  # the fifth answer was never asked for
    assert [r["path"] for r in script.requests if r["path"].endswith("/models")] == []  # OPENAI_MODEL named it
    assert {r["model"] for r in requests} == {"env/model:7B"}
    feedback = [r["messages"][-1]["content"] for r in requests[1:]]
    assert "no complete ```python block" in feedback[0]
    assert "exited with code 4 and printed nothing" in feedback[1]
    assert "ran but printed nothing" in feedback[2]
    assert "── timed out in" in out
    assert (tmp_path / "answer.py").read_text().startswith("while True")
    assert out.strip().splitlines()[-1] == "result: no step of 4 worked: the model's program never ran successfully."


# -- when the model cannot be reached: exit 3, one line, no traceback ---------------------------------


def test_policy_block_from_the_sandbox_proxy(scripted: Callable[..., Scripted], run_agent: AgentRunner) -> None:
    proxy = scripted(status=403, body=BLOCKED)  # plays the sandbox's policy proxy

    done = run_agent("print hello", env={
        "OPENAI_BASE_URL": "http://host.docker.internal:12434/engines/llama.cpp/v1",
        "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": ""})

    assert done.returncode == 3, done.stdout + done.stderr
    # The SDK went through the proxy (absolute-form request line), like it does inside a sandbox.
    assert [r["path"] for r in proxy.requests] == ["http://host.docker.internal:12434/engines/llama.cpp/v1/models"]
    assert error_lines(done.stderr) == [
        "error: Blocked by network policy: domain host.docker.internal:12434"
        " — fix on the host: sbx policy allow network localhost:12434"]


@pytest.mark.parametrize("kind", ["nothing listens", "404 model", "500 mid-run"])
def test_unreachable_or_failing_model_server(kind: str, scripted: Callable[..., Scripted], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "nothing listens":
        base, expected = f"http://127.0.0.1:{free_port()}/engines/llama.cpp/v1", "cannot reach the model at"
    elif kind == "404 model":
        base = scripted(status=404, body="model not found\n").base_url
        expected = "the model server answered 404: model not found — check the exact model id with docker model ls"
    else:  # one failed program, then the server has no answer left and says so with a 500
        base = scripted(replies=["```python\nraise SystemExit(1)\n```"]).base_url
        expected = "the model server answered 500: no scripted reply left"
    monkeypatch.setenv("OPENAI_BASE_URL", base)

    code = agent.main(["--model", "ai/smollm2:135M-Q4_1", "--workspace", str(tmp_path), "print hello"])

    err = capsys.readouterr().err
    assert code == 3
    assert len(error_lines(err)) == 1 and expected in err, err


# -- usage: exit 2 ------------------------------------------------------------------------------------


def test_missing_base_url_says_what_to_export(run_agent: AgentRunner) -> None:
    done = run_agent("print hello", env={})

    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "error: OPENAI_BASE_URL is not set: export OPENAI_BASE_URL=http://host.docker.internal:12434/engines/llama.cpp/v1"]
    assert done.stdout == ""


def test_agent_py_runs_as_a_standalone_file(tmp_path: Path) -> None:
    """Inside a sandbox labkit may not be installed: agent.py copied into the workspace must run alone."""
    copy = tmp_path / "labkit_agent.py"
    copy.write_text(Path(agent.__file__).read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_BASE_URL")}
    # labkit is installed in this venv, so make importing it fail, as in a sandbox without it.
    block_labkit = ("import runpy, sys; sys.modules['labkit'] = None; sys.argv = sys.argv[1:]; "
                    "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", block_labkit, copy.name, "print hello"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=20)

    assert done.returncode == 2, done.stderr
    assert error_lines(done.stderr) == [
        "error: OPENAI_BASE_URL is not set: export OPENAI_BASE_URL=http://host.docker.internal:12434/engines/llama.cpp/v1"]
    assert done.stdout == ""


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: task"),
    (["--max-steps", "0", "x"], "--max-steps must be at least 1"),
    (["--workspace", "/nonexistent/ws", "x"], "is not a folder"),
    (["   "], "TASK is empty"),
])
def test_usage_errors(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert agent.main(argv) == 2
    assert message in capsys.readouterr().err


# -- the small pure pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize("task, name", [
    ("write a Python script that prints the first 10 Fibonacci numbers", "fibonacci.py"),
    ("print a random number", "random_task.py"),  # random.py would shadow the module it imports
    ("print 42", "program.py"),
])
def test_file_name_from_the_task(task: str, name: str) -> None:
    assert agent.file_name(task) == name


@pytest.mark.parametrize("reply, code", [
    ("Sure:\n```python\nprint(1)\n```\nDone.", "print(1)\n"),
    ("```py\nprint(2)\n```", "print(2)\n"),
    ("```\nprint(3)\n```", "print(3)\n"),
    ("```python\nprint(4)\n", None),  # cut off before the block closed
    ("print(5)", None),
    ("```python\n```", None),
])
def test_extract_code(reply: str, code: str | None) -> None:
    assert agent.extract_code(reply) == code
