"""Fixtures of the KV-cache tests: skip the whole folder without torch; real K/V when ../shared is present."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vqdb import envs  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_kv():
    """Real SmolLM2-135M keys/values/queries (kv-smollm2), or skip when the shared data is absent."""
    root = envs.shared_data_dir()
    path = os.path.join(root, "kv-smollm2", "smollm2_kv.npz") if root else None
    if not path or not os.path.exists(path):
        pytest.skip("../shared/data/kv-smollm2 not present")
    z = np.load(path)
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def kv_vectors(request):
    """(n, 64) float32 key-like vectors: real SmolLM2 keys when available, else heavy-tailed synthetic ones."""
    root = envs.shared_data_dir()
    path = os.path.join(root, "kv-smollm2", "smollm2_kv.npz") if root else None
    if path and os.path.exists(path):
        z = np.load(path)
        return z["k"][7, 1, :300].astype(np.float32), z["q"][7, 4, :16].astype(np.float32)
    rng = np.random.default_rng(7)
    scale = np.ones(64, dtype=np.float32)
    scale[[3, 17, 40]] = 6.0  # a few outlier channels, as real keys have
    x = (rng.standard_normal((300, 64)) * scale).astype(np.float32)
    q = rng.standard_normal((16, 64)).astype(np.float32)
    return x, q


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tests run many tiny tensor ops: one intra-op thread avoids oversubscribing the shared CPU
    (30x faster here under load). Restored after each module."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
