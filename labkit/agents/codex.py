"""Codex's configuration, generated: the same files for the embedded lab and for live mode.

Codex 0.171 reads ``$CODEX_HOME/config.toml`` and, for ``--profile NAME``, the profile file
``$CODEX_HOME/NAME.config.toml`` (a ``[profiles.NAME]`` table is refused). It ignores
``OPENAI_BASE_URL`` and cannot override its built-in provider ids, so the model server is an
own provider, ``dmr``. Every line says why, because the notebook shows these files.
Pure functions return the texts and the command; ``write`` puts them in a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._core import paths

PROFILE = "dmr"
INSTRUCTIONS_FILE = "instructions.md"
# The slimmest prompt Codex allows (docs/codex-local.md §2.4): one line instead of its ~17 KB default.
INSTRUCTIONS = "You are a small coding agent. Run shell commands with exec_command when needed. Answer briefly.\n"


def dmr_base_url(port: int | None = None, host: str = "host.docker.internal") -> str:
    """DMR's OpenAI-compatible root as a sandbox reaches it (released DMR ≤ 1.2.6 serves /v1/responses)."""
    return f"http://{host}:{port or paths.dmr_port()}/v1"


@dataclass(frozen=True)
class Settings:
    """What varies between the lab and live mode: the model, where it is, and how much it can read."""

    model: str = "ai/smollm2"
    base_url: str = ""  # empty: dmr_base_url()
    context_window: int = 8192  # the model's n_ctx; Codex compacts before it overflows
    profile: str = PROFILE

    @property
    def url(self) -> str:
        return self.base_url or dmr_base_url()


def _s(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value)


Row = tuple[str, str]  # (TOML line, why); ("", "") is a blank line


def _toml(title: str, rows: list[Row]) -> str:
    """The rows as TOML with the reasons aligned in one comment column."""
    width = max(len(code) for code, why in rows if why) + 2
    lines = [f"# {title}"]
    for code, why in rows:
        lines.append(f"{code:<{width}}# {why}" if why else code)
    return "\n".join(lines) + "\n"


def config_toml() -> str:
    """``$CODEX_HOME/config.toml``: what must hold for every profile (nothing leaves the machine)."""
    return _toml("Codex's base configuration, written by labkit (labkit/agents/codex.py).", [
        ("check_for_update_on_startup = false", "no release check against api.github.com"),
        ("", ""),
        ("[analytics]", ""),
        ("enabled = false", "else OTLP metrics go to ab.chatgpt.com"),
        ("", ""),
        ("[features]", ""),
        ("plugins = false", "else a plugin sync reaches github.com, api.github.com and chatgpt.com"),
    ])


def profile_toml(settings: Settings, instructions_path: str) -> str:
    """``$CODEX_HOME/<profile>.config.toml``: the model, its server, and the slim prompt and tool set."""
    p = settings.profile
    return _toml(f"Profile {p!r} (codex --profile {p}), written by labkit (labkit/agents/codex.py).", [
        (f"model = {_s(settings.model)}", "the model as DMR names it"),
        (f"model_provider = {_s(p)}", "an own provider: built-in ids (openai, ollama) cannot be repointed"),
        (f"model_context_window = {settings.context_window}", "the model's context; Codex compacts before it"),
        (f"model_auto_compact_token_limit = {settings.context_window * 3 // 4}", "compact at 3/4 of it"),
        (f"model_instructions_file = {_s(instructions_path)}", "a one-line prompt instead of ~17 KB"),
        ("include_permissions_instructions = false", "no sandbox and approval text in the prompt"),
        ("include_environment_context = false", "no <environment_context> message in the prompt"),
        ('web_search = "disabled"', "no web_search tool (DMR refuses non-function tools)"),
        ('approval_policy = "never"', "nobody is there to approve: the run is non-interactive"),
        ('sandbox_mode = "danger-full-access"', "the Docker Sandbox (or labkit's) is the sandbox"),
        ("", ""),
        (f"[model_providers.{p}]", ""),
        (f"name = {_s('Docker Model Runner')}", "shown in Codex's messages"),
        (f"base_url = {_s(settings.url)}", "DMR's OpenAI-compatible API; Codex appends /responses"),
        ('wire_api = "responses"', 'the only wire API of Codex 0.171 ("chat" is refused)'),
        ("request_max_retries = 1", "fail fast: a local server does not flake"),
        ("stream_max_retries = 1", "the same for a broken stream"),
        ("stream_idle_timeout_ms = 600000", "a CPU model may think for minutes"),
        ("", ""),
        ("[features]", ""),
        ("goals = false", "no get_goal, create_goal, update_goal tools"),
        ("image_generation = false", "no image_generation tool (DMR refuses it)"),
        ("view_image = false", "no view_image tool: a text model cannot look"),
        ("", ""),
        ("[agents]", ""),
        ("enabled = false", "no multi_agent_v1 namespace tool (11 KB; DMR refuses it)"),
        ("", ""),
        ("[skills]", ""),
        ("include_instructions = false", "no 2 KB skills list in the prompt"),
        ("", ""),
        ("[tools.experimental_request_user_input]", ""),
        ("enabled = false", "no request_user_input tool: nobody answers"),
    ])


def argv(task: str, settings: Settings = Settings(), executable: str = "codex") -> list[str]:
    """The non-interactive run; the caller closes stdin (Codex waits for EOF on an open pipe)."""
    return [executable, "exec", "--profile", settings.profile, "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox", task]


def files(settings: Settings = Settings(), codex_home: str = "") -> dict[str, str]:
    """File name → text for ``$CODEX_HOME``; ``codex_home`` is the folder as Codex will see it
    (inside a sandbox it differs from the host's), because the instructions path is absolute."""
    home = codex_home.rstrip("/") or "."
    return {
        "config.toml": config_toml(),
        f"{settings.profile}.config.toml": profile_toml(settings, f"{home}/{INSTRUCTIONS_FILE}"),
        INSTRUCTIONS_FILE: INSTRUCTIONS,
    }


def write(folder: Path, settings: Settings = Settings(), codex_home: str = "") -> dict[str, Path]:
    """Write the files into ``folder`` (the host side of ``$CODEX_HOME``); returns name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in files(settings, codex_home or str(folder.resolve())).items():
        path = folder / name
        path.write_text(text)
        out[name] = path
    return out


def doctor_argv(settings: Settings = Settings(), executable: str = "codex") -> list[str]:
    """``codex doctor --json`` for this provider: doctor takes no ``--profile``, so the profile's
    provider comes as ``-c`` overrides (it then checks that the model server is reachable)."""
    p = settings.profile
    provider = f'{{name = "Docker Model Runner", base_url = {_s(settings.url)}, wire_api = "responses"}}'
    return [executable, "doctor", "--json", "-c", f"model_provider={_s(p)}", "-c", f"model={_s(settings.model)}",
            "-c", f"model_providers.{p}={provider}"]
