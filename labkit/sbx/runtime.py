"""Embedded sandboxes: create, run a command inside, stop, remove.

A command runs in a fresh bubblewrap launch per ``exec`` (namespaced tier) or as a plain
process (process tier); what persists between launches is the sandbox's home folder and
workspace, like a VM disk. The namespaced launch follows docs/sandbox-isolation.md §3 and its
pitfalls: bwrap itself starts from an empty environment (its pid 1 keeps bwrap's environ),
``--unshare-user`` always, private /tmp, /run and /home, a curated /etc (the guest maps to the
caller's uid, so as root it could read /etc/shadow through a full bind), binds sorted so a
parent is mounted before anything inside it, the relay inside the namespace dies with the
command. The guest is ``agent`` (uid 1000), as in sbx.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import fixes
from .._core import paths
from ..records import SandboxInfo
from . import guest_agents, isolation, rules, service, store
from .guest_agents import AgentInstall
from .isolation import BWRAP_ENV, Tier
from .policy import PolicyError

GUEST_HOME = "/home/agent"
GUEST_UID = 1000
PROXY_URL = "http://gateway.docker.internal:3128"
NO_PROXY = "localhost,127.0.0.1,::1"
# What host.docker.internal resolves to inside. sbx uses 169.254.1.1 (docs/sbx-dmr-facts.md §1.6), but
# adding that address to the sandbox's loopback needs CAP_NET_ADMIN in its network namespace,
# which the guest must not have; all of 127.0.0.0/8 is on loopback already, so the relay can
# listen here unprivileged and pass raw TCP on to the proxy (sbx ≥ 0.30's transparent path).
HOST_ADDRESS = "127.254.1.1"
RELAY_IN_GUEST = "/run/labkit/relay.py"
SOCKET_DIR_IN_GUEST = "/run/sbx"

# /etc entries the guest gets from the host (read-only); nothing with secrets in it.
ETC_FROM_HOST = (
    "alternatives", "ssl/certs", "ssl/openssl.cnf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "localtime", "timezone", "os-release", "debian_version", "issue", "lsb-release", "protocols",
    "services", "host.conf", "gai.conf", "mime.types", "bash.bashrc", "profile", "profile.d",
    "inputrc", "terminfo", "pip.conf", "gitconfig", "magic", "magic.mime", "python3", "ethertypes",
    f"python{sys.version_info.major}.{sys.version_info.minor}",
)
HIDDEN_TOP = ("tmp", "run", "home", "var")


@dataclass(frozen=True)
class Launch:
    """How to start one command in a sandbox: argv, the complete environment, cwd, tier."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    tier: Tier


# ---- lifecycle ------------------------------------------------------------------------------

def create(agent: str, workspace: str, name: str | None = None) -> store.Sandbox:
    """``sbx create [--name N] AGENT PATH``: a sandbox with its own home (raises SandboxError)."""
    name = name or store.default_name(agent, os.path.realpath(workspace))
    guest_agents.require(agent)  # a missing codex/claude: one clear error, nothing created
    sandbox = store.create(name, agent, [workspace])
    guest_agents.make_home(agent, sandbox.home)
    write_guest_etc(sandbox)
    return sandbox


def agent_command(name: str) -> list[str]:
    """What ``sbx run`` starts, as in sbx: the agent of an agent sandbox, else a shell."""
    agent = store.get(name).agent
    if guest_agents.require(agent) is None:
        return [_shell()]
    return [guest_agents.command(agent)]


def _shell() -> str:
    return "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def list_sandboxes() -> list[SandboxInfo]:
    return [sb.info() for sb in store.all_sandboxes()]


def stop(name: str, timeout: float = 5.0) -> store.Sandbox:
    """End every command running in the sandbox; the home and workspace stay."""
    sandbox = store.get(name)
    procs = []
    for proc in store.live_processes(sandbox):  # bwrap (or the command) and all it started
        try:
            procs += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return store.set_status(sandbox, "stopped")


def remove(name: str) -> None:
    """Stop, drop the sandbox's scoped rules, delete its home and record, close its endpoint."""
    sandbox = stop(name)
    rules.drop_sandbox(name)
    store.delete(sandbox)
    service.sync()


# ---- what the guest sees ----------------------------------------------------------------------

def _guest_files(name: str) -> dict[str, str]:
    return {
        "hosts": (f"127.0.0.1\tlocalhost {name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                  f"127.0.0.1\tgateway.docker.internal\n{HOST_ADDRESS}\thost.docker.internal\n"),
        "resolv.conf": "# no DNS inside the sandbox: only names in /etc/hosts resolve\nnameserver 127.0.0.1\n",
        "hostname": f"{name}\n",
        "passwd": ("root:x:0:0:root:/root:/bin/bash\n"
                   f"agent:x:{GUEST_UID}:{GUEST_UID}:agent:{GUEST_HOME}:/bin/bash\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        "group": f"root:x:0:\nagent:x:{GUEST_UID}:\nnogroup:x:65534:\n",
        "nsswitch.conf": ("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                          "networks: files\nprotocols: files\nservices: files\n"),
    }


def write_guest_etc(sandbox: store.Sandbox) -> None:
    sandbox.etc.mkdir(exist_ok=True)
    for fname, text in _guest_files(sandbox.name).items():
        path = sandbox.etc / fname
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_name(f".{fname}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


def _python_roots() -> list[str]:
    """The course interpreter's prefixes (venv, base install), so python3 and its packages work."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    # An editable install (the course checkout) imports labkit from outside the venv: bind the
    # package folder read-only too, so `python3 -m labkit.agent` works inside (Step 8).
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not any(package == r or package.startswith(r.rstrip("/") + "/") for r in roots):
        roots.add(package)
    return sorted(r for r in roots if r and r != "/" and not r.startswith("/usr"))


def _user_site(home: str) -> str:
    return f"{home}/.local/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def guest_env(sandbox: store.Sandbox, tier: Tier, proxy_url: str, home: str,
              extra: dict[str, str] | None = None, agent_bin: str = "") -> dict[str, str]:
    """The rebuilt environment: nothing from the host except what is listed here and ``-e``.

    ``pip install`` of a new package goes to ``~/.local`` (PIP_PREFIX; the course env is
    read-only), which PYTHONPATH puts on the path; a package already present is found in
    the course env and nothing is written. An agent sandbox's ``agent_bin`` comes first on
    PATH, so its command is always the pinned, read-only one.
    """
    scripts = sysconfig.get_path("scripts")
    path = [*([agent_bin] if agent_bin else []), f"{home}/.local/bin", scripts, "/usr/local/sbin",
            "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    env = {
        "PATH": ":".join(dict.fromkeys(path)),
        "HOME": home, "USER": "agent", "LOGNAME": "agent", "SHELL": "/bin/bash",
        "TERM": os.environ.get("TERM") or "xterm", "LANG": "C.UTF-8",
        "HTTP_PROXY": proxy_url, "HTTPS_PROXY": proxy_url, "http_proxy": proxy_url, "https_proxy": proxy_url,
        "NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY,
        "PIP_PREFIX": f"{home}/.local", "PYTHONPATH": _user_site(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if tier.name == "namespaced":
        env["HOSTNAME"] = sandbox.name
    env.update(guest_agents.guest_env(sandbox.agent, home))
    env.update(extra or {})
    return env


def _depth(path: str) -> int:
    return 0 if path == "/" else path.rstrip("/").count("/")


def _read_only_roots(sandbox: store.Sandbox, agent: AgentInstall | None) -> list[str]:
    """The agent's install prefix; also for any sandbox whose workspace holds the agents' prefix."""
    roots = [agent.prefix] if agent else []
    installed = guest_agents.prefix()
    if any(installed.startswith(ws.rstrip("/") + "/") for ws in sandbox.workspaces):
        roots.append(installed)  # a shell sandbox on the repo must not be able to change the agents either
    return list(dict.fromkeys(roots))


def _mounts(sandbox: store.Sandbox, socket_dir: Path, agent: AgentInstall | None = None,
            links: Path | None = None) -> list[list[str]]:
    """bwrap mount options, ordered so that a parent is always mounted before its children."""
    ops: list[tuple[str, list[str]]] = [("/usr", ["--ro-bind", "/usr", "/usr"])]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{top}"
        if os.path.islink(host):
            ops.append((host, ["--symlink", os.readlink(host), host]))
        elif os.path.isdir(host):
            ops.append((host, ["--ro-bind", host, host]))
    ops += [("/etc", ["--dir", "/etc"]), ("/proc", ["--proc", "/proc"]), ("/dev", ["--dev", "/dev"])]
    ops += [(f"/{d}", ["--tmpfs", f"/{d}"]) for d in HIDDEN_TOP]
    for entry in ETC_FROM_HOST:
        ops.append((f"/etc/{entry}", ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]))
    for fname in _guest_files(sandbox.name):
        ops.append((f"/etc/{fname}", ["--ro-bind", str(sandbox.etc / fname), f"/etc/{fname}"]))
    ops += [
        (SOCKET_DIR_IN_GUEST, ["--ro-bind", str(socket_dir), SOCKET_DIR_IN_GUEST]),
        (RELAY_IN_GUEST, ["--ro-bind", str(Path(__file__).with_name("relay.py")), RELAY_IN_GUEST]),
        (GUEST_HOME, ["--bind", str(sandbox.home), GUEST_HOME]),
    ]
    ops += [(ws, ["--bind", ws, ws]) for ws in sandbox.workspaces]
    ops += [(root, ["--ro-bind", root, root]) for root in _python_roots()]
    ops += [(root, ["--ro-bind-try", root, root]) for root in _read_only_roots(sandbox, agent)]
    if links is not None:
        ops.append((guest_agents.LINKS_IN_GUEST, ["--ro-bind", str(links), guest_agents.LINKS_IN_GUEST]))
    state = str(paths.home().resolve())
    if any(state == ws or state.startswith(ws.rstrip("/") + "/") for ws in sandbox.workspaces):
        ops.append((state, ["--tmpfs", state]))  # never let a guest edit its own policy or others' homes
    ops.sort(key=lambda op: _depth(op[0]))  # stable: equal depths keep the order above
    return [args for _, args in ops]


def raw_tcp_ports(sandbox: str) -> list[int]:
    """Ports where the relay takes raw TCP to host.docker.internal: the model port, and every port
    a rule names for ``localhost`` (allowing or denying it). The proxy decides each connection."""
    try:
        named = rules.load().policy().loopback_ports(sandbox)
    except PolicyError:
        named = set()
    return sorted({paths.dmr_port(), *named})


def _bwrap_argv(tier: Tier, sandbox: store.Sandbox, socket_dir: Path, env: dict[str, str], cwd: str,
                cmd: list[str], tty: bool, detach: bool, agent: AgentInstall | None = None,
                links: Path | None = None) -> list[str]:
    argv = [tier.bwrap, "--unshare-user", "--uid", str(GUEST_UID), "--gid", str(GUEST_UID),
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", sandbox.name, "--cap-drop", "ALL"]
    if not detach:
        argv.append("--die-with-parent")  # the sandbox ends when whoever ran `sbx exec` ends
    if not tty:
        argv.append("--new-session")  # no TIOCSTI into the caller's terminal (a pty is ours alone)
    for mount in _mounts(sandbox, socket_dir, agent, links):
        argv += mount
    argv += ["--remount-ro", "/", "--chdir", cwd, "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    python = os.path.realpath(sys.executable)
    ports = ",".join(map(str, raw_tcp_ports(sandbox.name)))
    return [*argv, "--", python, "-I", "-S", RELAY_IN_GUEST, f"{SOCKET_DIR_IN_GUEST}/proxy.sock",
            HOST_ADDRESS, ports, "--", *cmd]


def prepare(name: str, cmd: list[str], env: dict[str, str] | None = None, workdir: str | None = None,
            tty: bool = False, detach: bool = False) -> Launch:
    """Everything needed to run ``cmd`` in sandbox ``name`` (starts the proxy when needed).

    Raises store.SandboxNotFound / SandboxError, or daemon.ServiceError when the proxy cannot start.
    """
    sandbox = store.get(name)
    missing = [ws for ws in sandbox.workspaces if not os.path.isdir(ws)]
    if missing:
        raise store.SandboxError(f"ERROR: the workspace {missing[0]} of sandbox '{name}' no longer exists; "
                                 f"recreate the folder, or remove the sandbox: {fixes.remove_sandbox(name)}")
    tier = isolation.detect()
    ep = service.endpoint(name)
    sandbox = store.set_status(sandbox, "running")  # sbx: "If the sandbox is stopped, it is started first."
    cmd = cmd or [_shell()]
    agent = guest_agents.find(sandbox.agent)
    links = guest_agents.link_folder(sandbox, agent) if agent else None
    if tier.name == "namespaced":
        write_guest_etc(sandbox)
        cwd = _workdir(workdir, sandbox.workspace)
        genv = guest_env(sandbox, tier, PROXY_URL, GUEST_HOME, env, guest_agents.LINKS_IN_GUEST if links else "")
        argv = _bwrap_argv(tier, sandbox, ep.folder, genv, cwd, cmd, tty, detach, agent, links)
        return Launch(argv, dict(BWRAP_ENV), None, tier)
    # Process tier: gateway.docker.internal cannot resolve without a mount namespace, so the
    # proxy variables point at the sandbox's own loopback port of the proxy.
    home = str(sandbox.home)
    genv = guest_env(sandbox, tier, f"http://127.0.0.1:{ep.port}", home, env, str(links or ""))
    return Launch(cmd, genv, _workdir(workdir, sandbox.workspace), tier)


def _workdir(workdir: str | None, workspace: str) -> str:
    if not workdir:
        return workspace
    return workdir if os.path.isabs(workdir) else os.path.join(workspace, workdir)


def popen(name: str, cmd: list[str], env: dict[str, str] | None = None, workdir: str | None = None,
          detach: bool = False, **kwargs: object) -> subprocess.Popen:
    """Start ``cmd`` in the sandbox; the caller streams and waits (``kwargs`` go to Popen).

    With ``detach`` the command outlives the caller (``sbx exec -d``); ``sbx stop`` ends it.
    """
    launch = prepare(name, cmd, env, workdir, detach=detach)
    kwargs.setdefault("start_new_session", True)
    proc = subprocess.Popen(launch.argv, env=launch.env, cwd=launch.cwd, **kwargs)  # type: ignore[call-overload]
    store.register_process(store.get(name), proc.pid)
    return proc


def exec_command(name: str, cmd: list[str], env: dict[str, str] | None = None, workdir: str | None = None,
                 input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in the sandbox and capture its output (text); the exit code is the command's."""
    proc = popen(name, cmd, env, workdir, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def exec_replace(name: str, cmd: list[str], env: dict[str, str] | None = None, workdir: str | None = None) -> None:
    """Become the sandboxed command (the CLI's ``sbx exec``): streams, signals and exit code pass through."""
    launch = prepare(name, cmd, env, workdir)
    store.register_process(store.get(name), os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    if launch.cwd:
        os.chdir(launch.cwd)
    try:
        os.execvpe(launch.argv[0], launch.argv, launch.env)
    except FileNotFoundError:
        print(f'sbx exec: "{launch.argv[0]}": executable file not found in $PATH', file=sys.stderr)
        raise SystemExit(127) from None
    except OSError as exc:
        print(f'sbx exec: "{launch.argv[0]}": {exc.strerror}', file=sys.stderr)
        raise SystemExit(126) from None


def interactive(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` on a new pseudo-terminal (``sbx run``, ``exec -t``); returns its exit status."""
    launch = prepare(name, cmd, env, tty=True)
    argv = ["/usr/bin/env", "-i", *[f"{k}={v}" for k, v in launch.env.items()], *launch.argv]
    old = os.getcwd()
    if launch.cwd:
        os.chdir(launch.cwd)
    try:
        status = pty.spawn(argv)
    finally:
        os.chdir(old)
    return os.waitstatus_to_exitcode(status)
