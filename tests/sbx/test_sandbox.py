"""Sandboxes for real, in both tiers: the course's networking facts, isolation, persistence, exit codes.

Each test runs once per tier (``tier`` fixture). Tests marked ``namespaces`` need the
namespaced tier and are skipped in the process tier with the reason; the rest must hold in
both. A test server on a free port stands in for the model server on 12434.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sbx_helpers import HOST_SECRET, Upstream, audit_mark, audit_wait, run_in, sbx

from labkit.sbx import isolation, runtime, store
from tests.support import wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("fresh_policy")]


def curl(url: str, *flags: str) -> str:
    return " ".join(["curl", "-sS", "-m", "5", *flags, url])


# ---- the three networking facts (course step 5) ------------------------------------------------

@pytest.mark.namespaces
def test_localhost_inside_is_the_sandbox_own_loopback(sandbox: str, other_upstream: Upstream) -> None:
    # a server listens on the host's 127.0.0.1:PORT, yet inside it is connection refused (curl exit 7)
    hits = other_upstream.hits["/hello"]  # shared by the package's tests: count from here
    done = sbx("exec", sandbox, "curl", "-sS", "-m", "5", f"http://localhost:{other_upstream.port}/hello")
    assert done.returncode == 7, done.stderr
    assert "couldn't connect" in done.stderr.lower() or "refused" in done.stderr.lower()
    assert other_upstream.hits["/hello"] == hits


@pytest.mark.namespaces
def test_model_runner_docker_internal_does_not_resolve(sandbox: str) -> None:
    done = run_in(sandbox, f"{curl('http://model-runner.docker.internal:12434/', '--noproxy', '*')}; echo rc=$?; "
                           "getent hosts model-runner.docker.internal; echo getent=$?; "
                           "getent hosts host.docker.internal")
    assert "rc=6" in done.stdout and "Could not resolve host" in done.stderr
    assert "getent=2" in done.stdout
    assert f"{runtime.HOST_ADDRESS} " in done.stdout and "host.docker.internal" in done.stdout


def test_host_docker_internal_is_blocked_until_localhost_port_is_allowed(sandbox: str, upstream: Upstream) -> None:
    url = f"http://host.docker.internal:{upstream.port}/v1/models"
    mark = audit_mark()
    blocked = run_in(sandbox, curl(url))
    assert blocked.returncode == 0, blocked.stderr  # curl without -f: a 403 with a body is a success
    assert blocked.stdout.startswith(f"Blocked by network policy: domain host.docker.internal:{upstream.port}\n")
    assert "default deny" in blocked.stdout
    [rec] = audit_wait(mark, 1)
    assert (rec.sandbox, rec.decision, rec.normalized) == (sandbox, "deny", f"localhost:{upstream.port}")

    added = sbx("policy", "allow", "network", f"localhost:{upstream.port}")
    assert added.returncode == 0 and added.stdout.startswith("Policy added: ")
    mark = audit_mark()
    answered = run_in(sandbox, curl(url))
    assert answered.returncode == 0 and '"ai/test-model"' in answered.stdout
    [rec] = audit_wait(mark, 1)
    assert (rec.sandbox, rec.decision, rec.status, rec.rule["text"]) == (
        sandbox, "allow", 200, f"allow localhost:{upstream.port}")

    # a deny rule beats the allow, for this sandbox only
    assert sbx("policy", "deny", "network", "--sandbox", sandbox, f"localhost:{upstream.port}").returncode == 0
    denied = run_in(sandbox, curl(url))
    assert denied.stdout.startswith("Blocked by network policy") and "(domain, deny)" in denied.stdout
    log = sbx("policy", "log", sandbox)
    assert "Blocked requests:" in log.stdout and "Allowed requests:" in log.stdout and "user-denied" in log.stdout


def test_exit_codes_pass_through_and_a_missing_sandbox_is_125(sandbox: str) -> None:
    assert sbx("exec", sandbox, "sh", "-c", "exit 3").returncode == 3
    assert sbx("exec", sandbox, "no-such-program").returncode == 127
    missing = sbx("exec", "no-such-sandbox", "true")
    assert missing.returncode == 125
    assert missing.stderr.startswith("ERROR: no sandbox named 'no-such-sandbox'")
    assert "sbx create --name no-such-sandbox shell ." in missing.stderr and "Traceback" not in missing.stderr
    assert sbx("exec", sandbox).returncode == 125  # no command: sbx exec's own usage error


def test_streams_env_and_workdir(sandbox: str, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    script = 'echo "$GREETING $(pwd)"; cat; echo err >&2'
    done = sbx("exec", "-e", "GREETING=hi", "-w", "sub", sandbox, "sh", "-c", script, input="from stdin\n")
    assert done.returncode == 0
    assert done.stdout == f"hi {workspace}/sub\nfrom stdin\n" and done.stderr == "err\n"


def test_home_persists_across_exec_and_stop(sandbox: str) -> None:
    assert run_in(sandbox, 'echo kept > "$HOME/notes.txt"').returncode == 0
    assert run_in(sandbox, 'cat "$HOME/notes.txt"').stdout == "kept\n"
    assert sbx("stop", sandbox).returncode == 0
    assert store.get(sandbox).status == "stopped"
    assert run_in(sandbox, 'cat "$HOME/notes.txt"').stdout == "kept\n"
    assert store.get(sandbox).status == "running"  # exec starts a stopped sandbox, like sbx


def test_workspace_is_shared_read_write_at_the_same_path(sandbox: str, workspace: Path) -> None:
    (workspace / "from-host.txt").write_text("host\n")
    done = run_in(sandbox, f'cat {workspace}/from-host.txt && echo guest > {workspace}/from-guest.txt && pwd')
    assert done.stdout == f"host\n{workspace}\n"
    assert (workspace / "from-guest.txt").read_text() == "guest\n"


def test_no_host_secret_in_the_environment(sandbox: str) -> None:
    assert HOST_SECRET in os.environ["OPENAI_API_KEY"]  # the CLI and the proxy have it
    done = run_in(sandbox, "env")
    assert HOST_SECRET not in done.stdout and "OPENAI_API_KEY" not in done.stdout
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["HOME"].endswith(("/home/agent", "/home")) and env["USER"] == "agent"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    assert env["HTTP_PROXY"] == env["https_proxy"]


@pytest.mark.namespaces
def test_no_host_secret_through_proc(sandbox: str) -> None:
    done = run_in(sandbox, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'; ls /proc | grep -c '^[0-9]'")
    assert HOST_SECRET not in done.stdout and "OPENAI_API_KEY" not in done.stdout
    assert int(done.stdout.split()[-1]) < 10  # its own PID namespace: a handful of processes, not the host's


@pytest.mark.namespaces
def test_namespaced_identity_and_read_only_system(sandbox: str) -> None:
    env = run_in(sandbox, "env").stdout
    assert "HTTP_PROXY=http://gateway.docker.internal:3128" in env and "HOME=/home/agent" in env
    done = run_in(sandbox, "hostname; id -un; touch /usr/x /etc/x /x 2>&1 | grep -c Read-only; ls /etc/shadow; "
                           "cat /etc/os-release | head -1")
    lines = done.stdout.splitlines()
    assert lines[:3] == [sandbox, "agent", "3"]
    assert "No such file" in done.stderr  # no /etc/shadow: a curated /etc
    assert lines[3].startswith("PRETTY_NAME=")


@pytest.mark.namespaces
def test_host_files_sockets_and_state_are_invisible(sandbox: str, lab_home: Path, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"host-marker-{os.getpid()}"
    marker.write_text("host /tmp\n")
    sock_path = tmp_path / "host-service.sock"
    host_sock = socket.socket(socket.AF_UNIX)
    host_sock.bind(str(sock_path))
    host_sock.listen()
    try:
        script = (f"ls {marker} 2>&1; ls {lab_home} 2>&1; ls /run/sbx; ls /root 2>&1 | head -3; "
                  f"python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{sock_path}')\" 2>&1 "
                  "| tail -1")
        out = run_in(sandbox, script).stdout
    finally:
        host_sock.close()
        marker.unlink()
    assert f"ls: cannot access '{marker}'" in out
    assert f"ls: cannot access '{lab_home}'" in out  # no policy store, no other sandbox's home
    assert "\nproxy.sock\n" in out or out.count("proxy.sock") == 1  # only this sandbox's socket
    assert "FileNotFoundError" in out or "No such file" in out


@pytest.mark.namespaces
def test_direct_tcp_to_any_host_address_fails(sandbox: str) -> None:
    host_ips = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                if a.family == socket.AF_INET and not a.address.startswith("127.")]
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        # host.docker.internal's address takes raw TCP only on ports a rule names (test_raw_tcp.py)
        targets = [*host_ips, "169.254.1.1", runtime.HOST_ADDRESS, "1.1.1.1", "127.0.0.1"]
        code = ("import socket, sys\n"
                f"for ip in {targets!r}:\n"
                "    try:\n"
                f"        socket.create_connection((ip, {port}), timeout=2); print(ip, 'CONNECTED')\n"
                "    except OSError as e: print(ip, 'failed', e.errno)\n")
        out = runtime.exec_command(sandbox, ["python3", "-c", code], timeout=60).stdout
    assert "CONNECTED" not in out and out.count("failed") == len(targets), out


@pytest.mark.namespaces
def test_everything_started_inside_dies_with_the_command(sandbox: str) -> None:
    t0 = time.monotonic()
    done = run_in(sandbox, "sleep 300 & echo started")  # the background sleep holds stdout open
    assert done.stdout == "started\n" and time.monotonic() - t0 < 20
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if p.info["cmdline"] and ("sleep" in p.info["cmdline"][:1] and "300" in p.info["cmdline"]
                                           or any(a.endswith("relay.py") for a in p.info["cmdline"]))
                 and _hostname_of(p) == sandbox]
    assert leftovers == []


def _hostname_of(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get("HOSTNAME")
    except psutil.Error:
        return None


def test_course_python_and_its_packages_work_inside(sandbox: str) -> None:
    done = run_in(sandbox, "python3 -c 'import openai, httpx, sys; print(openai.__name__, sys.prefix)'; "
                           "pip install --no-input openai 2>&1 | tail -1; ls $HOME/.local 2>&1 | head -1")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("openai ")
    assert "Requirement already satisfied" in lines[1]  # present in the course env: nothing to fetch
    assert "No such file" in lines[2]  # and nothing was written


def test_create_says_which_isolation_it_got(tier: str, workspace: Path) -> None:
    name = f"c-{tier[:4]}-{os.getpid()}"
    try:
        done = sbx("create", "--name", name, "shell", str(workspace))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"✓ Created sandbox '{name}'\n  Workspace: {workspace} (direct mount)\n")
        if tier == "process":
            assert "Isolation: process — WEAKER" in done.stdout and "LABKIT_ISOLATION=process" in done.stdout
        else:
            assert "Isolation: namespaced" in done.stdout
        listed = sbx("ls")
        assert listed.stdout.splitlines()[0].split() == ["SANDBOX", "AGENT", "STATUS", "PORTS", "WORKSPACE"]
        assert any(line.split()[:3] == [name, "shell", "running"] for line in listed.stdout.splitlines())
        assert sbx("create", "--name", name, "shell", str(workspace)).returncode == 1  # exists
    finally:
        assert sbx("rm", "-f", name).returncode == 0
    assert not (store.sandboxes_dir() / name).exists()
    assert name not in sbx("ls", "-q").stdout.split()


@pytest.mark.parametrize("args, message", [
    (["create", "--name", "x", "shell", "."], "invalid sandbox name 'x'"),
    (["create", "--name", "default", "shell", "."], "reserved"),
    (["create", "--name", "ok-name", "gemini", "."], "unknown agent 'gemini'"),
    (["create", "--name", "ok-name", "shell", "/no/such/dir"], "is not a directory"),
    (["stop", "ghost-box"], "no sandbox named 'ghost-box'"),
    (["rm", "-f", "ghost-box"], "no sandbox named 'ghost-box'"),
    (["policy", "allow", "network", "a.*.com"], "wildcard may only be the first label"),
    (["policy", "allow", "localhost:1"], "write: sbx policy allow network localhost:1"),
    (["policy", "rm", "network", "--resource", "nothing.example"], "no local rule has resource"),
    (["policy", "allow", "network", "--sandbox", "ghost-box", "a.com"], "no sandbox named 'ghost-box'"),
    (["policy", "init", "open"], "invalid choice"),
    (["run", "ghost-box"], "needs a terminal"),
])
def test_user_mistakes_get_one_clear_error(args: list[str], message: str) -> None:
    done = sbx(*args)
    assert done.returncode in (1, 2) and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_tier_is_reported_with_its_reason(tier: str) -> None:
    detected = isolation.detect()
    assert detected.name == tier
    assert detected.reason and detected.detail and detected.weaker == (tier == "process")


def _registry_reachable() -> str | None:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return None
    except OSError as exc:
        return f"PyPI is not reachable from this machine ({exc}); the proxy path cannot be shown"


def test_pip_installs_a_new_package_into_the_home_through_the_proxy(sandbox: str) -> None:
    reason = _registry_reachable()
    if reason:
        pytest.skip(reason)
    package = "pyjokes"  # tiny, pure Python, not a dependency of the course
    mark = audit_mark()
    done = run_in(sandbox, f"pip install --no-input --no-deps {package} 2>&1 | tail -1", timeout=120)
    assert f"Successfully installed {package}" in done.stdout, done.stdout + done.stderr
    imported = run_in(sandbox, f"python3 -c 'import {package}; print({package}.__file__)'")
    assert "/.local/lib/python" in imported.stdout  # in the sandbox home, not the course env
    hosts = {(r.host, r.port, r.decision, r.rule.get("name")) for r in audit_wait(mark, 2) if r.sandbox == sandbox}
    assert ("pypi.org", 443, "allow", "default-package-managers") in hosts
    assert ("files.pythonhosted.org", 443, "allow", "default-package-managers") in hosts


def test_stop_ends_what_runs_inside_even_when_detached(sandbox: str) -> None:
    seconds = str(300 + os.getpid() % 500)  # a `sleep N` no one else runs

    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", seconds]]

    assert sbx("exec", "-d", sandbox, "sleep", seconds).returncode == 0
    found = wait_for(sleepers, 20, "the detached command")
    assert sbx("stop", sandbox).stdout == f"✓ Stopped sandbox '{sandbox}'\n"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in found)
    assert "stopped" in sbx("ls").stdout


def test_where_namespaces_are_forbidden_the_process_tier_is_chosen_automatically(workspace: Path) -> None:
    """A user namespace whose own user.max_user_namespaces is 0 forbids nesting, like Docker's seccomp."""
    name = f"fallback-{os.getpid()}"
    script = ("echo 0 > /proc/sys/user/max_user_namespaces || exit 99; "
              f'"$0" -m labkit.sbx.cli create --name {name} shell {workspace} && '
              f'"$0" -m labkit.sbx.cli exec {name} curl -sS -m 5 http://fallback.example/')
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_ISOLATION"}
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script, sys.executable],
                              capture_output=True, text=True, timeout=60, env=env)
    except FileNotFoundError:
        pytest.skip("util-linux `unshare` is not installed")
    if done.returncode == 99 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a restricted user namespace here: {done.stderr.strip()}")
    try:
        assert "Isolation: process — WEAKER" in done.stdout, done.stdout + done.stderr
        assert "Why: bubblewrap cannot create namespaces here" in done.stdout
        assert "Blocked by network policy: domain fallback.example:80" in done.stdout  # still via the proxy
    finally:
        sbx("rm", "-f", name)


@pytest.mark.namespaces
def test_a_detached_command_leaves_nothing_behind_when_it_ends(sandbox: str) -> None:
    def relays() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and any(a.endswith("relay.py") for a in p.info["cmdline"])
                and _hostname_of(p) == sandbox]

    assert sbx("exec", "-d", sandbox, "sleep", "1").returncode == 0
    wait_for(relays, 20, "the detached command's relay")
    wait_for(lambda: not relays(), 20, "the relay to end with the command")


def test_a_vanished_workspace_is_a_clear_error(sandbox: str, workspace: Path) -> None:
    workspace.rmdir()
    done = sbx("exec", sandbox, "true")
    assert done.returncode == 125
    assert f"the workspace {workspace} of sandbox '{sandbox}' no longer exists" in done.stderr


GUEST_CLIENT = r'''
import hashlib, json, sys, threading, time, urllib.request
base = sys.argv[1]
payload = bytes(range(256)) * 40960  # 10 MiB
echoed = urllib.request.urlopen(urllib.request.Request(base + "/echo", payload), timeout=60).read()
t0 = time.monotonic()
arrivals = [time.monotonic() - t0 for line in urllib.request.urlopen(base + "/sse?n=4&gap=0.15", timeout=30)
            if line.startswith(b"data:")]
results = []
def get():
    results.append(urllib.request.urlopen(base + "/hello", timeout=30).read())
threads = [threading.Thread(target=get) for _ in range(20)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"echo_ok": hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest(),
                  "arrivals": arrivals, "parallel": sorted(set(r.decode() for r in results)), "n": len(results)}))
'''


def test_large_bodies_streams_and_parallel_requests_cross_the_sandbox_path(sandbox: str, upstream: Upstream) -> None:
    import json

    assert sbx("policy", "allow", "network", f"localhost:{upstream.port}").returncode == 0
    done = runtime.exec_command(sandbox, ["python3", "-c", GUEST_CLIENT, f"http://host.docker.internal:{upstream.port}"],
                                timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["echo_ok"] and got["n"] == 20 and got["parallel"] == ["hello from the host\n"]
    arrivals = got["arrivals"]
    assert len(arrivals) == 4 and arrivals[0] < 0.3 and arrivals[-1] - arrivals[0] > 0.3  # incremental, not buffered


@pytest.mark.namespaces
def test_run_gives_an_interactive_shell_on_a_terminal(sandbox: str) -> None:
    import select

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "labkit.sbx.cli", "run", sandbox],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen[-300:]
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)

    try:
        read_until(f"agent@{sandbox}".encode())  # bash's prompt: user agent, hostname = sandbox
        os.write(master, b"echo marker-$((6*7)); exit 5\n")
        read_until(b"marker-42")
        assert proc.wait(30) == 5
    finally:
        proc.kill()
        os.close(master)
