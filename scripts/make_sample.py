"""Build the small real sample shipped in the repo (vqdb/data/) from ../shared/data.

The sample: the passages that define the first 400 dev word queries, plus random other passages up to
5,000, with their all-MiniLM-L6-v2 vectors (float16) and texts, and those 400 queries (text + vector).
Run once: ``python scripts/make_sample.py``. Deterministic (seed 0).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
OUT = os.path.join(os.path.dirname(__file__), "..", "vqdb", "data")
N_QUERIES, N_BASE = 400, 5000


def main() -> None:
    base = np.load(os.path.join(SHARED, "wordnet-minilm384", "base.f16.npy"))
    qvec = np.load(os.path.join(SHARED, "wordnet-minilm384", "queries_dev_words.f32.npy"))
    with open(os.path.join(SHARED, "wordnet-corpus", "queries_dev_words.jsonl"), encoding="utf-8") as f:
        queries = [json.loads(line) for line in f]
    with gzip.open(os.path.join(SHARED, "wordnet-corpus", "passages.jsonl.gz"), "rt", encoding="utf-8") as f:
        passages = [json.loads(line) for line in f]
    keep = [i for i, q in enumerate(queries) if q["relevant"]][:N_QUERIES]
    relevant = sorted({r for i in keep for r in queries[i]["relevant"]})
    rng = np.random.default_rng(0)
    others = np.setdiff1d(np.arange(base.shape[0]), relevant)
    extra = rng.choice(others, N_BASE - len(relevant), replace=False)
    rows = np.sort(np.concatenate([relevant, extra]))
    new_id = {int(r): i for i, r in enumerate(rows)}
    os.makedirs(OUT, exist_ok=True)
    np.savez_compressed(
        os.path.join(OUT, "wordnet_minilm_sample.npz"),
        base=base[rows],
        source_rows=rows.astype(np.int32),
        queries=qvec[keep].astype(np.float32),
    )
    with gzip.open(os.path.join(OUT, "wordnet_passages_sample.jsonl.gz"), "wt", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            p = passages[int(r)]
            f.write(json.dumps({"id": i, "synset": p["synset"], "text": p["text"]}) + "\n")
    with open(os.path.join(OUT, "wordnet_queries_sample.jsonl"), "w", encoding="utf-8") as f:
        for i in keep:
            q = queries[i]
            f.write(json.dumps({"text": q["text"], "relevant": [new_id[r] for r in q["relevant"]]}) + "\n")
    shutil.copy(os.path.join(SHARED, "wordnet-corpus", "LICENSE-WordNet-3.0.txt"), OUT)
    print(f"wrote {len(rows)} passages, {len(keep)} queries to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
