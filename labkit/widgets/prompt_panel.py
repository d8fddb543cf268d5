"""The prompt panel: send a prompt to the local model from the host or from inside a sandbox; the reply streams in.

From a sandbox the request really leaves the sandbox: `sbx exec N curl -sN …` to
host.docker.internal through the policy proxy, its output read line by line as it arrives
(``stream``). Where a send is — idle, waiting, streaming, done, failed — is ``.state`` (a
``PromptState``); the status line is drawn from it.

The prompt is sent with the send button, or Ctrl+Enter / Shift+Enter in the text box (a
``PromptBox``); from code: ``.send_button.click()``, ``.text.submit()`` or ``.send()``.
"""

from __future__ import annotations

import html
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, cast

import ipywidgets as W

from .. import fixes
from .._core import runner
from ..checks.policy import rule_in_force
from ..checks.result import verdict_line
from ..errors import ToolError, refix
from ..tools.model_api import CRASH_MARK, engine_crashed, error_message
from ._panel import MONO, Panel, failure_line, font_size, pre
from .model_picker import ModelPicker
from .prompt_box import PromptBox
from .prompt_state import PromptState
from .stream import LineSink, Metrics, SseReply, parse_sse

if TYPE_CHECKING:
    from ..lab import Lab

NO_TEXT = ("the model answered with no text", "raise max_tokens, or try another prompt")


class PromptPanel(Panel):
    """Send a prompt to the local model from the host or from inside a sandbox; the reply streams in."""

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
        self.state = PromptState.IDLE
        self.reply = ""
        self.chunks = 0
        self.metrics: Metrics | None = None
        self.http_status: int | None = None
        self.command = ""
        self._callbacks: list[Callable[[PromptPanel], None]] = []

        self.text = PromptBox(value=prompt, placeholder="your prompt (Ctrl+Enter sends)", rows=3)
        self.text.observe(lambda _: self.send(), "submits")
        targets = [("host", "host")] + ([(f"sandbox {sandbox}", "sandbox")] if sandbox else [])
        self.target_toggle = W.ToggleButtons(options=targets, value="sandbox" if sandbox else "host",
                                             description="from", tooltips=["the host (the kernel)",
                                                                           "inside the sandbox, through the proxy"])
        self.send_button = W.Button(description="send", icon="paper-plane", button_style="primary")
        self.send_button.on_click(lambda _: self.send())
        self.request_html = W.HTML()
        self.reply_html = W.HTML(pre("", "min-height: 1.5em;"))
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

    def _enter(self, state: PromptState, verdict: str = "") -> None:
        """Move to ``state`` (only along ``prompt_state``'s table) and draw the status line from it."""
        if not self.state.may_become(state):
            raise RuntimeError(f"prompt panel: {self.state.value} cannot become {state.value}")
        self.state = state
        self._set_status(state.line(verdict), state.ok)

    def _end(self, ok: bool, what: str, fix: str = "") -> None:
        self._enter(PromptState.DONE if ok else PromptState.FAILED, verdict_line(ok, what, fix))

    def _failed(self, line: str) -> None:
        self._enter(PromptState.FAILED, line)

    # -------------------------------------------------------------- sending
    def send(self) -> str:
        """Send the prompt, stream the reply into the panel, and return it."""
        self.reply, self.chunks, self.metrics, self.http_status = "", 0, None, None
        self._show_reply()
        self.metrics_html.value = ""
        self._enter(PromptState.WAITING)
        self.send_button.disabled = True
        try:
            with self._guard():
                model = self.model
                if not model:
                    raise ToolError("no model is selected",
                                    f"pull one ({fixes.pull_model('ai/smollm2')}), then refresh")
                if not self.prompt.strip():
                    raise ToolError("the prompt is empty", "type a prompt, then send")
                if self.target == "sandbox" and self.sandbox:
                    self._send_from_sandbox(model, self.sandbox)
                else:
                    self._send_from_host(model)
        finally:
            if not self.state.ended:  # a bug or an interrupt stopped it: say so, and let the learner send again
                self._end(False, "the send was interrupted", "send again")
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
            self._enter(PromptState.STREAMING)
        self.reply += text
        self.chunks += 1
        self._show_reply()

    def _finish(self, started: float, first: list[float], usage: dict[str, Any] | None) -> None:
        self.metrics = Metrics.measure(first[0] if first else None, time.monotonic() - started, self.chunks, usage)
        self.metrics_html.value = f'<small style="{font_size()}">{html.escape(self.metrics.line())}</small>'

    def _send_from_host(self, model: str) -> None:
        url = f"{self.lab.endpoints.host}/chat/completions"
        self.command = f"POST {url}  (from the host, model {model})"
        self.request_html.value = f'<small style="{MONO}">{html.escape(self.command)}</small>'
        started, usage = time.monotonic(), None
        first: list[float] = []
        for chunk in self.lab.api.chat(model, self._messages(), stream=True, max_tokens=self.max_tokens,
                                       stream_options={"include_usage": True}):
            usage = chunk.usage or usage
            self._delta(chunk.content, started, first)
        self.http_status = 200
        self._finish(started, first, usage)
        if self.reply:
            self._end(True, "reply from the local model, on the host")
        else:
            self._end(False, *NO_TEXT)

    def _send_from_sandbox(self, model: str, name: str) -> None:
        if not self.lab.sandbox(name).exists:
            raise ToolError(f"there is no sandbox named '{name}'", fixes.create_sandbox(name),
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
        sink = LineSink(lambda line: self._delta(live.feed_line(line), started, first))
        result = runner.run(args, env=self.lab.env, out=cast(TextIO, sink), timeout=self.timeout, max_lines=sys.maxsize,
                            display=self.command)
        final = parse_sse(result.stdout)  # the whole output, read once more: the authoritative reply
        if final.content != self.reply:
            self.reply, self.chunks = final.content, final.chunks
            self._show_reply()
        self.http_status = final.status
        self._finish(started, first, final.usage)
        ok, line = self._sandbox_verdict(result, final, model, name)
        self._enter(PromptState.DONE if ok else PromptState.FAILED, line)

    def _sandbox_verdict(self, result: runner.Result, reply: SseReply, model: str, name: str) -> tuple[bool, str]:
        """Whether the send from the sandbox worked, and its ✓/✗ line (the fix says what to run)."""
        said = next((line.strip() for line in reply.other if line.strip()), "")
        if result.error:
            return False, verdict_line(False, result.error)
        crash = next((line for line in reply.other if CRASH_MARK in line), None)
        if crash is not None:  # the engine died under this request (a 500, or an `error:` line mid-stream)
            return False, failure_line(refix(engine_crashed(error_message(crash.removeprefix("error:").strip()),
                                                            crash), self.lab.api.fixes))
        if reply.status == 502:
            known = self.lab.api.explain() if self.lab.api.explain else None
            if known:  # the proxy found nobody on the model port: say why, when labkit knows
                return False, verdict_line(False, f"HTTP 502 from the proxy: {known[0]}", known[1])
        if reply.status == 200 and reply.content:
            return True, verdict_line(True, f"reply from the local model, requested inside {name} through the "
                                            "policy proxy")
        if reply.status == 403:
            fix = rule_in_force(self.lab, "allow").fix or fixes.LIST_RULES
            return False, verdict_line(False, f"HTTP 403 from the proxy: {said}", fix)
        if reply.status == 404 and "model not found" in said:
            return False, verdict_line(False, f"HTTP 404: {said}", fixes.pull_model(model))
        if reply.status == 200:
            return False, verdict_line(False, *NO_TEXT)
        code = f"HTTP {reply.status}" if reply.status else f"curl exit {result.returncode}"
        return False, verdict_line(False, f"{code}: {said or 'no answer'}",
                                   f"sbx exec {name} curl -sv {self.lab.endpoints.sandbox}/models")

    def _show_reply(self) -> None:
        self.reply_html.value = pre(self.reply, "min-height: 1.5em;")
