"""The real coding agents the course runs: Codex and Claude Code, pinned, and their configuration.

``install`` finds the binaries ``make lab`` put in ``.agents/`` (pins in ``versions.json``);
``codex`` and ``claude`` generate what points each agent at Docker Model Runner (or labkit's
embedded one) and nowhere else. The same generators serve live and embedded mode.
"""

from . import claude, codex, install
from .install import NotInstalled

__all__ = ["NotInstalled", "claude", "codex", "install"]
