"""Search speed: vqdb vs FAISS at k = 10, single-thread and all-thread, on WordNet and Fashion-MNIST.

    python -m bench.search_speed            # full (WordNet-MiniLM 115k words, Fashion-MNIST cosine 60k)
    python -m bench.search_speed --quick    # subsampled bases, 200 queries, short sweeps; bench/results/quick/

In one process, on the same arrays:

1. the machine's limits (``bench.machine_limits``): read/copy/triad memory bandwidth and SGEMM GFLOP/s;
2. flat scan: ``vqdb.Index`` (flat) with turbo-1/2/4 codes vs ``IndexPQFastScan`` at equal or fewer
   bytes per vector, plus FAISS ``RR,RaBitQFastScan`` 1-bit and ``IndexRaBitQ`` 1-bit: batch QPS (all
   queries in one call) at 1 and all threads, single-query p50 latency, recall@10, and the scan's code
   bytes per second as a fraction of the measured read bandwidth;
3. IVF: ``vqdb.Index(ivf=True, store_vectors=True)`` swept over nprobe with and without exact re-rank,
   vs FAISS ``IVF-PQFastScan`` + refine (float16 vectors: the same memory as vqdb's stored vectors) and
   ``IndexHNSWFlat`` (swept over efSearch): recall-vs-QPS curves and, per method, the fastest setting
   reaching recall@10 >= 0.95, as a QPS ratio;
4. first-query latency in a fresh process (import, open, first and second query), vqdb and FAISS.

Writes ``search_speed.json``, ``search_speed.md`` and ``search_speed_<set>.png``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/quantizers.py

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from .common import RESULTS_DIR, BenchSet, load_sets, machine_info, set_threads, write_json  # noqa: E402

K = 10
TARGET = 0.95


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- threads and timing -------------------------------------------------------------------------
class Threads:
    """Context manager: numba, FAISS (OpenMP) and BLAS limited to ``n`` threads."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import faiss
        import numba
        from threadpoolctl import threadpool_limits

        self._old = numba.get_num_threads()
        numba.set_num_threads(self.n)
        faiss.omp_set_num_threads(self.n)
        self._tp = threadpool_limits(limits=self.n)
        return self

    def __exit__(self, *exc):
        import faiss
        import numba

        self._tp.restore_original_limits()
        numba.set_num_threads(self._old)
        faiss.omp_set_num_threads(self._old)
        return False


def _threads() -> int:
    """The thread count of the enclosing :class:`Threads` block: vqdb's ``threads=`` (its default is every core,
    whatever numba's count of the calling thread, so it is passed explicitly, as FAISS and rabitqlib get theirs)."""
    import numba

    return int(numba.get_num_threads())


def recall10(ids: np.ndarray, gt: np.ndarray) -> float:
    from vqdb.testing import recall_at_k

    return round(recall_at_k(ids, gt, K), 4)


def batch_qps(search, queries: np.ndarray, min_s: float, reps: int = 2) -> float:
    """Queries per second of ``search(batch)`` on as many queries as ~``min_s`` seconds take (best of reps)."""
    search(queries[:8])  # warm-up: kernels, page faults
    m = min(queries.shape[0], 100)
    t0 = time.perf_counter()
    search(queries[:m])
    est = m / max(time.perf_counter() - t0, 1e-9)
    m = int(min(queries.shape[0], max(m, est * min_s)))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        search(queries[:m])
        best = min(best, time.perf_counter() - t0)
    return m / best


def latency_ms(search, queries: np.ndarray, n: int = 30, cpu_out: list | None = None) -> float:
    """p50 latency (ms) of one query per call. ``cpu_out`` gets the p50 of the process's CPU time per call (all
    threads): on a loaded machine a call longer than the scheduler's slice also waits for a core, so the
    wall p50 jumps by a whole slice (several ms) where the CPU time does not."""
    search(queries[:1])
    times, cpu = [], []
    for i in range(min(n, queries.shape[0])):
        c0 = time.process_time()
        t0 = time.perf_counter()
        search(queries[i : i + 1])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if cpu_out is not None:
        cpu_out.append(float(np.median(cpu) * 1e3))
    return float(np.median(times) * 1e3)


# ---- methods ------------------------------------------------------------------------------------
def vqdb_index(bs: BenchSet, preset: str, ivf=False, store_vectors=False, path=None):
    import vqdb

    idx = vqdb.Index(bs.dim, metric="ip", quantizer=preset, ivf=ivf, store_vectors=store_vectors, path=path)
    t0 = time.perf_counter()
    idx.add(bs.base)
    if hasattr(idx, "flush"):
        idx.flush()
    return idx, time.perf_counter() - t0


def faiss_build(index, base: np.ndarray):
    t0 = time.perf_counter()
    index.train(base)
    index.add(base)
    return index, time.perf_counter() - t0


def divisor_at_most(d: int, x: int) -> int:
    return max(m for m in range(1, d + 1) if d % m == 0 and m <= x)


def flat_configs(bs: BenchSet) -> list[tuple[str, str, int, callable]]:
    """(name, library, bytes/vector, build() -> (searcher(q) -> ids, build_s))."""
    import faiss

    import vqdb

    d = bs.dim
    ip = faiss.METRIC_INNER_PRODUCT
    out = []
    sizes = {name: size for name, size, _ in vqdb.presets(d)}
    for preset in ("turbo-1", "turbo-2", "turbo-4"):

        def build(preset=preset):
            idx, s = vqdb_index(bs, preset)
            return (lambda q: idx.search(q, K, threads=_threads()).ids), s, idx

        out.append((f"vqdb-flat-{preset}", "vqdb", sizes[preset], build))
        m = divisor_at_most(d, 2 * sizes[preset])  # 4-bit PQ: M/2 bytes <= vqdb's bytes

        def build_fs(m=m):
            ix, s = faiss_build(faiss.IndexPQFastScan(d, m, 4, ip), bs.base)
            return (lambda q: ix.search(q, K)[1]), s, ix

        out.append((f"faiss-PQFastScan{m}x4", "faiss", faiss.IndexPQFastScan(d, m, 4).code_size, build_fs))

    def build_rq():
        ix = faiss.IndexPreTransform(
            faiss.RandomRotationMatrix(d, d), faiss.IndexRaBitQFastScan(d, ip, 32, 1)
        )
        ix, s = faiss_build(ix, bs.base)
        return (lambda q: ix.search(q, K)[1]), s, ix

    for preset in ("turbo-pca-1", "turbo-pca-2", "turbo-pca-4"):  # fitted basis: the best recall per byte
        if preset not in sizes:
            continue

        def build_pca(preset=preset):
            idx, s = vqdb_index(bs, preset)
            return (lambda q: idx.search(q, K, threads=_threads()).ids), s, idx

        out.append((f"vqdb-flat-{preset}", "vqdb", sizes[preset], build_pca))
    out.append(
        ("faiss-RR+RaBitQFastScan1", "faiss", faiss.IndexRaBitQFastScan(d, ip, 32, 1).code_size, build_rq)
    )

    def build_rq1():
        inner = faiss.IndexRaBitQ(d, ip, 1)
        inner.qb = 8
        ix, s = faiss_build(faiss.IndexPreTransform(faiss.RandomRotationMatrix(d, d), inner), bs.base)
        return (lambda q: ix.search(q, K)[1]), s, ix

    out.append(("faiss-RR+RaBitQ1", "faiss", faiss.IndexRaBitQ(d, ip, 1).code_size, build_rq1))
    return out


def run_flat(bs: BenchSet, threads: int, min_s: float, limits: dict) -> list[dict]:
    qs = bs.query_sets[0]
    rows = []
    n = bs.base.shape[0]
    for name, lib, nbytes, build in flat_configs(bs):
        try:
            search, build_s, handle = build()
        except Exception as exc:  # noqa: BLE001 - one failing config must not stop the run
            log(f"  {name}: build failed: {exc!r}")
            rows.append({"dataset": bs.name, "method": name, "error": repr(exc)})
            continue
        with Threads(threads):
            ids = search(qs.queries)
        row = {
            "dataset": bs.name,
            "section": "flat",
            "method": name,
            "library": lib,
            "bytes": nbytes,
            "n": n,
            "recall@10": recall10(ids, qs.gt),
            "build_s": round(build_s, 2),
        }
        for t in sorted({1, threads}):
            with Threads(t):
                qps = batch_qps(search, qs.queries, min_s)
                lat = latency_ms(search, qs.queries)
            bw = limits[str(t)]["read_GBps"] * 1e9
            row[f"qps_{t}t"] = round(qps, 1)
            row[f"latency_ms_{t}t"] = round(lat, 2)
            # code bytes each query touches, per second: batch (codes reused across a query block) and one query
            row[f"scan_GBps_batch_{t}t"] = round(n * nbytes * qps / 1e9, 2)
            row[f"scan_GBps_single_{t}t"] = round(n * nbytes / (lat / 1e3) / 1e9, 2)
            row[f"single_frac_of_read_bw_{t}t"] = round(n * nbytes / (lat / 1e3) / bw, 3)
        rows.append(row)
        log(
            f"  {name:28s} {nbytes:5d} B  r@10 {row['recall@10']:.4f}  "
            + "  ".join(
                f"{t}t {row[f'qps_{t}t']:8.1f} qps {row[f'latency_ms_{t}t']:7.2f} ms"
                for t in sorted({1, threads})
            )
        )
        del handle, search
    return rows


# ---- the grid a user meets (issue 12): flat, k = 10 and 100, 1 and 2 threads, batch and one query ---------
GRID_PRESETS = (
    "turbo-1",
    "turbo-2",
    "turbo-3",
    "turbo-4",
    "turbo-pca-1",
    "turbo-pca-2",
    "turbo-pca-3",
    "turbo-pca-4",
)
GRID_KS = (10, 100)


def grid_methods(
    bs: BenchSet, quick: bool, presets: list[str] | None = None, ivf: int | None = None
) -> list[tuple[str, str, float, int, callable]]:
    """(name, library, bytes/vector, bits, build() -> (search(q, k) -> ids, handle)): every turbo-N and
    turbo-pca-N preset (vqdb flat), FAISS IndexPQFastScan at <= each turbo-N's bytes and rabitqlib
    (one cluster = a flat RaBitQ scan) at 1, 2, 3 and 4 total bits. ``presets``: only these vqdb presets,
    no peers; ``ivf``: vqdb indexes with that many IVF lists (default nprobe), named ``vqdb-ivf<n>-...``."""
    import faiss

    import vqdb

    from .peers import rabitqlib_bytes

    d = bs.dim
    sizes = {name: size for name, size, _ in vqdb.presets(d)}
    out = []
    for preset in presets or GRID_PRESETS:
        if preset not in sizes:
            continue

        def build(preset=preset):
            idx, _ = vqdb_index(bs, preset, ivf=ivf or False)
            return (lambda q, k: idx.search(q, k, threads=_threads()).ids), idx

        bits = int(preset.rsplit("-", 1)[1])
        name = f"vqdb-ivf{ivf}-{preset}" if ivf else f"vqdb-{preset}"
        out.append((name, "vqdb", float(sizes[preset]), bits, build))
    if presets:
        return out
    for preset in ("turbo-1", "turbo-2", "turbo-4"):
        m = divisor_at_most(d, 2 * sizes[preset])  # 4-bit PQ: M/2 bytes <= vqdb's bytes

        def build_fs(m=m):
            ix, _ = faiss_build(faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT), bs.base)
            return (lambda q, k: ix.search(q, k)[1]), ix

        out.append(
            (f"faiss-PQFastScan{m}x4", "faiss", float(faiss.IndexPQFastScan(d, m, 4).code_size), 0, build_fs)
        )
    try:
        import rabitqlib
    except ImportError:
        rabitqlib = None
    for nbits in (1, 2, 3, 4) if rabitqlib is not None else ():

        def build_rq(nbits=nbits):
            n = bs.base.shape[0]
            centre = bs.base.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
            ix = rabitqlib.IvfIndex(d, n, 1, nbits, "ip")
            ix.build(bs.base, centre, np.zeros(n, np.uint32), num_threads=2)

            def search(q, k, ix=ix):
                import numba

                ids, _ = ix.search(q, k, 1, num_threads=numba.get_num_threads())
                ids = np.asarray(ids).astype(np.int64)
                ids[ids >= 2**32 - 1] = -1
                return ids

            return search, ix

        out.append((f"rabitqlib-{nbits}bit", "rabitqlib", float(rabitqlib_bytes(d, nbits)), nbits, build_rq))
    return out


def run_grid(
    bs: BenchSet, threads: int, min_s: float, limits: dict, quick: bool, presets=None, ivf=None
) -> list[dict]:
    """One row per (method, k, threads): batch QPS, one-query p50 latency, recall@k, scan bytes/s.

    Inner-product (cosine) sets only: every grid method builds an inner-product index, so an l2sq set's
    ground truth would not match (``--only fashion`` also selects fashion-mnist-784-l2sq)."""
    from vqdb.testing import recall_at_k

    if bs.metric != "ip":
        log(f"{bs.name}: skipped by the grid (its methods are inner-product indexes)")
        return []
    qs = bs.query_sets[0]
    n = bs.base.shape[0]
    rows = []
    for name, lib, nbytes, bits, build in grid_methods(bs, quick, presets, ivf):
        try:
            search, handle = build()
        except Exception as exc:  # noqa: BLE001 - one failing config must not stop the run
            log(f"  {name}: build failed: {exc!r}")
            rows.append({"dataset": bs.name, "section": "grid", "method": name, "error": repr(exc)})
            continue
        for k in GRID_KS:
            with Threads(threads):
                rec = round(recall_at_k(search(qs.queries, k), qs.gt, k), 4)
            for t in sorted({1, threads, 2} & set(range(1, threads + 1))):
                with Threads(t):
                    qps = batch_qps(lambda q, k=k, f=search: f(q, k), qs.queries, min_s)
                    cpu = []
                    lat = latency_ms(lambda q, k=k, f=search: f(q, k), qs.queries, cpu_out=cpu)
                bw = limits[str(t)]["read_GBps"] * 1e9 if str(t) in limits else float("nan")
                row = {
                    "dataset": bs.name,
                    "section": "grid",
                    "method": name,
                    "library": lib,
                    "bits": bits,
                    "bytes": nbytes,
                    "n": n,
                    "k": k,
                    "threads": t,
                    f"recall@{k}": rec,
                    "recall": rec,
                    "qps": round(qps, 1),
                    "latency_ms": round(lat, 3),
                    "latency_cpu_ms": round(cpu[0], 3),
                    "scan_GBps_batch": round(n * nbytes * qps / 1e9, 2),
                    "batch_frac_of_read_bw": round(n * nbytes * qps / bw, 3),
                    "single_frac_of_read_bw": round(n * nbytes / (lat / 1e3) / bw, 3),
                    "load_avg": round(os.getloadavg()[0], 2),
                }
                rows.append(row)
                log(
                    f"  {name:24s} {nbytes:6.1f} B k={k:3d} {t}t  r@k {rec:.4f}  {qps:9.1f} qps  {lat:7.3f} ms"
                    f"  load {row['load_avg']}"
                )
        del handle, search
    return rows


def grid_summary(rows: list[dict]) -> dict:
    """Issue-12 ratios: k = 100 / k = 10 QPS, 2 / 1 threads, vs PQFastScan at <= bytes and rabitqlib at the
    same bits; turbo-pca-N / turbo-N."""
    ok = [r for r in rows if "qps" in r]
    at = {(r["dataset"], r["method"], r["k"], r["threads"]): r for r in ok}
    out = []
    for (ds, meth, k, t), r in sorted(at.items()):
        s = {
            "dataset": ds,
            "method": meth,
            "k": k,
            "threads": t,
            "qps": r["qps"],
            "recall": r["recall"],
            "latency_ms": r["latency_ms"],
            "latency_cpu_ms": r.get("latency_cpu_ms"),
        }
        if k == 100 and (ds, meth, 10, t) in at:
            s["k100_over_k10"] = round(r["qps"] / at[(ds, meth, 10, t)]["qps"], 3)
        if t == 2 and (ds, meth, k, 1) in at:
            s["t2_over_t1"] = round(r["qps"] / at[(ds, meth, k, 1)]["qps"], 3)
        if r["library"] == "vqdb":
            fs = [
                x
                for x in ok
                if x["dataset"] == ds
                and x["k"] == k
                and x["threads"] == t
                and x["library"] == "faiss"
                and x["bytes"] <= r["bytes"]
            ]
            if fs:
                best = max(fs, key=lambda x: x["bytes"])
                s["vs_pqfastscan"] = {
                    "method": best["method"],
                    "qps_ratio": round(r["qps"] / best["qps"], 3),
                    "latency_ratio": round(r["latency_ms"] / best["latency_ms"], 3),
                    "recall": best["recall"],
                }
            rq = at.get((ds, f"rabitqlib-{r['bits']}bit", k, t))
            if rq is not None and "pca" not in meth:
                s["vs_rabitqlib"] = {
                    "qps_ratio": round(r["qps"] / rq["qps"], 3),
                    "recall": rq["recall"],
                    "bytes": rq["bytes"],
                }
            if "pca" in meth:
                base = at.get((ds, meth.replace("turbo-pca-", "turbo-"), k, t))
                if base is not None:
                    s["pca_over_turbo"] = round(r["qps"] / base["qps"], 3)
        out.append(s)
    return {"ratios": out}


def grid_markdown(result: dict) -> str:
    lines = [
        "# Search speed grid (issue 12): "
        + (f"IVF ({result['ivf']} lists, default nprobe)" if result.get("ivf") else "flat scans")
        + ", k = 10 and 100, 1 and 2 threads",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine'].get('cpu', '?')}, load average at start {result['load_start']}, "
        f"at end {result.get('load_end')}; read bandwidth {result['limits']}.  ",
        "Same process, same arrays, same thread count for numba, FAISS (OpenMP) and rabitqlib. QPS = batch of all "
        "queries per call (wall clock); latency = p50 of one query per call (wall clock; CPU = p50 of the "
        "process's CPU time per call, which excludes waits for a core). The machine is shared: compare rows of "
        "one run only.",
        "",
        "| data | method | B/vec | k | thr | recall@k | QPS | 1-query ms | 1-query CPU ms | k100/k10 | 2t/1t | vs PQFastScan (QPS, lat) | vs rabitqlib | pca/turbo |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    by = {(r["dataset"], r["method"], r["k"], r["threads"]): r for r in result["rows"] if "qps" in r}
    for s in result["summary"]["ratios"]:
        r = by[(s["dataset"], s["method"], s["k"], s["threads"])]
        fs = s.get("vs_pqfastscan")
        rq = s.get("vs_rabitqlib")
        lines.append(
            f"| {s['dataset']} | {s['method']} | {r['bytes']:.0f} | {s['k']} | {s['threads']} | {s['recall']:.4f} | "
            f"{s['qps']:,.0f} | {s['latency_ms']:.2f} | {s.get('latency_cpu_ms') or float('nan'):.2f} | "
            f"{s.get('k100_over_k10', '')} | {s.get('t2_over_t1', '')} | "
            + (
                f"{fs['qps_ratio']}x, {fs['latency_ratio']}x ({fs['method']}, r {fs['recall']:.3f})"
                if fs
                else ""
            )
            + " | "
            + (f"{rq['qps_ratio']}x (r {rq['recall']:.3f})" if rq else "")
            + f" | {s.get('pca_over_turbo', '')} |"
        )
    return "\n".join(lines) + "\n"


def ivf_sweeps(bs: BenchSet, quick: bool, tmp: str):
    """(name, library, bytes/vector, build() -> (search(q, knob) -> ids, build_s, handle), knobs, knob name)."""
    import faiss

    import vqdb

    d, n = bs.dim, bs.base.shape[0]
    ip = faiss.METRIC_INNER_PRODUCT
    nlist = int(min(4 * np.sqrt(n), n // 39))  # vqdb's default rule, capped at FAISS's 39 points per list
    nprobes = [8, 32, 128] if quick else [8, 16, 32, 64, 128, 256]
    size4 = {name: size for name, size, _ in vqdb.presets(d)}["turbo-4"]
    out = []

    def build_vqdb():
        idx, s = vqdb_index(bs, "turbo-4", ivf=nlist, store_vectors=True, path=os.path.join(tmp, bs.name))
        if getattr(idx, "nlist", None) is None:
            raise RuntimeError("vqdb index did not train its IVF partition (too few vectors?)")
        if hasattr(idx, "save"):
            idx.save()
        return (
            (lambda q, knob: idx.search(q, K, nprobe=knob[0], rerank=knob[1], threads=_threads()).ids),
            s,
            idx,
        )

    out.append(
        (
            "vqdb-IVF-turbo-4+rerank(fp16)",
            "vqdb",
            size4 + 2 * d,
            build_vqdb,
            [(p, r) for r in (False, 4) for p in nprobes],
            "(nprobe, rerank)",
        )
    )
    m = divisor_at_most(d, 2 * size4)  # 4-bit PQ codes of at most turbo-4's bytes

    def build_ivfpq():
        coarse = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFPQFastScan(coarse, d, nlist, m, 4, ip)
        ivf.pq.cp.max_points_per_centroid = 256
        ref = faiss.IndexRefine(ivf, faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip))
        ref, s = faiss_build(ref, bs.base)
        holders = (coarse, ivf, ref)  # keep the sub-indexes alive

        def search(q, knob, holders=holders):
            params = faiss.IndexRefineSearchParameters(
                k_factor=float(knob[1]), base_index_params=faiss.SearchParametersIVF(nprobe=knob[0])
            )
            return holders[2].search(q, K, params=params)[1]

        return search, s, holders

    out.append(
        (
            f"faiss-IVF{nlist}-PQFastScan{m}x4+refine(fp16)",
            "faiss",
            faiss.IndexPQFastScan(d, m, 4).code_size + 2 * d,
            build_ivfpq,
            [(p, kf) for kf in (1, 4) for p in nprobes],
            "(nprobe, k_factor)",
        )
    )

    def build_hnsw():
        ix = faiss.IndexHNSWFlat(d, 32, ip)
        ix.hnsw.efConstruction = 40
        ix, s = faiss_build(ix, bs.base)

        def search(q, knob, ix=ix):
            return ix.search(q, K, params=faiss.SearchParametersHNSW(efSearch=knob))[1]

        return search, s, ix

    out.append(
        (
            "faiss-HNSWFlat32",
            "faiss",
            4 * d + 2 * 32 * 4,
            build_hnsw,
            [16, 64, 128] if quick else [16, 32, 64, 128, 256],
            "efSearch",
        )
    )
    return out


def run_ivf(bs: BenchSet, threads: int, min_s: float, quick: bool, tmp: str) -> tuple[list[dict], dict]:
    qs = bs.query_sets[0]
    rows, paths = [], {}
    for name, lib, nbytes, build, knobs, knob_name in ivf_sweeps(bs, quick, tmp):
        log(f"  building {name}")
        try:
            search, build_s, handle = build()
        except Exception as exc:  # noqa: BLE001
            log(f"  {name}: build failed: {exc!r}")
            rows.append({"dataset": bs.name, "method": name, "error": repr(exc)})
            continue
        if lib == "vqdb":
            paths["vqdb"] = os.path.join(tmp, bs.name)
        for knob in knobs:

            def fn(q, knob=knob, search=search):
                return search(q, knob)

            with Threads(threads):
                r = recall10(fn(qs.queries), qs.gt)
            row = {
                "dataset": bs.name,
                "section": "ivf",
                "method": name,
                "library": lib,
                "bytes": nbytes,
                "knob": list(knob) if isinstance(knob, tuple) else knob,
                "knob_name": knob_name,
                "recall@10": r,
                "build_s": round(build_s, 2),
            }
            for t in sorted({1, threads}):
                with Threads(t):
                    row[f"qps_{t}t"] = round(batch_qps(fn, qs.queries, min_s), 1)
            rows.append(row)
            log(
                f"  {name:44s} {str(knob):12s} r@10 {r:.4f}  "
                + "  ".join(f"{t}t {row[f'qps_{t}t']:9.1f} qps" for t in sorted({1, threads}))
            )
        if lib == "vqdb" and hasattr(handle, "close"):
            handle.close()  # release the writer before the fresh-process open (read-only) below
        if lib == "faiss" and "HNSW" in name:
            import faiss

            paths["faiss_hnsw"] = os.path.join(tmp, f"{bs.name}.hnsw")
            faiss.write_index(handle, paths["faiss_hnsw"])
        del handle, search
    return rows, paths


def best_at_target(rows: list[dict], threads: int) -> list[dict]:
    """Per (dataset, method, thread count): the fastest setting with recall@10 >= TARGET, and the ratios."""
    out = []
    for dataset in sorted({r["dataset"] for r in rows if r.get("section") == "ivf"}):
        for t in sorted({1, threads}):
            best = {}
            for r in rows:
                if r.get("section") != "ivf" or r["dataset"] != dataset or r["recall@10"] < TARGET:
                    continue
                if r["method"] not in best or r[f"qps_{t}t"] > best[r["method"]][f"qps_{t}t"]:
                    best[r["method"]] = r
            ours = next((r for m, r in best.items() if r["library"] == "vqdb"), None)
            for m, r in sorted(best.items()):
                out.append(
                    {
                        "dataset": dataset,
                        "threads": t,
                        "method": m,
                        "knob": r["knob"],
                        "recall@10": r["recall@10"],
                        "qps": r[f"qps_{t}t"],
                        "bytes": r["bytes"],
                        "vqdb_ratio": None if ours is None else round(ours[f"qps_{t}t"] / r[f"qps_{t}t"], 3),
                    }
                )
            methods = {r["method"] for r in rows if r.get("section") == "ivf" and r["dataset"] == dataset}
            for m in sorted(methods - set(best)):
                out.append(
                    {
                        "dataset": dataset,
                        "threads": t,
                        "method": m,
                        "knob": None,
                        "recall@10": max(
                            r["recall@10"] for r in rows if r.get("method") == m and r["dataset"] == dataset
                        ),
                        "qps": None,
                        "bytes": None,
                        "vqdb_ratio": None,
                        "note": f"never reached {TARGET}",
                    }
                )
    return out


# ---- first-query latency ------------------------------------------------------------------------
_COLD_VQDB = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, vqdb
t1 = time.perf_counter()
idx = vqdb.open(sys.argv[1], read_only=True)
t2 = time.perf_counter()
q = np.load(sys.argv[2])
idx.search(q[:1], 10, nprobe=16)
t3 = time.perf_counter()
idx.search(q[1:2], 10, nprobe=16)
t4 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "open_ms": (t2 - t1) * 1e3, "first_query_ms": (t3 - t2) * 1e3,
                  "second_query_ms": (t4 - t3) * 1e3}))
"""
_COLD_FAISS = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, faiss
t1 = time.perf_counter()
ix = faiss.read_index(sys.argv[1])
t2 = time.perf_counter()
q = np.load(sys.argv[2])
ix.search(q[:1], 10)
t3 = time.perf_counter()
ix.search(q[1:2], 10)
t4 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "open_ms": (t2 - t1) * 1e3, "first_query_ms": (t3 - t2) * 1e3,
                  "second_query_ms": (t4 - t3) * 1e3}))
"""


def first_query(paths: dict, queries: np.ndarray, tmp: str) -> dict:
    qpath = os.path.join(tmp, "q.npy")
    np.save(qpath, queries[:2])
    out = {}
    for key, script in (("vqdb", _COLD_VQDB), ("faiss_hnsw", _COLD_FAISS)):
        if key not in paths:
            continue
        res = subprocess.run(
            [sys.executable, "-c", script, paths[key], qpath],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        if res.returncode != 0:
            out[key] = {"error": res.stderr.strip()[-500:]}
        else:
            out[key] = {k: round(v, 1) for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
    return out


# ---- report -------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    from .common import machine_line

    t = result["threads"]
    ts = sorted({1, t})
    lim = result["limits"]
    lines = [
        "# Search speed: vqdb vs FAISS (k = 10)",
        "",
        f"Command: `{result['command']}`{' (quick mode)' if result['quick'] else ''}  ",
        f"Machine: {machine_line(result['machine'])}  ",
        f"Date: {result['machine']['date']}; wall time {result['wall_s']:.0f} s. All figures from this one "
        "process; the machine is shared and noisy, so read the ratios, not the absolute rates.",
        "",
        "## Machine limits (measured in this run)",
        "",
        "| threads | read GB/s | copy GB/s | triad GB/s | SGEMM GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for k, v in lim.items():
        lines.append(
            f"| {k} | {v['read_GBps']} | {v['copy_GBps']} | {v['triad_GBps']} | {v['sgemm_GFLOPs']} |"
        )
    lines += [
        "",
        "## Flat scan (all queries in one call; latency = one query per call)",
        "",
        "| data set | method | bytes/vec | recall@10 | "
        + " | ".join(
            f"QPS {x}t | ×vs PQFastScan {x}t | p50 ms {x}t | 1-query scan GB/s {x}t (× read bw)" for x in ts
        )
        + " |",
        "|---|---|---|---|" + "---|---|---|---|" * len(ts),
    ]
    flat = [r for r in result["rows"] if r.get("section") == "flat"]
    for r in flat:
        ref = _flat_ref(flat, r)
        cells = []
        for x in ts:
            ratio = "–" if ref is None else f"{r[f'qps_{x}t'] / ref[f'qps_{x}t']:.2f}"
            cells.append(
                f"{r[f'qps_{x}t']:,.1f} | {ratio} | {r[f'latency_ms_{x}t']:.2f} | "
                f"{r[f'scan_GBps_single_{x}t']} ({r[f'single_frac_of_read_bw_{x}t']:.2f})"
            )
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['bytes']} | {r['recall@10']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "×vs PQFastScan: QPS over the `IndexPQFastScan` row with the most bytes ≤ the vqdb row's. "
        "1-query scan GB/s: n × bytes/vector over the one-query latency; above 1× the read bandwidth the "
        "codes are served from the CPU caches (e.g. 115,659 × 48 B = 5.6 MB).",
        "",
        f"## IVF / graph at recall@10 ≥ {TARGET}: fastest setting per method",
        "",
        "| data set | threads | method | bytes/vec | setting | recall@10 | QPS | vqdb QPS ÷ this |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in result["ivf_best"]:
        lines.append(
            f"| {b['dataset']} | {b['threads']} | {b['method']} | {b['bytes'] or '–'} | {b['knob']} | "
            f"{b['recall@10']:.4f} | {b['qps'] if b['qps'] is not None else b.get('note', '–')} | "
            f"{b['vqdb_ratio'] if b['vqdb_ratio'] is not None else '–'} |"
        )
    lines += [
        "",
        "bytes/vec: codes + the stored vectors used to re-rank (float16 for vqdb and for FAISS's refine "
        "index) or, for HNSW, float32 vectors + 2·M·4 bytes of links (level 0).",
        "",
        "## IVF / graph sweeps",
        "",
        "| data set | method | setting | recall@10 | " + " | ".join(f"QPS {x}t" for x in ts) + " |",
        "|---|---|---|---|" + "---|" * len(ts),
    ]
    for r in (r for r in result["rows"] if r.get("section") == "ivf"):
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['knob_name']}={r['knob']} | {r['recall@10']:.4f} | "
            + " | ".join(f"{r[f'qps_{x}t']:,.1f}" for x in ts)
            + " |"
        )
    lines += [
        "",
        "## First query in a fresh process",
        "",
        "| data set | index | import ms | open ms | first query ms | second query ms |",
        "|---|---|---|---|---|---|",
    ]
    for ds, fq in result["first_query"].items():
        for key, v in fq.items():
            if "error" in v:
                lines.append(f"| {ds} | {key} | error: {v['error'][:120]} | | | |")
            else:
                lines.append(
                    f"| {ds} | {key} | {v['import_ms']} | {v['open_ms']} | {v['first_query_ms']} | {v['second_query_ms']} |"
                )
    errors = [r for r in result["rows"] if "error" in r]
    if errors:
        lines += ["", "## Failed configurations", ""] + [
            f"- {r['dataset']}: {r['method']}: {r['error']}" for r in errors
        ]
    lines += ["", "Plots: " + ", ".join(f"`{os.path.basename(p)}`" for p in result.get("plots", [])), ""]
    return "\n".join(lines)


def _flat_ref(flat: list[dict], r: dict) -> dict | None:
    """The ``IndexPQFastScan`` row of the same data set with the most bytes <= this vqdb row's."""
    if r["library"] != "vqdb":
        return None
    cands = [
        x
        for x in flat
        if x["dataset"] == r["dataset"]
        and "error" not in x
        and x["method"].startswith("faiss-PQFastScan")
        and x["bytes"] <= r["bytes"]
    ]
    return max(cands, key=lambda x: x["bytes"], default=None)


def plot(rows: list[dict], threads: int, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ts = sorted({1, threads})
    for dataset in sorted({r["dataset"] for r in rows if "error" not in r}):
        fig, axes = plt.subplots(1, len(ts), figsize=(7.5 * len(ts), 5.5), squeeze=False)
        for ax, t in zip(axes[0], ts):
            sel = [r for r in rows if r["dataset"] == dataset and "error" not in r]
            for m in dict.fromkeys(r["method"] for r in sel):
                pts = [r for r in sel if r["method"] == m]
                if pts[0]["section"] == "ivf":
                    groups = {}
                    for r in pts:
                        g = r["knob"][1] if isinstance(r["knob"], list) else None
                        groups.setdefault(g, []).append(r)
                    for g, grp in groups.items():
                        grp.sort(key=lambda r: r["recall@10"])
                        label = m if g is None else f"{m} [{'rerank' if 'vqdb' in m else 'k_factor'}={g}]"
                        ax.plot(
                            [r["recall@10"] for r in grp],
                            [r[f"qps_{t}t"] for r in grp],
                            "-o" if pts[0]["library"] == "vqdb" else "--s",
                            ms=4,
                            label=label,
                        )
                else:
                    ax.plot(
                        [pts[0]["recall@10"]],
                        [pts[0][f"qps_{t}t"]],
                        "o" if pts[0]["library"] == "vqdb" else "s",
                        ms=7,
                        label=f"{m} (flat)",
                    )
            ax.axvline(TARGET, color="grey", ls=":", lw=0.8)
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_ylabel("queries per second (batch)")
            ax.set_title(f"{dataset} — {t} thread{'s' if t > 1 else ''}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="lower left")
        fig.tight_layout()
        path = os.path.join(out_dir, f"search_speed_{dataset}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    from .machine_limits import measure

    ap = argparse.ArgumentParser(prog="python -m bench.search_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="subsampled bases, 200 queries, short sweeps")
    ap.add_argument("--only", nargs="*", default=None, help="data set name substrings")
    ap.add_argument(
        "--sections",
        nargs="*",
        default=["flat", "ivf", "first", "grid"],
        choices=["flat", "ivf", "first", "grid"],
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--min-seconds", type=float, default=None, help="timed batch length (default 1, quick 0.3)"
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--presets", nargs="*", default=None, help="grid: only these vqdb presets (no peers)")
    ap.add_argument("--grid-ivf", type=int, default=None, help="grid: vqdb indexes with this many IVF lists")
    ap.add_argument("--tag", default="", help="grid: results file suffix (search_speed_grid_<tag>.*)")
    args = ap.parse_args(argv)
    out_dir = args.out or (os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    min_s = args.min_seconds or (0.3 if args.quick else 1.0)
    threads = set_threads(args.threads)
    info = machine_info(threads)
    t0 = time.perf_counter()
    only = args.only or ["wordnet-minilm384", "fashion-mnist-784-cos"]
    sets = load_sets(args.quick, only)
    for bs in sets:  # word queries only for WordNet
        bs.query_sets = bs.query_sets[:1]
    log(f"measuring machine limits ({threads} threads)")
    limits = measure(threads)
    log(f"limits: {limits}")
    command = "python -m bench.search_speed " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    result = {
        "command": command.strip(),
        "quick": args.quick,
        "machine": info,
        "threads": threads,
        "limits": limits,
        "rows": [],
        "ivf_best": [],
        "first_query": {},
    }
    if "grid" in args.sections:
        grid = {
            "command": command.strip(),
            "machine": info,
            "limits": limits,
            "rows": [],
            "ivf": args.grid_ivf,
            "load_start": [round(x, 2) for x in os.getloadavg()],
        }
        stem = os.path.join(out_dir, "search_speed_grid" + (f"_{args.tag}" if args.tag else ""))
        for bs in sets:
            log(f"{bs.name} grid: base {bs.base.shape}, {bs.query_sets[0].queries.shape[0]} queries")
            grid["rows"] += run_grid(bs, threads, min_s, limits, args.quick, args.presets, args.grid_ivf)
            grid["summary"] = grid_summary(grid["rows"])
            write_json(stem + ".json", grid)
        grid["load_end"] = [round(x, 2) for x in os.getloadavg()]
        grid["summary"] = grid_summary(grid["rows"])
        write_json(stem + ".json", grid)
        with open(stem + ".md", "w", encoding="utf-8") as f:
            f.write(grid_markdown(grid))
        log(f"wrote {stem}.{{json,md}}")
        if set(args.sections) == {"grid"}:
            return 0
    with tempfile.TemporaryDirectory(prefix="vqdb-speed-") as tmp:
        for bs in sets:
            log(f"{bs.name}: base {bs.base.shape}, {bs.query_sets[0].queries.shape[0]} queries")
            if "flat" in args.sections:
                result["rows"] += run_flat(bs, threads, min_s, limits)
            if "ivf" in args.sections:
                rows, paths = run_ivf(bs, threads, min_s, args.quick, tmp)
                result["rows"] += rows
                if "first" in args.sections:
                    result["first_query"][bs.name] = first_query(paths, bs.query_sets[0].queries, tmp)
                    log(f"  first query: {result['first_query'][bs.name]}")
            result["ivf_best"] = best_at_target(result["rows"], threads)
            result["wall_s"] = time.perf_counter() - t0
            write_json(os.path.join(out_dir, "search_speed.json"), result)
    result["plots"] = [
        os.path.basename(p) for p in plot(result["rows"], threads, out_dir)
    ]  # no machine paths
    result["wall_s"] = time.perf_counter() - t0
    write_json(os.path.join(out_dir, "search_speed.json"), result)
    with open(os.path.join(out_dir, "search_speed.md"), "w", encoding="utf-8") as f:
        f.write(markdown(result))
    log(f"wrote {out_dir}/search_speed.{{json,md}} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
