"""Shared fixtures: real data (the bundled WordNet sample always; full shared sets when present)."""

from __future__ import annotations

import numpy as np
import pytest

from vqdb import datasets


@pytest.fixture(scope="session")
def wordnet():
    """5,000 real 384-d MiniLM passage vectors + 400 word queries + exact top-100 (always available)."""
    return datasets.wordnet_sample()


@pytest.fixture(scope="session")
def wordnet_full():
    ds = datasets.wordnet_minilm()
    if ds is None:
        pytest.skip("../shared/data/wordnet-minilm384 not present")
    return ds


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session", autouse=True)
def _numba_backend_loaded():
    """Run the suite on numba's kernels from its first test, whatever the order: with numba's backend not yet
    loaded, a small index would take the NumPy path (``vqdb.kernels.numpy_path``), which its own tests
    (tests/index/test_numpy_path.py, tests/test_import_hygiene.py) cover in fresh processes and explicitly."""
    from vqdb.kernels import available_backends, get_ops

    if available_backends().get("numba") is None:
        get_ops("numba")
