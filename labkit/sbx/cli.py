"""The embedded ``sbx`` command (``labkit sbx …``): same syntax and output shapes as sbx.

Sandbox commands live here; ``sbx policy …`` is in :mod:`.policy_cli`. Exit statuses: 0 ok,
1 a user error with a message saying what to type next, 2 bad arguments. ``sbx exec``
returns the command's own status, and 125 when ``sbx exec`` itself fails (no such sandbox,
bad arguments, the proxy cannot start), 126 when the command cannot run, 127 when it is not
found, like ``docker exec``. (Real sbx returns 1 for a missing sandbox, which a command exiting
1 cannot be told apart from, docs/sbx-dmr-facts.md §1.1, SR#504; ours can.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from .._core.cliutil import Command, Parser, UsageError, confirm, dispatch, fail, table
from ..errors import LabError
from . import isolation, runtime, store

EXEC_FAILED = 125
# The sbx release whose syntax and output shapes this emulation follows (docs/sbx-dmr-facts.md Part 1).
EMULATED_SBX_VERSION = "0.45.0"

USAGE = """usage: sbx COMMAND [ARGS…]   (labkit's embedded sbx)

commands:
  create [--name N] AGENT PATH   create a sandbox (agents: shell, codex, claude)
  ls [--json] [-q]               list sandboxes
  exec [-e K=V] [-w DIR] N CMD…  run a command inside (exit code passed through; 125 = no such sandbox)
  run N [-- ARGS…]               the agent inside (a shell for shell sandboxes; needs a terminal)
  stop N…                        stop what runs in a sandbox (its home is kept)
  rm [-f] [--all] N…             remove sandboxes and their homes
  policy …                       network policy: init, allow, deny, rm, ls, check, reset, log
  version                        show the version"""


def _parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"ERROR: invalid -e '{item}': use KEY=VALUE, or KEY to copy it from here")
        if sep:
            env[key] = value
        elif key in os.environ:  # sbx: "a bare KEY to take the value from the current environment"
            env[key] = os.environ[key]
    return env


def cmd_create(argv: list[str]) -> int:
    p = Parser(prog="sbx create", description="Create a sandbox for an agent with a workspace.")
    p.add_argument("--name", help="sandbox name (default: AGENT-WORKDIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the name")
    p.add_argument("agent", help=f"agent: {', '.join(store.AGENTS)}")
    p.add_argument("paths", nargs="+", metavar="PATH", help="workspace folder (mounted read-write at the same path)")
    args = p.parse_args(argv)
    if len(args.paths) > 1:
        return fail("the embedded sandbox takes one workspace PATH")
    sandbox = runtime.create(args.agent, args.paths[0], args.name)
    if args.quiet:
        print(sandbox.name)
        return 0
    tier = isolation.detect()
    print(f"✓ Created sandbox '{sandbox.name}'")
    print(f"  Workspace: {sandbox.workspace} (direct mount)")
    print(f"  Agent: {sandbox.agent}")
    print(f"  Isolation: {tier.name} — {tier.detail}")
    if tier.weaker:
        print(f"  Why: {tier.reason}")
    return 0


def cmd_ls(argv: list[str]) -> int:
    p = Parser(prog="sbx ls", description="List sandboxes with their agent, status, ports and workspace.")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")
    args = p.parse_args(argv)
    boxes = runtime.list_sandboxes()
    if args.json:
        # sbx omits "ports" when there are none (docs/sbx-dmr-facts.md §1.4)
        print(json.dumps({"sandboxes": [{"name": b.name, "agent": b.agent, "status": b.status,
                                         "workspaces": list(b.workspaces)} for b in boxes]}))
    elif args.quiet:
        for b in boxes:
            print(b.name)
    elif not boxes:
        print("No sandboxes found.")
    else:
        rows = [(b.name, b.agent, b.status, ",".join(b.ports), ",".join(b.workspaces)) for b in boxes]
        print(table(("SANDBOX", "AGENT", "STATUS", "PORTS", "WORKSPACE"), rows))
    return 0


def cmd_exec(argv: list[str]) -> int:
    p = Parser(prog="sbx exec", description="Run a command in a sandbox. Exit status: the command's; "
               "125 when sbx exec itself fails (e.g. no such sandbox), 126 cannot run, 127 not found.")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set a variable inside")
    p.add_argument("-w", "--workdir", help="working directory inside (default: the workspace)")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open (it always is)")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("sandbox")
    p.add_argument("command", nargs=argparse.REMAINDER)
    try:
        args = p.parse_args(argv)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise UsageError(f"{p.format_usage().rstrip()}\nERROR: give a command to run, e.g. sbx exec NAME hostname")
        env = _parse_env(args.env)
        if args.tty and sys.stdin.isatty():
            return runtime.interactive(args.sandbox, command, env)
        if args.detach:
            runtime.popen(args.sandbox, command, env, args.workdir, detach=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return 0
        runtime.exec_replace(args.sandbox, command, env, args.workdir)  # returns only on failure
        return EXEC_FAILED
    except (UsageError, LabError) as exc:
        return fail(str(exc), EXEC_FAILED)


def cmd_run(argv: list[str]) -> int:
    p = Parser(prog="sbx run", description="Start the sandbox's agent on this terminal (a shell for a shell "
               "sandbox); arguments after -- go to it. Creates the sandbox from AGENT PATH when it is missing.")
    p.add_argument("--name", help="name when creating")
    p.add_argument("target", metavar="SANDBOX|AGENT")
    p.add_argument("paths", nargs="*", metavar="PATH")
    sep = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:sep]), argv[sep + 1:]
    if not sys.stdin.isatty():
        return fail(f"sbx run needs a terminal; in notebooks and scripts use: sbx exec {args.target} COMMAND")
    name = args.target
    if args.target in store.AGENTS and (args.paths or args.name):
        name = _existing_or_created(args.target, (args.paths or ["."])[0], args.name)
    return runtime.interactive(name, [*runtime.agent_command(name), *extra])


def _existing_or_created(agent: str, path: str, name: str | None) -> str:
    """sbx run AGENT PATH: the sandbox of that name if it exists, else a new one."""
    name = name or store.default_name(agent, os.path.realpath(path))
    try:
        store.get(name)
        return name
    except store.SandboxNotFound:
        return runtime.create(agent, path, name).name


def cmd_stop(argv: list[str]) -> int:
    p = Parser(prog="sbx stop", description="Stop sandboxes (they keep their state; `sbx exec` starts them).")
    p.add_argument("names", nargs="+", metavar="SANDBOX")
    code = 0
    for name in p.parse_args(argv).names:
        try:
            runtime.stop(name)
            print(f"✓ Stopped sandbox '{name}'")
        except store.SandboxError as exc:
            code = fail(str(exc))
    return code


def cmd_rm(argv: list[str]) -> int:
    p = Parser(prog="sbx rm", description="Remove sandboxes: stop them and delete their home and state.")
    p.add_argument("-f", "--force", action="store_true", help="skip the confirmation prompt")
    p.add_argument("--all", action="store_true", help="remove every sandbox")
    p.add_argument("names", nargs="*", metavar="SANDBOX")
    args = p.parse_args(argv)
    names = [b.name for b in runtime.list_sandboxes()] if args.all else args.names
    if not names:
        return 0 if args.all else fail("name a sandbox to remove (or --all); see: sbx ls")
    for name in names:
        store.get(name)  # a clear error before any prompt
    answer = confirm(f"Remove {', '.join(names)} and delete {'their' if len(names) > 1 else 'its'} home?", args.force)
    if answer is None:
        return fail("sbx rm asks for confirmation and there is no terminal; rerun with -f")
    if not answer:
        return 1
    for name in names:
        runtime.remove(name)
        print(f"✓ Removed sandbox '{name}'")
    return 0


def cmd_version(argv: list[str]) -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("labkit")
    except PackageNotFoundError:
        ver = "dev"
    # The emulated sbx version comes first: adapters pick the command syntax from it.
    print(f"sbx version v{EMULATED_SBX_VERSION} (labkit's embedded sbx, labkit {ver})")
    return 0


def cmd_policy(argv: list[str]) -> int:
    from .policy_cli import main as policy_main

    return policy_main(argv)


COMMANDS: dict[str, Command] = {
    "create": cmd_create, "ls": cmd_ls, "exec": cmd_exec, "run": cmd_run, "stop": cmd_stop, "rm": cmd_rm,
    "policy": cmd_policy, "version": cmd_version,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return dispatch(args, COMMANDS, USAGE, "unknown command '{}'; see: sbx --help")
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except LabError as exc:
        return fail(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())
