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
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
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
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "simd": simd,
        "memory_gib": mem_gb,
        "threads": threads,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": _version("numba"),
        "faiss": _version("faiss"),
        "rabitqlib": _rabitqlib_version(),
        "git_commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _rabitqlib_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("rabitqlib")
    except Exception:  # noqa: BLE001 - not installed or no metadata
        return None


def machine_line(info: dict) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores ({'/'.join(info['simd']) or 'no AVX2'}), "
        f"{info['memory_gib']} GiB; {info['threads']} threads for numba/FAISS/rabitqlib; "
        f"load average at start {', '.join(f'{x:.1f}' for x in info['loadavg_at_start'] or [])}; "
        f"numpy {info['numpy']}, numba {info['numba']}, faiss {info['faiss']}, rabitqlib {info['rabitqlib']}, "
        f"vqdb commit {info['git_commit']}"
    )


# ---- data ---------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    name: str
    queries: np.ndarray  # (m, d) float32
    gt: np.ndarray  # (m, >=100) int64 exact neighbours, best first


@dataclass
class BenchSet:
    """One base (built once per method) with one or more query sets searched against it."""

    name: str
    metric: str  # "ip" (vectors unit norm: cosine) or "l2sq"
    base: np.ndarray  # (n, d) float32
    query_sets: list[QuerySet] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def exact_topk(
    base: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip", extra: int = 64
) -> np.ndarray:
    """(m, k) int64 exact neighbours, best first, ties to the lower id: float32 candidates (k + extra),
    re-scored in float64 (the method of ``../shared/data/scripts/ground_truth.py``)."""
    k = min(k, base.shape[0])
    cand = min(base.shape[0], k + extra)
    b32 = np.ascontiguousarray(base, dtype=np.float32)
    sq = (b32.astype(np.float64) ** 2).sum(1) if metric == "l2sq" else None
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for s0 in range(0, queries.shape[0], 64):
        q = np.ascontiguousarray(queries[s0 : s0 + 64], dtype=np.float32)
        s = q @ b32.T
        if sq is not None:
            s = 2 * s - sq[None, :].astype(np.float32)
        part = np.argpartition(-s, cand - 1, axis=1)[:, :cand]
        exact = np.einsum("ijk,ik->ij", b32[part].astype(np.float64), q.astype(np.float64))
        if sq is not None:
            exact = 2 * exact - sq[part]
        order = np.lexsort((part, -exact), axis=1)[:, :k]
        out[s0 : s0 + 64] = np.take_along_axis(part, order, axis=1)
    return out


def _subsample(bs: BenchSet, n_base: int, n_queries: int, seed: int = 0) -> BenchSet:
    """Random base subset with exact ground truth recomputed on it (quick mode)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(bs.base.shape[0], n_base, replace=False)) if n_base < bs.base.shape[0] else None
    base = bs.base if rows is None else np.ascontiguousarray(bs.base[rows])
    out = BenchSet(bs.name, bs.metric, base)
    for qs in bs.query_sets:
        q = np.ascontiguousarray(qs.queries[:n_queries])
        gt = qs.gt[:n_queries] if rows is None else exact_topk(base, q, 100, bs.metric)
        out.query_sets.append(QuerySet(qs.name, q, gt))
    return out


def _load(folder: str, name: str, dtype=None) -> np.ndarray | None:
    path = datasets.shared_path(folder, name)
    if path is None:
        return None
    arr = np.load(path)
    return arr if dtype is None else arr.astype(dtype)


def _wordnet(folder: str, name: str) -> BenchSet | None:
    base = _load(folder, "base.f16.npy", np.float32)
    if base is None:
        return None
    bs = BenchSet(name, "ip", base)
    for qname in ("words", "passages"):
        q = _load(folder, f"queries_dev_{qname}.f32.npy", np.float32)
        if q is not None:
            bs.query_sets.append(QuerySet(qname, q, _load(folder, f"gt_dev_{qname}.ids.npy", np.int64)))
    return bs


def _fashion(metric: str, raw: dict) -> BenchSet | None:
    if "base" not in raw:
        path = datasets.shared_path("fashion-mnist-784", "base.u8.npz")
        if path is None:
            return None
        raw["base"] = np.load(path)["base"].astype(np.float32)
        raw["queries"] = _load("fashion-mnist-784", "queries_dev.u8.npy", np.float32)
        raw["gt"] = _load("fashion-mnist-784", "gt_dev.ids.npy", np.int64)
    if metric == "l2sq":
        return BenchSet(
            "fashion-mnist-784-l2sq", "l2sq", raw["base"], [QuerySet("dev", raw["queries"], raw["gt"])]
        )
    base = raw["base"] / np.linalg.norm(raw["base"], axis=1, keepdims=True)
    q = raw["queries"] / np.linalg.norm(raw["queries"], axis=1, keepdims=True)
    return BenchSet("fashion-mnist-784-cos", "ip", base, [QuerySet("dev", q, None)])


def load_sets(quick: bool = False, only: list[str] | None = None) -> list[BenchSet]:
    """The real sets of ``../shared/data`` (skipping absent ones); the bundled WordNet sample if none is there.

    Full mode: WordNet-MiniLM-384 (115,659; word and passage queries), Fashion-MNIST-784 as cosine (rows
    normalised, exact cosine ground truth computed here) and as l2sq, WordNet-MPNet-768 (5,000; word and
    passage queries). Quick mode (WordNet-MiniLM and Fashion-MNIST cosine unless ``only`` says
    otherwise): a random 20,000 (WordNet) / 10,000 (Fashion-MNIST) base subset, 200 queries, ground
    truth recomputed exactly on the subset.
    """
    if quick and only is None:
        only = ["wordnet-minilm384", "fashion-mnist-784-cos"]

    def want(name: str) -> bool:
        return only is None or any(o in name for o in only)

    sizes = {
        "wordnet-minilm384": 20000,
        "fashion-mnist-784-cos": 10000,
        "fashion-mnist-784-l2sq": 10000,
        "wordnet-mpnet768": 5000,
    }
    sets: list[BenchSet] = []
    raw: dict = {}
    for name in sizes:
        if not want(name):
            continue
        if name.startswith("wordnet"):
            bs = _wordnet(name, name)
        else:
            bs = _fashion(name.rsplit("-", 1)[1], raw)
        if bs is None:
            continue
        if quick:
            bs = _subsample(bs, sizes[name], 200)
        for qs in bs.query_sets:
            if qs.gt is None:
                qs.gt = exact_topk(bs.base, qs.queries, 100, bs.metric)
        sets.append(bs)
    if not sets and (only is None or any("sample" in o for o in only)):
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


def best_time(fn, repeat: int) -> float:
    """The shortest wall time of ``repeat`` calls of ``fn()``, in seconds."""
    return best_wall_cpu(fn, repeat)[0]


def best_wall_cpu(fn, repeat: int) -> tuple[float, float]:
    """(wall s, process CPU s) of the call of ``fn()`` with the shortest wall time among ``repeat`` calls
    (at least one). CPU seconds count every thread of the process and not the time other processes hold
    the cores: on a shared machine, the work done apart from the share of the machine it got."""
    best = (float("inf"), float("inf"))
    for _ in range(max(1, repeat)):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


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
