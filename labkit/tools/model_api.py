"""The model API over HTTP (DMR's OpenAI-compatible routes), with DMR's failures told plainly.

DMR answers errors in plain text (`error while getting model: … model not found`), not the
OpenAI JSON an SDK expects, so this client reads the status and body itself and raises a
``ToolError`` that says which model to pull or which port to enable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import httpx

from .. import fixes
from ..errors import ToolError, refix
from ..records import ModelInfo
from ._proc import first_line
from .model_cli import ModelCli
from .model_output import model_from_json, not_pulled

Messages = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ChatResult:
    """A finished chat completion."""

    content: str
    model: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # the response JSON as the server sent it


@dataclass(frozen=True)
class ChatChunk:
    """One streamed delta (`chat.completion.chunk`)."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class ModelApi:
    """DMR's HTTP API at ``base_url`` (e.g. ``http://localhost:12434``).

    ``cli``, when given, is asked why nothing answers (runner stopped, or its TCP port not
    enabled); ``explain``, when given, is asked first and may know more (embedded mode: the
    server died, and how); ``fixes`` (kind -> fix) replaces the live advice, e.g. in embedded
    mode; ``transport`` lets tests answer without a server.
    """

    def __init__(self, base_url: str = "http://localhost:12434", engine: str = "llama.cpp", timeout: float = 300.0,
                 cli: ModelCli | None = None, fixes: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 explain: Callable[[], tuple[str, str] | None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.engine = engine
        self.cli = cli
        self.explain = explain
        self.fixes = dict(fixes or {})
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ModelApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def openai_base(self) -> str:
        """The base URL an OpenAI client uses: ``…/engines/llama.cpp/v1``."""
        return f"{self.base_url}/engines/{self.engine}/v1" if self.engine else f"{self.base_url}/engines/v1"

    def models(self) -> list[ModelInfo]:
        """`GET /models`: the local store, same records as `docker model ls --json`."""
        return [model_from_json(item) for item in self._request("GET", "/models").json()]

    def model_ids(self) -> list[str]:
        """`GET …/v1/models`: the ids an OpenAI client sends (often `docker.io/ai/x:latest`)."""
        return [item["id"] for item in self._request("GET", self._v1("/models")).json().get("data") or ()]

    def model_id_for(self, name: str) -> str | None:
        """`GET …/v1/models/{name}`: the id the server answers to ``name`` with, None when it does not know it."""
        try:
            return str(self._request("GET", self._v1(f"/models/{name}")).json().get("id") or name)
        except ToolError as err:
            if err.kind in ("model_not_pulled", "api_error"):
                return None
            raise

    @overload
    def chat(self, model: str, messages: Messages, stream: Literal[False] = False, **params: Any) -> ChatResult: ...

    @overload
    def chat(self, model: str, messages: Messages, stream: Literal[True], **params: Any) -> Iterator[ChatChunk]: ...

    def chat(self, model: str, messages: Messages, stream: bool = False,
             **params: Any) -> ChatResult | Iterator[ChatChunk]:
        """A chat completion; a plain string is one user message. ``stream=True`` yields deltas."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = {**params, "model": model, "messages": list(messages), "stream": stream}
        if stream:
            return self._stream(model, body)
        data = _json_body(self._request("POST", self._v1("/chat/completions"), model=model, json=body).text)
        choice = (data.get("choices") or [{}])[0]
        return ChatResult(content=(choice.get("message") or {}).get("content") or "", model=data.get("model", ""),
                          finish_reason=choice.get("finish_reason"), usage=data.get("usage") or {}, raw=data)

    def read_chat(self, text: str, allow_fix: str = "") -> dict[str, Any]:
        """The chat completion that `curl` printed, as JSON; else a ToolError saying what came instead.

        For answers read from a command's output (the course's curl from inside a sandbox), where
        a policy refusal, a DMR error or an engine crash would otherwise meet ``json.loads``.
        """
        said = error_message(text) if text.strip() else ""
        if not text.strip():
            raise ToolError("the request printed nothing (curl -s hides why it failed)",
                            "run the same command with curl -sS to see the reason", "api_error")
        if text.lstrip().startswith("Blocked by network policy"):
            raise ToolError(f"the policy proxy blocked the request: {first_line(text)}",
                            allow_fix or fixes.allow_model_port(), "api_error",
                            detail=text)
        if CRASH_MARK in text:
            raise refix(engine_crashed(said, text), self.fixes)
        if "model not found" in text.lower():
            m = re.search(r"""get model '"?(.+?)"?'""", text)
            raise refix(not_pulled(m[1] if m else "?", text, self._known_names()), self.fixes)
        try:
            data = _json_body(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "choices" not in data:
            raise ToolError(f"the answer is not a chat completion: {said[:200]}",
                            "run the command again and read its output above", "api_error", detail=text)
        return data

    # ------------------------------------------------------------ plumbing

    def _known_names(self) -> list[str]:
        """The pulled models' names (for "did you mean"); empty when the server cannot say."""
        try:
            return [tag.removeprefix("docker.io/") for m in self.models() for tag in m.tags]
        except ToolError:
            return []

    def _v1(self, path: str) -> str:
        return self.openai_base.removeprefix(self.base_url) + path

    def _request(self, method: str, path: str, model: str = "", **kwargs: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise refix(self._transport_error(exc, method, path), self.fixes) from None
        if resp.status_code >= 400:
            raise refix(self._http_error(resp, method, path, model), self.fixes)
        return resp

    def _stream(self, model: str, body: dict[str, Any]) -> Iterator[ChatChunk]:
        path = self._v1("/chat/completions")
        try:
            with self._client.stream("POST", self.base_url + path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise refix(self._http_error(resp, "POST", path, model), self.fixes)
                for line in resp.iter_lines():
                    chunk = _sse_chunk(line)
                    if chunk is _DONE:
                        return
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as exc:
            raise refix(self._transport_error(exc, "POST", path), self.fixes) from None

    def _transport_error(self, exc: httpx.HTTPError, method: str, path: str) -> ToolError:
        where = urlsplit(self.base_url).netloc
        if isinstance(exc, httpx.TimeoutException):
            return ToolError(f"the model API at {where} did not answer in time ({method} {path})",
                             f"a first request loads the model: retry; check the runner with: {fixes.DMR_STATUS}",
                             "timeout")
        if isinstance(exc, httpx.ConnectError):
            return self._unreachable(where)
        known = self.explain() if self.explain else None
        if known:  # e.g. "Server disconnected": the server died under the request
            return ToolError(known[0], known[1], "dmr_not_running")
        return ToolError(f"the connection to the model API at {where} failed: {type(exc).__name__}: {exc}",
                         f"retry; check the runner with: {fixes.DMR_STATUS}", "api_error")

    def _unreachable(self, where: str) -> ToolError:
        """Nothing answers: ask `docker model status` whether the runner is up (then TCP is off)."""
        known = self.explain() if self.explain else None
        if known:
            return ToolError(known[0], known[1], "dmr_not_running")
        if self.cli is not None:
            try:
                status = self.cli.status()
            except ToolError as err:
                return err  # e.g. Docker itself is not running: that is the thing to fix
            if status.running:
                return ToolError(f"Docker Model Runner is running, but nothing answers on {where}: "
                                 "its host TCP port is not enabled",
                                 fixes.ENABLE_DMR_TCP_SETTINGS,
                                 "dmr_tcp_disabled")
        return ToolError(f"nothing answers on {where}: Docker Model Runner is not running "
                         "(or its TCP port is not enabled)", fixes.START_DMR, "dmr_not_running")

    def _http_error(self, resp: httpx.Response, method: str, path: str, model: str) -> ToolError:
        text = resp.text.strip()
        said = error_message(text)
        if resp.status_code == 404 and "model not found" in text.lower():
            m = re.search(r"""get model '"?(.+?)"?'""", text)
            return not_pulled(m[1] if m else model or "?", text, self._known_names())
        if resp.status_code == 404:
            return ToolError(f"the model API has no route {method} {path} (HTTP 404: {said})",
                             f"OpenAI-compatible routes live under {self.openai_base}/ (e.g. …/chat/completions)",
                             "api_error", detail=text)
        if resp.status_code == 500 and CRASH_MARK in said:
            return engine_crashed(said, text)
        if resp.status_code == 503:
            return ToolError(f"Docker Model Runner is not running (HTTP 503: {said})", fixes.START_DMR,
                             "dmr_not_running", detail=text)
        m = re.search(r"run: (.+)$", said)
        return ToolError(f"the model API answered HTTP {resp.status_code} to {method} {path}: {said}",
                         m[1] if m else "", "api_error", detail=text)


_DONE = ChatChunk()  # sentinel for `data: [DONE]`
CRASH_MARK = "terminated unexpectedly"  # DMR: "llama.cpp terminated unexpectedly: llama.cpp exit status: …"


def engine_crashed(said: str, raw: str) -> ToolError:
    """DMR's llama.cpp runner died under the request; the server itself is still up."""
    how = said.rpartition("exit status: ")[2] or said
    return ToolError(f"the model's llama.cpp engine crashed while answering ({how}); the model server is still up",
                     fixes.ENGINE_CRASH_LIVE,
                     "engine_crashed", detail=raw)


def _sse_chunk(line: str) -> ChatChunk | None:
    """One SSE line: a chunk, ``_DONE``, or None (blank lines, `Installing … backend...` notices)."""
    line = line.strip()
    if line.startswith("error:") and CRASH_MARK in line:
        raise engine_crashed(error_message(line[6:].strip()), line)
    if line.startswith("error:"):
        raise ToolError(f"the model failed mid-answer: {error_message(line[6:].strip())}", kind="api_error",
                        detail=line)
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    data = json.loads(payload)
    choice = (data.get("choices") or [{}])[0]
    delta = choice.get("delta") or {}
    return ChatChunk(content=delta.get("content") or "", reasoning=delta.get("reasoning_content") or "",
                     finish_reason=choice.get("finish_reason"), usage=data.get("usage"), raw=data)


def _json_body(text: str) -> dict[str, Any]:
    """The JSON answer, after any plain-text `Installing <backend> backend...` lines."""
    start = text.find("{")
    return json.loads(text[start:] if start > 0 else text)


def error_message(text: str) -> str:
    """The message of an error body: DMR's plain text, the `error.message` of a JSON one, or the
    `message` of DMR's own JSON error (``{"type": "error", "message": …}``, e.g. an engine crash)."""
    try:
        data = json.loads(text)
    except ValueError:
        return first_line(text) or "(empty body)"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(data, dict) and data.get("type") == "error" and data.get("message"):
        return str(data["message"])
    return first_line(text)
