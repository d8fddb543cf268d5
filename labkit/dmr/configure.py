"""`docker model configure`: per-model runner settings, above all the context size the engine uses.

DMR's routes and JSON (pkg/inference/scheduling/http_handler.go ``Configure``/``GetModelConfigs``,
api.go ``ConfigureRequest``/``ModelConfigEntry``, backend.go ``BackendConfiguration``):

* ``POST /engines/_configure`` and ``POST /engines/{backend}/_configure`` take
  ``{"model": "ai/smollm2", "context-size": 4096, "mode": "completion", "runtime-flags": [...],
  "raw-runtime-flags": "...", "speculative": {...}, "keep_alive": "5m", "vllm": {...}, "llamacpp": {...}}``
  and answer **202** with an empty body; a body that does not decode is 400 ``invalid request``,
  an unknown backend 404 ``backend not found``. Each call *replaces* the model's whole config.
* ``GET /engines/_configure[?model=M]`` answers a JSON list of
  ``{"Backend": "llama.cpp", "Model": "<first tag>", "ModelID": "sha256:…", "Mode": "completion",
  "Config": {"context-size": 4096, …}}`` (Go field names: the struct has no JSON tags; ``Config``
  fields are ``omitempty``); models no longer in the store are left out, as DMR does.

Embedded mode applies ``context-size`` (>0 tokens; -1 the model's trained context; 0 and other
negatives are ignored as DMR's ``GetContextSize`` does) and reloads a loaded runner when it changes.
Jobs run one at a time, so DMR's 409 ``runner already active`` never happens: the next job
after the change loads the model again. ``keep_alive``, ``speculative`` and ``llamacpp`` are
stored and shown but not applied (embedded runners stay loaded); runtime flags are refused,
since there is no llama-server command line to pass them to. The settings are kept in
``runner-configs.json`` next to the store's index, so they survive `labkit down`/`up`
(DMR keeps them in memory only: UNCONFIRMED whether Desktop persists them).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .httpio import go_json_response, read_limited, text_error
from .inference import BACKENDS, DEFAULT_BACKEND, MAX_BODY
from .store import StoreError

if TYPE_CHECKING:
    from .server import ModelServer

log = logging.getLogger("labkit.dmr")

FILENAME = "runner-configs.json"
MODES = ("completion", "embedding", "reranking", "image-generation")
INT32 = (-(1 << 31), (1 << 31) - 1)


class BadRequest(ValueError):
    """The body does not decode into DMR's ``ConfigureRequest`` (Go: 400 ``invalid request``)."""


class Refused(ValueError):
    """``ConfigureRunner`` refused the settings (Go: 500 with the message)."""


# -- Go's time.Duration, for keep_alive ---------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string (``5m``, ``1h30m``, ``-1``); raises BadRequest."""
    if text in ("0", "-1"):
        return int(text)
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise BadRequest(f"invalid keep_alive duration {text!r}")
    return sign * round(sum(float(n) * _UNITS[u] for n, u in parts))


def format_duration(ns: int) -> str:
    """Go's ``Duration.String()`` (``5m0s``, ``1h0m0s``, ``1.5s``, ``500ms``)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if hours or minutes else ""
    return sign + out + _trim(rest / 10**9) + "s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


# -- the request ----------------------------------------------------------------------------


def _int32(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise BadRequest(f"{name}: not an integer")
    if not INT32[0] <= int(value) <= INT32[1]:
        raise BadRequest(f"{name}: out of int32 range")
    return int(value)


def _keep_alive(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("keep_alive: not a string")
    ns = parse_duration(value)
    return "-1" if ns < 0 else format_duration(ns)  # KeepAlive.MarshalJSON


def _object(value: Any, name: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise BadRequest(f"{name}: not an object")
    return value


def parse_request(body: Any) -> tuple[str, str, dict[str, Any]]:
    """``(model, mode, config)`` from a ``ConfigureRequest`` body; ``config`` is the stored
    ``BackendConfiguration`` in Go's field order, empty fields left out (``omitempty``)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest("not an object")
    model = body.get("model") or ""
    if not isinstance(model, str):
        raise BadRequest("model: not a string")
    mode = body.get("mode")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"unknown backend mode: {mode!r}")
    flags = body.get("runtime-flags")
    if flags is not None and not (isinstance(flags, list) and all(isinstance(f, str) for f in flags)):
        raise BadRequest("runtime-flags: not a list of strings")
    raw = body.get("raw-runtime-flags")
    if raw is not None and not isinstance(raw, str):
        raise BadRequest("raw-runtime-flags: not a string")
    flags = flags or (raw.split() if raw else [])
    if flags:
        # DMR checks flags against an allowlist of llama-server options; embedded mode has no
        # llama-server command line, so every flag is refused (same status as DMR's refusal: 500).
        raise Refused(f"runtime flag {flags[0]!r} is not supported by labkit's embedded llama.cpp engine")
    config: dict[str, Any] = {}
    context = _int32(body.get("context-size"), "context-size")
    if context is not None:
        config["context-size"] = context
    speculative = _object(body.get("speculative"), "speculative")
    if speculative is not None:
        config["speculative"] = {k: v for k, v in speculative.items()
                                 if k in ("draft_model", "num_tokens", "min_acceptance_rate") and v}
    keep_alive = _keep_alive(body.get("keep_alive"))
    if keep_alive is not None:
        config["keep_alive"] = keep_alive
    for key, fields in (("vllm", ("hf-overrides", "gpu-memory-utilization")), ("llamacpp", ("reasoning-budget",))):
        value = _object(body.get(key), key)
        if value is not None:
            config[key] = {k: v for k, v in value.items() if k in fields and v is not None}
    return model, mode or "completion", config


def effective_context(config: dict[str, Any]) -> int | None:
    """The context size the engine uses for a config: >0 or -1 (the trained context), else None."""
    value = config.get("context-size")
    return value if isinstance(value, int) and (value > 0 or value == -1) else None


# -- the persisted settings -----------------------------------------------------------------


class RunnerConfigs:
    """DMR's ``runnerConfigs`` (keyed by backend, model id, mode), kept in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], dict[str, Any]] = {}
        try:
            for entry in json.loads(path.read_text()).get("configs", []):
                self._entries[(entry["backend"], entry["model_id"], entry["mode"])] = entry["config"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)

    def set(self, backend: str, model_id: str, mode: str, config: dict[str, Any]) -> bool:
        """Store a model's config (replacing the old one); whether it changed."""
        with self._lock:
            key = (backend, model_id, mode)
            if self._entries.get(key) == config:
                return False
            self._entries[key] = config
            self._save()
            return True

    def entries(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self._lock:
            return [(*key, dict(config)) for key, config in self._entries.items()]

    def context_size(self, model: Any) -> int | None:
        """The configured context of a model's llama.cpp chat runner (the engine asks this per job)."""
        config = self._entries.get(("llama.cpp", getattr(model, "id", ""), "completion"))
        return effective_context(config) if config else None

    def _save(self) -> None:
        data = {"configs": [{"backend": b, "model_id": m, "mode": md, "config": c}
                            for (b, m, md), c in self._entries.items()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".runner-configs.")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        os.replace(tmp, self.path)


# -- the routes -----------------------------------------------------------------------------


def routes(server: ModelServer) -> list[Route]:
    """This module's routes, registered by the server before its catch-alls."""

    async def post(request: Request) -> Response:
        return await _configure(server, request)

    async def get(request: Request) -> Response:
        return _show(server, request.query_params.get("model", ""))

    return [Route("/engines/_configure", post, methods=["POST"]),
            Route("/engines/_configure", get, methods=["GET"]),
            Route("/engines/{backend}/_configure", post, methods=["POST"])]


async def _configure(server: ModelServer, request: Request) -> Response:
    backend = request.path_params.get("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        return text_error("backend not found", 404)
    raw = await read_limited(request, MAX_BODY)
    if raw is None:
        return text_error("request too large", 400)
    try:
        model_ref, mode, config = parse_request(json.loads(raw) if raw.strip() else None)
    except Refused as exc:
        return text_error(str(exc), 500)
    except ValueError:  # json's errors and BadRequest alike: Go's Unmarshal failing
        return text_error("invalid request", 400)
    try:
        model = server.store.get(model_ref)
        model_id = model.id
    except StoreError:
        model, model_id = None, model_ref  # DMR's ResolveID gives the reference back: stored, never shown
    if server.configs.set(backend, model_id, mode, config):
        log.info("configured %s (%s, %s): %s", model_ref, backend, mode, json.dumps(config))
    if model is not None and backend == DEFAULT_BACKEND and mode == "completion":
        server.engine.preload(model, model_ref)  # DMR preloads after configure (Compose relies on it)
    return Response(status_code=202)


def _show(server: ModelServer, model_ref: str) -> Response:
    models = {m.id: m for m in server.store.models()}
    wanted = None
    if model_ref:
        try:
            wanted = server.store.get(model_ref).id
        except StoreError:
            wanted = model_ref
    out = []
    for backend, model_id, mode, config in server.configs.entries():
        model = models.get(model_id)
        if model is None or (wanted is not None and model_id != wanted):
            continue
        out.append({"Backend": backend, "Model": model.tags[0] if model.tags else "", "ModelID": model_id,
                    "Mode": mode, "Config": config})
    return go_json_response(out)
