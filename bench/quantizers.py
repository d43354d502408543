"""Quantizer benchmark: vqdb's quantizers vs FAISS and rabitqlib at equal bytes per vector, on real data.

    python -m bench.quantizers            # full run (~15-20 min on 2 cores); writes bench/results/quantizers.*
    python -m bench.quantizers --quick    # subsampled bases, few configs (< 2 min); bench/results/quick/

For every data set (``bench.common.load_sets``) and every method (vqdb TurboQuant / QJL / PolarQuant
configurations; FAISS SQ, PQ, PQFastScan, RaBitQ, RaBitQFastScan, LSH; rabitqlib 1-9 bits) the base is
encoded once, every query set is searched by a flat scan for the top 100, and recall@10, recall@1@10,
recall@1@100, bytes per vector and encode throughput are recorded. Outputs: ``quantizers.json``,
``quantizers.md`` (with the command and the machine) and one ``quantizers_<set>.png`` per data set.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse on a shared, oversubscribed machine (FAISS PQ training
# was 2.4x slower with 2 spinning threads than with 1); passive waiting keeps FAISS's figures fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from .common import (  # noqa: E402
    RESULTS_DIR,
    BenchSet,
    Stopwatch,
    load_sets,
    machine_info,
    recalls,
    set_threads,
    write_json,
)
from .peers import Method, faiss_methods, rabitqlib_methods  # noqa: E402
from .report_quantizers import markdown, plot, summarize  # noqa: E402

K = 100


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def methods_for(
    bs: BenchSet, threads: int, quick: bool, with_vqdb: bool, with_peers: bool, name_filter: list[str] | None
) -> list[Method]:
    methods: list[Method] = []
    if with_vqdb:
        from .vqdb_methods import vqdb_methods

        methods += vqdb_methods(bs.dim, quick)
    if with_peers:
        try:
            methods += faiss_methods(bs.dim, quick)
        except ImportError:
            log("faiss not installed: FAISS peers skipped")
        methods += rabitqlib_methods(bs.dim, threads, quick)
    if name_filter:
        methods = [m for m in methods if any(f in m.name for f in name_filter)]
    return methods


def run_set(bs: BenchSet, methods: list[Method], rows: list, skipped: list) -> None:
    n, d = bs.base.shape
    for m in methods:
        if m.build is None:
            skipped.append(
                {"dataset": bs.name, "method": m.name, "reason": m.params.get("error", "not built")}
            )
            log(f"  {m.name}: skipped ({m.params.get('error')})")
            continue
        try:
            built = m.build(bs.base, bs.metric)
        except Exception as exc:  # noqa: BLE001 - one failing config must not stop the run
            skipped.append({"dataset": bs.name, "method": m.name, "reason": f"build failed: {exc!r}"})
            log(f"  {m.name}: build failed: {exc!r}")
            traceback.print_exc()
            continue
        encode_s = built.add_s if m.encode_timing == "add" else built.train_s + built.add_s
        nbytes = float(built.bytes_per_vector if built.bytes_per_vector is not None else m.bytes_per_vector)
        for qs in bs.query_sets:
            try:
                with Stopwatch() as t:
                    ids = m.search(built.handle, qs.queries, K, bs.metric)
            except Exception as exc:  # noqa: BLE001
                skipped.append({"dataset": bs.name, "method": m.name, "reason": f"search failed: {exc!r}"})
                log(f"  {m.name}: search failed: {exc!r}")
                traceback.print_exc()
                continue
            row = {
                "dataset": bs.name,
                "metric": bs.metric,
                "n": n,
                "dim": d,
                "queries": qs.name,
                "n_queries": int(qs.queries.shape[0]),
                "method": m.name,
                "family": m.family,
                "library": m.library,
                "bytes": nbytes,
                "bits_per_dim": nbytes * 8 / d,
                **recalls(ids, qs.gt),
                "setup_s": built.setup_s,
                "train_s": built.train_s,
                "add_s": built.add_s,
                "encode_timing": m.encode_timing,
                "encode_s": encode_s,
                "encode_vps": n / encode_s if encode_s > 0 else math.inf,
                "search_s": t.s,
                "qps": qs.queries.shape[0] / t.s,
                "params": m.params,
            }
            rows.append(row)
            log(
                f"  {m.name:28s} {nbytes:7.1f} B  {qs.name:9s} r@10 {row['recall@10']:.4f} "
                f"r1@10 {row['recall@1@10']:.3f}  enc {encode_s:7.2f}s  search {t.s:6.2f}s"
            )
        del built
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quantizers", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="subsampled bases, 200 queries, few configs (< 2 min)"
    )
    ap.add_argument(
        "--only", nargs="*", help="data set name substrings (e.g. wordnet-minilm384 fashion-mnist-784-cos)"
    )
    ap.add_argument("--methods", nargs="*", help="method name substrings (e.g. turbo faiss-PQ rabitqlib)")
    ap.add_argument("--threads", type=int, default=None, help="threads for numba, FAISS and rabitqlib")
    ap.add_argument("--no-vqdb", action="store_true", help="peers only")
    ap.add_argument("--no-peers", action="store_true", help="vqdb only")
    ap.add_argument(
        "--out", default=None, help="output folder (default bench/results, quick: bench/results/quick)"
    )
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep the rows of data sets not run now from the existing quantizers.json (merge)",
    )
    args = ap.parse_args(argv)

    out_dir = args.out or (os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    threads = set_threads(args.threads)
    info = machine_info(threads)
    t0 = time.perf_counter()
    sets = load_sets(args.quick, args.only)
    log(f"loaded {len(sets)} data sets in {time.perf_counter() - t0:.1f} s; {threads} threads")
    rows: list[dict] = []
    skipped: list[dict] = []
    command = "python -m bench.quantizers " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    result = {
        "command": command.strip(),
        "quick": args.quick,
        "machine": info,
        "env": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "rows": rows,
        "skipped": skipped,
    }
    old_path = os.path.join(out_dir, "quantizers.json")
    old = None
    if args.update and os.path.exists(old_path):
        with open(old_path, encoding="utf-8") as f:
            old = json.load(f)
    result["runs"] = [{"command": command.strip(), "machine": info, "datasets": [bs.name for bs in sets]}]
    for i, bs in enumerate(sets):
        log(
            f"{bs.name}: base {bs.base.shape}, metric {bs.metric}, query sets "
            f"{[(q.name, q.queries.shape[0]) for q in bs.query_sets]}"
        )
        methods = methods_for(bs, threads, args.quick, not args.no_vqdb, not args.no_peers, args.methods)
        run_set(bs, methods, rows, skipped)
        for r in rows:
            r.setdefault("run_date", info["date"])
        _write(_merged(result, old), out_dir, t0, final=i == len(sets) - 1)
    log(f"wrote {out_dir}/quantizers.{{json,md}} in {time.perf_counter() - t0:.0f} s")
    return 0


def _merged(result: dict, old: dict | None) -> dict:
    """``result`` plus the rows of ``old`` whose (data set, method) this run did not produce (``--update``)."""
    if old is None:
        return result
    done = {(r["dataset"], r["method"]) for r in result["rows"]}
    done |= {(s["dataset"], s["method"]) for s in result["skipped"]}
    earlier = old.get("runs") or [
        {
            "command": old["command"],
            "machine": old["machine"],
            "datasets": sorted({r["dataset"] for r in old["rows"]}),
        }
    ]
    return {
        **result,
        "rows": [r for r in old["rows"] if (r["dataset"], r["method"]) not in done] + result["rows"],
        "skipped": [s for s in old.get("skipped", []) if (s["dataset"], s["method"]) not in done]
        + result["skipped"],
        "runs": earlier + result["runs"],
    }


def _write(result: dict, out_dir: str, t0: float, final: bool) -> None:
    """Write JSON + Markdown (+ plots when final); called after every data set so a cut-short run keeps its rows."""
    rows = result["rows"]
    result["complete"] = final
    result["summary"] = summarize(rows)
    result["plots"] = (
        [os.path.basename(p) for p in plot(rows, out_dir)] if rows and final else []
    )  # no machine paths
    result["wall_s"] = time.perf_counter() - t0
    write_json(os.path.join(out_dir, "quantizers.json"), result)
    with open(os.path.join(out_dir, "quantizers.md"), "w", encoding="utf-8") as f:
        f.write(markdown(result))


if __name__ == "__main__":
    sys.exit(main())
