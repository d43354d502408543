"""Write tests/index/data/graph_inline/: a graph index saved by vqdb at main d518add, whose graph file keeps
each node's neighbours' codes inline in its row (before the per-node code records)."""

import json
import os
import shutil
import sys

import numpy as np

import vqdb

out = sys.argv[1]
shutil.rmtree(out, ignore_errors=True)
rng = np.random.default_rng(7)
x = rng.standard_normal((400, 32)).astype(np.float32)
queries = rng.standard_normal((20, 32)).astype(np.float32)
index = vqdb.Index(32, metric="l2sq", quantizer="turbo-2", graph=8, path=os.path.join(out, "index"))
index.add(x)
index.delete([3, 50])  # two retired nodes (their vectors in the graph file)
index.upsert(x[:1] + 0.5, ids=[7])  # a moved vector: one more retired node
index.save()
res = index.search(queries, 10, ef=32)
expected = {"search_ids": res.ids.tolist(), "search_scores": res.scores.tolist()}
index.close()
os.remove(os.path.join(out, "index", "LOCK"))
np.save(os.path.join(out, "queries.npy"), queries)
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
