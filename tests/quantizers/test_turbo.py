"""TurboQuant: paper distortion, unbiasedness of prod, oracle equality, fractional rates, rotations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import oracles

from vqdb import TurboQuantizer
from vqdb.kernels import available_backends, use_backend
from vqdb.quantizers._codebooks import lloyd_max
from vqdb.quantizers.turbo import PRESCALE_GRID

BACKENDS = [name for name, reason in available_backends().items() if reason is None]

# papers.md §7 (Monte-Carlo D_mse of TurboQuant_mse, Haar rotation)
PAPER_DMSE = {128: (0.3609, 0.1160, 0.0340, 0.0093), 1536: (0.3632, 0.1174, 0.0345, 0.0095)}
# papers.md §4.6: d·D_prod with an orthogonal sketch, b = 1..4
PAPER_DPROD_ORTHO = (0.57, 0.21, 0.067, 0.020)


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dim,n", [(128, 2000), (1536, 300)])
def test_mse_distortion_matches_paper(dim, n):
    x = unit_rows(n, dim, seed=101)
    base = TurboQuantizer(dim, 1, variant="mse", seed=5).state_dict()
    for bits in (1, 2, 3, 4):
        c, b = lloyd_max(bits, dim)
        arrays = dict(
            base["arrays"],
            **{
                "part0.slices": np.array([[0, dim, bits]]),
                "part0.centroids": c[None],
                "part0.boundaries": b[None],
            },
        )
        q = TurboQuantizer(dim, bits, variant="mse", seed=5, _arrays=arrays)
        err = np.mean(np.sum((q.decode(q.encode(x)).astype(np.float64) - x) ** 2, axis=1))
        assert err == pytest.approx(PAPER_DMSE[dim][bits - 1], rel=0.03), (dim, bits, err)
        assert 4.0**-bits < err < math.sqrt(3) * math.pi / 2 * 4.0**-bits


def _pairs(n, d, seed, rho):
    """Unit x_i and unit q_i with <q_i, x_i> = rho (independent pairs)."""
    x = unit_rows(n, d, seed)
    z = np.random.default_rng(seed + 1).standard_normal((n, d))
    z -= np.sum(z * x, axis=1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    q = (rho * x + math.sqrt(1 - rho * rho) * z).astype(np.float32)
    return x, q


def _errors(quantizer, x, q):
    est = np.sum(quantizer.decode(quantizer.encode(x)).astype(np.float64) * q, axis=1)
    return est - np.sum(x.astype(np.float64) * q, axis=1)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_prod_unbiased_with_stated_variance(bits):
    d, n = 128, 4000
    q = TurboQuantizer(d, bits, variant="prod", seed=3)
    x, y = _pairs(n, d, seed=200 + bits, rho=0.8)
    err = _errors(q, x, y)
    assert abs(err.mean()) < 3 * err.std() / math.sqrt(n)
    x, y = _pairs(n, d, seed=300 + bits, rho=0.0)
    var_d = d * np.mean(_errors(q, x, y) ** 2)
    assert var_d == pytest.approx(PAPER_DPROD_ORTHO[bits - 1], rel=0.12)


def test_mse_is_biased_and_scaled_removes_most_of_it():
    d, n = 128, 4000
    x, y = _pairs(n, d, seed=9, rho=0.8)
    bias_mse = _errors(TurboQuantizer(d, 2, variant="mse", seed=3), x, y).mean()
    # E<y, x~> = (1 - D_mse)<y, x>: shrinkage 0.883 at 2 bits (papers.md §4.3)
    assert bias_mse == pytest.approx(-0.8 * (1 - 0.883), rel=0.05)
    err = _errors(TurboQuantizer(d, 2, variant="scaled", seed=3), x, y)
    assert abs(err.mean()) < abs(bias_mse) / 10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["mse", "scaled", "prod"])
def test_codes_equal_paper_oracle(backend, variant):
    d, bits = 97, 3
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((40, d)) + 0.5).astype(np.float32)
    queries = rng.standard_normal((4, d)).astype(np.float32)
    with use_backend(backend):
        q = TurboQuantizer(d, bits, variant=variant, seed=4, scales=PRESCALE_GRID).fit(x)
        codes = q.encode(x)
        scores = q.score(queries, codes)
    arrays = q.state_dict()["arrays"]
    rot = arrays["part0.rotation"]
    c = q.codebook[0]
    mse_bits = bits - 1 if variant == "prod" else bits
    kw = dict(variant=variant, sketch=arrays.get("sketch"), centre=q.centre_)
    want = oracles.turbo_encode(x, rot, c, mse_bits, scales=q.scales, **kw)
    n_side = 3 if variant == "prod" else 2
    # index and sign bytes bit for bit; side floats (norms, factors) to float32 rounding
    np.testing.assert_array_equal(codes[:, : -4 * n_side], want[:, : -4 * n_side])
    side = lambda c: np.ascontiguousarray(c[:, -4 * n_side :]).view("<f4")  # noqa: E731
    np.testing.assert_allclose(side(codes), side(want), rtol=2e-6)
    ref_scores = oracles.turbo_score(
        queries,
        codes,
        rot,
        c,
        mse_bits,
        scale=getattr(q, "estimator_scale", None),
        **{k: kw[k] for k in ("variant", "sketch", "centre")},
    )
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-3)


def test_fractional_bits_split_by_energy():
    d = 64
    rng = np.random.default_rng(1)
    scale = np.ones(d)
    loud = np.array([3, 10, 20, 33, 40, 41, 50, 63, 0, 1, 2, 4, 5, 6, 7, 8])
    scale[loud] = 8.0
    x = (rng.standard_normal((500, d)) * scale).astype(np.float32)
    q = TurboQuantizer(d, 2.5, seed=0).fit(x)
    assert set(q.channels_[:16].tolist()) == set(loud.tolist())
    assert q.code_size == TurboQuantizer.code_size_for(d, 2.5) == 16 * 3 // 8 + 48 * 2 // 8 + 12

    def err(qq):
        return np.mean(np.sum((qq.decode(qq.encode(x)) - x) ** 2, 1))

    unfitted = TurboQuantizer(d, 2.5, variant="mse", seed=0)
    unfitted.centre_ = q.centre_  # same centring, default split (first 16 channels)
    fitted = TurboQuantizer(d, 2.5, variant="mse", seed=0).fit(x)
    assert err(fitted) < 0.8 * err(unfitted)
    assert err(fitted) < err(TurboQuantizer(d, 2, variant="mse", seed=0).fit(x))
    q35 = TurboQuantizer(d, 3.5, seed=0)
    assert q35.code_size == 32 * 4 // 8 + 32 * 3 // 8 + 12


def test_hadamard_rotation_pads_and_matches_paper_distortion():
    x = unit_rows(1500, 128, seed=5)
    q = TurboQuantizer(128, 2, variant="mse", rotation="hadamard", seed=1)
    err = np.mean(np.sum((q.decode(q.encode(x)) - x) ** 2, 1))
    assert err == pytest.approx(PAPER_DMSE[128][1], rel=0.03)
    q97 = TurboQuantizer(97, 4, rotation="hadamard")
    assert q97.code_size == 128 * 4 // 8 + 8  # padded to 128 coordinates
    y = unit_rows(20, 97, seed=6)
    assert np.mean(np.sum((q97.decode(q97.encode(y)) - y) ** 2, 1)) < 0.02


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_fht_rotation_matches_paper_distortion_without_padding(bits):
    """The structured FHT-Kac rotation gives the Haar figures of papers.md §4.4 at d = 128 (a power of two)
    and close to them at d = 96 (Hadamard windows of 64 + Kac), with codes of d coordinates."""
    x = unit_rows(1500, 128, seed=5)
    q = TurboQuantizer(128, bits, variant="mse", rotation="fht", seed=1)
    err = np.mean(np.sum((q.decode(q.encode(x)) - x) ** 2, 1))
    assert err == pytest.approx(PAPER_DMSE[128][bits - 1], rel=0.03)
    y = unit_rows(1500, 96, seed=6)
    q96 = TurboQuantizer(96, bits, variant="mse", rotation="fht", seed=2)
    assert q96.code_size == 96 * bits // 8 + 8  # no padding
    haar = TurboQuantizer(96, bits, variant="mse", rotation="dense", seed=2)
    e_fht = np.mean(np.sum((q96.decode(q96.encode(y)) - y) ** 2, 1))
    e_haar = np.mean(np.sum((haar.decode(haar.encode(y)) - y) ** 2, 1))
    assert e_fht == pytest.approx(e_haar, rel=0.03)


def test_scaled_prescale_search_never_hurts_cosine():
    d = 128
    x = unit_rows(300, d, seed=8)
    plain = TurboQuantizer(d, 3, variant="scaled", seed=2)
    assert plain.scales == (1.0,)
    searched = TurboQuantizer(d, 3, variant="scaled", seed=2, scales=PRESCALE_GRID)

    def cosines(q):
        xh = q.decode(q.encode(x))
        return np.sum(xh * x, 1) / np.linalg.norm(xh, axis=1)

    assert np.all(cosines(searched) >= cosines(plain) - 1e-6)
    assert cosines(searched).mean() > cosines(plain).mean()
