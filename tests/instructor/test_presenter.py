"""Presenter mode, observed where it matters: the messages a real Jupyter kernel sends to the page.

A kernel runs `runner.run` (the runner every notebook command goes through); the test reads
the kernel's iopub messages. Off: plain ``stream`` output, exactly as before. On: one display
that is updated while the command runs and ends as large, high-contrast HTML with the plain
transcript beside it; a caller that redirected stdout still gets plain text.
"""

from __future__ import annotations

import os
import queue
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from labkit._core import presenter


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "LABKIT_PRESENTER": ""})
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    try:
        yield client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(client: Any, code: str, timeout: float = 60) -> list[dict]:
    """Execute ``code``; the iopub messages of that execution, in order (error if the cell raised)."""
    msg_id = client.execute(code)
    messages = []
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no kernel message for {timeout} s")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            pytest.fail("\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        if msg["msg_type"] in ("stream", "display_data", "update_display_data"):
            messages.append(msg)


PY = sys.executable
SLOW = (f"{PY} -c \"import time; print('first', flush=True); time.sleep(0.6); print('<b>second</b>'); "
        "raise SystemExit(3)\"")


@pytest.mark.timeout(120)
def test_off_the_transcript_is_plain_stdout(kernel: Any):
    msgs = run_cell(kernel, f"from labkit._core import runner\nrunner.run({SLOW!r})")
    assert {m["msg_type"] for m in msgs} == {"stream"}
    text = "".join(m["content"]["text"] for m in msgs if m["content"]["name"] == "stdout")
    assert text.splitlines()[1:] == ["first", "<b>second</b>", "[exit 3]"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", ["1", "true"])
def test_on_the_transcript_is_one_live_high_contrast_block(kernel: Any, value: str):
    msgs = run_cell(kernel, f"import os\nos.environ['LABKIT_PRESENTER'] = {value!r}\nfrom labkit._core import runner\n"
                            f"runner.run({SLOW!r})\nos.environ['LABKIT_PRESENTER'] = ''")
    assert not [m for m in msgs if m["msg_type"] == "stream"], "presenter mode must not also print plain text"
    first, *updates = msgs
    assert first["msg_type"] == "display_data" and updates
    assert {m["msg_type"] for m in updates} == {"update_display_data"}
    display_id = first["content"]["transient"]["display_id"]
    assert {m["content"]["transient"]["display_id"] for m in updates} == {display_id}
    # streamed: the page saw "first" before "second" existed
    outputs = [m["content"]["data"]["text/plain"].splitlines()[1:] for m in msgs]
    assert ["first"] in outputs and len(set(map(tuple, outputs))) == len(outputs)  # no redundant update
    final = updates[-1]["content"]["data"]
    assert final["text/plain"].splitlines()[1:] == ["first", "<b>second</b>", "[exit 3]"]
    page = final["text/html"]
    assert f"font-size: {presenter.FONT_SIZE}" in page and "background: #000" in page and "color: #fff" in page
    assert "&lt;b&gt;second&lt;/b&gt;" in page and "<b>second</b>" not in page  # output is text, never markup
    assert f'<span style="{presenter.COMMAND_STYLE}">$ ' in page
    assert f'<span style="{presenter.FAILURE_STYLE}">[exit 3]</span>' in page


@pytest.mark.timeout(120)
def test_on_a_redirected_stdout_still_gets_plain_text(kernel: Any):
    code = ("import contextlib, io, os\nos.environ['LABKIT_PRESENTER'] = '1'\nfrom labkit._core import runner\n"
            "buf = io.StringIO()\nwith contextlib.redirect_stdout(buf):\n    runner.run('echo captured')\n"
            "os.environ['LABKIT_PRESENTER'] = ''\nprint(repr(buf.getvalue()))")
    msgs = run_cell(kernel, code)
    assert [m["msg_type"] for m in msgs] == ["stream"]
    assert msgs[0]["content"]["text"].strip() == repr("$ echo captured\ncaptured\n")


def test_outside_a_kernel_nothing_changes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABKIT_PRESENTER", "1")
    assert presenter.stream(sys.stdout) is sys.stdout


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "On", " on "])
def test_widgets_enlarge_for_every_value_that_enlarges_transcripts(monkeypatch: pytest.MonkeyPatch, value: str):
    from labkit.widgets import _panel

    monkeypatch.setenv("LABKIT_PRESENTER", value)
    assert presenter.enabled() and _panel.font_size() == "font-size: 1.35em;"


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "2"])
def test_other_values_leave_presenter_mode_off_for_widgets_too(monkeypatch: pytest.MonkeyPatch, value: str):
    from labkit.widgets import _panel

    monkeypatch.setenv("LABKIT_PRESENTER", value)
    assert not presenter.enabled() and _panel.font_size() == ""
