"""rotation="pca": one-pass fitted basis + reverse water-filling bit allocation."""

from __future__ import annotations

import numpy as np
import pytest

from vqdb import TurboQuantizer
from vqdb.quantizers.turbo import allocate_bits


def test_allocation_respects_budget_and_order():
    lam = np.sort(np.random.default_rng(0).exponential(size=100) ** 3)[::-1]
    for budget in (13, 25, 50, 100):
        bits = allocate_bits(lam, budget)
        assert bits.shape == (13,)
        assert np.all(np.diff(bits) <= 0)  # more variance, more bits
        per = np.repeat(bits, 8)[:100]
        assert sum(-(-int((per == b).sum()) * b // 8) for b in range(1, 9)) <= budget
    np.testing.assert_array_equal(allocate_bits(np.ones(64), 16), [2] * 8)  # isotropic: uniform


def _anisotropic(n, d, seed):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    spectrum = 1.0 / (1 + np.arange(d)) ** 1.2
    return ((rng.standard_normal((n, d)) * np.sqrt(spectrum)) @ basis.T + 0.3).astype(np.float32)


@pytest.mark.parametrize("bits", [1, 2.5, 4])
def test_pca_beats_random_rotation_on_anisotropic_data(bits):
    d = 96
    x = _anisotropic(3000, d, seed=1)
    queries = _anisotropic(50, d, seed=2)
    exact = queries.astype(np.float64) @ x.T
    errors = {}
    for rotation in ("dense", "pca"):
        q = TurboQuantizer(d, bits, rotation=rotation, seed=0)
        size = q.code_size
        q.fit(x)
        assert q.code_size == size  # fit never changes the layout size
        errors[rotation] = np.sqrt(np.mean((q.score(queries, q.encode(x)) - exact) ** 2))
    assert errors["pca"] < 0.8 * errors["dense"]


def test_unfitted_pca_works_and_fit_changes_the_basis():
    d = 40
    x = _anisotropic(500, d, seed=3)
    q = TurboQuantizer(d, 2, rotation="pca")
    assert q.requires_fit
    before = q.encode(x)
    q.fit(x)
    assert not np.array_equal(q.encode(x), before)
    xh = q.decode(q.encode(x))
    assert np.mean(np.sum((xh - x) ** 2, 1)) < 0.2 * np.mean(np.sum((x - x.mean(0)) ** 2, 1))


def test_pca_prescale_search_and_bad_scales():
    from vqdb.quantizers.turbo import PRESCALE_GRID

    d = 48
    x = _anisotropic(400, d, seed=4)
    plain = TurboQuantizer(d, 2, rotation="pca").fit(x)
    searched = TurboQuantizer(d, 2, rotation="pca", scales=PRESCALE_GRID).fit(x)
    assert searched.state_dict()["config"]["scales"] == list(PRESCALE_GRID)

    def cosines(q):
        r = x - q.centre_
        rh = q.decode(q.encode(x)) - q.centre_
        return np.sum(rh * r, 1) / np.linalg.norm(rh, axis=1) / np.linalg.norm(r, axis=1)

    assert cosines(searched).mean() >= cosines(plain).mean() - 1e-6
    with pytest.raises(Exception, match="positive floats"):
        TurboQuantizer(d, 2, scales=(1.0, -2.0))


def test_pca_many_query_path_matches_decode():
    d = 40
    x = _anisotropic(300, d, seed=7)
    q = TurboQuantizer(d, 2.5, rotation="pca").fit(x)
    assert len(q._blocks[0].slices) > 1
    queries = _anisotropic(20, d, seed=8)
    codes = q.encode(x)
    many = q.score(queries, codes)
    few = np.vstack([q.score(queries[i : i + 2], codes) for i in range(0, 20, 2)])
    np.testing.assert_allclose(many, queries @ q.decode(codes).T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(many, few, rtol=1e-4, atol=1e-4)
