"""Connection flood against a real ``vqdb serve`` (issue 17, finding 5).

Two scenarios, each against a fresh server whose descriptor limit is lowered (RLIMIT_NOFILE, default
1,024, soft = hard):

* ``idle``: ``--idle`` sockets (default 1,100) connect and send nothing;
* ``trickle``: ``--slow-head`` sockets send a request head one header line per second (slowloris) and
  ``--slow-body`` sockets send a complete head announcing a body, then one body byte per second.

For each: how long every flood socket lived until the server closed it (censored at ``--observe``
seconds), ``/healthz`` latency measured every 0.1 s on a fresh connection (2 s timeout: a timeout is
a failure), the server's peak descriptor count, and the bytes its log grew by.
``--server-pythonpath`` runs the server from another checkout (e.g. the code before the fix).

    python -m bench.connection_flood                       # both scenarios, results/connection_flood.*
    python -m bench.connection_flood --server-pythonpath /tmp/before --tag before
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json

KEY = "flood-bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    data: str, log_path: str, *, nofile: int, pythonpath: str | None
) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VQDB_")}
    env.update(VQDB_API_KEY=KEY, PYTHONUNBUFFERED="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "vqdb.cli", "serve", "--data", data, "--port", str(port), "--no-demo"]
    cmd += ["--log-level", "warning"]

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = open(log_path, "wb")
    # run from the checkout whose vqdb is served (``python -m`` puts the working directory first)
    cwd = pythonpath or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit, cwd=cwd)
    deadline = time.monotonic() + 600  # vqdb serve loads (or first compiles) every kernel before it listens
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log_path}")
        if _healthz(port, timeout=2.0) is not None:
            return proc, port
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready after 600 s")


def _healthz(port: int, *, timeout: float) -> float | None:
    """Seconds for GET /healthz on a fresh connection, or None (refused, timed out, not a 200)."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return time.perf_counter() - start if data.startswith(b"HTTP/1.1 200") else None


class Flood:
    """Flood sockets watched for the server closing them; trickling ones get a byte a second."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.closed: dict[socket.socket, float] = {}
        self.trickle: dict[socket.socket, bytes] = {}
        self.failed_connects = 0

    def open(self, port: int, n: int, first: bytes = b"", drip: bytes | None = None) -> None:
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                if first:
                    s.sendall(first)
            except OSError:
                self.failed_connects += 1
                continue
            s.setblocking(False)
            self.opened[s] = time.monotonic()
            self.sel.register(s, selectors.EVENT_READ)
            if drip is not None:
                self.trickle[s] = drip

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in self.sel.select(timeout=min(left, 0.2)):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close(s)

    def drip(self) -> None:
        for s, byte in list(self.trickle.items()):
            try:
                s.send(byte)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(s)

    def _close(self, s) -> None:
        if s in self.closed:
            return
        self.closed[s] = time.monotonic()
        self.sel.unregister(s)
        self.trickle.pop(s, None)
        s.close()

    def lifetimes(self) -> tuple[list[float], int]:
        """(seconds each closed socket lived, how many are still open)."""
        return [self.closed[s] - t for s, t in self.opened.items() if s in self.closed], len(
            self.opened
        ) - len(self.closed)

    def close_all(self) -> None:
        for s in list(self.opened):
            if s not in self.closed:
                self.sel.unregister(s)
                s.close()


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def scenario(name: str, args, *, idle: int, slow_head: int, slow_body: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vqdb-flood-") as tmp:
        log_path = os.path.join(tmp, "server.log")
        proc, port = start_server(
            os.path.join(tmp, "data"), log_path, nofile=args.nofile, pythonpath=args.server_pythonpath
        )
        log_start = os.path.getsize(log_path)
        flood = Flood()
        latencies: list[float | None] = []
        fds: list[int] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                latencies.append(_healthz(port, timeout=2.0))
                fds.append(_fds(proc.pid))
                stop.wait(0.1)

        prober = threading.Thread(target=probe, daemon=True)
        try:
            start = time.monotonic()
            prober.start()
            flood.open(port, idle)
            # a valid header line a second, never the blank line that ends the head
            flood.open(port, slow_head, first=b"GET /healthz HTTP/1.1\r\nHost: x\r\n", drip=b"X-a: b\r\n")
            body_head = (
                b"POST /collections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n{"
            )
            flood.open(port, slow_body, first=body_head, drip=b" ")
            opened_in = time.monotonic() - start
            while time.monotonic() - start < args.observe and len(flood.closed) < len(flood.opened):
                flood.poll(1.0)
                flood.drip()
        finally:
            stop.set()
            prober.join(5)
            flood.close_all()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_bytes = os.path.getsize(log_path) - log_start
    lived, still_open = flood.lifetimes()
    ok = [x * 1e3 for x in latencies if x is not None]
    return {
        "scenario": name,
        "flood": {"idle": idle, "slow_head": slow_head, "slow_body": slow_body},
        "connects_failed": flood.failed_connects,
        "opened": len(flood.opened),
        "opened_in_s": round(opened_in, 2),
        "closed_by_server": len(lived),
        "still_open_at_end": still_open,
        "observed_s": args.observe,
        "lifetime_s": _summary(lived),
        "healthz": {
            "probes": len(latencies),
            "failed": sum(x is None for x in latencies),
            "p50_ms": _pct(ok, 50),
            "p99_ms": _pct(ok, 99),
            "max_ms": round(max(ok), 1) if ok else None,
        },
        "server_fds_peak": max(fds) if fds else None,
        "log_bytes": log_bytes,
    }


def _commit_of(path: str | None) -> str | None:
    cwd = path or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", cwd, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def _pct(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


def _summary(values) -> dict:
    if not values:
        return {"p50": None, "max": None}
    return {
        "p50": round(float(np.median(values)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(max(values), 2),
    }


def report_md(r: dict) -> str:
    lines = [
        f"# Connection flood ({r['tag']})",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Server: `vqdb serve` with RLIMIT_NOFILE {r['nofile']} (soft = hard), default timeouts "
        "(head 10 s, body 20 s + 1 s per 1,024 bytes, keep-alive 5 s) unless the server predates them.",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, load average at start "
        f"{r['machine']['loadavg_at_start']}, at end {r['loadavg_at_end']}; server at commit {r['server_commit']}.",
        "",
        "| scenario | opened | closed by server | still open at end | lifetime p50 / p99 / max (s) | "
        "/healthz probes (failed) | /healthz p50 / p99 / max (ms) | server fds peak | log bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["scenarios"]:
        lt, hz = s["lifetime_s"], s["healthz"]
        lines.append(
            f"| {s['scenario']} ({', '.join(f'{k} {v}' for k, v in s['flood'].items() if v)}) | {s['opened']} "
            f"| {s['closed_by_server']} | {s['still_open_at_end']} (after {s['observed_s']} s) "
            f"| {lt.get('p50')} / {lt.get('p99')} / {lt.get('max')} | {hz['probes']} ({hz['failed']}) "
            f"| {hz['p50_ms']} / {hz['p99_ms']} / {hz['max_ms']} | {s['server_fds_peak']} | {s['log_bytes']:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=1100)
    p.add_argument("--slow-head", type=int, default=200)
    p.add_argument("--slow-body", type=int, default=200)
    p.add_argument("--nofile", type=int, default=1024, help="the server's RLIMIT_NOFILE")
    p.add_argument("--observe", type=float, default=45.0, help="seconds to watch each scenario at most")
    p.add_argument("--server-pythonpath", help="run the server from this checkout")
    p.add_argument("--tag", default="after", help="name of the results files: connection_flood[_<tag>]")
    args = p.parse_args(argv)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),) * 2
    )
    result = {
        "tag": args.tag,
        "command": "python -m bench.connection_flood " + " ".join(argv if argv is not None else sys.argv[1:]),
        "nofile": args.nofile,
        "machine": machine_info(threads=1),
        "server_commit": _commit_of(args.server_pythonpath),
        "scenarios": [
            scenario("idle", args, idle=args.idle, slow_head=0, slow_body=0),
            scenario("trickle", args, idle=0, slow_head=args.slow_head, slow_body=args.slow_body),
        ],
        "loadavg_at_end": list(os.getloadavg()),
    }
    name = "connection_flood" if args.tag == "after" else f"connection_flood_{args.tag}"
    write_json(os.path.join(RESULTS_DIR, name + ".json"), result)
    with open(os.path.join(RESULTS_DIR, name + ".md"), "w", encoding="utf-8") as f:
        f.write(report_md(result))
    print(json.dumps(result["scenarios"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
