"""Run a course command, stream its output as it comes, and return what happened.

Notebooks show commands the way a terminal does: ``$ command``, then the output live.
A command that cannot run (missing program, timeout, interrupt) becomes one line that
says why and what to do, never a traceback. Long output is cut in the middle with a
visible note; the ``Result`` keeps everything.
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .. import fixes
from ..errors import LabError
from . import presenter

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_LINES = 60
TAIL_LINES = 10
# A transfer's progress, one line per step (DMR's non-TTY `Downloaded X of Y`, `Transferred: N MB`).
PROGRESS_WORDS = ("Downloaded", "Downloading", "Transferred", "Uploaded")
PROGRESS = re.compile(rf"({'|'.join(PROGRESS_WORDS)})\b[^\n]*\d")
TIMEOUT_EXIT = 124  # what coreutils' timeout(1) returns
MISSING_EXIT = 127  # what a shell returns for "command not found"
INTERRUPT_EXIT = 130

# What to do when one of the course's programs is missing.
INSTALL_HINTS: dict[str, str] = {
    "sbx": fixes.INSTALL_SBX,
    "docker": fixes.INSTALL_DOCKER_MODEL,
    "curl": f"install it: {fixes.apt_install('curl')}",
    "bwrap": f"install it: {fixes.apt_install('bubblewrap')}",
    "socat": f"install it: {fixes.apt_install('socat')}",
    "codex": "install it: npm install -g @openai/codex",
    "labkit": fixes.SET_UP_COURSE,
}

_OPERATOR_CHARS = set("();<>|&")
_EXPANSION_CHARS = set("$`*?~{}[]!#\\")


def needs_shell(command: str) -> bool:
    """True when a command line only makes sense to a shell (``a | b``, ``> f``, ``$VAR``, globs, …).

    Quoted text does not count (``printf '%s|%s'`` needs no shell). A false positive only
    means bash runs the line, which gives the same result; a false negative would not.
    """
    if "\n" in command:
        return True
    lexer = shlex.shlex(command, posix=False, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: let bash report it the way a terminal would
        return True
    for token in tokens:
        if set(token) <= _OPERATOR_CHARS:
            return True
        if token.startswith("'"):
            continue
        special = {"$", "`"} if token.startswith('"') else _EXPANSION_CHARS
        if any(ch in special for ch in token):
            return True
    return False


def to_argv(command: str | Sequence[str], shell: bool | None = None) -> tuple[list[str], str, bool]:
    """(argv, text shown after ``$``, ran through bash?) for a command line or an argv."""
    if not isinstance(command, str):
        argv = [str(a) for a in command]
        return argv, shlex.join(argv), False
    use_shell = needs_shell(command) if shell is None else shell
    if use_shell:
        return ["bash", "-c", command], command, True
    return shlex.split(command), command, False


@dataclass
class Result:
    """What a command did: exit code, both streams, duration, and a one-line error if it could not run."""

    command: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    error: str | None = None
    chunks: list[tuple[str, str]] = field(default_factory=list, repr=False)
    echoed: bool = field(default=False, repr=False)  # already shown live, as it ran

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None

    @property
    def output(self) -> str:
        """stdout and stderr interleaved in the order they arrived, as a terminal shows them."""
        return "".join(text for _, text in self.chunks)

    def transcript(self, max_lines: int = DEFAULT_MAX_LINES) -> str:
        """``$ command`` then the output, cut in the middle when longer than ``max_lines``."""
        lines = [f"$ {self.command}"]
        body = _cut(self.output, max_lines).rstrip("\n")
        if body:
            lines.append(body)
        if not self.ok:
            lines.append(self.status_line())
        return "\n".join(lines) + "\n"

    def status_line(self) -> str:
        if self.error:
            return f"✗ {self.error}"
        return f"[exit {self.returncode}]" if self.returncode else "[exit 0]"

    def check(self) -> Result:
        """Raise ``CommandFailed`` (one clear line) unless the command succeeded."""
        if not self.ok:
            raise CommandFailed(self)
        return self

    def __repr__(self) -> str:
        state = self.error or f"exit {self.returncode}"
        return f"<{state} · {self.duration:.2f} s>"

    def _ipython_display_(self) -> None:
        """As a cell's last value: nothing when the transcript was already streamed, else the transcript.

        (A trailing `;` is not enough: kernels that run cells without storing history, as nbval
        does, still display the value.)
        """
        if not self.echoed:
            print(self.transcript(), end="")


class CommandFailed(LabError, RuntimeError):
    """A command that ran and did not succeed; ``result`` keeps everything it printed.

    The fix is the hint a command that could not run carries (``curl: command not found — install
    it: …``); for a plain non-zero exit the output above, already shown, says why.
    """

    def __init__(self, result: Result):
        why, _, hint = (result.error or "").partition(" — ")
        super().__init__(f"`{result.command}` failed: {why or f'exit {result.returncode}'}", hint)
        self.result = result


def _may_be_progress(fragment: str) -> bool:
    """The first part of a line that may turn out to be progress (a pipe can cut a line anywhere):
    it begins with a progress word, or with the start of one."""
    return any(fragment[: len(w)] == w[: len(fragment)] for w in PROGRESS_WORDS)


def _cut(text: str, max_lines: int) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) <= max_lines:
        return text
    head = max_lines - TAIL_LINES
    hidden = len(lines) - head - TAIL_LINES
    note = f"… {hidden} more lines not shown (the full output is in the result's .stdout and .stderr) …\n"
    return "".join(lines[:head]) + note + "".join(lines[-TAIL_LINES:])


class _Echo:
    """Writes output live, up to a head of lines; keeps the rest and shows its tail at the end."""

    def __init__(self, out: TextIO | None, max_lines: int):
        self.out = out
        self.head = max(max_lines - TAIL_LINES, 1)
        self.printed = 0
        self.held: list[str] = []
        self.last_char = "\n"
        self.progress_open = False  # a progress line is on screen, its newline not written yet
        self.partial = ""  # a progress line's first part, held until its newline arrives

    def write(self, text: str) -> None:
        if self.out is None or not text:
            return
        if self.held:
            self.held.append(text)
            return
        text, self.partial = self.partial + text, ""
        lines = text.splitlines(keepends=True)
        if not lines[-1].endswith("\n") and _may_be_progress(lines[-1]) and (len(lines) > 1 or self.last_char == "\n"):
            self.partial = lines.pop()  # the start of a progress line: wait for its end
        for i, line in enumerate(lines):
            if self._progress(self.out, line):
                continue
            if self.printed >= self.head:
                self.held.append("".join(lines[i:]))
                break
            self.out.write(line)
            self.last_char = line[-1]
            self.printed += line.endswith("\n")
        self.out.flush()

    def _progress(self, out: TextIO, line: str) -> bool:
        """Progress lines (``Downloaded 4MB of 98MB``, one per chunk) share one line on screen: each
        redraws the last with ``\r``, as a terminal shows them; the result's output keeps them all."""
        whole = line.endswith("\n") and self.last_char == "\n"
        if whole and PROGRESS.match(line):
            out.write(("\r" if self.progress_open else "") + line.rstrip("\n"))
            if not self.progress_open:
                self.printed += 1
            self.progress_open = True
            return True
        self._close_progress()
        return False

    def _close_progress(self) -> None:
        if self.progress_open and self.out is not None:
            self.out.write("\n")
            self.progress_open = False

    def finish(self, result: Result) -> None:
        """Show what was held back, then the status line of a command that did not succeed, passed on
        with the result's ``ok`` (a presenter block colours it from that, not from its text)."""
        if self.out is None:
            return
        if self.partial:
            text, self.partial = self.partial, ""
            self.write(text + "\n")
        self._close_progress()
        if self.held:
            rest = "".join(self.held).splitlines(keepends=True)
            if len(rest) > TAIL_LINES:
                hidden = len(rest) - TAIL_LINES
                self.out.write(f"… {hidden} more lines not shown (the full output is in the result's "
                               ".stdout and .stderr) …\n")
                rest = rest[-TAIL_LINES:]
            for line in rest:
                self.out.write(line)
                self.last_char = line[-1]
        if self.last_char != "\n":
            self.out.write("\n")
        if not result.ok:
            presenter.write_status(self.out, result.status_line(), result.ok)
        self.out.flush()


def run(
    command: str | Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
    echo: bool = True,
    out: TextIO | None = None,
    max_lines: int = DEFAULT_MAX_LINES,
    shell: bool | None = None,
    display: str | None = None,
) -> Result:
    """Run a command line (or an argv), streaming ``$ command`` and its output to ``out``.

    ``env`` is added to the current environment. ``display`` replaces the command text
    shown after ``$`` (e.g. the course command when labkit runs its own implementation).
    """
    argv, shown, _ = to_argv(command, shell)
    shown = display or shown
    sink = (out or presenter.stream(sys.stdout)) if echo else None
    echo_ = _Echo(sink, max_lines)
    if sink is not None:
        sink.write(f"$ {shown}\n")
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()

    if not argv:
        return _failed(shown, argv, "empty command", 2, started, echo_)
    exe = argv[0]
    if shutil.which(exe, path=full_env.get("PATH")) is None and not os.path.exists(exe):
        hint = INSTALL_HINTS.get(os.path.basename(exe), "check the spelling, or install it")
        return _failed(shown, argv, f"{exe}: command not found — {hint}", MISSING_EXIT, started, echo_)

    if cwd is not None and not os.path.isdir(cwd):
        return _failed(shown, argv, f"the folder {cwd} does not exist — create it: mkdir -p {cwd}", MISSING_EXIT,
                       started, echo_)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd, start_new_session=True,
        )
    except OSError as exc:
        return _failed(shown, argv, f"{exe}: cannot run ({exc.strerror or exc})", MISSING_EXIT, started, echo_)
    if input is not None:
        threading.Thread(target=_feed, args=(proc, input), daemon=True).start()

    chunks: list[tuple[str, str]] = []
    parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
    error: str | None = None
    timed_out = False
    try:
        timed_out = _pump(proc, timeout, started, chunks, parts, echo_)
    except KeyboardInterrupt:
        _kill_group(proc)
        error = "interrupted; the command was stopped"
    returncode = proc.wait()
    if timed_out:
        returncode = TIMEOUT_EXIT
        error = f"timed out after {timeout:g} s and was stopped (raise timeout= if it needs longer)"
    elif error:
        returncode = INTERRUPT_EXIT
    stderr = "".join(parts["stderr"])
    if error is None and ": command not found" in stderr and argv[:2] == ["bash", "-c"]:
        missing = stderr.split(": command not found")[0].rsplit(": ", 1)[-1].strip()
        hint = INSTALL_HINTS.get(missing, "check the spelling, or install it")
        error = f"{missing}: command not found — {hint}"
    result = Result(shown, argv, returncode, "".join(parts["stdout"]), stderr,
                    time.monotonic() - started, timed_out, error, chunks, echoed=sink is not None)
    echo_.finish(result)
    return result


def _pump(proc: subprocess.Popen[bytes], timeout: float | None, started: float,
          chunks: list[tuple[str, str]], parts: dict[str, list[str]], echo_: _Echo) -> bool:
    """Read both pipes as data arrives until they close; True if the deadline passed first."""
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in parts}
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    open_streams = 2
    try:
        while open_streams:
            remaining = None if timeout is None else timeout - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                _kill_group(proc)
                return True
            for key, _ in sel.select(remaining):
                name = key.data
                data = os.read(key.fd, 65536)
                text = decoders[name].decode(data, final=not data)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                if text:
                    chunks.append((name, text))
                    parts[name].append(text)
                    echo_.write(text)
    finally:
        sel.close()
    if timeout is not None:
        try:
            proc.wait(max(timeout - (time.monotonic() - started), 0.01))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return True
    return False


def _feed(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode())
        proc.stdin.close()
    except OSError:
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the command and everything it started (it runs in its own session)."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _failed(shown: str, argv: list[str], error: str, code: int, started: float, echo_: _Echo) -> Result:
    result = Result(shown, argv, code, "", "", time.monotonic() - started, error=error, echoed=echo_.out is not None)
    echo_.finish(result)
    return result
