"""The widgets in a real browser: JupyterLab, headless Chromium from Debian, Playwright.

JupyterLab runs on loopback with a token, in a temporary LABKIT_HOME with its own model port,
embedded mode. Chromium opens ``prompt_demo.ipynb`` (a copy: autosave must not touch the
repo), runs all cells from the Run menu, picks the model, allows the model port with the
policy switch, types a prompt and clicks send: the reply must stream in (the page sees it
grow) and the audit view must show the allowed request. Then deny, send again (by Ctrl+Enter
in the prompt box): HTTP 403 in the panel and a blocked row in the audit view. What the page
shows is checked against the proxy's audit log on disk. A screenshot of each state goes to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off the (closed) network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SANDBOX = "browser-demo"
STEP = 30_000  # ms: one UI step (a click and what it triggers)
LONG = 180_000  # ms: running all cells (embedded lab start, model pull, sandbox) or a reply


def _jupyter() -> str:
    venv = ROOT / ".venv" / "bin" / "jupyter"
    return str(venv if venv.exists() else Path(sys.executable).with_name("jupyter"))


@dataclass
class Server:
    url: str
    token: str
    home: Path  # LABKIT_HOME of the kernel
    dmr_port: int
    log: Path

    def audit(self) -> list[dict[str, Any]]:
        path = self.home / "sbx" / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_until_answers(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited ({proc.returncode}); its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s; its log:\n{log.read_text()[-3000:]}")


def _lab_settings(folder: Path) -> None:
    """User settings: start the notebook's kernel without asking; no news or update checks, no toasts."""
    for plugin, values in (("notebook-extension/tracker", {"autoStartDefaultKernel": True}),
                           ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
        path = folder / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture
def server() -> Iterator[Server]:
    base = Path(tempfile.mkdtemp(prefix="lkbr-", dir="/tmp"))  # short: Unix socket paths have a limit
    notebooks, home, jupyter_dirs = base / "nb", base / "home", base / "jupyter"
    notebooks.mkdir()
    shutil.copy(HERE / "prompt_demo.ipynb", notebooks / "prompt_demo.ipynb")
    _lab_settings(jupyter_dirs / "settings")
    port, dmr_port, token = free_port(), free_port(), secrets.token_hex(16)
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_DMR_PORT": str(dmr_port), "LABKIT_MODE": "embedded",
           "JUPYTER_CONFIG_DIR": str(jupyter_dirs / "config"), "JUPYTER_RUNTIME_DIR": str(jupyter_dirs / "run"),
           "JUPYTERLAB_SETTINGS_DIR": str(jupyter_dirs / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jupyter_dirs / "workspaces")}
    env.pop("LABKIT_PRESENTER", None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    log = ARTIFACTS / "jupyter.log"
    argv = [_jupyter(), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_answers(f"{url}/api/status?token={token}", proc, log)
        yield Server(url, token, home, dmr_port, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernel it started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        subprocess.run([sys.executable, "-m", "labkit", "down"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def page(server: Server) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh installs it for CI)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: it is a dev dependency (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1300})
        page = context.new_page()
        page.set_default_timeout(STEP)
        try:
            yield page
        finally:
            browser.close()


# The reply's text each time the page changed it, recorded in the page itself.
WATCH_REPLY = """() => {
  const node = document.querySelector('.lk-reply');
  window.__replies = [];
  new MutationObserver(() => window.__replies.push(node.textContent))
    .observe(node, {childList: true, subtree: true, characterData: true});
}"""


def _shot(page: Any, name: str, focus: Any) -> None:
    focus.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / name))


@pytest.mark.timeout(420)
def test_prompt_panel_audit_view_and_policy_switch_in_chromium(server: Server, page: Any):
    started = time.monotonic()
    try:
        _drive(server, page)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure.png"))
        raise
    print(f"browser test: {time.monotonic() - started:.1f} s from opening the notebook")


def _drive(server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/lab/tree/prompt_demo.ipynb?token={server.token}")
    expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible(timeout=LONG)
    # the kernel is connected and idle (the status bar names it), so Run All reaches it
    expect(page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python 3.*\|\s*Idle"))).to_have_count(
        1, timeout=LONG)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text(re.compile(r"\[ \]"))

    picker, policy, panel, audit = (page.locator(f".lk-{name}") for name in ("picker", "policy", "panel", "audit"))
    expect(audit).to_contain_text("no requests yet", timeout=LONG)  # the last cell ran
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=LONG)
    _shot(page, "01-cells-ran.png", picker)

    # pick the model
    select = picker.locator("select")
    labels = select.locator("option").all_inner_texts()
    wanted = next((label for label in labels if "smollm2" in label), None)
    assert wanted, f"the model picker does not offer the course model: {labels}"
    select.select_option(label=wanted)
    expect(picker).to_contain_text("id sent by clients:")
    expect(picker).to_contain_text("smollm2")

    # allow the model port, send a prompt: the reply streams in, the audit view shows the request
    rule = f"localhost:{server.dmr_port}"
    policy.locator(".widget-toggle-button", has_text=re.compile(r"^\W*allow$")).click()
    expect(policy).to_contain_text(f"in force for {rule}: allowed")
    panel.locator("textarea").fill("Name three colors.")
    page.evaluate(WATCH_REPLY)
    panel.locator("button.widget-button", has_text=re.compile(r"^\s*send\s*$")).click()
    expect(panel).to_contain_text(f"✓ reply from the local model, requested inside {SANDBOX} through the policy proxy",
                                  timeout=LONG)
    reply = panel.locator(".lk-reply").inner_text().strip()
    assert reply, "the panel says ✓ but shows no reply"
    seen = [text.strip() for text in page.evaluate("window.__replies") if text.strip()]
    partial = [text for text in seen if text != reply]
    assert partial and all(reply.startswith(text) for text in partial), (
        f"the reply did not stream in: the page saw {seen!r}")
    expect(panel).to_contain_text("first token")  # the metrics line
    chat = f"POST host.docker.internal:{server.dmr_port}/engines/llama.cpp/v1/chat/completions"
    first_row = audit.locator("tr").nth(1)
    # refreshed by panel.on_done as the send ends; the proxy must have logged the request by then
    expect(first_row, "the audit view does not show the request that just ended").to_contain_text("✓ allowed")
    expect(first_row).to_contain_text(chat)
    expect(first_row).to_contain_text("200")
    records = server.audit()
    assert [(r["sandbox"], r["decision"], r["status"]) for r in records] == [(SANDBOX, "allow", 200)]
    _shot(page, "02-allowed-reply.png", panel)

    # deny it, send again: the proxy blocks the request, the panel and the audit view say so
    policy.locator(".widget-toggle-button", has_text=re.compile(r"^\W*deny$")).click()
    expect(policy).to_contain_text(f"in force for {rule}: denied")
    panel.locator("textarea").fill("Name three animals.")
    panel.locator("textarea").press("Control+Enter")  # the box's shortcut sends, like the button
    expect(panel).to_contain_text("✗ HTTP 403 from the proxy: Blocked by network policy", timeout=LONG)
    first_row = audit.locator("tr").nth(1)
    expect(first_row, "the audit view does not show the request that was just blocked").to_contain_text("✗ blocked")
    expect(first_row).to_contain_text(chat)
    expect(first_row).to_contain_text("403")
    expect(audit.locator("tr")).to_have_count(3)  # header, blocked, allowed
    records = server.audit()
    assert [(r["decision"], r["status"]) for r in records] == [("allow", 200), ("deny", 403)]
    _shot(page, "03-blocked.png", audit)
