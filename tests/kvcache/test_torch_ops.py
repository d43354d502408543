"""The torch kernel backend agrees with the NumPy reference: integer ops bit for bit, scores to float tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdb.kernels import get_ops, torch_ops

REF = get_ops("reference")
TO = get_ops("torch")


@pytest.mark.parametrize("bits", range(1, 9))
def test_packing_bucketing_and_lut_scores_match_reference(bits):
    rng = np.random.default_rng(bits)
    idx = rng.integers(0, 2**bits, (7, 37)).astype(np.uint8)
    packed = REF.pack_bits(idx, bits)
    assert np.array_equal(TO.pack_bits(idx, bits), packed)
    assert np.array_equal(TO.unpack_bits(packed, bits, 37), idx)
    bounds = np.sort(rng.standard_normal(2**bits - 1))
    x = rng.standard_normal((7, 37)).astype(np.float32)
    x[0, : min(37, bounds.size)] = bounds[:37].astype(np.float32)  # values on (float32-rounded) boundaries
    assert np.array_equal(TO.bucketize(x, bounds), REF.bucketize(x, bounds))
    assert np.array_equal(TO.encode_scalar(x, bounds, bits), REF.encode_scalar(x, bounds, bits))
    values = rng.standard_normal(2**bits)
    codes = np.concatenate([rng.integers(0, 256, (9, 3)), packed[:, :].repeat(2, 0)[:9]], 1).astype(np.uint8)
    np.testing.assert_allclose(
        TO.decode_values(codes, 3, bits, 37, values), REF.decode_values(codes, 3, bits, 37, values)
    )
    q = rng.standard_normal((4, 37)).astype(np.float32)
    np.testing.assert_allclose(
        TO.lut_scores(q, codes, 3, bits, values), REF.lut_scores(q, codes, 3, bits, values), atol=1e-4
    )
    cb = np.sort(rng.standard_normal(2**bits))
    mid = 0.5 * (cb[1:] + cb[:-1])
    scales = np.array([1.0, 0.9, 1.1, 1.3])
    assert np.array_equal(TO.scaled_indices(x, mid, cb, scales), REF.scaled_indices(x, mid, cb, scales))
    assert np.array_equal(
        TO.encode_scaled(x, mid, cb, scales, bits), REF.encode_scaled(x, mid, cb, scales, bits)
    )


def test_sign_scores_and_topk_match_reference():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (9, 8)).astype(np.uint8)
    q = rng.standard_normal((4, 37)).astype(np.float32)
    np.testing.assert_allclose(TO.sign_scores(q, codes, 3), REF.sign_scores(q, codes, 3), atol=1e-4)
    s = rng.integers(0, 5, (6, 20)).astype(np.float32)  # many ties
    s[0, 3] = -np.inf
    for k in (1, 5, 20, 25):
        for a, b in zip(TO.topk(s, k), REF.topk(s, k)):
            assert np.array_equal(a, b)


def test_ops_keep_tensors_as_tensors():
    idx = torch.randint(0, 16, (3, 10), dtype=torch.uint8)
    packed = TO.pack_bits(idx, 4)
    assert isinstance(packed, torch.Tensor) and packed.dtype == torch.uint8
    assert torch.equal(TO.unpack_bits(packed, 4, 10), idx)
    ids, top = TO.topk(torch.tensor([[0.5, 2.0, 1.0]]), 2)
    assert ids.tolist() == [[1, 2]] and isinstance(top, torch.Tensor)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_tensor_primitives_any_leading_dims(bits):
    c = torch.randint(0, 2**bits, (2, 3, 5, 13))
    p = torch_ops.pack_tensor(c, bits)
    assert p.shape == (2, 3, 5, torch_ops.packed_size(13, bits))
    assert torch.equal(torch_ops.unpack_tensor(p, bits, 13), c)
    values = torch.randn(2**bits)
    assert torch.equal(torch_ops.decode_tensor(p, values, bits, 13), values[c])
