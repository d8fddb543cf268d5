"""The model API client against a DMR stand-in that answers with the reference's shapes and plain-text errors."""

from __future__ import annotations

import json

import httpx
import pytest

from labkit.errors import ToolError
from labkit.records import ModelInfo
from labkit.tools.model_api import ChatResult, ModelApi
from labkit.tools.model_cli import ModelCli
from tests.support import free_port

pytestmark = [pytest.mark.timeout(30), pytest.mark.fast]

TAG = "docker.io/ai/smollm2:360M-Q4_K_M"
STORE = [{"id": "sha256:354bf30d0aa3af413d2aa5ae4f23c66d78980072d1e07a5b0d776e9606a2f0b9", "tags": [TAG],
          "created": 1742816981, "config": {"format": "gguf", "quantization": "IQ2_XXS/Q4_K_M",
                                            "parameters": "361.82 M", "architecture": "llama", "size": "256.35 MiB",
                                            "context_size": 8192}}]
KNOWN = {TAG, "ai/smollm2:360M-Q4_K_M", "smollm2:360M-Q4_K_M"}  # DMR accepts every spelling (reference §2.1)
PLAIN = {"content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff"}


def sse(*events: dict | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def chunk(content: str = "", finish: str | None = None, **extra) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content} if content
                                                            else {}, "finish_reason": finish}], **extra}


class Dmr:
    """Routes and bodies as reference §2.3–2.6 give them; records the requests it got."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == "/models":
            return httpx.Response(200, json=STORE)
        if request.method == "GET" and path in ("/engines/v1/models", "/engines/llama.cpp/v1/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": TAG, "object": "model", "created": 1742816981, "owned_by": "docker"}]})
        if request.method == "POST" and path in ("/engines/v1/chat/completions",
                                                 "/engines/llama.cpp/v1/chat/completions"):
            return self.chat(json.loads(request.content))
        if path.startswith(("/engines/", "/models/")):
            return httpx.Response(404, text="not found\n", headers=PLAIN)
        return httpx.Response(404, text="404 page not found\n", headers=PLAIN)

    def chat(self, body: dict) -> httpx.Response:
        model = body["model"]
        if model == "ai/broken":
            died = b'error: {"error":{"message":"the engine died"}}\n\n'
            return httpx.Response(200, content=sse(chunk("Hel")) + died)
        if model not in KNOWN:
            return httpx.Response(404, text=f"error while getting model: get model '\"{model}\"': model not found\n",
                                  headers=PLAIN)
        if body.get("stream"):  # llama.cpp's SSE, after a deferred-install notice
            usage = {"prompt_tokens": 24, "completion_tokens": 5, "total_tokens": 29}
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=(
                b"Installing llama.cpp backend...\n" + sse(chunk("sbx to "), chunk("DMR works"),
                                                           chunk(finish="stop", usage=usage), "[DONE]")))
        return httpx.Response(200, json={
            "id": "chat-12345", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "sbx to DMR works"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 24, "completion_tokens": 16, "total_tokens": 40}})


@pytest.fixture
def dmr() -> Dmr:
    return Dmr()


@pytest.fixture
def api(dmr: Dmr) -> ModelApi:
    return ModelApi("http://dmr.test:12434", transport=httpx.MockTransport(dmr))


def caught(call) -> ToolError:
    with pytest.raises(ToolError) as info:
        call()
    return info.value


def test_models_and_ids(api: ModelApi) -> None:
    assert api.models() == [ModelInfo(STORE[0]["id"], (TAG,), "361.82 M", "IQ2_XXS/Q4_K_M", "llama", "256.35 MiB",
                                      8192)]
    assert api.model_ids() == [TAG]
    assert api.openai_base == "http://dmr.test:12434/engines/llama.cpp/v1"


def test_chat(api: ModelApi, dmr: Dmr) -> None:
    result = api.chat("ai/smollm2:360M-Q4_K_M", "Reply with exactly: sbx to DMR works", max_tokens=20)
    assert isinstance(result, ChatResult)
    assert (result.content, result.finish_reason, result.usage["total_tokens"]) == ("sbx to DMR works", "stop", 40)
    sent = json.loads(dmr.requests[-1].content)
    assert dmr.requests[-1].url.path == "/engines/llama.cpp/v1/chat/completions"
    assert sent == {"max_tokens": 20, "model": "ai/smollm2:360M-Q4_K_M", "stream": False,
                    "messages": [{"role": "user", "content": "Reply with exactly: sbx to DMR works"}]}


def test_chat_stream(api: ModelApi) -> None:
    chunks = list(api.chat(TAG, [{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.content for c in chunks) == "sbx to DMR works"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == {"prompt_tokens": 24, "completion_tokens": 5,
                                                                       "total_tokens": 29}


def test_engine_less_route(dmr: Dmr) -> None:
    api = ModelApi("http://dmr.test:12434", engine="", transport=httpx.MockTransport(dmr))
    assert api.chat(TAG, "hi").content == "sbx to DMR works"
    assert dmr.requests[-1].url.path == "/engines/v1/chat/completions"


@pytest.mark.parametrize("stream", [False, True])
def test_model_not_pulled_is_told_with_the_pull_command(api: ModelApi, stream: bool) -> None:
    err = caught(lambda: list(api.chat("ai/qwen3:8B-Q4_K_M", "hi", stream=True)) if stream
                 else api.chat("ai/qwen3:8B-Q4_K_M", "hi"))
    assert err.kind == "model_not_pulled"
    assert str(err).splitlines() == [
        "the model 'ai/qwen3:8B-Q4_K_M' is not pulled (it is not in Docker Model Runner's local store)",
        "  fix: docker model pull ai/qwen3:8B-Q4_K_M   (pulled ids, verbatim: docker model ls)"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_typo_gets_the_closest_pulled_name_not_the_same_typo(api: ModelApi, stream: bool) -> None:
    typo = "ai/smolm2:360M-Q4_K_M"
    err = caught(lambda: list(api.chat(typo, "hi", stream=True)) if stream else api.chat(typo, "hi"))
    assert err.kind == "model_not_pulled"
    assert str(err).splitlines() == [
        "the model 'ai/smolm2:360M-Q4_K_M' is not pulled; did you mean 'ai/smollm2:360M-Q4_K_M'?",
        "  fix: use the name verbatim: ai/smollm2:360M-Q4_K_M   (pulled names: docker model ls)"]


def test_wrong_route(dmr: Dmr) -> None:
    api = ModelApi("http://dmr.test:12434/api", transport=httpx.MockTransport(dmr))
    err = caught(api.models)
    assert err.kind == "api_error"
    assert "404 page not found" in err.message and "/engines/llama.cpp/v1/" in err.fix


def test_mid_stream_error(api: ModelApi) -> None:
    stream = api.chat("ai/broken", "hi", stream=True)
    assert next(stream).content == "Hel"
    err = caught(lambda: next(stream))
    assert err.kind == "api_error" and "the engine died" in err.message


@pytest.mark.parametrize(("status", "body", "kind", "fix"), [
    (503, "Service Unavailable\n", "dmr_not_running", "docker desktop enable model-runner --tcp 12434"),
    (412, 'backend "vllm" is not installed; run: docker model install-runner --backend vllm\n', "api_error",
     "docker model install-runner --backend vllm"),
    (400, '{"error":{"code":"invalid_request","message":"input is required"}}', "api_error", ""),
])
def test_other_http_errors(status: int, body: str, kind: str, fix: str) -> None:
    api = ModelApi("http://dmr.test:12434", transport=httpx.MockTransport(lambda r: httpx.Response(status, text=body)))
    err = caught(lambda: api.chat(TAG, "hi"))
    assert (err.kind, err.fix.split("   ")[0]) == (kind, fix)
    assert str(status) in err.message and len(str(err).splitlines()) <= 2
    if status == 400:
        assert err.message.endswith("input is required")


def test_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    err = caught(ModelApi("http://dmr.test:12434", transport=httpx.MockTransport(slow)).model_ids)
    assert err.kind == "timeout"


@pytest.mark.parametrize(("fail", "kind"), [("", "dmr_tcp_disabled"), ("dmr_tcp_disabled", "dmr_tcp_disabled"),
                                            ("dmr_down", "dmr_not_running"), ("daemon_down", "daemon_not_running")])
def test_nothing_answers_asks_the_cli_why(fake_env, monkeypatch: pytest.MonkeyPatch, fail: str, kind: str) -> None:
    """A refused connection: the runner is up (so its TCP port is off), or down, or Docker itself is."""
    monkeypatch.setenv("FAKE_FAIL", fail)
    port = free_port()
    with ModelApi(f"http://127.0.0.1:{port}", cli=ModelCli(["docker", "model"])) as api:
        err = caught(api.model_ids)
    assert err.kind == kind
    assert len(str(err).splitlines()) == 2
    if kind == "dmr_tcp_disabled":
        assert f"127.0.0.1:{port}" in err.message and "--tcp 12434" in err.fix


def test_nothing_answers_without_a_cli() -> None:
    with ModelApi(f"http://127.0.0.1:{free_port()}") as api:
        err = caught(lambda: api.chat(TAG, "hi"))
    assert err.kind == "dmr_not_running"


def test_fixes_for_the_mode() -> None:
    with ModelApi(f"http://127.0.0.1:{free_port()}", fixes={"dmr_not_running": "labkit up"}) as api:
        assert caught(api.models).fix == "labkit up"


CRASH = ('{"type":"error","code":null,"message":"llama.cpp terminated unexpectedly: llama.cpp exit status: '
         'signal: segmentation fault","param":null,"sequence_number":1}\n')


def test_dmrs_500_for_a_crashed_runner_is_named_as_such() -> None:
    """DMR's body when its llama.cpp runner dies under a request (scheduling/runner.go)."""
    api = ModelApi("http://dmr.test:12434", transport=httpx.MockTransport(
        lambda r: httpx.Response(500, text=CRASH, headers={"content-type": "application/json; charset=utf-8"})))
    for call in (lambda: api.chat(TAG, "hi"), lambda: next(api.chat(TAG, "hi", stream=True))):
        err = caught(call)
        assert err.kind == "engine_crashed"
        assert err.message == ("the model's llama.cpp engine crashed while answering (signal: segmentation fault); "
                               "the model server is still up")
        assert err.fix.startswith("send the request again") and len(str(err).splitlines()) == 2


@pytest.mark.parametrize(("printed", "kind", "says"), [
    ("", "api_error", "printed nothing"),
    ("Blocked by network policy: localhost:12434\n  detail: no matching allow rule — blocked by default deny policy\n",
     "api_error", "the policy proxy blocked the request: Blocked by network policy: localhost:12434"),
    (CRASH, "engine_crashed", "signal: segmentation fault"),
    (f"""error while getting model: get model '"{TAG}"': model not found\n""", "model_not_pulled", TAG),
    ("<html>502</html>", "api_error", "not a chat completion"),
])
def test_read_chat_says_what_came_instead_of_an_answer(printed: str, kind: str, says: str) -> None:
    api = ModelApi("http://dmr.test:12434", fixes={"engine_crashed": "labkit's fix"})
    err = caught(lambda: api.read_chat(printed, allow_fix="sbx policy allow network localhost:12434"))
    assert err.kind == kind and says in err.message, err
    assert len(str(err).splitlines()) == 2
    if kind == "engine_crashed":
        assert err.fix == "labkit's fix"
    if "blocked" in says:
        assert err.fix == "sbx policy allow network localhost:12434"


def test_read_chat_returns_the_answer() -> None:
    answer = {"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    assert ModelApi("http://dmr.test:12434").read_chat(json.dumps(answer)) == answer
