"""The widgets driven headless (``.value =``, ``.click()``) against the real embedded lab."""

from __future__ import annotations

import time

import pytest
from widget_helpers import MODEL, wait_for

from labkit import widgets
from labkit.lab import Lab
from labkit.widgets import PromptState

pytestmark = [pytest.mark.model, pytest.mark.timeout(90)]


def _policy_rows(lab: Lab, resource: str) -> list[str]:
    """The rows of `sbx policy ls --wide` (the real command) that name ``resource``."""
    out = lab.host("sbx policy ls --wide", echo=False).check().stdout
    return [line for line in out.splitlines() if resource in line.split()]


def _watch_reply(panel: widgets.PromptPanel) -> list[float]:
    """The times at which the panel's reply text changed (streaming means many, spread out)."""
    stamps: list[float] = []
    panel.reply_html.observe(lambda _: stamps.append(time.monotonic()), "value")
    return stamps


def _watch_states(panel: widgets.PromptPanel) -> list[PromptState]:
    """The states the panel's status line was drawn from, in order."""
    states: list[PromptState] = []
    panel._status.observe(lambda _: states.append(panel.state), "value")
    return states


def test_model_picker_reads_the_store(lab: Lab) -> None:
    picker = widgets.ModelPicker(lab)
    assert picker.value in lab.model_ids()
    label = picker.dropdown.options[0][0]
    assert picker.model is not None and picker.model.quantization in label and picker.model.size in label
    picker.value = MODEL  # the seed's spelling selects the id the API lists
    assert picker.value == lab.model_ids()[0] and picker.status == "" and picker.status_ok is None
    assert picker.value in picker.details.value
    picker.value = "ai/qwen3:8B-Q4_K_M"
    assert picker.status == ("✗ ai/qwen3:8B-Q4_K_M is not in the local model store — "
                             "fix: docker model pull ai/qwen3:8B-Q4_K_M")
    assert picker.status_ok is False and "#b42318" in picker._status.value  # red, from status_ok
    assert picker.value == lab.model_ids()[0]  # unchanged


def test_policy_switch_really_changes_sbx_policy(lab: Lab) -> None:
    resource = lab.endpoints.rule
    switch = widgets.PolicySwitch(lab)
    switch.value = "deny"
    assert switch.decision == "deny" and f"$ sbx policy deny network {resource}" in switch.transcript
    rows = _policy_rows(lab, resource)
    assert len(rows) == 1 and " deny " in f" {rows[0]} ", rows
    assert lab.policy.check(resource) is False
    assert "denied" in switch.in_force_html.value

    switch.toggle.value = "allow"
    rows = _policy_rows(lab, resource)
    assert len(rows) == 1 and " allow " in f" {rows[0]} ", rows
    assert lab.policy.check(resource) is True
    assert "sbx policy rm network --resource" in switch.transcript
    assert widgets.PolicySwitch(lab).value == "allow"  # a new switch reads the rule back

    switch.clear()
    assert switch.value is None and _policy_rows(lab, resource) == []
    assert "default deny applies" in switch.in_force_html.value
    switch.value = "allow"
    assert switch.decision == "allow"


def test_policy_switch_shows_changes_made_elsewhere_after_a_refresh(lab: Lab) -> None:
    resource = lab.endpoints.rule
    switch = widgets.PolicySwitch(lab)
    switch.value = "allow"
    lab.host(f"sbx policy deny network {resource}", echo=False).check()  # another cell, another terminal
    assert switch.value == "allow"  # not re-read yet
    switch.refresh_button.click()
    assert switch.value == "deny" and "denied (deny beats allow)" in switch.in_force_html.value
    for rule in lab.policy.rules_for(resource):
        if rule.decision == "allow":
            lab.host(f"sbx policy rm network --id {rule.id}", echo=False).check()
    switch.refresh()
    assert switch.value == "deny" and "in force for" in switch.in_force_html.value
    assert "denied (deny beats allow)" not in switch.in_force_html.value  # no allow rule left to beat
    switch.value = "allow"
    assert lab.policy.check(resource) is True


def test_prompt_panel_streams_from_the_host(lab: Lab) -> None:
    panel = widgets.PromptPanel(lab, MODEL, prompt="Say hello.", max_tokens=12)
    assert panel.state is PromptState.IDLE and panel.status == ""
    stamps = _watch_reply(panel)
    states = _watch_states(panel)
    panel.send_button.click()
    assert states == [PromptState.WAITING, PromptState.STREAMING, PromptState.DONE], states
    assert panel.status == "✓ reply from the local model, on the host", panel.status
    assert panel.status_ok is True and "#067647" in panel._status.value  # green, from the state
    assert panel.reply.strip() and panel.chunks >= 2
    assert panel.metrics is not None and panel.metrics.counted_from == "usage"
    assert 1 <= panel.metrics.tokens <= 12 and panel.metrics.first_token_s is not None
    assert len(stamps) >= panel.chunks  # one update per streamed chunk, not one at the end
    assert "tokens/s" in panel.metrics_html.value


def test_ctrl_enter_in_the_prompt_box_sends_what_was_typed(lab: Lab) -> None:
    panel = widgets.PromptPanel(lab, MODEL, prompt="", max_tokens=8)
    states = _watch_states(panel)
    panel.text.value = "Say hi."  # what the browser syncs as the learner types
    panel.text.submit()  # what Ctrl+Enter or Shift+Enter does in the box (the browser test presses it)
    assert states == [PromptState.WAITING, PromptState.STREAMING, PromptState.DONE], states
    assert panel.prompt == "Say hi." and panel.reply.strip()
    assert "Ctrl+Enter" in panel.text._esm and "shiftKey" in panel.text._esm


def test_prompt_panel_in_sandbox_goes_through_the_proxy(lab: Lab, panel_box: str) -> None:
    switch = widgets.PolicySwitch(lab)
    switch.value = "allow"
    audit = widgets.AuditView(lab, sandbox=panel_box)
    before = len(lab.audit.records(panel_box))
    panel = widgets.PromptPanel(lab, widgets.ModelPicker(lab, MODEL), sandbox=panel_box,
                                prompt="Count from one to ten.", max_tokens=16)
    panel.on_done(lambda _: audit.refresh())
    assert panel.target == "sandbox"
    stamps = _watch_reply(panel)
    states = _watch_states(panel)
    panel.send_button.click()
    assert states == [PromptState.WAITING, PromptState.STREAMING, PromptState.DONE], (states, panel.status)
    assert panel.status == f"✓ reply from the local model, requested inside {panel_box} through the policy proxy"
    assert panel.http_status == 200 and panel.reply.strip()
    assert panel.command.startswith(f"sbx exec {panel_box} curl -sS -N {lab.endpoints.sandbox}/chat/completions")
    # Streamed: the text arrived over time while curl ran, not in one piece at the end.
    assert len(stamps) >= 3 and stamps[-1] - stamps[0] > 0.05, stamps
    # The audit view shows the new, allowed request.
    wait_for(lambda: len(lab.audit.records(panel_box)) > before, what="the proxy's audit record")
    rows = audit.refresh()
    assert rows[0].sandbox == panel_box and rows[0].decision == "allow" and rows[0].status == 200
    assert rows[0].method == "POST" and rows[0].path.endswith("/chat/completions")
    assert rows[0].mark == "✓ allowed" and "/chat/completions" in audit.table.value


def test_denied_request_is_marked_blocked(lab: Lab, panel_box: str) -> None:
    switch = widgets.PolicySwitch(lab)
    switch.value = "deny"
    try:
        panel = widgets.PromptPanel(lab, MODEL, sandbox=panel_box, prompt="hello", max_tokens=4)
        states = _watch_states(panel)
        panel.send()
        assert states == [PromptState.WAITING, PromptState.FAILED], (states, panel.status)
        assert panel.http_status == 403 and panel.reply == ""
        assert panel.status.startswith("✗ HTTP 403 from the proxy: Blocked by network policy"), panel.status
        assert panel.status.endswith(f"fix: sbx policy rm network --resource {lab.endpoints.rule}")
        audit = widgets.AuditView(lab, sandbox=panel_box)
        audit.filter.value = "blocked"
        row = wait_for(lambda: next(iter(audit.refresh()), None), what="the blocked record")
        assert row.blocked and row.mark == "✗ blocked" and row.status == 403
        assert row.rule == f"deny {lab.endpoints.rule}"
        assert widgets.BLOCKED_BG in audit.table.value and "✗ blocked" in audit.table.value
    finally:
        switch.value = "allow"


def test_failures_are_one_line_inside_the_widget(lab: Lab) -> None:
    panel = widgets.PromptPanel(lab, MODEL, sandbox="no-such-box")
    panel.send_button.click()
    assert panel.state is PromptState.FAILED and panel.status_ok is False
    assert panel.status == "✗ there is no sandbox named 'no-such-box' — fix: sbx create --name no-such-box shell ."
    assert "\n" not in panel.status and panel.status in panel._status.value.replace("&#x27;", "'")
    wrong = widgets.PromptPanel(lab, "ai/qwen3:8B-Q4_K_M", prompt="hi")
    wrong.send()
    assert wrong.state is PromptState.FAILED and "docker model pull ai/qwen3:8B-Q4_K_M" in wrong.status


def test_after_a_failure_the_panel_sends_again(lab: Lab) -> None:
    panel = widgets.PromptPanel(lab, MODEL, prompt="   ", max_tokens=4)
    panel.send()
    assert panel.state is PromptState.FAILED
    assert panel.status == "✗ the prompt is empty — fix: type a prompt, then send"
    panel.prompt = "Say hi."
    panel.send()
    assert panel.state is PromptState.DONE and panel.reply.strip()


def test_a_send_stopped_by_a_bug_ends_failed_and_the_button_works_again(lab: Lab,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    panel = widgets.PromptPanel(lab, MODEL, prompt="hi")

    def broken(model: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(panel, "_send_from_host", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        panel.send()
    assert panel.state is PromptState.FAILED and not panel.send_button.disabled
    assert panel.status == "✗ the send was interrupted — fix: send again"


def test_checklist_widget_shows_each_item_with_its_fix(lab: Lab) -> None:
    sheet = widgets.Checklist(lab, sandbox="wdg-never", agent_sandbox="wdg-never-agent")
    assert not sheet.ok and len(sheet.items) == 5
    assert [line[:4] for line in sheet.lines] == ["✗ 1.", "✗ 2.", "✗ 3.", "✗ 4.", "✗ 5."]
    assert all(" — fix: " in line for line in sheet.lines)
    assert sheet.status == "✗ Checkpoint: 5 of 5 not verified yet" and sheet.status_ok is False
    sheet.refresh_button.click()
    assert sheet.lines == [item.line for item in sheet.result.items]
