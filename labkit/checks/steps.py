"""The building blocks of the steps' checkpoints: each reads the state a step leaves behind, prints nothing.

A checkpoint never trusts that a cell ran: it reads the model store and API, `sbx ls`, a
command run inside the sandbox, the proxy's audit records, files in the workspace (see
``evidence``), and returns one ``CheckResult``. The notebook cells (``cells``) combine and print them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import fixes
from ..records import display_name
from .evidence import (
    AGENT_PATH,
    CHAT_PATH,
    HOST_ALIAS,
    MODELS_PATH,
    crossing,
    is_live,
    no_crossing,
    pretty_path,
    workspace_of,
)
from .result import CheckResult, failed, guarded, passed

if TYPE_CHECKING:
    from ..lab import Lab


def model_pulled(lab: Lab, model: str) -> CheckResult:
    """Step 1: ``model`` is in the local store (`docker model ls`) and the OpenAI API lists it."""
    what = f"Step 1: the model {model} is in the local store"

    def probe() -> CheckResult:
        wanted = display_name(model)
        local = next((m for m in lab.models() if wanted in {display_name(t) for t in m.tags}), None)
        if local is None:
            return failed(f"Step 1: {model} is not in the local model store", fixes.pull_model(model),
                          ["docker model ls: not listed"])
        ids = [i for i in lab.model_ids() if display_name(i) == wanted]
        evidence = [f"docker model ls: {local.name} ({local.parameters}, {local.quantization}, {local.size})"]
        if not ids:
            return failed(f"Step 1: {model} is pulled but {lab.endpoints.host}/models does not list it",
                          f"check the runner: {fixes.DMR_STATUS}", evidence)
        evidence.append(f"GET /engines/llama.cpp/v1/models: id {ids[0]}")
        return passed(f"{what} and the model API serves it as {ids[0]}", evidence)

    return guarded(what, probe)


def sandbox_listed(lab: Lab, name: str) -> CheckResult:
    """Step 2: `sbx ls` lists the sandbox."""
    what = f"Step 2: sandbox {name} exists"

    def probe() -> CheckResult:
        info = lab.sandbox(name).info
        if info is None:
            return failed(f"Step 2: `sbx ls` does not list a sandbox named {name}",
                          fixes.create_sandbox(name), ["sbx ls: not listed"])
        return passed(f"{what} (agent {info.agent})", [f"sbx ls: {info.name} {info.agent} {info.status}"])

    return guarded(what, probe)


def inside_sandbox(lab: Lab, name: str) -> CheckResult:
    """Step 4: a command really runs inside: `hostname` there answers the sandbox's name."""
    what = f"Step 4: commands run inside sandbox {name}"

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return failed(f"Step 4: there is no sandbox named {name}", fixes.create_sandbox(name))
        result = box.exec("hostname", echo=False)
        got = result.stdout.strip()
        evidence = [f"sbx exec {name} hostname: {got or result.error or f'exit {result.returncode}'}"]
        if result.ok and lab.tier == "process":
            # no UTS namespace in the process tier: the command ran, but the hostname is the host's
            return passed(f"{what} (process tier: own hostname not enforced)", evidence)
        if not result.ok or got != name:
            return failed(f"Step 4: hostname inside {name} is not {name}", f"sbx exec {name} hostname", evidence)
        return passed(f"{what} (hostname = {name})", evidence)

    return guarded(what, probe)


def networking_facts(lab: Lab, name: str) -> CheckResult:
    """Step 5's three facts, each run inside: localhost is the sandbox's own (refused),
    host.docker.internal resolves, model-runner.docker.internal does not."""
    what = f"Step 5: the three networking facts hold inside {name}"
    port = lab.endpoints.port

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return failed(f"Step 5: there is no sandbox named {name}", fixes.create_sandbox(name))
        refused = box.exec(f"curl -s -o /dev/null localhost:{port}", echo=False)
        alias = box.exec(f"getent hosts {HOST_ALIAS}", echo=False)
        other = box.exec("getent hosts model-runner.docker.internal", echo=False)
        facts = [
            (refused.returncode == 7, f"curl localhost:{port} inside: "
             + ("connection refused (curl exit 7)" if refused.returncode == 7 else f"curl exit {refused.returncode}")),
            (alias.ok, f"getent hosts {HOST_ALIAS}: " + ("resolves" if alias.ok else "does not resolve")),
            (other.returncode == 2, "getent hosts model-runner.docker.internal: "
             + ("does not resolve" if other.returncode == 2 else "resolves")),
        ]
        evidence = [text for _, text in facts]
        if all(ok for ok, _ in facts):
            return passed(what, evidence)
        wrong = next(text for ok, text in facts if not ok)
        return failed(f"Step 5: unexpected inside {name}: {wrong}",
                      f"check the isolation tier ({fixes.DOCTOR}; {lab.isolation})", evidence)

    return guarded(what, probe)


def _allowed_request(lab: Lab, sandbox: str, path: re.Pattern[str], step: str, what: str, route: str,
                     fix: str, live_note: str) -> CheckResult:
    """An allowed, answered request from ``sandbox`` to the model port on ``path`` (live: the log row)."""
    evidence = crossing(lab, sandbox, path)
    if evidence is None:
        reason, last = no_crossing(lab, sandbox, route)
        return failed(f"{step}: {reason}", fix, last)
    return passed(f"{step}: {what}" + (f" ({live_note})" if is_live(lab) else ""), [evidence])


def reached_model_api(lab: Lab, name: str) -> CheckResult:
    """Step 5: the sandbox listed the models through the proxy (an allowed GET …/v1/models, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/models"
    return guarded("Step 5", lambda: _allowed_request(
        lab, name, MODELS_PATH, "Step 5", f"sandbox {name} reached the model API through the proxy",
        "GET …/v1/models", fix, "sbx policy log has no paths: any allowed request to the model port counts"))


def chat_completion(lab: Lab, name: str) -> CheckResult:
    """Step 6: a chat completion crossed the boundary (an allowed POST …/chat/completions, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/chat/completions -H 'Content-Type: application/json' -d …"
    return guarded("Step 6", lambda: _allowed_request(
        lab, name, CHAT_PATH, "Step 6", f"sandbox {name} ran a chat completion across the boundary",
        "POST …/chat/completions", fix,
        "sbx policy log has no paths: an allowed request to the model port is what it can show"))


def _sdk_script_facts(lab: Lab, script: Path) -> tuple[list[str], str]:
    """What the script shows (evidence) and what is wrong with it ('' when it is right)."""
    if not script.is_file():
        return [f"workspace: {pretty_path(script)} does not exist"], "missing"
    text = script.read_text(errors="replace")
    evidence = [f"workspace: {script.name} exists"]
    if "OpenAI(" not in text or "openai" not in text:
        return evidence, "it does not create an OpenAI SDK client"
    wanted = f"{HOST_ALIAS}:{lab.endpoints.port}"
    if wanted not in text:
        return evidence, f"its base_url does not point at {wanted}"
    evidence.append(f"{script.name}: OpenAI(base_url=…{wanted}…)")
    return evidence, ""


def sdk_client(lab: Lab, name: str, workspace: str | Path | None = None,
               script: str = "test_local.py") -> CheckResult:
    """Step 7: ``script`` in the workspace points the OpenAI SDK at the local endpoint, and a chat
    completion from the sandbox went through the proxy after it was written."""
    what = f"Step 7: {script} pointed the OpenAI SDK at {HOST_ALIAS}:{lab.endpoints.port}"

    def probe() -> CheckResult:
        folder = workspace_of(lab, name, workspace)
        if folder is None:
            return failed(f"Step 7: cannot find {name}'s workspace", "pass workspace= (the folder of `sbx create`)")
        path = folder / script
        evidence, problem = _sdk_script_facts(lab, path)
        run = f"sbx exec {name} python3 {script}"
        if problem == "missing":
            return failed(f"Step 7: there is no {script} in {name}'s workspace",
                          f"write it (Step 7's cat > {script} <<'EOF' …), then: {run}", evidence)
        if problem:
            return failed(f"Step 7: {script} exists but {problem}", f"compare it with Step 7's {script}", evidence)
        crossed = crossing(lab, name, CHAT_PATH, since=path.stat().st_mtime)
        if crossed is None:
            return failed(f"Step 7: no chat completion from {name} went through the proxy since {script} was written",
                          run, evidence)
        note = " (sbx policy log: a request to the model port after it was written)" if is_live(lab) else \
            " and its chat completion went through the proxy"
        return passed(what + note, [*evidence, crossed])

    return guarded("Step 7", probe)


def agent_reached(lab: Lab, name: str) -> CheckResult:
    """Step 8: the agent's requests (chat, Responses or Messages API) reached the local model through the proxy."""
    fix = f"run the agent in {name} with its generated configuration (notebook 08)"

    def probe() -> CheckResult:
        crossed = crossing(lab, name, AGENT_PATH)
        if crossed is None:
            reason, last = no_crossing(lab, name, "model request")
            return failed(f"Step 8: {reason}", fix, last)
        return passed("", [crossed])

    return guarded("Step 8", probe)


def blocked_by_deny(lab: Lab, name: str) -> CheckResult:
    """Step 8, "try breaking it": a request from ``name`` to the model port was blocked by a deny rule."""
    what = f"Step 8: the deny rule blocked {name}'s requests to {lab.endpoints.rule}"
    fix = f"{fixes.deny_network(lab.endpoints.rule)}, then run the agent in {name} again"

    def probe() -> CheckResult:
        crossed = crossing(lab, name, blocked=True)
        if crossed is None:
            return failed(f"Step 8: no request from {name} to {lab.endpoints.rule} was blocked by a deny rule", fix)
        return passed(what, [crossed])

    return guarded("Step 8", probe)
