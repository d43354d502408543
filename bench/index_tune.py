"""``vqdb.Index.tune`` on the full WordNet set: which default it picks, and what that default gives on
queries it did not see.

    python -m bench.index_tune [--target 0.95] [--nlist 1360] [--tune-queries 500]

Builds an IVF turbo-4 index with stored float16 vectors over WordNet-MiniLM-384 (115,659 x 384), tunes
it on the first ``--tune-queries`` dev word queries (their exact ground truth given), then searches the
remaining dev queries with the persisted default. Writes ``bench/results/index_tune.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .common import RESULTS_DIR, machine_info, machine_line, write_json


def main(argv: list[str] | None = None) -> int:
    import vqdb
    from vqdb import datasets
    from vqdb.testing import recall_at_k

    ap = argparse.ArgumentParser(prog="python -m bench.index_tune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--nlist", type=int, default=1360)
    ap.add_argument("--tune-queries", type=int, default=500)
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "index_tune"))
    args = ap.parse_args(argv)
    ds = datasets.wordnet_minilm("words")
    if ds is None:
        print("needs ../shared/data/wordnet-minilm384", file=sys.stderr)
        return 2
    info = machine_info(2)
    index = vqdb.Index(ds.base.shape[1], metric="ip", quantizer="turbo-4", ivf=args.nlist, store_vectors=True)
    t = time.perf_counter()
    index.add(ds.base)
    build_s = time.perf_counter() - t
    m = args.tune_queries
    t = time.perf_counter()
    report = index.tune(ds.queries[:m], 10, target_recall=args.target, truth=ds.gt_ids[:m])
    tune_s = time.perf_counter() - t
    held, truth = ds.queries[m:], ds.gt_ids[m:]
    index.search(held[:1], 10)
    t = time.perf_counter()
    res = index.search(held, 10)
    held_s = time.perf_counter() - t
    out = {
        "command": "python -m bench.index_tune " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "n": int(ds.base.shape[0]),
        "nlist": args.nlist,
        "build_s": round(build_s, 2),
        "tune_s": round(tune_s, 2),
        "tune": report,
        "held_out": {
            "queries": int(held.shape[0]),
            "recall@10": round(recall_at_k(res.ids, truth, 10), 4),
            "qps": round(held.shape[0] / held_s, 1),
        },
    }
    write_json(args.out + ".json", out)
    c, h = report["chosen"], out["held_out"]
    lines = [
        f"# Index.tune on WordNet-MiniLM-384 ({out['n']:,} x 384, IVF{args.nlist}, turbo-4 + float16 vectors)",
        "",
        f"Command: `{out['command']}`  ",
        f"Machine: {machine_line(info)}",
        "",
        f"Build (add + k-means) {out['build_s']} s; tune on {m} dev queries (ground truth given) {out['tune_s']} s; "
        f"target recall@10 {args.target}.",
        "",
        f"**Chosen default:** nprobe {c['nprobe']}, re-rank {c['rerank']}: recall@10 {c['recall']} at {c['qps']:,} QPS "
        f"on the tuning queries; on the other {h['queries']} dev queries {h['recall@10']} at {h['qps']:,} QPS "
        "(all queries in one call, all threads).",
        "",
        "| nprobe | re-rank | recall@10 | QPS |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['nprobe']} | {s['rerank']} | {s['recall']} | {s['qps']:,} |" for s in report["settings"]]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
