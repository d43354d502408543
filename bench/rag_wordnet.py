"""RAG retrieval on the full WordNet corpus: word -> definition, dense vs BM25 vs hybrid, float vs 4 vs 2 bits.

Task (``../shared/data/wordnet-corpus/README.md``): each of the 1,000 dev word queries lists the base
passages that define it; a query is answered when one of them is in the top 10 ("recall@10" here; the
queries without any defining passage in the base are left out). The 115,659 passages use the
precomputed MiniLM vectors of ``wordnet-minilm384``; only the query texts are embedded, by the bundled
model, here. Dense search runs through ``TextCollection`` (``vqdb.Index`` with the given quantizer);
"float" is exact inner-product search over the unquantized vectors, fused with the same BM25 results by
the same reciprocal-rank fusion. Ingest throughput: ``TextCollection.add`` of a few thousand corpus
passages with the model on CPU (chunking + embedding + index write).

    python -m bench.rag_wordnet                      # full run, writes bench/results/rag_wordnet.{json,md}
    python -m bench.rag_wordnet --ingest 500 --quantizers turbo-4
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

from vqdb import datasets
from vqdb.rag import TextCollection
from vqdb.rag.collection import DEFAULT_CANDIDATES
from vqdb.rag.embed import Embedder
from vqdb.rag.fusion import DEFAULT_RRF_K, reciprocal_rank_fusion

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODES = ("dense", "bm25", "hybrid")


def _machine() -> dict:
    try:
        from bench.common import machine_info

        return machine_info(int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)))
    except Exception:  # noqa: BLE001 - the shared helper is optional here
        return {"cores": os.cpu_count(), "loadavg_at_start": list(os.getloadavg())}


def load_corpus():
    root = datasets.shared_path("wordnet-corpus")
    vec = datasets.wordnet_minilm("words")
    if root is None or vec is None:
        return None
    with gzip.open(os.path.join(root, "passages.jsonl.gz"), "rt", encoding="utf-8") as f:
        passages = [json.loads(line) for line in f]
    with open(os.path.join(root, "queries_dev_words.jsonl"), encoding="utf-8") as f:
        queries = [json.loads(line) for line in f]
    assert [p["id"] for p in passages] == list(range(len(passages)))
    return passages, queries, vec


def answered(ranked: list[np.ndarray], relevant: list[list[int]], k: int = 10) -> float:
    """Fraction of the queries with a relevant passage whose top ``k`` holds one."""
    ok = [bool(set(rel) & set(np.asarray(r)[:k].tolist())) for r, rel in zip(ranked, relevant) if rel]
    return float(np.mean(ok))


def exact_topk(q: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], 100):
        scores = q[s : s + 100] @ base.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        out[s : s + 100] = np.take_along_axis(part, order, 1)
    return out


def run_quantizer(name, texts, metadata, base, qtexts, qvec, relevant, gt, candidates):
    col = TextCollection(quantizer=name)
    t0 = time.perf_counter()
    col.add(texts, metadata=metadata, vectors=base)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    col._ensure_bm25()
    bm25_build_s = time.perf_counter() - t0
    out = {
        "quantizer": name,
        "bytes_per_vector": col.index.stats()["code_size"],
        "index_add_s": round(build_s, 2),
        "index_add_passages_per_s": round(len(texts) / build_s, 1),
        "bm25_build_s": round(bm25_build_s, 2),
    }
    for mode in MODES:
        t0 = time.perf_counter()
        res = col.query_many(qtexts, k=10, mode=mode, query_vectors=qvec)
        dt = time.perf_counter() - t0
        ranked = [np.array([h.id for h in hits], dtype=np.int64) for hits in res]
        out[mode] = {
            "recall_at_10": round(answered(ranked, relevant), 4),
            "top1": round(answered(ranked, relevant, 1), 4),
            "ms_per_query": round(dt * 1e3 / len(qtexts), 2),
        }
        if mode == "dense":
            found = np.full((len(ranked), 10), -1, dtype=np.int64)
            for i, r in enumerate(ranked):
                found[i, : len(r)] = r[:10]
            from vqdb.testing import recall_at_k

            out["dense"]["ann_recall_10_vs_exact"] = round(recall_at_k(found, gt, 10), 4)
    return out, col


def run_float(base, qvec, relevant, bm25_ranked, candidates, rrf_k) -> dict:
    t0 = time.perf_counter()
    exact = exact_topk(qvec, base, candidates)
    dense_ms = (time.perf_counter() - t0) * 1e3 / qvec.shape[0]
    fused = [reciprocal_rank_fusion([e, b], 10, rrf_k=rrf_k)[0] for e, b in zip(exact, bm25_ranked)]
    return {
        "quantizer": "float",
        "bytes_per_vector": base.shape[1] * 4,
        "dense": {
            "recall_at_10": round(answered(list(exact), relevant), 4),
            "top1": round(answered(list(exact), relevant, 1), 4),
            "ms_per_query": round(dense_ms, 2),
        },
        "hybrid": {
            "recall_at_10": round(answered(fused, relevant), 4),
            "top1": round(answered(fused, relevant, 1), 4),
        },
    }


def run_ingest(texts: list[str], n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(texts), n, replace=False))
    sample = [texts[i] for i in rows]
    emb = Embedder()
    emb.encode(["warm up"])  # model load is not ingest
    col = TextCollection()
    t0, c0 = time.perf_counter(), time.process_time()
    ids = col.add(sample)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    emb.encode(sample[:500])
    embed_only = (time.perf_counter() - t0) / min(500, n)
    import torch

    return {
        "passages": n,
        "passages_stored": int(len(ids)),
        "chars_mean": round(float(np.mean([len(t) for t in sample])), 1),
        "seconds": round(total, 2),
        "passages_per_s": round(n / total, 1),
        "cpu_seconds": round(cpu, 2),
        "passages_per_cpu_s": round(n / cpu, 1),
        "embedding_share": round(min(1.0, embed_only * n / total), 3),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "model": emb.name,
    }


def write_markdown(res: dict, path: str) -> None:
    lines = [
        "# RAG retrieval on WordNet (word -> definition)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine'].get('cpu', '?')}, "
        f"{res['machine'].get('cores')} cores, load average at start {res['machine'].get('loadavg_at_start')}",
        "",
        f"{res['n_passages']:,} passages (precomputed all-MiniLM-L6-v2 vectors), {res['n_queries']} dev word queries "
        f"({res['n_queries_with_relevant']} with a defining passage in the base; recall@10 = share of those with one "
        f"in the top 10). Hybrid = reciprocal-rank fusion (k={res['rrf_k']}) of the top {res['candidates']} "
        "of each side. Query embedding: "
        f"{res['query_embedding']['queries_per_s']} queries/s; min cosine to the shipped query vectors "
        f"{res['query_embedding']['min_cos_vs_shipped']}.",
        "",
        "| precision | bytes/vector | dense R@10 | BM25 R@10 | hybrid R@10 | dense top-1 | hybrid top-1 | dense ANN recall@10 | dense ms/q | hybrid ms/q |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bm25 = res["bm25"]
    for r in res["runs"]:
        d, h = r["dense"], r["hybrid"]
        lines.append(
            f"| {r['quantizer']} | {r['bytes_per_vector']} | {d['recall_at_10']:.4f} | {bm25['recall_at_10']:.4f} | "
            f"{h['recall_at_10']:.4f} | {d['top1']:.4f} | {h['top1']:.4f} | {d.get('ann_recall_10_vs_exact', 1.0):.4f} | "
            f"{d['ms_per_query']} | {h.get('ms_per_query', '')} |"
        )
    ing = res.get("ingest")
    if ing:
        extra = (
            f" (measured separately: `{ing['command']}`, load average {ing['loadavg_at_start'][0]:.1f})"
            if "command" in ing
            else ""
        )
        lines += [
            "",
            f"Ingest with embedding (model on CPU, {ing['torch_threads']} torch threads){extra}: {ing['passages']:,} corpus "
            f"passages (mean {ing['chars_mean']} characters) in {ing['seconds']} s = **{ing['passages_per_s']} passages/s** "
            f"(embedding ~{ing['embedding_share'] * 100:.0f}% of the time"
            + (
                f"; {ing['passages_per_cpu_s']} passages per CPU-second, a figure less sensitive to other jobs on the machine"
                if "passages_per_cpu_s" in ing
                else ""
            )
            + "). Index add of precomputed vectors: "
            + ", ".join(
                f"{r['quantizer']} {r['index_add_passages_per_s']:,} passages/s"
                for r in res["runs"]
                if "index_add_s" in r
            )
            + f"; BM25 build over the corpus {res['runs'][-1].get('bm25_build_s')} s.",
        ]
    lines += ["", "Goals: 4-bit dense within 1 point of float dense; hybrid above both dense and BM25.", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quantizers", default="turbo-4,turbo-2")
    ap.add_argument(
        "--ingest", type=int, default=2000, help="passages embedded for the throughput figure (0: skip)"
    )
    ap.add_argument("--out", default=RESULTS_DIR)
    ap.add_argument(
        "--ingest-only",
        action="store_true",
        help="re-measure only the ingest throughput, updating an existing results file",
    )
    args = ap.parse_args(argv)
    data = load_corpus()
    if data is None:
        print(
            "../shared/data/wordnet-corpus or wordnet-minilm384 not found: nothing to benchmark",
            file=sys.stderr,
        )
        return 0
    passages, queries, vec = data
    texts = [p["text"] for p in passages]
    json_path = os.path.join(args.out, "rag_wordnet.json")
    if args.ingest_only:
        with open(json_path, encoding="utf-8") as f:
            res = json.load(f)
        res["ingest"] = run_ingest(texts, args.ingest or 2000)
        res["ingest"]["command"] = "python -m bench.rag_wordnet " + " ".join(argv or sys.argv[1:])
        res["ingest"]["loadavg_at_start"] = list(os.getloadavg())
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
        write_markdown(res, os.path.join(args.out, "rag_wordnet.md"))
        print(json.dumps(res["ingest"]))
        return 0
    pos_of = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
    metadata = [{"pos": pos_of.get(p["synset"][-1], "other")} for p in passages]
    qtexts = [q["text"] for q in queries]
    relevant = [q["relevant"] for q in queries]
    res = {
        "command": "python -m bench."
        + os.path.splitext(os.path.basename(__file__))[0]
        + " "
        + " ".join(argv or sys.argv[1:]),
        "machine": _machine(),
        "n_passages": len(texts),
        "n_queries": len(qtexts),
        "n_queries_with_relevant": sum(1 for r in relevant if r),
    }

    emb = Embedder()
    emb.encode(["warm up"])
    t0 = time.perf_counter()
    qvec = emb.encode(qtexts)
    qdt = time.perf_counter() - t0
    res["query_embedding"] = {
        "queries_per_s": round(len(qtexts) / qdt, 1),
        "min_cos_vs_shipped": round(float((qvec * vec.queries).sum(1).min()), 6),
    }
    print(f"embedded {len(qtexts)} queries in {qdt:.1f} s", file=sys.stderr)

    runs = []
    bm25_ranked = None
    res["rrf_k"], res["candidates"] = DEFAULT_RRF_K, DEFAULT_CANDIDATES
    for name in [q for q in args.quantizers.split(",") if q]:
        t0 = time.perf_counter()
        r, col = run_quantizer(
            name, texts, metadata, vec.base, qtexts, qvec, relevant, vec.gt_ids, DEFAULT_CANDIDATES
        )
        print(f"{name}: {json.dumps(r)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        runs.append(r)
        if bm25_ranked is None:  # BM25 depends on the text only: read its lists once for the float run
            bm = col.query_many(qtexts, k=DEFAULT_CANDIDATES, mode="bm25")
            bm25_ranked = [np.array([h.id for h in hits], dtype=np.int64) for hits in bm]
            res["bm25"] = {
                "recall_at_10": round(answered(bm25_ranked, relevant), 4),
                "top1": round(answered(bm25_ranked, relevant, 1), 4),
                "ms_per_query": r["bm25"]["ms_per_query"],
            }
        del col
    runs.insert(0, run_float(vec.base, qvec, relevant, bm25_ranked, DEFAULT_CANDIDATES, DEFAULT_RRF_K))
    res["runs"] = runs
    if args.ingest:
        res["ingest"] = run_ingest(texts, args.ingest)
        print(f"ingest: {res['ingest']}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "rag_wordnet.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    write_markdown(res, os.path.join(args.out, "rag_wordnet.md"))
    print(open(os.path.join(args.out, "rag_wordnet.md"), encoding="utf-8").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
