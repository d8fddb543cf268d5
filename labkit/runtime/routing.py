"""Where the course's `sbx` and `docker model` commands go in the current mode.

In embedded mode the course's commands must still read `sbx create …` and `docker model ls`.
labkit writes two tiny wrapper scripts into the state folder (`shims/sbx`, `shims/docker`)
and puts them first on PATH **only** for the commands it runs itself (notebook cells,
`labkit shell`). Nothing named `sbx` or `docker` is ever installed globally, and a real
tool that the mode uses is never shadowed.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .._core import paths
from . import modes

_SBX_SHIM = """#!/bin/sh
# labkit embedded mode: `sbx …` runs labkit's implementation (only on PATH inside labkit's commands).
exec {python} -m labkit sbx "$@"
"""

_DOCKER_SHIM = """#!/bin/sh
# labkit embedded mode: `docker model …` runs labkit's embedded Docker Model Runner CLI;
# every other docker command goes to the real docker client, if there is one.
if [ "$1" = model ]; then shift; exec {python} -m labkit model "$@"; fi
real=$(PATH={outer_path} command -v docker 2>/dev/null)
if [ -n "$real" ]; then exec "$real" "$@"; fi
echo "docker: not installed; in embedded mode labkit provides only \\`docker model …\\`" >&2
exit 127
"""


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)


def shim_dirs(res: modes.Resolution, outer_path: str | None = None) -> list[Path]:
    """The wrapper folders the resolved mode needs first on PATH (none in full live mode)."""
    outer = outer_path if outer_path is not None else os.environ.get("PATH", "")
    python = shlex.quote(sys.executable)
    dirs = []
    if res.sandboxes.kind == "embedded":
        d = paths.state_dir("shims", "sbx")
        _write(d / "sbx", _SBX_SHIM.format(python=python))
        dirs.append(d)
    if res.model_server.kind == "embedded":
        d = paths.state_dir("shims", "docker")
        _write(d / "docker", _DOCKER_SHIM.format(python=python, outer_path=shlex.quote(paths.without_shims(outer))))
        dirs.append(d)
    return dirs


def course_env(res: modes.Resolution) -> dict[str, str]:
    """Environment additions under which the course's command lines mean what they say."""
    outer = paths.without_shims(os.environ.get("PATH", ""))
    dirs = shim_dirs(res, outer)
    bindir = str(Path(sys.executable).parent)  # labkit, python, jupyter of the course environment
    path = os.pathsep.join([*map(str, dirs), bindir, outer])
    return {"PATH": path, "LABKIT_MODE_RESOLVED": res.label}
