"""Filtered-search latency against the number of metadata fields of an index (issue 17: one point with
2,000 payload keys made every search of its collection 6 ms -> 3.6 s).

WordNet sample (5,000 MiniLM-384 vectors, turbo-4, flat), one field ``b20`` (5% selectivity) on every
vector, plus 0 or 1,016 extra fields (4 points with 254 more keys: the per-vector limit is 256 and the
per-index limit 1,024, so 2,000 keys on one point are refused). Timed: one query, k = 10, filter
``b20 == 3``, given as a dict (aligns only the fields it names) and as the same pyarrow Expression
(aligns every field of the index, as every filter did before). Median of 30 calls after 3 warm-ups.

Run: ``python -m bench.metadata_fields``
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow.compute as pc

import vqdb
from bench.common import RESULTS_DIR
from vqdb import datasets


def _median_ms(fn, reps=30, warm=3) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> int:
    ds = datasets.wordnet_sample()
    n = ds.base.shape[0]
    rows = []
    for extra in (0, 1020):
        index = vqdb.Index(ds.dim, metric="ip", quantizer="turbo-4")
        index.add(ds.base, metadata=[{"b20": i % 20} for i in range(n)])
        for p in range(extra // 255):
            index.upsert(
                ds.base[p : p + 1],
                ids=[p],
                metadata=[{"b20": p % 20, **{f"x{p}_{j}": j for j in range(254)}}],
            )
        fields = len(index.stats()["metadata_fields"])
        q = ds.queries[:1]
        d = _median_ms(lambda: index.search(q, 10, filter={"b20": 3}))
        e = _median_ms(lambda: index.search(q, 10, filter=pc.field("b20") == 3))
        rows.append((fields, d, e))
    load = os.getloadavg()
    lines = [
        "# Filtered search against the number of metadata fields",
        "",
        "Command: `python -m bench.metadata_fields`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} (2 cores, shared)  ",
        "WordNet sample, 5,000 vectors, turbo-4 flat, one query, k = 10, filter b20 == 3 (5%); median of 30.",
        "",
        "| fields in the index | dict filter (aligns the fields it names) ms | Expression filter (aligns every field, as all filters did before) ms |",
        "|---|---|---|",
    ]
    lines += [f"| {f} | {d:.2f} | {e:.2f} |" for f, d, e in rows]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS_DIR, "metadata_fields.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
