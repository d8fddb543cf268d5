"""`labkit up | down | status`: the embedded lab's background services, together.

The embedded lab is two services: the model server (``labkit.dmr.service``) and the
policy proxy (``labkit.sbx.service``). Each of those modules exposes the same three
functions, so this file only sequences them and prints one line per service:

* ``start() -> str``  idempotent; raises ``daemon.ServiceError`` with a clear message and the fix
* ``stop() -> str``   idempotent
* ``status() -> tuple[bool, str]``  (running?, one line that says where and what)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from ..errors import LabError
from ..runtime import modes, probes

SERVICE_MODULES = ("labkit.dmr.service", "labkit.sbx.service")


def _services() -> list[ModuleType]:
    return [importlib.import_module(name) for name in SERVICE_MODULES]


def up(mode: str | None = None) -> list[str]:
    """Start the embedded components the mode needs; a real tool that is present is left to serve."""
    res = modes.resolve(mode, dmr=probes.probe_dmr(), sbx=probes.probe_sbx())
    dmr_service, proxy_service = _services()
    lines = []
    for component, svc in ((res.model_server, dmr_service), (res.sandboxes, proxy_service)):
        if component.kind == "live":
            lines.append(f"{component.name}: live — {component.reason}; nothing to start")
        else:
            lines.append(svc.start())
    return lines


def down() -> list[str]:
    return [svc.stop() for svc in reversed(_services())]


def status() -> list[tuple[bool, str]]:
    return [svc.status() for svc in _services()]


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"labkit {prog}", description=description)


def up_main(argv: list[str]) -> int:
    parser = _parser("up", "Start the embedded lab in the background (idempotent).")
    parser.add_argument("--mode", choices=modes.MODES, help="override LABKIT_MODE (default: auto)")
    args = parser.parse_args(argv)
    try:
        for line in up(args.mode):
            print(line)
    except LabError as exc:
        print(f"labkit up: {exc}", file=sys.stderr)
        return 1
    return 0


def down_main(argv: list[str]) -> int:
    _parser("down", "Stop the embedded lab (idempotent; models, sandboxes and rules are kept).").parse_args(argv)
    try:
        for line in down():
            print(line)
    except LabError as exc:
        print(f"labkit down: {exc}", file=sys.stderr)
        return 1
    return 0


def status_main(argv: list[str]) -> int:
    _parser("status", "Show whether the embedded lab runs (exit 0 when all of it does).").parse_args(argv)
    rows = status()
    for running, line in rows:
        print(f"{'✓' if running else '✗'} {line}")
    return 0 if all(running for running, _ in rows) else 1
