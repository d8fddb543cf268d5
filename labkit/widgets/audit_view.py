"""The audit view: the latest requests that crossed (or tried to cross) the boundary, blocked ones marked ✗."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import ipywidgets as W

from ..records import RuleDecision, rule_text
from ._panel import BLOCKED_BG, MONO, Panel, font_size

if TYPE_CHECKING:
    from ..lab import Lab
    from ..sbx.audit import AuditRecord

FILTERS: dict[str, RuleDecision | None] = {"all": None, "allowed": "allow", "blocked": "deny"}


@dataclass(frozen=True)
class AuditRow:
    """One row of the audit view: a proxied request (embedded) or an aggregated log row (live)."""

    sandbox: str
    target: str  # host:port as the sandbox asked for it
    decision: str  # "allow" | "deny"
    rule: str
    method: str = ""
    path: str = ""
    status: int | None = None
    count: int = 1
    when: str = ""  # local time, HH:MM:SS

    @property
    def blocked(self) -> bool:
        return self.decision != "allow"

    @property
    def mark(self) -> str:
        return "✗ blocked" if self.blocked else "✓ allowed"


def _record_row(rec: AuditRecord) -> AuditRow:
    parts = urlsplit(rec.url) if "://" in rec.url else None
    return AuditRow(sandbox=rec.sandbox or "-", target=f"{rec.host}:{rec.port}", decision=rec.decision,
                    rule=rule_text(rec.rule), method=rec.method,
                    path=parts.path if parts else "", status=rec.status,
                    when=rec.when.astimezone().strftime("%H:%M:%S"))


class AuditView(Panel):
    """The latest requests that crossed (or tried to cross) the boundary; blocked ones marked ✗.

    Embedded mode shows the proxy's per-request records; with real sbx it shows `sbx policy
    log`, which is aggregated per host (no paths, no statuses).
    """

    kind = "audit view"

    def __init__(self, lab: Lab, sandbox: str | None = None, limit: int = 10) -> None:
        super().__init__()
        self.lab = lab
        self.sandbox = sandbox
        self.limit = limit
        self.rows: list[AuditRow] = []
        self.filter = W.ToggleButtons(options=list(FILTERS), value="all")
        self.filter.observe(lambda _: self.refresh(), "value")
        self.refresh_button = W.Button(description="refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.table = W.HTML()
        self.source = ""
        self.widget = W.VBox([W.HBox([self.filter, self.refresh_button]), self.table, self._status])
        self.refresh()

    @property
    def per_request(self) -> bool:
        return self.lab.resolution.sandboxes.kind != "live"

    def refresh(self) -> list[AuditRow]:
        """Read the latest rows (newest first)."""
        with self._guard():
            decision = FILTERS[self.filter.value]
            if self.per_request:
                self.source = "the policy proxy's audit records, one per request"
                records = self.lab.audit.records(self.sandbox, decision)
                self.rows = [_record_row(r) for r in reversed(records[-self.limit:])] if self.limit else []
            else:
                self.source = f"sbx policy log{' ' + self.sandbox if self.sandbox else ''} (aggregated per host)"
                entries = [e for e in self.lab.audit.log(self.sandbox)
                           if decision is None or e.blocked == (decision == "deny")]
                self.rows = [AuditRow(e.sandbox, e.host, "deny" if e.blocked else "allow",
                                      e.rule + (f" ({e.reason})" if e.reason else ""), count=e.count,
                                      when=e.last_seen.astimezone().strftime("%H:%M:%S") if e.last_seen else "")
                             for e in entries[:self.limit]]
            self._render()
            self._set_status("")
        return self.rows

    def _render(self) -> None:
        if not self.rows:
            self.table.value = (f'<div style="{font_size()}"><i>no requests yet</i> · '
                                f"{html.escape(self.source)}</div>")
            return
        if self.per_request:
            head = ["", "time", "sandbox", "request", "status", "rule"]
            cells = [[r.mark, r.when, r.sandbox, f"{r.method} {r.target}{r.path}", str(r.status), r.rule]
                     for r in self.rows]
        else:
            head = ["", "last seen", "sandbox", "host", "rule", "count"]
            cells = [[r.mark, r.when, r.sandbox, r.target, r.rule, str(r.count)] for r in self.rows]
        th = "".join(f'<th style="text-align:left; padding: 2px 8px;">{h}</th>' for h in head)
        body = []
        for row, values in zip(self.rows, cells, strict=True):
            style = f"background: {BLOCKED_BG}; color: #7a271a;" if row.blocked else ""
            tds = "".join(f'<td style="padding: 2px 8px; {MONO}">{html.escape(v)}</td>' for v in values)
            body.append(f'<tr style="{style}">{tds}</tr>')
        self.table.value = (f'<table style="border-collapse: collapse; {font_size()}"><tr>{th}</tr>{"".join(body)}'
                            f'</table><small>{html.escape(self.source)}</small>')
