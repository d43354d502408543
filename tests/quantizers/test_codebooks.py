"""Lloyd–Max codebooks against the tables of papers.md §4.4 (TurboQuant) and §3.4 (PolarQuant)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqdb.errors import InvalidInputError
from vqdb.quantizers._codebooks import angle_codebook, angle_mse, beta_mse, gaussian_lloyd_max, lloyd_max

# papers.md §4.4, Gaussian limit (positive half, unit variance) and C·d
GAUSS = {
    1: ([0.797885], [], 0.363380),
    2: ([0.452780, 1.510418], [0.981599], 0.117482),
    3: ([0.245094, 0.756005, 1.343909, 2.151946], [0.500550, 1.049957, 1.747927], 0.034548),
    4: (
        [0.128395, 0.388048, 0.656759, 0.942340, 1.256231, 1.618046, 2.069017, 2.732590],
        [0.258222, 0.522404, 0.799550, 1.099286, 1.437139, 1.843532, 2.400803],
        0.009501,
    ),
}
# papers.md §4.4, exact Beta codebooks (× sqrt(d)) and D_mse
BETA = {
    128: (
        [
            [0.7994],
            [0.4525, 1.5052],
            [0.2444, 0.7533, 1.3366, 2.1315],
            [0.1279, 0.3864, 0.6536, 0.9371, 1.2478, 1.6043, 2.0459, 2.6889],
        ],
        [0.36089, 0.11600, 0.03397, 0.00931],
    ),
    1536: (
        [
            [0.7980],
            [0.4528, 1.5100],
            [0.2450, 0.7558, 1.3433, 2.1502],
            [0.1284, 0.3879, 0.6565, 0.9419, 1.2555, 1.6169, 2.0671, 2.7289],
        ],
        [0.36317, 0.11736, 0.03450, 0.00949],
    ),
    32: (
        [
            [0.8041],
            [0.4514, 1.4896],
            [0.2424, 0.7453, 1.3150, 2.0719],
            [0.1263, 0.3814, 0.6443, 0.9216, 1.2230, 1.5645, 1.9795, 2.5650],
        ],
        [0.35336, 0.11160, 0.03226, 0.00877],
    ),
}


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_gaussian_table(bits):
    c, b = gaussian_lloyd_max(bits)
    pos_c, pos_b, _ = GAUSS[bits]
    np.testing.assert_allclose(c[len(c) // 2 :], pos_c, atol=2e-6)
    np.testing.assert_allclose(b[len(b) // 2 + 1 :], pos_b, atol=2e-6)
    assert b[len(b) // 2] == 0.0
    np.testing.assert_allclose(c, -c[::-1], atol=1e-15)


@pytest.mark.parametrize("dim", sorted(BETA))
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_beta_table(dim, bits):
    c, b = lloyd_max(bits, dim)
    assert c.dtype == np.float64 and c.shape == (2**bits,) and b.shape == (2**bits - 1,)
    np.testing.assert_allclose(c[len(c) // 2 :] * math.sqrt(dim), BETA[dim][0][bits - 1], atol=6e-5)
    np.testing.assert_allclose(b, 0.5 * (c[1:] + c[:-1]), rtol=1e-12)
    assert beta_mse(bits, dim) == pytest.approx(BETA[dim][1][bits - 1], abs=6e-6)
    # Panter–Dite upper bound and Shannon lower bound (TurboQuant Thm 1 and 3)
    assert 4.0**-bits < beta_mse(bits, dim) < math.sqrt(3) * math.pi / 2 * 4.0**-bits


def test_beta_converges_to_gaussian():
    for bits in (2, 4, 8):
        c, _ = lloyd_max(bits, 4096)
        g, _ = gaussian_lloyd_max(bits)
        np.testing.assert_allclose(c * 64.0, g, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_tiny_dims_are_valid(dim, bits):
    c, b = lloyd_max(bits, dim)
    assert np.all(np.diff(c) > 0) and -1 < c[0] and c[-1] < 1
    assert beta_mse(bits, dim) < beta_mse(bits - 1, dim) if bits > 1 else True


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match=r"\[1, 8\]"):
        lloyd_max(9, 128)
    with pytest.raises(InvalidInputError, match=r"\[1, 8\]"):
        lloyd_max(0, 128)
    with pytest.raises(InvalidInputError, match=">= 2"):
        lloyd_max(2, 1)


# papers.md §3.4 angle codebooks (radians)
ANGLES = {
    (2, 1): [0.5000, 1.0708],
    (2, 2): [0.30976, 0.63398, 0.93682, 1.26104],
    (2, 3): [0.18845, 0.38000, 0.54825, 0.70723, 0.86357, 1.02254, 1.19080, 1.38235],
    (3, 2): [0.42625, 0.67438, 0.89641, 1.14455],
    (3, 3): [0.30752, 0.47318, 0.60607, 0.72675, 0.84405, 0.96473, 1.09762, 1.26328],
    (4, 2): [0.52421, 0.70591, 0.86489, 1.04658],
    (4, 3): [0.42576, 0.55565, 0.65480, 0.74287, 0.82793, 0.91600, 1.01515, 1.14504],
    (5, 2): [0.59850, 0.72895, 0.84184, 0.97229],
    (6, 2): [0.65254, 0.74542, 0.82537, 0.91826],
    (7, 1): [0.73547, 0.83533],
}


@pytest.mark.parametrize("level,bits", sorted(ANGLES))
def test_angle_table(level, bits):
    c, b = angle_codebook(level, bits)
    np.testing.assert_allclose(c, ANGLES[(level, bits)], atol=6e-5)
    np.testing.assert_allclose(c + c[::-1], math.pi / 2, atol=1e-12)  # symmetric about π/4


def test_angle_mse_and_level1():
    assert angle_mse(2, 2) == pytest.approx(9.91e-3, rel=2e-3)
    assert angle_mse(3, 2) == pytest.approx(6.16e-3, rel=2e-3)
    assert angle_mse(4, 2) == pytest.approx(3.39e-3, rel=3e-3)
    c, b = angle_codebook(1, 4)
    np.testing.assert_allclose(c, (np.arange(16) + 0.5) * 2 * math.pi / 16)
    assert angle_mse(1, 4) == pytest.approx(0.01285, rel=1e-3)
