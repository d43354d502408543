"""Encode throughput: vqdb's quantizers vs FAISS's encoders, 1 and 2 threads, one process.

    python -m bench.encode_speed                 # ~3-5 min on 2 shared cores; writes bench/results/encode_speed.{json,md}
    python -m bench.encode_speed --quick         # 20k rows per set, for a smoke run (bench/results/quick/)

Data: the full WordNet-MiniLM-384 base (115,659 x 384, ``vqdb.datasets.wordnet_minilm``) and Fashion-MNIST
as cosine (60,000 x 784, rows normalised; ``vqdb.datasets.fashion_mnist``); without ``../shared`` the
bundled 5,000-row WordNet sample stands in. For every thread count (numba, BLAS and FAISS's OpenMP
set to it):

* vqdb: ``turbo-1/2/4``, ``turbo-hadamard-4``, ``turbo-prod-3`` (fit = the mean, then encode),
  ``turbo-4-dense-plain`` (the turbo-4 preset before the FHT-Kac rotation and the centred query),
  ``turbo-pca-1/2/4`` (fit = one covariance pass + eigendecomposition, timed apart from encode),
  ``qjl``, ``polar``. Encode is timed on the whole base after a warm-up call (numba compiled or loaded
  from cache, encode thread pool started), best of ``--repeat``.
* ``vqdb.Index(d, quantizer="turbo-4").add(base)`` in memory, the path a service takes: ``flat``,
  ``ivf`` (the coarse k-means of the first add included) and ``ivf-trained`` (lists trained by a first,
  untimed add of n/5 rows; the other 4n/5 added in one call).
* FAISS: ``IndexScalarQuantizer`` SQ4 / SQ8 (train = per-dim ranges, + add), ``IndexPQ`` M = d/8 x 8
  bits and ``IndexPQFastScan`` M = d/4 x 4 bits (train on FAISS's sample capped as in
  ``bench.peers``: 16,384 rows, + add), ``IndexRaBitQ`` 1 and 4 bits behind a random rotation
  (train + add), i.e. the byte budgets of vqdb's 1-4 bit codes. Slow adders (PQ, multi-bit RaBitQ) add
  at most ``--max-add-rows`` rows and their rate is that of the timed rows (add is per-vector work).

Rates are vectors per second of the base; ``encode_vps`` (vqdb encode alone / FAISS add alone) and
``total_vps`` (fit or train + encode or add). Ratios are to FAISS SQ4 (add) and to FAISS PQ (train + add)
at the same thread count.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # as bench.quantizers: spinning OpenMP threads collapse on a busy machine

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from vqdb import (
    TurboQuantizer,  # noqa: E402
    datasets,  # noqa: E402
)
from vqdb.presets import make_quantizer  # noqa: E402

from .common import RESULTS_DIR, best_wall_cpu, machine_info, set_threads  # noqa: E402

VQDB = (
    "turbo-1",
    "turbo-2",
    "turbo-4",
    "turbo-pca-1",
    "turbo-pca-2",
    "turbo-pca-4",
    "turbo-hadamard-4",
    "turbo-prod-3",
    "qjl",
    "polar",
    "turbo-4-dense-plain",
)
# configurations that are not presets: the turbo-4 preset as it was before the FHT-Kac rotation and the
# centred-query estimator (dense Haar rotation, no β), for the before/after ratio in one run
EXTRA = {"turbo-4-dense-plain": lambda d: TurboQuantizer(d, 4)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(quick: bool) -> list[tuple[str, np.ndarray]]:
    """[(name, base float32 C-contiguous)]: full WordNet-MiniLM-384 and Fashion-MNIST (cosine), else the sample."""
    out = []
    wn = datasets.wordnet_minilm()
    if wn is not None:
        out.append(("wordnet-minilm384", wn.base))
    fm = datasets.fashion_mnist("l2sq")
    if fm is not None:
        base = fm.base / np.linalg.norm(fm.base, axis=1, keepdims=True)
        out.append(("fashion-mnist-784-cos", np.ascontiguousarray(base, dtype=np.float32)))
    if not out:
        out.append(("wordnet-sample", datasets.wordnet_sample().base))
    if quick:
        out = [(n, np.ascontiguousarray(b[:20000])) for n, b in out]
    return out


def time_vqdb(name: str, base: np.ndarray, repeat: int) -> dict:
    q = EXTRA[name](base.shape[1]) if name in EXTRA else make_quantizer(name, base.shape[1])
    t = time.perf_counter()
    q.fit(base)
    fit_s = time.perf_counter() - t
    q.encode(base[:5000])  # warm-up: numba compile / cache load, encode thread pool start (several tiles)
    enc_s, cpu_s = best_wall_cpu(lambda: q.encode(base), repeat)
    n = base.shape[0]
    return {
        "method": name,
        "library": "vqdb",
        "bytes": q.code_size,
        "fit_s": fit_s,
        "encode_s": enc_s,
        "encode_cpu_s": cpu_s,
        "encode_vps": n / enc_s,
        "total_vps": n / (fit_s + enc_s),
        "rows_timed": n,
    }


def faiss_specs(d: int) -> list[tuple[str, object, bool, str]]:
    """(name, factory(d) -> index, slow_add, timing) for FAISS's encoders at vqdb's byte budgets."""
    import faiss

    from .peers import _pq_params, _rotated

    def rabitq(b):
        def make(dd):
            ix = faiss.IndexRaBitQ(dd, faiss.METRIC_INNER_PRODUCT, b)
            ix.qb = 8
            return _rotated(ix, dd)

        return make

    ip = faiss.METRIC_INNER_PRODUCT
    specs = [
        ("faiss-SQ4", lambda dd: faiss.IndexScalarQuantizer(dd, faiss.ScalarQuantizer.QT_4bit, ip), False),
        ("faiss-SQ8", lambda dd: faiss.IndexScalarQuantizer(dd, faiss.ScalarQuantizer.QT_8bit, ip), False),
    ]
    if d % 8 == 0:
        specs.append((f"faiss-PQ{d // 8}x8", lambda dd: _pq_params(faiss.IndexPQ(dd, dd // 8, 8, ip)), True))
    if d % 4 == 0:
        specs.append(
            (
                f"faiss-PQFastScan{d // 4}x4",
                lambda dd: _pq_params(faiss.IndexPQFastScan(dd, dd // 4, 4, ip)),
                False,
            )
        )
    specs += [("faiss-RR+RaBitQ1", rabitq(1), False), ("faiss-RR+RaBitQ4", rabitq(4), True)]
    return specs


def time_faiss(name: str, make, slow: bool, base: np.ndarray, max_add: int, repeat: int) -> dict:
    """Train once, then add (the slow adders: ``max_add`` rows) ``repeat`` times into the emptied index,
    best wall kept (as vqdb's encode)."""
    index = make(base.shape[1])
    t = time.perf_counter()
    index.train(base)
    train_s = time.perf_counter() - t
    rows = base if not slow else base[:max_add]

    def add():
        index.reset()
        index.add(rows)

    add_s, cpu_s = best_wall_cpu(add, 1 if slow else repeat)
    n = base.shape[0]
    enc_vps = rows.shape[0] / add_s
    code = index.sa_code_size() if hasattr(index, "sa_code_size") else None
    return {
        "method": name,
        "library": "faiss",
        "bytes": code,
        "fit_s": train_s,
        "encode_s": n / enc_vps,
        "encode_cpu_s": cpu_s * n / rows.shape[0],
        "encode_vps": enc_vps,
        "total_vps": n / (train_s + n / enc_vps),
        "rows_timed": int(rows.shape[0]),
    }


def time_index(mode: str, base: np.ndarray) -> dict:
    """``vqdb.Index(d, quantizer="turbo-4", ivf=...)`` in memory, after a warm-up index on 2,000 rows.
    ``flat`` / ``ivf``: ``add(base)`` in one call (IVF: the coarse k-means on this first add included);
    ``ivf-trained``: a first, untimed add of n/5 rows trains the lists, then the rest is added in one call."""
    import vqdb

    ivf = mode != "flat"
    vqdb.Index(base.shape[1], quantizer="turbo-4", ivf=ivf).add(base[:2000])
    ix = vqdb.Index(base.shape[1], quantizer="turbo-4", ivf=ivf)
    rows = base
    if mode == "ivf-trained":
        ix.add(base[: base.shape[0] // 5])
        rows = base[base.shape[0] // 5 :]
    t = time.perf_counter()
    ix.add(rows)
    add_s = time.perf_counter() - t
    n = rows.shape[0]
    return {
        "method": f"Index.add turbo-4 {mode}",
        "library": "vqdb-index",
        "bytes": None,
        "fit_s": 0.0,
        "encode_s": add_s,
        "encode_vps": n / add_s,
        "total_vps": n / add_s,
        "rows_timed": n,
    }


def run(
    sets, threads_list, repeat: int, max_add: int, peers: bool = True, index: bool = True, methods=VQDB
) -> list[dict]:
    from threadpoolctl import threadpool_limits

    rows = []
    for threads in threads_list:
        set_threads(threads)
        with threadpool_limits(limits=threads):
            for set_name, base in sets:
                for name in methods:
                    r = time_vqdb(name, base, repeat)
                    rows.append(
                        {
                            "dataset": set_name,
                            "n": int(base.shape[0]),
                            "dim": int(base.shape[1]),
                            "threads": threads,
                            **r,
                        }
                    )
                    log(
                        f"{set_name} t={threads} {name}: fit {r['fit_s']:.2f}s encode {r['encode_vps'] / 1e3:.1f}k/s"
                    )
                for mode in ("flat", "ivf", "ivf-trained") if index else ():
                    r = time_index(mode, base)
                    rows.append(
                        {
                            "dataset": set_name,
                            "n": int(base.shape[0]),
                            "dim": int(base.shape[1]),
                            "threads": threads,
                            **r,
                        }
                    )
                    log(f"{set_name} t={threads} {r['method']}: {r['encode_vps'] / 1e3:.1f}k/s")
                for name, make, slow in faiss_specs(base.shape[1]) if peers else []:
                    r = time_faiss(name, make, slow, base, max_add, repeat)
                    rows.append(
                        {
                            "dataset": set_name,
                            "n": int(base.shape[0]),
                            "dim": int(base.shape[1]),
                            "threads": threads,
                            **r,
                        }
                    )
                    log(
                        f"{set_name} t={threads} {name}: train {r['fit_s']:.2f}s add {r['encode_vps'] / 1e3:.1f}k/s"
                    )
    # ratios to FAISS SQ4 (add) and PQ (train + add), same set and threads
    for r in rows:
        peers = {
            p["method"]: p for p in rows if p["dataset"] == r["dataset"] and p["threads"] == r["threads"]
        }
        sq4 = peers.get("faiss-SQ4")
        pq = next((p for m, p in peers.items() if m.startswith("faiss-PQ") and "FastScan" not in m), None)
        r["vs_sq4_add"] = r["encode_vps"] / sq4["encode_vps"] if sq4 else None
        r["cpu_vs_sq4_add"] = (
            sq4["encode_cpu_s"] / r["encode_cpu_s"] if sq4 and r.get("encode_cpu_s") else None
        )
        r["vs_pq_train_add"] = r["total_vps"] / pq["total_vps"] if pq else None
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Encode throughput: vqdb vs FAISS",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine_line']}  ",
        f"Wall time: {result['wall_s']:.0f} s. Rates in vectors/s of the whole base; `encode` = vqdb encode / FAISS add "
        "alone, `total` = fit or train + encode or add. Ratios: encode vs FAISS SQ4 add, total vs FAISS PQ "
        "(d/8 x 8 bits, train + add), same set and threads. `rows` < n: add timed on that many rows. Encode and "
        "add: best wall of the repeats; `cpu us/vec`: the process CPU time of that call per vector (all its "
        "threads; the work done, whatever share of the shared machine it got) and `cpu / SQ4`: SQ4's CPU time "
        "over the method's (> 1: less CPU per vector than SQ4).",
        "",
    ]
    if result.get("before"):
        b = result["before"]
        lines += [
            f"`before k/s`: vqdb encode at commit {b['commit']} (`{b['command']}`, run earlier in the same session "
            f"on the same machine, load average at its start {', '.join(f'{v:.1f}' for v in b['loadavg_at_start'] or [])}).",
            "",
        ]
    for set_name in dict.fromkeys(r["dataset"] for r in result["rows"]):
        sub = [r for r in result["rows"] if r["dataset"] == set_name]
        lines += [
            f"## {set_name} ({sub[0]['n']:,} x {sub[0]['dim']})",
            "",
            "| method | bytes | threads | fit/train s | encode k/s | before k/s | total k/s | encode / SQ4 | total / PQ "
            "| cpu us/vec | cpu / SQ4 | rows |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(sub, key=lambda r: (r["library"] != "vqdb", r["library"], r["method"], r["threads"])):
            f = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
            cpu_us = lambda r: f"{r['encode_cpu_s'] / r['n'] * 1e6:.2f}" if r.get("encode_cpu_s") else ""  # noqa: E731
            before = f"{r['before_encode_vps'] / 1e3:.1f}" if r.get("before_encode_vps") else ""
            lines.append(
                f"| {r['method']} | {r['bytes'] or ''} | {r['threads']} | {r['fit_s']:.2f} | {r['encode_vps'] / 1e3:.1f} | "
                f"{before} | {r['total_vps'] / 1e3:.1f} | {f(r['vs_sq4_add'])} | {f(r['vs_pq_train_add'])} | "
                f"{cpu_us(r)} | {f(r.get('cpu_vs_sq4_add'))} | {r['rows_timed']:,} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.encode_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 rows per set")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="vqdb encode timed this many times, best kept")
    ap.add_argument(
        "--max-add-rows", type=int, default=20000, help="rows added by the slow FAISS adders (PQ, RaBitQ4)"
    )
    ap.add_argument("--no-peers", action="store_true", help="vqdb only (e.g. to time an older commit)")
    ap.add_argument("--no-index", action="store_true", help="skip the Index.add timings")
    ap.add_argument("--only", nargs="*", default=None, help="only these data sets (names as in the results)")
    ap.add_argument(
        "--methods", nargs="*", default=list(VQDB), help=f"vqdb methods (default all: {' '.join(VQDB)})"
    )
    ap.add_argument(
        "--before",
        default=None,
        help="an encode_speed JSON of an older commit (--no-peers): adds its vqdb rates",
    )
    ap.add_argument(
        "--before-label", default=None, help="how to name the --before run (default: its git commit)"
    )
    ap.add_argument("--out", default=None, help="output stem (default bench/results[/quick]/encode_speed)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg())
    sets = [(n, b) for n, b in load(args.quick) if args.only is None or n in args.only]
    log("sets: " + ", ".join(f"{n} {b.shape}" for n, b in sets))
    unknown = set(args.methods) - set(VQDB)
    if unknown:
        ap.error(f"unknown --methods {sorted(unknown)}; expected some of {list(VQDB)}")
    rows = run(
        sets, args.threads, args.repeat, args.max_add_rows, not args.no_peers, not args.no_index, args.methods
    )
    if args.before:
        with open(args.before, encoding="utf-8") as f:
            before = json.load(f)
        old = {(r["dataset"], r["method"], r["threads"]): r for r in before["rows"]}
        for r in rows:
            b = old.get((r["dataset"], r["method"], r["threads"]))
            if b is not None:
                r["before_encode_vps"], r["before_fit_s"] = b["encode_vps"], b["fit_s"]
        before_note = {
            "commit": args.before_label or before["machine"].get("git_commit"),
            "command": " ".join(
                os.path.basename(a) if os.path.isabs(a) else a for a in before["command"].split()
            ),
            "loadavg_at_start": before["machine"].get("loadavg_at_start"),
            "wall_s": before["wall_s"],
        }
    info = machine_info(max(args.threads))
    info["loadavg_at_start"], info["loadavg_at_end"] = load_start, list(os.getloadavg())
    from .common import machine_line

    def shown(a: str) -> str:  # no machine paths in the results: files by their base name
        return os.path.basename(a) if os.path.isabs(a) else a

    result = {
        "command": "python -m bench.encode_speed"
        + "".join(" " + shlex.quote(shown(a)) for a in (argv or sys.argv[1:])),
        "machine": info,
        "machine_line": machine_line(info)
        + f"; load average at end {', '.join(f'{x:.1f}' for x in info['loadavg_at_end'])}",
        "threads": args.threads,
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
        "before": before_note if args.before else None,
    }
    stem = args.out or os.path.join(RESULTS_DIR, "quick" if args.quick else "", "encode_speed")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(result) + "\n")
    log(f"wrote {stem}.json/.md in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
