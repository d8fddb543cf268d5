"""Policy checks: which rule is in force for the model port, and what `sbx policy check` says.

``rule_in_force`` is also where the widgets get the fix for a blocked request (an allow rule
to add, or a deny rule to remove): the rule and its fix are written once, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import fixes
from ..records import PolicyRule
from .result import CheckResult, failed, guarded, passed

if TYPE_CHECKING:
    from ..lab import Lab


def _rule_text(rule: PolicyRule) -> str:
    scope = "all sandboxes" if rule.applies_to == "all" else f"sandbox {rule.applies_to}"
    return f"sbx policy ls: {rule.decision} {','.join(rule.resources)} ({rule.origin}, {scope})"


def rule_in_force(lab: Lab, decision: str = "allow", resource: str | None = None,
                  sandbox: str | None = None, step: str = "") -> CheckResult:
    """Steps 3 and 8: the rule in force for ``resource`` (default the model port) is ``decision``.

    Deny beats allow (``lab.policy.in_force`` decides), so "allow" needs an allow rule and no
    deny rule that applies.
    """
    resource = resource or lab.endpoints.rule
    pre = f"{step}: " if step else ""
    what = f"{pre}the network policy {'allows' if decision == 'allow' else 'denies'} {resource}"

    def probe() -> CheckResult:
        named = lab.policy.rules_for(resource)
        rules = [r for r in named if r.applies_to in ("all", sandbox or "all")]
        evidence = [_rule_text(r) for r in rules] or [f"sbx policy ls: no rule names {resource}"]
        in_force = lab.policy.in_force(resource, sandbox, rules=named)
        decided = in_force.decision if in_force is not None else None
        if decision == "allow":
            if decided == "deny":
                return failed(f"{pre}a deny rule for {resource} is in force (deny beats allow)",
                              fixes.remove_rule(resource, sandbox), evidence)
            if decided is None:
                return failed(f"{pre}no rule allows {resource}: the default deny applies",
                              fixes.allow_network(resource, sandbox), evidence)
        elif decided != "deny":
            return failed(f"{pre}no deny rule names {resource}", fixes.deny_network(resource, sandbox), evidence)
        return passed(what, evidence)

    return guarded(what, probe)


def model_port_allowed(lab: Lab) -> CheckResult:
    """Step 3: `sbx policy allow network localhost:12434` is in force (and no deny overrides it)."""
    return rule_in_force(lab, "allow", step="Step 3")


def policy_check(lab: Lab, target: str, allowed: bool = True, sandbox: str | None = None) -> CheckResult:
    """Exercise of step 3: `sbx policy check network TARGET` gives the expected verdict."""
    verdict = "Allowed" if allowed else "Denied"
    what = f"sbx policy check network {target} says {verdict}"

    def probe() -> CheckResult:
        got = lab.policy.check(target, sandbox)
        evidence = [f"sbx policy check network {target}: {'Allowed' if got else 'Denied'}"]
        if got == allowed:
            return passed(what, evidence)
        fix = (fixes.allow_network if allowed else fixes.deny_network)(target)
        return failed(f"sbx policy check network {target} says {'Allowed' if got else 'Denied'}", fix, evidence)

    return guarded(what, probe)
