"""Claude Code's environment and command line, generated for DMR's Anthropic Messages API.

Claude Code takes its server from ``ANTHROPIC_BASE_URL`` (the root, without ``/v1``: it appends
``/v1/messages`` itself). Every model alias it may use in the background (opus, sonnet, haiku,
sub-agents) must name the local model, or those calls ask for a model DMR does not have.
The switches below stop its telemetry, error reports and other non-essential traffic, so the
model port is the only place it goes. Pure functions; ``write`` saves an env file for a shell.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .._core import paths

# Claude Code refuses to start non-interactively without a credential; DMR ignores it.
API_KEY_PLACEHOLDER = "dmr-local"
MAX_TURNS = 4  # a bounded run: the small model loops, and a course cell must end


def dmr_base_url(port: int | None = None, host: str = "host.docker.internal") -> str:
    """DMR's root as a sandbox reaches it; Claude Code adds /v1/messages (DMR also serves /anthropic/...)."""
    return f"http://{host}:{port or paths.dmr_port()}"


@dataclass(frozen=True)
class Settings:
    """The model and where it is."""

    model: str = "ai/smollm2"
    base_url: str = ""  # empty: dmr_base_url()
    max_turns: int = MAX_TURNS
    context_window: int = 8192  # the model's n_ctx; Claude Code assumes 1M for a model it does not know
    max_output_tokens: int = 1024  # else it asks for 32000, more than the whole context

    @property
    def url(self) -> str:
        return (self.base_url or dmr_base_url()).rstrip("/")


def env(settings: Settings = Settings()) -> dict[str, str]:
    """The variables, each for a reason (in the comment)."""
    m = settings.model
    return {
        "ANTHROPIC_BASE_URL": settings.url,             # the model server, not api.anthropic.com
        "ANTHROPIC_API_KEY": API_KEY_PLACEHOLDER,       # -p needs a credential; DMR ignores it
        "ANTHROPIC_MODEL": m,                           # the main model
        "ANTHROPIC_DEFAULT_OPUS_MODEL": m,              # each alias Claude Code may pick in the background
        "ANTHROPIC_DEFAULT_SONNET_MODEL": m,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": m,             # title/summary calls use the "small fast" model
        "CLAUDE_CODE_SUBAGENT_MODEL": m,                # sub-agents too
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(settings.context_window),  # when to compact
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(settings.max_output_tokens),  # max_tokens of each request
        "DISABLE_TELEMETRY": "1",                       # no usage metrics
        "DISABLE_ERROR_REPORTING": "1",                 # no crash reports
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no update checks, release notes, feedback
        "IS_SANDBOX": "1",                              # it runs in a sandbox: bypassPermissions may run as root
    }


def argv(task: str, settings: Settings = Settings(), executable: str = "claude") -> list[str]:
    """A non-interactive run that ends: print mode, a turn limit, no permission prompts."""
    return [executable, "-p", task, "--model", settings.model, "--max-turns", str(settings.max_turns),
            "--permission-mode", "bypassPermissions", "--no-session-persistence", "--bare"]


def env_file(settings: Settings = Settings()) -> str:
    """The variables as ``export`` lines, for a shell (``. claude.env``)."""
    lines = ["# Claude Code against the local model; written by labkit (labkit/agents/claude.py)."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env(settings).items()]
    return "\n".join(lines) + "\n"


def write(path: Path, settings: Settings = Settings()) -> Path:
    """Write ``env_file`` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env_file(settings))
    return path
