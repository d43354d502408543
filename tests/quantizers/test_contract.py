"""The shared protocol over every preset: shapes, odd dims, tiny batches, persistence, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import vqdb
from vqdb.errors import DimensionMismatchError, DTypeError, InvalidInputError, UnknownNameError
from vqdb.quantizers.base import PreparedQueries

ALL_PRESETS = [name for name, _, _ in vqdb.presets(129)]


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + 0.4).astype(np.float32)


@pytest.mark.parametrize("dim", [3, 97, 129])
@pytest.mark.parametrize("name", ALL_PRESETS)
def test_contract(name, dim):
    if name not in {p[0] for p in vqdb.presets(dim)}:
        with pytest.raises(InvalidInputError):
            vqdb.make_quantizer(name, dim)
        return
    q = vqdb.make_quantizer(name, dim)
    assert q.code_size == dict((p[0], p[1]) for p in vqdb.presets(dim))[name]
    x = _data(7, dim, seed=dim)
    q.fit(x)
    queries = _data(3, dim, seed=dim + 1)
    for n in (0, 1, 7):
        codes = q.encode(x[:n])
        assert codes.shape == (n, q.code_size) and codes.dtype == np.uint8
        s = q.score(queries, codes)
        assert s.shape == (3, n) and s.dtype == np.float32
        xh = q.decode(codes)
        assert xh.shape == (n, dim) and xh.dtype == np.float32
        off = q.score_offsets(codes)
        assert off.shape == (n,) and off.dtype == np.float32
        np.testing.assert_allclose(s, queries @ xh.T + off[None, :], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(
            q.squared_norms(codes), np.sum(x[:n].astype(np.float64) ** 2, 1), rtol=1e-6
        )
    codes = q.encode(x)
    np.testing.assert_array_equal(q.encode(x), codes)  # deterministic
    np.testing.assert_array_equal(q.encode(np.asfortranarray(x)), codes)  # non-contiguous input
    np.testing.assert_array_equal(q.encode(x.astype(np.float64)), codes)
    prepared = q.prepare(queries)
    assert isinstance(prepared, PreparedQueries)
    np.testing.assert_array_equal(q.score(prepared, codes), q.score(queries, codes))
    # an explicit centre (IVF list centroid) replaces the fitted one consistently
    c = x[0] * 0.5
    codes_c = q.encode(x, centre=c)
    np.testing.assert_allclose(
        q.score(queries, codes_c, centre=c),
        queries @ q.decode(codes_c, centre=c).T + q.score_offsets(codes_c)[None, :],
        rtol=1e-4,
        atol=1e-3,
    )
    q2 = vqdb.load_quantizer(q.state_dict())
    np.testing.assert_array_equal(q2.encode(x), codes)
    np.testing.assert_array_equal(q2.score(queries, codes), q.score(queries, codes))
    assert json.loads(json.dumps(q.state_dict()["config"])) == q.state_dict()["config"]
    assert repr(q).startswith(type(q).__name__ + "(")


def test_estimates_are_accurate_on_real_vectors(wordnet):
    """Sanity on the bundled real sample: more bits, smaller error; every quantizer beats chance."""
    x, queries = wordnet.base[:2000], wordnet.queries[:50]
    exact = queries.astype(np.float64) @ x.T.astype(np.float64)
    errs = {}
    for name in ("turbo-1", "turbo-2", "turbo-4", "turbo-8", "turbo-prod-3", "qjl", "polar"):
        q = vqdb.make_quantizer(name, x.shape[1]).fit(x)
        errs[name] = np.sqrt(np.mean((q.score(queries, q.encode(x)) - exact) ** 2))
    assert errs["turbo-8"] < errs["turbo-4"] < errs["turbo-2"] < errs["turbo-1"] < 0.05
    assert errs["polar"] < errs["turbo-2"] and errs["turbo-prod-3"] < errs["turbo-1"]


_SUBPROCESS = r"""
import json, sys, numpy as np, vqdb
d = sys.argv[1]
with open(d + "/config.json") as f:
    meta = json.load(f)
arrays = dict(np.load(d + "/arrays.npz"))
q = vqdb.load_quantizer({"kind": meta["kind"], "config": meta["config"], "arrays": arrays})
x = np.load(d + "/x.npy")
codes = q.encode(x)
np.save(d + "/codes2.npy", codes)
np.save(d + "/scores2.npy", q.score(np.load(d + "/queries.npy"), codes))
"""


@pytest.mark.parametrize("name", ["turbo-2.5", "turbo-prod-3", "turbo-hadamard-4", "qjl", "polar"])
def test_state_dict_round_trip_in_a_new_process(tmp_path, name):
    d = 40
    x = _data(20, d, seed=5)
    queries = _data(4, d, seed=6)
    q = vqdb.make_quantizer(name, d, seed=11).fit(x * np.linspace(0.1, 3, d, dtype=np.float32))
    state = q.state_dict()
    (tmp_path / "config.json").write_text(json.dumps({"kind": state["kind"], "config": state["config"]}))
    np.savez(tmp_path / "arrays.npz", **state["arrays"])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "queries.npy", queries)
    subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path)], check=True)
    codes = q.encode(x)
    np.testing.assert_array_equal(np.load(tmp_path / "codes2.npy"), codes)
    np.testing.assert_allclose(
        np.load(tmp_path / "scores2.npy"), q.score(queries, codes), rtol=1e-6, atol=1e-6
    )


# ---- bad input ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def turbo():
    return vqdb.TurboQuantizer(16, 2)


def test_wrong_dimension(turbo):
    with pytest.raises(DimensionMismatchError, match="expected 16"):
        turbo.encode(np.zeros((2, 15), np.float32))
    with pytest.raises(DimensionMismatchError, match="expected 16"):
        turbo.score(np.zeros((2, 17), np.float32), turbo.encode(np.zeros((1, 16), np.float32)))
    with pytest.raises(DimensionMismatchError, match=r"shape \(16,\)"):
        turbo.encode(np.zeros((2, 16), np.float32), centre=np.zeros(15))


def test_one_dimensional_input(turbo):
    with pytest.raises(DimensionMismatchError, match=r"2-D.*x\[None, :\]"):
        turbo.encode(np.zeros(16, np.float32))
    with pytest.raises(DimensionMismatchError, match="2-D"):
        turbo.decode(np.zeros(turbo.code_size, np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(turbo, bad):
    x = np.zeros((3, 16), np.float32)
    x[1, 4] = bad
    with pytest.raises(InvalidInputError, match="NaN or inf.*row: 1"):
        turbo.encode(x)
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        turbo.prepare(x)


def test_bad_codes(turbo):
    codes = turbo.encode(np.ones((2, 16), np.float32))
    with pytest.raises(DTypeError, match="uint8"):
        turbo.decode(codes.astype(np.int16))
    with pytest.raises(DTypeError, match="uint8"):
        turbo.score(np.ones((1, 16), np.float32), codes.view(np.int8))
    with pytest.raises(DimensionMismatchError, match=f"code_size is {turbo.code_size}"):
        turbo.decode(codes[:, :-1])
    with pytest.raises(DimensionMismatchError, match=f"code_size is {turbo.code_size}"):
        turbo.squared_norms(np.zeros((2, turbo.code_size + 1), np.uint8))


@pytest.mark.parametrize("bits", [0, 9, 2.25, -1, True, "4", None])
def test_bits_out_of_range(bits):
    with pytest.raises(InvalidInputError, match="bits must be one of"):
        vqdb.TurboQuantizer(16, bits)


def test_other_bad_arguments():
    with pytest.raises(UnknownNameError, match="mse"):
        vqdb.TurboQuantizer(16, 2, variant="fast")
    with pytest.raises(UnknownNameError, match="hadamard"):
        vqdb.TurboQuantizer(16, 2, rotation="fft")
    with pytest.raises(InvalidInputError, match="integer bits"):
        vqdb.TurboQuantizer(16, 2.5, variant="prod")
    with pytest.raises(InvalidInputError, match=">= 2"):
        vqdb.TurboQuantizer(1, 2)
    with pytest.raises(InvalidInputError, match="sketch_dim"):
        vqdb.QJLQuantizer(16, sketch_dim=0)
    with pytest.raises(InvalidInputError, match="level_bits"):
        vqdb.PolarQuantizer(16, levels=4, level_bits=(4, 2, 2))
    with pytest.raises(InvalidInputError, match="level_bits"):
        vqdb.PolarQuantizer(16, levels=2, level_bits=(4, 9))
    with pytest.raises(UnknownNameError, match="turbo-4"):
        vqdb.make_quantizer("turbo-5x", 16)
    with pytest.raises(DimensionMismatchError, match="dim 16"):
        vqdb.make_quantizer(vqdb.TurboQuantizer(16, 2), 32)
    with pytest.raises(UnknownNameError, match="polar"):
        vqdb.load_quantizer({"kind": "nope", "config": {}, "arrays": {}})
    with pytest.raises(DimensionMismatchError, match="at least one"):
        vqdb.TurboQuantizer(16, 2).fit(np.zeros((0, 16), np.float32))
