"""The pinned agents as `make lab` installed them: each binary runs and reports its pin."""

from __future__ import annotations

import pytest

from labkit.agents import install
from labkit.commands import doctor

pytestmark = [pytest.mark.agents, pytest.mark.timeout(60)]


@pytest.mark.parametrize("name", ["codex", "claude"])
def test_the_binary_reports_the_pinned_version(name: str):
    assert install.version(name) == install.pins()[name].version
    assert install.installed_version(name) == install.pins()[name].version


@pytest.mark.parametrize("name", ["codex", "claude"])
def test_the_binary_lives_in_the_prefix_a_sandbox_mounts(name: str):
    assert install.require(name).is_relative_to(install.prefix())


def test_doctor_reports_both_agents_and_codex_doctors_verdict():
    lines = {c.key: c for c in (doctor.check_agent("codex"), doctor.check_agent("claude"))}
    assert lines["codex"].ok and "@openai/codex 0.171.0" in lines["codex"].detail
    assert lines["claude"].ok and "@anthropic-ai/claude-code " in lines["claude"].detail
    from labkit.runtime import probes

    verdict = doctor.check_codex_doctor(probes.probe_dmr())
    assert verdict.detail.startswith("codex doctor: ") and " checks pass" in verdict.detail


def test_a_missing_agent_is_a_doctor_line_with_the_fix_not_a_blocker(tmp_path, monkeypatch):
    monkeypatch.setenv(install.PREFIX_ENV, str(tmp_path))
    check = doctor.check_agent("codex")
    assert not check.ok and "not installed" in check.detail and "make lab" in check.fix
    assert check.needed_by == ["agents"], "agents never block the course"
