"""Graph indexes side by side (one process): vqdb ``Index(graph=...)`` vs FAISS HNSW32,Flat, rabitqlib
HNSW-RaBitQ and rabitqlib SymphonyQG, on WordNet-MiniLM-384 (dev word queries) and Fashion-MNIST-784 cosine.

Per method: build seconds (``--build-threads``, default 2, the same for all), bytes per vector (the size of
the saved index file(s) / n: codes + links + whatever is kept for re-ranking), and a recall@10 / QPS curve
over ef, searched with 1 thread (``--threads``), all dev queries in one call and one query per call.
vqdb also gets filtered searches: a 1 %-selective and a 10 %-selective metadata filter (exact ground
truth over the matching rows).

    python -m bench.graph [--quick] [--sets wordnet-minilm384,fashion-mnist-784-cos]

Writes bench/results/graph.json and graph.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from bench.common import RESULTS_DIR, best_time, load_sets, machine_info, set_threads, write_json
from vqdb.testing import recall_at_k

EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)
TARGET = 0.95
CURVE_EFS = list(EFS)  # (--efs)


def _dir_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


_RSS_CHILD = """
import os, sys, numpy as np, vqdb
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
path, qfile = sys.argv[1], sys.argv[2]
q = np.load(qfile)
warm = vqdb.Index(q.shape[1], metric=sys.argv[3], quantizer=sys.argv[4], graph=True)
warm.add(np.random.default_rng(0).standard_normal((300, q.shape[1])).astype(np.float32))
warm.search(q[:2], 10)
r0 = rss()
ix = vqdb.open(path, read_only=True)
ix.search(q, 10, ef=64)
print(rss() - r0, len(ix))
"""


def _resident_bytes(path: str, q: np.ndarray, metric: str, quantizer: str) -> float:
    """Resident memory per vector of the saved index at ``path`` in a new process: RSS after opening it
    and searching every query (ef 64) minus RSS before the open (kernels already compiled)."""
    import subprocess
    import sys

    qfile = os.path.join(os.path.dirname(path), "rss_queries.npy")
    np.save(qfile, q)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, path, qfile, metric, quantizer],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NUMBA_NUM_THREADS": "1"},
    ).stdout.split()
    return round(int(out[0]) / int(out[1]), 1)


def _curve(search, q, gt, efs, single: int) -> list[dict]:
    """recall@10 and QPS (batch of all queries; and ``single`` queries one per call) for each ef."""
    efs = CURVE_EFS
    rows = []
    for ef in efs:
        ids = search(q, ef)
        rec = recall_at_k(np.asarray(ids, np.int64), gt, 10)
        t = best_time(lambda ef=ef: search(q, ef), 2)
        t1 = best_time(lambda ef=ef: [search(q[i : i + 1], ef) for i in range(single)], 1)
        rows.append(
            {
                "ef": ef,
                "recall@10": round(rec, 4),
                "qps": round(q.shape[0] / t, 1),
                "qps_1query": round(single / t1, 1),
            }
        )
        if rec >= 0.995:
            break
    return rows


def _cached_build(cache: str | None, key: str, build, save, load):
    """(index, path of its saved file(s), build record) of a peer index: built and timed here, or loaded
    from ``cache`` (``--cache``: a folder; the build seconds and load average of the run that built it are
    kept beside it, so repeated runs time the searches without rebuilding the same peer)."""
    import json

    path = (
        os.path.join(cache, key) if cache else os.path.join(tempfile.mkdtemp(prefix="vqdb-graph-bench-"), key)
    )
    record_path = path + ".json"
    if cache and os.path.exists(record_path):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        return load(path), path, {**record, "cached": True}
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    ix = build()
    record = {"build_s": round(time.perf_counter() - t0, 2), "load_at_build": load_before}
    save(ix, path)
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return ix, path, {**record, "cached": False}


def _at_target(curve: list[dict]) -> dict | None:
    ok = [r for r in curve if r["recall@10"] >= TARGET]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def run_vqdb(bs, q, gt, *, quantizer: str, degree: int, threads: int, build_threads: int, single: int):
    import vqdb

    n = bs.base.shape[0]
    meta = [{"b100": int(i % 100), "b10": int(i % 10)} for i in range(n)]
    tmp = tempfile.mkdtemp(prefix="vqdb-graph-bench-")
    set_threads(build_threads)
    index = vqdb.Index(bs.dim, metric=bs.metric, quantizer=quantizer, graph=degree)
    index.search(q[:2], 10)  # compile/load the kernels before timing
    warm = vqdb.Index(bs.dim, metric=bs.metric, quantizer=quantizer, graph=degree)
    warm.add(bs.base[:2000])
    warm.search(q[:2], 10)
    t0 = time.perf_counter()
    index.add(bs.base, metadata=meta)
    build = time.perf_counter() - t0
    index.save(os.path.join(tmp, "ix"))
    files = os.listdir(os.path.join(tmp, "ix"))
    graph_file = [f for f in files if f.startswith("graph-")][0]
    graph_bytes = os.path.getsize(os.path.join(tmp, "ix", graph_file)) / n
    total_bytes = _dir_bytes(os.path.join(tmp, "ix")) / n
    set_threads(threads)
    curve = _curve(lambda qq, ef: index.search(qq, 10, ef=ef).ids, q, gt, EFS, single)
    filters = []
    for field, value, share in (("b100", 7, 0.01), ("b10", 3, 0.1)):
        allowed = np.flatnonzero(np.arange(n) % (100 if field == "b100" else 10) == value)
        b = bs.base[allowed].astype(np.float16).astype(np.float64)
        s = q.astype(np.float64) @ b.T
        if bs.metric == "l2sq":
            s = 2 * s - (b * b).sum(1)[None, :]
        fgt = allowed[np.argsort(-s, axis=1)[:, :10]]
        for ef in (32, 64, 128):
            res = index.search(q, 10, filter={field: value}, ef=ef)
            t = best_time(lambda ef=ef: index.search(q, 10, filter={field: value}, ef=ef), 2)
            filters.append(
                {
                    "selectivity": share,
                    "ef": ef,
                    "recall@10": round(recall_at_k(res.ids, fgt, 10), 4),
                    "k_returned_min": int((res.ids >= 0).sum(1).min()),
                    "all_match": bool(np.isin(res.ids, allowed).all()),
                    "qps": round(q.shape[0] / t, 1),
                }
            )
    st = index.stats()
    index.close()
    resident = _resident_bytes(os.path.join(tmp, "ix"), q, bs.metric, quantizer)
    return {
        "method": f"vqdb graph R={degree} {quantizer}",
        "build_s": round(build, 2),
        "bytes_per_vector": round(total_bytes, 1),
        "bytes_per_vector_note": "every file of the saved index / n (graph file + segments + manifest)",
        "bytes_per_vector_graph_file": round(graph_bytes, 1),
        "resident_bytes_per_vector": resident,
        "resident_note": "RSS growth of a new process opening the saved index and searching every query",
        "bytes_per_vector_stats": st["bytes_per_vector"],
        "curve": curve,
        "filters": filters,
    }


def run_faiss(bs, q, gt, *, threads: int, build_threads: int, single: int, cache: str | None):
    import faiss

    set_threads(build_threads)
    metric = faiss.METRIC_INNER_PRODUCT if bs.metric == "ip" else faiss.METRIC_L2

    def build():
        ix = faiss.IndexHNSWFlat(bs.dim, 32, metric)
        ix.add(bs.base)
        return ix

    ix, path, record = _cached_build(
        cache,
        f"{bs.name}-faiss-hnsw32.faiss",
        build,
        lambda ix, p: faiss.write_index(ix, p),
        faiss.read_index,
    )
    set_threads(threads)

    def search(qq, ef):
        ix.hnsw.efSearch = int(max(ef, 10))
        return ix.search(qq, 10)[1]

    return {
        "method": "FAISS HNSW32,Flat",
        "build_s": record["build_s"],
        "build": record,
        "bytes_per_vector": round(_dir_bytes(path) / bs.base.shape[0], 1),
        "curve": _curve(search, q, gt, EFS, single),
    }


def _unit(x: np.ndarray) -> bool:
    return bool(np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-3)


def _rabitq_metric(bs, q) -> str:
    """rabitqlib's metric for the set: l2 for l2sq and for unit vectors (cosine), else ip."""
    return "l2" if bs.metric == "l2sq" or (_unit(bs.base) and _unit(q)) else "ip"


def run_rabitq_hnsw(bs, q, gt, *, threads: int, build_threads: int, single: int, cache: str | None):
    import rabitqlib

    metric = _rabitq_metric(bs, q)
    n = bs.base.shape[0]

    def build():
        ix = rabitqlib.HnswIndex(bs.dim, n, M=16, ef_construction=200, nbits=5, metric=metric)
        centroid = bs.base.mean(0, keepdims=True).astype(np.float32)
        ix.build(bs.base, centroid, np.zeros(n, np.uint32), num_threads=build_threads)
        return ix

    ix, path, record = _cached_build(
        cache, f"{bs.name}-rabitq-hnsw16.idx", build, lambda ix, p: ix.save(p), rabitqlib.HnswIndex.load
    )

    def search(qq, ef):
        return np.asarray(ix.search(qq, 10, ef=int(max(ef, 10)), num_threads=threads)[0], np.int64)

    return {
        "method": "rabitqlib HNSW-RaBitQ M=16 (32 links at level 0), 1+4 bits",
        "build_s": record["build_s"],
        "build": record,
        "bytes_per_vector": round(_dir_bytes(path) / n, 1),
        "curve": _curve(search, q, gt, EFS, single),
    }


def run_symqg(bs, q, gt, *, threads: int, build_threads: int, single: int, cache: str | None):
    import rabitqlib

    metric = _rabitq_metric(bs, q)

    def build():
        ix = rabitqlib.SymqgIndex(bs.dim, 32, metric=metric)
        ix.build(bs.base, 200, num_threads=build_threads)
        return ix

    ix, path, record = _cached_build(
        cache, f"{bs.name}-symqg32.idx", build, lambda ix, p: ix.save(p), rabitqlib.SymqgIndex.load
    )

    def search(qq, ef):
        return np.asarray(ix.search_batch(qq, 10, int(max(ef, 10)), num_threads=threads)[0], np.int64)

    return {
        "method": "rabitqlib SymphonyQG degree 32",
        "build_s": record["build_s"],
        "build": record,
        "bytes_per_vector": round(_dir_bytes(path) / bs.base.shape[0], 1),
        "curve": _curve(search, q, gt, EFS, single),
    }


def _md(results: dict) -> str:
    lines = [
        "# Graph indexes: recall@10 / QPS over ef (bench/graph.py)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine'].get('cpu', '?')}, load average before/after "
        f"{results['load_before']} / {results['load_after']}; search {results['threads']} thread, "
        f"build {results['build_threads']} threads.",
        "",
    ]
    for set_name, methods in results["sets"].items():
        lines += [
            f"## {set_name}",
            "",
            "| method | build s | bytes/vector on disk | QPS @ recall ≥ 0.95 (ef, recall) | "
            "1-query QPS there | max recall | vqdb QPS ratio to it |",
            "|---|---|---|---|---|---|---|",
        ]
        ours = next((m for m in methods if m.get("method", "").startswith("vqdb") and "curve" in m), None)
        ours_t = _at_target(ours["curve"]) if ours else None
        for m in methods:
            if "error" in m:
                lines.append(f"| {m['method']} | error: {m['error']} | | | | | |")
                continue
            t = _at_target(m["curve"])
            best = max(r["recall@10"] for r in m["curve"])
            hit = f"{t['qps']:,.0f} (ef {t['ef']}, {t['recall@10']})" if t else "not reached"
            ratio = f"{ours_t['qps'] / t['qps']:.2f}x" if ours_t and t and m is not ours else ""
            cached = " (cached build)" if m.get("build", {}).get("cached") else ""
            size = f"{m['bytes_per_vector']}" + (
                f" (resident {m['resident_bytes_per_vector']})" if "resident_bytes_per_vector" in m else ""
            )
            lines.append(
                f"| {m['method']} | {m['build_s']}{cached} | {size} | {hit} | "
                f"{t['qps_1query'] if t else '-'} | {best} | {ratio} |"
            )
        lines.append("")
        for m in methods:
            if "curve" in m:
                lines.append(
                    f"{m['method']}: "
                    + ", ".join(f"ef {r['ef']}: {r['recall@10']} @ {r['qps']:,.0f}" for r in m["curve"])
                )
                lines.append("")
            if m.get("filters"):
                lines.append(
                    "vqdb filtered: "
                    + ", ".join(
                        f"{f['selectivity']:.0%} ef {f['ef']}: recall {f['recall@10']}, min k {f['k_returned_min']}, "
                        f"match {f['all_match']}, {f['qps']:,.0f} QPS"
                        for f in m["filters"]
                    )
                )
                lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sets", default="wordnet-minilm384,fashion-mnist-784-cos")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--quantizer", default="turbo-1")
    ap.add_argument("--degree", type=int, default=32)
    ap.add_argument("--single", type=int, default=200, help="queries searched one per call")
    ap.add_argument("--methods", default="vqdb,faiss,rabitq-hnsw,symqg")
    ap.add_argument("--out", default="graph")
    ap.add_argument(
        "--cache",
        default=None,
        help="folder keeping the built peer indexes and their build seconds (later runs load them)",
    )
    ap.add_argument("--efs", default=",".join(map(str, EFS)), help="ef values of the curves")
    args = ap.parse_args(argv)
    CURVE_EFS[:] = [int(e) for e in args.efs.split(",")]
    sets = load_sets(quick=args.quick, only=args.sets.split(","))
    results = {
        "command": "python -m bench.graph "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "machine": machine_info(args.threads),
        "threads": args.threads,
        "build_threads": args.build_threads,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "sets": {},
    }
    peer = {
        "threads": args.threads,
        "build_threads": args.build_threads,
        "single": args.single,
        "cache": args.cache,
    }
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    runners = {
        "vqdb": lambda bs, q, gt: run_vqdb(
            bs, q, gt, quantizer=args.quantizer, degree=args.degree, threads=args.threads,
            build_threads=args.build_threads, single=args.single,
        ),
        "faiss": lambda bs, q, gt: run_faiss(bs, q, gt, **peer),
        "rabitq-hnsw": lambda bs, q, gt: run_rabitq_hnsw(bs, q, gt, **peer),
        "symqg": lambda bs, q, gt: run_symqg(bs, q, gt, **peer),
    }  # fmt: skip
    for bs in sets:
        qs = bs.query_sets[0]
        q, gt = np.ascontiguousarray(qs.queries, np.float32), qs.gt
        out = []
        for name in args.methods.split(","):
            t0 = time.perf_counter()
            try:
                row = runners[name](bs, q, gt)
            except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
                row = {"method": name, "error": repr(exc)[:300]}
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            out.append(row)
            print(bs.name, qs.name, row.get("method"), {k: v for k, v in row.items() if k in ("build_s", "bytes_per_vector", "error")},
                  _at_target(row["curve"]) if "curve" in row else None, flush=True)  # fmt: skip
        results["sets"][f"{bs.name} ({qs.name} queries, n={bs.base.shape[0]})"] = out
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(os.path.join(RESULTS_DIR, f"{args.out}.json"), results)
    with open(os.path.join(RESULTS_DIR, f"{args.out}.md"), "w", encoding="utf-8") as f:
        f.write(_md(results))
    print(_md(results))


if __name__ == "__main__":
    main()
