"""Time to the first search result of a fresh process: ``import vqdb``, ``Index(384)``, ``add`` 1,000 vectors,
``search`` (k = 10), cold (a clean copy of the source tree with its bytecode compiled, an empty numba cache and
an empty vqdb codebook cache: as after ``pip install``) and warm (the same tree and caches, a new process), per
quantizer preset.

Vectors and queries are the bundled WordNet/MiniLM-384 sample (real embeddings, ``vqdb/data``). Each
measurement runs in its own interpreter (``python -c``) with ``NUMBA_CACHE_DIR`` pointing at a directory
and ``HOME`` (vqdb's codebook cache, ``~/.cache/vqdb``) of its own; the tree copy holds the tracked files of
``vqdb/`` and the bytecode ``compileall`` writes for them (no numba cache).

    python -m bench.cold_start                       # every preset in PRESETS, 2 warm runs each
    python -m bench.cold_start --presets turbo-4 --warm-runs 3
    python -m bench.cold_start --warmup-first        # cold run after `vqdb warmup` (what `make install` does)
    python -m bench.cold_start --read-only           # in-tree cache unwritable: numba's user-cache fallback
    python -m bench.cold_start --tree /tmp/old       # another checkout (an older commit, for before/after)
    python -m bench.cold_start --no-bytecode         # no .pyc: every run compiles vqdb's source (slower)

Writes bench/results/cold_start.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import RESULTS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("turbo-4", "turbo-2", "turbo-1", "turbo-pca-4", "qjl")

# the child: prints one JSON line of phase times (seconds, perf_counter deltas from interpreter start of the code)
CHILD = r"""
import json, resource, sys, time  # noqa: E401


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return r.ru_utime + r.ru_stime


c0, t0 = cpu(), time.perf_counter()
import numpy as np
t_np = time.perf_counter()
import vqdb
t_import = time.perf_counter()
heavy = [m for m in ("numba", "torch", "fastapi", "pyarrow", "transformers") if m in sys.modules]
import os
z = np.load(os.path.join(os.path.dirname(vqdb.__file__), "data", "wordnet_minilm_sample.npz"))
base, queries = z["base"][:1000].astype(np.float32), z["queries"][:10].astype(np.float32)
t_data = time.perf_counter()
index = vqdb.Index(384, quantizer=sys.argv[1])
t_create = time.perf_counter()
index.add(base)
t_add = time.perf_counter()
res = index.search(queries[:1], 10)
t_first, c_first = time.perf_counter(), cpu()
numba_first = "numba" in sys.modules
assert res.ids.shape == (1, 10) and (res.ids >= 0).all()
res = index.search(queries, 10)
t_batch = time.perf_counter()
res = index.search(queries[1:2], 10)
t_again = time.perf_counter()
print(json.dumps({
    "numpy_s": t_np - t0,
    "import_vqdb_s": t_import - t_np,
    "heavy_after_import": heavy,
    "numba_by_first_result": numba_first,
    "numba_by_end": "numba" in sys.modules,
    "create_s": t_create - t_data,
    "add_s": t_add - t_create,
    "first_search_s": t_first - t_add,
    "batch_search_s": t_batch - t_first,
    "next_search_s": t_again - t_batch,
    "to_first_result_s": (t_first - t0) - (t_data - t_import),
    "cpu_to_first_result_s": c_first - c0,
}))
"""


def _tree_copy(dest: str, root: str = ROOT) -> str:
    """A clean copy of the package's tracked files as they are in the working tree (what an installed
    package holds: no ``__pycache__``, so neither bytecode nor numba cache) under ``dest``."""
    src = os.path.join(dest, "src")
    os.makedirs(src)
    files = subprocess.run(
        ["git", "-C", root, "ls-files", "vqdb"], check=True, capture_output=True, text=True
    )
    for rel in files.stdout.split():
        if os.path.isfile(os.path.join(root, rel)):
            os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(src, rel))
    return src


def _compile_bytecode(src: str) -> None:
    """Write the copy's ``__pycache__/*.pyc`` as ``pip install`` does for a wheel (numba's cache stays empty)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(src, "vqdb")], check=True)


def _env(src: str, cache: str, read_only: bool) -> dict:
    home = os.path.join(os.path.dirname(cache), "home")  # vqdb's codebook cache starts empty too
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=src, PYTHONDONTWRITEBYTECODE="1", HOME=home)
    env.pop("VQDB_BACKEND", None)
    if read_only:  # no NUMBA_CACHE_DIR: numba must fall back to the user cache directory by itself
        env.pop("NUMBA_CACHE_DIR", None)
        env["XDG_CACHE_HOME"] = cache
    else:
        env["NUMBA_CACHE_DIR"] = cache
    return env


def _block_in_tree_cache(src: str) -> None:
    """Make the kernels' in-tree cache unwritable (a file where numba wants ``__pycache__``): what a
    read-only site-packages looks like to numba (chmod does not stop root, which this may run as)."""
    for dirpath, _, files in os.walk(os.path.join(src, "vqdb")):
        if any(f.endswith(".py") for f in files):
            with open(os.path.join(dirpath, "__pycache__"), "w", encoding="utf-8") as f:
                f.write("not a directory\n")


def _run(src: str, cache: str, preset: str, *, read_only: bool = False) -> dict:
    env = _env(src, cache, read_only)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, preset], env=env, capture_output=True, text=True, cwd=src, timeout=900
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({preset}):\n{proc.stdout}\n{proc.stderr}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = wall
    return row


def _warmup(src: str, cache: str, read_only: bool) -> float:
    env = _env(src, cache, read_only)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vqdb", "warmup"], env=env, check=True, cwd=src, timeout=1800)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--warm-runs", type=int, default=2)
    ap.add_argument("--warmup-first", action="store_true", help="run `vqdb warmup` before the cold run")
    ap.add_argument(
        "--read-only",
        action="store_true",
        help="in-tree cache unwritable, no NUMBA_CACHE_DIR (installed package)",
    )
    ap.add_argument(
        "--tree", default=ROOT, help="checkout whose vqdb/ is measured (e.g. a worktree of an older commit)"
    )
    ap.add_argument(
        "--no-bytecode",
        dest="bytecode",
        action="store_false",
        help="do not compile the copy's .pyc first (pip install does; without them every run compiles the source)",
    )
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "cold_start"))
    args = ap.parse_args(argv)
    rows = []
    load = os.getloadavg()
    for preset in args.presets:
        with tempfile.TemporaryDirectory(prefix="vqdb-cold-") as tmp:
            src, cache = _tree_copy(tmp, args.tree), os.path.join(tmp, "cache")
            os.makedirs(cache)
            if args.bytecode:
                _compile_bytecode(src)
            if args.read_only:
                _block_in_tree_cache(src)
            warmup_s = _warmup(src, cache, args.read_only) if args.warmup_first else None
            cold = _run(src, cache, preset, read_only=args.read_only)
            cold["cache_files"] = sum(len(f) for _, _, f in os.walk(cache))
            rows.append({"preset": preset, "run": "cold", "warmup_s": warmup_s, **cold})
            print(f"{preset:12s} cold {cold['to_first_result_s']:7.2f} s  {json.dumps(cold)}", flush=True)
            for i in range(args.warm_runs):
                warm = _run(src, cache, preset, read_only=args.read_only)
                rows.append({"preset": preset, "run": f"warm{i + 1}", **warm})
                print(f"{preset:12s} warm {warm['to_first_result_s']:7.2f} s  {json.dumps(warm)}", flush=True)
    info = {
        "command": "python -m bench.cold_start " + " ".join(argv if argv is not None else sys.argv[1:]),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "commit": subprocess.run(
            ["git", "-C", args.tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    lines = [
        "# Cold start: time to the first search result of a fresh process",
        "",
        f"Command: `{info['command']}` (commit {info['commit']}, Python {info['python']}, {info['cpus']} CPUs, "
        f"load average {load[0]:.2f} before / {info['loadavg_after'][0]:.2f} after).",
        "",
        "Each row is a new interpreter: `import vqdb`, `Index(384, quantizer=preset)`, `add` 1,000 WordNet/MiniLM "
        "vectors, `search` one query (k = 10). *cold*: a clean copy of the tree (tracked files only), an empty "
        "`NUMBA_CACHE_DIR` and an empty vqdb codebook cache (`HOME`); *warm*: the same copy and caches, a new process. Seconds; `to first result` excludes "
        "only loading the sample data. "
        + (
            "The copy's bytecode was compiled first (as `pip install` does)."
            if args.bytecode
            else "No bytecode is written (every run compiles vqdb's Python source: slower than an installed wheel)."
        ),
        "",
        "*numba*: whether numba was imported by the first result (a small first index runs on the NumPy path, "
        "`vqdb.kernels.numpy_path`); *10 queries*: the next call, a batch of 10; *next search*: one query after "
        "that; *numba at end*: whether any of these calls loaded numba.",
        "",
        "| preset | run | import vqdb | Index() | add 1,000 | first search | to first result | CPU s to first result "
        "| numba | 10 queries | next search | numba at end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['run']} | {r['import_vqdb_s']:.3f} | {r['create_s']:.3f} | {r['add_s']:.3f} | "
            f"{r['first_search_s']:.3f} | **{r['to_first_result_s']:.2f}** | {r['cpu_to_first_result_s']:.2f} | "
            f"{'yes' if r.get('numba_by_first_result', True) else 'no'} | {r['batch_search_s']:.3f} | "
            f"{r['next_search_s'] * 1e3:.1f} ms | {'yes' if r.get('numba_by_end', True) else 'no'} |"
        )
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
