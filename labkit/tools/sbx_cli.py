"""Drive `sbx` through its CLI and return labkit's records, whatever sbx version answers.

The argv prefix is a parameter: ``["sbx"]`` for the real tool, ``[python, "-m", "labkit",
"sbx"]`` for labkit's embedded one, which prints the same shapes. Syntax that changed between
versions (policy scope flags, `init` vs `set-default`, `policy ls` formats) is chosen from
`sbx version`, read once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import fixes
from ..errors import ToolError
from ..records import PolicyLogEntry, PolicyRule, SandboxInfo
from . import sbx_output
from ._proc import Cli, Completed
from .sbx_output import SbxVersion

PRESETS = ("allow-all", "balanced", "deny-all")


class SbxCli(Cli):
    """`sbx` as typed calls; every known failure raises a ``ToolError`` with the fix."""

    tool = "sbx"
    install_fix = fixes.INSTALL_SBX
    timeout_fix = "check that `sbx ls` answers in a terminal (it may ask you to sign in: sbx login)"

    def __init__(self, prefix: Sequence[str] = ("sbx",), timeout: float = 60.0, long_timeout: float = 900.0,
                 fixes: Mapping[str, str] | None = None) -> None:
        super().__init__(prefix, timeout, fixes)
        self.long_timeout = long_timeout  # create and exec: a first create may pull an image
        self._version: SbxVersion | None = None

    def classify(self, done: Completed) -> ToolError | None:
        return sbx_output.classify(done.text, self._version)

    def version(self) -> SbxVersion:
        """sbx's version (cached): it decides which syntax the other calls use."""
        if self._version is None:
            self._version = sbx_output.parse_version(self.run(["version"]).text)
        return self._version

    # ------------------------------------------------------------ sandboxes

    def ls(self) -> list[SandboxInfo]:
        return sbx_output.parse_ls(self.run(["ls", "--json"]).out)

    def get(self, name: str) -> SandboxInfo | None:
        return next((box for box in self.ls() if box.name == name), None)

    def exists(self, name: str) -> bool:
        return self.get(name) is not None

    def create(self, name: str, agent: str = "shell", path: str | Sequence[str] = ".") -> SandboxInfo:
        """`sbx create --name NAME AGENT PATH…`, then the sandbox as `sbx ls` reports it."""
        paths = [path] if isinstance(path, str) else list(path)
        self.run(["create", "--name", name, agent, *paths], timeout=self.long_timeout)
        box = self.get(name)
        if box is None:
            raise self.refix(ToolError(f"`sbx create` succeeded but `sbx ls` does not list '{name}'",
                                       "run `sbx ls` in a terminal and check the name", "command_failed"))
        return box

    def exec_args(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
                  workdir: str | None = None) -> list[str]:
        """The arguments of `sbx exec` (for a caller that streams the command itself)."""
        args = ["exec"]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["-w", workdir]
        return [*args, name, *argv]

    def exec(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
             workdir: str | None = None, timeout: float | None = None) -> tuple[int, str, str]:
        """Run ``argv`` inside the sandbox: (exit code, stdout, stderr) of the command itself.

        `sbx exec` passes the command's exit code through, so a missing sandbox would look
        like a command exiting 1: the sandbox is looked up in `sbx ls` first.
        """
        self.require(name)
        done = self.run(self.exec_args(name, argv, env, workdir), timeout=timeout or self.long_timeout, check=False)
        return done.code, done.out, done.err

    def require(self, name: str) -> SandboxInfo:
        """The sandbox, or a ``sandbox_not_found`` error."""
        box = self.get(name)
        if box is None:
            raise self.refix(sbx_output.missing_sandbox(name))
        return box

    def stop(self, name: str) -> None:
        self.run(["stop", name])

    def rm(self, name: str, missing_ok: bool = False) -> bool:
        """`sbx rm -f NAME` (without a TTY, sbx wants --force); False when it was already gone."""
        try:
            self.run(["rm", "-f", name])
        except ToolError as err:
            if missing_ok and err.kind == "sandbox_not_found":
                return False
            raise
        return True

    # ------------------------------------------------------------ policy
    # Rules are changed only as the commands a notebook shows (``Lab.Policy``); these read them back.

    def scope_args(self, sandbox: str | None) -> list[str]:
        """Global is the bare form; a sandbox is `--sandbox NAME` from v0.32, positional before."""
        if not sandbox:
            return []
        return ["--sandbox", sandbox] if self.version().at_least(0, 32) else [sandbox]

    def policy_rules(self) -> list[PolicyRule]:
        """The network rules: `--json` from v0.35 (`--wide` if that is not the documented JSON), else the table."""
        if not self.version().at_least(0, 35):
            return sbx_output.parse_policy_table(self.run(["policy", "ls"]).out)
        out = sbx_output.strip_noise(self.run(["policy", "ls", "--json"]).out)
        data = sbx_output.json_or_none(out)
        if isinstance(data, list) or (isinstance(data, dict) and "rules" in data):
            return sbx_output.parse_policy_json(data)
        return sbx_output.parse_policy_table(self.run(["policy", "ls", "--wide"]).out)

    def policy_log(self, sandbox: str | None = None) -> list[PolicyLogEntry]:
        """`sbx policy log [SANDBOX] --json` (the sandbox is positional), blocked first, newest first."""
        return sbx_output.parse_policy_log(self.run(["policy", "log", *([sandbox] if sandbox else []), "--json"]).out)

    def policy_init(self, preset: str = "balanced") -> None:
        """Choose the preset: `policy init` from v0.34, `policy set-default` before."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
        verb = "init" if self.version().at_least(0, 34) else "set-default"
        self.run(["policy", verb, preset])

    def policy_check(self, target: str, sandbox: str | None = None) -> bool:
        """`sbx policy check network TARGET` (v0.35+): would the policy let it through?

        It matches the literal name, while enforcement rewrites `host.docker.internal` to
        `localhost` first (docs/sbx-dmr-facts.md §1.6): check `localhost:PORT` for host services.
        """
        version = self.version()
        if not version.at_least(0, 35):
            raise self.refix(ToolError(f"`sbx policy check` needs sbx v0.35 or newer (this is {version})",
                                       "upgrade sbx, or read the rules: sbx policy ls", "unsupported"))
        args = ["policy", "check", "network", *(["--sandbox", sandbox] if sandbox else []), target]
        done = self.run(args, check=False)  # a denied target may exit non-zero: the text decides
        verdict = sbx_output.parse_check(done.text)
        if verdict is None:
            raise self.error(args, done)
        return verdict
