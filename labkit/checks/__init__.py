"""Checkpoints verified from real evidence: one deterministic ✓/✗ line each, with the fix when ✗.

A checkpoint never trusts that a cell ran: it reads the state the step leaves behind — the
model store and API, `sbx ls`, the policy rules, a command run inside the sandbox, the
proxy's audit records, files in the workspace. The notebooks call the ``stepN_…`` functions
(and ``agent_run``, ``agent_blocked``, ``checklist``, ``preflight``): each prints its result
and returns it. The other names are the building blocks; they return a result and print nothing.

The modules, one job each:

- ``result``: ``CheckResult`` and the ✓/✗ line format (pure)
- ``evidence``: audit records, `sbx policy log` rows, workspaces, as evidence lines
- ``policy``: the rule in force for the model port, `sbx policy check`
- ``steps``: the building blocks of steps 1–8
- ``cells``: the notebooks' checkpoint cells (print and return)
- ``checkpoint``: notebook 09's five items
- ``preflight``: notebook 00's `labkit doctor` lines

Dependencies go one way: ``labkit.widgets`` imports ``labkit.checks``, never the reverse. The
checklist is a widget, so ``checks.checklist`` (notebook 09's name for it) is looked up in
``labkit.widgets.checklist`` when first used.
"""

from __future__ import annotations

from typing import Any

from .cells import (
    agent_answered,
    agent_blocked,
    agent_run,
    only_model_port,
    step1_models,
    step2_sandbox,
    step3_policy,
    step4_inside,
    step5_network,
    step6_chat,
    step7_sdk,
    step8_agent,
)
from .checkpoint import Checkpoint, checkpoint
from .evidence import AGENT_PATH, CHAT_PATH, HOST_ALIAS, MODELS_PATH, is_live, model_records, record_line
from .policy import model_port_allowed, policy_check, rule_in_force
from .preflight import PREFLIGHT_LABELS, preflight
from .result import CheckResult, failed, passed, verdict_line
from .steps import (
    blocked_by_deny,
    chat_completion,
    inside_sandbox,
    model_pulled,
    networking_facts,
    reached_model_api,
    sandbox_listed,
    sdk_client,
)

__all__ = [
    # results
    "CheckResult", "passed", "failed", "verdict_line",
    # evidence
    "HOST_ALIAS", "MODELS_PATH", "CHAT_PATH", "AGENT_PATH", "is_live", "model_records", "record_line",
    # building blocks
    "model_pulled", "sandbox_listed", "rule_in_force", "model_port_allowed", "policy_check", "inside_sandbox",
    "networking_facts", "reached_model_api", "chat_completion", "sdk_client", "blocked_by_deny",
    # the notebooks' cells
    "step1_models", "step2_sandbox", "step3_policy", "step4_inside", "step5_network", "step6_chat",
    "step7_sdk", "step8_agent", "agent_run", "agent_blocked", "agent_answered", "only_model_port",
    # notebook 09 and notebook 00
    "Checkpoint", "checkpoint", "checklist", "PREFLIGHT_LABELS", "preflight",
]


def __getattr__(name: str) -> Any:
    """``checks.checklist``: the checklist widget's builder, which lives in ``labkit.widgets``."""
    if name == "checklist":
        from ..widgets.checklist import checklist

        return checklist
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
