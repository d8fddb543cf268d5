"""`labkit reset`: put the embedded lab back to the start of the course, between two classes.

It removes every embedded sandbox (its commands, home and scoped rules), restores the
``balanced`` preset without local rules, and moves the audit log aside to a timestamped file
so the next class starts with an empty log while nothing is lost. Pulled models stay: pulling
again in class would only cost time. One line per action; running it twice is harmless. It
never asks (an instructor runs it from a script or a notebook as often as from a terminal).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .._core import paths
from ..dmr.store import Store, StoreError
from ..errors import LabError
from ..sbx import audit, rules, runtime, store
from ..sbx.policy import PolicyError


@dataclass(frozen=True)
class Step:
    """One action of the reset; ``ok`` is false when it failed (the exit code follows it, the ✗ too)."""

    text: str
    ok: bool = True

    @property
    def line(self) -> str:
        """As printed: a failure marked ✗ for the reader."""
        return self.text if self.ok else f"✗ {self.text}"


def remove_sandboxes() -> list[Step]:
    """Remove every embedded sandbox; one line each (its workspace folder is the learner's and stays)."""
    steps = []
    healthy = store.all_sandboxes()
    for sandbox in healthy:
        try:
            runtime.remove(sandbox.name)
        except (LabError, OSError) as exc:
            steps.append(Step(f"sandbox {sandbox.name}: not removed ({str(exc).splitlines()[0]})", ok=False))
            continue
        steps.append(Step(f"sandbox {sandbox.name}: removed, with its home and rules "
                          f"(workspace {sandbox.workspace} kept)"))
    known = {sb.name for sb in healthy}
    for entry in sorted(store.sandboxes_dir().iterdir()):
        if entry.is_dir() and entry.name not in known:  # a record `all_sandboxes` could not read
            rules.drop_sandbox(entry.name)
            shutil.rmtree(entry, ignore_errors=True)
            steps.append(Step(f"sandbox {entry.name}: its damaged record was deleted"))
    return steps or [Step("sandboxes: none to remove")]


def _policy_state() -> rules.PolicyState | None:
    """The policy before the reset (None when its store is unreadable)."""
    try:
        return rules.load()
    except PolicyError:
        return None


def restore_policy(before: rules.PolicyState | None) -> str:
    """Back to the initial preset with no local rules (``sbx policy reset``); ``before`` is what it was."""
    rules.reset()
    if before is None:
        return f"policy: the unreadable policy store was deleted; the preset is {rules.INITIAL_PRESET} again"
    if before.preset == rules.INITIAL_PRESET and not before.local:
        return f"policy: already the {rules.INITIAL_PRESET} preset with no local rules"
    count = len(before.local)
    dropped = f"{count} local rule{'s' if count != 1 else ''} dropped"
    if before.preset != rules.INITIAL_PRESET:
        return f"policy: preset {before.preset} → {rules.INITIAL_PRESET}, {dropped}"
    return f"policy: the {rules.INITIAL_PRESET} preset, {dropped}"


def archive_path(now: float | None = None) -> Path:
    """A new timestamped file under ``<state>/archive`` (a suffix when one exists for that second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    folder = paths.state_dir("archive")
    path, n = folder / f"audit-{stamp}.jsonl", 1
    while path.exists():
        n += 1
        path = folder / f"audit-{stamp}-{n}.jsonl"
    return path


def archive_audit() -> str:
    """Move the audit log aside; the proxy notices the file is gone and starts a new one.

    Linking then unlinking never overwrites an archive, and a record the proxy writes in
    between lands in the archive (same file): none is lost.
    """
    log = audit.log_path()
    try:
        size = log.stat().st_size
    except FileNotFoundError:
        return "audit log: empty, nothing to archive"
    if size == 0:
        return "audit log: empty, nothing to archive"
    target = archive_path()
    os.link(log, target)
    log.unlink()
    count = len(audit.read(path=target))
    return f"audit log: {count} record{'s' if count != 1 else ''} archived to {target}"


def models_kept() -> str:
    try:
        names = [m.tags[0] if m.tags else m.id for m in Store().models()]
    except StoreError as exc:
        return f"models: kept, but the store says: {exc}"
    return f"models: kept ({', '.join(names)})" if names else "models: none pulled (nothing to keep)"


def reset() -> list[Step]:
    """Everything ``labkit reset`` does, in order, one printed line each."""
    before = _policy_state()  # read first: removing a sandbox drops its scoped rules
    if before is None:
        rules.reset()  # an unreadable store would stop every sandbox removal; it goes anyway
    steps = remove_sandboxes()
    steps.append(Step(restore_policy(before)))
    steps.append(Step(archive_audit()))
    steps.append(Step(models_kept()))
    if shutil.which("sbx"):
        steps.append(Step("live sbx: not touched (this resets the embedded lab; for sbx use: sbx rm, "
                          "sbx policy reset)"))
    return steps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="labkit reset",
        description="Reset the embedded lab for the next class: remove all sandboxes, restore the balanced "
                    "policy preset, archive the audit log; models stay. Never asks.")
    parser.add_argument("-y", "--yes", action="store_true", help="accepted for scripts; reset never asks anyway")
    parser.parse_args(argv)
    steps = reset()
    for step in steps:
        print(step.line)
    failed = not all(step.ok for step in steps)
    if failed:
        print("labkit reset: some steps failed (see ✗ above); fix them and run it again", file=sys.stderr)
    return 1 if failed else 0
