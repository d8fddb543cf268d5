"""The panels' shared plumbing: the ``.widget`` to display, one status line coloured from ``ok``, failures caught.

A tool failure (the model API, sbx, a command, a service) becomes the status line with its
fix, never a traceback; bugs still raise. The text is larger in presenter mode, decided by
``presenter.enabled()`` like the command transcripts.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from typing import Any

import ipywidgets as W

from .._core import presenter
from ..checks.result import verdict_line
from ..errors import LabError, ToolError

MONO = "font-family: var(--jp-code-font-family, monospace);"
BLOCKED_BG = "#fde2e1"
OK_COLOR = "#067647"
FAIL_COLOR = "#b42318"


def status_color(ok: bool | None) -> str:
    """Green for a success, red for a failure, the page's colour for neither (waiting, empty)."""
    return "inherit" if ok is None else OK_COLOR if ok else FAIL_COLOR


def font_size() -> str:
    """A CSS font size: larger in presenter mode (``LABKIT_PRESENTER``, see ``presenter.enabled``)."""
    return "font-size: 1.35em;" if presenter.enabled() else ""


def pre(text: str, extra: str = "") -> str:
    return (f'<pre style="{MONO}{font_size()}white-space: pre-wrap; margin: 2px 0; {extra}">'
            f"{html.escape(text)}</pre>")


def failure_line(err: LabError) -> str:
    """One ✗ line for a failure: what happened, then the fix. A tool's message is shown whole; of any
    other, its first line (a service's goes on with its log's tail)."""
    what = err.message if isinstance(err, ToolError) else next(iter(err.message.splitlines()), type(err).__name__)
    return verdict_line(False, what, err.fix)


class Panel:
    """Base of the course's widgets: ``.widget``, ``.status`` (the line) and ``.status_ok`` (what it reports)."""

    widget: W.Widget
    kind = "widget"  # what the text/plain fallback calls it

    def __init__(self) -> None:
        self.status = ""
        self.status_ok: bool | None = None  # True: ✓, False: ✗, None: neither
        self._status = W.HTML()

    def _set_status(self, line: str, ok: bool | None = None) -> None:
        """Show ``line``; ``ok`` (True, False, None for neither) decides its colour."""
        self.status, self.status_ok = line, ok
        style = f"color: {status_color(ok)}; {font_size()}"
        self._status.value = f'<span style="{style}">{html.escape(line)}</span>' if line else ""

    def _failed(self, line: str) -> None:
        """A caught failure's line (a panel with states also records the failure there)."""
        self._set_status(line, ok=False)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A tool failure becomes the status line; bugs still raise."""
        try:
            yield
        except LabError as err:
            self._failed(failure_line(err))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget, with a short, stateless text/plain (ipywidgets' own repr dumps every value)."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = self._plain()
        return bundle

    def _plain(self) -> str:
        return f"labkit {self.kind} (interactive: run the notebook in JupyterLab or Notebook 7)"
