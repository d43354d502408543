"""Summary, Markdown and plots of the quantizer benchmark (``bench/quantizers.py``)."""

from __future__ import annotations

import math
import os

from .common import machine_line

# issue 2's byte budgets and recall@10 goals (dev queries); other sets get budgets at 1/2/4 bits + 8 bytes
ISSUE_BUDGETS = {
    "wordnet-minilm384": [(56, 0.75), (104, 0.87), (200, 0.96)],
    "fashion-mnist-784-cos": [(106, 0.73), (204, 0.85), (400, 0.95)],
}
NEAR_FACTOR = 1.25  # "best peer at a little more memory": bytes <= 1.25 x budget


def budgets_for(dataset: str, dim: int) -> list[tuple[int, float | None]]:
    if dataset in ISSUE_BUDGETS:
        return ISSUE_BUDGETS[dataset]
    return [(dim * b // 8 + 8, None) for b in (1, 2, 4)]


def _best(rows, max_bytes):
    cands = [r for r in rows if r["bytes"] <= max_bytes + 1e-9]
    return max(cands, key=lambda r: (r["recall@10"], -r["bytes"])) if cands else None


def _brief(r):
    return (
        None
        if r is None
        else {
            "method": r["method"],
            "bytes": r["bytes"],
            "recall@10": r["recall@10"],
            "recall@1@10": r["recall@1@10"],
            "encode_vps": r["encode_vps"],
        }
    )


def summarize(rows: list[dict]) -> list[dict]:
    """Per (dataset, query set, budget): vqdb's best vs the best peer at <= budget (and <= 1.25x budget),
    with encode throughput ratios to FAISS PQ (train+add, largest M within the budget) and SQ4 (add)."""
    out = []
    keys = sorted({(r["dataset"], r["queries"], r["dim"]) for r in rows}, key=lambda t: (t[0], t[1]))
    for dataset, queries, dim in keys:
        sel = [r for r in rows if r["dataset"] == dataset and r["queries"] == queries]
        ours = [r for r in sel if r["library"] == "vqdb"]
        peers = [r for r in sel if r["library"] != "vqdb"]
        sq4 = next((r for r in peers if r["method"] == "faiss-SQ4"), None)
        for budget, target in budgets_for(dataset, dim):
            v, p, pn = _best(ours, budget), _best(peers, budget), _best(peers, budget * NEAR_FACTOR)
            pq = max(
                (r for r in peers if r["family"] == "faiss-PQ" and r["bytes"] <= budget),
                key=lambda r: r["bytes"],
                default=None,
            )
            if pq is None:  # quick mode runs no 8-bit PQ: fall back to PQFastScan
                pq = max(
                    (r for r in peers if r["family"] == "faiss-PQFastScan" and r["bytes"] <= budget),
                    key=lambda r: r["bytes"],
                    default=None,
                )
            row = {
                "dataset": dataset,
                "queries": queries,
                "budget": budget,
                "target_recall@10": target,
                "vqdb": _brief(v),
                "peer": _brief(p),
                "peer_near": _brief(pn),
            }
            if v is not None:
                row["meets_target"] = None if target is None else v["recall@10"] >= target
                row["beats_peer"] = None if p is None else v["recall@10"] > p["recall@10"]
                row["beats_peer_near"] = None if pn is None else v["recall@10"] > pn["recall@10"]
                if pq is not None:
                    row["pq"] = pq["method"]
                    row["encode_ratio_vs_pq_train_add"] = v["encode_vps"] / pq["encode_vps"]
                if sq4 is not None:
                    row["encode_ratio_vs_sq4_add"] = v["encode_vps"] / sq4["encode_vps"]
            out.append(row)
    return out


def _fmt(x, nd=3):
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{nd}f}"
    return str(x)


def _vps(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x / 1e3:,.0f}k" if x >= 1e4 else f"{x:,.0f}"


def _cell(b):
    return "–" if b is None else f"{b['method']} ({b['bytes']:g} B) **{b['recall@10']:.3f}**"


def markdown(result: dict) -> str:
    rows, summary, info = result["rows"], result["summary"], result["machine"]
    lines = [
        "# Quantizer benchmark: vqdb vs FAISS and rabitqlib at equal bytes per vector",
        "",
        f"Command: `{result['command']}`{' (quick mode: subsampled base, 200 queries, few configs)' if result['quick'] else ''}  ",
        f"Machine: {machine_line(info)}  ",
        f"Date: {info['date']}; total wall time {result['wall_s']:.0f} s"
        + (
            "."
            if result.get("complete", True)
            else " so far (PARTIAL: written after each data set; the run went on or was cut short)."
        ),
    ]
    runs = result.get("runs", [])
    if len(runs) > 1:  # merged with --update: say which command produced which data sets
        lines += ["", "Merged from several runs (`--update`):"]
        lines += [
            f"- `{r['command']}` ({', '.join(r.get('datasets', [])) or 'earlier data sets'}; "
            f"{r['machine']['date']}, load average at start "
            f"{', '.join(f'{x:.1f}' for x in r['machine'].get('loadavg_at_start') or [])})"
            for r in runs
        ]
    lines += [
        "",
        "Flat (brute-force) scans of every code; exact ground truth as shipped (Fashion-MNIST cosine: "
        "rows normalised, exact cosine top-100 recomputed). Bytes per vector count everything stored for "
        "scoring (codes, norms, correction factors; ids excluded — rabitqlib's 4-byte id is subtracted). "
        "vqdb: `fit` (the base mean, one pass) + `encode`, scored with `q.score` over 16,384-code chunks. "
        "Encode vectors/s: vqdb fit+encode; FAISS PQ/PQFastScan/RaBitQ/LSH train+add; FAISS SQ add; "
        'rabitqlib mean + build (1 cluster, centroid = mean, nprobe = 1). "setup s" (vqdb only, not in '
        "encode): building the quantizer (random rotation, cached Lloyd–Max codebooks) plus a 64-vector "
        "warm-up that loads numba's compiled kernels — one-time, independent of n. FAISS RaBitQ runs "
        "behind a random rotation (`RR,RaBitQ`), as RaBitQ assumes; FAISS PQ trains on ≤ 16,384 vectors.",
        "",
        "## Summary at the byte budgets of issue 2",
        "",
        f"Best vqdb configuration vs the best peer at ≤ the budget, and the best peer at ≤ {NEAR_FACTOR}× the "
        "budget (recall@10). Encode ratio: vqdb's chosen configuration, vectors/s, over FAISS PQ "
        "(train+add, largest M within the budget) and over FAISS SQ4 (add).",
        "",
        "| data set | queries | budget B | goal | vqdb best | best peer ≤ B | best peer ≤ 1.25 B | Δ vs peer | encode ×PQ (which) | encode ×SQ4 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        v, p, pn = s["vqdb"], s["peer"], s["peer_near"]
        delta = "–" if v is None or p is None else f"{v['recall@10'] - p['recall@10']:+.3f}"
        goal = (
            "–"
            if s["target_recall@10"] is None
            else (f"{s['target_recall@10']:.2f} {'✓' if s.get('meets_target') else '✗'}")
        )
        lines.append(
            f"| {s['dataset']} | {s['queries']} | {s['budget']} | {goal} | {_cell(v)} | {_cell(p)} | {_cell(pn)} | "
            f"{delta} | {_fmt(s.get('encode_ratio_vs_pq_train_add'), 1)} ({s.get('pq', '–')}) | "
            f"{_fmt(s.get('encode_ratio_vs_sq4_add'), 2)} |"
        )
    for dataset in sorted({r["dataset"] for r in rows}):
        sel = [r for r in rows if r["dataset"] == dataset]
        r0 = sel[0]
        lines += ["", f"## {dataset} — {r0['n']:,} × {r0['dim']}, metric {r0['metric']}", ""]
        for queries in sorted({r["queries"] for r in sel}):
            qrows = sorted(
                (r for r in sel if r["queries"] == queries), key=lambda r: (r["bytes"], r["method"])
            )
            lines += [
                f"### queries: {queries} ({qrows[0]['n_queries']})",
                "",
                "| method | bytes/vec | bits/dim | recall@10 | recall@1@10 | recall@1@100 | encode vec/s | encode timed | setup s | search s |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in qrows:
                name = f"**{r['method']}**" if r["library"] == "vqdb" else r["method"]
                lines.append(
                    f"| {name} | {r['bytes']:g} | {r['bits_per_dim']:.2f} | {r['recall@10']:.4f} | "
                    f"{r['recall@1@10']:.4f} | {r['recall@1@100']:.4f} | {_vps(r['encode_vps'])} | "
                    f"{r['encode_timing']} | {r.get('setup_s', 0):.1f} | {r['search_s']:.2f} |"
                )
    if result.get("skipped"):
        lines += ["", "## Skipped configurations", ""]
        lines += [f"- {s['dataset']}: {s['method']} — {s['reason']}" for s in result["skipped"]]
    lines += ["", "Plots: " + ", ".join(f"`{os.path.basename(p)}`" for p in result.get("plots", [])), ""]
    return "\n".join(lines)


def plot(rows: list[dict], out_dir: str, prefix: str = "quantizers") -> list[str]:
    """One recall@10-vs-bytes PNG per data set (a panel per query set); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for dataset in sorted({r["dataset"] for r in rows}):
        sel = [r for r in rows if r["dataset"] == dataset]
        qsets = sorted({r["queries"] for r in sel})
        fig, axes = plt.subplots(1, len(qsets), figsize=(7.5 * len(qsets), 5.5), squeeze=False)
        for ax, queries in zip(axes[0], qsets):
            qrows = [r for r in sel if r["queries"] == queries]
            fams = sorted({r["family"] for r in qrows}, key=lambda f: (not f.startswith("vqdb"), f))
            colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(fams), 2)))
            for fam, color in zip(fams, colors):
                pts = sorted((r["bytes"], r["recall@10"]) for r in qrows if r["family"] == fam)
                ours = fam.startswith("vqdb")
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    "-o" if ours else "--s",
                    lw=2 if ours else 1.2,
                    ms=4,
                    label=fam,
                    color=color,
                )
            for budget, target in budgets_for(dataset, qrows[0]["dim"]):
                ax.axvline(budget, color="grey", lw=0.6, ls=":")
                if target is not None:
                    ax.plot([budget], [target], marker="*", color="black", ms=10)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bytes per vector (all side data counted)")
            ax.set_ylabel("recall@10")
            ax.set_title(f"{dataset} — {queries} queries")
            ax.set_ylim(max(0.0, min(r["recall@10"] for r in qrows) - 0.05), 1.0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{prefix}_{dataset}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
