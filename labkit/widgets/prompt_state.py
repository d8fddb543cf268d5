"""The prompt panel's states as data: what each one shows, and which state may follow which.

Pure: the panel holds a ``PromptState``; its status line (text and colour) is drawn from it,
and a move the table does not allow is a bug (the panel raises). A send that has ended shows
its verdict, a ✓/✗ line built with ``checks.result.verdict_line`` from the same ``ok``.
"""

from __future__ import annotations

from enum import Enum


class PromptState(Enum):
    """Where a send is: nothing sent yet, waiting for the first token, streaming, done, or failed."""

    IDLE = "idle"
    WAITING = "waiting"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"

    @property
    def ok(self) -> bool | None:
        """True when done, False when failed, None while nothing is decided (it colours the status line)."""
        return _OK[self]

    @property
    def ended(self) -> bool:
        return self in _ENDED

    def line(self, verdict: str = "") -> str:
        """The status line: the state's own text before and during a send; ``verdict`` once it has ended."""
        return verdict if self.ended else _TEXT[self]

    def may_become(self, new: PromptState) -> bool:
        return new in _NEXT[self]


_OK: dict[PromptState, bool | None] = {
    PromptState.IDLE: None, PromptState.WAITING: None, PromptState.STREAMING: None,
    PromptState.DONE: True, PromptState.FAILED: False,
}
_TEXT: dict[PromptState, str] = {  # the ended states show their verdict instead
    PromptState.IDLE: "",
    PromptState.WAITING: "… waiting for the first token",
    PromptState.STREAMING: "… streaming",
}
_ENDED = frozenset({PromptState.DONE, PromptState.FAILED})
_NEXT: dict[PromptState, frozenset[PromptState]] = {
    PromptState.IDLE: frozenset({PromptState.WAITING}),
    PromptState.WAITING: frozenset({PromptState.STREAMING}) | _ENDED,
    PromptState.STREAMING: _ENDED,
    PromptState.DONE: frozenset({PromptState.WAITING}),
    PromptState.FAILED: frozenset({PromptState.WAITING}),
}
