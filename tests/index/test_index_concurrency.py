"""Many threads searching while one thread writes (adds, upserts, deletes, flushes, compacts)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import vqdb


@pytest.mark.parametrize("stored", [False, True], ids=["memory", "disk"])
def test_searches_run_while_one_thread_writes(tmp_path, wordnet, quantizer, stored):
    x, q = wordnet.base, wordnet.queries[:8]
    kw = {"path": tmp_path / "ix", "flush_rows": 300} if stored else {}
    index = vqdb.Index(wordnet.dim, metric="cos", quantizer=quantizer, ivf=16, store_vectors=True, **kw)
    index.add(x[:1000], metadata=[{"g": i % 3} for i in range(1000)])
    ever = set(range(1000))
    ever_lock = threading.Lock()
    errors, searches = [], [0]
    stop = threading.Event()

    def writer():
        try:
            rng = np.random.default_rng(1)
            for step in range(15):
                lo = 1000 + step * 50
                with ever_lock:
                    ever.update(range(lo, lo + 50))
                index.add(
                    x[lo % 5000 : lo % 5000 + 50],
                    ids=np.arange(lo, lo + 50),
                    metadata=[{"g": i % 3} for i in range(50)],
                )
                victims = rng.choice(lo, 20, replace=False)
                live = [v for v in victims.tolist() if v in index][:10]
                index.upsert(x[rng.integers(0, 5000, len(live))], ids=live)
                index.delete(live[:5])
                if step == 8:
                    index.compact()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader(seed):
        rng = np.random.default_rng(seed)
        try:
            while not (stop.is_set() and searches[0] >= 10):  # the writer's whole run, and >= 10 searches
                flt = None if rng.random() < 0.5 else {"g": int(rng.integers(0, 3))}
                res = index.search(
                    q, 10, filter=flt, nprobe=int(rng.integers(1, 17)), rerank=bool(rng.random() < 0.3)
                )
                assert res.ids.shape == (8, 10)
                for row in res.ids:
                    found = row[row >= 0]
                    assert len(set(found.tolist())) == found.size, "one id twice in a result"
                with ever_lock:
                    assert set(res.ids[res.ids >= 0].tolist()) <= ever
                searches[0] += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(2)
    ]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert searches[0] >= 10 and time.time() - t0 < 120
    # the final state is what the writer did
    assert len(index) == len(index.ids()) == len(set(index.ids().tolist()))
    if stored:
        n = len(index)
        index.close()
        with vqdb.open(tmp_path / "ix") as again:
            assert len(again) == n
