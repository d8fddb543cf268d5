"""The ``labkit`` command: a thin dispatcher over the package's own command modules.

Each sub-command lives in the module that owns it and exposes ``main(argv) -> int``; this
file only routes, so every piece stays small and testable on its own.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("labkit.commands.up", "up_main", "start the embedded lab (model server, policy proxy)"),
    "down": ("labkit.commands.up", "down_main", "stop the embedded lab"),
    "status": ("labkit.commands.up", "status_main", "show what runs, where, and its log"),
    "doctor": ("labkit.commands.doctor", "main", "pre-flight check: one line per prerequisite, and the fix"),
    "model": ("labkit.dmr.cli", "main", "embedded `docker model …` (same syntax)"),
    "docker": ("labkit.dmr.cli", "docker_main", "embedded `docker model …`, spelled `labkit docker model …`"),
    "sbx": ("labkit.sbx.cli", "main", "embedded `sbx …` (same syntax)"),
    "audit": ("labkit.sbx.audit", "main", "the policy proxy's raw audit records"),
    "shell": ("labkit.commands.shell", "main", "a shell where the course's `sbx`/`docker model` work in this mode"),
    "reset": ("labkit.commands.reset", "main", "between classes: remove sandboxes, reset policy, archive audit log"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items())
    return f"usage: labkit COMMAND [ARGS…]\n\ncommands:\n{rows}\n\nRun `labkit COMMAND --help` for details."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"labkit: unknown command '{name}'. Run `labkit --help` for the list.", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
