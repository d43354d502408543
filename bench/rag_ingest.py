"""Ingest of 100,000 passages into a ``TextCollection`` in batches of 100 (how framework stores write),
with the BM25 side kept live by incremental updates instead of a rebuild after every write.

    python -m bench.rag_ingest [--n 100000] [--batch 100] [--embed-sample 1000]

Indexing and embedding are measured apart (embedding 100,000 passages with MiniLM on 2 shared cores
would take most of an hour):

- **indexing**: the real WordNet passages (``../shared/data/wordnet-corpus``) with their real MiniLM
  embeddings (``../shared/data/wordnet-minilm384``, row i = passage i) passed as ``vectors=``, so each
  ``add`` does the index write (WAL fsync), the metadata and the BM25 update, and no model run. UUID
  string ids, as LangChain / LlamaIndex send. A BM25 query every 10 batches keeps the lexical index
  built (without it the incremental path would never run). At 10k / 50k / 100k passages the cost of
  one full BM25 rebuild is timed too: what every write cost before incremental updates.
- **embedding**: ``--embed-sample`` passages chunked by the model's tokenizer and embedded; the
  passages/s figure is extrapolated to ``--n`` (said so in the results).

Writes ``bench/results/rag_ingest.{json,md}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
import uuid

import numpy as np

from .common import RESULTS_DIR, machine_info, machine_line, write_json


def load_passages(n: int) -> tuple[list[str], np.ndarray] | None:
    from vqdb import datasets

    root = datasets.shared_path("wordnet-corpus")
    ds = datasets.wordnet_minilm("words")
    if root is None or ds is None:
        return None
    texts = []
    with gzip.open(os.path.join(root, "passages.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts, np.ascontiguousarray(ds.base[:n], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    from vqdb.rag import TextCollection
    from vqdb.rag.bm25 import BM25Index, tokenize

    ap = argparse.ArgumentParser(prog="python -m bench.rag_ingest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--embed-sample", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "rag_ingest"))
    args = ap.parse_args(argv)
    loaded = load_passages(args.n)
    if loaded is None:
        print("needs ../shared/data/wordnet-corpus and wordnet-minilm384", file=sys.stderr)
        return 2
    texts, vectors = loaded
    n = len(texts)
    info = machine_info(2)
    load_before = os.getloadavg()
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"wordnet/{i}")) for i in range(n)]
    add_s, query_s, rebuild = [], [], {}
    checkpoints = {10_000, 50_000, n}
    with tempfile.TemporaryDirectory() as tmp:
        col = TextCollection(os.path.join(tmp, "col"), id_type="str")
        t_all = time.perf_counter()
        for b, s in enumerate(range(0, n, args.batch)):
            e = min(n, s + args.batch)
            t = time.perf_counter()
            col.add(
                texts[s:e], metadata=[{"pos": i % 5} for i in range(s, e)], ids=ids[s:e], vectors=vectors[s:e]
            )
            add_s.append(time.perf_counter() - t)
            if b % 10 == 9:
                t = time.perf_counter()
                col.query("a small bird of the forest", k=10, mode="bm25")
                query_s.append(time.perf_counter() - t)
            if e in checkpoints:
                live = col._bm25.ids
                toks = [tokenize(x) for x in texts[:e]]
                t = time.perf_counter()
                BM25Index().build(live, toks)
                rebuild[e] = time.perf_counter() - t
                print(
                    f"{e} passages: add p50 {np.median(add_s[-100:]) * 1e3:.1f} ms, rebuild {rebuild[e]:.2f} s",
                    flush=True,
                )
        total_s = time.perf_counter() - t_all
        col.close()
    # a rebuild after every write (what the collection did before): the rebuild cost grows about linearly
    sizes = np.array(sorted(rebuild))
    per_batch = np.interp(np.arange(args.batch, n + 1, args.batch), sizes, [rebuild[k] for k in sizes])
    embed = embed_rate(texts[: args.embed_sample])
    add_ms = np.asarray(add_s) * 1e3
    out = {
        "command": "python -m bench.rag_ingest " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "n": n,
        "batch": args.batch,
        "indexing": {
            "total_s": round(total_s, 1),
            "sum_of_add_calls_s": round(float(np.sum(add_s)), 1),
            "sum_of_bm25_queries_s": round(float(np.sum(query_s)), 2),
            "passages_per_s": round(n / total_s, 1),
            "add_ms": {
                "p50": round(float(np.median(add_ms)), 2),
                "p99": round(float(np.percentile(add_ms, 99)), 2),
                "first_100_batches_p50": round(float(np.median(add_ms[:100])), 2),
                "last_100_batches_p50": round(float(np.median(add_ms[-100:])), 2),
            },
            "bm25_query_ms_p50": round(float(np.median(query_s)) * 1e3, 2),
            "full_bm25_rebuild_s": {str(k): round(v, 3) for k, v in sorted(rebuild.items())},
            "estimated_rebuild_after_every_batch_s": round(float(per_batch.sum()), 1),
        },
        "embedding": embed,
        "embedding_extrapolated_s": round(n / embed["passages_per_s"], 1) if embed else None,
    }
    write_json(args.out + ".json", out)
    ix = out["indexing"]
    lines = [
        f"# TextCollection ingest: {n:,} passages in batches of {args.batch}",
        "",
        f"`{out['command']}` — {machine_line(info)}; load average before {out['loadavg_before']}, after "
        f"{out['loadavg_after']}. Real WordNet passages with their real MiniLM embeddings passed as `vectors=` "
        "(indexing measured without the model), UUID string ids, a BM25 query every 10 batches.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| indexing, {n:,} passages: the add calls alone | {ix['sum_of_add_calls_s']} s |",
        f"| the whole loop (adds, {len(query_s)} BM25 queries, the 3 timed rebuilds below) | {ix['total_s']} s |",
        f"| add of one batch, p50 / p99 | {ix['add_ms']['p50']} / {ix['add_ms']['p99']} ms |",
        f"| add p50, first 100 / last 100 batches | {ix['add_ms']['first_100_batches_p50']} / "
        f"{ix['add_ms']['last_100_batches_p50']} ms |",
        f"| BM25 query p50 (incrementally updated index) | {ix['bm25_query_ms_p50']} ms |",
    ]
    for k, v in ix["full_bm25_rebuild_s"].items():
        lines.append(
            f"| one full BM25 rebuild at {int(k):,} passages (the old cost of every write) | {v} s |"
        )
    lines.append(
        f"| rebuild after every batch, estimated from those (interpolated) | {ix['estimated_rebuild_after_every_batch_s']} s |"
    )
    if embed:
        lines.append(
            f"| embedding (MiniLM, token-window chunks), measured on {embed['passages']:,} passages | "
            f"{embed['passages_per_s']} passages/s |"
        )
        lines.append(
            f"| embedding of {n:,} passages, **extrapolated** | {out['embedding_extrapolated_s']} s |"
        )
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def embed_rate(sample: list[str]) -> dict | None:
    """Passages/s of chunking (by the model's tokenizer) + embedding ``sample`` with the bundled MiniLM."""
    from vqdb.rag import TextCollection

    if not sample:
        return None
    col = TextCollection()
    col.embedder.encode(["warm up"])
    t = time.perf_counter()
    ids = col.add(sample)
    seconds = time.perf_counter() - t
    return {
        "passages": len(ids),
        "documents": len(sample),
        "seconds": round(seconds, 2),
        "passages_per_s": round(len(ids) / seconds, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
