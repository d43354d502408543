"""vqdb.Index on the full WordNet/MiniLM set (115,659 x 384, 1,000 word queries, exact top-100).

Measures, for a durable on-disk index (every add fsynced through the write-ahead log):
memory per vector (codes + id + list + id index; what stays on the heap after reopening, the rest being
memory-mapped), add throughput (large batches and small ones), flat and IVF search throughput and
recall@10, with and without exact re-rank from stored float16 vectors, and a 1 %-selective filter.

Command (from the repository root)::

    python -m bench.index_wordnet [--quantizer turbo-4] [--queries 1000] [--threads N]

Writes ``bench/results/index_wordnet.json`` and ``.md``. Falls back to the bundled 5,000-vector
sample when ``../shared/data`` is absent (the results say which set was used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

import vqdb
from vqdb import datasets
from vqdb.testing import recall_at_k

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def search_row(index, q, gt, k=10, **kw) -> dict:
    index.search(q[:8], k, **kw)  # warm-up (kernel compilation, page faults)
    cpu = time.process_time()
    res, dt = timed(index.search, q, k, **kw)
    cpu = time.process_time() - cpu
    row = {
        "qps": round(q.shape[0] / dt, 1),
        "cpu_ms_per_query": round(1e3 * cpu / q.shape[0], 3),
        "recall@10": round(recall_at_k(res.ids, gt, k), 4),
    }
    one = []
    for i in range(min(20, q.shape[0])):
        _, dt = timed(index.search, q[i : i + 1], k, **kw)
        one.append(dt)
    row["latency_ms_p50_single_query"] = round(1e3 * float(np.median(one)), 3)
    row.update({key: v for key, v in kw.items() if key != "filter"})
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quantizer", default="turbo-4")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--ivf-queries", type=int, default=200, help="queries for the IVF rows (one scan per query)"
    )
    ap.add_argument("--nprobe", default="8,32,128")
    ap.add_argument("--out", default=os.path.join(RESULTS, "index_wordnet"))
    args = ap.parse_args(argv)
    if args.threads:
        try:
            import numba

            numba.set_num_threads(args.threads)
        except ImportError:
            pass
    ds = datasets.wordnet_minilm() or datasets.wordnet_sample()
    x, q, gt = ds.base, ds.queries[: args.queries], ds.gt_ids[: args.queries]
    n, d = x.shape
    bucket = np.arange(n) % 100
    out: dict = {
        "command": "python -m bench.index_wordnet " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": ds.name,
        "n": n,
        "dim": d,
        "queries": int(q.shape[0]),
        "quantizer": args.quantizer,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "vqdb": vqdb.__version__,
            "platform": platform.platform(),
            "backend": os.environ.get("VQDB_BACKEND") or "default",
            "loadavg_at_start": [round(v, 1) for v in os.getloadavg()],
        },
    }
    tmp = tempfile.mkdtemp(prefix="vqdb-bench-")
    try:
        # ---------------------------------------------------------------- flat, durable
        flat = vqdb.Index(
            d, metric="ip", quantizer=args.quantizer, path=os.path.join(tmp, "flat"), store_vectors=True
        )
        batch = 10_000
        t = time.perf_counter()
        for s in range(0, n, batch):
            flat.add(x[s : s + batch], metadata={"bucket": bucket[s : s + batch]})
        add_s = time.perf_counter() - t
        small = vqdb.Index(d, metric="ip", quantizer=args.quantizer, path=os.path.join(tmp, "small"))
        small.add(x[:1000])
        t = time.perf_counter()
        for s in range(1000, 3000, 10):
            small.add(x[s : s + 10])
        small_s = time.perf_counter() - t
        small.close()
        _, save_s = timed(flat.save)
        flat.close()
        rss0 = rss_mb()
        flat, open_s = timed(vqdb.open, os.path.join(tmp, "flat"))
        st = flat.stats()
        out["add"] = {
            "batch_10000_vectors_per_s": round(n / add_s, 1),
            "batch_10_vectors_per_s": round(2000 / small_s, 1),
            "batch_10_ms_per_add": round(1e3 * small_s / 200, 3),
            "note": "durable: each add returns after its WAL record is fsynced; includes encoding and float16 vector storage",
            "save_flush_s": round(save_s, 3),
            "open_s": round(open_s, 3),
        }
        out["memory"] = {
            "code_size": st["code_size"],
            "bytes_per_vector": st["bytes_per_vector"],
            "index_bytes_per_vector_without_stored_vectors": st["code_size"] + 8 + 4 + 8,
            "heap_bytes_per_vector_after_open": round(st["heap_bytes"] / n, 2),
            "disk_bytes_per_vector": round(st["disk_bytes"] / n, 2),
            "rss_growth_mb_on_open": round(rss_mb() - rss0, 1),
            "note": "codes, ids and lists are memory-mapped from the segment file; the heap holds the id index (8 B) "
            "and any deletion mask; float16 vectors (2d bytes) are mapped too and touched only by rerank/get",
        }
        rows = []
        rows.append({"index": "flat", **search_row(flat, q, gt)})
        rows.append({"index": "flat", **search_row(flat, q, gt, rerank=True)})
        # 1 % selective filter: recall against the exact filtered top-10
        allowed = bucket == 7
        xs = x[allowed].astype(np.float64)
        sc = q.astype(np.float64) @ xs.T
        gt_f = np.flatnonzero(allowed)[np.argsort(-sc, axis=1)[:, :10]]
        rows.append({"index": "flat", "filter": "1%", **search_row(flat, q, gt_f, filter={"bucket": 7})})
        flat.close()
        # ---------------------------------------------------------------- IVF, durable
        nlist = int(round(4 * np.sqrt(n)))
        ivf = vqdb.Index(
            d,
            metric="ip",
            quantizer=args.quantizer,
            ivf=nlist,
            path=os.path.join(tmp, "ivf"),
            store_vectors=True,
        )
        rng = np.random.default_rng(0)
        sample = x[rng.choice(n, min(n, 16 * nlist), replace=False)]
        _, train_s = timed(ivf.train, sample)
        t = time.perf_counter()
        for s in range(0, n, batch):
            ivf.add(x[s : s + batch], metadata={"bucket": bucket[s : s + batch]})
        ivf_add_s = time.perf_counter() - t
        ivf.save()
        ist = ivf.stats()["ivf"]
        out["ivf"] = {
            "nlist": nlist,
            "train_s": round(train_s, 2),
            "train_sample": int(sample.shape[0]),
            "add_vectors_per_s": round(n / ivf_add_s, 1),
            "list_size_min": ist["list_size_min"],
            "list_size_max": ist["list_size_max"],
        }
        qi, gti, gtfi = q[: args.ivf_queries], gt[: args.ivf_queries], gt_f[: args.ivf_queries]
        for nprobe in [int(v) for v in args.nprobe.split(",")]:
            rows.append(
                {
                    "index": f"ivf{nlist}",
                    "queries": int(qi.shape[0]),
                    **search_row(ivf, qi, gti, nprobe=nprobe),
                }
            )
            rows.append(
                {
                    "index": f"ivf{nlist}",
                    "queries": int(qi.shape[0]),
                    **search_row(ivf, qi, gti, nprobe=nprobe, rerank=True),
                }
            )
        rows.append(
            {
                "index": f"ivf{nlist}",
                "queries": int(qi.shape[0]),
                "filter": "1%",
                **search_row(ivf, qi, gtfi, nprobe=32, filter={"bucket": 7}),
            }
        )
        ivf.close()
        out["search"] = rows
        out["machine"]["loadavg_at_end"] = [round(v, 1) for v in os.getloadavg()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(render_md(out))
    print(render_md(out))
    return out


def render_md(out: dict) -> str:
    m, a = out["memory"], out["add"]
    lines = [
        f"# vqdb.Index on {out['dataset']} ({out['n']:,} x {out['dim']}, {out['queries']} queries), quantizer {out['quantizer']}",
        "",
        f"Command: `{out['command']}`  ",
        f"Machine: {out['machine']}",
        "",
        "## Memory per vector",
        "",
        f"- codes {m['code_size']} B + id 8 B + list 4 B + id index 8 B = "
        f"**{m['index_bytes_per_vector_without_stored_vectors']} B** (stored float16 vectors add {2 * out['dim']} B, mapped)",
        f"- heap after reopening: {m['heap_bytes_per_vector_after_open']} B/vector (the rest is memory-mapped); "
        f"disk {m['disk_bytes_per_vector']} B/vector; RSS growth on open {m['rss_growth_mb_on_open']} MB",
        "",
        "## Add throughput (durable: WAL fsync per call)",
        "",
        f"- batches of 10,000: **{a['batch_10000_vectors_per_s']:,} vectors/s**; batches of 10: "
        f"{a['batch_10_vectors_per_s']:,} vectors/s ({a['batch_10_ms_per_add']} ms per add)",
        f"- IVF ({out['ivf']['nlist']} lists): train {out['ivf']['train_s']} s on {out['ivf']['train_sample']:,} vectors, "
        f"then {out['ivf']['add_vectors_per_s']:,} vectors/s",
        "",
        "## Search (k = 10, all queries in one call; latency = one query per call)",
        "",
        "| index | nprobe | rerank | filter | QPS (wall) | CPU ms/query | recall@10 | p50 latency ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["search"]:
        lines.append(
            f"| {r['index']} | {r.get('nprobe', '')} | {'x4' if r.get('rerank') else ''} | {r.get('filter', '')} | "
            f"{r['qps']:,} | {r['cpu_ms_per_query']} | {r['recall@10']} | {r['latency_ms_p50_single_query']} |"
        )
    lines.append("")
    lines.append(
        "Filtered rows: recall against the exact top-10 among the matching vectors. IVF rows use the first "
        f"{out['search'][-1].get('queries', '')} queries. The machine is shared (load average "
        f"{out['machine']['loadavg_at_start']} at start, {out['machine'].get('loadavg_at_end')} at end on "
        f"{out['machine']['cpus']} cores): wall-clock figures are pessimistic; CPU ms/query is the process "
        "CPU time per query (all threads)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
