"""Write tests/index/data/format1/: a format-1 index made by vqdb at main 280c2e5 (before format 2)."""

import json
import os
import shutil
import sys

import vqdb
import vqdb.datasets
from vqdb.quantizers import TurboQuantizer

out = sys.argv[1]
shutil.rmtree(out, ignore_errors=True)
ds = vqdb.datasets.wordnet_sample()
x = ds.base[:160]
q = TurboQuantizer(ds.dim, 4, rotation="hadamard")
index = vqdb.Index(
    ds.dim, metric="ip", quantizer=q, path=os.path.join(out, "index"), store_vectors=True, flush_rows=1 << 20
)
meta = [{"i": i, "word": f"w{i % 7}", "even": i % 2 == 0} for i in range(160)]
index.add(x[:120], metadata=meta[:120])
index.save()  # a segment
index.delete([3, 4, 5])
index.save()  # a deletes file
index.add(x[120:160], metadata=meta[120:160])  # left in the v1 WAL
index.delete([121, 7])  # logged deletes (one in the segment, one in the WAL rows)
res = index.search(ds.queries[:5], 10)
expected = {
    "ids": sorted(index.ids().tolist()),
    "search_ids": res.ids.tolist(),
    "search_scores": res.scores.tolist(),
    "get_130": index.get([130]).metadata,
}
index.close()
os.remove(os.path.join(out, "index", "LOCK"))
json.dump(expected, open(os.path.join(out, "expected.json"), "w"))
