"""The embedded Docker Model Runner: DMR's routes, JSON shapes and error bodies, on llama.cpp.

Routes and errors follow docs/sbx-dmr-facts.md §2.3–2.6. ``python -m labkit.dmr.server`` runs it with
uvicorn (``labkit up`` does that in the background); tests and notebooks can also build the
app in-process with ``create_app``. Every response carries ``X-Labkit-Embedded: 1`` so a
probe can tell it from a real DMR on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._core import paths
from ..runtime.probes import EMBEDDED_HEADER
from . import anthropic, catalog, configure, ollama, params, refs, requestlog, responses
from .engine import ContextOverflow, EngineError, Job, LoadError
from .httpio import (
    JobResult,
    JobStream,
    clean_path,
    go_html_escape,
    go_json,
    go_json_response,
    llama_error,
    read_limited,
    text_error,
)
from .inference import BACKENDS, DEFAULT_BACKEND, MAX_BODY, InferenceError, model_not_found, not_installed
from .store import ModelNotFound, Store, StoredModel, StoreError, TagConflict
from .supervisor import Engine, EngineCrashed

log = logging.getLogger("labkit.dmr")

PULL_UPDATE_SECONDS, PULL_UPDATE_BYTES = 0.1, 1 << 20  # DMR's progress reporter thresholds


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Front:
    """Outermost layer: path cleaning, the `/v1/…` aliases, and the embedded-server header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = clean_path(scope["path"])
        if path == "/v1" or path.startswith("/v1/") or path in ("/rerank", "/score"):
            path = "/engines" + path  # DMR's aliases prepend /engines
        # `raw_path` stays as the client sent it (ASGI: "unmodified"): the Responses layer tells
        # `/v1/responses` (every DMR) from `/engines/v1/responses` (newer DMR only) by it.
        scope = {**scope, "path": path}

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (EMBEDDED_HEADER.encode(), b"1")]}
            await send(message)

        await self.app(scope, receive, send_marked)


class _Fixed:
    """An ASGI endpoint that always sends the same response, whatever the method."""

    def __init__(self, response: Response) -> None:
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.response(scope, receive, send)


class ModelServer:
    """The route handlers, over one model store and one engine."""

    def __init__(self, store: Store, engine: Engine, preload: bool = True) -> None:
        self.store, self.engine, self.preload = store, engine, preload
        self._df_backend: int | None = None
        # `docker model configure` settings, persisted next to the store; the engine asks them each job.
        self.configs = configure.RunnerConfigs(store.root / configure.FILENAME)
        engine.context_for = self.configs.context_size

    # -- lifecycle ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.engine.start()
        if self.preload:
            # DMR loads a model on its first request. Embedded mode loads the pulled model
            # right away, in the background, so `labkit up` → first answer stays within 3 s.
            models = self.store.models()
            if models:
                self.engine.preload(models[0], models[0].openai_id)
        yield
        self.engine.stop()

    def routes(self) -> list[Route]:
        get, post, delete = ["GET"], ["POST"], ["DELETE"]
        out = [
            Route("/", _Fixed(Response("Docker Model Runner is running", media_type="text/plain; charset=utf-8"))),
            Route("/version", self.version, methods=get),
            Route("/models", self.list_models, methods=get),
            Route("/models/create", self.pull, methods=post),
            Route("/models/{name:path}", self.get_model, methods=get),
            Route("/models/{name:path}", self.delete_model, methods=delete),
            Route("/models/{rest:path}", _Fixed(text_error("not found", 404))),
            Route("/engines/status", self.status, methods=get),
            Route("/engines/ps", self.ps, methods=get),
            Route("/engines/df", self.df, methods=get),
            Route("/engines/unload", self.unload, methods=post),
            Route("/engines/v1/models", self.openai_models, methods=get),
            Route("/engines/v1/models/{name:path}", self.openai_model, methods=get),
            Route("/engines/{backend}/v1/models", self.openai_models, methods=get),
            Route("/engines/{backend}/v1/models/{name:path}", self.openai_model, methods=get),
        ]
        for prefix in ("/engines/v1", "/engines/{backend}/v1"):
            out += [
                Route(f"{prefix}/chat/completions", self.chat, methods=post),
                Route(f"{prefix}/completions", self.completions, methods=post),
                Route(f"{prefix}/embeddings", self.embeddings, methods=post),
            ]
        # The agent-facing APIs, each a translator onto `chat_chunks` below (docs/dmr-agent-apis.md).
        for api in (responses, anthropic, ollama, requestlog, configure):
            out += api.routes(self)
        # Catch-alls answer every method (a function endpoint would only take GET).
        out += [Route("/engines/{rest:path}", _Fixed(text_error("not found", 404))),
                Route("/{rest:path}", _Fixed(text_error("404 page not found", 404)))]
        return out

    # -- info --------------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        return go_json_response({"version": f"labkit-embedded {_version('labkit')}"})

    async def status(self, request: Request) -> Response:
        state, detail = self.engine.state()
        if state == "Running":
            detail = f"llama.cpp via llama-cpp-python {_version('llama-cpp-python')} (labkit embedded; {detail})"
        body = {b: f"{state}: {detail}" if b == DEFAULT_BACKEND else "Not Installed: not available in embedded mode"
                for b in BACKENDS}
        return go_json_response(body)

    async def ps(self, request: Request) -> Response:
        return go_json_response(self.engine.runners())

    async def df(self, request: Request) -> Response:
        if self._df_backend is None:
            self._df_backend = await asyncio.to_thread(_package_size, "llama_cpp")
        return go_json_response(
            {"models_disk_usage": self.store.disk_usage(), "default_backend_disk_usage": self._df_backend}
        )

    async def unload(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return text_error("invalid request", 400)
        if body.get("all"):
            ids = None
        else:
            ids = set()
            for ref in body.get("models") or []:
                with contextlib.suppress(StoreError):
                    ids.add(self.store.get(str(ref)).id)
        return go_json_response({"unloaded_runners": await self.engine.unload(ids)})

    # -- the model store ---------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        return go_json_response([m.api() for m in self.store.models()])

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            model = self.store.get(name)
        except ModelNotFound:
            found = self.store.find_by_name(name)  # DMR's partial-name fallback
            if found is None:
                return text_error("model not found", 404)
            model = found
        return go_json_response(model.api())

    async def delete_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        force = request.query_params.get("force", "").lower() in ("1", "t", "true")
        try:
            before = {m.id for m in self.store.models()}
            actions = self.store.delete(name, force)
        except (ModelNotFound, TagConflict) as exc:
            return text_error(f"error while deleting model: {exc}", 409 if isinstance(exc, TagConflict) else 404)
        gone = before - {m.id for m in self.store.models()}
        if gone:
            self.engine.forget(gone)
        return go_json_response(actions)

    async def pull(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            reference = body.get("from", "") if isinstance(body, dict) else None
            if not isinstance(reference, str):
                raise ValueError
        except ValueError:
            return text_error("invalid request body", 400)
        if not refs.is_valid(reference):
            return text_error("Invalid model reference", 400)
        shipped = catalog.find(reference)
        if shipped is None:
            log.info("pull %s: not a shipped model", reference)
            return text_error("Model not found", 404)
        as_json = "application/json" in request.headers.get("accept", "")
        return StreamingResponse(
            self._pull_lines(reference, shipped, as_json),
            media_type="application/json" if as_json else "text/plain; charset=utf-8",
        )

    async def _pull_lines(self, reference: str, shipped: catalog.ShippedModel, as_json: bool) -> AsyncIterator[str]:
        """DMR's progress stream: one JSON message per line (HTML-escaped unless JSON was asked)."""
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        last = {"t": 0.0, "bytes": 0}

        def progress(done: int, total: int) -> None:
            now = loop.time()
            if now - last["t"] >= PULL_UPDATE_SECONDS or done - last["bytes"] >= PULL_UPDATE_BYTES or done == total:
                last.update(t=now, bytes=done)
                loop.call_soon_threadsafe(updates.put_nowait, (done, total))

        def line(message: dict[str, Any]) -> str:
            text = go_json({**message, "mode": "pull"}).rstrip("\n")
            return (text if as_json else go_html_escape(text)) + "\n"

        task = asyncio.ensure_future(asyncio.to_thread(self.store.pull, reference, progress))
        while not (task.done() and updates.empty()):
            getter = asyncio.ensure_future(updates.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            done, total = getter.result()
            # The layer id is the file's digest, known only once it is read: empty until then.
            yield line({
                "type": "progress", "message": f"Verified: {done / 1048576:.2f} MB from package {shipped.distribution}",
                "total": total, "layer": {"id": "", "size": total, "current": done},
            })
        try:
            model, cached = task.result()
        except (StoreError, OSError) as exc:
            yield line({"type": "error", "message": f"Error: {exc}"})
            return
        message = f"Using cached model: {model.config.get('size', '')}" if cached else "Model pulled successfully"
        log.info("pull %s: %s (%s)", reference, message, model.id)
        if self.preload and not self.engine.loaded_names():
            self.engine.preload(model, refs.normalize(reference))
        yield line({"type": "success", "message": message})

    # -- OpenAI-compatible -------------------------------------------------------------------

    async def openai_models(self, request: Request) -> Response:
        # DMR does not validate {backend} here: any value lists the models.
        return go_json_response({"object": "list", "data": [m.openai() for m in self.store.models()]})

    async def openai_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            return go_json_response(self.store.get(name).openai())
        except ModelNotFound:
            return text_error(model_not_found(name), 404)

    async def chat(self, request: Request) -> Response | JobStream | JobResult:
        return await self._infer(request, "chat")

    async def completions(self, request: Request) -> Response | JobStream | JobResult:
        return await self._infer(request, "completion")

    async def embeddings(self, request: Request) -> Response | JobStream | JobResult:
        return await self._infer(request, "embedding")

    async def _infer(self, request: Request, kind: str) -> Response | JobStream | JobResult:
        """DMR's scheduler checks, in its order, then a job on the engine."""
        backend = request.path_params.get("backend", DEFAULT_BACKEND)
        if backend not in BACKENDS:
            return text_error("backend not found", 404)
        raw = await read_limited(request, MAX_BODY)
        if raw is None:
            return text_error("request too large", 400)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return text_error("invalid request", 400)
        body = {} if body is None else body  # Go decodes `null` into an empty request
        if not isinstance(body, dict) or not isinstance(body.get("model", ""), str):
            return text_error("invalid request", 400)
        model_ref: str = body.get("model", "")
        if not model_ref:
            return text_error("model is required", 400)
        try:
            model = self.store.get(model_ref)
        except ModelNotFound:
            return text_error(model_not_found(model_ref), 404)
        except StoreError:
            return text_error("model unavailable", 500)
        if backend != DEFAULT_BACKEND:
            return text_error(not_installed(backend), 412)
        try:
            return self._job_response(kind, model, model_ref, body)
        except params.BadParam as exc:
            return llama_error(str(exc))

    async def chat_chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The one way in for the translating APIs (Responses, Anthropic, Ollama): an OpenAI chat body in,
        OpenAI ``chat.completion.chunk`` dicts out, then one last chunk with ``choices: []`` and ``usage``.

        Raises ``InferenceError`` for everything a translator must answer in its own envelope: no
        model, model not found, a bad field, the engine crashing or failing to load. Leaving the
        iteration early (the client went away) cancels the generation.
        """
        model_ref = body.get("model")
        if not isinstance(model_ref, str) or not model_ref:
            raise InferenceError(400, "model is required", "invalid_request")
        try:
            model = self.store.get(model_ref)
        except ModelNotFound:
            raise InferenceError(404, model_not_found(model_ref), "not_found") from None
        except StoreError:
            raise InferenceError(500, "model unavailable", "server_error") from None
        try:
            args, _ = params.chat({**body, "stream": True}, model_ref)
        except params.BadParam as exc:
            raise InferenceError(400, str(exc), "invalid_request") from None
        job = Job("chat", model, model_ref, args)
        last: dict[str, Any] | None = None
        try:
            async for chunk in self.engine.run(job):
                last = chunk
                yield chunk
        except ContextOverflow as exc:  # llama-server's own 400, passed on as it is
            raise InferenceError(400, str(exc), "exceed_context_size_error", body=exc.body()) from None
        except EngineError as exc:  # a crash, a load failure, anything else the engine said
            raise InferenceError(500, str(exc), "server_error") from None
        except ValueError as exc:  # llama.cpp refused the request (e.g. a JSON schema it cannot use)
            raise InferenceError(400, str(exc), "invalid_request") from None
        empty = {"id": "chatcmpl-empty", "object": "chat.completion.chunk", "created": 0}
        yield _usage_tail(job, last or empty, model_ref)[0]

    async def count_tokens(self, model_ref: str, *, messages: list[dict[str, Any]] | None = None,
                           text: str | None = None, tools: list[dict[str, Any]] | None = None) -> int:
        """Tokens of chat ``messages`` (rendered by the model's chat template) or of ``text``, by the
        model's own tokenizer. Raises ``InferenceError`` like ``chat_chunks``."""
        try:
            model = self.store.get(model_ref)
        except ModelNotFound:
            raise InferenceError(404, model_not_found(model_ref), "not_found") from None
        job_params: dict[str, Any] = {"messages": messages, "tools": tools} if messages is not None else {"text": text}
        try:
            counts = [n async for n in self.engine.run(Job("tokenize", model, model_ref, job_params))]
        except (EngineCrashed, LoadError) as exc:
            raise InferenceError(500, str(exc), "server_error") from None
        return int(counts[0])

    def _job_response(self, kind: str, model: StoredModel, name: str, body: dict[str, Any]) -> JobStream | JobResult:
        if kind == "embedding":
            job = Job("embedding", model, name, {"input": params.embedding(body)})
            return JobResult(self.engine, job, lambda items: items[0])
        # The response's `model` echoes the request's (llama-server does; DMR passes it on: UNCONFIRMED).
        args, options = (params.chat if kind == "chat" else params.completion)(body, name)
        job = Job("chat" if kind == "chat" else "completion", model, name, args)
        if options.stream:
            tail = (lambda last: _usage_tail(job, last, name)) if options.include_usage else None
            return JobStream(self.engine, job, tail)
        return JobResult(self.engine, job, lambda chunks: _assemble(job, kind, name, chunks))


def _usage_tail(job: Job, last: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """The extra last chunk OpenAI sends with ``stream_options.include_usage`` (empty choices).

    Whether llama.cpp behind DMR sends usage in a stream *without* that option is UNCONFIRMED
    (docs/sbx-dmr-facts.md §2.2, `run`); we follow the documented OpenAI behaviour: only when asked.
    """
    if last is None:
        return []
    return [{"id": last["id"], "object": last["object"], "created": last["created"], "model": name,
             "choices": [], "usage": job.tally.usage(), "timings": job.tally.timings()}]


def _assemble(job: Job, kind: str, name: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A non-streaming answer from the streamed chunks (so cancellation works the same way)."""
    first = chunks[0] if chunks else {"id": "chatcmpl-empty" if kind == "chat" else "cmpl-empty", "created": 0}
    finish = next((c["choices"][0].get("finish_reason") for c in reversed(chunks)
                   if c.get("choices") and c["choices"][0].get("finish_reason")), "stop")
    if kind == "chat":
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        calls = [call for c in chunks if c.get("choices") for call in c["choices"][0]["delta"].get("tool_calls") or []]
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:  # OpenAI's shape: content null unless the model also wrote text
            message = {"role": "assistant", "content": text or None, "tool_calls": _merge_calls(calls)}
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion"
    else:
        text = "".join(c["choices"][0].get("text") or "" for c in chunks if c.get("choices"))
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {"id": first["id"], "object": obj, "created": first["created"], "model": name, "choices": [choice],
            "usage": job.tally.usage(), "timings": job.tally.timings()}


def _merge_calls(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole tool calls from streamed ``delta.tool_calls`` pieces (joined by ``index``)."""
    calls: dict[int, dict[str, Any]] = {}
    for piece in deltas:
        call = calls.setdefault(piece.get("index", 0), {"id": "", "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
        call["id"] = piece.get("id") or call["id"]
        function = piece.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def _package_size(package: str) -> int:
    """Bytes on disk of an installed package (the inference engine, for `docker model df`)."""
    spec = importlib.util.find_spec(package)
    total = 0
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for root, _, files in os.walk(folder):
            total += sum((Path(root) / f).stat().st_size for f in files)
    return total


def create_app(store: Store | None = None, engine: Engine | None = None, preload: bool = True) -> ASGIApp:
    """The embedded DMR as an ASGI app (the engine's worker starts with the app's lifespan)."""
    server = ModelServer(store or Store(), engine or Engine(), preload)
    return Front(requestlog.Recorder(Starlette(routes=server.routes(), lifespan=server.lifespan), server))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.dmr.server",
                                     description="labkit's embedded Docker Model Runner (foreground).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=paths.dmr_port())
    args = parser.parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    from labkit._core.daemon import exit_when_folder_gone

    exit_when_folder_gone(paths.home())

    try:
        app = create_app()
    except responses.CompatError as exc:
        print(f"labkit's model server: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            server_header=False, timeout_graceful_shutdown=3, lifespan="on")
    log.info("embedded Docker Model Runner on http://%s:%d, store %s", args.host, args.port, paths.state_dir("models"))
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
