"""The configuration generators: pure, so every fact the notebook shows is checked here fast."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from labkit.agents import claude, codex, install

pytestmark = pytest.mark.fast

SETTINGS = codex.Settings(model="ai/smollm2:135M-Q4_1", base_url="http://host.docker.internal:12434/v1")


def test_codex_base_config_turns_off_what_leaves_the_machine():
    cfg = tomllib.loads(codex.config_toml())
    assert cfg == {"check_for_update_on_startup": False, "analytics": {"enabled": False},
                   "features": {"plugins": False}}


def test_codex_profile_points_an_own_provider_at_dmr_with_the_responses_api():
    cfg = tomllib.loads(codex.profile_toml(SETTINGS, "/h/instructions.md"))
    assert cfg["model"] == "ai/smollm2:135M-Q4_1" and cfg["model_provider"] == "dmr"
    assert cfg["model_providers"]["dmr"]["base_url"] == "http://host.docker.internal:12434/v1"
    assert cfg["model_providers"]["dmr"]["wire_api"] == "responses"
    assert "env_key" not in cfg["model_providers"]["dmr"], "an env_key that is unset stops Codex"
    assert cfg["web_search"] == "disabled"
    assert cfg["features"] == {"goals": False, "image_generation": False, "view_image": False}
    assert cfg["agents"] == {"enabled": False}
    assert "mcp_servers" not in cfg
    assert cfg["model_instructions_file"] == "/h/instructions.md"


def test_codex_profile_is_not_a_legacy_profiles_table():
    # Codex 0.171 refuses `[profiles.dmr]` in config.toml together with --profile
    assert "profiles" not in tomllib.loads(codex.config_toml())
    assert "[profiles" not in codex.profile_toml(SETTINGS, "/x")


def test_every_setting_line_says_why():
    for text in (codex.config_toml(), codex.profile_toml(SETTINGS, "/x")):
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                assert "  # " in line, f"no reason on: {line}"


def test_codex_default_base_url_is_the_host_from_inside_a_sandbox(monkeypatch):
    monkeypatch.setenv("LABKIT_DMR_PORT", "12555")
    assert codex.Settings().url == "http://host.docker.internal:12555/v1"
    assert codex.dmr_base_url(9, host="127.0.0.1") == "http://127.0.0.1:9/v1"


def test_codex_files_use_the_home_as_codex_sees_it():
    files = codex.files(SETTINGS, codex_home="/home/agent/.codex/")
    assert set(files) == {"config.toml", "dmr.config.toml", "instructions.md"}
    assert 'model_instructions_file = "/home/agent/.codex/instructions.md"' in files["dmr.config.toml"]
    assert len(files["instructions.md"]) < 200, "the slim prompt is one line"


def test_codex_write_puts_the_files_in_the_folder(tmp_path: Path):
    written = codex.write(tmp_path / "codex-home", SETTINGS)
    assert sorted(written) == ["config.toml", "dmr.config.toml", "instructions.md"]
    profile = tomllib.loads(written["dmr.config.toml"].read_text())
    assert Path(profile["model_instructions_file"]) == (tmp_path / "codex-home" / "instructions.md").resolve()


def test_codex_command_line_is_non_interactive_and_unsandboxed_inside_the_sandbox():
    assert codex.argv("fix it", SETTINGS) == ["codex", "exec", "--profile", "dmr", "--skip-git-repo-check",
                                              "--dangerously-bypass-approvals-and-sandbox", "fix it"]


def test_codex_doctor_gets_the_provider_as_overrides():
    argv = codex.doctor_argv(SETTINGS, "/bin/codex")
    assert argv[:3] == ["/bin/codex", "doctor", "--json"]
    provider = argv[argv.index("-c", 7) + 1]
    assert provider.startswith("model_providers.dmr=") and '"http://host.docker.internal:12434/v1"' in provider


def test_claude_env_names_the_local_model_for_every_alias():
    env = claude.env(claude.Settings(model="ai/smollm2:135M-Q4_1", base_url="http://host.docker.internal:12434/"))
    assert env["ANTHROPIC_BASE_URL"] == "http://host.docker.internal:12434", "no /v1 and no trailing slash"
    for key in ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"):
        assert env[key] == "ai/smollm2:135M-Q4_1"
    for key in ("DISABLE_TELEMETRY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_ERROR_REPORTING"):
        assert env[key] == "1"
    assert env["ANTHROPIC_API_KEY"] == claude.API_KEY_PLACEHOLDER
    assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "8192"


def test_claude_command_is_bounded_and_asks_nobody():
    argv = claude.argv("Say hi", claude.Settings(model="m", max_turns=3))
    assert argv[:5] == ["claude", "-p", "Say hi", "--model", "m"]
    assert argv[argv.index("--max-turns") + 1] == "3"
    assert argv[argv.index("--permission-mode") + 1] == "bypassPermissions"
    assert "--bare" in argv


def test_claude_env_file_is_sourceable(tmp_path: Path):
    path = claude.write(tmp_path / "claude.env", claude.Settings(model="ai/smollm2"))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and "export ANTHROPIC_MODEL=ai/smollm2" in lines


def test_the_pins_are_written_once():
    data = json.loads((Path(install.__file__).parent / "versions.json").read_text())
    assert {a.package: a.version for a in install.pins().values()} == {
        d["package"]: d["version"] for d in data.values()}
    assert install.pins()["codex"].version == "0.171.0"
    setup = (Path(__file__).parents[2] / "scripts" / "setup.sh").read_text()
    assert "labkit/agents/versions.json" in setup and "0.171.0" not in setup


def test_a_missing_agent_is_one_line_with_the_fix(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(install.PREFIX_ENV, str(tmp_path))
    assert install.executable("codex") is None and install.executable("claude") is None
    try:
        install.require("claude")
    except install.NotInstalled as exc:
        message = str(exc)
    assert "\n" not in message and "make lab" in message and "@anthropic-ai/claude-code" in message
