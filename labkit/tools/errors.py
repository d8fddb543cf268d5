"""One error type for every known way the tools fail, so a notebook prints two lines, not a traceback.

The live adapters (and the embedded mode, which drives labkit's own CLIs through the same
adapters) turn a tool's output into a ``ToolError`` whose ``kind`` a caller can branch on and
whose text says what happened and what to type next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Kind = Literal[
    "not_signed_in",  # sbx needs `sbx login` (session missing or expired)
    "daemon_not_running",  # sandboxd or the Docker daemon does not answer
    "policy_not_initialised",  # sbx's global network policy has no preset yet
    "sandbox_not_found",
    "dmr_tcp_disabled",  # Model Runner runs, but nothing answers on its TCP port
    "dmr_not_running",
    "engine_crashed",  # the model server is up, but its llama.cpp engine died under the request
    "model_not_pulled",  # the model is not in the local store (DMR's plain-text 404)
    "model_not_found",  # the registry does not know the model (pull failed with 404)
    "tool_missing",  # the executable (or the `docker model` plugin) is not installed
    "timeout",
    "unsupported",  # this version of the tool lacks the command
    "api_error",  # any other HTTP error from the model API
    "command_failed",  # any other non-zero exit
]

KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


class ToolError(Exception):
    """A tool or API failure told in at most two lines: what happened, and the fix."""

    def __init__(self, message: str, fix: str = "", kind: Kind = "command_failed", detail: str = "") -> None:
        super().__init__(message)
        self.message = message.strip()
        self.fix = fix.strip()
        self.kind: Kind = kind
        self.detail = detail  # the tool's raw output, for whoever wants to dig; never printed

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message

    def __repr__(self) -> str:
        return f"ToolError(kind={self.kind!r}, message={self.message!r}, fix={self.fix!r})"

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: a tool mistake is not a bug in the notebook."""
        return str(self).splitlines()


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of a tool's output, for messages about unknown failures."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def refix(err: ToolError, fixes: Mapping[str, str]) -> ToolError:
    """``err`` with the fix ``fixes`` gives for its kind (embedded mode says `labkit up`, not Docker Desktop)."""
    if err.kind in fixes:
        err.fix = fixes[err.kind]
    return err
