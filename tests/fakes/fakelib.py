"""Shared bits of the fake `sbx` and `docker` executables (standard library only).

State lives in one JSON file per tool under ``FAKE_STATE_DIR``, read and written under an
exclusive lock, so `create` then `ls` in two processes sees the sandbox. Failures are
injected with ``FAKE_FAIL`` (a comma list).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def state_dir() -> Path:
    raw = os.environ.get("FAKE_STATE_DIR")
    if not raw:
        print("fake: FAKE_STATE_DIR is not set", file=sys.stderr)
        raise SystemExit(2)
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked_state(name: str, default: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The tool's state, saved on exit (also when the command exits with SystemExit)."""
    folder = state_dir()
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / f"{name}.json"
        state = json.loads(path.read_text()) if path.exists() else json.loads(json.dumps(default))
        try:
            yield state
        finally:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(path)


def fails() -> set[str]:
    return {item.strip() for item in os.environ.get("FAKE_FAIL", "").split(",") if item.strip()}


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def table(header: list[str], rows: list[list[str]], pad: int = 2) -> list[str]:
    """Go tabwriter style: left-aligned, ``pad`` spaces after the widest cell, no trailing spaces."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "".join(str(cell).ljust(widths[i] + pad) if i < len(header) - 1 else str(cell)
                for i, cell in enumerate(row)).rstrip()
        for row in [header, *rows]
    ]


def utf8_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8")  # type: ignore[attr-defined]
