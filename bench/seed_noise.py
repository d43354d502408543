"""How much of the default's gap to RaBitQ is the random rotation's draw? Recall over several seeds.

    python -m bench.seed_noise                         # the points where turbo-N trailed a RaBitQ peer
    python -m bench.seed_noise --seeds 5 --only fashion-mnist-784-l2sq --bits 1

At 1 bit the ``turbo-1`` code is RaBitQ's (sign of the rotated residual, the factor ||r|| / <u, ĉ>, the
query centred like the data), so a recall gap between them is the rotation's draw, not the estimator. This
scores, for each (data set, bits) point, the vqdb preset ``turbo-N`` (FHT-Kac rotation, seed s) and FAISS
``RR,RaBitQ`` (dense random rotation ``RandomRotationMatrix.init(s)``, 8-bit query quantization as in
``bench.peers``) for seeds 0 .. S-1, on the dev queries split in two fixed halves (even / odd query
rows): recall@10 mean and sample std over the seeds per half, and the paired difference (same seed
index, same half). Flat scans; the ground truth as shipped (``bench.common.load_sets``).
Writes ``bench/results/seed_noise.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .common import RESULTS_DIR, load_sets, machine_info, machine_line, recalls, set_threads, write_json
from .vqdb_methods import scan

# (data set, query set, bits): where bench/results/default_vs_peers.md had turbo-N behind FAISS RR+RaBitQ
# or rabitqlib at the same bits
POINTS = [
    ("fashion-mnist-784-l2sq", "dev", 1),
    ("fashion-mnist-784-cos", "dev", 1),
    ("fashion-mnist-784-cos", "dev", 2),
    ("wordnet-minilm384", "words", 1),
    ("wordnet-mpnet768", "passages", 1),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def vqdb_ids(base, queries, metric: str, bits: int, seed: int) -> np.ndarray:
    import vqdb

    q = vqdb.make_quantizer(f"turbo-{bits}", base.shape[1], seed=seed).fit(base)
    return scan(q, q.encode(base), queries, 100, metric)


def vqdb_dense_ids(base, queries, metric: str, bits: int, seed: int) -> np.ndarray:
    """The turbo-N estimator behind a dense Haar rotation instead of FHT-Kac (the rotation's share)."""
    import vqdb

    q = vqdb.TurboQuantizer(base.shape[1], bits, rotation="dense", centred_query=True, seed=seed).fit(base)
    return scan(q, q.encode(base), queries, 100, metric)


def faiss_ids(base, queries, metric: str, bits: int, seed: int) -> np.ndarray:
    import faiss

    d = base.shape[1]
    mt = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    rr = faiss.RandomRotationMatrix(d, d)
    rr.init(seed)  # trained: IndexPreTransform.train keeps this draw
    ix = faiss.IndexRaBitQ(d, mt, bits)
    ix.qb = 8
    index = faiss.IndexPreTransform(rr, ix)
    index.train(base)
    index.add(base)
    _, ids = index.search(queries, 100)
    return ids.astype(np.int64)


METHODS = (("vqdb-turbo", vqdb_ids), ("vqdb-turbo-dense", vqdb_dense_ids), ("faiss-RR+RaBitQ", faiss_ids))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.seed_noise", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="data set name substrings")
    ap.add_argument("--bits", type=int, nargs="*", help="keep only these bit widths")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="output stem (default bench/results/seed_noise)")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg())
    points = [
        p
        for p in POINTS
        if (args.only is None or any(o in p[0] for o in args.only))
        and (args.bits is None or p[2] in args.bits)
    ]
    sets = {bs.name: bs for bs in load_sets(only=sorted({p[0] for p in points}))}
    rows = []
    for set_name, qs_name, bits in points:
        bs = sets.get(set_name)
        if bs is None:
            log(f"skip {set_name}: not in ../shared/data")
            continue
        qs = next(q for q in bs.query_sets if q.name == qs_name)
        halves = {"even": np.arange(0, qs.queries.shape[0], 2), "odd": np.arange(1, qs.queries.shape[0], 2)}
        for method, fn in METHODS:
            for seed in range(args.seeds):
                ids = fn(bs.base, qs.queries, bs.metric, bits, seed)
                for half, sel in halves.items():
                    rec = recalls(ids[sel], qs.gt[sel])["recall@10"]
                    rows.append(
                        dict(
                            set=set_name, queries=qs_name, bits=bits, method=method, seed=seed, half=half,
                            recall10=rec,
                        )
                    )  # fmt: skip
                log(
                    f"{set_name}/{qs_name} {bits}b {method} seed {seed}: {rows[-2]['recall10']}, {rows[-1]['recall10']}"
                )
    info = machine_info(threads)
    out = args.out or os.path.join(RESULTS_DIR, "seed_noise")
    cmd = "python -m bench.seed_noise" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    result = {
        "command": cmd.strip(),
        "machine": info,
        "load_start": load_start,
        "load_end": list(os.getloadavg()),
        "wall_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    write_json(out + ".json", result)
    with open(out + ".md", "w") as f:
        f.write(_markdown(result))
    log(f"wrote {out}.md")
    return 0


def _markdown(result: dict) -> str:
    rows = result["rows"]
    la, lb = result["load_start"], result["load_end"]
    lines = [
        "# Recall@10 over rotation seeds: vqdb turbo-N vs FAISS RR+RaBitQ (same bits)",
        "",
        f"Command: `{result['command']}`  ",
        machine_line(result["machine"]) + "  ",
        f"Load average at start {la[0]:.1f}, {la[1]:.1f}, {la[2]:.1f}; at end {lb[0]:.1f}, {lb[1]:.1f}, "
        f"{lb[2]:.1f}; {result['wall_s']:.0f} s.",
        "",
        "Dev queries split into two fixed halves (even / odd rows). Per half: mean ± sample std of recall@10 over "
        "the seeds, and the paired difference vqdb − FAISS (seed i vs seed i) with its std.",
        "",
        "| data set | queries | bits | half | seeds | vqdb turbo-N (FHT-Kac) | same, dense Haar rotation "
        "| FAISS RR+RaBitQ | Δ turbo-N − FAISS (paired) |",
        "|---|---|---|---|---:|---|---|---|---|",
    ]
    keys = sorted(
        {(r["set"], r["queries"], r["bits"], r["half"]) for r in rows}, key=lambda k: (k[0], k[2], k[3])
    )
    for key in keys:
        sel = [r for r in rows if (r["set"], r["queries"], r["bits"], r["half"]) == key]

        def get(m, sel=sel):
            return np.array([r["recall10"] for r in sorted(sel, key=lambda r: r["seed"]) if r["method"] == m])

        v, h, f = get("vqdb-turbo"), get("vqdb-turbo-dense"), get("faiss-RR+RaBitQ")
        n = min(v.size, f.size)
        if n == 0:
            continue
        dv = v[:n] - f[:n]

        def ms(a):
            return f"{a.mean():.4f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.4f}"

        hd = ms(h) if h.size else "–"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {n} | {ms(v)} | {hd} | {ms(f)} | {ms(dv)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
