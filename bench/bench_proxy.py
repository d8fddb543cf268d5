"""What the policy proxy and the sandbox path cost, side by side, in one run.

    .venv/bin/python bench/bench_proxy.py [-n 500]

Everything is real: a private LABKIT_HOME, the proxy daemon as ``labkit up`` starts it, a
threaded HTTP server on a free port standing in for the model server, and a real sandbox.
Each path runs the same client code (a fresh connection per request, ``Connection: close``,
after 20 warm-ups), so the differences are the proxy and the relay:

* direct          client → server                                   (on the host)
* proxy HTTP      client → proxy (TCP) → server                     (absolute-form request)
* proxy CONNECT   client → proxy (TCP) → tunnel → server
* sandbox         client in a sandbox → relay → Unix socket → proxy → server  (full path)

plus the sandbox launch time and, when ``labkit.dmr`` and its shipped model are there, a
streamed chat completion through the sandbox against the same completion on the host.
Goals from the issue: proxy p50 ≤ +0.5 ms over direct, proxy CPU ≤ 0.5 ms per request; chat
ratio ≤ 1.05.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

# The client, as source: it runs on the host and, unchanged, inside the sandbox.
CLIENT = r'''
import json, socket, sys, time
def once(addr, payload, connect_line=None):
    t0 = time.perf_counter()
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if connect_line:
        s.sendall(connect_line)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
    s.sendall(payload)
    while s.recv(65536):
        pass
    s.close()
    return (time.perf_counter() - t0) * 1000
def run(host, port, payload, n, connect_line=None):
    for _ in range(20):
        once((host, port), payload, connect_line)
    return [once((host, port), payload, connect_line) for _ in range(n)]
def first_chunk(host, port, payload):
    t0 = time.perf_counter()
    s = socket.create_connection((host, port))
    s.sendall(payload)
    data = b""
    while b"data:" not in data:
        data += s.recv(65536)
    first = (time.perf_counter() - t0) * 1000
    while s.recv(65536):
        pass
    return first
if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    line = cfg.get("connect", "").encode() or None
    out = {"lat": run(cfg["host"], cfg["port"], cfg["payload"].encode(), cfg["n"], line)}
    if cfg.get("sse"):
        out["sse"] = [first_chunk(cfg["host"], cfg["port"], cfg["sse"].encode()) for _ in range(5)]
    print(json.dumps(out))
'''


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(3):
                if i:
                    time.sleep(0.02)
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def client_on_host(cfg: dict) -> dict:
    scope: dict = {}
    exec(compile(CLIENT, "client", "exec"), scope)  # noqa: S102 - our own constant source
    out = {"lat": scope["run"](cfg["host"], cfg["port"], cfg["payload"].encode(), cfg["n"],
                               cfg.get("connect", "").encode() or None)}
    if cfg.get("sse"):
        out["sse"] = [scope["first_chunk"](cfg["host"], cfg["port"], cfg["sse"].encode()) for _ in range(5)]
    return out


def request(target: str, host: str) -> str:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"


def row(name: str, lat: list[float], base: list[float] | None) -> str:
    p50, p99 = statistics.median(lat), pct(lat, 99)
    if base is None:
        return f"{name:<40} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
    b50, b99 = statistics.median(base), pct(base, 99)
    return (f"{name:<40} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   added p50 {p50 - b50:+.2f} ms  "
            f"p99 {p99 - b99:+.2f} ms   ratio p50 ×{p50 / b50:.2f}")


CHAT_CLIENT = r'''
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
body = json.dumps({"model": "ai/smollm2:135M-Q4_1", "stream": True, "max_tokens": 48, "temperature": 0,
                   "seed": 1, "messages": [{"role": "user", "content": "Count from one to twenty in words."}]}).encode()
runs = []
for _ in range(n):
    t0 = time.perf_counter()
    first, chunks = None, 0
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        for line in resp:
            if line.startswith(b"data:"):
                chunks += 1
                first = first or (time.perf_counter() - t0) * 1000
    runs.append({"ms": (time.perf_counter() - t0) * 1000, "first": first, "chunks": chunks})
print(json.dumps(runs))
'''


def bench_chat(sandbox: str, runtime, rounds: int = 3) -> str:  # noqa: ANN001
    """A streamed chat completion in the sandbox vs on the host (needs labkit.dmr and its model).

    Host and sandbox runs alternate, two completions each per round, so a change in the
    machine's load hits both paths alike; the spread of the host runs is printed with it.
    """
    try:
        from labkit.dmr import catalog
        from labkit.dmr import service as dmr_service
        from labkit.dmr.store import Store
    except ImportError as exc:
        return f"chat completion: skipped (labkit.dmr is not importable: {exc})"
    if catalog.SHIPPED[0].locate() is None:
        return f"chat completion: skipped (the model package {catalog.SHIPPED[0].distribution} is not installed)"
    from labkit.sbx import rules

    Store().pull(catalog.PRIMARY_REFERENCE)
    dmr_service.start()
    port = int(os.environ["LABKIT_DMR_PORT"])
    rules.add("allow", f"localhost:{port}")
    path = "/engines/llama.cpp/v1/chat/completions"

    def on_host(n: int) -> list[dict]:
        done = subprocess.run([sys.executable, "-c", CHAT_CLIENT, f"http://127.0.0.1:{port}{path}", str(n)],
                              capture_output=True, text=True, timeout=900, check=True,
                              env={**os.environ, "NO_PROXY": "*"})
        return json.loads(done.stdout)

    def in_sandbox(n: int) -> list[dict]:
        done = runtime.exec_command(sandbox, ["python3", "-c", CHAT_CLIENT, f"http://host.docker.internal:{port}{path}",
                                              str(n)], timeout=900)
        return json.loads(done.stdout)

    try:
        on_host(1)  # loads the model
        host: list[dict] = []
        boxed: list[dict] = []
        for _ in range(rounds):
            host += on_host(2)
            boxed += in_sandbox(2)
    finally:
        dmr_service.stop()
    h = statistics.median(r["ms"] for r in host)
    s = statistics.median(r["ms"] for r in boxed)
    hf = statistics.median(r["first"] for r in host)
    sf = statistics.median(r["first"] for r in boxed)
    spread = f"host runs {min(r['ms'] for r in host):.0f}–{max(r['ms'] for r in host):.0f} ms"
    return (f"chat completion, streamed ({host[0]['chunks']} chunks, median of {len(host)}, alternating): "
            f"host {h:.0f} ms, sandbox {s:.0f} ms, ratio ×{s / h:.3f} (goal ≤ 1.05; {spread}); "
            f"first chunk host {hf:.0f} ms, sandbox {sf:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="requests per path")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # the upstream server process: print the port, serve until killed
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        print(server.server_address[1], flush=True)
        server.serve_forever()

    home = tempfile.mkdtemp(prefix="lkbench-", dir="/tmp")
    os.environ["LABKIT_HOME"] = home
    os.environ.setdefault("LABKIT_DMR_PORT", str(free_port()))  # never the learner's 12434
    from labkit.sbx import isolation, rules, runtime, service

    # The server runs in its own process, so the client never shares a GIL with it.
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    up = int(server.stdout.readline())
    workspace = Path(home) / "ws"
    workspace.mkdir()
    try:
        print(service.start())
        rules.add("allow", f"localhost:{up}")
        proxy = service.tcp_port()
        tier = isolation.detect()
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio (uvloop is not installed)"
        print(f"isolation: {tier.name} ({tier.reason}); proxy event loop: {loop}; {args.n} requests per path, "
              f"fresh connection each; load average {load} on {os.cpu_count()} cores\n")

        hdi = f"host.docker.internal:{up}"
        connect = f"CONNECT {hdi} HTTP/1.1\r\nHost: {hdi}\r\n\r\n"
        paths = {
            "direct": {"host": "127.0.0.1", "port": up, "payload": request("/x", f"127.0.0.1:{up}"),
                       "sse": request("/sse", f"127.0.0.1:{up}")},
            "proxy": {"host": "127.0.0.1", "port": proxy, "payload": request(f"http://{hdi}/x", hdi),
                      "sse": request(f"http://{hdi}/sse", hdi)},
            "connect": {"host": "127.0.0.1", "port": proxy, "payload": request("/x", hdi), "connect": connect},
        }
        name = "bench-box"
        runtime.create("shell", str(workspace), name)
        guest_proxy = ("127.0.0.1", 3128) if tier.name == "namespaced" else ("127.0.0.1", service.endpoint(name).port)
        paths["sandbox"] = {"host": guest_proxy[0], "port": guest_proxy[1], "payload": request(f"http://{hdi}/x", hdi),
                            "sse": request(f"http://{hdi}/sse", hdi)}
        results: dict[str, dict[str, list[float]]] = {k: {"lat": [], "sse": []} for k in paths}
        proxy_proc = psutil.Process(service._service().pid())
        cpu, proxied = 0.0, 0
        rounds = 5  # the paths alternate, so a change in the machine's load hits them alike
        for _ in range(rounds):
            for key, cfg in paths.items():
                cfg = {**cfg, "n": args.n // rounds}
                before = proxy_proc.cpu_times()
                if key == "sandbox":
                    done = runtime.exec_command(name, ["python3", "-c", CLIENT, json.dumps(cfg)], timeout=600)
                    if done.returncode != 0:
                        print(done.stderr)
                        return 1
                    got = json.loads(done.stdout)
                else:
                    got = client_on_host(cfg)
                if key in ("proxy", "connect"):
                    after = proxy_proc.cpu_times()
                    cpu += after.user + after.system - before.user - before.system
                    proxied += cfg["n"] + 20 + (5 if cfg.get("sse") else 0)
                for field in ("lat", "sse"):
                    results[key][field] += got.get(field, [])
        direct, via, tunnel, full = (results[k] for k in ("direct", "proxy", "connect", "sandbox"))

        launches = []
        for _ in range(10):
            t0 = time.perf_counter()
            runtime.exec_command(name, ["true"])
            launches.append((time.perf_counter() - t0) * 1000)
        cli = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "labkit.sbx.cli", "exec", name, "true"], check=True)
            cli.append((time.perf_counter() - t0) * 1000)

        print("added latency of a small GET (fresh connection per request)")
        print(row("direct (host → server)", direct["lat"], None))
        print(row("proxy, absolute-form HTTP", via["lat"], direct["lat"]))
        print(row("proxy, CONNECT tunnel", tunnel["lat"], direct["lat"]))
        print(row(f"sandbox ({tier.name}), relay, proxy", full["lat"], direct["lat"]))
        print(f"proxy CPU per request (user+system, proxy and CONNECT paths): {cpu / proxied * 1000:.2f} ms")
        print(f"\nSSE first chunk (median of {len(direct['sse'])})")
        for label, data in (("direct", direct), ("proxy", via), ("sandbox", full)):
            print(f"  {label:<10} {statistics.median(data['sse']):6.2f} ms")
        print(f"\nsandbox launch (`true`, median of 10): {statistics.median(launches):.0f} ms via the Python API, "
              f"{statistics.median(cli):.0f} ms via `labkit sbx exec` (median of 5, incl. CLI start)")
        goal = statistics.median(via["lat"]) - statistics.median(direct["lat"])
        print(f"goal proxy p50 ≤ +0.5 ms: {'met' if goal <= 0.5 else 'NOT met'} ({goal:+.2f} ms)")
        per_request = cpu / proxied * 1000
        print(f"goal proxy CPU ≤ 0.5 ms per request: {'met' if per_request <= 0.5 else 'NOT met'} "
              f"({per_request:.2f} ms)")
        print("\n" + bench_chat(name, runtime))
        runtime.remove(name)
    finally:
        service.stop()
        server.kill()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
