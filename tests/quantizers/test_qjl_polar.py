"""QJL (unbiased, stated variance, oracle) and PolarQuant (paper MSE, oracle, layout)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import oracles

from vqdb import PolarQuantizer, QJLQuantizer
from vqdb.kernels import available_backends, use_backend

BACKENDS = [name for name, reason in available_backends().items() if reason is None]


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _pairs(n, d, seed, rho):
    x = unit_rows(n, d, seed)
    z = np.random.default_rng(seed + 1).standard_normal((n, d))
    z -= np.sum(z * x, axis=1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return x, (rho * x + math.sqrt(1 - rho * rho) * z).astype(np.float32)


def _errors(quantizer, x, q):
    est = np.sum(quantizer.decode(quantizer.encode(x)).astype(np.float64) * q, axis=1)
    return est - np.sum(x.astype(np.float64) * q, axis=1)


@pytest.mark.parametrize("m_factor", [0.5, 1, 2])
def test_qjl_unbiased_with_stated_variance(m_factor):
    d, n = 64, 4000
    m = int(m_factor * d)
    q = QJLQuantizer(d, sketch_dim=m, seed=1)
    assert q.estimator_scale == pytest.approx(math.sqrt(math.pi / 2) / m, rel=0.01)
    x, y = _pairs(n, d, seed=40 + m, rho=0.7)
    err = _errors(q, x, y)
    assert abs(err.mean()) < 3 * err.std() / math.sqrt(n)
    # Gaussian-sketch variance (π/2·|x|²|q|² − <q,x>²)/m is an upper bound for the orthogonalised sketch
    gaussian_var = (math.pi / 2 - 0.49) / m
    assert np.mean(err**2) < 1.05 * gaussian_var
    x, y = _pairs(n, d, seed=50 + m, rho=0.0)
    var = np.mean(_errors(q, x, y) ** 2)
    if m_factor >= 1:  # whole orthogonal blocks: (π/2 − 1)|x|²|q|²/m for orthogonal pairs (papers.md §4.6)
        assert var * m == pytest.approx(math.pi / 2 - 1, rel=0.1)
    else:
        assert var * m < math.pi / 2 * 1.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_qjl_matches_oracle(backend):
    d = 97
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((30, d)) + 1.0).astype(np.float32)
    qs = rng.standard_normal((3, d)).astype(np.float32)
    with use_backend(backend):
        q = QJLQuantizer(d, sketch_dim=75, seed=9).fit(x)
        codes = q.encode(x)
        scores = q.score(qs, codes)
    want = oracles.qjl_encode(x, q.sketch_, centre=q.centre_)
    np.testing.assert_array_equal(codes[:, :-8], want[:, :-8])
    np.testing.assert_allclose(codes[:, -8:].copy().view("<f4"), want[:, -8:].copy().view("<f4"), rtol=1e-6)
    np.testing.assert_allclose(
        scores, oracles.qjl_score(qs, codes, q.sketch_, q.estimator_scale, q.centre_), rtol=1e-4, atol=1e-3
    )
    assert q.code_size == 10 + 8


def test_polar_relative_mse_matches_paper():
    d = 128
    x = unit_rows(4000, d, seed=12)
    q = PolarQuantizer(d, seed=3)
    assert q.code_size == 66 and q.bits_per_dim == pytest.approx(66 * 8 / 128)
    xh = q.decode(q.encode(x)).astype(np.float64)
    rel = np.mean(np.sum((xh - x) ** 2, 1))
    assert rel == pytest.approx(0.0321, rel=0.04)
    np.testing.assert_allclose(np.linalg.norm(xh, axis=1), 1.0, atol=2e-3)  # fp16 radii: norm kept
    assert np.mean(np.sum(xh * x, 1)) == pytest.approx(0.984, abs=0.003)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dim,levels,level_bits", [(64, 4, (4, 2, 2, 2)), (37, 3, (3, 2, 1))])
def test_polar_matches_oracle(backend, dim, levels, level_bits):
    rng = np.random.default_rng(dim)
    x = (rng.standard_normal((25, dim)) + 0.3).astype(np.float32)
    with use_backend(backend):
        q = PolarQuantizer(dim, levels=levels, level_bits=level_bits, seed=2).fit(x)
        codes = q.encode(x)
        qs = rng.standard_normal((2, dim)).astype(np.float32)
        scores = q.score(qs, codes)
    rot = q.state_dict()["arrays"]["rotation"]
    want = oracles.polar_encode(x, rot, q.codebooks, level_bits, centre=q.centre_)
    np.testing.assert_array_equal(codes[:, :-4], want[:, :-4])
    # reconstruction: the paper's inverse transform with the codebook angles
    n_angles = [q.padded_dim >> lv for lv in range(1, levels + 1)]
    off, thetas = 0, []
    for count, bits, (c, _) in zip(n_angles, level_bits, q.codebooks):
        nb = (count * bits + 7) // 8
        thetas.append(c[oracles.unpack_slow(codes[:, off : off + nb], bits, count)])
        off += nb
    radii = codes[:, off : off + 2 * q.n_blocks].copy().view("<f2").astype(np.float64)
    recon = oracles.polar_inverse(thetas, radii) @ rot.astype(np.float64) + q.centre_
    np.testing.assert_allclose(q.decode(codes), recon, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, qs @ recon.T, rtol=1e-4, atol=1e-3)
