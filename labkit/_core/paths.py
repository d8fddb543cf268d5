"""Where labkit keeps its state, and the ports it uses.

One folder (``LABKIT_HOME``, default ``~/.labkit``) holds everything the embedded lab
creates: model store, sandboxes, policy, audit log, pid files and logs. Deleting it is a
full reset; tests point it at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DMR_PORT = 12434


def home() -> Path:
    """The labkit state folder, created on first use."""
    path = Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir(*parts: str) -> Path:
    """A sub-folder of the state folder (``run``, ``logs``, ``models``, …), created on first use."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def dmr_port() -> int:
    """The model API port: 12434 like Docker Model Runner, ``LABKIT_DMR_PORT`` overrides."""
    raw = os.environ.get("LABKIT_DMR_PORT", "")
    try:
        return int(raw) if raw else DEFAULT_DMR_PORT
    except ValueError:
        return DEFAULT_DMR_PORT


def without_shims(path_value: str) -> str:
    """A PATH value without labkit's routing shims (``$LABKIT_HOME/shims/…``): the real tools only."""
    shims = str(home() / "shims")
    return os.pathsep.join(p for p in path_value.split(os.pathsep) if p and not p.startswith(shims))


def repo_root() -> Path | None:
    """The course checkout when labkit runs from one (it has ``notebooks/``), else None."""
    here = Path(__file__).resolve().parents[2]  # labkit/_core/paths.py → the checkout
    return here if (here / "notebooks").is_dir() and (here / "pyproject.toml").is_file() else None
