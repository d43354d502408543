"""One-query search latency, phase by phase (validation, plan, rotation, LUTs, scan, re-score, result), vs FAISS.

    python -m bench.search_overhead                      # WordNet-MiniLM-384 (115,659), turbo-1/2/4, k 10 and 100
    python -m bench.search_overhead --presets turbo-4 --tag before

In one process on one thread (numba, BLAS and FAISS's OpenMP at 1): a flat ``vqdb.Index`` of every base
vector, one query per ``search`` call (``--queries`` held-out word queries, each timed with ``perf_counter``;
p50 and p10 reported). Each call's time is split by timers around the functions ``Index.search`` calls
(each timer costs ~0.3 µs, included in the call):

* *entry*: everything outside ``_scan.execute`` and ``_scan.finish`` -- validation, the (memoised) plan
  and scan context, the top-k buffers, the result object; *plan*: ``_plan.plan_search`` inside it (0 once
  the plan is memoised);
* *rotation*: the quantizer's ``prepare`` (query rotation); *LUTs*: the rest of ``FastScanner.prepare``
  (LUT build and quantization); *centre*: the exact centre terms;
* *scan*: the fast-scan / popcount kernel calls; *re-score*: the kernels that flush the last candidates
  and merge the heaps (``finish_lut`` / ``merge_pairs``); *dispatch*: the scanner's Python around them
  (``segment_topk`` minus both); *other*: the rest of ``_scan.execute`` (thread setting, pushes);
* *result*: ``_scan.finish`` (id mapping, order, padding);
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


# (module path, attribute, phase): the functions timed inside one call (inclusive times)
TIMED = (
    ("vqdb.index._plan", "plan_search", "plan"),
    ("vqdb.index._scan", "execute", "execute"),
    ("vqdb.index._scan", "finish", "result"),
    ("vqdb.index._scan.ScanContext", "centre_terms", "centre"),
    ("vqdb.kernels.scanner.FastScanner", "prepare", "prepare"),
    ("vqdb.kernels.scanner.FastScanner", "segment_topk", "segment_topk"),
    ("vqdb.kernels.fastscan", "scan_lut", "scan"),
    ("vqdb.kernels.fastscan", "scan_lut_serial", "scan"),
    ("vqdb.kernels.fastscan", "scan_bits", "scan"),
    ("vqdb.kernels.fastscan", "scan_bits_serial", "scan"),
    ("vqdb.kernels.fastscan", "finish_lut", "rescore"),
    ("vqdb.kernels.fastscan", "finish_lut_serial", "rescore"),
    ("vqdb.kernels.fastscan", "merge_pairs", "rescore"),
    ("vqdb.kernels.fastscan", "merge_pairs_serial", "rescore"),
)
PHASES = ("entry", "plan", "rotation", "luts", "centre", "scan", "rescore", "dispatch", "other", "result")


def _resolve(path: str):
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def phases_us(index, queries: np.ndarray, k: int, n: int) -> dict:
    """p50 and p10 of each phase (see the module docstring) over ``n`` one-query calls (µs)."""
    timer = PhaseTimer()
    quantizer_cls = type(index._quantizer)
    rows: dict[str, list] = {name: [] for name in ("total", *PHASES)}
    with contextlib.ExitStack() as stack:
        for path, attr, name in TIMED:
            stack.enter_context(timer.wrap(_resolve(path), attr, name))
        stack.enter_context(timer.wrap(quantizer_cls, "prepare", "rotation"))
        index.search(queries[:1], k, threads=1)
        for i in range(n):
            timer.t = {}
            q = queries[i % queries.shape[0]][None, :]
            t0 = time.perf_counter()
            index.search(q, k, threads=1)
            total = time.perf_counter() - t0
            t = timer.t.get
            inner = t("prepare", 0.0) + t("centre", 0.0) + t("segment_topk", 0.0)
            row = {
                "total": total,
                "entry": total - t("execute", 0.0) - t("result", 0.0),
                "plan": t("plan", 0.0),
                "rotation": t("rotation", 0.0),
                "luts": t("prepare", 0.0) - t("rotation", 0.0),
                "centre": t("centre", 0.0),
                "scan": t("scan", 0.0),
                "rescore": t("rescore", 0.0),
                "dispatch": t("segment_topk", 0.0) - t("scan", 0.0) - t("rescore", 0.0),
                "other": t("execute", 0.0) - inner,
                "result": t("result", 0.0),
            }
            for name, v in row.items():
                rows[name].append(v)
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
        f"# One-query search phase by phase, and FAISS ({bs.name}, {bs.base.shape[0]:,} "
        "vectors, flat, 1 thread)",
        "",
        f"Command: `{info['command']}`; {machine_line(info)}; load average {load0[0]:.2f} before / "
        f"{info['loadavg_after'][0]:.2f} after.",
        "",
        f"p50 (p10) of {args.queries} one-query calls, µs (the p10 is the steadier figure on a shared machine). "
        "Phases as in the module docstring of `bench/search_overhead.py` (*entry*: validation, memoised plan, "
        "buffers and result object; *scan*: the fast-scan kernel; *re-score*: the last flush and heap merge; "
        "*dispatch*: the scanner's Python around them); *tiny index* = the same call on a 64-row index. "
        f"FAISS `IndexFlatIP` one query (p50): {', '.join(f'k={k}: {v} µs' for k, v in flat_us.items())}.",
        "",
        "| preset | k | search | "
        + " | ".join(PHASES)
        + " | tiny index | FAISS PQFastScan | search / FAISS |",
        "|---|---|" + "---|" * (len(PHASES) + 4),
    ]

    def cell(r, name):
        return f"{r[name + '_us']:.0f} ({r[name + '_us_p10']:.0f})"

    for r in rows:
        lines.append(
            f"| {r['preset']} ({r['bytes']} B) | {r['k']} | **{cell(r, 'total')}** | "
            + " | ".join(cell(r, name) for name in PHASES)
            + f" | {cell(r, 'tiny_index')} | {cell(r, 'faiss_pqfs')} {r['faiss_pqfs']} | "
            f"{r['total_us'] / r['faiss_pqfs_us']:.2f}x ({r['total_us_p10'] / r['faiss_pqfs_us_p10']:.2f}x) |"
        )
    with open(os.path.join(RESULTS_DIR, name + ".md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
