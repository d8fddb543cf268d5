"""llama.cpp inference inside the engine process: one worker thread, jobs in arrival order.

This module runs in the backend process (``labkit.dmr.backend``), never in the HTTP front: a
crash of llama.cpp (a signal, an abort, the OOM killer) then ends only that process, as a
llama.cpp runner crash does behind Docker Model Runner (``labkit.dmr.supervisor`` restarts it).

A llama.cpp context must not be used by two requests at once, and on a 2-core machine two
generations in parallel would only slow each other down. So every model operation (load,
chat, completion, embedding, unload) is a job on one FIFO queue, run by one thread that owns
the models. A job streams its output through its ``emit`` callback as it is produced; setting
a job's ``cancel`` (the client went away) stops it before the next token. A loaded model
stays loaded (DMR's keep-alive ``-1``: "Forever").
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .store import StoredModel

log = logging.getLogger("labkit.dmr")

Mode = Literal["completion", "embedding"]
JobKind = Literal["chat", "completion", "embedding", "load", "unload", "tokenize"]

# Context length of the chat runner: at least the model's trained context (SmolLM2: 8192).
MIN_CONTEXT = 8192
EMBEDDING_CONTEXT = 2048


class EngineError(RuntimeError):
    """Inference could not run; ``str()`` is safe to show to the client."""


class LoadError(EngineError):
    """The model could not be loaded (DMR answers 500 ``unable to load runner: …``)."""


class ContextOverflow(EngineError):
    """The prompt does not fit in the runner's context: llama-server's 400 ``exceed_context_size_error``.

    Carries both numbers to the front (pickled: ``__reduce__`` keeps the two-argument constructor).
    """

    def __init__(self, n_prompt_tokens: int, n_ctx: int) -> None:
        self.n_prompt_tokens, self.n_ctx = n_prompt_tokens, n_ctx
        super().__init__(f"request ({n_prompt_tokens} tokens) exceeds the available context size "
                         f"({n_ctx} tokens), try increasing it")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.n_prompt_tokens, self.n_ctx))

    def body(self) -> dict[str, Any]:
        """llama-server's JSON error, word for word."""
        return {"error": {"code": 400, "message": str(self), "type": "exceed_context_size_error",
                          "n_prompt_tokens": self.n_prompt_tokens, "n_ctx": self.n_ctx}}

    @classmethod
    def from_error(cls, error: ValueError) -> ContextOverflow | None:
        """llama-cpp-python's ``Requested tokens (N) exceed context window of M``, recognised."""
        found = _OVERFLOW.search(str(error))
        return cls(int(found[1]), int(found[2])) if found else None


_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


@dataclass
class Tally:
    """What one generation did, counted inside llama.cpp's token loop."""

    cancel: threading.Event
    prompt_tokens: int = 0
    completion_tokens: int = 0  # sampled tokens, the end-of-generation token included (as llama-server)
    started: float = 0.0
    first_token: float | None = None
    finished: float = 0.0

    def counts(self) -> dict[str, Any]:
        """The counters, to carry from the engine process to the front."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "started": self.started, "first_token": self.first_token, "finished": self.finished}

    def update(self, counts: dict[str, Any]) -> None:
        for name, value in counts.items():
            setattr(self, name, value)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def timings(self) -> dict[str, float]:
        """llama-server's ``timings`` block, from our own clock around llama.cpp's loop.

        Field names as llama-server sends them; whether DMR passes them on is UNCONFIRMED
        (docs/sbx-dmr-facts.md §2.6), so clients should treat them as optional.
        """
        first = self.first_token or self.finished
        prompt_ms = max(first - self.started, 0.0) * 1000
        predicted_ms = max(self.finished - first, 0.0) * 1000
        predicted_n = max(self.completion_tokens - 1, 0)
        return {
            "prompt_n": self.prompt_tokens,
            "prompt_ms": round(prompt_ms, 3),
            "prompt_per_token_ms": round(prompt_ms / self.prompt_tokens, 3) if self.prompt_tokens else 0.0,
            "prompt_per_second": round(self.prompt_tokens / prompt_ms * 1000, 3) if prompt_ms else 0.0,
            "predicted_n": predicted_n,
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": round(predicted_ms / predicted_n, 3) if predicted_n else 0.0,
            "predicted_per_second": round(predicted_n / predicted_ms * 1000, 3) if predicted_ms else 0.0,
        }


@dataclass
class Job:
    """One unit of work for the engine, with a way back to whoever waits for its output."""

    kind: JobKind
    model: StoredModel | None
    model_name: str = ""  # the reference the client used (DMR's runner records it)
    params: dict[str, Any] = field(default_factory=dict)
    # `docker model configure --context-size`: >0 tokens, -1 the model's trained context, None the default
    context_size: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    id: int = 0  # unique among the jobs of one front (the wire protocol's job id)
    tally: Tally = field(init=False)
    _emit: Callable[[Any], None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.cancel)

    def emit(self, item: Any) -> None:
        if self._emit is not None:
            self._emit(item)


@dataclass
class Runner:
    """A loaded model, as `/engines/ps` reports it."""

    model_id: str
    model_name: str
    mode: Mode
    context_size: int | None = None  # the configured size it was loaded with (None: the default)
    llm: Any = None
    loading: bool = True
    in_use: bool = False
    last_used: float = field(default_factory=time.time)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend_name": "llama.cpp",
            "model_name": self.model_name,
            "mode": self.mode,
            "last_used": datetime.fromtimestamp(self.last_used, UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.in_use:
            out["in_use"] = True
        if self.loading:
            out["loading"] = True
        out["keep_alive"] = "-1"  # embedded runners are never evicted: `docker model ps` shows Forever
        return out


_LLAMA_CLASS: Any = None


def _llama_class() -> Any:
    """``Llama`` with a token loop that counts and can be cancelled (imported lazily: startup speed)."""
    global _LLAMA_CLASS
    if _LLAMA_CLASS is None:
        from llama_cpp import Llama

        class CountingLlama(Llama):
            tally: Tally | None = None

            def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
                tally = self.tally
                if tally is None:
                    yield from super().generate(tokens, *args, **kwargs)
                    return
                tally.prompt_tokens = len(tokens)
                tally.started = time.perf_counter()
                for token in super().generate(tokens, *args, **kwargs):
                    tally.completion_tokens += 1
                    if tally.first_token is None:
                        tally.first_token = time.perf_counter()
                    if tally.cancel.is_set():
                        return
                    yield token

        _LLAMA_CLASS = CountingLlama
    return _LLAMA_CLASS


def default_threads() -> int:
    """llama.cpp threads: ``LABKIT_DMR_THREADS``, else all cores but one.

    Measured on the 2-core course machine: with both cores busy in llama.cpp, the HTTP
    server, the client and anything else running fight its spinning threads and a
    generation gets several times slower; one thread leaves a core for everything else.
    """
    raw = os.environ.get("LABKIT_DMR_THREADS", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def quiet_openmp() -> None:
    """Let idle llama.cpp worker threads sleep instead of spin (set before llama_cpp loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def chat_context(trained: int | None, configured: int | None) -> int:
    """``n_ctx`` for a chat runner: the configured size (-1: the trained one; 0 lets llama.cpp take it
    from the GGUF), else at least MIN_CONTEXT as before any configuration (DMR ignores 0 and < -1)."""
    if configured is not None and configured > 0:
        return configured
    if configured == -1:
        return trained or 0
    return max(MIN_CONTEXT, trained or 0)


def load_llama(path: str, mode: Mode, context: int | None, threads: int | None = None,
               configured: int | None = None) -> Any:
    """A llama.cpp model ready for ``mode``; the chat template comes from the GGUF itself."""
    quiet_openmp()
    import llama_cpp

    threads = threads or default_threads()
    if mode == "embedding":
        return _llama_class()(
            model_path=path, embedding=True, n_ctx=EMBEDDING_CONTEXT, n_batch=EMBEDDING_CONTEXT,
            n_ubatch=EMBEDDING_CONTEXT, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_threads=threads, n_threads_batch=threads, verbose=False,
        )
    llm = _llama_class()(
        model_path=path, n_ctx=chat_context(context, configured), n_threads=threads,
        n_threads_batch=threads, verbose=False,
    )
    # Warm up as llama-server does: the first decode pays for touching every weight page.
    llm.eval(llm.tokenize(b"Hello", add_bos=True, special=True))
    llm.reset()
    return llm


class Worker:
    """The loaded runners: load, infer and unload, strictly one job at a time.

    ``on_runners`` hears the runner list after every change (the front shows it as
    ``/engines/ps``); ``finished`` hears each job's end, after its last item.
    """

    def __init__(self, threads: int | None = None,
                 on_runners: Callable[[list[dict[str, Any]]], None] | None = None,
                 finished: Callable[[Job, BaseException | None], None] | None = None) -> None:
        self.threads = threads or default_threads()
        self._on_runners = on_runners or (lambda runners: None)
        self._finished = finished or (lambda job, error: None)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._runners: dict[tuple[str, Mode], Runner] = {}
        self._lock = threading.Lock()  # guards _runners for status readers
        self._thread: threading.Thread | None = None
        self.current: Job | None = None  # the job the worker runs now

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="llama.cpp", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Cancel what runs, then end the worker after the jobs already queued."""
        if self._thread is not None:
            if self.current is not None:
                self.current.cancel.set()
            self._jobs.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def submit(self, job: Job) -> None:
        self.start()
        self._jobs.put(job)

    def runners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.status() for r in self._runners.values()]

    def _changed(self) -> None:
        self._on_runners(self.runners())

    # -- the worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.current = job
            error: BaseException | None = None
            try:
                if not job.cancel.is_set():
                    self._execute(job)
            except Exception as exc:  # delivered to the waiting request, never kills the worker
                if not isinstance(exc, EngineError | ValueError):
                    log.exception("%s job failed", job.kind)
                error = exc
            finally:
                self.current = None
                self._finished(job, error)

    def _execute(self, job: Job) -> None:
        if job.kind == "unload":
            job.emit(self._drop(job.params.get("ids")))
            return
        assert job.model is not None
        mode: Mode = "embedding" if job.kind == "embedding" else "completion"
        runner = self._runner(job.model, job.model_name, mode, job.context_size)
        if job.kind == "load":
            return
        if job.kind == "tokenize":
            job.emit(count_tokens(runner.llm, job.params))
            return
        runner.in_use, runner.last_used = True, time.time()
        self._changed()
        tally = job.tally
        runner.llm.tally = tally
        if job.params.get("seed") is not None:
            # A seeded request starts from an empty context: reusing the cached prefix of the
            # request before changes how the prompt is batched, so the logits differ in their
            # last bits and a sampled text can change. Fresh, the same request gives the same
            # text in any order (on one build and thread count).
            runner.llm.reset()
        try:
            if job.kind == "embedding":
                job.emit(_embed(runner.llm, job.params["input"], job.model_name))
                return
            t0 = time.perf_counter()
            chunks = _generate(runner.llm, job)
            try:
                for chunk in chunks:
                    if job.cancel.is_set():
                        break
                    job.emit(chunk)
            except ValueError as exc:
                overflow = ContextOverflow.from_error(exc)
                if overflow is None:
                    raise
                raise overflow from None
            finally:
                chunks.close()
                tally.finished = time.perf_counter()
                log.info("%s %s: %d prompt + %d generated tokens in %.2f s%s", job.kind, job.model_name,
                         tally.prompt_tokens, tally.completion_tokens, tally.finished - (tally.started or t0),
                         " (cancelled: the client left)" if job.cancel.is_set() else "")
        finally:
            runner.llm.tally = None
            runner.in_use, runner.last_used = False, time.time()
            self._changed()

    def _runner(self, model: StoredModel, name: str, mode: Mode, configured: int | None = None) -> Runner:
        key = (model.id, mode)
        configured = configured if mode == "completion" else None  # embeddings keep their own context
        with self._lock:
            runner = self._runners.get(key)
        if runner is not None and runner.context_size == configured:
            return runner
        if runner is not None:  # `docker model configure` changed its context size: load it again
            log.info("reloading %s: context size %s → %s", runner.model_name, runner.context_size or "default",
                     configured or "default")
            self._drop({model.id}, mode)
        # One chat model at a time: loading another one unloads the previous (memory on 2 cores).
        self._drop({m for (m, md) in list(self._runners) if md == mode and m != model.id}, mode)
        runner = Runner(model.id, name or (model.tags[0] if model.tags else model.id), mode, configured)
        with self._lock:
            self._runners[key] = runner
        self._changed()
        t0 = time.perf_counter()
        try:
            path = str(model.check_file())
            runner.llm = load_llama(path, mode, model.context_size, self.threads, configured)
        except Exception as exc:
            with self._lock:
                self._runners.pop(key, None)
            self._changed()
            raise LoadError(f"unable to load runner: {exc}") from exc
        runner.loading = False
        self._changed()
        log.info("loaded %s (%s) in %.2f s", runner.model_name, mode, time.perf_counter() - t0)
        return runner

    def _drop(self, ids: set[str] | None, mode: Mode | None = None) -> int:
        with self._lock:
            keys = [k for k in self._runners if (ids is None or k[0] in ids) and (mode is None or k[1] == mode)]
            dropped = [self._runners.pop(k) for k in keys]
        for runner in dropped:
            if runner.llm is not None:
                runner.llm.close()
        if dropped:
            self._changed()
        return len(dropped)


def _generate(llm: Any, job: Job) -> Generator[dict[str, Any], None, None]:
    """The job's chunks from llama-cpp-python: the engine's own keys (``tool_call``, ``grammar``)
    become a ``LlamaGrammar`` here, in this process, and tool calls are parsed out of the text."""
    params = dict(job.params)
    tool_call, grammar = params.pop("tool_call", None), params.pop("grammar", None)
    if job.kind != "chat":
        return llm.create_completion(stream=True, **params)
    from . import toolcalls

    text = None
    if tool_call and tool_call["forced"]:
        text = toolcalls.gbnf_tool_call(tool_call["tools"], tool_call["forced"])
    elif grammar is not None:
        text = toolcalls.gbnf_json(grammar["schema"])
    if text is not None:
        params["grammar"] = _grammar(llm, text)
    chunks = llm.create_chat_completion(stream=True, **params)
    return toolcalls.stream_calls(chunks, tool_call["names"]) if tool_call else chunks


def _grammar(llm: Any, text: str) -> Any:
    """A ``LlamaGrammar`` for GBNF ``text``, checked first: llama-cpp-python would hand llama.cpp's
    NULL sampler for a grammar that does not parse to the sampler chain (a crash, not an error)."""
    import llama_cpp

    probe = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, text.encode(), b"root")
    if not probe:
        raise ValueError("the grammar built from the request's JSON schema does not parse")
    llama_cpp.llama_sampler_free(probe)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


def count_tokens(llm: Any, params: dict[str, Any]) -> int:
    """Tokens of ``params["text"]``, or of ``params["messages"]`` rendered by the GGUF's chat template
    (with the generation prompt, as a chat request would be), counted by the model's own tokenizer."""
    if "messages" in params:
        from llama_cpp import llama_chat_format

        formatter = getattr(llm, "_labkit_formatter", None)
        if formatter is None:  # compiling the template costs ~2 ms: once per loaded model
            template = llm.metadata.get("tokenizer.chat_template", "")
            eos, bos = llm._model.token_get_text(llm.token_eos()), llm._model.token_get_text(llm.token_bos())
            formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            llm._labkit_formatter = formatter
        text = formatter(messages=params["messages"], tools=params.get("tools")).prompt
    else:
        text = str(params.get("text", ""))
    return len(llm.tokenize(text.encode(), add_bos=False, special=True))


def _embed(llm: Any, texts: list[str], model_name: str) -> dict[str, Any]:
    """OpenAI's embedding list; vectors are L2-normalised as llama-server's default.

    Mean pooling over the tokens: a chat model's GGUF declares no pooling. What DMR's
    llama.cpp runner does for such a model (pool, or refuse pooling ``none``) is UNCONFIRMED;
    embedded mode gives real, usable vectors.
    """
    vectors, tokens = llm.embed(texts, return_count=True)
    data = []
    for index, vector in enumerate(vectors):
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        data.append({"object": "embedding", "index": index, "embedding": [v / norm for v in vector]})
    return {
        "object": "list", "data": data, "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
