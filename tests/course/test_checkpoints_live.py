"""The checkpoints in live mode, on the fake lab (conftest.py): `docker model ls`, `sbx ls`, `sbx policy
ls|check|log` and `sbx exec` are the fakes' documented outputs, the model API is the fake DMR's.

Each step's ✗ before the learner's command and ✓ after it, the exact line and evidence, and the
live-mode wording where sbx's log cannot show what the embedded audit records show (paths, HTTP
status). What needs a real sandbox (its own hostname, network namespace) is checked here on its ✗.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest

from labkit import checks
from labkit.lab import Lab
from tests.support import free_port

from .conftest import AGENT_SANDBOX, LISTED, MODEL, SANDBOX, curl_chat, curl_models

pytestmark = pytest.mark.fast

SDK_SCRIPT = """from openai import OpenAI

client = OpenAI(base_url="http://host.docker.internal:{port}/engines/llama.cpp/v1", api_key="not-needed")
print(client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "hi"}}]))
"""


def allowed_row(lab: Lab, sandbox: str) -> str:
    return f"sbx policy log {sandbox}: allowed host.docker.internal:{lab.port} (domain-allowed, forward proxy)"


def make_sandbox(lab: Lab, workspace: Path, name: str = SANDBOX) -> None:
    lab.host(f"sbx create --name {name} shell .", cwd=workspace, echo=False).check()


# ---- step 1: the model is pulled and served ------------------------------------------------------


def test_step1_is_a_cross_with_the_pull_command_before_the_model_is_pulled(lab: Lab) -> None:
    result = checks.step1_models(lab, MODEL, echo=False)
    assert not result.ok
    assert str(result) == (f"✗ Step 1: {MODEL} is not in the local model store — fix: docker model pull {MODEL}\n"
                           "    · docker model ls: not listed")


def test_step1_is_a_tick_with_the_store_row_and_the_api_id_after_docker_model_pull(lab: Lab) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    result = checks.step1_models(lab, MODEL, echo=False)
    assert result.ok
    assert result.line == f"✓ Step 1: the model {MODEL} is in the local store and the model API serves it as {LISTED}"
    assert result.evidence == ("docker model ls: smollm2:360M-Q4_K_M (361.82 M, IQ2_XXS/Q4_K_M, 256.35 MiB)",
                               f"GET /engines/llama.cpp/v1/models: id {LISTED}")


def test_step1_is_a_cross_with_a_fix_when_nothing_answers_on_the_model_port(lab: Lab) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    silent = Lab(lab.resolution, port=free_port(), timeout=30)  # the runner is up, its TCP port does not answer
    try:
        result = checks.step1_models(silent, MODEL, echo=False)
    finally:
        silent.close()
    assert not result.ok
    assert result.line.startswith(f"✗ Step 1: the model {MODEL} is in the local store: Docker Model Runner is running, "
                                  f"but nothing answers on localhost:{silent.port}: its host TCP port is not enabled "
                                  "— fix: docker desktop enable model-runner --tcp ")


# ---- step 2: the sandbox and its workspace -------------------------------------------------------


def test_step2_is_a_cross_with_the_create_command_before_the_sandbox_exists(lab: Lab, workspace: Path) -> None:
    result = checks.step2_sandbox(lab, SANDBOX, workspace, echo=False)
    assert not result.ok
    assert str(result) == (f"✗ Step 2: `sbx ls` does not list a sandbox named {SANDBOX} — fix: "
                           f"sbx create --name {SANDBOX} shell .\n    · sbx ls: not listed")


def test_step2_is_a_tick_naming_the_mounted_workspace_after_sbx_create(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    result = checks.step2_sandbox(lab, SANDBOX, workspace, echo=False)
    assert result.ok
    assert str(result) == (f"✓ Step 2: sandbox {SANDBOX} exists (agent shell)\n"
                           f"    · sbx ls: {SANDBOX} shell running\n"
                           f"    · workspace: {workspace} (mounted at the same path inside)")


def test_step2_is_a_cross_when_the_sandbox_mounts_another_folder(lab: Lab, workspace: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_sandbox(lab, elsewhere)
    result = checks.step2_sandbox(lab, SANDBOX, workspace, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 2: {SANDBOX}'s workspace is {elsewhere}, not {workspace} — fix: "
                           f"sbx rm -f {SANDBOX}, then: cd {workspace} && sbx create --name {SANDBOX} shell .")


# ---- step 3: the rule in force for the model port ------------------------------------------------


def test_step3_is_a_cross_under_the_default_deny(lab: Lab) -> None:
    rule = lab.endpoints.rule
    result = checks.step3_policy(lab, echo=False)
    assert not result.ok
    assert str(result) == (f"✗ Step 3: no rule allows {rule}: the default deny applies — fix: "
                           f"sbx policy allow network {rule}\n    · sbx policy ls: no rule names {rule}")


def test_step3_is_a_tick_citing_the_rule_after_sbx_policy_allow(lab: Lab) -> None:
    rule = lab.endpoints.rule
    lab.host(f"sbx policy allow network {rule}", echo=False).check()
    result = checks.step3_policy(lab, echo=False)
    assert result.ok
    assert str(result) == (f"✓ Step 3: the network policy allows {rule}\n"
                           f"    · sbx policy ls: allow {rule} (local, all sandboxes)")


def test_step3_says_deny_beats_allow_when_both_rules_name_the_port(lab: Lab) -> None:
    rule = lab.endpoints.rule
    lab.policy.allow(rule)
    lab.policy.deny(rule)
    result = checks.step3_policy(lab, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 3: a deny rule for {rule} is in force (deny beats allow) — fix: "
                           f"sbx policy rm network --resource {rule}")
    assert set(result.evidence) == {f"sbx policy ls: allow {rule} (local, all sandboxes)",
                                    f"sbx policy ls: deny {rule} (local, all sandboxes)"}


def test_a_deny_rule_for_one_sandbox_takes_the_model_port_from_that_sandbox_only(lab: Lab, workspace: Path) -> None:
    rule = lab.endpoints.rule
    make_sandbox(lab, workspace, AGENT_SANDBOX)
    lab.policy.allow(rule)
    lab.policy.deny(rule, sandbox=AGENT_SANDBOX)
    assert checks.rule_in_force(lab, "allow").ok
    scoped = checks.rule_in_force(lab, "allow", sandbox=AGENT_SANDBOX, step="Step 8")
    assert not scoped.ok
    assert scoped.line == (f"✗ Step 8: a deny rule for {rule} is in force (deny beats allow) — fix: "
                           f"sbx policy rm network --sandbox {AGENT_SANDBOX} --resource {rule}")
    assert checks.rule_in_force(lab, "deny", sandbox=AGENT_SANDBOX).ok


def test_rule_in_force_for_deny_is_a_cross_with_the_deny_command_before_the_rule(lab: Lab) -> None:
    rule = lab.endpoints.rule
    result = checks.rule_in_force(lab, "deny", step="Step 8")
    assert not result.ok
    assert result.line == f"✗ Step 8: no deny rule names {rule} — fix: sbx policy deny network {rule}"


def test_step3_is_a_cross_with_the_init_command_when_sbxs_policy_is_not_initialised(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "policy_uninit")
    result = checks.step3_policy(lab, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 3: the network policy allows {lab.endpoints.rule}: sbx's network policy has not "
                           "been initialised yet — fix: run: sbx policy init balanced")


def test_policy_check_gives_the_verdict_of_sbx_policy_check(lab: Lab) -> None:
    allowed = checks.policy_check(lab, "pypi.org")  # the balanced preset allows it
    assert allowed.ok and str(allowed) == ("✓ sbx policy check network pypi.org says Allowed\n"
                                           "    · sbx policy check network pypi.org: Allowed")
    denied = checks.policy_check(lab, "example.com")
    assert not denied.ok
    assert denied.line == ("✗ sbx policy check network example.com says Denied — fix: "
                           "sbx policy allow network example.com")
    assert checks.policy_check(lab, "example.com", allowed=False).ok


# ---- step 4: a command inside ---------------------------------------------------------------------


def test_step4_is_a_cross_with_the_create_command_without_the_sandbox(lab: Lab) -> None:
    result = checks.step4_inside(lab, SANDBOX, echo=False)
    assert not result.ok
    assert result.line == f"✗ Step 4: there is no sandbox named {SANDBOX} — fix: sbx create --name {SANDBOX} shell ."


def test_step4_is_a_cross_when_hostname_inside_answers_another_name(lab: Lab, workspace: Path) -> None:
    """The fake `sbx exec` runs on the host: `hostname` answers the host's name, not the sandbox's."""
    make_sandbox(lab, workspace)
    result = checks.step4_inside(lab, SANDBOX, echo=False)
    assert not result.ok
    assert str(result) == (f"✗ Step 4: hostname inside {SANDBOX} is not {SANDBOX} — fix: sbx exec {SANDBOX} hostname\n"
                           f"    · sbx exec {SANDBOX} hostname: {socket.gethostname()}")


def test_step4_is_a_tick_when_hostname_inside_answers_the_sandboxs_name(lab: Lab, workspace: Path) -> None:
    """A sandbox named as this host, so the fake's `hostname` answers what a real sandbox's would."""
    name = socket.gethostname()
    make_sandbox(lab, workspace, name)
    result = checks.step4_inside(lab, name, echo=False)
    assert result.ok
    assert str(result) == (f"✓ Step 4: commands run inside sandbox {name} (hostname = {name})\n"
                           f"    · sbx exec {name} hostname: {name}")


# ---- step 5: through the proxy, and the networking facts ------------------------------------------


def test_reached_model_api_is_a_cross_with_the_curl_command_before_any_request(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    result = checks.reached_model_api(lab, SANDBOX)
    assert not result.ok
    assert result.line == (f"✗ Step 5: sbx policy log {SANDBOX} shows no allowed request to {lab.endpoints.rule} — "
                           f"fix: sbx exec {SANDBOX} curl -s {lab.endpoints.sandbox}/models")


def test_reached_model_api_does_not_count_a_request_the_default_deny_blocked(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    curl_models(lab)  # no allow rule yet
    assert [e.blocked for e in lab.audit.log(SANDBOX)] == [True]
    assert not checks.reached_model_api(lab, SANDBOX).ok


def test_reached_model_api_is_a_tick_citing_the_policy_log_row_in_live_mode(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    curl_models(lab)
    result = checks.reached_model_api(lab, SANDBOX)
    assert result.ok
    assert result.line == (f"✓ Step 5: sandbox {SANDBOX} reached the model API through the proxy (sbx policy log has "
                           "no paths: any allowed request to the model port counts)")
    assert result.evidence == (allowed_row(lab, SANDBOX),)


def test_step5_is_a_cross_on_the_first_networking_fact_that_does_not_hold(lab: Lab, workspace: Path) -> None:
    """On the host, localhost:PORT is the model API itself: the sandbox's own loopback fact fails first."""
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    curl_models(lab)
    result = checks.step5_network(lab, SANDBOX, echo=False)
    port = lab.port
    assert not result.ok
    assert result.line == (f"✗ Step 5: unexpected inside {SANDBOX}: curl localhost:{port} inside: curl exit 0 — fix: "
                           "check the isolation tier (labkit doctor; microVM (sbx))")
    assert result.evidence[0] == f"curl localhost:{port} inside: curl exit 0"


# ---- step 6: a chat completion across the boundary -------------------------------------------------


def test_step6_is_a_tick_for_an_allowed_chat_completion_whose_answer_has_openais_shape(lab: Lab,
                                                                                       workspace: Path) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    answer = curl_chat(lab)
    result = checks.step6_chat(lab, SANDBOX, answer, echo=False)
    assert result.ok
    assert str(result) == (f"✓ Step 6: a chat completion from {SANDBOX} crossed the boundary and came back\n"
                           f"    · {allowed_row(lab, SANDBOX)}\n"
                           "    · answer: a chat.completion with text in choices[0].message.content")


def test_step6_is_a_cross_when_the_answer_is_not_a_chat_completion(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    answer = curl_chat(lab)  # the model was never pulled: DMR answers 404 in plain text
    assert "model not found" in answer.stdout
    result = checks.step6_chat(lab, SANDBOX, answer, echo=False)
    assert not result.ok
    assert result.line == ("✗ Step 6: the answer is not a chat completion's JSON — fix: "
                           "run the curl cell again and read its output")


def test_step6_is_a_cross_when_the_proxy_blocked_the_chat_completion(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    answer = curl_chat(lab)
    assert answer.stdout.startswith("Blocked by network policy: domain host.docker.internal:")
    result = checks.step6_chat(lab, SANDBOX, answer, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 6: sbx policy log {SANDBOX} shows no allowed request to {lab.endpoints.rule} — "
                           f"fix: sbx exec {SANDBOX} curl -s {lab.endpoints.sandbox}/chat/completions -H "
                           "'Content-Type: application/json' -d …")


# ---- step 7: the SDK script -------------------------------------------------------------------------


def write_script(lab: Lab, workspace: Path, port: int | None = None) -> Path:
    script = workspace / "test_local.py"
    script.write_text(SDK_SCRIPT.format(port=port or lab.port, model=MODEL))
    return script


def test_step7_is_a_cross_with_the_heredoc_before_the_script_is_written(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    result = checks.step7_sdk(lab, SANDBOX, workspace, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 7: there is no test_local.py in {SANDBOX}'s workspace — fix: write it (Step 7's "
                           f"cat > test_local.py <<'EOF' …), then: sbx exec {SANDBOX} python3 test_local.py")


def test_step7_is_a_cross_when_the_script_points_at_another_port(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    write_script(lab, workspace, port=12434 if lab.port != 12434 else 12435)
    result = checks.step7_sdk(lab, SANDBOX, workspace, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 7: test_local.py exists but its base_url does not point at "
                           f"host.docker.internal:{lab.port} — fix: compare it with Step 7's test_local.py")


def test_step7_does_not_count_a_request_from_before_the_script_was_written(lab: Lab, workspace: Path) -> None:
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    curl_chat(lab)
    script = write_script(lab, workspace)
    later = time.time() + 5  # written after that request (sbx's log has a second's slack)
    os.utime(script, (later, later))
    result = checks.step7_sdk(lab, SANDBOX, workspace, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 7: no chat completion from {SANDBOX} went through the proxy since test_local.py "
                           f"was written — fix: sbx exec {SANDBOX} python3 test_local.py")


def test_step7_is_a_tick_for_the_script_and_a_request_after_it(lab: Lab, workspace: Path) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    make_sandbox(lab, workspace)
    lab.policy.allow(lab.endpoints.rule)
    write_script(lab, workspace)
    curl_chat(lab)
    result = checks.step7_sdk(lab, SANDBOX, workspace, echo=False)
    port = lab.port
    assert result.ok
    assert str(result) == ("✓ Step 7: test_local.py used the OpenAI SDK against the local model, through the proxy\n"
                           "    · workspace: test_local.py exists\n"
                           f"    · test_local.py: OpenAI(base_url=…host.docker.internal:{port}…)\n"
                           f"    · {allowed_row(lab, SANDBOX)}")


# ---- step 8: the agent, blocked, restored -----------------------------------------------------------


def seed_log_row(state: Path, sandbox: str, host: str) -> None:
    """An allowed `sbx policy log` row for a host the fake proxy does not serve (it only plays the model port)."""
    path = state / "sbx.json"
    data = json.loads(path.read_text())
    now = datetime.now().astimezone().isoformat()
    data["log"].append({"host": host, "vm_name": sandbox, "proxy_type": "forward", "rule": "domain-allowed",
                        "reason": "", "since": now, "last_seen": now, "count": 1, "blocked": False})
    path.write_text(json.dumps(data))


@pytest.fixture
def agent_box(lab: Lab, workspace: Path) -> str:
    """Step 8's sandbox with the model pulled and the model port allowed (what notebooks 01–03 leave)."""
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    make_sandbox(lab, workspace, AGENT_SANDBOX)
    lab.policy.allow(lab.endpoints.rule)
    return AGENT_SANDBOX


def test_agent_checks_are_crosses_before_the_agent_ran(lab: Lab, agent_box: str) -> None:
    rule = lab.endpoints.rule
    assert checks.agent_run(lab, agent_box, echo=False).line == (
        f"✗ Step 8: sbx policy log {agent_box} shows no allowed request to {rule} — fix: run the agent in "
        f"{agent_box} with its generated configuration (notebook 08)")
    assert checks.agent_answered(lab, agent_box, echo=False).line == (
        f"✗ Step 8: sbx policy log {agent_box} shows no request to {rule} — fix: run the agent in {agent_box} "
        "(the cell above)")
    assert checks.only_model_port(lab, agent_box, echo=False).line == (
        f"✗ Step 8: no allowed request from {agent_box} to {rule} — fix: run the agent in {agent_box}")
    assert checks.agent_blocked(lab, agent_box, echo=False).line == (
        f"✗ Step 8: no request from {agent_box} to {rule} was blocked by a deny rule — fix: sbx policy deny network "
        f"{rule}, then run the agent in {agent_box} again")


def test_agent_checks_are_ticks_after_the_agent_reached_only_the_model_port(lab: Lab, agent_box: str) -> None:
    run = curl_chat(lab, agent_box)  # the agent's request, as the fake proxy sees it
    row = allowed_row(lab, agent_box)
    ran = checks.agent_run(lab, agent_box, run, echo=False)
    assert ran.ok and str(ran) == (f"✓ Step 8: the agent in {agent_box} used the local model through the proxy\n"
                                   f"    · {row}\n    · the agent: exit 0, printed output")
    answered = checks.agent_answered(lab, agent_box, echo=False)
    assert answered.ok and str(answered) == (
        f"✓ Step 8: the agent in {agent_box} reached the model port (sbx's log has no HTTP status: the agent's own "
        f"output above says whether the model answered)\n    · {row}")
    only = checks.only_model_port(lab, agent_box, echo=False)
    assert only.ok and str(only) == (f"✓ Step 8: the agent in {agent_box} reached only the model port, "
                                     f"{lab.endpoints.rule}\n    · {row}")


def test_only_model_port_is_a_cross_naming_the_other_host_the_agent_reached(lab: Lab, agent_box: str,
                                                                            fake_state: Path) -> None:
    curl_chat(lab, agent_box)
    seed_log_row(fake_state, agent_box, "api.anthropic.com:443")
    result = checks.only_model_port(lab, agent_box, echo=False)
    assert not result.ok
    assert result.line == (f"✗ Step 8: the agent in {agent_box} also reached api.anthropic.com:443 — fix: deny them: "
                           "sbx policy deny network api.anthropic.com:443")


def test_step8_is_a_tick_after_use_block_and_restore_and_a_cross_while_the_deny_stays(lab: Lab,
                                                                                    agent_box: str) -> None:
    rule = lab.endpoints.rule
    curl_chat(lab, agent_box)  # the agent used the model
    lab.host(f"sbx policy deny network {rule}", echo=False).check()
    blocked = curl_chat(lab, agent_box)  # "try breaking it"
    assert blocked.stdout.startswith("Blocked by network policy")
    cut = checks.agent_blocked(lab, agent_box, echo=False)
    assert cut.ok and str(cut) == (
        f"✓ Step 8: the deny rule cut the agent in {agent_box} off from the model\n"
        f"    · sbx policy log {agent_box}: blocked host.docker.internal:{lab.port} (user-denied, forward proxy)")
    still_denied = checks.step8_agent(lab, agent_box, echo=False)
    assert not still_denied.ok
    assert still_denied.line == (f"✗ Step 8: a deny rule for {rule} is in force (deny beats allow) — fix: "
                                 f"sbx policy rm network --resource {rule}")
    for found in lab.policy.rules_for(rule):  # notebook 08's restore, verbatim
        if found.decision == "deny":
            lab.host(f"sbx policy rm network --id {found.id}", echo=False).check()
    restored = checks.step8_agent(lab, agent_box, echo=False)
    assert restored.ok
    assert restored.line == (f"✓ Step 8: the agent in {agent_box} used the local model, a deny rule blocked it, "
                             "access is restored")


# ---- notebook 09: the seed's checkpoint --------------------------------------------------------------


def test_checkpoint_on_a_fresh_lab_verifies_none_of_the_five_items(lab: Lab, workspace: Path) -> None:
    result = checks.checkpoint(lab, SANDBOX, AGENT_SANDBOX, workspace)
    assert not result.ok and result.summary() == "✗ Checkpoint: 5 of 5 not verified yet"


def test_checkpoint_after_the_course_verifies_all_five_items_from_the_policy_log(lab: Lab, workspace: Path) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    make_sandbox(lab, workspace)
    make_sandbox(lab, workspace, AGENT_SANDBOX)
    lab.policy.allow(lab.endpoints.rule)
    curl_models(lab)  # step 5
    write_script(lab, workspace)  # step 7, then its request
    curl_chat(lab)
    curl_chat(lab, AGENT_SANDBOX)  # step 8
    result = checks.checkpoint(lab, SANDBOX, AGENT_SANDBOX, workspace)
    port = lab.port
    note = " (sbx policy log: allowed requests to the model port; it records no paths)"
    assert result.summary() == "✓ Checkpoint: all 5 verified"
    assert result.lines == [
        f"✓ 1. Reached DMR from inside the sandbox via host.docker.internal:{port}{note}",
        f"✓ 2. Ran a chat completion against a local model{note}",
        "✓ 3. Pointed a Python OpenAI SDK client at the local endpoint",
        "✓ 4. Pointed a coding agent at the local model",
        f"✓ 5. Watched the connections in sbx policy log {AGENT_SANDBOX}",
    ]
