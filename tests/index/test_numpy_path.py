"""The NumPy path (``vqdb.kernels.numpy_path``): a process's small first index runs on the reference kernels
without loading numba, and gets the codes numba encodes and the results numba's paths return, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import vqdb
from vqdb import kernels
from vqdb.kernels import numpy_path, use_backend

pytest.importorskip("numba")


def assert_same_results(a, b):
    """The same ids and the same float32 scores, bit for bit."""
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def _build(preset, metric, ivf, store, x, meta):
    index = vqdb.Index(x.shape[1], metric=metric, quantizer=preset, ivf=ivf, store_vectors=store)
    index.add(x, metadata=meta)
    index.delete(np.arange(0, x.shape[0], 9))
    return index


def _searches(index, q, store):
    out = [index.search(q[:1], 10), index.search(q, 10), index.search(q[:3], 7, filter={"even": True})]
    if store:
        out.append(index.search(q[:2], 10, rerank=3))
    if index.nlist:
        out.append(index.search(q[:4], 10, nprobe=2))
    return out


@pytest.mark.parametrize(
    "preset,metric,ivf,store",
    [
        ("turbo-4", "cos", False, None),
        ("turbo-2", "l2sq", False, "float16"),
        ("turbo-1", "ip", False, None),
        ("turbo-pca-4", "cos", False, None),
        ("qjl", "cos", False, None),
        ("turbo-4", "cos", 8, None),
        ("turbo-3", "l2sq", 8, "float32"),
    ],
)
def test_numpy_path_gives_numbas_codes_and_results(wordnet, preset, metric, ivf, store):
    x = np.ascontiguousarray(wordnet.base[:1200], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:12], dtype=np.float32)
    meta = [{"even": i % 2 == 0} for i in range(x.shape[0])]
    with numpy_path() as on:
        assert on and kernels.get_ops().name == "reference"
        light = _build(preset, metric, ivf, store, x, meta)
        light_res = _searches(light, q, store)
    with use_backend("numba"):
        heavy = _build(preset, metric, ivf, store, x, meta)
        heavy_res = _searches(heavy, q, store)
        # either index searched on the other path: codes are the same, so are the results
        cross = _searches(light, q, store)
    (sl,), (sh,) = light._snap.segments, heavy._snap.segments
    np.testing.assert_array_equal(sl.codes, sh.codes)
    np.testing.assert_array_equal(sl.lists, sh.lists)
    for a, b, c in zip(light_res, heavy_res, cross):
        assert_same_results(a, b)
        assert_same_results(c, b)
    if store is None:  # get() decodes the codes: on the NumPy path too, to numba's vectors
        some = np.array([i for i in range(1, 200, 7) if i % 9])  # (every 9th id is deleted)
        with numpy_path():
            got = light.get(some).vectors
        with use_backend("numba"):
            want = heavy.get(some).vectors
        np.testing.assert_array_equal(got, want)


def test_small_first_work_only(monkeypatch):
    """The automatic NumPy path: small calls before numba's backend loads, within the process budget, and
    never when a backend is forced."""
    monkeypatch.setattr(kernels, "_LOADED", {k: v for k, v in kernels._LOADED.items() if k != "numba"})
    monkeypatch.setattr(kernels, "_NUMPY_SPENT", [0])
    monkeypatch.setattr(kernels, "NUMPY_PATH_BUDGET", 3 * kernels.NUMPY_PATH_MAX_WORK)
    with numpy_path(kernels.NUMPY_PATH_MAX_WORK) as on:
        assert on and kernels.numpy_path_active() and kernels.get_ops().name == "reference"
    assert not kernels.numpy_path_active()
    with numpy_path(kernels.NUMPY_PATH_MAX_WORK + 1) as on:
        assert not on and not kernels.numpy_path_active()
    monkeypatch.setenv("VQDB_BACKEND", "reference")
    with numpy_path(10) as on:
        assert not on
    monkeypatch.delenv("VQDB_BACKEND")
    with numpy_path(kernels.NUMPY_PATH_MAX_WORK) as on:
        assert on
    with numpy_path(kernels.NUMPY_PATH_MAX_WORK) as on:  # the budget of 3 calls is spent
        assert on
    with numpy_path(1) as on:
        assert not on
    monkeypatch.setattr(kernels, "_NUMPY_SPENT", [0])
    with numpy_path(1) as on:
        assert on and kernels.get_ops("numba").name == "numba"  # a named backend is itself, and now loaded
    with numpy_path(1) as on:  # numba's backend loaded: no NumPy path
        assert not on and kernels.get_ops().name == "numba"
    monkeypatch.setattr(kernels, "_LOADED", {"reference": kernels.get_ops("reference")})
    with use_backend("reference"), numpy_path(1) as on:  # a forced backend: no NumPy path
        assert not on


def test_graph_index_never_takes_the_numpy_path(wordnet, monkeypatch):
    monkeypatch.setattr(kernels, "_LOADED", {k: v for k, v in kernels._LOADED.items() if k != "numba"})
    monkeypatch.setattr(kernels, "_NUMPY_SPENT", [0])
    index = vqdb.Index(384, quantizer="turbo-2", graph=16)
    with index._numpy_path(10) as on:
        assert not on
