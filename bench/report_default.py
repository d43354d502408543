"""The data-oblivious default (the ``turbo-N`` presets) against its peers, from ``bench/results/quantizers.json``.

    python -m bench.report_default [--json bench/results/quantizers.json]

For every data set, query set and preset ``turbo-N`` (rows ``vqdb-default-turbo-N`` of ``bench.quantizers``):
recall@10 and bytes per vector beside rabitqlib and FAISS ``IndexRaBitQ`` (behind a random rotation) at the
same bits per coordinate, the best FAISS PQ within the preset's bytes, and the fitted ``turbo-pca-N`` at the
same N (how much the fit adds). Writes ``bench/results/default_vs_peers.md``. No measurement here: it only
reads what ``bench.quantizers`` recorded (with its command and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import RESULTS_DIR


def _rows(result: dict) -> dict:
    return {(r["dataset"], r["queries"], r["method"]): r for r in result["rows"]}


def _fmt(r: dict | None) -> str:
    return "–" if r is None else f"{r['recall@10']:.4f} @ {r['bytes']:.0f} B"


def table(result: dict) -> list[str]:
    rows = _rows(result)
    keys = sorted({(d, q) for d, q, m in rows if m.startswith("vqdb-default-turbo-")})
    out = [
        "| data set | queries | preset | default | rabitqlib (same bits) | FAISS RR+RaBitQ (same bits) "
        "| best FAISS PQ ≤ bytes | Δ vs rabitqlib | Δ vs FAISS RaBitQ | turbo-pca-N (Δ vs default) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, q in keys:
        for bits in ("1", "2", "2.5", "3", "3.5", "4"):
            me = rows.get((d, q, f"vqdb-default-turbo-{bits}"))
            if me is None:
                continue
            rq = rows.get((d, q, f"rabitqlib-{bits}bit"))
            fr = rows.get((d, q, f"faiss-RR+RaBitQ{bits}"))
            pq = [
                r
                for (dd, qq, m), r in rows.items()
                if dd == d
                and qq == q
                and m.startswith("faiss-PQ")
                and "FastScan" not in m
                and r["bytes"] <= me["bytes"]
            ]
            pq = max(pq, key=lambda r: r["bytes"]) if pq else None
            pca = rows.get((d, q, f"turbo-scaled-{bits}b-pca"))

            def delta(peer):
                if peer is None:
                    return "–"
                v = me["recall@10"] - peer["recall@10"]
                return f"{'**' if v >= 0 else ''}{v:+.4f}{'**' if v >= 0 else ''}"

            pca_s = "–" if pca is None else f"{_fmt(pca)} ({pca['recall@10'] - me['recall@10']:+.4f})"
            out.append(
                f"| {d} | {q} | turbo-{bits} | {_fmt(me)} | {_fmt(rq)} | {_fmt(fr)} | "
                f"{'–' if pq is None else pq['method'] + ' ' + _fmt(pq)} | {delta(rq)} | {delta(fr)} | {pca_s} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report_default", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=os.path.join(RESULTS_DIR, "quantizers.json"))
    args = ap.parse_args(argv)
    with open(args.json, encoding="utf-8") as f:
        result = json.load(f)
    runs = result.get("runs") or [{"command": result["command"], "machine": result["machine"]}]
    lines = [
        "# The training-free default (`turbo-N`) vs rabitqlib, FAISS RaBitQ and PQ",
        "",
        "Command: `python -m bench.report_default` (reads `bench/results/quantizers.json`; no new measurement).",
        "Rows from these `bench.quantizers` runs (all peers of a row set ran in the same process as vqdb):",
        *[
            f"- `{r['command']}` ({', '.join(r.get('datasets', []))}; {r['machine'].get('date', '')})"
            for r in runs
        ],
        "",
        "Recall@10 of a flat scan, dev queries. `turbo-N`: the preset (centred-query estimator, FHT-Kac rotation, "
        "fit = the base mean only). Δ > 0 in bold: the default is ahead. The last column is the fitted PCA "
        "basis at the same N (`turbo-pca-N`) and its gain over the default.",
        "",
        *table(result),
    ]
    path = os.path.join(os.path.dirname(args.json), "default_vs_peers.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
