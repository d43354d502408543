"""``vqdb bench``: a ~30-second benchmark of the quantizer presets on the bundled real WordNet sample.

For each preset: fit (the base mean) + encode the 5,000 MiniLM-384 passage vectors, score the 400 word
queries against every code (flat scan), and report bytes per vector, recall@10 against exact search and
encode vectors/s — next to FAISS ``IndexScalarQuantizer`` (4/8-bit), ``IndexPQ`` and ``IndexPQFastScan``
at similar bytes when faiss is installed. The full benchmark on the large real sets is
``python -m bench.quantizers`` (see ``bench/results/quantizers.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DEFAULT_PRESETS = (
    "turbo-1",
    "turbo-2",
    "turbo-4",
    "turbo-pca-1",
    "turbo-pca-2",
    "turbo-pca-4",
    "turbo-prod-3",
    "qjl",
    "polar",
)
PEERS = ("sq4", "sq8", "pq", "pqfs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--presets",
        nargs="+",
        default=list(DEFAULT_PRESETS),
        metavar="NAME",
        help=f"vqdb presets to run (default: {' '.join(DEFAULT_PRESETS)}); see vqdb.presets(dim)",
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        choices=PEERS,
        metavar="PEER",
        help=f"FAISS peers to run when faiss is installed, any of {' '.join(PEERS)} "
        "(default: all; give none to skip)",
    )
    parser.add_argument(
        "--n-base", type=int, default=None, help="use the first N base vectors (default: all 5,000)"
    )
    parser.add_argument(
        "--n-queries", type=int, default=None, help="use the first N queries (default: all 400)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for numba and FAISS (default: numba's)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON to PATH")


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _set_threads(n: int | None) -> int:
    try:
        import numba

        n = int(n or numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n)
    except ImportError:  # numba is a core dependency, but keep the bench usable without it
        import os

        n = int(n or os.cpu_count() or 1)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def _run_vqdb(name: str, base: np.ndarray, queries: np.ndarray, gt: np.ndarray) -> dict:
    from .presets import make_quantizer
    from .testing import recall_at_k

    q = make_quantizer(name, base.shape[1])
    q.score(queries[:1], q.encode(base[:8]))  # load/compile the kernels outside the timing
    t0 = time.perf_counter()
    q.fit(base)
    codes = q.encode(base)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = _topk(q.score(queries, codes), 10)
    t_search = time.perf_counter() - t0
    return {
        "method": name,
        "library": "vqdb",
        "bytes": int(q.code_size),
        "recall@10": recall_at_k(ids, gt, 10),
        "encode_vps": base.shape[0] / t_enc,
        "qps": queries.shape[0] / t_search,
    }


def _faiss_indexes(d: int, peers: list[str]):
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    m8 = max(m for m in range(1, d + 1) if d % m == 0 and m <= d // 8)  # ~1 bit/dim
    m4 = max(m for m in range(1, d + 1) if d % m == 0 and m <= d // 4)  # 4-bit codes, ~1 bit/dim
    out = []
    if "sq4" in peers:
        out.append(
            ("faiss-SQ4", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_4bit, ip), "add")
        )
    if "sq8" in peers:
        out.append(
            ("faiss-SQ8", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip), "add")
        )
    if "pq" in peers:
        out.append((f"faiss-PQ{m8}x8", lambda: faiss.IndexPQ(d, m8, 8, ip), "train+add"))
    if "pqfs" in peers:
        out.append((f"faiss-PQFastScan{m4}x4", lambda: faiss.IndexPQFastScan(d, m4, 4, ip), "train+add"))
    return out


def _run_faiss(name: str, make, timed: str, base: np.ndarray, queries: np.ndarray, gt: np.ndarray) -> dict:
    from .testing import recall_at_k

    index = make()
    if hasattr(index, "pq"):
        index.pq.cp.min_points_per_centroid = 1  # 5,000 vectors: silence the "too few points" warning
    t0 = time.perf_counter()
    index.train(base)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.add(base)
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ids = index.search(queries, 10)
    t_search = time.perf_counter() - t0
    t_enc = t_add if timed == "add" else t_train + t_add
    return {
        "method": name,
        "library": "faiss",
        "bytes": int(index.sa_code_size()),
        "recall@10": recall_at_k(ids, gt, 10),
        "encode_vps": base.shape[0] / t_enc,
        "qps": queries.shape[0] / t_search,
        "encode_timed": timed,
    }


def _exact(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from .datasets import exact_neighbours

    return exact_neighbours(base, queries, k, "ip")


def run(args: argparse.Namespace) -> int:
    import os

    # OpenMP threads that spin while waiting make FAISS's k-means 10-100x slower on a busy machine;
    # this process only benchmarks, so wait passively (must be set before the OpenMP runtime loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .datasets import wordnet_sample

    t_all = time.perf_counter()
    threads = _set_threads(args.threads)
    ds = wordnet_sample()
    base, queries, gt = ds.base, ds.queries, ds.gt_ids
    if args.n_base is not None and args.n_base < base.shape[0]:
        base = base[: max(10, args.n_base)]
    if args.n_queries is not None:
        queries = queries[: max(1, args.n_queries)]
    if base is not ds.base:
        gt = _exact(base, queries, 10)
    else:
        gt = gt[: queries.shape[0]]
    print(
        f"vqdb bench: {ds.name}, {base.shape[0]:,} real MiniLM-384 passage vectors, {queries.shape[0]} word "
        f"queries, flat scan, exact ground truth; {threads} threads",
        flush=True,
    )

    rows = []
    for name in args.presets:
        try:
            rows.append(_run_vqdb(name, base, queries, gt))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other presets
            print(f"  {name}: failed: {exc}", file=sys.stderr)
    try:
        import faiss  # noqa: F401

        peers = _faiss_indexes(base.shape[1], args.peers or [])
    except ImportError:
        peers = []
        if args.peers:
            print("  (faiss not installed: FAISS peers skipped; pip install faiss-cpu)", file=sys.stderr)
    for name, make, timed in peers:
        rows.append(_run_faiss(name, make, timed, base, queries, gt))

    print(f"{'method':24s} {'bytes/vec':>9s} {'recall@10':>9s} {'encode vec/s':>13s} {'queries/s':>10s}")
    for r in sorted(rows, key=lambda r: (r["bytes"], r["library"] != "vqdb", r["method"])):
        note = f"  ({r['encode_timed']})" if r.get("encode_timed") == "train+add" else ""
        print(
            f"{r['method']:24s} {r['bytes']:9d} {r['recall@10']:9.3f} {r['encode_vps']:13,.0f} {r['qps']:10,.0f}{note}"
        )
    print(f"done in {time.perf_counter() - t_all:.1f} s; full benchmark: python -m bench.quantizers")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "threads": threads,
                    "n_base": int(base.shape[0]),
                    "n_queries": int(queries.shape[0]),
                    "rows": rows,
                },
                f,
                indent=1,
            )
    return 0 if rows else 1
