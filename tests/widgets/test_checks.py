"""Checkpoints against the real embedded lab: ✗ with the fix on a fresh state, ✓ after the real action.

Nothing is written into the audit log or the policy store by hand: every ✓ here follows a
real request from a real sandbox through the real proxy to the real model.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from widget_helpers import MODEL, wait_for

from labkit import checks
from labkit.lab import Lab

pytestmark = [pytest.mark.model, pytest.mark.timeout(90)]

# Step 8's coding agent, reduced to its network behaviour: like Codex or labkit's agent it reads
# OPENAI_BASE_URL and OPENAI_API_KEY, asks the model for a program and writes it to the workspace.
AGENT = textwrap.dedent(f"""
    from openai import OpenAI
    client = OpenAI(max_retries=0)
    resp = client.chat.completions.create(model="{MODEL}", max_tokens=12, messages=[
        {{"role": "user", "content": "Write a Python script that prints the first 10 Fibonacci numbers."}}])
    open("fib.py", "w").write(resp.choices[0].message.content or "")
    print("wrote fib.py")
""")


def _only_rule(lab: Lab, decision: str | None) -> None:
    """Make ``decision`` the only global rule for the model port (None: no rule), with real sbx commands."""
    resource = lab.endpoints.rule
    if any(r.applies_to == "all" and r.origin == "local" for r in lab.policy.rules_for(resource)):
        lab.policy.rm(resource).check()
    if decision == "allow":
        lab.policy.allow(resource)
    elif decision == "deny":
        lab.policy.deny(resource)


def test_step1_model_in_store(lab: Lab) -> None:
    missing = checks.model_pulled(lab, "ai/qwen3:8B-Q4_K_M")
    assert not missing.ok
    assert missing.line == ("✗ Step 1: ai/qwen3:8B-Q4_K_M is not in the local model store — "
                            "fix: docker model pull ai/qwen3:8B-Q4_K_M")
    found = checks.model_pulled(lab, MODEL)
    assert found.ok, found
    ids = lab.model_ids()
    assert found.line == f"✓ Step 1: the model {MODEL} is in the local store and the model API serves it as {ids[0]}"
    assert any("Q4_1" in e for e in found.evidence)
    assert str(checks.model_pulled(lab, MODEL)) == str(found)  # deterministic


def test_steps2_4_5_sandbox_listed_and_really_inside(lab: Lab, workspace: Path) -> None:
    name = "wdg-fresh"
    assert checks.sandbox_listed(lab, name).line == \
        f"✗ Step 2: `sbx ls` does not list a sandbox named {name} — fix: sbx create --name {name} shell ."
    assert not checks.inside_sandbox(lab, name).ok
    lab.sandbox(name).create("shell", str(workspace), reuse=False)
    try:
        listed = checks.sandbox_listed(lab, name)
        assert listed.ok and listed.line == f"✓ Step 2: sandbox {name} exists (agent shell)"
        inside = checks.inside_sandbox(lab, name)
        assert inside.ok, inside
        assert inside.evidence == (f"sbx exec {name} hostname: {name}",)
        if lab.tier == "namespaced":  # the process tier shares the host's loopback and DNS
            facts = checks.networking_facts(lab, name)
            assert facts.ok, facts
            assert facts.evidence[0] == f"curl localhost:{lab.endpoints.port} inside: connection refused (curl exit 7)"
    finally:
        lab.sandbox(name).rm()
    assert not checks.sandbox_listed(lab, name).ok


def test_step3_rule_in_force_follows_sbx_policy(lab: Lab) -> None:
    resource = lab.endpoints.rule
    _only_rule(lab, None)
    fresh = checks.model_port_allowed(lab)
    assert fresh.line == (f"✗ Step 3: no rule allows {resource}: the default deny applies — "
                          f"fix: sbx policy allow network {resource}")
    _only_rule(lab, "allow")
    allowed = checks.model_port_allowed(lab)
    assert allowed.ok and allowed.line == f"✓ Step 3: the network policy allows {resource}"
    assert allowed.evidence == (f"sbx policy ls: allow {resource} (local, all sandboxes)",)
    assert checks.policy_check(lab, resource, allowed=True).ok
    lab.policy.deny(resource)  # on top of the allow: deny beats allow
    both = checks.model_port_allowed(lab)
    assert not both.ok and "deny beats allow" in both.line
    assert both.fix == f"sbx policy rm network --resource {resource}"
    assert checks.rule_in_force(lab, "deny").ok
    checked = checks.policy_check(lab, resource, allowed=True)
    assert not checked.ok and checked.line.startswith(f"✗ sbx policy check network {resource} says Denied")
    _only_rule(lab, "allow")


def test_notebook_cells_print_once(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    result = checks.step1_models(lab, MODEL)  # a checkpoint cell: prints, returns
    assert capsys.readouterr().out == str(result) + "\n"
    result._ipython_display_()  # the same value as the cell's result: not shown twice
    assert capsys.readouterr().out == ""
    result._ipython_display_()  # shown again later, on purpose
    assert capsys.readouterr().out == str(result) + "\n"
    quiet = checks.step3_policy(lab, echo=False)
    assert capsys.readouterr().out == "" and quiet.line.startswith(("✓ Step 3", "✗ Step 3"))


def test_checkpoint_from_fresh_state_to_verified(lab: Lab, shell_box: str, agent_box: str, workspace: Path) -> None:
    def checkpoint() -> checks.Checkpoint:
        return checks.checkpoint(lab, sandbox=shell_box, agent_sandbox=agent_box, workspace=workspace)

    fresh = checkpoint()
    assert not fresh.ok
    assert [line[:4] for line in fresh.lines] == ["✗ 1.", "✗ 2.", "✗ 3.", "✗ 4.", "✗ 5."]
    assert all(" — fix: " in line for line in fresh.lines), fresh
    for step in (checks.reached_model_api, checks.chat_completion):
        assert not step(lab, shell_box).ok
    assert not checks.step5_network(lab, shell_box, echo=False).ok
    assert not checks.step8_agent(lab, agent_box, echo=False).ok

    # Step 3 + Step 5: allow the port, list the models from inside.
    _only_rule(lab, "allow")
    box = lab.sandbox(shell_box)
    listed = box.exec(f"curl -s {lab.endpoints.sandbox}/models", echo=False)
    assert lab.model_ids()[0] in listed.stdout, listed.output
    reached = wait_for(lambda: checks.reached_model_api(lab, shell_box) or None, what="the audit record")
    assert reached.evidence[0].startswith(f"audit record: GET /engines/llama.cpp/v1/models from sandbox {shell_box}")
    assert reached.evidence[0].endswith(f"allowed by 'allow {lab.endpoints.rule}', HTTP 200")
    step5 = checks.step5_network(lab, shell_box, echo=False)
    assert step5.ok and step5.evidence[0] == reached.evidence[0], step5

    # Step 6: the seed's curl chat completion, checked with the answer the notebook parsed.
    prompt = "Reply with exactly: sbx to DMR works"
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8})
    answer = box.exec(["curl", "-s", f"{lab.endpoints.sandbox}/chat/completions", "-H",
                       "Content-Type: application/json", "-d", body], echo=False)
    step6 = wait_for(lambda: checks.step6_chat(lab, shell_box, json.loads(answer.stdout), echo=False) or None,
                     what="step 6")
    assert step6.line == f"✓ Step 6: a chat completion from {shell_box} crossed the boundary and came back"
    assert not checks.step6_chat(lab, shell_box, {"object": "error"}, echo=False).ok

    # Step 7: the seed's test_local.py, pointed at this lab's port, run inside.
    script = workspace / "test_local.py"
    script.write_text(textwrap.dedent(f"""
        from openai import OpenAI
        client = OpenAI(base_url="{lab.endpoints.sandbox}", api_key="not-needed")
        resp = client.chat.completions.create(model="{MODEL}", max_tokens=8,
            messages=[{{"role": "user", "content": "Write a Python function that reads a CSV and counts rows."}}])
        print(resp.choices[0].message.content)
    """))
    assert not checks.sdk_client(lab, shell_box, workspace).ok  # written, not run yet
    ran = box.exec("python3 test_local.py", workdir=str(workspace), echo=False)
    assert ran.ok and ran.stdout.strip(), ran.output
    assert wait_for(lambda: checks.sdk_client(lab, shell_box, workspace) or None, what="step 7").ok
    assert checks.step7_sdk(lab, shell_box, workspace, ran, echo=False).ok
    failed = box.exec("python3 no_such_script.py", echo=False)
    assert not checks.step7_sdk(lab, shell_box, workspace, failed, echo=False).ok

    # Step 8: the agent in its own sandbox, configured only through OPENAI_BASE_URL / OPENAI_API_KEY.
    env = {"OPENAI_BASE_URL": lab.endpoints.sandbox, "OPENAI_API_KEY": "not-needed"}
    agent = lab.sandbox(agent_box).exec(["python3", "-c", AGENT], env=env, workdir=str(workspace), echo=False)
    assert agent.ok, agent.output
    assert wait_for(lambda: checks.agent_run(lab, agent_box, agent, echo=False) or None, what="step 8").ok
    assert (workspace / "fib.py").is_file()

    # "Try breaking it": deny, the agent fails with the proxy's 403, the log shows it; restore.
    assert not checks.blocked_by_deny(lab, agent_box).ok
    _only_rule(lab, "deny")
    broken = lab.sandbox(agent_box).exec(["python3", "-c", AGENT], env=env, workdir=str(workspace), echo=False)
    assert not broken.ok and "PermissionDeniedError: Error code: 403" in broken.output, broken.output
    blocked = wait_for(lambda: checks.blocked_by_deny(lab, agent_box) or None, what="the blocked record")
    assert "blocked by 'deny " in blocked.evidence[0] and blocked.evidence[0].endswith("HTTP 403")
    assert checks.agent_blocked(lab, agent_box, broken, echo=False).ok
    assert not checks.step8_agent(lab, agent_box, echo=False).ok  # the deny is still in force
    _only_rule(lab, "allow")
    assert checks.step8_agent(lab, agent_box, echo=False).ok
    answered = checks.agent_answered(lab, agent_box, echo=False)
    assert answered.ok and "reached the model server" in answered.line and "HTTP 200" in answered.line, answered
    only = checks.only_model_port(lab, agent_box, echo=False)
    assert only.ok and only.evidence == (f"{lab.endpoints.rule}: allowed and blocked",), only
    lab.host("sbx policy allow network example.com", echo=False).check()  # another destination, allowed
    lab.sandbox(agent_box).exec("curl -s -o /dev/null http://example.com/", echo=False)
    leaked = wait_for(lambda: None if checks.only_model_port(lab, agent_box, echo=False).ok else True,
                      what="the example.com record")
    assert leaked
    others = checks.only_model_port(lab, agent_box, echo=False)
    assert not others.ok and "also reached example.com:80" in others.line and "sbx policy deny" in others.fix
    lab.host("sbx policy rm network --resource example.com", echo=False).check()

    done = checkpoint()
    assert done.ok, done
    assert done.lines == [
        f"✓ 1. Reached DMR from inside the sandbox via host.docker.internal:{lab.endpoints.port}",
        "✓ 2. Ran a chat completion against a local model",
        "✓ 3. Pointed a Python OpenAI SDK client at the local endpoint",
        "✓ 4. Pointed a coding agent at the local model",
        f"✓ 5. Watched the connections in sbx policy log {agent_box}",
    ]
    # Deterministic: more traffic (another listing) changes no line and no evidence.
    box.exec(f"curl -s {lab.endpoints.sandbox}/models", echo=False)
    assert str(checkpoint()) == str(done)
