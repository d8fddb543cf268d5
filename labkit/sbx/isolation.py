"""Which isolation tier embedded sandboxes get on this machine, and why.

* ``namespaced``: bubblewrap with its own user, network (loopback only), PID, IPC, UTS and
  mount namespaces; the proxy is the only way out (docs/sandbox-isolation.md §3).
* ``process``: where namespaces cannot be made (Docker's default seccomp, Binder, Ubuntu
  24.04's AppArmor rule); commands run as plain host processes with the proxy variables
  only. Weaker, and every caller must say so.

:func:`detect` runs bubblewrap's own probe once per process (a few ms) and caches it.
``LABKIT_ISOLATION=process`` forces the process tier (the tests use it to cover that tier);
``LABKIT_ISOLATION=namespaced`` insists on namespaces and reports why they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .. import fixes
from ..errors import LabError

TierName = Literal["namespaced", "process"]
# What a notebook branches on: real sbx isolates in a microVM, labkit's own sandboxes get a TierName.
IsolationTier = Literal["microVM", "namespaced", "process"]
TIER_LABELS: dict[IsolationTier, str] = {
    "microVM": "microVM (sbx)",
    "namespaced": "namespaced (bubblewrap)",
    "process": "process (weaker: no namespaces)",
}

# Started from an empty environment, like every bwrap we run (docs/sandbox-isolation.md §4 #1).
BWRAP_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
_PROBE = ["--unshare-user", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/",
          "--proc", "/proc", "--dev", "/dev", "true"]

NAMESPACED_DETAIL = ("bubblewrap: own network namespace with only loopback, own PID, IPC and UTS "
                     "namespaces, read-only system, no host secrets; the policy proxy is the only way out")
PROCESS_DETAIL = ("WEAKER: no namespaces, commands run as plain host processes with only the proxy "
                  "variables set; localhost reaches the host, a client that ignores the proxy "
                  "variables goes straight out, and host files and /proc are visible")


@dataclass(frozen=True)
class Tier:
    """The isolation tier: ``name``, why it was chosen (``reason``) and what it means (``detail``)."""

    name: TierName
    reason: str
    detail: str
    bwrap: str = ""  # path of the bwrap binary when namespaced
    fix: str = ""  # how to get the namespaced tier here ("" when it is in use)

    @property
    def weaker(self) -> bool:
        return self.name == "process"

    def banner(self) -> str:
        """One line for `sbx create`, `labkit doctor` and notebook headers."""
        return f"{self.name} ({self.reason}) — {self.detail}"


class IsolationUnavailable(LabError, RuntimeError):
    """LABKIT_ISOLATION=namespaced was asked for where namespaces cannot be made."""


def _probe(bwrap: str) -> tuple[bool, str]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run([bwrap, *_PROBE], env=BWRAP_ENV, capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap could not run ({exc})"
    ms = (time.monotonic() - t0) * 1000
    if proc.returncode == 0:
        return True, f"bubblewrap works here (probe {ms:.0f} ms)"
    line = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return False, f"bubblewrap cannot create namespaces here: {line}"


@lru_cache(maxsize=1)
def _detect(forced: str) -> Tier:
    if forced == "process":
        return Tier("process", "LABKIT_ISOLATION=process forces it", PROCESS_DETAIL, fix="unset LABKIT_ISOLATION")
    # Found on the caller's PATH (so `labkit doctor` and the runtime agree on what is installed),
    # then always run by absolute path from an empty environment.
    bwrap = shutil.which("bwrap")
    if not bwrap:
        ok, why = False, f"bubblewrap (bwrap) is not installed; on Debian/Ubuntu: {fixes.apt_install('bubblewrap')}"
    elif not os.path.exists("/proc/self/ns/user"):
        ok, why = False, "this kernel has no user namespaces"
    else:
        ok, why = _probe(bwrap)
    if ok and bwrap:
        return Tier("namespaced", why, NAMESPACED_DETAIL, bwrap)
    if forced == "namespaced":
        raise IsolationUnavailable(f"LABKIT_ISOLATION=namespaced, but {why}", _fix(why))
    return Tier("process", why, PROCESS_DETAIL, fix=_fix(why))


def _fix(why: str) -> str:
    """What to do about the reason namespaces failed (docs/sandbox-isolation.md §1, measured errors)."""
    text = why.lower()
    if "not installed" in text:
        return fixes.apt_install("bubblewrap")
    if "uid map" in text or "rtm_newaddr" in text:
        return ("Ubuntu 24.04+ restricts user namespaces: sudo sysctl -w "
                "kernel.apparmor_restrict_unprivileged_userns=0 (or run the lab as root)")
    if "max_" in text or "no space left" in text:
        return "user namespaces are limited to 0 here: sudo sysctl -w user.max_user_namespaces=15000"
    if "not permitted" in text:
        return ("this looks like a container without user namespaces (Docker's default seccomp): "
                "run it with --security-opt seccomp=unconfined, or accept the weaker process tier")
    return f"see `{fixes.DOCTOR}`; the process tier works everywhere but is weaker"


def detect() -> Tier:
    """The tier sandboxes get here (probed once per process, then cached)."""
    forced = os.environ.get("LABKIT_ISOLATION", "auto").strip().lower()
    return _detect(forced if forced in ("process", "namespaced") else "auto")
