"""One-query search latency, split into the Python around the scan and the scan itself, vs FAISS one-query.

    python -m bench.search_overhead                      # WordNet-MiniLM-384 (115,659), turbo-1/2/4, k 10 and 100
    python -m bench.search_overhead --presets turbo-4 --tag before

In one process on one thread (numba, BLAS and FAISS's OpenMP at 1): a flat ``vqdb.Index`` of every base
vector, one query per ``search`` call (``--queries`` held-out word queries, each timed with ``perf_counter``;
p50 reported). Each call's time is split by timers around the steps ``Index.search`` takes:

* *plan*: ``_plan.plan_search``; *scan*: ``_scan.execute`` (query prep, LUTs, the fast-scan kernels and their
  glue); *kernel*: the scanner's ``segment_topk`` inside it; *finish*: ``_scan.finish``;
* *python*: the whole call minus *scan* (validation, filter compile, snapshot, plan, top-k buffers, result);
* *tiny index*: the same call on a 64-row index (the scan costs microseconds): the fixed cost of a call.

FAISS in the same process: ``IndexPQFastScan`` at <= vqdb's bytes (as in ``bench.search_speed``) and
``IndexFlatIP``, one query per call. Writes ``bench/results/search_overhead[_<tag>].json`` / ``.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/quantizers.py

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from .common import RESULTS_DIR, load_sets, machine_info, machine_line, write_json  # noqa: E402
from .search_speed import Threads, divisor_at_most  # noqa: E402


class PhaseTimer:
    """Accumulates perf_counter seconds of the wrapped functions during one search call."""

    def __init__(self):
        self.t: dict[str, float] = {}

    @contextlib.contextmanager
    def wrap(self, obj, attr: str, name: str):
        real = getattr(obj, attr)

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0

        setattr(obj, attr, timed)
        try:
            yield
        finally:
            setattr(obj, attr, real)


def p50_us(fn, queries: np.ndarray, n: int) -> tuple[float, float]:
    """p50 and p10 (µs) of ``n`` one-query calls."""
    fn(queries[:1])
    times = []
    for i in range(n):
        q = queries[i % queries.shape[0]][None, :]
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6), float(np.percentile(times, 10) * 1e6)


def phases_us(index, queries: np.ndarray, k: int, n: int) -> dict:
    """p50 of each phase over ``n`` one-query calls (µs), and of the whole call."""
    from vqdb.index import _plan, _scan
    from vqdb.kernels import scanner

    timer = PhaseTimer()
    rows: dict[str, list] = {"total": [], "plan": [], "scan": [], "kernel": [], "finish": []}
    with (
        timer.wrap(_plan, "plan_search", "plan"),
        timer.wrap(_scan, "execute", "scan"),
        timer.wrap(_scan, "finish", "finish"),
        timer.wrap(scanner.FastScanner, "segment_topk", "kernel"),
    ):
        index.search(queries[:1], k, threads=1)
        for i in range(n):
            timer.t = {}
            q = queries[i % queries.shape[0]][None, :]
            t0 = time.perf_counter()
            index.search(q, k, threads=1)
            rows["total"].append(time.perf_counter() - t0)
            for name in ("plan", "scan", "kernel", "finish"):
                rows[name].append(timer.t.get(name, 0.0))
    rows["python"] = list(np.subtract(rows["total"], rows["scan"]))
    out = {name: float(np.median(v) * 1e6) for name, v in rows.items()}
    out.update({f"{name}_p10": float(np.percentile(v, 10) * 1e6) for name, v in rows.items()})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["turbo-4", "turbo-2", "turbo-1"])
    ap.add_argument("--ks", nargs="+", type=int, default=[10, 100])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    import faiss

    import vqdb

    load0 = os.getloadavg()
    bs = load_sets(only=["wordnet-minilm384"])[0]
    q = np.ascontiguousarray(bs.query_sets[0].queries, dtype=np.float32)
    d = bs.dim
    sizes = {name: size for name, size, _ in vqdb.presets(d)}
    rows = []
    with Threads(1):
        for preset in args.presets:
            index = vqdb.Index(d, metric="ip", quantizer=preset)
            index.add(bs.base)
            tiny = vqdb.Index(d, metric="ip", quantizer=preset)
            tiny.add(bs.base[:64])
            m = divisor_at_most(d, 2 * sizes[preset])
            pq = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
            pq.train(bs.base)
            pq.add(bs.base)
            for k in args.ks:
                ph = phases_us(index, q, k, args.queries)
                tiny_us = p50_us(lambda x, k=k: tiny.search(x, k, threads=1), q, args.queries)
                pq_us = p50_us(lambda x, k=k, pq=pq: pq.search(x, k), q, args.queries)
                row = {
                    "preset": preset,
                    "k": k,
                    "bytes": sizes[preset],
                    **{
                        (f"{name[:-4]}_us_p10" if name.endswith("_p10") else f"{name}_us"): round(v, 1)
                        for name, v in ph.items()
                    },
                    "tiny_index_us": round(tiny_us[0], 1),
                    "tiny_index_us_p10": round(tiny_us[1], 1),
                    "faiss_pqfs": f"PQFastScan{m}x4 ({pq.code_size} B)",
                    "faiss_pqfs_us": round(pq_us[0], 1),
                    "faiss_pqfs_us_p10": round(pq_us[1], 1),
                }
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
            del index, pq
        flat = faiss.IndexFlatIP(d)
        flat.add(bs.base)
        flat_us = {k: round(p50_us(lambda x, k=k: flat.search(x, k), q, args.queries)[0], 1) for k in args.ks}
    info = machine_info(1)
    info["command"] = "python -m bench.search_overhead " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    info["loadavg_before"], info["loadavg_after"] = load0, os.getloadavg()
    name = "search_overhead" + (f"_{args.tag}" if args.tag else "")
    write_json(
        os.path.join(RESULTS_DIR, name + ".json"), {"info": info, "rows": rows, "faiss_flat_us": flat_us}
    )
    lines = [
        f"# One-query search: the Python around the scan, the scan, and FAISS ({bs.name}, {bs.base.shape[0]:,} "
        "vectors, flat, 1 thread)",
        "",
        f"Command: `{info['command']}`; {machine_line(info)}; load average {load0[0]:.2f} before / "
        f"{info['loadavg_after'][0]:.2f} after.",
        "",
        f"p50 (p10) of {args.queries} one-query calls, µs (the p10 is the steadier figure on a shared machine). "
        "*python* = the whole call minus the scan (`_scan.execute`); *kernel* = the scanner's `segment_topk` "
        "(inside *scan*); *tiny index* = the same call on a 64-row index. "
        f"FAISS `IndexFlatIP` one query (p50): {', '.join(f'k={k}: {v} µs' for k, v in flat_us.items())}.",
        "",
        "| preset | k | search | python | plan | scan | kernel | finish | tiny index | FAISS PQFastScan | search / FAISS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(r, name):
        return f"{r[name + '_us']:.0f} ({r[name + '_us_p10']:.0f})"

    for r in rows:
        lines.append(
            f"| {r['preset']} ({r['bytes']} B) | {r['k']} | **{cell(r, 'total')}** | **{cell(r, 'python')}** | "
            f"{cell(r, 'plan')} | {cell(r, 'scan')} | {cell(r, 'kernel')} | {cell(r, 'finish')} | "
            f"{cell(r, 'tiny_index')} | {cell(r, 'faiss_pqfs')} {r['faiss_pqfs']} | "
            f"{r['total_us'] / r['faiss_pqfs_us']:.2f}x ({r['total_us_p10'] / r['faiss_pqfs_us_p10']:.2f}x) |"
        )
    with open(os.path.join(RESULTS_DIR, name + ".md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
