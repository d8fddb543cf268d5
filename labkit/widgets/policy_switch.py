"""The policy switch: allow or deny the model port for every sandbox, by running the real `sbx policy` commands."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from .. import fixes
from ..records import PolicyRule
from ._panel import Panel, pre

if TYPE_CHECKING:
    from ..lab import Lab


class PolicySwitch(Panel):
    """Allow or deny the model port (``localhost:12434``) for every sandbox, with the rule in force shown.

    Switching runs the real commands: `sbx policy rm network --resource R` for the rule in
    place, then `sbx policy allow|deny network R`; the rules are then read back from `sbx policy ls`.
    """

    kind = "policy switch"

    def __init__(self, lab: Lab, resource: str | None = None) -> None:
        super().__init__()
        self.lab = lab
        self.resource = resource or lab.endpoints.rule
        self.rules: list[PolicyRule] = []
        self.in_force: PolicyRule | None = None  # the global rule that decides (``lab.policy.in_force``)
        self.transcript = ""
        self._syncing = False
        self.toggle = W.ToggleButtons(options=[("✓ allow", "allow"), ("✗ deny", "deny")], value=None,
                                      description=self.resource, style={"description_width": "initial"},
                                      tooltips=[fixes.allow_network(self.resource),
                                                fixes.deny_network(self.resource)])
        self.toggle.observe(self._on_toggle, "value")
        # Rules change in other cells and terminals too: this re-reads them (`sbx policy ls`).
        self.refresh_button = W.Button(description="↻ refresh", tooltip=f"read the rules again: {fixes.LIST_RULES}",
                                       layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.in_force_html = W.HTML()
        self.transcript_html = W.HTML()
        self.widget = W.VBox([W.HBox([self.toggle, self.refresh_button]), self.in_force_html, self.transcript_html,
                              self._status])
        self.refresh()

    @property
    def value(self) -> str | None:
        """The toggle's position: "allow", "deny", or None before anything was read."""
        return self.toggle.value

    @value.setter
    def value(self, decision: str) -> None:
        self.toggle.value = decision

    @property
    def decision(self) -> str | None:
        """What the policy decides for the resource now, for every sandbox: the decision of the global rule
        in force (deny beats allow); None when no global rule names it."""
        return self.in_force.decision if self.in_force is not None else None

    def refresh(self) -> list[PolicyRule]:
        """Read the rules naming the resource back from `sbx policy ls`."""
        with self._guard():
            self.rules = self.lab.policy.rules_for(self.resource)
            self.in_force = self.lab.policy.in_force(self.resource, rules=self.rules)
            self._syncing = True
            try:
                self.toggle.value = self.decision
            finally:
                self._syncing = False
            self._show_rules()
        return self.rules

    def set(self, decision: str) -> None:
        """Make ``decision`` ("allow" | "deny") the global rule for the resource, by running sbx."""
        if decision not in ("allow", "deny"):
            raise ValueError("decision must be 'allow' or 'deny'")
        out = io.StringIO()
        with self._guard(), contextlib.redirect_stdout(out):
            self._set_status("")
            if any(r.applies_to == "all" and r.origin == "local" for r in self.lab.policy.rules_for(self.resource)):
                self.lab.policy.rm(self.resource).check()
            (self.lab.policy.allow if decision == "allow" else self.lab.policy.deny)(self.resource)
        self._log(out.getvalue())
        self.refresh()

    def clear(self) -> None:
        """Remove the local global rules for the resource (`sbx policy rm network --resource R`)."""
        out = io.StringIO()
        with self._guard(), contextlib.redirect_stdout(out):
            self.lab.policy.rm(self.resource).check()
        self._log(out.getvalue())
        self.refresh()

    def _on_toggle(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] in ("allow", "deny") and change["new"] != self.decision:
            self.set(change["new"])

    def _log(self, text: str) -> None:
        self.transcript = text
        self.transcript_html.value = pre(text.rstrip("\n"), "opacity: 0.8;") if text.strip() else ""

    def _show_rules(self) -> None:
        if not self.rules:
            text = f"no rule names {self.resource}: the default deny applies (sandboxes get HTTP 403)"
        else:
            lines = []
            for r in self.rules:
                scope = "all sandboxes" if r.applies_to == "all" else f"sandbox {r.applies_to}"
                lines.append(f"{r.decision:<5} {','.join(r.resources)}   ({r.origin}, {scope}, rule {r.id[:8]})")
            beaten = any(r.applies_to == "all" and r.decision == "allow" for r in self.rules)  # by the deny in force
            verdict = {"allow": "allowed", "deny": "denied (deny beats allow)" if beaten else "denied"}.get(
                self.decision or "", "per sandbox only")
            text = f"in force for {self.resource}: {verdict}\n" + "\n".join(lines)
        self.in_force_html.value = pre(text)
