"""The course's widgets: model picker, prompt panel, policy switch, audit view, checkpoint checklist.

Every widget keeps its state in the kernel (ipywidgets 8), so it works headless under
papermill and in tests (set ``.value``, call ``.click()``), and renders in JupyterLab and
Notebook 7. Each one drives the real lab through ``Lab`` — the model API, `sbx exec`, `sbx
policy`, the audit log — and shows a tool failure as one line with the fix, never a traceback.
``LABKIT_PRESENTER=1`` enlarges the text for a projector.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ipywidgets as W

from . import checks
from ._core import presenter, runner
from ._core.daemon import ServiceError
from .records import ModelInfo, PolicyRule, display_name
from .tools.errors import ToolError, refix
from .tools.model_api import CRASH_MARK, engine_crashed, error_message

if TYPE_CHECKING:
    from .lab import Lab

FAILURES = (ToolError, runner.CommandFailed, ServiceError)
MONO = "font-family: var(--jp-code-font-family, monospace);"
BLOCKED_BG = "#fde2e1"


def _size() -> str:
    """A CSS font size: larger for a presenter (``LABKIT_PRESENTER=1``)."""
    return "font-size: 1.35em;" if presenter.enabled() else ""


def _pre(text: str, extra: str = "") -> str:
    return (f'<pre style="{MONO}{_size()}white-space: pre-wrap; margin: 2px 0; {extra}">'
            f"{html.escape(text)}</pre>")


def failure_line(err: BaseException) -> str:
    """One line for a failure: what happened, then the fix."""
    if isinstance(err, ToolError):
        return f"✗ {err.message}" + (f" — fix: {err.fix}" if err.fix else "")
    return f"✗ {str(err).splitlines()[0] if str(err) else type(err).__name__}"


class _Panel:
    """Shared plumbing: the ``.widget`` to display, a one-line ``.status``, failures caught into it."""

    widget: W.Widget
    kind = "widget"  # what the text/plain fallback calls it

    def __init__(self) -> None:
        self.status = ""
        self._status = W.HTML()

    def _set_status(self, line: str) -> None:
        self.status = line
        color = "#b42318" if line.startswith("✗") else "#067647" if line.startswith("✓") else "inherit"
        self._status.value = f'<span style="color: {color}; {_size()}">{html.escape(line)}</span>' if line else ""

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A tool failure becomes the status line; bugs still raise."""
        try:
            yield
        except FAILURES as err:
            self._set_status(failure_line(err))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget, with a short, stateless text/plain (ipywidgets' own repr dumps every value)."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = self._plain()
        return bundle

    def _plain(self) -> str:
        return f"labkit {self.kind} (interactive: run the notebook in JupyterLab or Notebook 7)"


# ------------------------------------------------------------------ model picker


def _client_id(model: ModelInfo, ids: list[str]) -> str:
    """The id an OpenAI client sends for ``model``: the one `/v1/models` lists, else its first tag."""
    for tag in model.tags:
        if tag in ids:
            return tag
    return model.tags[0] if model.tags else model.id


class ModelPicker(_Panel):
    """Pick a model of the local store; ``.value`` is the id an OpenAI client sends."""

    kind = "model picker"

    def __init__(self, lab: Lab, value: str | None = None, description: str = "model") -> None:
        super().__init__()
        self.lab = lab
        self.models: list[ModelInfo] = []
        self._ids: list[str] = []
        self._wanted = value
        self.dropdown = W.Dropdown(description=description, layout=W.Layout(width="min(100%, 34em)"))
        self.refresh_button = W.Button(description="refresh", icon="refresh", tooltip="read the model store again",
                                       layout=W.Layout(width="auto"))
        self.details = W.HTML()
        self.dropdown.observe(lambda _: self._show_details(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([self.dropdown, self.refresh_button]), self.details, self._status])
        self.refresh()

    @property
    def value(self) -> str | None:
        return self.dropdown.value

    @value.setter
    def value(self, wanted: str) -> None:
        """Accepts the client id, any tag or the `docker model ls` name (ai/ and :latest optional)."""
        self._wanted = wanted
        match = self._match(wanted)
        if match is None:
            self._set_status(f"✗ {wanted} is not in the local model store — fix: docker model pull {wanted}")
            return
        self.dropdown.value = match
        self._set_status("")

    @property
    def model(self) -> ModelInfo | None:
        """The selected model's record (size, quantization, parameters, …)."""
        return next((m for m in self.models if _client_id(m, self._ids) == self.value), None)

    def on_change(self, callback: Callable[[str | None], None]) -> None:
        self.dropdown.observe(lambda change: callback(change["new"]), "value")

    def refresh(self) -> list[ModelInfo]:
        """Read the store from the model API (`GET /models` and `GET …/v1/models`)."""
        with self._guard():
            self.models = self.lab.models()
            self._ids = self.lab.model_ids()
            previous = self.value
            self.dropdown.options = [(f"{m.name} · {m.size} · {m.quantization}", _client_id(m, self._ids))
                                     for m in self.models]
            if not self.models:
                self._set_status(f"✗ the local model store is empty — fix: docker model pull "
                                 f"{self._wanted or 'ai/smollm2'}")
                return self.models
            self._set_status("")
            chosen = self._match(self._wanted) if self._wanted else None
            if self._wanted and chosen is None:
                self._set_status(f"✗ {self._wanted} is not in the local model store — fix: "
                                 f"docker model pull {self._wanted}")
            options = [v for _, v in self.dropdown.options]
            self.dropdown.value = chosen or (previous if previous in options else options[0])
            self._show_details()
        return self.models

    def _match(self, wanted: str) -> str | None:
        name = display_name(wanted)
        for m in self.models:
            if wanted in (m.id, *m.tags) or name in {display_name(t) for t in m.tags}:
                return _client_id(m, self._ids)
        return None

    def _show_details(self) -> None:
        m = self.model
        if m is None:
            self.details.value = ""
            return
        facts = " · ".join(x for x in (m.parameters and f"{m.parameters} parameters", m.architecture,
                                       m.quantization, m.size, m.context and f"context {m.context}") if x)
        self.details.value = (f'<div style="{_size()}">id sent by clients: <code>{html.escape(self.value or "")}'
                              f"</code><br><small>{html.escape(facts)}</small></div>")


# ------------------------------------------------------------------ prompt panel


@dataclass(frozen=True)
class Metrics:
    """Latency and speed of one reply, measured in the kernel as the chunks arrived."""

    first_token_s: float | None
    total_s: float
    tokens: int
    counted_from: str  # "usage" (the server's count) | "chunks" (one per streamed delta)

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed after the first token: (tokens - 1) / (total - first token)."""
        if self.first_token_s is None or self.tokens < 2 or self.total_s <= self.first_token_s:
            return None
        return (self.tokens - 1) / (self.total_s - self.first_token_s)

    def line(self) -> str:
        first = f"{self.first_token_s:.2f} s" if self.first_token_s is not None else "—"
        speed = f"{self.tokens_per_s:.1f} tokens/s" if self.tokens_per_s is not None else "— tokens/s"
        return (f"first token {first} · total {self.total_s:.2f} s · {self.tokens} tokens "
                f"({'usage' if self.counted_from == 'usage' else 'counted chunks'}) · {speed}")


@dataclass
class SseReply:
    """What an OpenAI-style SSE stream said: the text, the usage, the HTTP status, and anything else."""

    content: str = ""
    chunks: int = 0
    usage: dict[str, Any] | None = None
    status: int | None = None
    other: list[str] = field(default_factory=list)  # a 403 body, a plain-text DMR error, curl's complaint
    done: bool = False

    def feed_line(self, line: str) -> str:
        """Take one line; returns the text delta it carried ('' if none)."""
        line = line.rstrip("\r")
        if not line.strip():
            return ""
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload == "[DONE]":
                self.done = True
                return ""
            try:
                data = json.loads(payload)
            except ValueError:
                self.other.append(line)
                return ""
            if data.get("usage"):
                self.usage = data["usage"]
            delta = ((data.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
            if delta:
                self.chunks += 1
                self.content += delta
            return delta
        if line.strip().isdigit() and len(line.strip()) == 3:
            self.status = int(line.strip())  # curl's -w '%{http_code}', the last line
            return ""
        self.other.append(line)
        return ""


def parse_sse(text: str) -> SseReply:
    """Parse a whole `curl -sN … -w '\\n%{http_code}\\n'` output (the authoritative reading)."""
    reply = SseReply()
    for line in text.split("\n"):
        reply.feed_line(line)
    return reply


class _LineSink(io.TextIOBase):
    """A text stream for ``shell.run(out=…)`` that hands each complete output line to a callback."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.buffer_ = ""
        self.header = True  # runner.run writes "$ command" first

    def write(self, text: str) -> int:
        self.buffer_ += text
        *lines, self.buffer_ = self.buffer_.split("\n")
        for line in lines:
            if self.header:
                self.header = False
                continue
            self.on_line(line)
        return len(text)

    def flush(self) -> None:
        pass


class PromptPanel(_Panel):
    """Send a prompt to the local model from the host or from inside a sandbox; the reply streams in.

    From a sandbox the request really leaves the sandbox: `sbx exec N curl -sN …` to
    host.docker.internal through the policy proxy, its output read line by line as it arrives.
    """

    kind = "prompt panel"

    def __init__(self, lab: Lab, model: str | ModelPicker | None = None, *, sandbox: str | None = None,
                 prompt: str = "Reply with exactly: sbx to DMR works", max_tokens: int = 64,
                 timeout: float = 120.0) -> None:
        super().__init__()
        self.lab = lab
        self.sandbox = sandbox
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.picker = model if isinstance(model, ModelPicker) else ModelPicker(lab) if model is None else None
        self._model = model if isinstance(model, str) else None
        self.reply = ""
        self.chunks = 0
        self.metrics: Metrics | None = None
        self.http_status: int | None = None
        self.command = ""
        self._callbacks: list[Callable[[PromptPanel], None]] = []

        self.text = W.Textarea(value=prompt, placeholder="your prompt", rows=3,
                               layout=W.Layout(width="min(100%, 48em)"))
        targets = [("host", "host")] + ([(f"sandbox {sandbox}", "sandbox")] if sandbox else [])
        self.target_toggle = W.ToggleButtons(options=targets, value="sandbox" if sandbox else "host",
                                             description="from", tooltips=["the host (the kernel)",
                                                                           "inside the sandbox, through the proxy"])
        self.send_button = W.Button(description="send", icon="paper-plane", button_style="primary")
        self.send_button.on_click(lambda _: self.send())
        self.request_html = W.HTML()
        self.reply_html = W.HTML(_pre("", "min-height: 1.5em;"))
        self.metrics_html = W.HTML()
        top = [self.picker.widget] if model is None and self.picker is not None else []
        controls = [self.target_toggle] if sandbox else []
        self.widget = W.VBox([*top, self.text, W.HBox([*controls, self.send_button]), self.request_html,
                              self.reply_html, self.metrics_html, self._status])

    # -------------------------------------------------------------- state
    @property
    def prompt(self) -> str:
        return self.text.value

    @prompt.setter
    def prompt(self, value: str) -> None:
        self.text.value = value

    @property
    def target(self) -> str:
        """"host" or "sandbox"."""
        return self.target_toggle.value

    @target.setter
    def target(self, value: str) -> None:
        self.target_toggle.value = value

    @property
    def model(self) -> str | None:
        return self.picker.value if self.picker is not None else self._model

    def on_done(self, callback: Callable[[PromptPanel], None]) -> None:
        """Call ``callback(panel)`` after every send (e.g. an audit view's refresh)."""
        self._callbacks.append(callback)

    # -------------------------------------------------------------- sending
    def send(self) -> str:
        """Send the prompt, stream the reply into the panel, and return it."""
        self.reply, self.chunks, self.metrics, self.http_status = "", 0, None, None
        self._show_reply()
        self.metrics_html.value = ""
        self._set_status("… waiting for the first token")
        self.send_button.disabled = True
        try:
            with self._guard():
                model = self.model
                if not model:
                    raise ToolError("no model is selected", "pull one (docker model pull ai/smollm2), then refresh")
                if not self.prompt.strip():
                    raise ToolError("the prompt is empty", "type a prompt, then send")
                if self.target == "sandbox" and self.sandbox:
                    self._send_from_sandbox(model, self.sandbox)
                else:
                    self._send_from_host(model)
        finally:
            self.send_button.disabled = False
            for callback in self._callbacks:
                callback(self)
        return self.reply

    def _messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]

    def _delta(self, text: str, started: float, first: list[float]) -> None:
        if not text:
            return
        if not first:
            first.append(time.monotonic() - started)
            self._set_status("… streaming")
        self.reply += text
        self.chunks += 1
        self._show_reply()

    def _finish(self, started: float, first: list[float], usage: dict[str, Any] | None) -> None:
        total = time.monotonic() - started
        tokens = int(usage["completion_tokens"]) if usage and usage.get("completion_tokens") else self.chunks
        self.metrics = Metrics(first[0] if first else None, total, tokens,
                               "usage" if usage and usage.get("completion_tokens") else "chunks")
        self.metrics_html.value = f'<small style="{_size()}">{html.escape(self.metrics.line())}</small>'

    def _send_from_host(self, model: str) -> None:
        url = f"{self.lab.endpoints.host}/chat/completions"
        self.command = f"POST {url}  (from the host, model {model})"
        self.request_html.value = f'<small style="{MONO}">{html.escape(self.command)}</small>'
        started, usage = time.monotonic(), None
        first: list[float] = []
        for chunk in self.lab.chat(model, self._messages(), stream=True, max_tokens=self.max_tokens,
                                   stream_options={"include_usage": True}):
            usage = chunk.usage or usage
            self._delta(chunk.content, started, first)
        self.http_status = 200
        self._finish(started, first, usage)
        self._set_status("✓ reply from the local model, on the host" if self.reply else
                         "✗ the model answered with no text — fix: raise max_tokens, or try another prompt")

    def _send_from_sandbox(self, model: str, name: str) -> None:
        if not self.lab.sandbox(name).exists:
            raise ToolError(f"there is no sandbox named '{name}'", f"sbx create --name {name} shell .",
                            "sandbox_not_found")
        body = json.dumps({"model": model, "messages": self._messages(), "max_tokens": self.max_tokens,
                           "stream": True, "stream_options": {"include_usage": True}})
        url = f"{self.lab.endpoints.sandbox}/chat/completions"
        inner = ["curl", "-sS", "-N", url, "-H", "Content-Type: application/json", "-d", body,
                 "-w", r"\n%{http_code}\n"]
        args = ["sbx", *self.lab.sbx.exec_args(name, inner)]
        self.command = shlex.join(args)
        self.request_html.value = f'<small style="{MONO}">$ {html.escape(self.command)}</small>'
        started = time.monotonic()
        first: list[float] = []
        live = SseReply()
        sink = _LineSink(lambda line: self._delta(live.feed_line(line), started, first))
        result = runner.run(args, env=self.lab.env, out=sink, timeout=self.timeout, max_lines=sys.maxsize,
                           display=self.command)
        final = parse_sse(result.stdout)  # the whole output, read once more: the authoritative reply
        if final.content != self.reply:
            self.reply, self.chunks = final.content, final.chunks
            self._show_reply()
        self.http_status = final.status
        self._finish(started, first, final.usage)
        self._set_status(self._sandbox_verdict(result, final, model, name))

    def _sandbox_verdict(self, result: runner.Result, reply: SseReply, model: str, name: str) -> str:
        said = next((line.strip() for line in reply.other if line.strip()), "")
        if result.error:
            return f"✗ {result.error}"
        crash = next((line for line in reply.other if CRASH_MARK in line), None)
        if crash is not None:  # the engine died under this request (a 500, or an `error:` line mid-stream)
            return failure_line(refix(engine_crashed(error_message(crash.removeprefix("error:").strip()), crash),
                                      self.lab.api.fixes))
        if reply.status == 502:
            known = self.lab.api.explain() if self.lab.api.explain else None
            if known:  # the proxy found nobody on the model port: say why, when labkit knows
                return f"✗ HTTP 502 from the proxy: {known[0]} — fix: {known[1]}"
        if reply.status == 200 and reply.content:
            return f"✓ reply from the local model, requested inside {name} through the policy proxy"
        if reply.status == 403:
            fix = checks.rule_in_force(self.lab, "allow").fix or "sbx policy ls"
            return f"✗ HTTP 403 from the proxy: {said} — fix: {fix}"
        if reply.status == 404 and "model not found" in said:
            return f"✗ HTTP 404: {said} — fix: docker model pull {model}"
        if reply.status == 200:
            return "✗ the model answered with no text — fix: raise max_tokens, or try another prompt"
        code = f"HTTP {reply.status}" if reply.status else f"curl exit {result.returncode}"
        return f"✗ {code}: {said or 'no answer'} — fix: sbx exec {name} curl -sv {self.lab.endpoints.sandbox}/models"

    def _show_reply(self) -> None:
        self.reply_html.value = _pre(self.reply, "min-height: 1.5em;")


# ------------------------------------------------------------------ policy switch


class PolicySwitch(_Panel):
    """Allow or deny the model port (``localhost:12434``) for every sandbox, with the rule in force shown.

    Switching runs the real commands: `sbx policy rm network --resource R` for the rule in
    place, then `sbx policy allow|deny network R`; the rules are then read back from `sbx policy ls`.
    """

    kind = "policy switch"

    def __init__(self, lab: Lab, resource: str | None = None) -> None:
        super().__init__()
        self.lab = lab
        self.resource = resource or lab.endpoints.rule
        self.rules: list[PolicyRule] = []
        self.transcript = ""
        self._syncing = False
        self.toggle = W.ToggleButtons(options=[("✓ allow", "allow"), ("✗ deny", "deny")], value=None,
                                      description=self.resource, style={"description_width": "initial"},
                                      tooltips=[f"sbx policy allow network {self.resource}",
                                                f"sbx policy deny network {self.resource}"])
        self.toggle.observe(self._on_toggle, "value")
        # Rules change in other cells and terminals too: this re-reads them (`sbx policy ls`).
        self.refresh_button = W.Button(description="↻ refresh", tooltip="read the rules again: sbx policy ls",
                                       layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.in_force_html = W.HTML()
        self.transcript_html = W.HTML()
        self.widget = W.VBox([W.HBox([self.toggle, self.refresh_button]), self.in_force_html, self.transcript_html,
                              self._status])
        self.refresh()

    @property
    def value(self) -> str | None:
        """The toggle's position: "allow", "deny", or None before anything was read."""
        return self.toggle.value

    @value.setter
    def value(self, decision: str) -> None:
        self.toggle.value = decision

    @property
    def decision(self) -> str | None:
        """What the policy decides for the resource now: "deny" beats "allow"; None when no rule names it."""
        applying = [r for r in self.rules if r.applies_to == "all"]
        if any(r.decision == "deny" for r in applying):
            return "deny"
        return "allow" if any(r.decision == "allow" for r in applying) else None

    def refresh(self) -> list[PolicyRule]:
        """Read the rules naming the resource back from `sbx policy ls`."""
        with self._guard():
            self.rules = self.lab.policy.rules_for(self.resource)
            self._syncing = True
            try:
                self.toggle.value = self.decision
            finally:
                self._syncing = False
            self._show_rules()
        return self.rules

    def set(self, decision: str) -> None:
        """Make ``decision`` ("allow" | "deny") the global rule for the resource, by running sbx."""
        if decision not in ("allow", "deny"):
            raise ValueError("decision must be 'allow' or 'deny'")
        out = io.StringIO()
        with self._guard(), contextlib.redirect_stdout(out):
            self._set_status("")
            if any(r.applies_to == "all" and r.origin == "local" for r in self.lab.policy.rules_for(self.resource)):
                self.lab.policy.rm(self.resource).check()
            (self.lab.policy.allow if decision == "allow" else self.lab.policy.deny)(self.resource)
        self._log(out.getvalue())
        self.refresh()

    def clear(self) -> None:
        """Remove the local global rules for the resource (`sbx policy rm network --resource R`)."""
        out = io.StringIO()
        with self._guard(), contextlib.redirect_stdout(out):
            self.lab.policy.rm(self.resource).check()
        self._log(out.getvalue())
        self.refresh()

    def _on_toggle(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] in ("allow", "deny") and change["new"] != self.decision:
            self.set(change["new"])

    def _log(self, text: str) -> None:
        self.transcript = text
        self.transcript_html.value = _pre(text.rstrip("\n"), "opacity: 0.8;") if text.strip() else ""

    def _show_rules(self) -> None:
        if not self.rules:
            text = f"no rule names {self.resource}: the default deny applies (sandboxes get HTTP 403)"
        else:
            lines = []
            for r in self.rules:
                scope = "all sandboxes" if r.applies_to == "all" else f"sandbox {r.applies_to}"
                lines.append(f"{r.decision:<5} {','.join(r.resources)}   ({r.origin}, {scope}, rule {r.id[:8]})")
            both = {r.decision for r in self.rules if r.applies_to == "all"} == {"allow", "deny"}
            verdict = {"allow": "allowed", "deny": "denied (deny beats allow)" if both else "denied"}.get(
                self.decision or "", "per sandbox only")
            text = f"in force for {self.resource}: {verdict}\n" + "\n".join(lines)
        self.in_force_html.value = _pre(text)


# ------------------------------------------------------------------ audit view


@dataclass(frozen=True)
class AuditRow:
    """One row of the audit view: a proxied request (embedded) or an aggregated log row (live)."""

    sandbox: str
    target: str  # host:port as the sandbox asked for it
    decision: str  # "allow" | "deny"
    rule: str
    method: str = ""
    path: str = ""
    status: int | None = None
    count: int = 1
    when: str = ""  # local time, HH:MM:SS

    @property
    def blocked(self) -> bool:
        return self.decision != "allow"

    @property
    def mark(self) -> str:
        return "✗ blocked" if self.blocked else "✓ allowed"


def _record_row(rec: Any) -> AuditRow:
    parts = urlsplit(rec.url) if "://" in rec.url else None
    return AuditRow(sandbox=rec.sandbox or "-", target=f"{rec.host}:{rec.port}", decision=rec.decision,
                    rule=rec.rule.get("text") or rec.rule.get("id", ""), method=rec.method,
                    path=parts.path if parts else "", status=rec.status,
                    when=rec.when.astimezone().strftime("%H:%M:%S"))


class AuditView(_Panel):
    """The latest requests that crossed (or tried to cross) the boundary; blocked ones marked ✗.

    Embedded mode shows the proxy's per-request records; with real sbx it shows `sbx policy
    log`, which is aggregated per host (no paths, no statuses).
    """

    kind = "audit view"

    def __init__(self, lab: Lab, sandbox: str | None = None, limit: int = 10) -> None:
        super().__init__()
        self.lab = lab
        self.sandbox = sandbox
        self.limit = limit
        self.rows: list[AuditRow] = []
        self.filter = W.ToggleButtons(options=["all", "allowed", "blocked"], value="all")
        self.filter.observe(lambda _: self.refresh(), "value")
        self.refresh_button = W.Button(description="refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.table = W.HTML()
        self.source = ""
        self.widget = W.VBox([W.HBox([self.filter, self.refresh_button]), self.table, self._status])
        self.refresh()

    @property
    def per_request(self) -> bool:
        return self.lab.resolution.sandboxes.kind != "live"

    def refresh(self) -> list[AuditRow]:
        """Read the latest rows (newest first)."""
        with self._guard():
            decision = {"allowed": "allow", "blocked": "deny"}.get(self.filter.value)
            if self.per_request:
                self.source = "the policy proxy's audit records, one per request"
                records = self.lab.audit.records(self.sandbox, decision)
                self.rows = [_record_row(r) for r in reversed(records[-self.limit:])] if self.limit else []
            else:
                self.source = f"sbx policy log{' ' + self.sandbox if self.sandbox else ''} (aggregated per host)"
                entries = [e for e in self.lab.audit.log(self.sandbox)
                           if decision is None or e.blocked == (decision == "deny")]
                self.rows = [AuditRow(e.sandbox, e.host, "deny" if e.blocked else "allow",
                                      e.rule + (f" ({e.reason})" if e.reason else ""), count=e.count,
                                      when=e.last_seen.astimezone().strftime("%H:%M:%S") if e.last_seen else "")
                             for e in entries[:self.limit]]
            self._render()
            self._set_status("")
        return self.rows

    def _render(self) -> None:
        if not self.rows:
            self.table.value = f'<div style="{_size()}"><i>no requests yet</i> · {html.escape(self.source)}</div>'
            return
        if self.per_request:
            head = ["", "time", "sandbox", "request", "status", "rule"]
            cells = [[r.mark, r.when, r.sandbox, f"{r.method} {r.target}{r.path}", str(r.status), r.rule]
                     for r in self.rows]
        else:
            head = ["", "last seen", "sandbox", "host", "rule", "count"]
            cells = [[r.mark, r.when, r.sandbox, r.target, r.rule, str(r.count)] for r in self.rows]
        th = "".join(f'<th style="text-align:left; padding: 2px 8px;">{h}</th>' for h in head)
        body = []
        for row, values in zip(self.rows, cells, strict=True):
            style = f"background: {BLOCKED_BG}; color: #7a271a;" if row.blocked else ""
            tds = "".join(f'<td style="padding: 2px 8px; {MONO}">{html.escape(v)}</td>' for v in values)
            body.append(f'<tr style="{style}">{tds}</tr>')
        self.table.value = (f'<table style="border-collapse: collapse; {_size()}"><tr>{th}</tr>{"".join(body)}'
                            f'</table><small>{html.escape(self.source)}</small>')


# ------------------------------------------------------------------ checkpoint checklist


class Checklist(_Panel):
    """The seed's five checkpoint items, each ✓/✗ with its evidence (see ``checks.checkpoint``)."""

    kind = "checkpoint checklist"

    def __init__(self, lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
                 workspace: str | os.PathLike[str] | None = None, script: str = "test_local.py") -> None:
        super().__init__()
        self.lab = lab
        self.args = {"sandbox": sandbox, "agent_sandbox": agent_sandbox, "workspace": workspace, "script": script}
        self.result: checks.Checkpoint | None = None
        self.items_html = W.HTML()
        self.refresh_button = W.Button(description="verify again", icon="refresh", layout=W.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([self.items_html, self.refresh_button, self._status])
        self.refresh()

    @property
    def items(self) -> tuple[checks.CheckResult, ...]:
        return self.result.items if self.result else ()

    @property
    def lines(self) -> list[str]:
        return [item.line for item in self.items]

    @property
    def ok(self) -> bool:
        return bool(self.result and self.result.ok)

    def summary(self) -> str:
        """One deterministic line: all verified, or how many are not yet."""
        return self.result.summary() if self.result else "✗ Checkpoint: not verified yet"

    def _plain(self) -> str:
        """A static viewer shows the whole checklist, evidence included."""
        return str(self.result) if self.result else super()._plain()

    def refresh(self) -> checks.Checkpoint:
        """Verify every item again from the current evidence."""
        self.result = checks.checkpoint(self.lab, **self.args)  # type: ignore[arg-type]
        parts = []
        for item in self.result.items:
            color = "#067647" if item.ok else "#b42318"
            evidence = "".join(f"<br><small style='opacity: 0.75; margin-left: 1.6em;'>· {html.escape(e)}</small>"
                               for e in item.evidence)
            parts.append(f'<div style="margin: 4px 0; {_size()}"><span style="color: {color};">'
                         f"{html.escape(item.line)}</span>{evidence}</div>")
        self.items_html.value = "".join(parts)
        self._set_status(self.result.summary())
        return self.result
