"""labkit's errors: one tree, and every error that reaches a notebook or a terminal carries its fix.

The hierarchy (where each class lives)::

    LabError                 what happened (.message) and what to type next (.fix; may be empty)
    ├── ToolError            a tool failed in a known way: sbx, docker model, the model API (here)
    ├── CommandFailed        a course command ran and did not succeed: Result.check() (_core.runner)
    ├── ServiceError         a background service could not start or stop (_core.daemon)
    ├── ModeError            an unknown mode name (runtime.modes)
    ├── PolicyError          a resource or target outside sbx's policy grammar (sbx.policy)
    ├── SandboxError         an embedded sandbox cannot be made, found or run (sbx.store)
    ├── IsolationUnavailable namespaces were insisted on where none can be made (sbx.isolation)
    └── StoreError           the embedded model store cannot do it (dmr.store)

Callers catch ``LabError``: a notebook prints two lines (what happened, the fix), never a
traceback. The fix strings themselves live in :mod:`labkit.fixes`, each once. The embedded CLIs'
own errors (PolicyError, SandboxError, StoreError) are worded as the real tools word theirs, the
command to type inside the message, so their ``fix`` stays empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["FailureKind", "KINDS", "LabError", "ToolError", "refix"]


class LabError(Exception):
    """A failure told in at most two lines: what happened (``message``), and the fix (``fix``)."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message.strip()
        self.fix = fix.strip()

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message

    def line(self) -> str:
        """One line, as checkpoints and widgets show a failure: ``✗ what — fix: what to type``."""
        first = self.message.splitlines()[0] if self.message else type(self).__name__
        return f"✗ {first}" + (f" — fix: {self.fix}" if self.fix else "")

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: a tool mistake is not a bug in the notebook."""
        return str(self).splitlines()


FailureKind = Literal[
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

KINDS: tuple[str, ...] = FailureKind.__args__  # type: ignore[attr-defined]


class ToolError(LabError):
    """A tool or API failure (the adapters in :mod:`labkit.tools` turn each known one into this).

    ``kind`` is what a caller branches on; ``detail`` keeps the tool's raw output for whoever
    wants to dig, and is never printed.
    """

    def __init__(self, message: str, fix: str = "", kind: FailureKind = "command_failed", detail: str = "") -> None:
        super().__init__(message, fix)
        self.kind: FailureKind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return f"ToolError(kind={self.kind!r}, message={self.message!r}, fix={self.fix!r})"


def refix(err: ToolError, fixes: Mapping[str, str]) -> ToolError:
    """``err`` with the fix ``fixes`` gives for its kind (embedded mode says `labkit up`, not Docker Desktop)."""
    if err.kind in fixes:
        err.fix = fixes[err.kind]
    return err
