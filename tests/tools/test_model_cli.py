"""Contract: old and new `docker model` (fake) give the adapters the same models and status."""

from __future__ import annotations

import sys

import pytest

from labkit.errors import ToolError
from labkit.records import ModelInfo, display_name
from labkit.tools import model_output as mo
from labkit.tools.model_cli import ModelCli

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]

SMOLLM2_ID = "sha256:354bf30d0aa3af413d2aa5ae4f23c66d78980072d1e07a5b0d776e9606a2f0b9"


def caught(call) -> ToolError:
    with pytest.raises(ToolError) as info:
        call()
    return info.value


def test_pull_streams_progress_then_ls_lists_the_model(model_cli: ModelCli, variant: str) -> None:
    assert model_cli.ls() == []
    lines: list[str] = []
    assert model_cli.pull("ai/smollm2:360M-Q4_K_M", on_line=lines.append) == "Model pulled successfully"
    assert lines[0].startswith("Downloaded ") and lines[-1] == "Model pulled successfully"
    assert model_cli.pull("ai/smollm2:360M-Q4_K_M") == "Using cached model: 256.35 MiB"
    prefix = "docker.io/" if variant == "new" else ""  # how tags are stored changed in 2026-01 (reference §2.1)
    assert model_cli.ls() == [ModelInfo(SMOLLM2_ID, (f"{prefix}ai/smollm2:360M-Q4_K_M",), "361.82 M",
                                        "IQ2_XXS/Q4_K_M", "llama", "256.35 MiB", 8192)]
    assert model_cli.ls()[0].name == "smollm2:360M-Q4_K_M"  # the same display name from both variants


def test_ls_table_with_and_without_context_agrees_with_json(model_cli: ModelCli, variant: str) -> None:
    model_cli.pull("ai/smollm2:360M-Q4_K_M")
    model_cli.pull("ai/smollm2")
    model_cli.pull("ai/qwen3:8B-Q4_K_M")
    table = model_cli.run(["ls"]).out
    assert ("CONTEXT" in table) == (variant == "new")
    from_table = mo.parse_models(table)
    from_json = model_cli.ls()
    # the table shows 12 hex digits of the id and display names of the tags: it must agree on those
    assert sorted((m.id, sorted(m.tags), m.parameters, m.quantization, m.architecture, m.size) for m in from_table) == \
        sorted((mo.short_id(m.id), sorted(display_name(t) for t in m.tags), m.parameters, m.quantization,
                m.architecture, m.size) for m in from_json)
    contexts = {m.id: m.context for m in from_table}  # a CONTEXT column only in new builds
    assert contexts == {mo.short_id(m.id): m.context if variant == "new" else None for m in from_json}


def test_inspect_and_rm(model_cli: ModelCli) -> None:
    model_cli.pull("ai/smollm2:360M-Q4_K_M")
    assert model_cli.inspect("smollm2:360M-Q4_K_M") == model_cli.ls()[0]
    err = caught(lambda: model_cli.inspect("ai/qwen3:8B-Q4_K_M"))
    assert err.kind == "model_not_pulled"
    assert err.fix.startswith("docker model pull ai/qwen3:8B-Q4_K_M")
    assert model_cli.rm("ai/smollm2:360M-Q4_K_M") is True
    assert model_cli.ls() == []
    assert model_cli.rm("ai/smollm2:360M-Q4_K_M", missing_ok=True) is False
    assert caught(lambda: model_cli.rm("ai/smollm2:360M-Q4_K_M")).kind == "model_not_pulled"


def test_pull_of_an_unknown_model(model_cli: ModelCli) -> None:
    lines: list[str] = []
    err = caught(lambda: model_cli.pull("ai/does-not-exist", on_line=lines.append))
    assert err.kind == "model_not_found"
    assert lines == ["Failed to pull model: pulling ai/does-not-exist failed with status 404 Not Found: "
                     "Model not found"]
    assert len(str(err).splitlines()) == 2


def test_status_text_and_json_agree(model_cli: ModelCli, variant: str) -> None:
    status = model_cli.status()
    assert status.running and status.backend_running("llama.cpp")
    text = mo.parse_status(model_cli.run(["status"]).out)
    assert (text.running, text.backends) == (status.running, status.backends)
    if variant == "new":
        assert status.backends["vllm"] == "Not Installed: binary not found"
        assert (status.kind, status.endpoint_host) == ("Docker Engine", "http://127.0.0.1:12434/v1/")
    else:
        assert status.backends == {"llama.cpp": "running llama.cpp version: c22473b"}
        assert status.kind == "" and status.endpoint.endswith("/engines/v1/")


def test_status_of_a_stopped_runner_is_an_answer(model_cli: ModelCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "dmr_down")
    status = model_cli.status()
    assert not status.running and status.detail == "Docker Model Runner is not running"
    assert mo.parse_status(model_cli.run(["status"], check=False).out).running is False


@pytest.mark.parametrize(("fail", "kind", "fix_has"), [
    ("dmr_down", "dmr_not_running", "docker desktop enable model-runner --tcp 12434"),
    ("daemon_down", "daemon_not_running", "start Docker Desktop"),
    ("no_model_plugin", "tool_missing", "docker-model-plugin"),
])
def test_known_failures(model_cli: ModelCli, monkeypatch: pytest.MonkeyPatch, fail: str, kind: str,
                        fix_has: str) -> None:
    monkeypatch.setenv("FAKE_FAIL", fail)
    for call in (model_cli.ls, lambda: model_cli.pull("ai/smollm2")):
        err = caught(call)
        assert err.kind == kind and fix_has in err.fix
        assert len(str(err).splitlines()) == 2


def test_docker_missing(fake_env) -> None:
    assert caught(ModelCli(["docker-that-is-not-installed", "model"]).ls).kind == "tool_missing"


def test_status_json_variants_from_the_reference() -> None:
    new = ('{"running":true,"backends":{"llama.cpp":"Running: llama.cpp b6970"},"kind":"Docker Desktop",'
           '"endpoint":"http://model-runner.docker.internal/v1/","endpointHost":"http://localhost:12434/v1/"}')
    assert mo.parse_status(new) == mo.ModelStatus(True, {"llama.cpp": "Running: llama.cpp b6970"}, "Docker Desktop",
                                                  "http://model-runner.docker.internal/v1/",
                                                  "http://localhost:12434/v1/")
    old = '{"running":true,"backends":{"llama.cpp":"running llama.cpp version: c22473b"},"endpoint":"x/engines/v1/"}'
    assert mo.parse_status(old).backend_running()


def test_models_json_from_the_reference() -> None:
    """§2.4's `/models` example; `tags` may be absent, the context falls back to the GGUF key."""
    body = """[{"id":"sha256:354bf30d0aa3af413d2aa5ae4f23c66d78980072d1e07a5b0d776e9606a2f0b9",
      "tags":["ai/smollm2:latest"],"created":1742816981,
      "config":{"format":"gguf","quantization":"IQ2_XXS/Q4_K_M","parameters":"361.82 M",
                "architecture":"llama","size":"256.35 MiB","gguf":{"llama.context_length":"8192"}}},
     {"id":"sha256:00","created":0,"config":{}}]"""
    first, untagged = mo.parse_models(body)
    assert first == ModelInfo(SMOLLM2_ID, ("ai/smollm2:latest",), "361.82 M", "IQ2_XXS/Q4_K_M", "llama",
                              "256.35 MiB", 8192)
    assert first.name == "smollm2"
    assert untagged == ModelInfo("sha256:00", ()) and untagged.name == "<none>"


def test_status_json_of_a_stopped_embedded_runner(fake_env) -> None:
    """labkit's embedded CLI answers `status --json` with `{"running": false}` and exit 1."""
    cli = ModelCli([sys.executable, "-c", "print('{\"running\": false}'); raise SystemExit(1)"])
    assert cli.status() == mo.ModelStatus(False, detail="Docker Model Runner is not running")


def test_status_failure_that_is_no_answer(fake_env) -> None:
    cli = ModelCli([sys.executable, "-c", "import sys; print('unknown flag: --json', file=sys.stderr); sys.exit(1)"])
    err = caught(cli.status)
    assert err.kind == "command_failed" and err.message.endswith("unknown flag: --json")


def test_fixes_for_the_mode(model_cli: ModelCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded mode gives its own advice for a kind; the message stays the tool's."""
    monkeypatch.setenv("FAKE_FAIL", "dmr_down")
    cli = ModelCli(["docker", "model"], fixes={"dmr_not_running": "labkit up"})
    assert str(caught(cli.ls)).splitlines() == ["Docker Model Runner is not running", "  fix: labkit up"]
