"""What the Qdrant-compatible API costs: ``qdrant-client`` against ``vqdb serve``'s ``/qdrant`` vs
``vqdb.Client`` on the native API of the same server, same data, same collection settings.

Real vectors: the bundled WordNet/MiniLM-384 sample (5,000 passages, 400 word queries; exact ranking
applies: every candidate is re-scored) or, with ``--full`` and ``../shared/data`` present, the full
set (115,659 vectors; above 10,000 the stores re-rank an 8x shortlist, so recall is measured). Ingest:
batches of ``--batch`` points with a small payload (JSON floats for Qdrant, base64 float32 for the
native API). Queries: one k=10 query per request, one client, payloads returned. Recall@10 against
exact float64 brute force. Writes ``bench/results/qdrant_api.{json,md}``.

    python -m bench.qdrant_api            # sample
    python -m bench.qdrant_api --full
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

import numpy as np

from vqdb import datasets
from vqdb.integrations import _exact

from .load_service import KEY, start_server

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _recall(found: list[list[int]], truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


def run_native(url: str, x: np.ndarray, queries: np.ndarray, batch: int) -> dict:
    import vqdb

    client = vqdb.Client(url, api_key=KEY, timeout=300)
    coll = client.create_collection(
        "native", x.shape[1], metric="cos", quantizer="turbo-4", store_vectors="float32"
    )
    t0 = time.perf_counter()
    for s in range(0, x.shape[0], batch):
        ids = np.arange(s, min(s + batch, x.shape[0]))
        coll.upsert(x[ids], ids, [{"n": int(i), "group": int(i % 10)} for i in ids])
    ingest = time.perf_counter() - t0
    n = x.shape[0]
    rerank = _exact.rerank_factor(n, 10, max_factor=1024)
    found = []
    t0 = time.perf_counter()
    for q in queries:
        (hits,) = client.query("native", q[None, :], 10, rerank=rerank, with_payload=True)
        found.append([h["id"] for h in hits])
    search = time.perf_counter() - t0
    client.close()
    return {"ingest_s": ingest, "ingest_per_s": n / ingest, "qps": len(queries) / search, "found": found}


def run_qdrant(url: str, x: np.ndarray, queries: np.ndarray, batch: int) -> dict:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(url=url, prefix="qdrant", api_key=KEY, timeout=300)
    client.create_collection(
        "viaqdrant", vectors_config=models.VectorParams(size=x.shape[1], distance=models.Distance.COSINE)
    )
    t0 = time.perf_counter()
    for s in range(0, x.shape[0], batch):
        ids = list(range(s, min(s + batch, x.shape[0])))
        client.upsert(
            "viaqdrant",
            points=models.Batch(
                ids=ids, vectors=x[ids].tolist(), payloads=[{"n": i, "group": i % 10} for i in ids]
            ),
        )
    ingest = time.perf_counter() - t0
    found = []
    t0 = time.perf_counter()
    for q in queries:
        res = client.query_points("viaqdrant", query=q.tolist(), limit=10, with_payload=True)
        found.append([p.id for p in res.points])
    search = time.perf_counter() - t0
    client.close()
    return {
        "ingest_s": ingest,
        "ingest_per_s": x.shape[0] / ingest,
        "qps": len(queries) / search,
        "found": found,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the full WordNet/MiniLM set from ../shared/data")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args(argv)
    ds = datasets.wordnet_minilm() if args.full else None
    ds = ds or datasets.wordnet_sample()
    x, queries = ds.base, ds.queries[: args.queries]
    truth = ds.gt_ids[: args.queries]
    warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"))
        try:
            load_before = os.getloadavg()
            native = run_native(url, x, queries, args.batch)
            qdrant = run_qdrant(url, x, queries, args.batch)
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            proc.wait(60)
    import qdrant_client

    from bench.common import machine_info

    rows = {}
    for name, r in (("native (vqdb.Client)", native), ("qdrant-client /qdrant", qdrant)):
        rows[name] = {
            "ingest_vectors_per_s": round(r["ingest_per_s"], 1),
            "qps": round(r["qps"], 1),
            "recall@10": round(_recall(r["found"], truth), 4),
        }
    result = {
        "data": f"{ds.name} ({x.shape[0]} x {x.shape[1]}), {len(queries)} queries",
        "batch": args.batch,
        "qdrant_client": qdrant_client.__version__ if hasattr(qdrant_client, "__version__") else "1.20.0",
        "rows": rows,
        "ratios_qdrant_over_native": {
            "ingest": round(qdrant["ingest_per_s"] / native["ingest_per_s"], 3),
            "qps": round(qdrant["qps"] / native["qps"], 3),
        },
        "same_results": sum(a == b for a, b in zip(native["found"], qdrant["found"])) / len(queries),
        "load_average_before_after": [round(v, 2) for v in (*load_before, *load_after)],
        "machine": machine_info(threads=os.cpu_count() or 1),
        "command": "python -m bench.qdrant_api" + (" --full" if args.full else ""),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "qdrant_api.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [
        "# Qdrant-compatible API vs the native API (same vqdb serve, same data)",
        "",
        f"`{result['command']}` — {result['data']}, ingest batches of {args.batch}, one k=10 query per request.",
        "",
        "| client | ingest vectors/s | queries/s | recall@10 |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ingest_vectors_per_s']} | {r['qps']} | {r['recall@10']} |")
    lines += [
        "",
        f"Qdrant / native: ingest {result['ratios_qdrant_over_native']['ingest']}x, queries "
        f"{result['ratios_qdrant_over_native']['qps']}x; identical top-10 lists for "
        f"{result['same_results']:.0%} of the queries. Load average (1/5/15 min) before and after: "
        f"{result['load_average_before_after']} on {result['machine'].get('cores', '?')} cores (shared machine: "
        "read the ratios, not the absolute figures).",
    ]
    with open(os.path.join(RESULTS, "qdrant_api.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
