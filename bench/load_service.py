"""Load run of ``vqdb serve`` on loopback: N concurrent clients search while one client ingests.

Starts the real server (uvicorn, one process, API key on) on a free loopback port with a fresh data
directory, preloads a collection with real vectors (the full WordNet/MiniLM-384 set when
``../shared/data`` is present, else the bundled 5,000-passage sample), then runs two phases of the
same length:

1. ``search``: ``--clients`` concurrent clients, each sending one single-vector k=10 search after the
   other (real word queries, payloads returned);
2. ``search+ingest``: the same, while one more client upserts ``--batch`` vectors per request
   (base64 float32 + payloads) as fast as the server takes them.

Reports throughput, latency percentiles and errors (non-2xx or transport errors; must be 0) to
``bench/results/load_service.{json,md}``. Clients are asyncio tasks on one httpx connection pool in
this process; the server and the clients share the machine's cores, so read the figures as a floor.

    python -m bench.load_service                      # defaults: 8 clients, 15 s per phase
    python -m bench.load_service --clients 16 --seconds 30 --preload 50000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from vqdb import datasets

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
KEY = "load-bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: str, log_path: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VQDB_") or k in ("VQDB_BACKEND",)}
    env.update(VQDB_API_KEY=KEY, VQDB_MAX_BULK_BYTES=str(256 << 20))
    cmd = [
        sys.executable,
        "-m",
        "vqdb.cli",
        "serve",
        "--data",
        data,
        "--port",
        str(port),
        "--no-demo",
        "--log-level",
        "warning",
    ]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}); see {log_path}")
            try:
                if http.get("/readyz").status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready after 180 s")


def load_data():
    """(vectors, texts or None, queries, source name); vectors are float32 unit rows."""
    full = datasets.wordnet_minilm()
    if full is not None:
        return full.base, None, full.queries, "wordnet-minilm384 (115,659 x 384)"
    ds = datasets.wordnet_sample()
    return ds.base, ds.texts, ds.queries, "wordnet sample (5,000 x 384)"


def b64_body(x: np.ndarray, ids: np.ndarray, texts) -> dict:
    body = {"ids": ids.tolist(), "vectors": base64.b64encode(x.astype("<f4").tobytes()).decode("ascii")}
    body["payloads"] = [
        {"n": int(i), "text": texts[int(i)] if texts is not None else f"passage {int(i)}"} for i in ids
    ]
    return body


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


async def run_phase(
    url: str,
    queries: np.ndarray,
    *,
    clients: int,
    seconds: float,
    k: int,
    ingest: tuple[np.ndarray, list | None, int, int, int] | None,
) -> dict:
    """One phase; ``ingest`` = (vectors, texts, first id, last id, batch) or None."""
    import httpx

    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    headers = {"Authorization": f"Bearer {KEY}"}
    search_ms: list[float] = []
    ingest_ms: list[float] = []
    errors: list[str] = []
    ingested = 0
    stop = time.perf_counter() + seconds
    rng = np.random.default_rng(0)
    qlist = [queries[i].tolist() for i in rng.integers(0, len(queries), size=4096)]

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as http:

        async def searcher(j: int):
            i = j
            while time.perf_counter() < stop:
                body = {"vector": qlist[i % len(qlist)], "k": k}
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await http.post("/collections/load/search", json=body)
                    if r.status_code != 200 or len(r.json()["results"]) != k:
                        errors.append(f"search {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"search transport: {exc!r}")
                search_ms.append((time.perf_counter() - t0) * 1e3)

        async def ingester():
            nonlocal ingested
            x, texts, first, last, batch = ingest
            nxt = first
            while time.perf_counter() < stop and nxt < last:
                ids = np.arange(nxt, min(nxt + batch, last))
                body = b64_body(x[ids], ids, texts)
                t0 = time.perf_counter()
                try:
                    r = await http.post("/collections/load/points/b64", json=body)
                    if r.status_code != 200:
                        errors.append(f"ingest {r.status_code}: {r.text[:200]}")
                    else:
                        ingested += ids.size
                except httpx.HTTPError as exc:
                    errors.append(f"ingest transport: {exc!r}")
                ingest_ms.append((time.perf_counter() - t0) * 1e3)
                nxt += ids.size

        t_start = time.perf_counter()
        tasks = [searcher(j) for j in range(clients)] + ([ingester()] if ingest is not None else [])
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t_start

    out = {
        "clients": clients,
        "seconds": round(wall, 2),
        "searches": len(search_ms),
        "search_qps": round(len(search_ms) / wall, 1),
        **{f"search_{k_}": v for k_, v in percentiles(search_ms).items()},
        "errors": len(errors),
        "error_samples": errors[:5],
    }
    if ingest is not None:
        out.update(
            ingested_vectors=ingested,
            ingest_requests=len(ingest_ms),
            ingest_vectors_per_s=round(ingested / wall, 1),
            **{f"ingest_{k_}": v for k_, v in percentiles(ingest_ms).items()},
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--preload", type=int, default=20_000, help="vectors loaded before the phases")
    ap.add_argument("--batch", type=int, default=500, help="vectors per ingest request")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quantizer", default="turbo-4")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)

    import httpx

    x, texts, queries, source = load_data()
    preload = min(args.preload, x.shape[0] // 2)  # keep the other half for the ingest phase
    with tempfile.TemporaryDirectory(prefix="vqdb-load-") as tmp:
        proc, url = start_server(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"))
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as http:
                r = http.post(
                    "/collections",
                    json={
                        "name": "load",
                        "dim": int(x.shape[1]),
                        "metric": "cos",
                        "quantizer": args.quantizer,
                    },
                )
                r.raise_for_status()
                t0 = time.perf_counter()
                for s in range(0, preload, 5000):
                    ids = np.arange(s, min(s + 5000, preload))
                    http.post(
                        "/collections/load/points/b64", json=b64_body(x[ids], ids, texts)
                    ).raise_for_status()
                preload_s = time.perf_counter() - t0
                http.post(
                    "/collections/load/search", json={"vector": queries[0].tolist(), "k": args.k}
                )  # warm-up
            search_only = asyncio.run(
                run_phase(url, queries, clients=args.clients, seconds=args.seconds, k=args.k, ingest=None)
            )
            mixed = asyncio.run(
                run_phase(
                    url,
                    queries,
                    clients=args.clients,
                    seconds=args.seconds,
                    k=args.k,
                    ingest=(x, texts, preload, x.shape[0], args.batch),
                )
            )
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
                final_count = http.get("/collections/load").json()["count"]
                metrics = http.get("/metrics").text
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        server_5xx = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("vqdb_requests_total") and 'status="5' in line
        )

    try:
        from bench.common import machine_info

        machine = machine_info(threads=os.cpu_count() or 1)
    except Exception:  # noqa: BLE001 - the figures stand without it
        machine = {"cores": os.cpu_count()}
    result = {
        "benchmark": "load_service",
        "data": source,
        "dim": int(x.shape[1]),
        "quantizer": args.quantizer,
        "metric": "cos",
        "k": args.k,
        "preloaded": preload,
        "preload_seconds": round(preload_s, 2),
        "preload_vectors_per_s": round(preload / preload_s, 1),
        "phases": {"search": search_only, "search+ingest": mixed},
        "final_count": final_count,
        "server_5xx": server_5xx,
        "total_errors": search_only["errors"] + mixed["errors"],
        "machine": machine,
        "command": "python -m bench.load_service " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "load_service.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "load_service.md"), "w", encoding="utf-8") as f:
        f.write(report_md(result))
    print(report_md(result))
    return 0 if result["total_errors"] == 0 and server_5xx == 0 else 1


def report_md(r: dict) -> str:
    m = r["machine"]
    rows = []
    for name, p in r["phases"].items():
        ingest = (
            (
                f"{p['ingest_vectors_per_s']:,.0f} vec/s ({p['ingested_vectors']:,} in {p['ingest_requests']} "
                f"requests, p50 {p['ingest_p50_ms']} ms, p99 {p['ingest_p99_ms']} ms)"
            )
            if "ingested_vectors" in p
            else "—"
        )
        rows.append(
            f"| {name} | {p['clients']} | {p['searches']:,} | {p['search_qps']:,.1f} | {p['search_p50_ms']} | "
            f"{p['search_p95_ms']} | {p['search_p99_ms']} | {p['errors']} | {ingest} |"
        )
    return "\n".join(
        [
            "# vqdb serve — loopback load run",
            "",
            f"`{r['command']}` — data: {r['data']}, {r['quantizer']} codes, metric {r['metric']}, k={r['k']}, "
            f"payloads returned; {r['preloaded']:,} vectors preloaded ({r['preload_vectors_per_s']:,.0f} vec/s over HTTP, "
            "base64 batches of 5,000). One uvicorn process; clients are asyncio tasks in a second process on the "
            "same machine.",
            "",
            "| phase | clients | searches | searches/s | p50 ms | p95 ms | p99 ms | errors | ingest (one more client) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Errors (non-2xx or transport) in total: **{r['total_errors']}**; server-side 5xx counted by /metrics: "
            f"**{int(r['server_5xx'])}**. Final count {r['final_count']:,}.",
            "",
            f"Machine: {m.get('cpu', '?')}, {m.get('cores')} cores, load average at start "
            f"{', '.join(f'{v:.1f}' for v in (m.get('loadavg_at_start') or []))}; commit {m.get('git_commit')}; "
            f"{m.get('date', '')}. The machine is shared, so absolute figures are a floor.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
