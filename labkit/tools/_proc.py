"""Run a CLI whose argv prefix is a parameter, and turn its failures into ``ToolError``.

The prefix is ``["sbx"]`` or ``["docker", "model"]`` in live mode and
``[sys.executable, "-m", "labkit", "sbx"]`` in embedded mode: one code path reads both.
Each command runs in its own process group, so a timeout kills whatever it started too.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ToolError, refix


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code and decoded output."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return "\n".join(part for part in (self.out, self.err) if part)


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of a tool's output, for messages about unknown failures."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def decode(raw: bytes | None) -> str:
    text = (raw or b"").decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()


class Cli:
    """Shared plumbing of ``SbxCli`` and ``ModelCli``; subclasses say how their tool fails."""

    tool = "tool"  # how the command is spelled in messages: "sbx", "docker model"
    install_fix = ""
    timeout_fix = ""

    def __init__(self, prefix: Sequence[str], timeout: float = 60.0, fixes: Mapping[str, str] | None = None) -> None:
        if not prefix:
            raise ValueError("the argv prefix must name an executable")
        self.prefix = list(prefix)
        self.timeout = timeout
        # kind -> fix, replacing the live tool's advice (embedded mode: "labkit up", not Docker Desktop)
        self.fixes = dict(fixes or {})

    def refix(self, err: ToolError) -> ToolError:
        return refix(err, self.fixes)

    def argv(self, *args: str) -> list[str]:
        """The full argv for ``args``, e.g. for a caller that streams the command itself."""
        return [*self.prefix, *args]

    def show(self, args: Sequence[str]) -> str:
        """The command as the learner would type it."""
        return " ".join([self.tool, *map(shlex.quote, args)])

    def classify(self, done: Completed) -> ToolError | None:
        """A known failure in ``done``'s output, or None; subclasses know their tool's texts."""
        return None

    def run(self, args: Sequence[str], timeout: float | None = None, check: bool = True) -> Completed:
        """Run ``prefix + args``; with ``check``, a non-zero exit raises a ``ToolError``."""
        limit = self.timeout if timeout is None else timeout
        argv = self.argv(*args)
        proc = self._spawn(argv, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise self._timed_out(args, limit, Completed(tuple(argv), -9, decode(out), decode(err))) from None
        done = Completed(tuple(argv), proc.returncode, decode(out), decode(err))
        if check and done.code != 0:
            raise self.error(args, done)
        return done

    def stream(self, args: Sequence[str], on_line: Callable[[str], None] | None,
               timeout: float | None = None) -> Completed:
        """Run and hand each output line (stdout and stderr, in order) to ``on_line`` as it comes."""
        limit = self.timeout if timeout is None else timeout
        argv = self.argv(*args)
        proc = self._spawn(argv, stderr=subprocess.STDOUT)
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            _kill_group(proc)

        timer = threading.Timer(limit, expire)
        timer.daemon = True
        timer.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                for line in decode(raw).split("\n"):
                    if line.strip():
                        lines.append(line)
                        if on_line is not None:
                            on_line(line)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                _kill_group(proc)
        done = Completed(tuple(argv), code, "\n".join(lines), "")
        if fired.is_set():
            raise self._timed_out(args, limit, done)
        if code != 0:
            raise self.error(args, done)
        return done

    def error(self, args: Sequence[str], done: Completed) -> ToolError:
        """The error a failed ``done`` means: a known failure, else the generic one; with this mode's fix."""
        return self.refix(self.classify(done) or self.failed(args, done))

    def failed(self, args: Sequence[str], done: Completed) -> ToolError:
        """The generic error for a failure no pattern knows: the command and its first error line."""
        said = first_line(done.err) or first_line(done.out) or "no output"
        return ToolError(f"`{self.show(args)}` failed (exit {done.code}): {said}", kind="command_failed",
                         detail=done.text)

    def _spawn(self, argv: list[str], stderr: int) -> subprocess.Popen:
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                    start_new_session=True)
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            raise self.refix(ToolError(f"`{argv[0]}` is not installed here (not found on PATH)", self.install_fix,
                                       "tool_missing")) from None

    def _timed_out(self, args: Sequence[str], limit: float, partial: Completed) -> ToolError:
        # A login flow or a daemon start that hangs says so before it hangs: name that, not the timeout.
        known = self.classify(partial)
        if known is not None and known.kind != "command_failed":
            return self.refix(known)
        return self.refix(ToolError(f"`{self.show(args)}` did not finish within {limit:g}s", self.timeout_fix,
                                    "timeout", detail=partial.text))
