"""Recall@10 of vqdb's own quantizers on the real sets (flat scan, fit on the base = centring).

    python -m bench.core_recall [--sets wordnet,fashion] [--presets turbo-1,turbo-2,...] [--out bench/results/core_recall.json]

Prints one JSON line per (set, preset) and writes them all to ``--out``. Owned by the core engineer;
the peer comparison lives in ``bench/quantizers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import vqdb
from vqdb import datasets
from vqdb.kernels import get_ops
from vqdb.testing import recall_at_k

DEFAULT = (
    "turbo-pca-1,turbo-pca-2,turbo-pca-3,turbo-pca-4,turbo-1,turbo-2,turbo-2.5,turbo-3,turbo-3.5,turbo-4,"
    "turbo-mse-2,turbo-mse-4,turbo-prod-3,qjl,polar"
)


def _load(name: str):
    if name == "wordnet":
        return datasets.wordnet_minilm()
    if name == "fashion":
        return datasets.fashion_mnist("cos")
    if name == "sample":
        return datasets.wordnet_sample()
    raise SystemExit(f"unknown set {name!r}")


def measure(ds, quantizer, k: int = 10) -> dict:
    ops = get_ops()
    t0 = time.perf_counter()
    quantizer.fit(ds.base)
    codes = quantizer.encode(ds.base)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = np.empty((ds.queries.shape[0], k), dtype=np.int64)
    prepared_all = ds.queries
    for s in range(0, prepared_all.shape[0], 250):
        scores = quantizer.score(prepared_all[s : s + 250], codes)
        found[s : s + 250] = ops.topk(scores, k)[0]
    t_scan = time.perf_counter() - t0
    return {
        "recall@10": round(recall_at_k(found, ds.gt_ids, k), 4),
        "bytes_per_vector": int(quantizer.code_size),
        "encode_vectors_per_s": round(ds.base.shape[0] / t_enc, 1),
        "scan_s": round(t_scan, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default="wordnet,fashion")
    ap.add_argument("--presets", default=DEFAULT)
    ap.add_argument("--out", default=os.path.join("bench", "results", "core_recall.json"))
    args = ap.parse_args(argv)
    rows = []
    for set_name in args.sets.split(","):
        ds = _load(set_name)
        if ds is None:
            print(json.dumps({"set": set_name, "skipped": "data not present"}))
            continue
        for preset in args.presets.split(","):
            q = vqdb.make_quantizer(preset, ds.dim)
            row = {"set": ds.name, "preset": preset, "backend": get_ops().name, **measure(ds, q)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
