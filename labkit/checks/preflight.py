"""Notebook 00: the `labkit doctor` checks this mode needs, as one deterministic ✓/✗ line each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..commands import doctor
from .result import CheckResult, failed, passed

if TYPE_CHECKING:
    from ..lab import Lab

PREFLIGHT_LABELS = {
    "python": "Python 3.11 or newer", "packages": "the course's Python packages import",
    "model": "the shipped model file", "llama": "llama.cpp loads the model",
    "bwrap": "bubblewrap (sandbox namespaces)", "socat": "socat (sandbox proxy relay)",
    "namespaces": "network namespaces (isolated sandboxes)", "sbx": "Docker Sandboxes (sbx)",
    "docker-model": "docker model CLI", "dmr": "Docker Model Runner answers", "port": "the model port",
}


def preflight(lab: Lab, *, echo: bool = True) -> list[CheckResult]:
    """Notebook 00: `labkit doctor`'s checks that this mode needs, one deterministic line each."""
    report = doctor.diagnose(lab.resolution.requested)
    needed = doctor.needed_parts(lab.resolution) | (
        {"embedded-sandbox"} if lab.resolution.sandboxes.kind == "embedded" else set())
    results = []
    for check in report.checks:
        if not set(check.needed_by) & needed:
            continue
        label = PREFLIGHT_LABELS.get(check.key, check.key)
        results.append(passed(label, []) if check.ok else failed(f"{label}: {check.detail}", check.fix))
    if echo:
        for result in results:
            result.show()
    return results
