"""Filtered-search latency against the number of metadata fields of an index (issue 17: one point with
2,000 payload keys made every search of its collection 6 ms -> 3.6 s).

WordNet sample (5,000 MiniLM-384 vectors, turbo-4, flat), one field ``b20`` (5% selectivity) on every
vector, plus 0 or 1,016 extra fields (4 points with 254 more keys: the per-vector limit is 256 and the
per-index limit 1,024, so 2,000 keys on one point are refused). Timed: one query, k = 10, filter
``b20 == 3``, given as a dict (aligns only the fields it names), as the same pyarrow Expression (aligns
only the fields it references, found by binding), and as a positional Expression ``pc.field(0) == 3``
(b20 is field 0; a positional reference cannot be narrowed, so every field is aligned: what every
Expression cost before). Median of 30 calls each, the three forms interleaved, after 5 warm-up calls of each.

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


def _medians_ms(fns, reps=30, warm=5) -> list[float]:
    """Median ms of each of ``fns``, timed in interleaved rounds (one call of each per round) after
    ``warm`` calls of every one, so that no form pays for a warm-up the next one profits from."""
    for fn in fns:
        for _ in range(warm):
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [1e3 * float(np.median(t)) for t in times]


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
        assert list(index.stats()["metadata_fields"])[0] == "b20"  # field 0 of the schema
        d, e, a = _medians_ms(
            [
                lambda: index.search(q, 10, filter={"b20": 3}),
                lambda: index.search(q, 10, filter=pc.field("b20") == 3),
                lambda: index.search(q, 10, filter=pc.field(0) == 3),
            ]
        )
        rows.append((fields, d, e, a))
    load = os.getloadavg()
    lines = [
        "# Filtered search against the number of metadata fields",
        "",
        "Command: `python -m bench.metadata_fields`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} (2 cores, shared)  ",
        "WordNet sample, 5,000 vectors, turbo-4 flat, one query, k = 10, filter b20 == 3 (5%); median of 30, the three forms interleaved.",
        "",
        "| fields in the index | dict filter ms | Expression `pc.field('b20') == 3` ms | positional Expression `pc.field(0) == 3` (aligns every field) ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {f} | {d:.2f} | {e:.2f} | {a:.2f} |" for f, d, e, a in rows]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS_DIR, "metadata_fields.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
