"""`docker model …` for embedded mode: same syntax and output shape as DMR's CLI (docs/sbx-dmr-facts.md §2.2).

Like the real CLI, it is only a client: every command is an HTTP call to the model server
on ``127.0.0.1:$LABKIT_DMR_PORT``, except ``package``: as DMR's CLI builds the artifact itself,
this one checks the GGUF file and writes it into the embedded store, which the server reads.
It is reached as ``labkit model …`` or ``labkit docker model …`` and is never installed as an
executable named ``docker``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .. import fixes
from .._core import paths
from .._core.cliutil import Parser, UsageError, table
from ..records import close_names, display_name
from . import catalog, refs
from .httpio import go_json

USER_AGENT = "docker-model-cli/labkit-embedded"
SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
EMBEDDED_ONLY = (
    "labkit's embedded mode serves only the models shipped with it ({shipped}); for any other model "
    "use live mode with Docker Model Runner: " + fixes.USE_LIVE
)


LS_HINT = "See the pulled models with: docker model ls"
# Extra chat fields `run` sends. DMR's `run` has no flag for them; tests cap `max_tokens` here.
RUN_EXTRA: dict[str, Any] = {}


class CliError(Exception):
    """A failure to report: printed to stderr as is, exit code 1."""


class NotRunning(CliError):
    def __init__(self) -> None:
        super().__init__(
            "Docker Model Runner is not running. Please start it and try again.\n"
            f"(embedded mode: start labkit's model server with `{fixes.LABKIT_UP}`)"
        )


# -- formatting like DMR's Go code ----------------------------------------------------------


def custom_size(size: float) -> str:
    """go-units ``CustomSize("%.2f%s", size, 1000, …)``: ``98.10MB``."""
    i = 0
    while size >= 1000 and i < len(SIZE_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.2f}{SIZE_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration`` (DMR's CREATED column says ``<this> ago``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def pretty(value: Any) -> str:
    """The CLI's JSON: 4-space indent, HTML escaping off."""
    return json.dumps(value, indent=4, ensure_ascii=False)


# -- HTTP ------------------------------------------------------------------------------------


class Client:
    """The model server's HTTP API as the DMR CLI uses it (503 or no answer: not running)."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url or f"http://127.0.0.1:{paths.dmr_port()}"
        self.http = httpx.Client(base_url=self.base_url, headers={"User-Agent": USER_AGENT},
                                 timeout=httpx.Timeout(30.0, read=None))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError:
            raise NotRunning() from None
        if resp.status_code == 503:
            raise NotRunning()
        return resp

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        return _Stream(self, method, path, kwargs)

    def models(self) -> list[dict[str, Any]]:
        resp = self.request("GET", "/models")
        if resp.status_code != 200:
            raise CliError(f"Failed to list models: failed to list models: {resp.status_code} {resp.reason_phrase}")
        return list(resp.json())

    def full_model_id(self, ref: str) -> str | None:
        """DMR's ``fullModelID``: a short id, full id or any spelling of a tag → the model id."""
        for model in self.models():
            mid = model["id"]
            if ref in (mid[7:19], mid.removeprefix("sha256:"), mid) or ref in model.get("tags", []):
                return str(mid)
            if any(refs.canonical(t) == refs.canonical(ref) for t in model.get("tags", [])):
                return str(mid)
        return None


class _Stream:
    """``with client.stream(...) as resp``, mapping connection failures to NotRunning."""

    def __init__(self, client: Client, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self.ctx = client.http.stream(method, path, **kwargs)

    def __enter__(self) -> httpx.Response:
        try:
            resp = self.ctx.__enter__()
        except httpx.TransportError:
            raise NotRunning() from None
        if resp.status_code == 503:
            self.ctx.__exit__(None, None, None)
            raise NotRunning()
        return resp

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)


# -- commands --------------------------------------------------------------------------------


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    if args.openai and args.quiet:
        raise CliError("--quiet flag cannot be used with --openai flag or OpenAI backend")
    if args.openai:
        print(pretty(client.request("GET", "/engines/v1/models").json()))
        return 0
    models = client.models()
    if args.model:
        wanted = refs.canonical(args.model)
        wanted_repo = refs.split_tag(wanted)[0]
        models = [m for m in models
                  if any(t == wanted or refs.split_tag(t)[0] == wanted_repo for t in m.get("tags", []))]
    if args.json:
        print(pretty(models))
        return 0
    if args.quiet:
        for m in models:
            print(m["id"][7:19])
        return 0
    rows = []
    now = time.time()
    for m in models:
        config = m.get("config", {})
        context = config.get("context_size") or config.get("gguf", {}).get("llama.context_length", "")
        for tag in m.get("tags") or ["<none>"]:
            rows.append([
                display_name(tag) if tag != "<none>" else tag, config.get("parameters", ""),
                config.get("quantization", ""), config.get("architecture", ""), m["id"][7:19],
                human_duration(now - m.get("created", now)) + " ago", str(context or ""), config.get("size", ""),
            ])
    rows.sort(key=lambda r: r[0].lower())
    header = ["MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID", "CREATED", "CONTEXT", "SIZE"]
    print(table(header, rows))
    return 0


def pull(client: Client, model: str) -> str:
    """Pull with DMR's non-TTY progress lines; the final message (printed by the caller)."""
    with client.stream("POST", "/models/create", json={"from": model}) as resp:
        if resp.status_code != 200:
            body = resp.read().decode(errors="replace").strip()
            message = f"Failed to pull model: pulling {model} failed with status {resp.status_code} " \
                      f"{resp.reason_phrase}: {body}"
            if resp.status_code == 404:
                shipped = ", ".join(f"{m.repository}:{m.tags[0]}" for m in catalog.SHIPPED)
                names = [f"{m.repository}:{t}" for m in catalog.SHIPPED for t in m.tags]
                close = [n for n in close_names(model, names) if n != model]
                message += "\n" + (f"Did you mean {' or '.join(close)}? " if close else "") + \
                    EMBEDDED_ONLY.format(shipped=shipped)
            raise CliError(message)
        final = ""
        for raw in resp.iter_lines():
            if not raw.strip():
                continue
            try:
                msg = json.loads(html.unescape(raw))
            except ValueError:
                continue
            if msg.get("type") == "progress":
                print(f"Downloaded {custom_size(msg['layer']['current'])} of {custom_size(msg.get('total', 0))}",
                      flush=True)
            elif msg.get("type") == "success":
                final = msg.get("message", "")
            elif msg.get("type") == "warning":
                print(f"Warning: {msg.get('message', '')}", file=sys.stderr)
            elif msg.get("type") == "error":
                raise CliError(f"Failed to pull model: {msg.get('message', '')}")
        return final


def cmd_pull(client: Client, args: argparse.Namespace) -> int:
    print(pull(client, args.model))
    return 0


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    for model in args.models:
        ref = model
        if not any(c in model for c in "/:@"):
            ref = client.full_model_id(model) or model
        resp = client.request("DELETE", f"/models/{ref}", params={"force": "true" if args.force else "false"})
        if resp.status_code == 404:
            raise CliError(f"Failed to remove model: no such model: {ref}\n{LS_HINT}")
        if resp.status_code != 200:
            raise CliError(f"Failed to remove model: removing {ref} failed with status "
                           f"{resp.status_code} {resp.reason_phrase}: {resp.text.strip()}")
        for action in resp.json():
            if "Untagged" in action:
                print(f"Untagged: {action['Untagged']}")
            if "Deleted" in action:
                print(f"Deleted: {action['Deleted']}")
    return 0


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    model = args.model
    if args.openai:
        ref = model if "/" in model.strip("/") else (client.full_model_id(model) or model)
        resp = client.request("GET", f"/engines/v1/models/{ref}")
    else:
        if not any(c in model.strip("/") for c in "/:@"):
            model = client.full_model_id(model) or model
        resp = client.request("GET", f"/models/{model}")
    if resp.status_code == 404:
        raise CliError(f"Failed to get model {args.model}: {model}: model not found\n{LS_HINT}")
    if resp.status_code != 200:
        raise CliError(f"Failed to get model {args.model}: failed to list models: "
                       f"{resp.status_code} {resp.reason_phrase}")
    print(pretty(resp.json()))
    return 0


def _backends(client: Client) -> dict[str, str]:
    resp = client.request("GET", "/engines/status")
    return dict(resp.json()) if resp.status_code == 200 else {}


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    try:
        client.request("GET", "/models")
    except NotRunning:
        if args.json:
            print(json.dumps({"running": False}))
            return 1
        from .service import trouble  # only here: the CLI starts fast

        died = trouble()  # it died on its own: say how, before the next step
        print("Docker Model Runner is not running\n" + (f"({died.message})\n" if died else "") + "\nWhat's next:\n"
              f"    Start labkit's embedded model server → {fixes.LABKIT_UP}")
        return 1
    backends = _backends(client)
    if args.json:
        port = paths.dmr_port()
        # "kind" says truthfully what answers; the endpoints follow DMR's Docker Engine layout.
        sys.stdout.write(go_json({
            "running": True, "backends": backends, "kind": "labkit embedded",
            "endpoint": f"http://host.docker.internal:{port}/v1/", "endpointHost": f"http://127.0.0.1:{port}/v1/",
        }))
        return 0
    rows = []
    for name in sorted(backends):
        state, _, details = backends[name].partition(": ")
        rows.append([name, state, details])
    print("Docker Model Runner is running\n\n" + table(["BACKEND", "STATUS", "DETAILS"], rows))
    return 0


def cmd_ps(client: Client, args: argparse.Namespace) -> int:
    rows = []
    for runner in client.request("GET", "/engines/ps").json():
        name = str(runner.get("model_name", ""))
        name = name[7:19] if name.startswith("sha256:") else display_name(name)
        until = "Forever" if runner.get("keep_alive") == "-1" else "Loading..." if runner.get("loading") else ""
        rows.append([name, runner.get("backend_name", ""), runner.get("mode", ""), until])
    print(table(["MODEL NAME", "BACKEND", "MODE", "UNTIL"], rows))
    return 0


def cmd_df(client: Client, args: argparse.Namespace) -> int:
    usage = client.request("GET", "/engines/df").json()
    rows = [["Models", custom_size(usage.get("models_disk_usage", 0))],
            ["Inference engine", custom_size(usage.get("default_backend_disk_usage", 0))]]
    print(table(["TYPE", "SIZE"], rows))
    return 0


def _piped_stdin() -> str:
    """Text piped to stdin, without ever blocking on a terminal or an idle pipe."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return ""
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        return sys.stdin.read() if ready else ""
    except (OSError, ValueError, AttributeError):
        return ""


def _chat(client: Client, model: str, prompt: str) -> None:
    """Stream one chat completion to stdout, as `docker model run MODEL PROMPT` does."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True, **RUN_EXTRA}
    usage = None
    with client.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise CliError(f"error response: status={resp.status_code} body={resp.read().decode(errors='replace')}")
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", [])[:1]:
                text = choice.get("delta", {}).get("content")
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
    if usage:
        sys.stdout.write(f"\n\nToken usage: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} "
                         f"completion = {usage['total_tokens']} total")
    sys.stdout.write("\n")


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    model = args.model
    prompt = " ".join(args.prompt)
    piped = _piped_stdin()
    if piped:
        prompt = f"{prompt}\n\n{piped}" if prompt else piped
    if client.full_model_id(model) is None:
        print(f"Unable to find model '{model}' locally. Pulling from the server.")
        print(pull(client, model))
    if prompt.strip():
        _chat(client, model, prompt)
        return 0
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError('give a prompt: docker model run MODEL "your prompt" (or pipe text to stdin)')
    print("Interactive chat mode started. Type '/bye' to exit.")
    while True:
        try:
            line = input("> ")
        except EOFError:
            return 0
        if line.strip() == "/bye":
            return 0
        if line.strip():
            _chat(client, model, line)


# -- requests, configure, package ------------------------------------------------------------


def cmd_requests(client: Client, args: argparse.Namespace) -> int:
    """DMR's request log: JSON, or with ``-f`` one line per recorded request until Ctrl+C."""
    if args.include_existing and not args.follow:
        raise CliError("--include-existing can only be used with --follow")
    params = {"model": args.model} if args.model else {}
    failed = "Failed to get requests" + (f" for {args.model}" if args.model else "")
    if not args.follow:
        resp = client.request("GET", "/engines/requests", params=params, headers={"Accept": "application/json"})
        if resp.status_code == 404:
            raise CliError(f"{failed}: {resp.text.strip()}")
        if resp.status_code != 200:
            raise CliError(f"{failed}: failed to list requests: {resp.status_code} {resp.reason_phrase}")
        sys.stdout.write(resp.text)
        return 0
    if args.include_existing:
        params["include_existing"] = "true"
    try:
        _follow_requests(client, params, failed)
    except KeyboardInterrupt:  # DMR returns quietly when its context is cancelled
        pass
    return 0


def _follow_requests(client: Client, params: dict[str, str], failed: str) -> None:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    with client.stream("GET", "/engines/requests", params=params, headers=headers) as resp:
        if resp.status_code == 404:
            raise CliError(f"{failed}: {resp.read().decode(errors='replace').strip()}")
        if resp.status_code != 200:
            raise CliError(f"{failed}: stream request failed with status: {resp.status_code}")
        print("Connected to request stream. Press Ctrl+C to stop.", flush=True)
        event = ""
        try:
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event in ("new_request", "existing_request"):
                    print(line[len("data: "):], flush=True)
        except httpx.TransportError:
            pass  # the server went away mid-stream: DMR's scanner just ends
    print("Stream closed by server.", flush=True)


def context_size_arg(text: str) -> int:
    """``--context-size`` as pflag's int32 reads it, plus embedded mode's check for useless sizes."""
    flag = f'invalid argument "{text}" for "--context-size" flag'
    try:
        value = int(text, 0) if text.strip().lower().startswith(("0x", "0o", "0b")) else int(text)
    except ValueError:
        raise CliError(f'{flag}: strconv.ParseInt: parsing "{text}": invalid syntax') from None
    if not -(2**31) <= value < 2**31:
        raise CliError(f'{flag}: strconv.ParseInt: parsing "{text}": value out of range')
    if value == 0 or value < -1:
        # DMR accepts these and then ignores them (GetContextSize): say so instead of doing nothing.
        raise CliError(f"{flag}: the context size must be a number of tokens above 0 "
                       "(or -1 for the model's own maximum)")
    return value


def cmd_configure(client: Client, args: argparse.Namespace) -> int:
    """``configure [--context-size=N] MODEL [-- flags]``: DMR's POST /engines/_configure, silent on success."""
    positional, runtime_flags = args.args, args.runtime_flags
    if positional[:1] == ["show"]:
        return _configure_show(client, args, positional[1:])
    if runtime_flags is None and len(positional) != 1:
        raise CliError(f"Exactly one model must be specified, got {len(positional)}: [{' '.join(positional)}]\n\n"
                       "See 'docker model configure --help' for more information")
    if runtime_flags is not None and len(positional) != 1:
        raise CliError(f"Exactly one model must be specified before --, got {len(positional)}\n\n"
                       "See 'docker model configure --help' for more information")
    model = positional[0]
    request: dict[str, Any] = {"model": model}
    if args.context_size is not None:
        request["context-size"] = context_size_arg(args.context_size)
    if runtime_flags:
        request["runtime-flags"] = runtime_flags
    # DMR's CLI and server accept any name (the settings wait for a model that may come later);
    # embedded mode checks first, so a typo gets an error instead of silently doing nothing.
    if client.full_model_id(model) is None:
        raise CliError(f"Failed to configure {model}: model not found (see the pulled models with: docker model ls)")
    resp = client.request("POST", "/engines/_configure", json=request)
    if resp.status_code != 202:
        body = resp.text.strip()
        raise CliError(body if resp.status_code == 409 else f"{body} ({resp.status_code} {resp.reason_phrase})")
    return 0


def _configure_show(client: Client, args: argparse.Namespace, positional: list[str]) -> int:
    """``configure show [MODEL]``: the stored settings as DMR's CLI prints them (2-space JSON)."""
    if len(positional) > 1:
        raise CliError(f"accepts at most 1 arg(s), received {len(positional)}")
    if args.context_size is not None or args.runtime_flags is not None:
        raise CliError("unknown flag: --context-size" if args.context_size is not None else "unknown flag: --")
    params = {"model": positional[0]} if positional else {}
    resp = client.request("GET", "/engines/_configure", params=params)
    if resp.status_code != 200:
        raise CliError(f"listing configs failed with status {resp.status_code} {resp.reason_phrase}: "
                       f"{resp.text.strip()}")
    entries = [_config_entry(e) for e in resp.json() or []]
    text = json.dumps(entries, indent=2, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    print(text)
    return 0


CONFIG_FIELDS = ("context-size", "runtime-flags", "speculative", "keep_alive", "vllm", "llamacpp")


def _config_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """DMR's CLI decodes into ``ModelConfigEntry`` and encodes again: only its fields, in its order."""
    config = entry.get("Config") or {}
    return {"Backend": entry.get("Backend", ""), "Model": entry.get("Model", ""),
            "ModelID": entry.get("ModelID", ""), "Mode": entry.get("Mode") or "completion",
            "Config": {k: config[k] for k in CONFIG_FIELDS if config.get(k) not in (None, "", [], {})}}


def cmd_package(client: Client, args: argparse.Namespace) -> int:
    """``package --gguf PATH NAME``: DMR's checks and messages; the file goes into the embedded store."""
    from . import package  # only here: the CLI starts fast

    others = [flag for flag, value in (("--safetensors-dir", args.safetensors_dir), ("--dduf", args.dduf),
                                       ("--from", args.from_model)) if value]
    if not args.gguf and not others:
        raise CliError("One of --gguf, --safetensors-dir, --dduf, or --from is required.\n\n"
                       "See 'docker model package --help' for more information")
    if len(others) + bool(args.gguf) > 1:
        raise CliError("Cannot specify more than one of --gguf, --safetensors-dir, --dduf, or --from. "
                       "Please use only one source.\n\nSee 'docker model package --help' for more information")
    used = others + (["--push"] if args.push else []) + (["--context-size"] if args.context_size is not None else [])
    if used:
        raise CliError(f"labkit's embedded mode packages plain GGUF files only ({', '.join(used)}: not available); "
                       "use live mode with Docker Model Runner for the rest: LABKIT_MODE=live")
    if not os.path.isabs(args.gguf):
        raise CliError("GGUF path must be absolute.\n\nSee 'docker model package --help' for more information")
    source = Path(os.path.normpath(args.gguf))
    try:
        name = package.check_name(args.model)
        package.check_gguf(source)  # before DMR's first line, so a bad file gets exactly one line
        print(f"Adding GGUF file from {package.go_quote(str(source))}", file=sys.stderr)
        print("Loading model to Model Runner...", file=sys.stderr)
        progress = _Transfer()
        package.package_gguf(source, name, progress)
    except package.PackageError as exc:
        # DMR prints "Failed to package model" and "package model: <cause>" on two lines.
        raise CliError(f"Failed to package model: {exc}") from None
    progress.finish()
    print("", file=sys.stderr)
    print("Model loaded successfully", file=sys.stderr)
    return 0


class _Transfer:
    """DMR's ``Transferred: N MB`` progress: redrawn in place on a terminal, else printed once at the end."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = "Transferred: 0.00 MB"

    def __call__(self, done: int, total: int) -> None:
        self.last = f"Transferred: {done / 1024 / 1024:.2f} MB"
        if self.tty:
            sys.stdout.write("\r\033[K" + self.last)
            sys.stdout.flush()

    def finish(self) -> None:
        if not self.tty:
            print(self.last, flush=True)


# -- argument parsing ------------------------------------------------------------------------


class _Parser(Parser):
    def usage_error(self, message: str) -> str:
        return message  # cobra's: the message alone; main() adds the hint


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="docker model", description="Docker Model Runner (labkit embedded mode).")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    ls = sub.add_parser("list", aliases=["ls"], help="List the models pulled to your local environment")
    ls.add_argument("model", nargs="?")
    ls.add_argument("--json", action="store_true", help="List models in a JSON format")
    ls.add_argument("--openai", action="store_true", help="List models in an OpenAI format")
    ls.add_argument("-q", "--quiet", action="store_true", help="Only show model IDs")
    ls.set_defaults(handler=cmd_ls)
    pull_p = sub.add_parser("pull", help="Pull a model to your local environment")
    pull_p.add_argument("args", nargs="*", metavar="MODEL")
    pull_p.set_defaults(handler=cmd_pull, exact=(1, "MODEL"))
    rm = sub.add_parser("rm", aliases=["remove"], help="Remove local models")
    rm.add_argument("-f", "--force", action="store_true", help="Forcefully remove the model")
    rm.add_argument("args", nargs="*", metavar="MODEL")
    rm.set_defaults(handler=cmd_rm, at_least=(1, "MODEL [MODEL...]"))
    inspect = sub.add_parser("inspect", help="Display detailed information on one model")
    inspect.add_argument("args", nargs="*", metavar="MODEL")
    inspect.add_argument("--openai", action="store_true", help="List model in an OpenAI format")
    inspect.set_defaults(handler=cmd_inspect, exact=(1, "MODEL"))
    status = sub.add_parser("status", help="Check if the Docker Model Runner is running")
    status.add_argument("--json", action="store_true", help="Format output in JSON")
    status.set_defaults(handler=cmd_status)
    sub.add_parser("ps", help="List running models").set_defaults(handler=cmd_ps)
    sub.add_parser("df", help="Show Docker Model Runner disk usage").set_defaults(handler=cmd_df)
    run = sub.add_parser("run", help="Run a model and interact with it using a submitted prompt or chat mode")
    run.add_argument("args", nargs="*", metavar="MODEL [PROMPT]")
    run.set_defaults(handler=cmd_run, at_least=(1, "MODEL [PROMPT]"))
    requests = sub.add_parser("requests", help="Fetch requests+responses from Docker Model Runner")
    requests.add_argument("-f", "--follow", action="store_true", help="Follow requests stream")
    requests.add_argument("--include-existing", action="store_true",
                          help="Include existing requests when starting to follow (only available with --follow)")
    requests.add_argument("--model", default="", help="Specify the model to filter requests")
    requests.set_defaults(handler=cmd_requests)
    _add_configure(sub)
    _add_package(sub)
    return parser


def _add_configure(sub: Any) -> None:
    """``configure`` is hidden in DMR (no help line, so argparse does not list it); alias ``config``."""
    configure = sub.add_parser("configure", aliases=["config"],
                               usage="docker model configure [--context-size=<n>] MODEL [-- <runtime-flags...>]\n"
                                     "       docker model configure show [MODEL]",
                               description="Manage model runtime configurations")
    configure.add_argument("--context-size", metavar="N", help="context size (in tokens)")
    configure.add_argument("args", nargs="*", metavar="MODEL")
    configure.set_defaults(handler=cmd_configure, runtime_flags=None)


def _add_package(sub: Any) -> None:
    package = sub.add_parser("package", help="Package a model into a Docker Model OCI artifact",
                             usage="docker model package --gguf <path> MODEL")
    package.add_argument("--gguf", default="", help="absolute path to gguf file")
    package.add_argument("--safetensors-dir", default="", help=argparse.SUPPRESS)
    package.add_argument("--dduf", default="", help=argparse.SUPPRESS)
    package.add_argument("--from", dest="from_model", default="", help=argparse.SUPPRESS)
    package.add_argument("--push", action="store_true", help=argparse.SUPPRESS)
    package.add_argument("--context-size", help=argparse.SUPPRESS)
    package.add_argument("args", nargs="*", metavar="MODEL")
    package.set_defaults(handler=cmd_package, exact=(1, "--gguf <path> MODEL"))


def _split_dash(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``configure MODEL -- FLAGS…``: what follows ``--`` is runtime flags, kept apart as cobra does."""
    if argv[:1] in (["configure"], ["config"]) and "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, None


def _check_arity(args: argparse.Namespace) -> None:
    """cobra's ``requireExactArgs``/``requireMinArgs`` wording."""
    positional = getattr(args, "args", None)
    if positional is None:
        return
    name = {"remove": "rm"}.get(args.command, args.command)
    for rule, wrong, words in (("exact", lambda got, n: got != n, ""),
                               ("at_least", lambda got, n: got < n, "at least ")):
        if getattr(args, rule, None):
            n, usage = getattr(args, rule)
            if wrong(len(positional), n):
                raise UsageError(f"'docker model {name}' requires {words}{n} argument(s).\n\n"
                                 f"Usage:  docker model {name} {usage}\n\n"
                                 f"See 'docker model {name} --help' for more information")


def main(argv: list[str] | None = None) -> int:
    """``labkit model ARGS…`` ≡ ``docker model ARGS…`` in embedded mode; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        argv, runtime_flags = _split_dash(argv)
        args = parser.parse_args(argv)
        if runtime_flags is not None:
            args.runtime_flags = runtime_flags
        if args.command is None:
            parser.print_help()
            return 0
        _check_arity(args)
        positional = getattr(args, "args", None) or []
        if args.command in ("pull", "inspect"):
            args.model = positional[0]
        elif args.command in ("rm", "remove"):
            args.models = positional
        elif args.command == "run":
            args.model, args.prompt = positional[0], positional[1:]
        elif args.command == "package":
            args.model = positional[0]
        return int(args.handler(Client(), args))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"docker model: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        if "\n" not in str(exc):
            print("Run 'docker model --help' for the commands (embedded: labkit model --help).", file=sys.stderr)
        return 1
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"docker model: the model server answered badly ({type(exc).__name__}: {exc}); "
              f"see `labkit status` for its log", file=sys.stderr)
        return 1


def docker_main(argv: list[str]) -> int:
    """``labkit docker model ARGS…``: only the ``model`` plugin exists in embedded mode."""
    if not argv or argv[0] != "model":
        given = f"'docker {argv[0]}'" if argv else "plain 'docker'"
        print(f"labkit docker: {given} is not available in embedded mode; only 'docker model …' is "
              "(e.g. labkit docker model ls).", file=sys.stderr)
        return 1
    return main(argv[1:])
