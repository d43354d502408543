"""A persisted quantizer state is checked once when it is loaded: every built-in layout round-trips
exactly, and a state with arrays of the wrong shape, dtype or range (as a crafted file with a valid
checksum may hold) is an InvalidInputError naming the array, before any kernel reads it."""

from __future__ import annotations

import numpy as np
import pytest

import vqdb
from vqdb.errors import InvalidInputError
from vqdb.presets import PRESETS, make_quantizer

DIM = 96


def _state(preset: str, *, fit: bool = False):
    q = make_quantizer(preset, DIM)
    if fit:  # a fitted centre, and for turbo-pca-N the principal basis and bit allocation
        q.fit(
            np.random.default_rng(3).standard_normal((600, DIM)).astype(np.float32) * np.linspace(3, 0.1, DIM)
        )
    s = q.state_dict()
    return q, {**s, "arrays": {k: np.array(v, copy=True) for k, v in s["arrays"].items()}}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_state_loads_back_exactly(preset):
    q, state = _state(preset, fit=True)
    again = vqdb.load_quantizer(state)
    x = np.random.default_rng(5).standard_normal((20, DIM)).astype(np.float32)
    np.testing.assert_array_equal(again.encode(x), q.encode(x))


def _edit(state, key, fn):
    arrays = dict(state["arrays"])
    arrays[key] = fn(arrays[key].copy())
    return {**state, "arrays": arrays}


def _set(index, value):
    def fn(a):
        a[index] = value
        return a

    return fn


@pytest.mark.parametrize(
    "preset, key, fn, match",
    [
        (
            "turbo-4",
            "part0.centroids",
            lambda a: a[:, :15],
            "part0.centroids",
        ),  # a code value would read past it
        ("turbo-4", "part0.centroids", lambda a: a[:, ::-1].copy(), "interleave"),
        ("turbo-4", "part0.centroids", _set((0, 3), np.inf), "part0.centroids"),
        ("turbo-4", "part0.centroids", _set((0, 0), np.nan), "part0.centroids"),
        ("turbo-4", "part0.centroids", lambda a: a.astype(np.float16), "float16"),
        ("turbo-4", "part0.boundaries", _set((0, 4), 50.0), "interleave"),
        ("turbo-4", "part0.slices", _set((0, 1), DIM + 1), "part0.slices"),
        ("turbo-4", "part0.slices", _set((0, 2), 9), "part0.slices"),
        ("turbo-4", "part0.slices", lambda a: a.reshape(-1), "part0.slices"),
        ("turbo-4", "part0.signs", _set((1, 7), 0.5), "part0.signs"),
        ("turbo-4", "part0.signs", lambda a: np.concatenate([a, a[:1]]), "part0.signs"),
        ("turbo-4", "channels", lambda a: a.astype(np.int32), "channels"),
        ("turbo-4", "channels", _set(0, 1), "permutation"),
        ("turbo-mse-4", "part0.rotation", _set((2, 2), 2.0), "beyond"),
        ("turbo-prod-3", "sketch", _set((0, 0), np.inf), "sketch"),
        ("qjl", "sketch", _set((0, 0), 1e6), "beyond"),
        ("polar", "rotation", _set((0, 0), np.nan), "rotation"),
        ("polar", "level1.centroids", lambda a: a * 2, "level1.centroids"),
    ],
)
def test_a_state_that_does_not_fit_its_quantizer_is_refused(preset, key, fn, match):
    _, state = _state(preset)
    with pytest.raises(InvalidInputError, match=match):
        vqdb.load_quantizer(_edit(state, key, fn))


def test_unknown_and_missing_arrays_are_refused():
    _, state = _state("turbo-4")
    with pytest.raises(InvalidInputError, match="bogus"):
        vqdb.load_quantizer({**state, "arrays": {**state["arrays"], "bogus": np.zeros(3)}})
    arrays = dict(state["arrays"])
    del arrays["part0.boundaries"]
    with pytest.raises(InvalidInputError, match="part0.boundaries"):
        vqdb.load_quantizer({**state, "arrays": arrays})
