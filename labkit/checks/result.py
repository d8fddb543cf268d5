"""What a check returns: ``CheckResult`` (``ok`` and one deterministic ✓/✗ line), and how it is built.

Pure: no I/O, no widgets. The ✓/✗ line format (``✗ what — fix: …``) is written once here, in
``verdict_line``; the checks, the exercises and the widgets' status lines all use it, and
callers decide from ``ok``, never from the mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import fixes
from .._core.runner import CommandFailed
from ..errors import LabError

PASS_MARK = "✓"
FAIL_MARK = "✗"


def verdict_line(ok: bool, what: str, fix: str = "") -> str:
    """``✓ what``, or ``✗ what — fix: fix`` (the fix only when there is one and ``ok`` is false)."""
    if ok:
        return f"{PASS_MARK} {what}"
    return f"{FAIL_MARK} {what}" + (f" — fix: {fix}" if fix else "")


@dataclass(frozen=True)
class CheckResult:
    """One checkpoint: ``ok``, the deterministic line (✓/✗, with the fix when ✗), and what was looked at."""

    ok: bool
    line: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    printed: bool = field(default=False, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join([self.line, *(f"    · {item}" for item in self.evidence)])

    def __repr__(self) -> str:
        return str(self)

    def show(self) -> CheckResult:
        """Print the line and its evidence; as a cell's last value it is then not shown twice."""
        print(self, flush=True)
        object.__setattr__(self, "printed", True)
        return self

    def _ipython_display_(self) -> None:
        """IPython shows the text (as printed output, like the check cells' other lines), once."""
        if self.printed:
            object.__setattr__(self, "printed", False)
            return
        print(self)


def passed(what: str, evidence: Iterable[str]) -> CheckResult:
    return CheckResult(True, verdict_line(True, what), tuple(evidence))


def failed(what: str, fix: str, evidence: Iterable[str] = ()) -> CheckResult:
    return CheckResult(False, verdict_line(False, what, fix), tuple(evidence), fix)


def tool_failure(what: str, err: LabError) -> CheckResult:
    """A tool, command or service that cannot answer is a ✗ with its own fix, never a traceback."""
    default = fixes.RUN_IN_TERMINAL if isinstance(err, CommandFailed) else fixes.RUN_DOCTOR
    return failed(f"{what}: {err.message}", err.fix or default)


def guarded(what: str, probe: Callable[[], CheckResult]) -> CheckResult:
    """Run ``probe``; a failure the lab reports (any ``LabError``) becomes its ✗ result (bugs still raise)."""
    try:
        return probe()
    except LabError as err:
        return tool_failure(what, err)


def all_of(step: str, what: str, parts: Iterable[CheckResult]) -> CheckResult:
    """One line for a step made of several checks: ✓ with all their evidence, else the first ✗."""
    results = list(parts)
    first_failure = next((r for r in results if not r.ok), None)
    if first_failure is not None:
        return first_failure
    return passed(f"{step}: {what}", [e for r in results for e in r.evidence])
