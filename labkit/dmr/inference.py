"""What every API of the embedded model server shares about a chat request: the body limit, the
backends, and the one error that each API (OpenAI, Anthropic, Ollama, Responses) turns into its
own envelope.

In a module of its own so the API modules import it at their top: ``server`` imports them, so
they could not import ``server`` back without doing it late.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BODY = 10 << 20  # DMR's maximumOpenAIInferenceRequestSize (and maxRequestBodyBytes): 10 MiB
DEFAULT_BACKEND = "llama.cpp"
# Backends DMR registers; only llama.cpp exists in embedded mode, the others are "not installed".
BACKENDS = ("llama.cpp", "vllm", "mlx", "diffusers", "sglang")


class InferenceError(Exception):
    """A chat request that cannot be answered; each API turns it into its own error envelope.

    ``kind``: ``invalid_request`` (400), ``not_found`` (404), ``server_error`` (5xx), or llama.cpp's
    own types such as ``exceed_context_size_error``; ``body``: llama.cpp's JSON error, when it has one.
    """

    def __init__(self, status: int, message: str, kind: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.body = status, message, kind, body


def model_not_found(ref: str) -> str:
    """DMR's body for a model that is not in the store (Go's ``%q`` quoting of the ref)."""
    return f"error while getting model: get model '{json.dumps(ref, ensure_ascii=False)}': model not found"


def not_installed(backend: str) -> str:
    """DMR's body for a backend it knows but has not installed (HTTP 412)."""
    return f'backend "{backend}" is not installed; run: docker model install-runner --backend {backend}'
