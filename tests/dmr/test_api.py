"""DMR's routes, JSON shapes and exact plain-text error bodies (reference §2.3–2.5), over real HTTP."""

from __future__ import annotations

import contextlib
import io

import httpx
import openai
import pytest

from labkit.dmr import cli
from labkit.runtime.probes import probe_dmr

from .conftest import REF, TAG, Session

TEXT = "text/plain; charset=utf-8"
NOT_FOUND_BODY = "error while getting model: get model '\"{}\"': model not found\n"


def assert_go_error(resp: httpx.Response, status: int, body: str) -> None:
    """Go's http.Error: status, text/plain, nosniff, body plus newline, our marker header."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == TEXT
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.text == body
    assert resp.headers["x-labkit-embedded"] == "1"


def test_a_pull_into_an_empty_store_prints_progress_then_success(pulled: Session) -> None:
    # other test folders share this LABKIT_HOME and may have pulled first: empty the store here
    with contextlib.redirect_stdout(io.StringIO()):
        for model in httpx.get(pulled.base_url + "/models").json():
            assert cli.main(["rm", model["id"]]) == 0
    assert httpx.get(pulled.base_url + "/models").json() == []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["pull", REF]) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == "Model pulled successfully"
    progress = [line for line in lines if line.startswith("Downloaded ")]
    assert len(progress) >= 2 and progress[-1] == "Downloaded 98.36MB of 98.36MB"


def test_root_and_probe(http: httpx.Client) -> None:
    resp = http.get("/")
    assert resp.status_code == 200 and resp.text == "Docker Model Runner is running"
    probe = probe_dmr(int(http.base_url.port or 0))
    assert probe.answering and probe.embedded and not probe.real
    assert TAG in probe.models


def test_models_listing_shape(http: httpx.Client, pulled: Session) -> None:
    resp = http.get("/models")
    assert resp.headers["content-type"] == "application/json"
    (model,) = resp.json()
    assert list(model) == ["id", "tags", "created", "config"]
    assert model["id"].startswith("sha256:") and len(model["id"]) == 71
    assert model["tags"] == [TAG]
    config = model["config"]
    assert config["format"] == "gguf"
    assert (config["quantization"], config["parameters"], config["architecture"]) == ("Q4_1", "134.52M", "llama")
    assert config["size"] == "92.10MiB" and config["context_size"] == 8192
    assert config["gguf"]["llama.context_length"] == "8192"
    assert config["gguf"]["general.size_label"] == "135M"
    assert "tokenizer.ggml.tokens" not in config["gguf"]  # arrays over 50 items are left out, as DMR does


def test_model_id_is_the_file_digest(http: httpx.Client, pulled: Session) -> None:
    import hashlib

    from labkit.dmr import catalog

    path = catalog.SHIPPED[0].locate()
    assert path is not None
    assert http.get("/models").json()[0]["id"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_metadata_agrees_with_llama_cpp(http: httpx.Client) -> None:
    """The config is read from the file: llama.cpp's own count of parameters agrees."""
    import llama_cpp

    from labkit.dmr import catalog, ggufmeta

    llm = llama_cpp.Llama(model_path=str(catalog.SHIPPED[0].locate()), vocab_only=True, verbose=False)
    try:
        n_params = llama_cpp.llama_model_n_params(llm.model)
        assert ggufmeta.format_parameters(n_params) == http.get("/models").json()[0]["config"]["parameters"]
        assert int(llm.metadata["llama.context_length"]) == 8192
    finally:
        llm.close()


@pytest.mark.parametrize("path", ["/engines/v1/models", "/engines/llama.cpp/v1/models", "/v1/models",
                                  "/engines/anything/v1/models", "//engines//v1/models"])
def test_openai_listing(http: httpx.Client, path: str) -> None:
    body = http.get(path).json()
    assert body["object"] == "list"
    (item,) = body["data"]
    assert item["id"] == TAG and item["object"] == "model" and item["owned_by"] == "docker"
    assert isinstance(item["created"], int) and item["created"] > 0
    assert item["dmr"] == {"context_window": 8192, "architecture": "llama", "parameters": "134.52M",
                           "quantization": "Q4_1", "size": "92.10MiB"}


def test_every_spelling_finds_the_model(http: httpx.Client) -> None:
    model_id = http.get("/models").json()[0]["id"]
    spellings = [REF, TAG, "ai/smollm2:135M-Q4_1", "docker.io/ai/smollm2:135M-Q4_1", model_id,
                 model_id[7:19], model_id[7:]]
    for ref in spellings:
        assert http.get(f"/models/{ref}").json()["id"] == model_id, ref
        assert http.get(f"/engines/v1/models/{ref}").json()["id"] == TAG, ref
    # GET /models/{ref} falls back to the name part; `smollm2` means `:latest` elsewhere.
    assert http.get("/models/smollm2").json()["id"] == model_id
    assert_go_error(http.get("/engines/v1/models/smollm2"), 404, NOT_FOUND_BODY.format("smollm2"))


def test_engine_info_routes(http: httpx.Client) -> None:
    status = http.get("/engines/status").json()
    assert status["llama.cpp"].startswith("Running: llama.cpp")
    assert status["vllm"].startswith("Not Installed")
    df = http.get("/engines/df").json()
    assert df["models_disk_usage"] == 98359552 or df["models_disk_usage"] > 90_000_000
    assert df["default_backend_disk_usage"] > 1_000_000
    runners = http.get("/engines/ps").json()
    assert isinstance(runners, list)
    for runner in runners:
        assert runner["backend_name"] == "llama.cpp" and runner["keep_alive"] == "-1"


def test_marker_header_on_every_response(http: httpx.Client) -> None:
    for method, path in (("GET", "/"), ("GET", "/models"), ("GET", "/nope"), ("POST", "/engines/v1/x"),
                         ("GET", "/engines/ps"), ("DELETE", "/models/nope")):
        assert http.request(method, path).headers["x-labkit-embedded"] == "1", path


# -- errors, exactly as DMR ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["chat/completions", "completions", "embeddings"])
def test_unknown_model(http: httpx.Client, route: str) -> None:
    resp = http.post(f"/engines/llama.cpp/v1/{route}", json={"model": "ai/gemma3", "prompt": "x", "input": "x"})
    assert_go_error(resp, 404, NOT_FOUND_BODY.format("ai/gemma3"))


def test_openai_sdk_raises_not_found_with_dmr_text(pulled: Session) -> None:
    client = openai.OpenAI(base_url=pulled.base_url + "/engines/v1", api_key="unused")
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.response.text == NOT_FOUND_BODY.format("smollm2")
    # A plain-text body, not OpenAI JSON: the SDK keeps it in `.body`, its message shows only the code.
    assert caught.value.body == NOT_FOUND_BODY.format("smollm2").strip()
    assert str(caught.value) == "Error code: 404"


def test_request_errors(http: httpx.Client) -> None:
    url = "/engines/llama.cpp/v1/chat/completions"
    assert_go_error(http.post(url, content=b"{not json"), 400, "invalid request\n")
    assert_go_error(http.post(url, content=b"[1, 2]"), 400, "invalid request\n")
    assert_go_error(http.post(url, json={"messages": []}), 400, "model is required\n")
    assert_go_error(http.post(url, content=b"null"), 400, "model is required\n")
    big = b'{"model": "' + REF.encode() + b'", "pad": "' + b"x" * (10 << 20) + b'"}'
    assert_go_error(http.post(url, content=big), 400, "request too large\n")
    assert_go_error(http.post("/engines/nope/v1/chat/completions", json={"model": REF}), 404, "backend not found\n")
    assert_go_error(http.post("/engines/vllm/v1/chat/completions", json={"model": REF}), 412,
                    'backend "vllm" is not installed; run: docker model install-runner --backend vllm\n')


def test_path_errors(http: httpx.Client) -> None:
    assert_go_error(http.get("/engines/v1/chat/completions"), 404, "not found\n")  # wrong method
    assert_go_error(http.get("/engines/unknown"), 404, "not found\n")
    assert_go_error(http.get("/v1/unknown"), 404, "not found\n")  # alias of /engines/v1/unknown
    assert_go_error(http.put("/models/x"), 404, "not found\n")
    assert_go_error(http.get("/unknown"), 404, "404 page not found\n")
    assert_go_error(http.get("/models/ai/gemma3"), 404, "model not found\n")
    assert_go_error(http.delete("/models/ai/gemma3"), 404, "error while deleting model: model not found\n")


def test_pull_errors(http: httpx.Client) -> None:
    assert_go_error(http.post("/models/create", content=b"nope"), 400, "invalid request body\n")
    assert_go_error(http.post("/models/create", json={"from": "Bad Name!"}), 400, "Invalid model reference\n")
    assert_go_error(http.post("/models/create", json={"from": "ai/gemma3"}), 404, "Model not found\n")


def test_llama_server_style_parameter_errors(http: httpx.Client) -> None:
    url = "/engines/v1/chat/completions"
    resp = http.post(url, json={"model": REF, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
    assert resp.status_code == 400
    assert resp.json()["error"] == {"code": 400, "message": "'temperature' must be a number",
                                    "type": "invalid_request_error"}
    assert http.post(url, json={"model": REF, "messages": "hi"}).status_code == 400
    with pytest.raises(openai.BadRequestError):
        openai.OpenAI(base_url=str(http.base_url) + "/v1", api_key="x").chat.completions.create(
            model=REF, messages=[{"role": "user", "content": "hi"}], n=2)
