"""The checkpoint checklist: notebook 09's five items, each ✓/✗ with its evidence, verified again on request.

The items come from ``checks.checkpoint`` (this module imports ``labkit.checks``; ``checks``
never imports the widgets). ``checklist`` is the notebook's call; ``checks.checklist`` names it too.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING

import ipywidgets as W

from ..checks.checkpoint import Checkpoint, checkpoint
from ..checks.result import CheckResult, verdict_line
from ._panel import Panel, font_size, status_color

if TYPE_CHECKING:
    from ..lab import Lab


def render_items(result: Checkpoint) -> str:
    """The items as HTML: each line coloured from its ``ok``, its evidence below it."""
    parts = []
    for item in result.items:
        evidence = "".join(f"<br><small style='opacity: 0.75; margin-left: 1.6em;'>· {html.escape(e)}</small>"
                           for e in item.evidence)
        parts.append(f'<div style="margin: 4px 0; {font_size()}"><span style="color: {status_color(item.ok)};">'
                     f"{html.escape(item.line)}</span>{evidence}</div>")
    return "".join(parts)


class Checklist(Panel):
    """The module's five checkpoint items, each ✓/✗ with its evidence (see ``checks.checkpoint``)."""

    kind = "checkpoint checklist"

    def __init__(self, lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
                 workspace: str | os.PathLike[str] | None = None, script: str = "test_local.py") -> None:
        super().__init__()
        self.lab = lab
        self.sandbox, self.agent_sandbox, self.script = sandbox, agent_sandbox, script
        self.workspace = os.fspath(workspace) if workspace is not None else None
        self.result: Checkpoint | None = None
        self.items_html = W.HTML()
        self.refresh_button = W.Button(description="verify again", icon="refresh", layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([self.items_html, self.refresh_button, self._status])
        self.refresh()

    @property
    def items(self) -> tuple[CheckResult, ...]:
        return self.result.items if self.result else ()

    @property
    def lines(self) -> list[str]:
        return [item.line for item in self.items]

    @property
    def ok(self) -> bool:
        return bool(self.result and self.result.ok)

    def summary(self) -> str:
        """One deterministic line: all verified, or how many are not yet."""
        return self.result.summary() if self.result else verdict_line(False, "Checkpoint: not verified yet")

    def _plain(self) -> str:
        """A static viewer shows the whole checklist, evidence included."""
        return str(self.result) if self.result else super()._plain()

    def refresh(self) -> Checkpoint:
        """Verify every item again from the current evidence."""
        self.result = checkpoint(self.lab, sandbox=self.sandbox, agent_sandbox=self.agent_sandbox,
                                 workspace=self.workspace, script=self.script)
        self.items_html.value = render_items(self.result)
        self._set_status(self.result.summary(), self.result.ok)
        return self.result


def checklist(lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
              workspace: str | os.PathLike[str] | None = None) -> Checklist:
    """Notebook 09: the module's five checkpoint items as a widget (``.summary()`` is one deterministic line)."""
    return Checklist(lab, sandbox=sandbox, agent_sandbox=agent_sandbox, workspace=workspace)
