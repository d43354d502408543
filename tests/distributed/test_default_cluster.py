"""``ShardedIndex()`` with no address and no cluster to join starts its own Ray cluster on loopback only
(a plain ``ray.init()`` would bind every interface), in a child process so the session's cluster is not
involved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("psutil")
pytest.importorskip("ray")

CHILD = r"""
import json, sys
import numpy as np
import ray
from vqdb.distributed import ShardedIndex
from vqdb.distributed._ports import exposed, listeners, process_tree

index = ShardedIndex(4, 2, quantizer="turbo-4", actor_options={"num_cpus": 0})
index.add(np.eye(4, dtype=np.float32) + 0.5)
found = listeners(process_tree())
print(json.dumps({
    "ids": index.search(np.array([[1.5, 0.5, 0.5, 0.5]], np.float32), 1).ids.tolist(),
    "names": sorted({x.process for x in found}),
    "exposed": [list(x) for x in exposed(found)],
}))
ray.shutdown()
"""


def test_a_cluster_started_for_a_sharded_index_listens_on_loopback_only():
    # a Ray temp dir of its own: no earlier `ray start` of this machine to join (short: Ray's socket
    # paths live under it and must fit in 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="vqr", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmp
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ids"] == [[0]]
    assert {"gcs_server", "raylet"} <= set(report["names"]), report  # the check sees Ray's ports
    assert report["exposed"] == [], report
