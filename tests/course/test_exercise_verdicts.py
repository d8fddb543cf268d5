"""Every exercise's ✗ before the learner's answer and ✓ after it, on the fake lab (conftest.py).

The learner's answer is the notebook's folded solution, run through the same `Lab` calls. Steps 5,
6 and 8 judge single requests: in live mode sbx's log has no paths, so they say what they could
not check (tested here), and their ✓/✗ are judged in embedded mode from the proxy's records.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from labkit import exercises
from labkit.lab import Lab

from .conftest import LISTED, MODEL, SANDBOX, ProxyRecords

pytestmark = pytest.mark.fast

V1 = "/engines/llama.cpp/v1"
SANDBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]+")  # sbx's rule for names
LIVE_NOTE = " — not checkable in live mode (sbx's log keeps no paths); look for it in `sbx policy log`"


# ---- step 1: MY_MODEL_ID ------------------------------------------------------------------------


def test_model_id_is_a_cross_with_the_fix_while_my_model_id_is_empty(lab: Lab) -> None:
    result = exercises.model_id(lab, "")
    assert not result.ok
    assert result.line == ("✗ exercise: MY_MODEL_ID is empty (expected until you paste an id) — fix: set MY_MODEL_ID "
                           "to the id in the HTTP list, e.g. MY_MODEL_ID = lab.model_ids()[0]")


def test_model_id_accepts_the_listed_id_and_the_short_name_once_the_model_is_pulled(lab: Lab) -> None:
    assert not exercises.model_id(lab, MODEL).ok  # not pulled yet: the server does not know it
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    listed = exercises.model_id(lab, lab.model_ids()[0])
    short = exercises.model_id(lab, MODEL)
    assert listed.ok and listed.line == f"✓ exercise: the model server answers to '{LISTED}'"
    assert short.ok and short.line == f"✓ exercise: the model server answers to '{MODEL}' (it lists it as '{LISTED}')"


def test_model_id_without_the_quantization_tag_is_a_cross_that_says_so(lab: Lab) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    result = exercises.model_id(lab, "ai/smollm2")
    assert not result.ok
    assert result.line == ("✗ exercise: the model server does not know 'ai/smollm2': check the spelling, and that the "
                           "quantization tag is part of the name — fix: set MY_MODEL_ID to the id in the HTTP list, "
                           "e.g. MY_MODEL_ID = lab.model_ids()[0]")


# ---- step 2: a second sandbox --------------------------------------------------------------------


def test_second_sandbox_is_a_cross_until_sbx_create_makes_it(lab: Lab, workspace: Path) -> None:
    before = exercises.second_sandbox(lab, "dmr-scratch")
    assert not before.ok
    assert before.line == ("✗ exercise: no sandbox named 'dmr-scratch' yet — fix: "
                           'lab.host("sbx create --name dmr-scratch shell .", cwd=WORKDIR)')
    lab.host("sbx create --name dmr-scratch shell .", cwd=workspace, echo=False).check()
    after = exercises.second_sandbox(lab, "dmr-scratch")
    assert after.ok and after.line == "✓ exercise: sandbox 'dmr-scratch' exists (sbx ls)"


# ---- step 3: an allow rule of your own -----------------------------------------------------------


def test_extra_rule_does_not_count_the_presets_rule_for_the_same_host(lab: Lab) -> None:
    assert lab.policy.check("pypi.org")  # the balanced preset allows it already
    result = exercises.extra_rule(lab, "pypi.org")
    assert not result.ok
    assert result.line == ('✗ exercise: no local allow rule for pypi.org yet — fix: '
                           'lab.host("sbx policy allow network pypi.org")')


def test_extra_rule_does_not_count_a_local_deny_rule(lab: Lab) -> None:
    lab.host("sbx policy deny network pypi.org", echo=False).check()
    assert not exercises.extra_rule(lab, "pypi.org").ok


def test_extra_rule_is_a_tick_with_the_rule_as_evidence_after_sbx_policy_allow(lab: Lab) -> None:
    lab.host("sbx policy allow network pypi.org", echo=False).check()
    result = exercises.extra_rule(lab, "pypi.org")
    assert result.ok
    assert str(result) == "✓ exercise: your local rule allows pypi.org\n    · sbx policy ls: allow pypi.org"


# ---- step 4: hello-from-sandbox.txt ------------------------------------------------------------


def _hello(workspace: Path, sandbox: str):
    return exercises.workspace_file(str(workspace), "hello-from-sandbox.txt", sandbox, "the sandbox's hostname")


def test_hello_file_is_a_cross_while_it_is_missing(workspace: Path) -> None:
    result = _hello(workspace, SANDBOX)
    assert not result.ok
    assert result.line == ("✗ exercise: hello-from-sandbox.txt is not in the workspace yet (expected until you write "
                           "it) — fix: see the folded solution above")


def test_hello_file_written_outside_the_sandbox_is_a_cross_naming_the_hostname(lab: Lab, workspace: Path) -> None:
    """The fake `sbx exec` runs on the host: the file holds the host's name, as if written outside."""
    lab.sandbox(SANDBOX).create("shell", ".", cwd=workspace)
    lab.sandbox(SANDBOX).exec("bash -c 'hostname > hello-from-sandbox.txt'", echo=False)  # the solution
    assert (workspace / "hello-from-sandbox.txt").read_text().strip() == socket.gethostname()
    result = _hello(workspace, SANDBOX)
    assert not result.ok
    assert result.line == ("✗ exercise: hello-from-sandbox.txt is there, but does not hold the sandbox's hostname "
                           f"('{SANDBOX}') — fix: see the folded solution above")


def test_hello_file_is_a_tick_when_written_by_the_sandbox_of_that_name(lab: Lab, workspace: Path) -> None:
    """A sandbox named as this host: the fake's `hostname` then answers the sandbox's name, as inside."""
    name = socket.gethostname()
    if not SANDBOX_NAME.fullmatch(name):
        pytest.skip(f"this host's name {name!r} is not a valid sandbox name")
    lab.sandbox(name).create("shell", ".", cwd=workspace)
    lab.sandbox(name).exec("bash -c 'hostname > hello-from-sandbox.txt'", echo=False)  # the solution
    result = _hello(workspace, name)
    assert result.ok and result.line == f"✓ exercise: hello-from-sandbox.txt is in the workspace {workspace}"


# ---- step 5: one model by id ---------------------------------------------------------------------


def test_model_by_id_in_live_mode_says_it_cannot_check_the_path(lab: Lab, workspace: Path) -> None:
    lab.host(f"docker model pull {MODEL}", echo=False).check()
    lab.sandbox(SANDBOX).create("shell", ".", cwd=workspace)
    lab.policy.allow(lab.endpoints.rule)
    model_id = lab.model_ids()[0]  # the solution, verbatim
    inside = lab.sandbox(SANDBOX).exec(f"curl -s http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models/"
                                       f"{model_id}", echo=False)
    assert '"id": "docker.io/ai/smollm2:360M-Q4_K_M"' in inside.stdout
    result = exercises.model_by_id(lab, SANDBOX)
    assert result.ok and result.line == f"✓ exercise: a request for one model by id{LIVE_NOTE}"


def test_model_by_id_does_not_count_the_models_listing(embedded_lab: Lab, records: ProxyRecords) -> None:
    records(SANDBOX, "GET", f"{V1}/models")
    result = exercises.model_by_id(embedded_lab, SANDBOX)
    assert not result.ok
    assert result.line == (f"✗ exercise: no request for one model by id from {SANDBOX} yet — fix: "
                           f'box.exec(f"curl -s http://host.docker.internal:{embedded_lab.port}/engines/llama.cpp/v1/'
                           'models/{lab.model_ids()[0]}")')


def test_model_by_id_does_not_count_a_request_the_server_refused_or_the_proxy_blocked(
        embedded_lab: Lab, records: ProxyRecords) -> None:
    records(SANDBOX, "GET", f"{V1}/models/ai/smollm2", status=404)  # the quantization tag left out
    records(SANDBOX, "GET", f"{V1}/models/{LISTED}", status=403, rule="default-deny")
    assert not exercises.model_by_id(embedded_lab, SANDBOX).ok


def test_model_by_id_is_a_tick_citing_the_allowed_request(embedded_lab: Lab, records: ProxyRecords) -> None:
    records(SANDBOX, "GET", f"{V1}/models/{LISTED}")
    result = exercises.model_by_id(embedded_lab, SANDBOX)
    port = embedded_lab.port
    assert result.ok
    assert str(result) == ("✓ exercise: the sandbox fetched one model by id\n"
                           f"    · audit record: GET {V1}/models/{LISTED} from sandbox {SANDBOX} via "
                           f"host.docker.internal:{port} → allowed by 'allow localhost:{port}', HTTP 200")


# ---- step 6: a second chat completion --------------------------------------------------------------


def test_prompt_sent_in_live_mode_says_it_cannot_check_the_path(lab: Lab) -> None:
    result = exercises.prompt_sent(lab, SANDBOX)
    assert result.ok and result.line == f"✓ exercise: a second chat completion{LIVE_NOTE}"


def test_prompt_sent_is_a_cross_after_the_notebooks_one_chat_completion(embedded_lab: Lab,
                                                                         records: ProxyRecords) -> None:
    records(SANDBOX, "POST", f"{V1}/chat/completions")
    records("dmr-other", "POST", f"{V1}/chat/completions")  # another sandbox's does not count
    result = exercises.prompt_sent(embedded_lab, SANDBOX)
    assert not result.ok
    assert result.line == (f"✗ exercise: {SANDBOX} has sent one chat completion so far — fix: change PROMPT and "
                           "re-run the curl cell, or use the prompt panel")


def test_prompt_sent_is_a_tick_after_a_second_chat_completion(embedded_lab: Lab, records: ProxyRecords) -> None:
    records(SANDBOX, "POST", f"{V1}/chat/completions")
    records(SANDBOX, "POST", f"{V1}/chat/completions")
    result = exercises.prompt_sent(embedded_lab, SANDBOX)
    assert result.ok and result.line == f"✓ exercise: {SANDBOX} sent a second chat completion"


# ---- step 7: my_client.py ------------------------------------------------------------------------


def test_my_client_is_a_cross_until_it_is_in_the_workspace_then_a_tick(lab: Lab, workspace: Path) -> None:
    before = exercises.workspace_file(str(workspace), "my_client.py")
    assert not before.ok
    assert before.line == ("✗ exercise: my_client.py is not in the workspace yet (expected until you write it) — "
                           "fix: see the folded solution above")
    lab.sandbox(SANDBOX).create("shell", ".", cwd=workspace)
    lab.sandbox(SANDBOX).exec(["bash", "-c", "cat > my_client.py"], input="from openai import OpenAI\n", echo=False)
    after = exercises.workspace_file(str(workspace), "my_client.py")
    assert after.ok and after.line == f"✓ exercise: my_client.py is in the workspace {workspace}"


# ---- step 8: the agent after access is restored ----------------------------------------------------

AGENT = "dmr-claude"
MESSAGES = f"{V1}/messages"  # Claude Code's Anthropic Messages route (the agent's requests)


def test_agent_after_restore_in_live_mode_says_it_cannot_check_the_path(lab: Lab) -> None:
    result = exercises.agent_after_restore(lab, AGENT)
    assert result.ok and result.line == f"✓ exercise: an agent run after restoring the rule{LIVE_NOTE}"


def test_agent_after_restore_is_a_cross_before_the_agent_was_blocked(embedded_lab: Lab,
                                                                     records: ProxyRecords) -> None:
    records(AGENT, "POST", MESSAGES)
    result = exercises.agent_after_restore(embedded_lab, AGENT)
    assert not result.ok
    assert result.line == ("✗ exercise: the agent was not blocked yet; run 'Try breaking it' first — fix: run the "
                           "deny cell and the blocked agent cell above")


def test_agent_after_restore_is_a_cross_until_an_agent_request_follows_the_block(embedded_lab: Lab,
                                                                                 records: ProxyRecords) -> None:
    records(AGENT, "POST", MESSAGES)
    records(AGENT, "POST", MESSAGES, status=403, rule="deny")
    records(AGENT, "GET", f"{V1}/models")  # allowed again, but not the agent's API
    result = exercises.agent_after_restore(embedded_lab, AGENT)
    assert not result.ok
    assert result.line == ("✗ exercise: no agent run since access was restored (expected until you run one) — fix: "
                           'cbox.exec(claude.command("your task"), env=claude.env, timeout=AGENT_TIMEOUT)')


def test_agent_after_restore_is_a_tick_when_the_agent_reached_the_model_after_the_block(
        embedded_lab: Lab, records: ProxyRecords) -> None:
    records(AGENT, "POST", MESSAGES)
    records(AGENT, "POST", MESSAGES, status=403, rule="deny")
    records(AGENT, "POST", MESSAGES)
    result = exercises.agent_after_restore(embedded_lab, AGENT)
    assert result.ok
    assert result.line == "✓ exercise: the agent reached the model again after you restored the rule"


def test_every_exercise_prints_its_one_line(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [exercises.model_id(lab, "").line, exercises.second_sandbox(lab, "dmr-scratch").line,
             exercises.prompt_sent(lab, SANDBOX).line]
    assert capsys.readouterr().out.splitlines() == lines

