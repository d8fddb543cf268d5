"""What to type next: the fix strings labkit prints, each fact once.

A fix is the command that gets a learner unstuck, with at most a short note after it. The
adapters' errors, ``labkit doctor``, the services' status lines, the embedded CLIs and the
checkpoints all take theirs from here, so one problem reads the same wherever it shows up
(Docker Desktop's ``enable model-runner`` used to exist in four spellings). Fixes that only
make sense with their message (a line number, a log path) stay next to that message.

Pure strings and small functions of a name; imports nothing but the default port.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._core.paths import DEFAULT_DMR_PORT

# -- the course ---------------------------------------------------------------------------------

MAKE_LAB = "make lab"
SET_UP_COURSE = f"set up the course first: {MAKE_LAB} (from the course folder)"
INSTALL_AGENTS = f"{MAKE_LAB}   (it installs the pinned agents into .agents/)"
DOCTOR = "labkit doctor"
RUN_DOCTOR = f"run `{DOCTOR}`"
RUN_IN_TERMINAL = "run the command in a terminal to see why"  # a plain non-zero exit: its output says why
LLAMA_BUILD = "scripts/llama-build.sh --force"
REBUILD_LLAMA = f"{LLAMA_BUILD} .venv/bin/python   (in the course folder; about 4 minutes)"

# -- modes --------------------------------------------------------------------------------------

USE_EMBEDDED = "LABKIT_MODE=embedded"
USE_LIVE = "LABKIT_MODE=live"
RUN_EMBEDDED = f"run the course in embedded mode: {USE_EMBEDDED}"

# -- the embedded lab (labkit's model server and policy proxy) ----------------------------------

LABKIT_UP = "labkit up"
START_EMBEDDED = f"start the embedded lab: {LABKIT_UP}"
START_AGAIN = f"start it again: {LABKIT_UP}"
ENGINE_CRASH_EMBEDDED = f"send the request again (a fresh engine starts); if it crashes every time run: {DOCTOR}"


def embedded_models_only(shipped: str) -> str:
    """Embedded mode pulls only what labkit ships; any other model is live mode's."""
    return f"embedded mode serves only {shipped}; for other models use {USE_LIVE}"


def embedded(shipped: str) -> Mapping[str, str]:
    """Failure kind -> fix in embedded mode, replacing the live tools' advice (``labkit up``, not
    Docker Desktop). ``shipped``: the model embedded mode serves."""
    return {
        "dmr_not_running": START_EMBEDDED,
        "dmr_tcp_disabled": START_EMBEDDED,
        "daemon_not_running": START_EMBEDDED,
        "model_not_found": embedded_models_only(shipped),
        "engine_crashed": ENGINE_CRASH_EMBEDDED,
    }


# -- Docker Model Runner ------------------------------------------------------------------------

ENABLE_DMR_TCP = f"docker desktop enable model-runner --tcp {DEFAULT_DMR_PORT}"
START_DMR = f"{ENABLE_DMR_TCP}   (Docker Engine: docker model install-runner)"
ENABLE_DMR_TCP_SETTINGS = f"{ENABLE_DMR_TCP}   (or Settings → AI → host-side TCP)"
START_DOCKER = "start Docker Desktop (Linux: sudo systemctl start docker), then retry"
INSTALL_DOCKER_MODEL = f"install Docker Desktop (4.40+), or Docker Engine with docker-model-plugin; or {RUN_EMBEDDED}"
DMR_STATUS = "docker model status"
ENGINE_CRASH_LIVE = "send the request again (a fresh engine starts); if it crashes every time: docker model logs"


def pull_model(ref: str) -> str:
    return f"docker model pull {ref}"


# -- sbx ----------------------------------------------------------------------------------------

INSTALL_SBX = f"install Docker Sandboxes (sbx), or {RUN_EMBEDDED}"
SBX_LOGIN = "sign in once in a terminal: sbx login"
SBX_DAEMON = "run: sbx daemon start   (then check: sbx ls)"
SBX_POLICY_INIT = "sbx policy init balanced"
UPGRADE_SBX = f"upgrade sbx (see: sbx version), or {RUN_EMBEDDED}"
LIST_RULES = "sbx policy ls"


def create_sandbox(name: str) -> str:
    return f"sbx create --name {name} shell ."


def remove_sandbox(name: str) -> str:
    return f"sbx rm -f {name}"


def _scope(sandbox: str | None) -> str:
    return f" --sandbox {sandbox}" if sandbox else ""


def allow_network(resource: str, sandbox: str | None = None) -> str:
    return f"sbx policy allow network{_scope(sandbox)} {resource}"


def deny_network(resource: str, sandbox: str | None = None) -> str:
    return f"sbx policy deny network{_scope(sandbox)} {resource}"


def remove_rule(resource: str, sandbox: str | None = None) -> str:
    return f"sbx policy rm network{_scope(sandbox)} --resource {resource}"


def remove_rule_id(rule_id: str) -> str:
    return f"sbx policy rm network --id {rule_id}"


def allow_model_port(port: int = DEFAULT_DMR_PORT) -> str:
    """A sandbox reaches the model only through an allow rule for ``localhost:PORT`` (notebook 03)."""
    return f"allow the model port (notebook 03): {allow_network(f'localhost:{port}')}"


# -- programs on the host -----------------------------------------------------------------------


def apt_install(package: str) -> str:
    return f"apt-get install -y {package}"
