"""Durability for real: a child process adds in a loop and is SIGKILLed at random moments, 20+ times.

After every kill the index must open, and every add whose return the child acknowledged (it prints the
ids after ``add`` returns) must be there with its vector and metadata. Kills land anywhere: inside a WAL
append, a segment flush, a compaction, a manifest rename, or between them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

import vqdb

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLS = 21

CHILD = """
import sys
import numpy as np
import vqdb
path, xfile, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.load(xfile)
index = vqdb.open(path)
rng = np.random.default_rng(seed)
nxt = int(index.ids().max()) + 1 if len(index) else 0
step = 0
while True:
    n = int(rng.integers(1, 80))
    ids = np.arange(nxt, nxt + n)
    index.add(x[ids % len(x)], ids=ids, metadata=[{"id": int(i)} for i in ids])
    print(" ".join(map(str, ids.tolist())), flush=True)      # acknowledged: add has returned
    nxt += n
    step += 1
    if step % 9 == 0:
        index.compact()
    elif step % 4 == 0:
        old = rng.choice(nxt, 5, replace=False)
        index.upsert(x[old % len(x)], ids=old, metadata=[{"id": int(i)} for i in old])   # same content
"""


def test_sigkill_during_writes_loses_no_acknowledged_add(tmp_path, wordnet, quantizer, caplog):
    caplog.set_level("INFO", logger="vqdb.index")
    path = tmp_path / "ix"
    xfile = tmp_path / "x.npy"
    x = wordnet.base[:2000]
    np.save(xfile, x)
    # IVF with 8 lists, trained by the children's first adds (a kill may land in the training too);
    # small flushes and periodic compactions so that kills also land in segment writes and renames
    vqdb.Index(
        x.shape[1], metric="ip", quantizer=quantizer, ivf=8, path=path, store_vectors=True, flush_rows=300
    ).close()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO, os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
        VQDB_BACKEND=os.environ.get("VQDB_BACKEND", "reference"),
    )
    rng = np.random.default_rng(2024)
    acked: set[int] = set()
    for trial in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(xfile), str(trial)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        first = proc.stdout.readline()  # the child is up and has acknowledged one add
        assert first.endswith(b"\n"), proc.stderr.read().decode()[-3000:]
        time.sleep(float(rng.uniform(0.0, 0.25)))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        lines = (first + rest).split(b"\n")[:-1]  # a line cut by the kill has no newline: not acked
        for line in lines:
            acked.update(int(t) for t in line.split())
        with vqdb.open(path) as index:  # always opens
            present = set(index.ids().tolist())
            missing = acked - present
            assert not missing, f"kill {trial}: acknowledged ids lost: {sorted(missing)[:10]}"
            ids = np.array(sorted(acked))
            got = index.get(ids)
            np.testing.assert_array_equal(got.vectors, x[ids % len(x)])
            assert [m["id"] for m in got.metadata] == ids.tolist()
    assert len(acked) > KILLS * 10
    repairs = [r.getMessage() for r in caplog.records]
    print(
        f"{len(acked)} acknowledged ids over {KILLS} kills; repairs on reopen: {len(repairs)}",
        *repairs,
        sep="\n",
    )
    with vqdb.open(path) as index:  # and it still searches correctly
        res = index.search(x[:5], 1, nprobe=8)
        assert np.all(np.isin(res.ids[:, 0] % len(x), np.arange(5)))
