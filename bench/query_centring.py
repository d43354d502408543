"""Diagnostic: how much does centring the *query* add to a centred sign / b-bit code?

    python -m bench.query_centring [--quick]

vqdb's quantizers code the residual r = x - c from the base mean c and estimate <q, x> as
<q, c> + est<q, r>. RaBitQ (FAISS, rabitqlib) instead estimates the distance with the query centred too:
<q, x> = <q, c> + <c, r> + est<q - c, r>, where the exact per-vector scalar <c, r> comes from its stored
factors. The estimation error of est<v, r> grows with ||v||, and on data far from the origin (Fashion-MNIST:
||c|| = 0.77, ||q - c|| = 0.64 on unit vectors) ||q - c|| << ||q|| = 1.

This script measures recall@10 of both estimators with the same codes, in plain NumPy:
- ``sign``: the RaBitQ-style 1-bit code (dense Haar rotation, sign bits, ||r||^2 / ||Pr||_1 factor);
- ``vqdb-<preset>``: vqdb's own decoded residuals r_hat (``decode(codes) - centre``) for a few presets,
  scored as <q, c> + <q, r_hat> (what vqdb does) and as <q, c> + <c, r> + <q - c, r_hat> (centred query,
  needing one more exact scalar per vector, e.g. from ||r|| and the stored ||x||^2).
Writes ``bench/results/query_centring.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .common import (
    RESULTS_DIR,
    load_sets,
    machine_info,
    machine_line,
    recalls,
    set_threads,
    topk_chunked,
    write_json,
)


def _topk(est_fn, n: int, m: int) -> np.ndarray:
    return topk_chunked(est_fn, n, m, 100, chunk=8192)


def run_set(bs, presets: list[str]) -> list[dict]:
    import vqdb

    x, d = bs.base, bs.dim
    c = x.astype(np.float64).mean(0).astype(np.float32)
    r = x - c
    cr = r @ c  # exact <c, r> per vector
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0].astype(np.float32)
    u = r @ rot.T
    signs = np.sign(u).astype(np.float32)
    factor = (np.einsum("ij,ij->i", r, r) / np.abs(u).sum(1)).astype(np.float32)
    rows = []
    codecs = [("sign (RaBitQ-style 1-bit)", signs @ rot, factor)]
    for p in presets:
        q = vqdb.make_quantizer(p, d).fit(x)
        codecs.append((f"vqdb {p} ({q.code_size} B)", q.decode(q.encode(x)) - c, None))
    for qs in bs.query_sets:
        qv = qs.queries
        qc = qv @ c
        for name, rhat, f in codecs:
            scale = (lambda s, e: 1.0) if f is None else (lambda s, e: f[None, s:e])
            plain = _topk(
                lambda s, e: qc[:, None] + (qv @ rhat[s:e].T) * scale(s, e), x.shape[0], qv.shape[0]
            )
            centred = _topk(
                lambda s, e: qc[:, None] + cr[None, s:e] + ((qv - c) @ rhat[s:e].T) * scale(s, e),
                x.shape[0],
                qv.shape[0],
            )
            row = {
                "dataset": bs.name,
                "queries": qs.name,
                "codes": name,
                "norm_c": float(np.linalg.norm(c)),
                "mean_norm_q_minus_c": float(np.linalg.norm(qv - c, axis=1).mean()),
                "plain": recalls(plain, qs.gt),
                "centred_query": recalls(centred, qs.gt),
            }
            rows.append(row)
            print(
                f"{bs.name:22s} {qs.name:9s} {name:32s} recall@10 plain {row['plain']['recall@10']:.4f}  "
                f"centred query {row['centred_query']['recall@10']:.4f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.query_centring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--presets", nargs="*", default=["turbo-1", "turbo-2", "turbo-4"])
    args = ap.parse_args(argv)
    threads = set_threads()
    info = machine_info(threads)
    t0 = time.perf_counter()
    rows = []
    for bs in load_sets(args.quick, ["wordnet-minilm384", "fashion-mnist-784-cos"]):
        rows += run_set(bs, args.presets)
    cmd = "python -m bench.query_centring " + " ".join(argv if argv is not None else sys.argv[1:])
    out_dir = os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR
    write_json(
        os.path.join(out_dir, "query_centring.json"), {"command": cmd.strip(), "machine": info, "rows": rows}
    )
    lines = [
        "# Centring the query as well as the data (diagnostic)",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {machine_line(info)}; {time.perf_counter() - t0:.0f} s",
        "",
        "Same codes, two estimators of <q, x>: plain = <q,c> + est<q, r> (vqdb today); centred = "
        "<q,c> + <c,r> + est<q − c, r> (RaBitQ's form; one more exact scalar per vector).",
        "",
        "| data set | queries | codes | ‖c‖ | mean ‖q−c‖ | recall@10 plain | recall@10 centred | recall@1@10 plain → centred |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['queries']} | {r['codes']} | {r['norm_c']:.2f} | {r['mean_norm_q_minus_c']:.2f} | "
            f"{r['plain']['recall@10']:.4f} | **{r['centred_query']['recall@10']:.4f}** | "
            f"{r['plain']['recall@1@10']:.3f} → {r['centred_query']['recall@1@10']:.3f} |"
        )
    with open(os.path.join(out_dir, "query_centring.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
