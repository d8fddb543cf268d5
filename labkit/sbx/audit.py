"""The proxy's audit log: one JSON line per request, and sbx's aggregated view of it.

Each record is appended with a single ``write`` on an ``O_APPEND`` descriptor, so lines from
concurrent writers never interleave and none is lost. ``sbx policy log`` (sbx's per-host
aggregate, docs/sbx-dmr-facts.md §1.5) and ``labkit audit`` (the raw records) both read this file; the
notebooks' checkpoints read it through :func:`read` and :func:`policy_log`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .._core import paths
from ..records import AuditRule, PolicyLogEntry, RuleDecision, rule_text

FIELDS = ("ts", "sandbox", "method", "url", "host", "port", "normalized", "decision", "rule",
          "status", "bytes_up", "bytes_down", "duration_ms")
# Rule ids the proxy itself uses when no rule of the policy decided.
PROXY_REASONS = ("default-deny", "loopback-guard", "bad-request")
RAW_TCP_METHOD = "TCP"  # a raw TCP connection to host.docker.internal:P (relay → proxy), not an HTTP request


def log_path() -> Path:
    return paths.state_dir("sbx") / "audit.jsonl"


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def append(record: dict[str, Any], path: Path | None = None) -> None:
    """Append one record atomically (one write, O_APPEND)."""
    fd = _open(path or log_path())
    try:
        os.write(fd, _line(record))
    finally:
        os.close(fd)


class Writer:
    """A long-lived appender (the proxy): keeps the file open, reopens it if it was replaced.

    One ``stat`` and one ``write`` per record instead of open/write/close; the ``stat``
    notices a deleted or rotated log before the record is written, so none goes astray.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._ino = -1

    def append(self, record: dict[str, Any]) -> None:
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = -2
        if ino != self._ino:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = _open(self.path)
            self._ino = os.fstat(self._fd).st_ino
        os.write(self._fd, _line(record))


@dataclass(frozen=True)
class AuditRecord:
    """One request as the proxy saw it (the audit fields of docs/design.md §5)."""

    ts: str
    sandbox: str | None
    method: str
    url: str
    host: str
    port: int
    normalized: str
    decision: RuleDecision
    rule: AuditRule  # {"id", "name", "text"}; id "default-deny" when no rule matched
    status: int
    bytes_up: int
    bytes_down: int
    duration_ms: float
    error: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditRecord:
        return cls(**{k: data[k] for k in FIELDS}, error=data.get("error", ""))

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.ts)

    @property
    def rule_label(self) -> str:
        """sbx's RULE column: domain-allowed, user-denied, or domain-blocked."""
        if self.decision == "allow":
            return "domain-allowed"
        return "domain-blocked" if self.rule.get("id") in PROXY_REASONS else "user-denied"

    @property
    def proxy(self) -> str:
        """sbx's PROXY column: ``forward`` for HTTP(S) through the proxy, ``network`` for raw TCP."""
        return "network" if self.method == RAW_TCP_METHOD else "forward"

    @property
    def reason(self) -> str:
        """sbx's REASON column (newer sbx): why a blocked request was blocked."""
        if self.decision == "allow":
            return ""
        rid = self.rule.get("id", "")
        return rid if rid in PROXY_REASONS else self.rule.get("name") or rid


def _lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            yield from fh
    except FileNotFoundError:
        return


def _parse(line: str) -> AuditRecord | None:
    try:
        return AuditRecord.from_json(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the proxy writes, or a foreign line


def _keep(rec: AuditRecord, sandbox: str | None, decision: str | None) -> bool:
    return (sandbox is None or rec.sandbox == sandbox) and (decision is None or rec.decision == decision)


def read(sandbox: str | None = None, decision: str | None = None, path: Path | None = None) -> list[AuditRecord]:
    """All records, oldest first, optionally for one sandbox and/or one decision."""
    records = (_parse(line) for line in _lines(path or log_path()))
    return [r for r in records if r is not None and _keep(r, sandbox, decision)]


def policy_log(sandbox: str | None = None, path: Path | None = None) -> list[PolicyLogEntry]:
    """sbx's aggregate: one row per (sandbox, host:port, rule, blocked), newest first."""
    rows: dict[tuple[str, str, str, str, bool, str], list[Any]] = {}
    for rec in read(sandbox, path=path):
        key = (rec.sandbox or "-", f"{_bracket(rec.host)}:{rec.port}", rec.rule_label, rec.reason,
               rec.decision == "deny", rec.proxy)
        row = rows.setdefault(key, [0, rec.when])
        row[0] += 1
        row[1] = max(row[1], rec.when)
    entries = [PolicyLogEntry(sandbox=k[0], host=k[1], proxy=k[5], rule=k[2], blocked=k[4],
                              count=v[0], last_seen=v[1], reason=k[3]) for k, v in rows.items()]
    return sorted(entries, key=lambda e: e.last_seen or datetime.min, reverse=True)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def follow(sandbox: str | None = None, decision: str | None = None, path: Path | None = None,
           poll: float = 0.2) -> Iterator[AuditRecord]:
    """Records as they are appended (like ``tail -f``), starting at the end of the log."""
    path = path or log_path()
    offset = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size < offset:
                    offset = 0  # the log was truncated or replaced
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            rec = _parse(line.decode("utf-8", "replace"))
            if rec is not None and _keep(rec, sandbox, decision):
                yield rec
        if not chunk:
            time.sleep(poll)


def format_record(rec: AuditRecord) -> str:
    """One human line per record for ``labkit audit``."""
    when = rec.when.astimezone().strftime("%H:%M:%S.%f")[:-3]
    rule = rule_text(rec.rule)
    err = f"  ({rec.error})" if rec.error else ""
    return (f"{when}  {rec.sandbox or '-':<14} {rec.decision.upper():<5} {rec.status:>3}  {rec.method:<7} "
            f"{rec.url}  ↑{rec.bytes_up} ↓{rec.bytes_down} {rec.duration_ms:.1f}ms  [{rule}]{err}")


def main(argv: list[str]) -> int:
    """``labkit audit [--follow] [--sandbox N] [--decision allow|deny] [--json] [-n N]``."""
    parser = argparse.ArgumentParser(prog="labkit audit", description="The policy proxy's raw audit records.")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    parser.add_argument("--sandbox", help="only this sandbox's requests")
    parser.add_argument("--decision", choices=("allow", "deny"), help="only allowed or only denied requests")
    parser.add_argument("--json", action="store_true", help="print the JSON lines as stored")
    parser.add_argument("-n", "--last", type=int, default=0, metavar="N", help="only the last N records")
    args = parser.parse_args(argv)

    def show(rec: AuditRecord) -> None:
        if args.json:
            data = {k: getattr(rec, k) for k in FIELDS}
            if rec.error:
                data["error"] = rec.error
            print(json.dumps(data, ensure_ascii=False), flush=True)
        else:
            print(format_record(rec), flush=True)

    records = read(args.sandbox, args.decision)
    for rec in records[-args.last:] if args.last > 0 else records:
        show(rec)
    if not records and not args.follow and not args.json:
        print(f"No audit records yet ({log_path()}).", file=sys.stderr)
    if args.follow:
        try:
            for rec in follow(args.sandbox, args.decision):
                show(rec)
        except KeyboardInterrupt:
            return 0
    return 0
