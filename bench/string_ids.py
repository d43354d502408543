"""String ids vs integer ids in ``vqdb.Index``: add / search / get / upsert / delete / reopen throughput,
and the ratio string ÷ integer (1.0 = no cost; above 1 = string ids take longer).

    python -m bench.string_ids [--quick] [--n 115659]

The same WordNet-MiniLM-384 vectors (115,659 x 384, real) go into two indexes that differ only in
their ids: int64 ``0..n-1``, or UUID strings (``uuid5`` of the row number, 36 characters). Grid:
flat and IVF (turbo-4, float16 vectors stored, re-rank off), k = 10 and 100, 1 and 2 threads, one
query at a time and a batch of 1,000. Every timing is the best of ``--repeat`` runs. Writes
``bench/results/string_ids.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

import numpy as np

from .common import RESULTS_DIR, best_time, machine_info, machine_line, set_threads, write_json


def uuid_ids(n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"wordnet/{i}")) for i in range(n)]
    return out


def measure(kind: str, ids: np.ndarray, x: np.ndarray, q: np.ndarray, *, ivf, repeat: int, tmp: str) -> dict:
    """Seconds of every operation on one index whose ids are ``ids``."""
    import vqdb

    n = x.shape[0]
    out: dict = {}
    rng = np.random.default_rng(0)
    pick = rng.choice(n, 1000, replace=False)

    def build():
        index = vqdb.Index(x.shape[1], metric="ip", quantizer="turbo-4", ivf=ivf, store_vectors=True)
        index.add(x, ids=ids)
        return index

    built = []
    out["add_s"] = best_time(lambda: built.append(build()), repeat)
    index = built[-1]
    del built[:-1]
    for threads in (1, 2):
        set_threads(threads)
        for k in (10, 100):
            index.search(q[:1], k)
            out[f"search_batch_t{threads}_k{k}_s"] = best_time(lambda: index.search(q, k), repeat)
            one = q[:200]
            out[f"search_one_t{threads}_k{k}_s"] = best_time(
                lambda: [index.search(one[i : i + 1], k) for i in range(one.shape[0])], repeat
            )
    set_threads(2)
    some = ids[pick]
    out["get_1000_s"] = best_time(lambda: index.get(some), repeat)
    out["get_one_x200_s"] = best_time(lambda: [index.get(some[i : i + 1]) for i in range(200)], repeat)
    out["contains_1000_s"] = best_time(lambda: index.contains(some), repeat)
    out["upsert_1000_s"] = best_time(lambda: index.upsert(x[pick], some), repeat)
    t = time.perf_counter()
    index.delete(some)
    out["delete_1000_s"] = time.perf_counter() - t
    path = os.path.join(tmp, f"{kind}-{'ivf' if ivf else 'flat'}")
    index.save(path)
    index.close()

    def reopen():
        vqdb.open(path, read_only=True).close()

    out["open_s"] = best_time(reopen, repeat)
    out["disk_bytes"] = int(sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)))
    shutil.rmtree(path)
    return out


def main(argv: list[str] | None = None) -> int:
    from vqdb import datasets

    ap = argparse.ArgumentParser(prog="python -m bench.string_ids", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 vectors, 1 repeat")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "string_ids"))
    args = ap.parse_args(argv)
    ds = datasets.wordnet_minilm("words")
    if ds is None:
        print("needs ../shared/data/wordnet-minilm384", file=sys.stderr)
        return 2
    n = args.n or (20_000 if args.quick else ds.base.shape[0])
    repeat = 1 if args.quick else args.repeat
    x = np.ascontiguousarray(ds.base[:n])
    q = np.ascontiguousarray(ds.queries[:1000])
    info = machine_info(2)
    load_before = os.getloadavg()
    int_ids, str_ids = np.arange(n, dtype=np.int64), uuid_ids(n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ivf in (False, True):
            got = {
                "int": measure("int", int_ids, x, q, ivf=ivf, repeat=repeat, tmp=tmp),
                "str": measure("str", str_ids, x, q, ivf=ivf, repeat=repeat, tmp=tmp),
            }
            for op in got["int"]:
                a, b = got["int"][op], got["str"][op]
                rows.append(
                    {
                        "index": "ivf" if ivf else "flat",
                        "op": op,
                        "int": round(a, 6) if isinstance(a, float) else a,
                        "str": round(b, 6) if isinstance(b, float) else b,
                        "str_over_int": round(b / a, 3) if a else None,
                    }
                )
                print(rows[-1], flush=True)
    out = {
        "command": "python -m bench.string_ids " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "n": n,
        "queries": int(q.shape[0]),
        "ids": {"int": "int64 0..n-1", "str": "uuid5 strings, 36 characters"},
        "rows": rows,
    }
    write_json(args.out + ".json", out)
    lines = [
        "# String ids vs integer ids (vqdb.Index, turbo-4, float16 vectors stored)",
        "",
        f"`{out['command']}` — {machine_line(info)}; load average before {out['loadavg_before']}, "
        f"after {out['loadavg_after']}; n = {n:,} WordNet-MiniLM-384 vectors, 1,000 dev word queries "
        "(200 for one-at-a-time). Seconds, best of "
        f"{repeat}; `str/int` above 1 means string ids are slower.",
        "",
        "| index | operation | int ids (s) | UUID ids (s) | str/int |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['index']} | {r['op']} | {r['int']} | {r['str']} | {r['str_over_int']} |")
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
