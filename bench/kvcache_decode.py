"""Decode-step time of SmolLM2-135M-Instruct with a long KV cache: transformers' dense ``DynamicCache``
against vqdb's fused attention from codes (Numba lookup kernels, :mod:`vqdb.kernels.kv_lut`), vqdb's
compat mode and transformers' ``QuantizedCache`` (issue 16, item 3), in one process.

Every cache is filled with the same real keys/values (the captured SmolLM2 cache of ``kv-smollm2``, tiled
to the context length), then one-token decode steps are timed round-robin across the caches (so the
shared machine's load drifts hit them alike); the first step warms up. Reported: median and minimum
whole-model step time, and the ratio to the dense cache.

Run (one benchmark at a time on a quiet machine)::

    python -m bench.kvcache_decode --threads 1
    python -m bench.kvcache_decode --threads 2

Torch and the Numba kernels get the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.kvcache_smollm2 import decode_times, load_model


def specs(residual: int | None) -> list[tuple[str, dict]]:
    """The dense cache, vqdb's default configuration (VQCache's defaults) fused and compat, quanto int4;
    ``residual`` overrides the full-precision window of vqdb and QuantizedCache (None: VQCache's default for
    vqdb, the same length for QuantizedCache)."""
    from vqdb.kvcache.hf import DEFAULT_RESIDUAL_LENGTH

    window = DEFAULT_RESIDUAL_LENGTH if residual is None else residual
    vq = {"cache": "vq", "residual_length": window}
    return [
        ("DynamicCache (dense, sdpa)", {"cache": "full"}),
        ("vqdb fused, default", {**vq, "mode": "fused"}),
        ("vqdb compat, default", vq),
        (
            "QuantizedCache quanto int4",
            {"cache": "quantized", "backend": "quanto", "nbits": 4, "residual": window},
        ),
    ]


def default_description(residual: int | None) -> str:
    from vqdb.kvcache import hf

    window = hf.DEFAULT_RESIDUAL_LENGTH if residual is None else residual
    return (
        f"K {hf.DEFAULT_KEY_CODEC} {hf.DEFAULT_KEY_BITS:g} / V {hf.DEFAULT_VALUE_CODEC} {hf.DEFAULT_VALUE_BITS:g} bits, "
        f"{'centred, ' if hf.DEFAULT_CENTER else ''}{hf.DEFAULT_SINK_TOKENS} sinks, window {window}"
    )


def write_markdown(path: str, result: dict) -> None:
    la0 = ", ".join(f"{x:.1f}" for x in result["machine"]["loadavg_at_start"] or [])
    la1 = ", ".join(f"{x:.1f}" for x in result["loadavg_at_end"])
    lines = [
        "# KV-cache decode-step time on SmolLM2-135M-Instruct (CPU)",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores shared with other jobs; torch threads "
        f"{result['threads']}; load average {la0} at start, {la1} at the end. {result['steps']} timed steps per cache "
        "and context, round-robin across caches; whole-model step (30 layers), float32 model. vqdb default: "
        f"{result['vqdb_default']}.",
        "",
        "| context | cache | median ms/step | min ms/step | median ÷ dense | min ÷ dense | MiB held |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["context"] for r in result["decode"]}):
        rows = [r for r in result["decode"] if r["context"] == n]
        dense = rows[0]
        for r in rows:
            lines.append(
                f"| {n} | {r['cache']} | {r['ms_per_step']:.1f} | {min(r['ms_all']):.1f} | "
                f"{r['ms_per_step'] / dense['ms_per_step']:.2f} | {min(r['ms_all']) / min(dense['ms_all']):.2f} | "
                f"{r['memory_bytes'] / 2**20:.1f} |"
            )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", default="1024,4096,8192")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--residual", type=int, default=None, help="window (default: VQCache's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--only", default="", help="comma-separated substrings of cache names (the dense one always runs)"
    )
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "kvcache_decode"))
    args = ap.parse_args(argv)

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # the fused kernels' threads
    import vqdb.kvcache  # noqa: F401  (registers the "vqdb" attention)

    t0 = time.perf_counter()
    info = machine_info(args.threads)
    model, _ = load_model()
    chosen = specs(args.residual)
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        chosen = [chosen[0]] + [s for s in chosen[1:] if any(k in s[0] for k in keep)]
    contexts = [int(c) for c in args.contexts.split(",") if c]
    rows = decode_times(model, contexts, chosen, args.steps)
    result = {
        "command": "python -m bench.kvcache_decode " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads,
        "vqdb_default": default_description(args.residual),
        "steps": args.steps,
        "machine": info,
        "decode": rows,
        "loadavg_at_end": list(os.getloadavg()),
        "seconds_total": time.perf_counter() - t0,
    }
    suffix = f"_t{args.threads}"
    write_json(args.out + suffix + ".json", json.loads(json.dumps(result, default=str)))
    write_markdown(args.out + suffix + ".md", result)
    print(f"wrote {args.out}{suffix}.json/.md in {result['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
