"""Fast contract smoke test over every preset (shapes, dtypes, decode/score consistency)."""

from __future__ import annotations

import numpy as np
import pytest

import vqdb


@pytest.mark.parametrize("name", [p[0] for p in vqdb.presets(97)])
def test_preset_roundtrip(name):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((33, 97)).astype(np.float32) + 0.3
    q = vqdb.make_quantizer(name, 97).fit(x)
    codes = q.encode(x)
    assert codes.shape == (33, q.code_size) and codes.dtype == np.uint8
    qs = rng.standard_normal((3, 97)).astype(np.float32)
    s = q.score(qs, codes)
    assert s.shape == (3, 33) and s.dtype == np.float32
    np.testing.assert_allclose(s, qs @ q.decode(codes).T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(q.squared_norms(codes), (x.astype(np.float64) ** 2).sum(1), rtol=1e-5)
    q2 = vqdb.load_quantizer(q.state_dict())
    np.testing.assert_array_equal(q2.encode(x), codes)
