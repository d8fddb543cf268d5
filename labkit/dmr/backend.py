"""The engine process: llama.cpp behind the model server, as DMR runs its llama.cpp backend.

``labkit.dmr.supervisor`` starts ``python -m labkit.dmr.backend --fd N`` and talks to it over
one socket (``multiprocessing.connection`` framing, pickled tuples). The wire protocol:

    front → engine   ("job", fields)         queue a job: Job's id, kind, model, model_name, params, context_size
                     ("cancel", job_id)      stop that job before its next token
    engine → front   ("item", job_id, item)  one output of the job (a chunk, a count, a dict)
                     ("done", job_id, tally, error)  the job ended (error: None or an exception)
                     ("runners", [status])   the loaded runners changed (``/engines/ps``)

The process ends when the front closes the socket. Anything that kills it (SIGSEGV in
llama.cpp, SIGKILL from the OOM killer, an abort) is seen by the front as the end of the
socket plus an exit status, and becomes an error for the request in flight.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from .engine import EngineError, Job, Worker, quiet_openmp


def _portable(error: BaseException | None) -> BaseException | None:
    """An exception the front can unpickle (ours and ValueError are; others become EngineError)."""
    if error is None or isinstance(error, EngineError | ValueError):
        return error
    return EngineError(f"{type(error).__name__}: {error}")


def serve(conn: Connection, threads: int | None = None) -> None:
    """Run jobs from ``conn`` until the front closes it."""
    send_lock = threading.Lock()
    active: dict[int, Job] = {}

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    def finished(job: Job, error: BaseException | None) -> None:
        active.pop(job.id, None)
        send(("done", job.id, job.tally.counts(), _portable(error)))

    worker = Worker(threads, on_runners=lambda runners: send(("runners", runners)), finished=finished)
    worker.start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "job":
            job = Job(**message[1])
            job._emit = lambda item, job_id=job.id: send(("item", job_id, item))
            active[job.id] = job
            worker.submit(job)
        elif message[0] == "cancel" and (cancelled := active.get(message[1])) is not None:
            cancelled.cancel.set()
    for job in list(active.values()):
        job.cancel.set()
    worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.dmr.backend",
                                     description="labkit's llama.cpp engine process (started by the model server).")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the model server")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[engine]: %(message)s",
                        stream=sys.stdout)
    quiet_openmp()
    # The engine ends when the front closes its socket (or dies: the kernel closes it then), not
    # on the signals `labkit down` sends the server's process group: the front stops it in order.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(args.fd)
    try:
        serve(conn, args.threads)
    finally:
        conn.close()
    # Skip interpreter teardown: llama.cpp's threads and destructors can hang or crash there.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
