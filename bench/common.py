"""Shared pieces of the benchmarks: thread setup, machine description, data sets, chunked top-k, recall.

Every benchmark runs vqdb and its peers in one process on the same arrays, with the same thread count
for numba, FAISS (OpenMP) and rabitqlib, so that figures can be read as ratios.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from vqdb import datasets
from vqdb.testing import recall_1_at, recall_at_k

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# ---- threads and machine ------------------------------------------------------------------------
def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default: numba's count, else all cores) in numba and FAISS; return ``n``."""
    try:
        import numba

        if n is None:
            n = int(numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n)
    except ImportError:
        n = n or (os.cpu_count() or 1)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return int(n)


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "?"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(threads: int) -> dict:
    """A JSON-able description of the machine and library versions, for the results files."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        pass
    simd = [s for s in ("avx512f", "avx512bw", "avx2", "fma", "neon") if f" {s}" in flags]
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "simd": simd, "memory_gib": mem_gb,
        "threads": threads, "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0], "numpy": np.__version__, "numba": _version("numba"),
        "faiss": _version("faiss"), "rabitqlib": _rabitqlib_version(), "git_commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _rabitqlib_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("rabitqlib")
    except Exception:  # noqa: BLE001 - not installed or no metadata
        return None


def machine_line(info: dict) -> str:
    return (f"{info['cpu']}, {info['cores']} cores ({'/'.join(info['simd']) or 'no AVX2'}), "
            f"{info['memory_gib']} GiB; {info['threads']} threads for numba/FAISS/rabitqlib; "
            f"load average at start {', '.join(f'{x:.1f}' for x in info['loadavg_at_start'] or [])}; "
            f"numpy {info['numpy']}, numba {info['numba']}, faiss {info['faiss']}, rabitqlib {info['rabitqlib']}, "
            f"vqdb commit {info['git_commit']}")


# ---- data ---------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    name: str
    queries: np.ndarray      # (m, d) float32
    gt: np.ndarray           # (m, >=100) int64 exact neighbours, best first


@dataclass
class BenchSet:
    """One base (built once per method) with one or more query sets searched against it."""

    name: str
    metric: str              # "ip" (vectors unit norm: cosine) or "l2sq"
    base: np.ndarray         # (n, d) float32
    query_sets: list[QuerySet] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def _subsample(bs: BenchSet, n_base: int, n_queries: int, seed: int = 0) -> BenchSet:
    """Random base subset with exact ground truth recomputed on it (quick mode)."""
    rng = np.random.default_rng(seed)
    if n_base < bs.base.shape[0]:
        rows = np.sort(rng.choice(bs.base.shape[0], n_base, replace=False))
        base = np.ascontiguousarray(bs.base[rows])
    else:
        base = bs.base
    out = BenchSet(bs.name, bs.metric, base)
    for qs in bs.query_sets:
        q = np.ascontiguousarray(qs.queries[:n_queries])
        gt = qs.gt[:n_queries] if base is bs.base else datasets.exact_neighbours(base, q, 100, bs.metric)
        out.query_sets.append(QuerySet(qs.name, q, gt))
    return out


def load_sets(quick: bool = False, only: list[str] | None = None) -> list[BenchSet]:
    """The real sets of ``../shared/data`` (skipping absent ones); the bundled WordNet sample if none is there.

    Full mode: WordNet-MiniLM-384 (115,659; word and passage queries), Fashion-MNIST-784 as cosine (rows
    normalised, exact cosine ground truth) and as l2sq, WordNet-MPNet-768 (5,000; word and passage
    queries). Quick mode: a random 20,000 (WordNet) / 10,000 (Fashion-MNIST) base subset, 200 queries,
    ground truth recomputed exactly on the subset.
    """
    sets: list[BenchSet] = []

    def want(name: str) -> bool:
        return only is None or any(o in name for o in only)

    if want("wordnet-minilm384"):
        w = datasets.wordnet_minilm("words")
        if w is not None:
            p = datasets.wordnet_minilm("passages")
            bs = BenchSet("wordnet-minilm384", "ip", w.base,
                          [QuerySet("words", w.queries, w.gt_ids), QuerySet("passages", p.queries, p.gt_ids)])
            sets.append(_subsample(bs, 20000, 200) if quick else bs)
    for metric in ("cos", "l2sq"):
        if want(f"fashion-mnist-784-{metric}"):
            f = datasets.fashion_mnist(metric)
            if f is not None:
                bs = BenchSet(f"fashion-mnist-784-{metric}", "ip" if metric == "cos" else "l2sq", f.base,
                              [QuerySet("dev", f.queries, f.gt_ids)])
                sets.append(_subsample(bs, 10000, 200) if quick else bs)
    if want("wordnet-mpnet768"):
        w = datasets.wordnet_mpnet("words")
        if w is not None:
            p = datasets.wordnet_mpnet("passages")
            bs = BenchSet("wordnet-mpnet768", "ip", w.base,
                          [QuerySet("words", w.queries, w.gt_ids), QuerySet("passages", p.queries, p.gt_ids)])
            sets.append(_subsample(bs, 5000, 200) if quick else bs)
    if not sets and want("wordnet-sample"):
        s = datasets.wordnet_sample()
        sets.append(BenchSet("wordnet-sample", "ip", s.base, [QuerySet("words", s.queries, s.gt_ids)]))
    return sets


# ---- search helpers -----------------------------------------------------------------------------
def topk_chunked(score_chunk, n: int, m: int, k: int, chunk: int = 16384) -> np.ndarray:
    """(m, k) int64 ids of the k highest scores, best first, over ``n`` items scored chunk by chunk.

    ``score_chunk(start, stop)`` returns (m, stop - start) float32 scores (higher is better).
    """
    k = min(k, n)
    best_s = np.full((m, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((m, 0), dtype=np.int64)
    rows = np.arange(m)[:, None]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        s = np.asarray(score_chunk(start, stop), dtype=np.float32)
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, s[rows, part]], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        if cand_s.shape[1] > k:
            keep = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
            cand_s, cand_i = cand_s[rows, keep], cand_i[rows, keep]
        best_s, best_i = cand_s, cand_i
    order = np.argsort(-best_s, axis=1, kind="stable")
    return best_i[rows, order]


def recalls(found: np.ndarray, gt: np.ndarray) -> dict:
    """recall@10 (top-10 overlap), recall@1@10 and recall@1@100 (true nearest within the first 10 / 100)."""
    found = np.asarray(found, dtype=np.int64)
    return {
        "recall@10": round(recall_at_k(found, gt, 10), 4),
        "recall@1@10": round(recall_1_at(found, gt, 10), 4),
        "recall@1@100": round(recall_1_at(found, gt, 100), 4),
    }


class Stopwatch:
    """``with Stopwatch() as t: ...; t.s`` -> wall seconds."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self._t0
        return False


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o)}")
