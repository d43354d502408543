"""Micro-benchmark of vqdb's fast-scan kernels against FAISS, in one process, with the machine's limits.

``python -m bench.kernels_micro [--sets wordnet,fashion] [--quick] [--reps 3] [--calibrate]``

* Machine: read bandwidth and SGEMM rate at 1 and all threads (``bench.machine_limits``).
* Flat scan, kernel level: ``vqdb.kernels.scanner`` (fast-scan path, and the BLAS / popcount paths)
  against ``faiss.IndexPQFastScan`` with 4-bit PQ at the same code bytes (M = 2 x TurboQuant's code
  bytes without its 8 bytes of side data). Latency = one query per call; batch = all queries per call.
  Scan bytes/s = code bytes scanned per query / latency, also as a fraction of the read bandwidth.
* IVF, index level: ``vqdb.Index(ivf=..., store_vectors=True)`` (turbo-4 codes + float16 vectors for
  the exact re-rank) against FAISS IVF-PQFastScan + refine (float16) and HNSWFlat, nprobe/re-rank
  sweeps, fastest setting at recall@10 >= 0.95; first-query latency of a freshly opened index.

Single-thread figures are CPU seconds of the process (immune to the other tenants' preemption of this
shared 2-core machine); all-thread figures are wall seconds. Every figure is the best of ``--reps``
interleaved repetitions, and the spread (worst / best) is reported as the noise.
Writes ``bench/results/kernels_micro.{json,md}``; ``--calibrate`` also writes the path thresholds to
``vqdb/kernels/fastscan_costs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .common import RESULTS_DIR, machine_info, set_threads

K = 10
TARGET = 0.95


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- timing ---------------------------------------------------------------------------------------
class Timer:
    """Best and worst of repeated runs; CPU time at one thread, wall time otherwise."""

    def __init__(self, threads: int):
        self.clock = time.process_time if threads == 1 else time.perf_counter
        self.runs: list[float] = []

    def run(self, fn):
        t0 = self.clock()
        out = fn()
        self.runs.append(self.clock() - t0)
        return out

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def spread(self) -> float:
        return max(self.runs) / max(min(self.runs), 1e-12)


def recall10(ids: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(a[:K].tolist()) & set(b[:K].tolist())) / K for a, b in zip(ids, gt)]))


def threads_ctx(n: int):
    from threadpoolctl import threadpool_limits

    set_threads(n)
    return threadpool_limits(limits=n)


# ---- data -----------------------------------------------------------------------------------------
def load_sets(names: list[str], quick: bool):
    from vqdb import datasets

    out = []
    for name in names:
        ds = datasets.wordnet_minilm() if name == "wordnet" else datasets.fashion_mnist("l2sq")
        if ds is None:
            log(f"data set {name} not present; skipped")
            continue
        base = np.ascontiguousarray(ds.base, dtype=np.float32)
        nq = 200 if quick else 1000
        out.append(
            (
                ds.name,
                ds.metric,
                base,
                np.ascontiguousarray(ds.queries[:nq], dtype=np.float32),
                ds.gt_ids[:nq],
            )
        )
    return out


# ---- flat -----------------------------------------------------------------------------------------
def faiss_pqfs(base: np.ndarray, metric: str, m: int):
    import faiss

    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    ix = faiss.IndexPQFastScan(base.shape[1], m, 4, mt)
    ix.pq.cp.max_points_per_centroid = 1024
    ix.train(base[np.random.default_rng(0).choice(base.shape[0], min(base.shape[0], 16384), replace=False)])
    ix.add(base)
    return ix


def run_flat(name, metric, base, queries, gt, presets, threads, reps, n_lat) -> list[dict]:

    import vqdb
    from vqdb.kernels import scanner

    d = base.shape[1]
    rows = []
    vmetric = "ip" if metric == "ip" else "l2sq"
    for preset in presets:
        log(f"  {name} {preset}: encode")
        qz = vqdb.make_quantizer(preset, d).fit(base)
        codes = qz.encode(base)
        sc = scanner.FastScanner(qz)
        t0 = time.perf_counter()
        lay = sc.layout(codes)
        layout_s = time.perf_counter() - t0
        code_bytes = int(sum(p["k"] * p["bits"] for p in sc.parts) // 8)
        m_pq = 2 * code_bytes if d % (2 * code_bytes) == 0 else None
        fi = None
        if m_pq is not None:
            log(f"  {name} {preset}: FAISS PQFastScan{m_pq}x4")
            fi = faiss_pqfs(base, metric, m_pq)
        cterm_all = (queries @ qz.centre_)[:, None].astype(np.float32) if qz.centre_ is not None else None

        def ours(q0, q1, path="auto"):
            prep = sc.prepare(
                queries[q0:q1], metric=vmetric, cterm=None if cterm_all is None else cterm_all[q0:q1]
            )
            return sc.topk(lay, prep, K, path=path)

        paths = ["fastscan", "blas"] + (["popcount"] if sc.one_bit else [])
        for th in sorted({1, threads}):
            with threads_ctx(th):
                ours(0, 2)
                if fi is not None:
                    fi.search(queries[:2], K)
                tm = {
                    key: Timer(th)
                    for key in ["lat", "batch"] + [f"batch_{p}" for p in paths] + ["f_lat", "f_batch"]
                }
                res = {}
                for _ in range(reps):
                    tm["lat"].run(lambda: [ours(i, i + 1) for i in range(n_lat)])
                    res["vqdb"] = tm["batch"].run(lambda: ours(0, queries.shape[0]))
                    if th == 1:
                        for p in paths:
                            tm[f"batch_{p}"].run(lambda p=p: ours(0, queries.shape[0], p))
                    if fi is not None:
                        tm["f_lat"].run(lambda: [fi.search(queries[i : i + 1], K) for i in range(n_lat)])
                        res["faiss"] = tm["f_batch"].run(lambda: fi.search(queries, K))
                m = queries.shape[0]
                lat = tm["lat"].best / n_lat
                scan_bytes = lay.nsteps * 32 / 32 * base.shape[0]  # code bytes scanned per query
                row = {
                    "set": name,
                    "preset": preset,
                    "threads": th,
                    "n": int(base.shape[0]),
                    "d": d,
                    "code_size": qz.code_size,
                    "scan_bytes_per_vec": lay.nsteps,
                    "layout_s": round(layout_s, 3),
                    "auto_path_batch": sc.choose(m, base.shape[0]),
                    "auto_path_1": sc.choose(1, base.shape[0]),
                    "recall10": recall10(res["vqdb"][1], gt),
                    "lat_ms": lat * 1e3,
                    "lat_spread": tm["lat"].spread,
                    "qps_batch": m / tm["batch"].best,
                    "batch_spread": tm["batch"].spread,
                    "scan_GBps_1q": scan_bytes / lat / 1e9,
                }
                if th == 1:
                    row["qps_paths"] = {p: m / tm[f"batch_{p}"].best for p in paths}
                if fi is not None:
                    flat_lat = tm["f_lat"].best / n_lat
                    row.update(
                        {
                            "faiss": f"PQFastScan{m_pq}x4",
                            "faiss_code_size": int(fi.code_size),
                            "faiss_recall10": recall10(res["faiss"][1], gt),
                            "faiss_lat_ms": flat_lat * 1e3,
                            "faiss_lat_spread": tm["f_lat"].spread,
                            "faiss_qps_batch": m / tm["f_batch"].best,
                            "faiss_batch_spread": tm["f_batch"].spread,
                            "ratio_lat": flat_lat / lat,
                            "ratio_batch": (m / tm["batch"].best) / (m / tm["f_batch"].best),
                        }
                    )
                rows.append(row)
                log(
                    f"    {th}t: "
                    + json.dumps(
                        {
                            k: (round(v, 3) if isinstance(v, float) else v)
                            for k, v in row.items()
                            if k
                            in (
                                "lat_ms",
                                "faiss_lat_ms",
                                "qps_batch",
                                "faiss_qps_batch",
                                "ratio_lat",
                                "ratio_batch",
                                "recall10",
                                "faiss_recall10",
                            )
                        }
                    )
                )
    return rows


# ---- calibration of the path thresholds ---------------------------------------------------------------
def _best_paths(sc, lay, prep, paths, reps: int) -> dict:
    """{path: best single-thread CPU seconds of ``reps`` top-k scans of ``lay`` by that path}."""
    best = {}
    for path in paths:
        tm = Timer(1)
        for _ in range(reps):
            tm.run(lambda path=path: sc.topk(lay, prep, K, path=path))
        best[path] = tm.best
    return best


def calibrate(name, base, queries, threads) -> dict:
    """Smallest batch size at which the BLAS path beats the fast-scan path, per bit width."""
    import vqdb
    from vqdb.kernels import scanner

    out = {}
    pop = None
    d = base.shape[1]
    for bits in (1, 2, 3, 4):
        qz = vqdb.make_quantizer(f"turbo-{bits}", d).fit(base)
        sc = scanner.FastScanner(qz)
        lay = sc.layout(qz.encode(base))
        found = None
        with threads_ctx(1):
            for m in (16, 64, 256, 1024):
                q = (
                    queries[:m]
                    if m <= queries.shape[0]
                    else np.tile(queries, (m // queries.shape[0] + 1, 1))[:m]
                )
                best = _best_paths(sc, lay, sc.prepare(q), ("fastscan", "blas"), 2)
                log(
                    f"  calibrate turbo-{bits} m={m}: "
                    + json.dumps({k: round(v, 4) for k, v in best.items()})
                )
                if best["blas"] < best["fastscan"]:
                    found = m
                    break
        out[str(bits)] = found
        if bits == 1:
            with threads_ctx(1):
                faster = {}
                for m in (1, 64):
                    best = _best_paths(sc, lay, sc.prepare(queries[:m]), ("fastscan", "popcount"), 3)
                    faster[m] = best["popcount"] < best["fastscan"]
                    log(
                        f"  calibrate turbo-1 popcount m={m}: "
                        + json.dumps({k: round(v, 4) for k, v in best.items()})
                    )
            pop = next((m for m, f in faster.items() if f), None)
    return {
        "blas_min_queries": out,
        "popcount_min_queries": pop,
        "measured_on": name,
        "n": int(base.shape[0]),
    }


# ---- IVF ------------------------------------------------------------------------------------------
def run_ivf(name, metric, base, queries, gt, threads, reps, quick, tmp) -> tuple[list[dict], dict]:
    import faiss

    import vqdb

    n, d = base.shape
    nlist = int(min(4 * np.sqrt(n), n // 39))
    nprobes = [16, 64, 128, 256] if quick else [16, 32, 64, 128, 192, 256, 320]
    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    vmetric = "ip" if metric == "ip" else "l2sq"
    methods = []
    path = os.path.join(tmp, name)
    log(f"  {name}: vqdb IVF{nlist} turbo-4 + float16 vectors")
    t0 = time.perf_counter()
    idx = vqdb.Index(d, metric=vmetric, quantizer="turbo-4", ivf=nlist, store_vectors=True, path=path)
    idx.add(base)
    idx.save()
    build_v = time.perf_counter() - t0
    size4 = idx.quantizer.code_size
    methods.append(
        (
            "vqdb-IVF-turbo-4+rerank(fp16)",
            size4 + 2 * d,
            build_v,
            lambda q, kn: idx.search(q, K, nprobe=kn[0], rerank=kn[1]).ids,
            [(p, r) for r in (False, 2, 4) for p in nprobes],
        )
    )
    log(f"  {name}: FAISS IVF{nlist}-PQFastScan{d}x4 + refine(fp16)")
    t0 = time.perf_counter()
    coarse = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    ivfpq = faiss.IndexIVFPQFastScan(coarse, d, nlist, d, 4, mt)
    ivfpq.pq.cp.max_points_per_centroid = 64
    ivfpq.cp.max_points_per_centroid = 64
    ref = faiss.IndexRefine(ivfpq, faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, mt))
    ref.train(base)
    ref.add(base)
    build_f = time.perf_counter() - t0

    def fsearch(q, kn, holders=(coarse, ivfpq, ref)):
        p = faiss.IndexRefineSearchParameters(
            k_factor=float(kn[1]), base_index_params=faiss.SearchParametersIVF(nprobe=kn[0])
        )
        return holders[2].search(q, K, params=p)[1]

    methods.append(
        (
            f"faiss-IVF{nlist}-PQFastScan{d}x4+refine(fp16)",
            ivfpq.code_size + 2 * d,
            build_f,
            fsearch,
            [(p, kf) for kf in (1, 2, 4) for p in nprobes],
        )
    )
    log(f"  {name}: FAISS HNSWFlat32")
    t0 = time.perf_counter()
    hn = faiss.IndexHNSWFlat(d, 32, mt)
    hn.hnsw.efConstruction = 40
    hn.add(base)
    build_h = time.perf_counter() - t0
    methods.append(
        (
            "faiss-HNSWFlat32",
            4 * d + 2 * 32 * 4,
            build_h,
            lambda q, kn, hn=hn: hn.search(q, K, params=faiss.SearchParametersHNSW(efSearch=kn))[1],
            [16, 32, 64, 128, 256] if not quick else [32, 128],
        )
    )
    rows = []
    for th in sorted({1, threads}):
        with threads_ctx(th):
            for mname, nbytes, build_s, search, knobs in methods:
                search(queries[:4], knobs[0])
                for kn in knobs:
                    tm = Timer(th)
                    ids = None
                    for _ in range(reps):
                        ids = tm.run(lambda kn=kn: search(queries, kn))
                    rows.append(
                        {
                            "set": name,
                            "threads": th,
                            "method": mname,
                            "bytes_per_vec": nbytes,
                            "build_s": round(build_s, 1),
                            "knob": kn if not isinstance(kn, tuple) else list(kn),
                            "recall10": recall10(ids, gt),
                            "qps": queries.shape[0] / tm.best,
                            "spread": tm.spread,
                        }
                    )
                    log(
                        f"    {th}t {mname} {kn}: recall {rows[-1]['recall10']:.4f} QPS {rows[-1]['qps']:.0f}"
                    )
    first = first_query(path, queries)
    idx.close()
    return rows, first


def first_query(path: str, queries: np.ndarray) -> dict:
    """Open the saved index in a fresh process: open time (incl. kernel warm-up), first and steady query."""
    code = (
        "import time, json, numpy as np, vqdb\n"
        f"q = np.load({os.path.join(os.path.dirname(path), 'q.npy')!r})\n"
        "t0 = time.perf_counter(); ix = vqdb.open(%r, read_only=True); t1 = time.perf_counter()\n"
        "ix.search(q[:1], 10, nprobe=64, rerank=4); t2 = time.perf_counter()\n"
        "ts = []\n"
        "for i in range(1, 21):\n"
        "    s = time.perf_counter(); ix.search(q[i:i+1], 10, nprobe=64, rerank=4); ts.append(time.perf_counter() - s)\n"
        "print(json.dumps({'open_s': t1 - t0, 'first_query_ms': (t2 - t1) * 1e3, 'steady_query_ms': float(np.median(ts)) * 1e3}))\n"
    ) % path
    np.save(os.path.join(os.path.dirname(path), "q.npy"), queries[:32])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (out.stderr or out.stdout)[-500:]}


def best_at_target(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["set"], r["threads"], r["method"]) for r in rows})
    for s, th, mth in keys:
        ok = [
            r
            for r in rows
            if (r["set"], r["threads"], r["method"]) == (s, th, mth) and r["recall10"] >= TARGET
        ]
        out.append(
            max(ok, key=lambda r: r["qps"]) if ok else {"set": s, "threads": th, "method": mth, "qps": None}
        )
    return out


# ---- report ---------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    L = [
        "# Fast-scan kernels: vqdb vs FAISS (k = 10)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine'].get('cpu', '?')}, {res['threads']} threads; load average at start "
        f"{res['load_start']}; commit {res['machine'].get('git_commit', '?')}; wall time {res['wall_s']:.0f} s.  ",
        "Single-thread figures are process CPU time (robust to the other tenants of this shared 2-core "
        "machine), all-thread figures wall time; best of "
        f"{res['reps']} interleaved repetitions, spread = worst/best. Read the ratios (same process, same data).",
        "",
    ]
    lim = res.get("limits", {})
    if lim:
        L += ["## Machine limits (this run)", "", "| threads | read GB/s | SGEMM GFLOP/s |", "|---|---|---|"]
        for t, v in lim.items():
            L.append(f"| {t} | {v['read_GBps']} | {v['sgemm_GFLOPs']} |")
        L.append("")
    if res.get("flat"):
        L += [
            "## Flat scan, kernel level (vqdb.kernels.scanner vs IndexPQFastScan at equal code bytes)",
            "",
            "| set | preset | thr | bytes/vec (vqdb / FAISS) | recall@10 (vqdb / FAISS) | 1-query ms (vqdb / FAISS) | "
            "× FAISS 1-query | batch QPS (vqdb / FAISS) | × FAISS batch | scan GB/s 1-query (× read bw) | spread |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["flat"]:
            rb = res.get("limits", {}).get(str(r["threads"]), {}).get("read_GBps")
            frac = f" ({r['scan_GBps_1q'] / rb:.2f})" if rb else ""
            if "faiss" in r:
                L.append(
                    f"| {r['set']} | {r['preset']} | {r['threads']} | {r['code_size']} / {r['faiss_code_size']} | "
                    f"{r['recall10']:.4f} / {r['faiss_recall10']:.4f} | {r['lat_ms']:.3f} / {r['faiss_lat_ms']:.3f} | "
                    f"**{r['ratio_lat']:.2f}** | {r['qps_batch']:,.0f} / {r['faiss_qps_batch']:,.0f} | "
                    f"**{r['ratio_batch']:.2f}** | {r['scan_GBps_1q']:.2f}{frac} | "
                    f"{max(r['lat_spread'], r['batch_spread']):.2f} |"
                )
            else:
                L.append(
                    f"| {r['set']} | {r['preset']} | {r['threads']} | {r['code_size']} / – | {r['recall10']:.4f} / – | "
                    f"{r['lat_ms']:.3f} / – | – | {r['qps_batch']:,.0f} / – | – | {r['scan_GBps_1q']:.2f}{frac} | "
                    f"{max(r['lat_spread'], r['batch_spread']):.2f} |"
                )
        L += [
            "",
            "× FAISS = vqdb QPS / FAISS QPS (> 1: vqdb faster). Paths at one thread, batch QPS:",
            "",
            "| set | preset | "
            + " | ".join(["fastscan", "blas", "popcount"])
            + " | auto (1 query / batch) |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["flat"]:
            if r["threads"] == 1:
                p = r.get("qps_paths", {})
                L.append(
                    f"| {r['set']} | {r['preset']} | "
                    + " | ".join(f"{p[x]:,.0f}" if x in p else "–" for x in ("fastscan", "blas", "popcount"))
                    + f" | {r['auto_path_1']} / {r['auto_path_batch']} |"
                )
        L.append("")
    if res.get("ivf_best"):
        L += [
            f"## IVF / graph: fastest setting at recall@10 ≥ {TARGET}",
            "",
            "| set | threads | method | bytes/vec | setting | recall@10 | QPS | vqdb ÷ this |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in res["ivf_best"]:
            v = [
                x
                for x in res["ivf_best"]
                if x["set"] == r["set"] and x["threads"] == r["threads"] and x["method"].startswith("vqdb")
            ]
            ratio = (v[0]["qps"] / r["qps"]) if v and v[0]["qps"] and r["qps"] else None
            L.append(
                f"| {r['set']} | {r['threads']} | {r['method']} | {r.get('bytes_per_vec', '–')} | {r.get('knob', '–')} | "
                f"{r.get('recall10', float('nan')):.4f} | {r['qps'] or 0:,.0f} | {'' if ratio is None else f'**{ratio:.2f}**'} |"
            )
        L += [
            "",
            "bytes/vec: codes + float16 vectors for the re-rank (vqdb, FAISS refine); HNSW: float32 vectors + "
            "level-0 links. Sweeps in the JSON.",
            "",
        ]
    if res.get("first_query"):
        L += ["## Freshly opened index (new process, numba cache warm)", ""]
        for name, f in res["first_query"].items():
            L.append(
                f"- {name}: "
                + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in f.items())
            )
        L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="wordnet,fashion")
    ap.add_argument("--presets", default="turbo-1,turbo-2,turbo-3,turbo-4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-ivf", action="store_true")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "kernels_micro"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    from vqdb.kernels import scanner

    threads = set_threads()
    res = {
        "command": "python -m bench.kernels_micro " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": threads,
        "reps": args.reps,
        "load_start": os.getloadavg(),
        "machine": machine_info(threads),
    }
    log(f"warm-up of the kernels: {scanner.warmup():.1f} s")
    from . import machine_limits

    log("machine limits")
    res["limits"] = machine_limits.measure(threads, reps=3)
    sets = load_sets(args.sets.split(","), args.quick)
    res["flat"], ivf_rows, res["first_query"] = [], [], {}
    n_lat = 20 if args.quick else 50
    with tempfile.TemporaryDirectory() as tmp:
        for name, metric, base, queries, gt in sets:
            log(f"{name}: flat")
            res["flat"] += run_flat(
                name, metric, base, queries, gt, args.presets.split(","), threads, args.reps, n_lat
            )
            if not args.no_ivf:
                log(f"{name}: IVF")
                rows, first = run_ivf(name, metric, base, queries, gt, threads, args.reps, args.quick, tmp)
                ivf_rows += rows
                res["first_query"][name] = first
        if args.calibrate and sets:
            name, _, base, queries, _ = sets[0]
            cal = calibrate(name, base, queries, threads)
            res["calibration"] = cal
            with open(scanner.COSTS_FILE, "w") as f:
                json.dump(cal, f, indent=1)
    res["ivf"] = ivf_rows
    res["ivf_best"] = best_at_target(ivf_rows)
    res["wall_s"] = time.perf_counter() - t_start
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    with open(args.out + ".md", "w") as f:
        f.write(markdown(res))
    log(f"wrote {args.out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
