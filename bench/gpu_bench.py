"""GPU benchmark of vqdb: scoring bandwidth, Index(device="cuda") search, KV decode step.

Run by ``bench/gpu_check.sh`` on a machine with a CUDA GPU (one call, a few minutes). Sections, each timed
with CUDA synchronisation, median of repeats, each guarded so one failure does not lose the others:

``copy``     device-to-device copy bandwidth of the card (torch ``copy_`` of 2 GiB; read + write bytes / s).
``scoring``  codes bytes scored per second, and as a fraction of the copy bandwidth's read half: torch
             ``DeviceScorer`` (decode tile + matmul) and the numba-cuda ``lut_scores`` kernel, turbo-4 codes
             (random bytes with valid side floats; speed does not depend on the values), m = 1..128 queries.
``search``   ``vqdb.Index(device="cuda")`` QPS and recall@10 against the exact top-10 on clustered synthetic
             vectors, and faiss-gpu Flat / IVF-PQ at the same bytes per vector when faiss is importable.
``kv``       one decode step (B=1, 32 query heads, 8 kv heads, D=128) over 8k-32k cached tokens: vqdb codes
             (turbo 4-bit keys, 4-bit values) via numba two-kernel and torch paths vs dense fp16 attention.

``--dry-run`` runs every section at tiny sizes on whatever is there (CPU tensors; numba kernels skipped
without a GPU) to check the script; its numbers mean nothing. Results: JSON + a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import torch  # noqa: E402

import vqdb  # noqa: E402
from vqdb.kernels.cuda import probe_cuda_numba, probe_cuda_torch  # noqa: E402
from vqdb.kernels.cuda import torch_cuda as tc  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, dev, *, reps=5, warm=1) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after ``warm`` warm-up runs."""
    for _ in range(warm):
        fn()
    _sync(dev)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


# ------------------------------------------------------------------------------------------------
def bench_copy(dev, size_bytes: int) -> dict:
    a = torch.empty(size_bytes, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    t = timeit(lambda: b.copy_(a), dev, reps=10)
    return {
        "bytes": size_bytes,
        "seconds": t,
        "copy_GBps_read_plus_write": 2 * size_bytes / t / 1e9,
        "copy_GBps_read": size_bytes / t / 1e9,
    }


def _random_codes(q, n: int, dev, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, q.code_size), dtype=np.uint8)
    parts = q.scan_parts()
    side = np.ones((n, parts["n_side"]), dtype="<f4")
    codes[:, parts["side_offset"] : parts["side_offset"] + 4 * parts["n_side"]] = side.view(np.uint8).reshape(
        n, -1
    )
    return codes


def bench_scoring(dev, n: int, d: int, ms, copy_read_GBps) -> list[dict]:
    q = vqdb.TurboQuantizer(d, bits=4)
    codes = _random_codes(q, n, dev)
    rows = []

    class _Seg:  # DeviceScorer uploads segment-like objects
        pass

    seg = _Seg()
    seg.codes, seg.lists = codes, np.zeros(n, np.int32)
    scorer = tc.DeviceScorer(q, dev, tile_rows=min(n, 1 << 20))
    dc = scorer.upload(seg)
    nbytes = n * q.code_size
    for m in ms:
        prepared = q.prepare(np.random.default_rng(1).standard_normal((m, d)).astype(np.float32))
        qp = scorer.query_tensors(prepared)

        def run():
            for b0 in range(0, n, scorer.tile_rows):
                s = scorer.score(qp, dc, slice(b0, min(n, b0 + scorer.tile_rows)))
                torch.topk(s, min(10, s.shape[1]), dim=1)

        t = timeit(run, dev, reps=3)
        rows.append(
            {
                "impl": "torch DeviceScorer+topk",
                "n": n,
                "d": d,
                "code_size": q.code_size,
                "m": m,
                "seconds": t,
                "codes_GBps": nbytes / t / 1e9,
                "fraction_of_copy_read": nbytes / t / 1e9 / copy_read_GBps,
                "queries_x_codes_per_s": m * n / t,
            }
        )
    if dev.type == "cuda" and probe_cuda_numba() is None:
        from numba import cuda

        from vqdb.kernels.cuda import numba_cuda as nc

        d_codes = cuda.as_cuda_array(dc.codes)
        part = q.scan_parts()["parts"][0]
        vals = cuda.to_device(np.asarray(part["values"], np.float32))
        for m in ms:
            if m > 32:
                continue
            d_q = cuda.to_device(np.random.default_rng(2).standard_normal((m, part["k"])).astype(np.float32))
            t = timeit(lambda: nc.lut_scores(d_q, d_codes, part["offset"], part["bits"], vals), dev, reps=3)
            rows.append(
                {
                    "impl": "numba-cuda lut_scores",
                    "n": n,
                    "d": d,
                    "code_size": q.code_size,
                    "m": m,
                    "seconds": t,
                    "codes_GBps": nbytes / t / 1e9,
                    "fraction_of_copy_read": nbytes / t / 1e9 / copy_read_GBps,
                    "queries_x_codes_per_s": m * n / t,
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------
def _clustered(n, d, nq, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 2000), d)).astype(np.float32) * 2
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d)).astype(np.float32)
    qv = centres[rng.integers(0, len(centres), nq)] + rng.standard_normal((nq, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    return x, qv


def _exact(x, qv, k, dev):
    xt, qt = torch.from_numpy(x).to(dev), torch.from_numpy(qv).to(dev)
    return torch.topk(qt @ xt.T, k, dim=1).indices.cpu().numpy()


def _recall(found, gt):
    return float(np.mean([len(set(f[f >= 0]) & set(g)) / len(g) for f, g in zip(found, gt)]))


def bench_search(dev, n, d, nq, k=10, *, faiss_rows=True) -> list[dict]:
    x, qv = _clustered(n, d, nq)
    gt = _exact(x, qv, k, dev)
    rows = []
    for preset in ("turbo-4", "turbo-2"):
        t0 = time.perf_counter()
        index = vqdb.Index(d, metric="ip", quantizer=preset, device="cuda" if dev.type == "cuda" else "cpu")
        if dev.type != "cuda":  # dry run: exercise the device scan on CPU tensors
            index._device = "cuda"
        index.add(x)
        build = time.perf_counter() - t0
        index.search(qv[:8], k)  # upload + warm-up
        for batch in (1, nq):

            def run():
                for s in range(0, nq, batch):
                    index.search(qv[s : s + batch], k)

            reps = 1 if batch == 1 else 3
            qsub = qv if batch == nq else qv[: min(nq, 64)]
            if batch == 1:
                t0 = time.perf_counter()
                for s in range(len(qsub)):
                    index.search(qsub[s : s + 1], k)
                t = time.perf_counter() - t0
                nqs = len(qsub)
            else:
                t = timeit(run, dev, reps=reps, warm=0)
                nqs = nq
            res = index.search(qv, k)
            rows.append(
                {
                    "system": f"vqdb {preset} device={'cuda' if dev.type == 'cuda' else 'cpu(dry)'}",
                    "n": n,
                    "d": d,
                    "bytes_per_vector": index._quantizer.code_size,
                    "batch": batch,
                    "qps": nqs / t,
                    "recall@10": _recall(res.ids, gt),
                    "build_s": build,
                }
            )
    if not faiss_rows:
        rows.append({"system": "faiss", "skipped": "dry run (pass --faiss to include faiss-cpu)"})
        return rows
    try:
        import faiss  # noqa: F401
    except ImportError:
        rows.append(
            {
                "system": "faiss-gpu",
                "skipped": "faiss is not importable (carry a faiss-gpu wheel, see gpu_check.sh)",
            }
        )
        return rows
    rows += _faiss_rows(x, qv, gt, k, dev)
    return rows


def _faiss_rows(x, qv, gt, k, dev):
    import faiss

    rows = []
    gpu = dev.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    res = faiss.StandardGpuResources() if gpu else None
    if not gpu:
        faiss.omp_set_num_threads(1)  # dry run on a shared CPU: OpenMP spinning under contention is very slow
    n, d = x.shape
    code_bytes = vqdb.TurboQuantizer(d, bits=4).code_size
    m_pq = max(1, min(code_bytes, d // 2))
    while d % m_pq:
        m_pq -= 1
    specs = [
        ("Flat", lambda: faiss.IndexFlatIP(d)),
        (
            f"IVF{int(4 * np.sqrt(n))},PQ{m_pq}",
            lambda: faiss.index_factory(d, f"IVF{int(4 * np.sqrt(n))},PQ{m_pq}", faiss.METRIC_INNER_PRODUCT),
        ),
    ]
    for name, make in specs:
        try:
            idx = make()
            if gpu:
                idx = faiss.index_cpu_to_gpu(res, 0, idx)
            t0 = time.perf_counter()
            if not idx.is_trained:
                idx.train(x[: min(n, 200_000)])
            idx.add(x)
            build = time.perf_counter() - t0
            if "IVF" in name:
                faiss.GpuParameterSpace().set_index_parameter(idx, "nprobe", 32) if gpu else setattr(
                    idx, "nprobe", 32
                )
            idx.search(qv[:8], k)
            t0 = time.perf_counter()
            _, found = idx.search(qv, k)
            t = time.perf_counter() - t0
            rows.append(
                {
                    "system": f"faiss{'-gpu' if gpu else '-cpu'} {name}",
                    "n": n,
                    "d": d,
                    "bytes_per_vector": 4 * d if name == "Flat" else m_pq,
                    "batch": len(qv),
                    "qps": len(qv) / t,
                    "recall@10": _recall(found, gt),
                    "build_s": build,
                }
            )
        except Exception as exc:  # noqa: BLE001
            rows.append({"system": f"faiss {name}", "error": repr(exc)})
    return rows


# ------------------------------------------------------------------------------------------------
def bench_kv(dev, lengths, *, b=1, hq=32, hkv=8, d=128) -> list[dict]:
    from vqdb.kvcache import CompressedKVLayer, make_codec
    from vqdb.kvcache import device_decode as kv

    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for n in lengths:
        keys = torch.randn(b, hkv, n, d, generator=g).to(dev)
        values = torch.randn(b, hkv, n, d, generator=g).to(dev)
        layer = CompressedKVLayer(
            make_codec("turbo", 4, d, role="key"),
            make_codec("turbo", 4, d, role="value"),
            residual_length=128,
            flush_block=128,
        )
        for s in range(0, n, 4096):
            layer.append(keys[:, :, s : s + 4096], values[:, :, s : s + 4096])
        r = layer.append(
            torch.randn(b, hkv, 1, d, generator=g).to(dev), torch.randn(b, hkv, 1, d, generator=g).to(dev)
        )
        q = torch.randn(b, hq, 1, d, generator=g).to(dev)
        scale = d**-0.5
        k16, v16 = keys.half(), values.half()
        q16 = q.half()
        row = {
            "tokens": n,
            "batch": b,
            "q_heads": hq,
            "kv_heads": hkv,
            "head_dim": d,
            "n_codes": r.n_codes,
            "code_bytes_per_token_per_head": layer.key_codec.code_bytes + layer.value_codec.code_bytes,
            "fp16_bytes_per_token_per_head": 4 * d,
        }
        row["dense_fp16_s"] = timeit(lambda: kv.dense_decode_attention(q16, k16, v16, scale), dev, reps=10)
        try:
            row["sdpa_fp16_s"] = timeit(
                lambda: torch.nn.functional.scaled_dot_product_attention(
                    q16, k16, v16, scale=scale, enable_gqa=True
                ),
                dev,
                reps=10,
            )
        except Exception as exc:  # noqa: BLE001
            row["sdpa_fp16_error"] = repr(exc)
        impls = ["torch"] + (["numba"] if dev.type == "cuda" and probe_cuda_numba() is None else [])
        for impl in impls:
            try:
                row[f"vqdb_{impl}_s"] = timeit(
                    lambda: kv.decode_attention(
                        layer, q, r.keys, r.values, n_codes=r.n_codes, scale=scale, impl=impl
                    ),
                    dev,
                    reps=10,
                )
            except Exception as exc:  # noqa: BLE001
                row[f"vqdb_{impl}_error"] = repr(exc)
        ref = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=scale)
        out = kv.decode_attention(layer, q, r.keys, r.values, n_codes=r.n_codes, scale=scale, impl="torch")
        row["max_abs_diff_vs_attend"] = float((out.float() - ref.float()).abs().max())
        rows.append(row)
        keys = values = layer = k16 = v16 = None  # free the device memory before the next size
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    lines = [
        f"# vqdb GPU benchmark ({res['device']}{', DRY RUN: numbers mean nothing' if res['dry_run'] else ''})",
        "",
    ]
    c = res.get("copy", {})
    if "copy_GBps_read_plus_write" in c:
        lines += [
            f"Copy bandwidth: {c['copy_GBps_read_plus_write']:.0f} GB/s (read+write), {c['copy_GBps_read']:.0f} GB/s read",
            "",
        ]
    if res.get("scoring"):
        lines += [
            "| impl | n | code bytes | m | codes GB/s | fraction of copy read | ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["scoring"]:
            lines.append(
                f"| {r['impl']} | {r['n']} | {r['code_size']} | {r['m']} | {r['codes_GBps']:.1f} | "
                f"{r['fraction_of_copy_read']:.2f} | {1e3 * r['seconds']:.2f} |"
            )
        lines.append("")
    if res.get("search"):
        lines += ["| system | bytes/vec | batch | QPS | recall@10 |", "|---|---|---|---|---|"]
        for r in res["search"]:
            if "qps" in r:
                lines.append(
                    f"| {r['system']} | {r['bytes_per_vector']} | {r['batch']} | {r['qps']:.0f} | {r['recall@10']:.3f} |"
                )
            else:
                lines.append(f"| {r['system']} | {r.get('skipped') or r.get('error')} | | | |")
        lines.append("")
    if res.get("kv"):
        lines += [
            "| tokens | dense fp16 ms | sdpa fp16 ms | vqdb torch ms | vqdb numba ms | bytes/token/head codes vs fp16 |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["kv"]:
            f = lambda key: f"{1e3 * r[key]:.3f}" if key in r else "-"  # noqa: E731
            lines.append(
                f"| {r['tokens']} | {f('dense_fp16_s')} | {f('sdpa_fp16_s')} | {f('vqdb_torch_s')} | {f('vqdb_numba_s')} | "
                f"{r['code_bytes_per_token_per_head']} vs {r['fp16_bytes_per_token_per_head']} |"
            )
    for key, err in res.get("errors", {}).items():
        lines.append(f"\n**{key} failed**: `{err.splitlines()[-1] if err else ''}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, any device: checks the script only")
    ap.add_argument(
        "--out", default=None, help="JSON path (default $OUT/gpu_bench.json or bench/results/gpu_bench.json)"
    )
    ap.add_argument("--sections", default="copy,scoring,kv,search")
    ap.add_argument(
        "--faiss", action="store_true", help="dry run: include the (slow on a shared CPU) faiss-cpu rows"
    )
    ap.add_argument("--budget-s", type=float, default=None, help="start no section after this many seconds")
    args = ap.parse_args(argv)
    have_cuda = probe_cuda_torch() is None
    if not have_cuda and not args.dry_run:
        print(
            f"no CUDA device ({probe_cuda_torch()}); use --dry-run to check the script on CPU",
            file=sys.stderr,
        )
        return 2
    dev = torch.device("cuda" if have_cuda else "cpu")
    if not have_cuda:
        tc.set_device("cpu")
    dry = args.dry_run
    sizes = dict(
        copy=1 << 20 if dry else 2 << 30,
        score_n=4096 if dry else 8_000_000,
        score_d=128,
        ms=(1, 8) if dry else (1, 8, 32, 128),
        search_n=1500 if dry else 1_000_000,
        search_d=64 if dry else 128,
        nq=16 if dry else 1000,
        kv=(256, 512) if dry else (8192, 16384, 32768),
    )
    out_dir = os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = args.out or os.path.join(out_dir, "gpu_bench_dryrun.json" if dry else "gpu_bench.json")
    res = {
        "device": torch.cuda.get_device_name(0) if have_cuda else "cpu",
        "dry_run": dry,
        "sizes": sizes,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "errors": {},
    }
    try:
        import numba

        res["numba"] = numba.__version__
    except ImportError:
        pass
    sections = set(args.sections.split(","))
    copy_read = 1.0
    start = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for name in ("copy", "scoring", "kv", "search"):
        if name not in sections:
            continue
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            res["errors"][name] = f"skipped: time budget of {args.budget_s:.0f} s spent"
            continue
        t0 = time.perf_counter()
        try:
            if name == "copy":
                res["copy"] = bench_copy(dev, sizes["copy"])
                copy_read = res["copy"]["copy_GBps_read"]
            elif name == "scoring":
                res["scoring"] = bench_scoring(
                    dev, sizes["score_n"], sizes["score_d"], sizes["ms"], copy_read
                )
            elif name == "search":
                res["search"] = bench_search(
                    dev, sizes["search_n"], sizes["search_d"], sizes["nq"], faiss_rows=not dry or args.faiss
                )
            else:
                res["kv"] = bench_kv(
                    dev, sizes["kv"], hq=8 if dry else 32, hkv=2 if dry else 8, d=32 if dry else 128
                )
        except Exception:  # noqa: BLE001 - keep the other sections
            res["errors"][name] = traceback.format_exc()
            print(res["errors"][name], file=sys.stderr)
        print(f"[gpu_bench] {name}: {time.perf_counter() - t0:.1f}s", flush=True)
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
        _write(res, path)  # after every section: a timeout later still leaves results
    print(_write(res, path))
    return 1 if res["errors"] else 0


def _write(res: dict, path: str) -> str:
    with open(path, "w") as f:
        json.dump(res, f, indent=1, default=float)
    md = markdown(res)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
