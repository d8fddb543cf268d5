"""Parse what `docker model` prints, old and new, into labkit's records (pure, no I/O).

Variants (docs/sbx-dmr-facts.md §2.2): `ls --json` (an array of `/models` objects),
the `ls` table with and without CONTEXT, `status` as text (the old `Status:` lines and the
newer `BACKEND STATUS DETAILS` table) and as `--json` (v1.0.8's three keys or today's five),
and the CLI's error texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import fixes
from ..errors import ToolError
from ..records import ModelInfo, close_names
from ._table import read_table

RUNNING = "Docker Model Runner is running"
NOT_RUNNING = "Docker Model Runner is not running"


def model_from_json(item: dict[str, Any]) -> ModelInfo:
    """One `/models` object (also `docker model ls --json` and `inspect`)."""
    config = item.get("config") or {}
    return ModelInfo(
        id=item.get("id", ""),
        tags=tuple(item.get("tags") or ()),  # omitted when empty
        parameters=str(config.get("parameters", "")),
        quantization=str(config.get("quantization", "")),
        architecture=str(config.get("architecture", "")),
        size=str(config.get("size", "")),
        context=_context(config),
    )


def _context(config: dict[str, Any]) -> int | None:
    """`context_size`, else the GGUF `<arch>.context_length` (what the CONTEXT column shows)."""
    gguf = config.get("gguf") or {}
    for value in (config.get("context_size"), gguf.get(f"{config.get('architecture', 'llama')}.context_length"),
                  gguf.get("llama.context_length")):
        try:
            if value not in (None, ""):
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


def parse_models(text: str) -> list[ModelInfo]:
    """`docker model ls` output: the `--json` array, or the table."""
    body = text.strip()
    if body.startswith("["):
        return [model_from_json(item) for item in json.loads(body)]
    return parse_models_table(text)


def parse_models_table(text: str) -> list[ModelInfo]:
    """The `ls` table (CONTEXT column or not): one row per tag, grouped back into one model per MODEL ID.

    The table shows only 12 hex digits of the id and the display name of each tag, so these
    records carry exactly that: ``id`` is the short id, ``tags`` are display names.
    """
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("MODEL NAME")), -1)
    if at < 0:
        if not text.strip():
            return []
        raise ValueError(f"not a `docker model ls` table: {text.strip()[:80]!r}")
    models: dict[str, dict[str, Any]] = {}
    for row in read_table(lines, at):
        model = models.setdefault(row["MODEL ID"], {"tags": [], **row})
        if row["MODEL NAME"] != "<none>":
            model["tags"].append(row["MODEL NAME"])
    return [
        ModelInfo(id=model_id, tags=tuple(row["tags"]), parameters=row.get("PARAMETERS", ""),
                  quantization=row.get("QUANTIZATION", ""), architecture=row.get("ARCHITECTURE", ""),
                  size=row.get("SIZE", ""), context=int(row["CONTEXT"]) if row.get("CONTEXT", "").isdigit() else None)
        for model_id, row in models.items()
    ]


def short_id(model_id: str) -> str:
    """The MODEL ID column: 12 hex digits after `sha256:`."""
    return model_id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class ModelStatus:
    """`docker model status`: is the runner up, and the state of each inference backend."""

    running: bool
    backends: dict[str, str] = field(default_factory=dict)  # "llama.cpp" -> "Running: llama.cpp b1234"
    kind: str = ""  # "Docker Desktop" | "Docker Engine" | … (newer versions only)
    endpoint: str = ""  # the URL containers use
    endpoint_host: str = ""  # the URL the host uses (newer versions only)
    detail: str = ""  # the first line of a not-running answer

    def backend_running(self, name: str = "llama.cpp") -> bool:
        return self.backends.get(name, "").lower().startswith("running")


def parse_status(text: str) -> ModelStatus:
    """`status --json` (old or new keys) or the text (old `Status:` lines or the backend table)."""
    body = text.strip()
    if body.startswith("{"):
        data = json.loads(body)
        running = bool(data.get("running"))
        return ModelStatus(running=running, backends=dict(data.get("backends") or {}), kind=data.get("kind", ""),
                           endpoint=data.get("endpoint", ""), endpoint_host=data.get("endpointHost", ""),
                           detail="" if running else NOT_RUNNING)
    lines = text.splitlines()
    if any(line.startswith(NOT_RUNNING) for line in lines):
        return ModelStatus(running=False, detail=NOT_RUNNING)
    backends: dict[str, str] = {}
    table = next((i for i, line in enumerate(lines) if line.startswith("BACKEND")), -1)
    if table >= 0:  # since 2026-02: BACKEND  STATUS  DETAILS, i.e. the JSON's "<Status>: <details>"
        for row in read_table(lines, table):
            backends[row["BACKEND"]] = f"{row['STATUS']}: {row['DETAILS']}" if row.get("DETAILS") else row["STATUS"]
    elif "Status:" in (line.strip() for line in lines):  # older: "llama.cpp: running llama.cpp version: c22473b"
        after = [line for line in lines[[line.strip() for line in lines].index("Status:") + 1:] if line.strip()]
        for line in after:
            name, _, state = line.partition(":")
            backends[name.strip()] = state.strip()
    return ModelStatus(running=any(line.startswith(RUNNING) for line in lines), backends=backends)


# ---------------------------------------------------------------- errors

def not_pulled(ref: str, detail: str = "", known: Sequence[str] = ()) -> ToolError:
    """A model the store does not have; with ``known`` (the pulled names) a typo gets the closest ones."""
    close = [k for k in close_names(ref, known) if k != ref]
    if close:
        return ToolError(f"the model '{ref}' is not pulled; did you mean {' or '.join(repr(c) for c in close)}?",
                         f"use the name verbatim: {close[0]}   (pulled names: docker model ls)", "model_not_pulled",
                         detail=detail)
    return ToolError(f"the model '{ref}' is not pulled (it is not in Docker Model Runner's local store)",
                     f"{fixes.pull_model(ref)}   (pulled ids, verbatim: docker model ls)", "model_not_pulled",
                     detail=detail)


def classify(text: str) -> ToolError | None:
    """The known `docker model` failure in ``text``, or None."""
    if "Cannot connect to the Docker daemon" in text:
        return ToolError("Docker is not running (the docker CLI cannot reach its daemon)",
                         fixes.START_DOCKER,
                         "daemon_not_running", detail=text)
    if NOT_RUNNING in text:
        return ToolError("Docker Model Runner is not running", fixes.START_DMR, "dmr_not_running", detail=text)
    if re.search(r"'model' is not a docker command|unknown command:? \"?model", text):
        return ToolError("the `docker model` plugin is not installed", fixes.INSTALL_DOCKER_MODEL, "tool_missing",
                         detail=text)
    m = re.search(r"Failed to pull model: pulling (\S+) failed with status 404", text)
    if m:
        return ToolError(f"the registry has no model '{m[1]}'",
                         f"check the name and tag, e.g. {fixes.pull_model('ai/smollm2:360M-Q4_K_M')}",
                         "model_not_found", detail=text)
    m = re.search(r"Failed to get model (\S+?): .*model not found|no such model: (\S+)", text)
    if m:
        return not_pulled(m[1] or m[2], text)
    return None
