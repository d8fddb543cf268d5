"""The model server's side of the engine process: start it, feed it jobs, outlive its crashes.

Docker Model Runner runs llama.cpp as a separate backend process behind its API, so a crash
in inference ends that process, not the API. So does labkit: the HTTP front keeps one engine
process (``labkit.dmr.backend``) and sends it one job at a time from its own FIFO queue. When
the process dies (a signal, the OOM killer, an abort), the job in flight gets DMR's 500
``llama.cpp terminated unexpectedly: llama.cpp exit status: signal: …``, the crash is logged
with its signal, ``/engines/status`` says ``Error: …``, and the next job starts a fresh
engine. Jobs still waiting in the queue are not lost: they go to that fresh engine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable
from multiprocessing.connection import Connection
from typing import Any

from .engine import EngineError, Job, default_threads

log = logging.getLogger("labkit.dmr")

BACKEND_NAME = "llama.cpp"
CRASH_WAIT_SECONDS = 30.0  # DMR waits this long for a runner whose socket closed to exit
CANCEL_POLL_SECONDS = 0.05  # how often a running job's cancel flag is looked at
_DONE = object()


class EngineCrashed(EngineError):
    """The engine process died while a job ran; ``str()`` is DMR's message for it."""


def exit_status(returncode: int) -> str:
    """A process's end as Go's ``exec.ExitError`` says it (``signal: killed``, ``exit status 1``)."""
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal: {name[0].lower() + name[1:]}"
    return f"exit status {returncode}"


def crash_message(returncode: int) -> str:
    """DMR's error for a runner that quit (``pkg/inference/backends/runner.go``)."""
    return f"{BACKEND_NAME} terminated unexpectedly: {BACKEND_NAME} exit status: {exit_status(returncode)}"


def signal_name(returncode: int) -> str:
    """``SIGSEGV`` for -11; ``exit 3`` for 3."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


class Engine:
    """The engine process, seen from the front: same job interface, in its own process.

    ``argv`` is the command that runs the engine (default ``python -m labkit.dmr.backend``);
    it gets ``--fd N`` (its end of the socket) and ``--threads T`` appended.
    """

    def __init__(self, threads: int | None = None, argv: list[str] | None = None) -> None:
        self.threads = threads or default_threads()
        self.argv = argv or [sys.executable, "-m", "labkit.dmr.backend"]
        self.last_crash: str | None = None  # DMR's message for the last crash, until an engine starts again
        self.crashes = 0
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._runners: list[dict[str, Any]] = []
        self._current: Job | None = None
        self._stopping = threading.Event()
        # The configured context size of a model (``docker model configure``), looked up as each job is
        # sent so a change reaches the next job; the model server plugs in its runner configs.
        self.context_for: Callable[[Any], int | None] = lambda model: None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="engine-dispatch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Cancel what runs and what waits, end the dispatcher, then the engine process."""
        if self._thread is not None:
            self._stopping.set()
            if self._current is not None:
                self._current.cancel.set()
            self._jobs.put(None)
            self._thread.join(timeout=5)
            self._thread = None
            self._stopping.clear()
        self._end_process()

    @property
    def pid(self) -> int | None:
        """The engine process's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def state(self) -> tuple[str, str]:
        """``("Running", detail)``, or ``("Error", DMR's crash message)`` until the next engine starts."""
        if self.last_crash and self.pid is None:
            return "Error", self.last_crash
        pid = self.pid
        return "Running", f"engine pid {pid}" if pid else "engine starts on the next request"

    def preload(self, model: Any, name: str) -> None:
        """Queue a load so the first request does not wait for it (fire and forget)."""
        self._submit(Job("load", model, name))

    async def unload(self, model_ids: set[str] | None) -> int:
        """Unload runners (``None``: all) after the jobs already queued; how many were loaded."""
        if self.pid is None:
            return 0  # no engine, nothing loaded: do not start one just to unload
        counts = [n async for n in self.run(Job("unload", None, params={"ids": model_ids}))]
        return int(counts[0]) if counts else 0

    def forget(self, model_ids: set[str]) -> None:
        """Queue unloading of models that left the store (fire and forget)."""
        if self.pid is not None:
            self._submit(Job("unload", None, params={"ids": model_ids}))

    def runners(self) -> list[dict[str, Any]]:
        return list(self._runners) if self.pid is not None else []

    def loaded_names(self) -> list[str]:
        return [str(r["model_name"]) for r in self.runners() if not r.get("loading")]

    # -- the asyncio side --------------------------------------------------------------------

    async def run(self, job: Job) -> AsyncGenerator[Any, None]:
        """Queue ``job`` and yield what it produces; leaving early cancels it."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        job._emit = emit
        self._submit(job)
        finished = False
        try:
            while (item := await items.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
            finished = True
        finally:
            if not finished:  # the consumer left early (client gone) or the job failed
                job.cancel.set()

    def _submit(self, job: Job) -> None:
        job.id = next(self._ids)
        self.start()
        self._jobs.put(job)

    # -- the dispatcher thread ---------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._current = job
            try:
                if not job.cancel.is_set() and not self._stopping.is_set():
                    self._relay(job)
            except Exception as exc:  # delivered to the waiting request, never kills the dispatcher
                log.exception("engine job %s failed", job.kind)
                job.emit(exc if isinstance(exc, EngineError) else EngineError(f"{type(exc).__name__}: {exc}"))
            finally:
                self._current = None
                job.emit(_DONE)

    def _relay(self, job: Job) -> None:
        """Send one job to the engine and pass on what comes back until it is done."""
        conn = self._connection()
        if job.model is not None and job.context_size is None:
            job.context_size = self.context_for(job.model)
        fields = {"id": job.id, "kind": job.kind, "model": job.model, "model_name": job.model_name,
                  "params": job.params, "context_size": job.context_size}
        try:
            conn.send(("job", fields))
        except OSError:
            job.emit(self._crashed())
            return
        cancel_sent = False
        while True:
            try:
                if not cancel_sent and (job.cancel.is_set() or self._stopping.is_set()):
                    conn.send(("cancel", job.id))
                    cancel_sent = True
                if not conn.poll(CANCEL_POLL_SECONDS):
                    continue
                message = conn.recv()
            except (EOFError, OSError):
                job.emit(self._crashed())
                return
            kind = message[0]
            if kind == "item":
                job.emit(message[2])
            elif kind == "runners":
                self._runners = message[1]
            elif kind == "done":
                job.tally.update(message[2])
                if message[3] is not None:
                    job.emit(message[3])
                return

    def _connection(self) -> Connection:
        """The running engine's socket; a fresh engine when there is none (first use, after a crash)."""
        if self._conn is not None and self._proc is not None and self._proc.poll() is None:
            return self._conn
        if self._proc is not None:  # it died between jobs
            self._crashed()
        ours, theirs = socket.socketpair()
        argv = [*self.argv, "--fd", str(theirs.fileno()), "--threads", str(self.threads)]
        t0 = time.perf_counter()
        try:
            self._proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._runners = []
        self.last_crash = None
        log.info("engine process started (pid %d, %.2f s, %s)", self._proc.pid, time.perf_counter() - t0,
                 " ".join(self.argv[1:]))
        return self._conn

    def _crashed(self) -> EngineCrashed:
        """The engine is gone: wait for its exit status, log it, and say it as DMR does."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._runners = None, None, []
        if conn is not None:
            conn.close()
        if proc is None:
            return EngineCrashed(f"{BACKEND_NAME} terminated unexpectedly")
        try:
            code = proc.wait(timeout=CRASH_WAIT_SECONDS)
        except subprocess.TimeoutExpired:  # only its socket died: end it
            proc.kill()
            code = proc.wait()
        message = crash_message(code)
        self.last_crash = message
        self.crashes += 1
        hint = ""
        if code in (-signal.SIGILL, -signal.SIGSEGV, -signal.SIGBUS):
            hint = ("; if this happens at every first inference, the llama.cpp build may use instructions "
                    "this CPU cannot run: `labkit doctor` checks it")
        elif code == -signal.SIGKILL:
            hint = "; killed from outside (the OOM killer, or someone's kill -9)"
        log.error("engine process %d crashed (%s): %s; the next request starts a fresh engine%s",
                  proc.pid, signal_name(code), message, hint)
        return EngineCrashed(message)

    def _end_process(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._runners = None, None, []
        if conn is not None:
            conn.close()  # the engine ends when its socket closes
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
