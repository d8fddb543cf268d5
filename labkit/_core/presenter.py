"""Presenter mode: command transcripts large and high-contrast, for a projector.

Whether it is on is decided in one place, ``enabled()``: the command runner and the widgets
both ask it. With ``LABKIT_PRESENTER=1`` (or true, yes, on) the command runner writes a
transcript into one HTML block of the notebook (big monospace, white on black, the
``$ command`` line in yellow, a failure line in red) that is updated as output arrives,
instead of plain stdout. The block carries the
same text as ``text/plain``, so a saved notebook still reads as a transcript. Everything else
stays as it was: the setting off, a terminal (no Jupyter kernel), or stdout redirected by the
caller (a widget capturing a command) all get the plain stream. The setting is read at each
command, so ``%env LABKIT_PRESENTER=1`` takes effect mid-class.
"""

from __future__ import annotations

import html
import io
import os
import sys
from collections.abc import Collection
from typing import Any, TextIO, cast

FONT_SIZE = "22px"
STYLE = (f"font-family: var(--jp-code-font-family, monospace); font-size: {FONT_SIZE}; line-height: 1.4; "
         "background: #000; color: #fff; padding: 10px 14px; margin: 4px 0; border-radius: 4px; "
         "white-space: pre-wrap; overflow-wrap: anywhere;")
COMMAND_STYLE = "color: #ffd866; font-weight: bold;"  # 14:1 on black
FAILURE_STYLE = "color: #ff8f8f; font-weight: bold;"  # 8:1 on black
ON_VALUES = frozenset({"1", "true", "yes", "on"})


def enabled() -> bool:
    """Is presenter mode on? ``LABKIT_PRESENTER`` is 1, true, yes or on (any case), read at each call."""
    return os.environ.get("LABKIT_PRESENTER", "").strip().lower() in ON_VALUES


def _kernel_stream(stream: TextIO) -> bool:
    """Is ``stream`` the Jupyter kernel's own output stream (not a terminal, not a redirect)?"""
    iostream = sys.modules.get("ipykernel.iostream")
    return iostream is not None and isinstance(stream, iostream.OutStream)


def render(text: str, failures: Collection[int] = ()) -> str:
    """The transcript as one HTML block: ``$ …`` lines and failure lines stand out.

    ``failures`` are the numbers (from 0) of the lines the runner wrote as a failed command's
    status line: it says so with a boolean (``write_status``), whatever the line reads. The
    ✗ lines that labkit's commands print for the reader are the command's output, text that
    carries nothing but its mark, so that mark is what they are known by.
    """
    rows = []
    for number, line in enumerate(text.split("\n")):
        escaped = html.escape(line)
        if line.startswith("$ "):
            escaped = f'<span style="{COMMAND_STYLE}">{escaped}</span>'
        elif number in failures or line.startswith("✗ "):
            escaped = f'<span style="{FAILURE_STYLE}">{escaped}</span>'
        rows.append(escaped)
    return f'<pre class="labkit-presenter" style="{STYLE}">' + "\n".join(rows).rstrip("\n") + "</pre>"


class Transcript(io.TextIOBase):
    """A text stream shown as one live HTML block: each ``flush`` re-renders what was written."""

    def __init__(self) -> None:
        self.text = ""
        self.failures: set[int] = set()  # numbers of the lines that are a failed command's status
        self._handle: Any = None
        self._shown = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def status(self, line: str, ok: bool) -> None:
        """The runner's status line, on a line of its own; ``ok`` false makes it stand out as a failure."""
        if not ok:
            self.failures.add(self.text.count("\n"))
        self.write(line + "\n")

    def flush(self) -> None:
        plain = self.text.rstrip("\n")
        if plain == self._shown:
            return
        from IPython.display import display

        bundle = {"text/plain": plain, "text/html": render(self.text, self.failures)}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self._shown = plain


def write_status(out: TextIO, line: str, ok: bool) -> None:
    """The runner's status line for a command: a presenter block colours it from ``ok``; any other
    stream gets the line as text."""
    if isinstance(out, Transcript):
        out.status(line, ok)
    else:
        out.write(line + "\n")


def stream(default: TextIO) -> TextIO:
    """Where a command's transcript goes: a presenter block, or ``default`` (the runner's stdout)."""
    if enabled() and _kernel_stream(default):
        return cast(TextIO, Transcript())  # a TextIOBase: typing's TextIO is a protocol it does not name
    return default
