"""Load runs of ``vqdb serve`` on loopback: the service's cost per search over the embedded call,
throughput and latency with 1 / 8 / 32 clients (JSON and base64 bodies), ingest rates, and searches
while one client ingests.

The real server (uvicorn, one process, API key on) runs on a free loopback port over a data directory
whose collection ``load`` is built in-process first from real vectors (the full WordNet/MiniLM-384 set
when ``VQDB_SHARED_DATA`` / ``../shared/data`` has it, else the bundled 5,000-passage sample), turbo-4,
cosine, flat. Sections (``--sections``):

* ``overhead``: one keep-alive connection sends one search after the other (one query vector, no
  payload) while the server's CPU time (all its threads, from ``/proc/<pid>/stat``) is read around
  them; the same queries go through ``Index.search`` (one query per call) on the same index, opened
  read-only in this process, in alternating rounds. Reported per k: embedded CPU per query, server
  CPU per request with a JSON and with a base64 body, and their difference (the service's overhead).
* ``batches``: 100 query vectors per request as JSON ``vectors``, base64 ``vectors_b64`` and an Arrow
  stream (``/search/arrow``): server CPU per query beside ``Index.search`` of the same 100 per call.
* ``throughput``: C concurrent clients (one keep-alive connection each, asyncio raw HTTP/1.1 with
  prebuilt requests: the lightest load generator we could write) search for ``--seconds``; the load
  generator's own CPU time is reported beside the server's (both share the machine's cores).
* ``cores``: 8 clients, base64 body, k=10, with the server pinned to 1 core and then to 2 (taskset):
  what a second core gives the server.
* ``ingest``: vectors/s into fresh collections over JSON (``/points``), base64 (``/points/b64``)
  and Arrow (``/points/arrow``), bodies prebuilt before the clock starts, each with a small payload.
* ``mixed``: 8 clients search (payloads returned) while one more upserts base64 batches.
* ``layers``: where a request's server CPU goes, in this process, no HTTP: per k and body, the app's
  search lane called as ASGI (auth, body, parse, search, answer, metrics) with the search on the event
  loop's thread and with it in a worker thread, beside ``Index.search`` of the same queries (alternating
  rounds, process CPU per request), and the parse / query matrix / answer steps alone (thread CPU).

    python -m bench.load_service                              # every section
    python -m bench.load_service --sections overhead,throughput --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vqdb import datasets

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
KEY = "load-bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    data: str, log_path: str, *, cpus: str | None = None, readers: int = 0, http: str = "auto"
) -> tuple[subprocess.Popen, str]:
    """``vqdb serve`` on a free loopback port (pinned to ``cpus``, e.g. "0", with taskset when given;
    ``readers`` search reader processes; ``http`` its HTTP parser)."""
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VQDB_") or k in ("VQDB_BACKEND",)}
    env.update(
        VQDB_API_KEY=KEY, VQDB_MAX_BULK_BYTES=str(256 << 20), VQDB_READERS=str(readers), VQDB_HTTP=http
    )
    env.update(
        VQDB_KEEP_ALIVE_TIMEOUT="120"
    )  # an overhead round idles its connection while the embedded side runs
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
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    log = open(log_path, "ab")
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
        {"n": int(i), "text": texts[int(i) % len(texts)] if texts is not None else f"passage {int(i)}"}
        for i in ids
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
                body = b64_body(x[ids % len(x)], ids, texts)
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


# ---- the served collection, the server's CPU time -------------------------------------------------


def build_collection(data: Path, x: np.ndarray, quantizer: str) -> None:
    """Collection ``load`` of ``x`` (ids 0..n-1, payload {"n": id}) in the server data directory ``data``."""
    from vqdb.server.collections import CollectionStore

    store = CollectionStore(data / "collections")
    store.load()
    col = store.create("load", dim=int(x.shape[1]), metric="cos", quantizer=quantizer)
    for s in range(0, x.shape[0], 20_000):
        ids = np.arange(s, min(s + 20_000, x.shape[0]))
        col.upsert(np.ascontiguousarray(x[ids], dtype=np.float32), ids, [{"n": int(i)} for i in ids])
    store.close()


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds so far of process ``pid`` (all its threads) and (``children``) of its
    live children (the server's search reader processes)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not children:
        return own
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return own + sum(cpu_seconds(c) for c in children)


def wait_for_readers(url: str, queries: np.ndarray, readers: int, timeout: float = 300.0) -> None:
    """Search until a reader process answers (``readers`` > 0): they open their snapshots after a first
    search, once writes have been quiet; until then the serving process answers."""
    import httpx

    if not readers:
        return
    deadline = time.monotonic() + timeout
    body = {"vector": queries[0].tolist(), "k": 10}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        while time.monotonic() < deadline:
            http.post("/collections/load/search", json=body).raise_for_status()
            metrics = http.get("/metrics").text
            if any(
                line.startswith("vqdb_reader_searches_total") and float(line.split()[-1]) > 0
                for line in metrics.splitlines()
            ):
                return
            time.sleep(0.2)
    raise RuntimeError(f"no search was answered by a reader within {timeout} s")


def machine_busy_seconds() -> float:
    """CPU seconds so far of every process on the machine (all cores; /proc/stat, idle and iowait left out)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def search_body(q: np.ndarray, k: int, kind: str) -> bytes:
    if kind == "json":
        doc = {"vector": q.tolist(), "k": k, "with_payload": False}
    else:
        doc = {"vector_b64": base64.b64encode(q.astype("<f4").tobytes()).decode("ascii"), "k": k}
        doc["with_payload"] = False
    return json.dumps(doc).encode()


# ---- overhead: server CPU per request vs embedded CPU per query -----------------------------------


def overhead(
    url: str,
    pid: int,
    index_path: str,
    queries: np.ndarray,
    *,
    ks,
    n: int,
    rounds: int,
    kinds=("json", "b64"),
) -> list:
    import vqdb

    host, port = url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    index = vqdb.open(index_path, read_only=True)
    q = np.ascontiguousarray(queries[:n], dtype=np.float32)

    def serve(bodies) -> float:
        c0 = cpu_seconds(pid)
        for b in bodies:
            conn.request("POST", "/collections/load/search", b, headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"search {r.status}: {data[:200]!r}")
        return (cpu_seconds(pid) - c0) / len(bodies)

    def embedded(k: int) -> float:
        c0 = time.process_time()
        for i in range(q.shape[0]):
            index.search(q[i : i + 1], k)
        return (time.process_time() - c0) / q.shape[0]

    out = []
    for k in ks:
        bodies = {kind: [search_body(v, k, kind) for v in q] for kind in kinds}
        # the answers are the embedded ones (ids), and everything is warm before the clock
        conn.request("POST", "/collections/load/search", bodies["json"][0], headers)
        served = json.loads(conn.getresponse().read())["results"]
        assert [h["id"] for h in served] == index.search(q[:1], k).ids[0][: len(served)].tolist()
        for kind in kinds:
            serve(bodies[kind][:50])
        embedded(k)
        per = {"embedded": [], **{kind: [] for kind in kinds}}
        for _ in range(rounds):  # alternate, so a change of load hits all alike
            per["embedded"].append(embedded(k))
            for kind in kinds:
                per[kind].append(serve(bodies[kind]))
        med = {key: float(np.median(v)) * 1e3 for key, v in per.items()}
        row = {
            "k": k,
            "requests_per_round": q.shape[0],
            "rounds": rounds,
            "embedded_cpu_ms_per_query": round(med["embedded"], 3),
        }
        for kind in ("json", "b64"):
            have = kind in med
            row[f"server_cpu_ms_per_request_{kind}"] = round(med[kind], 3) if have else None
            row[f"overhead_ms_{kind}"] = round(med[kind] - med["embedded"], 3) if have else None
            row[f"ratio_{kind}"] = round(med[kind] / med["embedded"], 3) if have else None
        out.append(
            {
                **row,
                "rounds_ms": {key: [round(x * 1e3, 3) for x in v] for key, v in per.items()},
            }
        )
        print(f"overhead k={k}: {out[-1]}", file=sys.stderr, flush=True)
    index.close()
    conn.close()
    return out


# ---- layers: the lane in this process (no HTTP), inline vs worker thread, and its steps -------------


def layers(data: Path, queries: np.ndarray, *, ks, n: int, rounds: int) -> list:
    import timeit

    from vqdb.server.app import create_app
    from vqdb.server.routes import search as lane
    from vqdb.server.settings import Settings

    app = create_app(Settings(data=data, demo=False, api_key=KEY))
    q = np.ascontiguousarray(queries[:n], dtype=np.float32)
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]
    inline_rows = lane.INLINE_ROWS

    async def through_lane(bodies) -> None:
        for b in bodies:
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/collections/load/search",
                "query_string": b"",
            }
            scope.update(
                headers=[*headers, (b"content-length", str(len(b)).encode())], client=("127.0.0.1", 1)
            )
            sent, inbox = [], [{"type": "http.request", "body": b, "more_body": False}]

            async def receive(inbox=inbox):
                return inbox.pop()

            async def send(message, sent=sent):
                sent.append(message)

            await app(scope, receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"lane {sent[0]['status']}: {sent[1]['body'][:200]!r}")

    def step_us(fn) -> float:
        return min(timeit.repeat(fn, number=200, repeat=5, timer=time.thread_time)) / 200 * 1e6

    async def run() -> list:
        out = []
        async with app.router.lifespan_context(app):
            col = app.state.store.get("load")
            settings = app.state.settings

            def embedded(k: int) -> float:
                c0 = time.process_time()
                for i in range(q.shape[0]):
                    col.search(q[i : i + 1], k)
                return (time.process_time() - c0) / q.shape[0]

            async def lane_cpu(bodies, rows: int) -> float:
                lane.INLINE_ROWS = (
                    rows  # the bound the lane reads per request: 0 sends every search to a worker
                )
                try:
                    c0 = time.process_time()
                    await through_lane(bodies)
                    return (time.process_time() - c0) / len(bodies)
                finally:
                    lane.INLINE_ROWS = inline_rows

            for k in ks:
                for kind in ("json", "b64"):
                    bodies = [search_body(v, k, kind) for v in q]
                    await through_lane(bodies[:50])
                    embedded(k)
                    per = {"embedded": [], "inline": [], "worker": []}
                    for _ in range(rounds):
                        per["embedded"].append(embedded(k))
                        per["inline"].append(await lane_cpu(bodies, inline_rows))
                        per["worker"].append(await lane_cpu(bodies, 0))
                    med = {key: float(np.median(v)) * 1e3 for key, v in per.items()}
                    raw = bodies[0]
                    body = lane.parsed(raw, settings)
                    matrix = lane._queries(body, col, settings)
                    result = col.search(matrix, k)
                    ids, scores = np.asarray(result.ids), np.asarray(result.scores)

                    def answer(body=body, ids=ids, scores=scores):
                        hits = lane._hits(col, ids, scores, body, False)
                        return lane.bounded_json({"results": hits, "time_ms": 1.0}, settings)

                    row = {"k": k, "body": kind, "requests_per_round": n, "rounds": rounds}
                    row.update({f"{key}_cpu_ms_per_request": round(v, 3) for key, v in med.items()})
                    row.update(
                        lane_inline_over_embedded_ms=round(med["inline"] - med["embedded"], 3),
                        lane_worker_over_embedded_ms=round(med["worker"] - med["embedded"], 3),
                        parse_us=round(step_us(lambda raw=raw: lane.parsed(raw, settings)), 1),
                        query_matrix_us=round(
                            step_us(lambda body=body: lane._queries(body, col, settings)), 1
                        ),
                        answer_us=round(step_us(answer), 1),
                        rounds_ms={key: [round(x * 1e3, 3) for x in v] for key, v in per.items()},
                    )
                    out.append(row)
                    print(f"layers: {row}", file=sys.stderr, flush=True)
        return out

    return asyncio.run(run())


# ---- batches: 100 query vectors per request as JSON, base64 and Arrow ---------------------------


def batches(url: str, pid: int, index_path: str, queries: np.ndarray, *, ks, batch: int, rounds: int) -> list:
    import vqdb

    host, port = url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    index = vqdb.open(index_path, read_only=True)
    q = np.ascontiguousarray(queries[: batch * 10], dtype=np.float32)
    groups = [q[s : s + batch] for s in range(0, q.shape[0], batch)]
    out = []
    for k in ks:
        requests = {
            "json": [
                (
                    "/collections/load/search",
                    json.dumps({"vectors": g.tolist(), "k": k, "with_payload": False}),
                    "json",
                )
                for g in groups
            ],
            "b64": [
                (
                    "/collections/load/search",
                    json.dumps(
                        {
                            "vectors_b64": base64.b64encode(g.astype("<f4").tobytes()).decode("ascii"),
                            "k": k,
                            "with_payload": False,
                        }
                    ),
                    "json",
                )
                for g in groups
            ],
            "arrow": [
                (f"/collections/load/search/arrow?k={k}&with_payload=false", query_arrow(g), "arrow")
                for g in groups
            ],
        }

        def serve(kind) -> float:
            c0 = cpu_seconds(pid)
            for path, body, ctype in requests[kind]:
                content_type = (
                    "application/json" if ctype == "json" else "application/vnd.apache.arrow.stream"
                )
                conn.request(
                    "POST", path, body, {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
                )
                r = conn.getresponse()
                data = r.read()
                if r.status != 200:
                    raise RuntimeError(f"{kind} batch {r.status}: {data[:200]!r}")
            return (cpu_seconds(pid) - c0) / q.shape[0]

        def embedded() -> float:
            c0 = time.process_time()
            for g in groups:
                index.search(g, k)
            return (time.process_time() - c0) / q.shape[0]

        for kind in requests:
            serve(kind)
        embedded()
        per = {"embedded": [], "json": [], "b64": [], "arrow": []}
        for _ in range(rounds):
            per["embedded"].append(embedded())
            for kind in ("json", "b64", "arrow"):
                per[kind].append(serve(kind))
        med = {key: float(np.median(v)) * 1e3 for key, v in per.items()}
        out.append(
            {
                "k": k,
                "batch": batch,
                "requests_per_round": len(groups),
                "rounds": rounds,
                **{f"{key}_cpu_ms_per_query": round(v, 4) for key, v in med.items()},
            }
        )
        print(f"batches k={k}: {out[-1]}", file=sys.stderr, flush=True)
    index.close()
    conn.close()
    return out


def query_arrow(x: np.ndarray) -> bytes:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel())
    table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# ---- throughput: C clients, raw HTTP/1.1 keep-alive ------------------------------------------------


def raw_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _client(host, port, requests, stop, latencies, errors) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            data = await reader.readexactly(length)
            latencies.append((time.perf_counter() - t0) * 1e3)
            if head[9:12] != b"200":
                errors.append(f"{head[9:12].decode()}: {data[:200]!r}")
    finally:
        writer.close()


def throughput(url: str, pid: int, queries: np.ndarray, *, clients: int, kind: str, k: int, seconds: float):
    host, port = url.rsplit("//", 1)[1].split(":")
    requests = [raw_request("/collections/load/search", search_body(v, k, kind)) for v in queries[:512]]
    latencies: list[float] = []
    errors: list[str] = []

    async def run():
        stop = time.perf_counter() + seconds
        await asyncio.gather(
            *[
                _client(host, int(port), requests[j::clients] or requests, stop, latencies, errors)
                for j in range(clients)
            ]
        )

    s0, m0 = cpu_seconds(pid), cpu_seconds(pid, children=False)
    g0, b0, t0 = own_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - t0
    served, generated = cpu_seconds(pid) - s0, own_cpu_seconds() - g0
    serving, busy = cpu_seconds(pid, children=False) - m0, machine_busy_seconds() - b0
    n = max(1, len(latencies))
    return {
        "clients": clients,
        "body": kind,
        "k": k,
        "seconds": round(wall, 2),
        "requests": len(latencies),
        "per_s": round(len(latencies) / wall, 1),
        **{key: v for key, v in percentiles(latencies).items() if key in ("p50_ms", "p99_ms")},
        "server_cpu_ms_per_request": round(served / n * 1e3, 3),
        "serving_process_cpu_ms_per_request": round(serving / n * 1e3, 3),
        "loadgen_cpu_ms_per_request": round(generated / n * 1e3, 3),
        "cores_busy": round((served + generated) / wall, 2),
        "machine_cores_busy": round(busy / wall, 2),  # every process's, this run's included
        "errors": len(errors),
        "error_samples": errors[:3],
    }


# ---- ingest: JSON, base64, Arrow ------------------------------------------------------------------


def arrow_body(x: np.ndarray, ids: np.ndarray) -> bytes:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel())
    table = pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, x.shape[1]),
            "n": pa.array(ids, type=pa.int64()),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def ingest(http, pid: int, x: np.ndarray, *, n: int, batches: dict) -> list:
    out = []
    for kind, (path, batch, content_type) in batches.items():
        name = f"ingest-{kind}"
        r = http.post("/collections", json={"name": name, "dim": int(x.shape[1]), "metric": "cos"})
        r.raise_for_status()
        bodies = []
        for s in range(0, n, batch):
            ids = np.arange(s, min(s + batch, n))
            if kind == "json":
                doc = {
                    "points": [{"id": int(i), "vector": x[i].tolist(), "payload": {"n": int(i)}} for i in ids]
                }
                bodies.append(json.dumps(doc).encode())
            elif kind == "b64":
                doc = {
                    "ids": ids.tolist(),
                    "vectors": base64.b64encode(x[ids].astype("<f4").tobytes()).decode("ascii"),
                    "payloads": [{"n": int(i)} for i in ids],
                }
                bodies.append(json.dumps(doc).encode())
            else:
                bodies.append(arrow_body(x[ids], ids))
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        for b in bodies:
            http.post(
                f"/collections/{name}{path}", content=b, headers={"Content-Type": content_type}
            ).raise_for_status()
        wall, served = time.perf_counter() - t0, cpu_seconds(pid) - c0
        count = http.get(f"/collections/{name}").json()["count"]
        assert count == n, (kind, count)
        out.append(
            {
                "body": kind,
                "vectors": n,
                "batch": batch,
                "request_mb": round(sum(map(len, bodies)) / len(bodies) / 2**20, 2),
                "seconds": round(wall, 2),
                "vectors_per_s": round(n / wall, 1),
                "server_cpu_us_per_vector": round(served / n * 1e6, 2),
            }
        )
        print(f"ingest {kind}: {out[-1]}", file=sys.stderr, flush=True)
        http.delete(f"/collections/{name}")
    return out


# ---- the run -------------------------------------------------------------------------------------

SECTIONS = ("overhead", "batches", "throughput", "cores", "ingest", "mixed", "layers")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    ap.add_argument("--seconds", type=float, default=8.0, help="per throughput point and mixed phase")
    ap.add_argument("--requests", type=int, default=300, help="overhead: requests per round")
    ap.add_argument("--rounds", type=int, default=5, help="overhead: alternating rounds")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--ks", default="10,100")
    ap.add_argument("--ingest", type=int, default=20_000, help="vectors per ingest body kind")
    ap.add_argument("--quantizer", default="turbo-4")
    ap.add_argument(
        "--json-only", action="store_true", help="overhead: JSON bodies only (a server without vector_b64)"
    )
    ap.add_argument("--vectors", type=int, default=None, help="serve only the first N vectors (default: all)")
    ap.add_argument("--readers", default="0,2", help="search reader processes of the server, one run each")
    ap.add_argument("--http", default="auto", help="the server's HTTP parser (auto, httptools, h11)")
    ap.add_argument("--tag", default="", help="suffix of the results file names")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    ks = [int(k) for k in args.ks.split(",")]
    client_counts = [int(c) for c in args.clients.split(",")]
    reader_counts = [int(r) for r in args.readers.split(",")]

    import httpx

    x, texts, queries, source = load_data()
    if args.vectors is not None:
        x = x[: args.vectors]
        source += f", first {x.shape[0]:,}"
    result: dict = {
        "benchmark": "load_service",
        "data": source,
        "dim": int(x.shape[1]),
        "quantizer": args.quantizer,
        "metric": "cos",
        "served_vectors": int(x.shape[0]),
        "sections": {},
        "loadavg_before": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory(prefix="vqdb-load-") as tmp:
        data = Path(tmp) / "data"
        build_collection(data, x, args.quantizer)
        log = os.path.join(tmp, "server.log")

        def serving(readers, cpus=None):
            proc, url = start_server(str(data), log, cpus=cpus, readers=readers, http=args.http)
            wait_for_readers(url, queries, readers)
            return proc, url

        index_path = str(data / "collections" / "load" / "index")
        out = result["sections"]
        if "layers" in sections:  # in this process, before any server holds the data directory
            out["layers"] = layers(data, queries, ks=ks, n=args.requests, rounds=args.rounds)
        for readers in reader_counts:
            proc, url = serving(readers)
            tag = {"readers": readers}
            try:
                if "overhead" in sections:
                    kinds = ("json",) if args.json_only else ("json", "b64")
                    rows = overhead(
                        url,
                        proc.pid,
                        index_path,
                        queries,
                        ks=ks,
                        n=args.requests,
                        rounds=args.rounds,
                        kinds=kinds,
                    )
                    out.setdefault("overhead", []).extend({**tag, **r} for r in rows)
                if "batches" in sections:
                    rows = batches(url, proc.pid, index_path, queries, ks=ks, batch=100, rounds=args.rounds)
                    out.setdefault("batches", []).extend({**tag, **r} for r in rows)
                if "throughput" in sections:
                    for k in ks:
                        for kind in ("json", "b64"):
                            for c in client_counts:
                                row = throughput(
                                    url, proc.pid, queries, clients=c, kind=kind, k=k, seconds=args.seconds
                                )
                                out.setdefault("throughput", []).append({**tag, **row})
                                print(f"throughput: {out['throughput'][-1]}", file=sys.stderr, flush=True)
                if "ingest" in sections and readers == reader_counts[0]:
                    with httpx.Client(
                        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600
                    ) as http:
                        out["ingest"] = ingest(
                            http,
                            proc.pid,
                            x,
                            n=min(args.ingest, x.shape[0]),
                            batches={
                                "json": ("/points", 1000, "application/json"),
                                "b64": ("/points/b64", 5000, "application/json"),
                                "arrow": ("/points/arrow", 5000, "application/vnd.apache.arrow.stream"),
                            },
                        )
                if "mixed" in sections:
                    n = x.shape[0] + 1_000_000 * readers  # fresh ids per server run
                    for name, load in (("search", None), ("search+ingest", (x, texts, n, n + 100_000, 500))):
                        phase = asyncio.run(
                            run_phase(url, queries, clients=8, seconds=args.seconds, k=10, ingest=load)
                        )
                        out.setdefault("mixed", []).append({**tag, "phase": name, **phase})
                        print(f"mixed {name}: {out['mixed'][-1]}", file=sys.stderr, flush=True)
            finally:
                stop_server(proc)
            if "cores" in sections:
                for cpus in ("0", "0,1"):
                    proc, url = serving(readers, cpus)
                    try:
                        throughput(url, proc.pid, queries, clients=8, kind="b64", k=10, seconds=1.0)  # warm
                        row = throughput(
                            url, proc.pid, queries, clients=8, kind="b64", k=10, seconds=args.seconds
                        )
                    finally:
                        stop_server(proc)
                    out.setdefault("cores", []).append({**tag, "server_cpus": cpus, **row})
                    print(f"cores: {out['cores'][-1]}", file=sys.stderr, flush=True)

    try:
        from bench.common import machine_info

        machine = machine_info(threads=os.cpu_count() or 1)
    except Exception:  # noqa: BLE001 - the figures stand without it
        machine = {"cores": os.cpu_count()}
    result["machine"] = machine
    result["loadavg_after"] = list(os.getloadavg())
    result["command"] = "python -m bench.load_service " + " ".join(argv if argv is not None else sys.argv[1:])
    errors = sum(r["errors"] for key in ("throughput", "cores") for r in result["sections"].get(key, []))
    errors += sum(p["errors"] for p in result["sections"].get("mixed", []))
    result["total_errors"] = errors
    os.makedirs(args.out, exist_ok=True)
    stem = "load_service" if set(sections) == set(SECTIONS) else "load_service_" + "_".join(sections)
    stem += f"_{args.tag}" if args.tag else ""
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as f:
        f.write(report_md(result))
    print(report_md(result))
    return 0 if errors == 0 else 1


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def report_md(r: dict) -> str:
    m = r.get("machine", {})
    s = r["sections"]
    lines = [
        "# vqdb serve — loopback load runs",
        "",
        f"`{r['command']}` — data: {r['data']}, {r['quantizer']} codes, flat, metric {r['metric']}; "
        f"{r['served_vectors']:,} vectors served. One uvicorn process (and its reader processes where readers > 0); the clients run in a second process "
        "on the same machine.",
        "",
    ]
    if "overhead" in s:
        lines += [
            "## The service's cost per search (one query vector per request, no payload, one keep-alive client)",
            "",
            "| readers | k | embedded `Index.search` CPU/query | server CPU/request, JSON body | overhead | "
            "server CPU/request, base64 body | overhead | ratio JSON / base64 |",
            "|---|---|---|---|---|---|---|---|",
        ]

        def ms(v, bold=False):
            return "—" if v is None else (f"**{v:.3f} ms**" if bold else f"{v:.3f} ms")

        for o in s["overhead"]:
            ratios = " / ".join(
                "—" if o[f"ratio_{kind}"] is None else f"{o[f'ratio_{kind}']:.2f}" for kind in ("json", "b64")
            )
            lines.append(
                f"| {o.get('readers', 0)} | {o['k']} | {ms(o['embedded_cpu_ms_per_query'])} | {ms(o['server_cpu_ms_per_request_json'])} "
                f"| {ms(o['overhead_ms_json'], True)} | {ms(o['server_cpu_ms_per_request_b64'])} | "
                f"{ms(o['overhead_ms_b64'], True)} | {ratios} |"
            )
        o = s["overhead"][0]
        lines += [
            "",
            f"Medians of {o['rounds']} alternating rounds of {o['requests_per_round']} requests (embedded, JSON, "
            "base64); server CPU = user + system time of the server process and its reader processes, all threads, "
            "from /proc.",
            "",
        ]
    if "layers" in s:
        lines += [
            "## Where the server CPU of one search goes (the lane called in this process as ASGI, no HTTP)",
            "",
            "| k | body | embedded `Index.search` | lane, search on the event loop | over embedded | lane, search "
            "in a worker thread | over embedded | parse | query matrix | answer (hits + JSON) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in s["layers"]:
            lines.append(
                f"| {t['k']} | {t['body']} | {t['embedded_cpu_ms_per_request']:.3f} ms | "
                f"{t['inline_cpu_ms_per_request']:.3f} ms | **{t['lane_inline_over_embedded_ms']:+.3f} ms** | "
                f"{t['worker_cpu_ms_per_request']:.3f} ms | {t['lane_worker_over_embedded_ms']:+.3f} ms | "
                f"{t['parse_us']} µs | {t['query_matrix_us']} µs | {t['answer_us']} µs |"
            )
        t = s["layers"][0]
        lines += [
            "",
            f"Medians of {t['rounds']} alternating rounds of {t['requests_per_round']} one-query requests (process "
            "CPU, all threads); the three steps alone: best of 5 x 200 calls, thread CPU. What the lane leaves "
            "out of a served request: uvicorn's HTTP parsing and writes, and the wake-ups of a process idle "
            "between requests.",
            "",
        ]
    if "batches" in s:
        lines += [
            "## Batches of query vectors (100 per request, no payload): CPU per query",
            "",
            "| readers | k | embedded `Index.search` (100 per call) | server, JSON `vectors` | server, base64 "
            "`vectors_b64` | server, Arrow `/search/arrow` |",
            "|---|---|---|---|---|---|",
        ]
        for b in s["batches"]:
            lines.append(
                f"| {b.get('readers', 0)} | {b['k']} | {b['embedded_cpu_ms_per_query']:.3f} ms | {b['json_cpu_ms_per_query']:.3f} ms | "
                f"{b['b64_cpu_ms_per_query']:.3f} ms | {b['arrow_cpu_ms_per_query']:.3f} ms |"
            )
        lines.append("")
    if "throughput" in s:
        lines += [
            "## Throughput and latency (C concurrent keep-alive clients, no payload)",
            "",
            "| readers | k | body | clients | searches/s | p50 ms | p99 ms | server CPU/request | of it the serving "
            "process | load generator CPU/request | cores busy (server + load generator) | cores busy (machine) | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in s["throughput"]:
            lines.append(
                f"| {t.get('readers', 0)} | {t['k']} | {t['body']} | {t['clients']} | {t['per_s']:,.1f} | {t['p50_ms']} | {t['p99_ms']} | "
                f"{t['server_cpu_ms_per_request']:.3f} ms | {t.get('serving_process_cpu_ms_per_request', 0):.3f} ms | "
                f"{t['loadgen_cpu_ms_per_request']:.3f} ms | "
                f"{t['cores_busy']} | {t.get('machine_cores_busy', '—')} | {t['errors']} |"
            )
        lines.append("")
    if "cores" in s:
        lines += [
            "## What a second core gives the server (8 clients, base64, k=10; server pinned with taskset)",
            "",
            "| readers | server cores | searches/s | p50 ms | p99 ms | server CPU/request | load generator CPU/request "
            "| cores busy (server + load generator) | cores busy (machine) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in s["cores"]:
            lines.append(
                f"| {t.get('readers', 0)} | {t['server_cpus']} | {t['per_s']:,.1f} | {t['p50_ms']} | {t['p99_ms']} | "
                f"{t['server_cpu_ms_per_request']:.3f} ms | {t['loadgen_cpu_ms_per_request']:.3f} ms | "
                f"{t['cores_busy']} | {t.get('machine_cores_busy', '—')} |"
            )
        lines.append("")
    if "ingest" in s:
        lines += [
            '## Ingest (bodies prebuilt; payload {"n": id} on every point)',
            "",
            "| body | vectors | per request | MiB/request | vectors/s | server CPU/vector |",
            "|---|---|---|---|---|---|",
        ]
        for g in s["ingest"]:
            lines.append(
                f"| {g['body']} | {g['vectors']:,} | {g['batch']:,} | {g['request_mb']} | {g['vectors_per_s']:,.0f} | "
                f"{g['server_cpu_us_per_vector']} µs |"
            )
        lines.append("")
    if "mixed" in s:
        lines += [
            "## Searches while one client ingests (8 searching clients, k=10, payloads returned; httpx)",
            "",
            "| readers | phase | searches/s | p50 ms | p99 ms | errors | ingest |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in s["mixed"]:
            ingest_txt = (
                f"{p['ingest_vectors_per_s']:,.0f} vec/s (p50 {p['ingest_p50_ms']} ms)"
                if "ingested_vectors" in p
                else "—"
            )
            lines.append(
                f"| {p.get('readers', 0)} | {p['phase']} | {p['search_qps']:,.1f} | {p['search_p50_ms']} | {p['search_p99_ms']} | {p['errors']} | "
                f"{ingest_txt} |"
            )
        lines.append("")
    lines += [
        f"Errors in total: **{r['total_errors']}**. Load average before "
        f"{', '.join(f'{v:.2f}' for v in r['loadavg_before'])}, after "
        f"{', '.join(f'{v:.2f}' for v in r['loadavg_after'])}.",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores')} cores; commit {m.get('git_commit')}; {m.get('date', '')}. "
        "The machine is shared: read absolute figures as a floor.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
