"""Background services of the embedded lab (model server, policy proxy).

Each service is a detached Python process with a pid file and a log under the state
folder, so ``labkit up`` / ``down`` / ``status`` work across notebooks, terminals and
kernel restarts. Starting is idempotent and guarded by a file lock; readiness is polled,
never slept for.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..errors import LabError
from . import paths


class ServiceError(LabError, RuntimeError):
    """A service could not be started or stopped: why (with its log's tail), and what to do."""


@dataclass
class Service:
    """A named background process: ``argv`` to start it, ``ready`` to know it answers."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0

    @property
    def pidfile(self) -> Path:
        return paths.state_dir("run") / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return paths.state_dir("logs") / f"{self.name}.log"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(paths.state_dir("run") / f"{self.name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def pid(self) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and proc.is_running():
                return pid
        except psutil.Error:
            pass
        self.pidfile.unlink(missing_ok=True)
        return None

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ended_unexpectedly(self) -> str | None:
        """When the service is not running although nobody stopped it: its log's last line, else None.

        ``start`` and ``stop`` write marker lines (``--- start``, ``--- stop``) into the log, so a
        log whose last marker is a start belongs to a process that died on its own (killed, or
        crashed): that is worth telling apart from "never started" or "stopped".
        """
        if self.pid() is not None:
            return None
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return None
        markers = [line for line in lines if line.startswith("--- ")]
        if not markers or not markers[-1].startswith("--- start"):
            return None
        said = [line for line in lines[lines.index(markers[-1]) + 1:] if line.strip()]
        return said[-1].strip() if said else "(nothing)"

    def start(self) -> tuple[int, bool, float]:
        """Start unless running; returns (pid, started_now, seconds until ready)."""
        with self._lock():
            pid = self.pid()
            if pid is not None:
                return pid, False, 0.0
            t0 = time.monotonic()
            env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
            with open(self.logfile, "ab") as log:
                log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True, close_fds=True,
                )
            self.pidfile.write_text(f"{proc.pid}\n")
            deadline = t0 + self.start_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    self.pidfile.unlink(missing_ok=True)
                    raise ServiceError(
                        f"{self.name} exited during start (code {proc.returncode}); its log says:\n"
                        f"{self.log_tail()}", f"read the whole log: {self.logfile}"
                    )
                if self.ready():
                    return proc.pid, True, time.monotonic() - t0
                time.sleep(0.02)
            self._terminate(proc.pid)
            raise ServiceError(
                f"{self.name} did not answer within {self.start_timeout:.0f} s; its log says:\n{self.log_tail()}",
                f"read the whole log: {self.logfile}"
            )

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop if running; True when a process was stopped."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                return False
            self._terminate(pid, timeout)
            self.pidfile.unlink(missing_ok=True)
            with open(self.logfile, "ab") as log:
                log.write(f"--- stop {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {pid})\n".encode())
            return True

    @staticmethod
    def _terminate(pid: int, timeout: float = 10.0) -> None:
        try:
            proc = psutil.Process(pid)
            os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else proc.terminate()
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        except (psutil.Error, ProcessLookupError):
            pass


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def exit_when_folder_gone(folder: Path, interval: float = 2.0) -> threading.Thread:
    """Stop this process (SIGTERM to itself: its own clean shutdown) once ``folder`` is deleted.

    A background service whose state folder is gone (``rm -rf ~/.labkit``, a test's temporary
    home) has nothing left to serve and no log to write; without this it would run on, holding
    its port and ~400 MB, with nothing that could find it again.
    """
    def watch() -> None:
        while folder.exists():
            time.sleep(interval)
        print(f"the state folder {folder} is gone: stopping", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="state-folder-watch", daemon=True)
    thread.start()
    return thread


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args…`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
