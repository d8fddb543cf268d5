"""`labkit shell`: a shell in which the course's `sbx …` and `docker model …` mean this mode's tools."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..runtime import modes, probes
from ..runtime.routing import course_env


def main(argv: list[str]) -> int:
    """`labkit shell [-c COMMAND]`: a bash in which the course's commands work in the current mode."""
    parser = argparse.ArgumentParser(
        prog="labkit shell",
        description="A shell where `sbx …` and `docker model …` mean the current mode's tools "
                    "(labkit's in embedded mode; nothing is shadowed in live mode).")
    parser.add_argument("-c", dest="command", help="run this command line and exit with its status")
    parser.add_argument("--mode", choices=modes.MODES, help="override LABKIT_MODE (default: auto)")
    args = parser.parse_args(argv)
    try:
        res = modes.resolve(args.mode, dmr=probes.probe_dmr(), sbx=probes.probe_sbx())
    except modes.ModeError as exc:
        print(f"labkit shell: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, **course_env(res)}
    if args.command is not None:
        return subprocess.call(["bash", "-c", args.command], env=env)
    print(f"labkit shell — {res.describe()}\n`exit` leaves it.", file=sys.stderr)
    env["PS1"] = f"(labkit {res.label}) \\w$ "
    return subprocess.call(["bash", "--norc", "-i"], env=env)
