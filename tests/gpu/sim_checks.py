"""Checks of every numba-cuda kernel against the NumPy reference, at tiny sizes.

Run by ``test_numba_sim.py`` in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` (the simulator must be enabled
before numba.cuda is imported, and must not leak into other test modules); on a GPU machine
``bench/gpu_check.sh`` runs it on the real device too (``python tests/gpu/sim_checks.py``).
Prints one ``ok <name>`` line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from vqdb.kernels import reference as R  # noqa: E402
from vqdb.kernels.cuda import numba_cuda as G  # noqa: E402

RNG = np.random.default_rng(7)
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def pack_unpack():
    for bits in (1, 2, 3, 4, 5, 8):
        idx = RNG.integers(0, 2**bits, (5, 11)).astype(np.uint8)
        p = G.pack_bits(idx, bits)
        assert np.array_equal(p, R.pack_bits(idx, bits)), bits
        assert np.array_equal(G.unpack_bits(p, bits, 11), idx), bits


@check
def bucketize_encode_scalar():
    x = RNG.standard_normal((6, 12)).astype(np.float32)
    b = np.sort(RNG.standard_normal(7))
    x[0, :3] = b[:3].astype(np.float32)  # values on (float32-rounded) boundaries
    assert np.array_equal(G.bucketize(x, b), R.bucketize(x, b))
    for bits in (3, 4):
        assert np.array_equal(G.encode_scalar(x, b, bits), R.encode_scalar(x, b, bits))


@check
def encode_scaled():
    import vqdb

    q = vqdb.TurboQuantizer(16, bits=3)
    cents, bounds = q.codebook
    u = RNG.standard_normal((8, 16)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    scales = np.asarray(q.scales, np.float64)
    assert np.array_equal(
        G.scaled_indices(u, bounds, cents, scales), R.scaled_indices(u, bounds, cents, scales)
    )
    assert np.array_equal(
        G.encode_scaled(u, bounds, cents, scales, 3), R.encode_scaled(u, bounds, cents, scales, 3)
    )


@check
def rotate_and_encode_rotated():
    import vqdb

    q = vqdb.TurboQuantizer(16, bits=4)
    cents, bounds = q.codebook
    rot = q._single().rotation.matrix_.astype(np.float32)
    x = RNG.standard_normal((9, 16)).astype(np.float32)
    y = G.rotate(x, rot)
    np.testing.assert_allclose(y, x @ rot.T, rtol=1e-5, atol=1e-5)
    packed, u, norms = G.encode_rotated(x, rot, bounds, cents, np.asarray(q.scales), 4)
    np.testing.assert_allclose(norms, np.linalg.norm(x.astype(np.float64), axis=1), rtol=1e-12)
    np.testing.assert_allclose(u, (x @ rot.T) / norms[:, None], rtol=1e-4, atol=1e-5)
    assert np.array_equal(packed, R.encode_scaled(u, bounds, cents, np.asarray(q.scales), 4))


@check
def decode_and_lut_scores():
    for bits, k in ((2, 13), (4, 16), (3, 10)):
        codes = RNG.integers(0, 256, (40, 3 + (k * bits + 7) // 8)).astype(np.uint8)
        values = RNG.standard_normal(2**bits).astype(np.float32)
        np.testing.assert_array_equal(
            G.decode_values(codes, 3, bits, k, values), R.decode_values(codes, 3, bits, k, values)
        )
        qv = RNG.standard_normal((G.QCHUNK + 3, k)).astype(np.float32)  # two query chunks
        np.testing.assert_allclose(
            G.lut_scores(qv, codes, 3, bits, values),
            R.lut_scores(qv, codes, 3, bits, values),
            rtol=1e-5,
            atol=1e-5,
        )


@check
def sign_scores_qjl():
    import vqdb

    qz = vqdb.QJLQuantizer(12, sketch_dim=16)
    x = RNG.standard_normal((30, 12)).astype(np.float32)
    codes = qz.encode(x)
    sk = RNG.standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(G.sign_scores(sk, codes, 0), R.sign_scores(sk, codes, 0), rtol=1e-5, atol=1e-5)


@check
def topk_blocked():
    s = RNG.standard_normal((4, 50)).astype(np.float32)
    s[0, 10:20] = 0.5  # ties across the block edge
    s[1, :] = -np.inf
    s[2, 5] = np.inf
    for k, block in ((1, 16), (5, 16), (12, 7), (50, 16), (60, 16)):
        ids, top = G.topk(s, k, block=block)
        rids, rtop = R.topk(s, k)
        assert np.array_equal(ids, rids), (k, block, ids, rids)
        assert np.array_equal(top, rtop), (k, block)
    ids, top = G.topk(s, G.KMAX + 1)  # host fallback
    assert np.array_equal(ids, R.topk(s, G.KMAX + 1)[0])


def _quantizer_with_backend(qz, x, queries):
    """Encode/score with the cuda-numba ops registered (forced), compare with the reference backend."""
    from vqdb import kernels

    kernels.register_backend(
        kernels.KernelBackend("cuda-numba", "vqdb.kernels.cuda.numba_cuda:KERNELS", lambda: None, 40)
    )
    with kernels.use_backend("reference"):
        c_ref = qz.encode(x)
        s_ref = qz.score(queries, c_ref)
    with kernels.use_backend("cuda-numba"):
        c_gpu = qz.encode(x)
        s_gpu = qz.score(queries, c_ref)
    assert np.array_equal(c_gpu, c_ref), type(qz).__name__
    np.testing.assert_allclose(s_gpu, s_ref, rtol=1e-4, atol=1e-4)


@check
def quantizers_end_to_end():
    import vqdb

    x = RNG.standard_normal((24, 16)).astype(np.float32)
    queries = RNG.standard_normal((3, 16)).astype(np.float32)
    for qz in (
        vqdb.TurboQuantizer(16, bits=4),
        vqdb.TurboQuantizer(16, bits=2, variant="mse"),
        vqdb.TurboQuantizer(16, bits=3, variant="prod"),
        vqdb.QJLQuantizer(16, sketch_dim=16),
        vqdb.PolarQuantizer(16),
    ):
        _quantizer_with_backend(qz, x, queries)


@check
def kv_decode_attention():
    H, G_, n, k = 2, 3, 20, 8
    kb, vb = 3, 2
    qr = RNG.standard_normal((H, G_, k)).astype(np.float32)
    kc = RNG.integers(0, 256, (H, n, (k * kb + 7) // 8)).astype(np.uint8)
    vc = RNG.integers(0, 256, (H, n, (k * vb + 7) // 8)).astype(np.uint8)
    kf = RNG.uniform(0.5, 2, (H, n)).astype(np.float32)
    vf = RNG.uniform(0.5, 2, (H, n)).astype(np.float32)
    kv = RNG.standard_normal(2**kb).astype(np.float32)
    vv = RNG.standard_normal(2**vb).astype(np.float32)
    out, rmax, rsum = G.decode_attention(qr, kc, kf, kb, kv, vc, vf, vb, vv, 0.3, split=8)  # 3 splits
    for h in range(H):
        kt = R.decode_values(kc[h], 0, kb, k, kv) * kf[h][:, None]
        vt = R.decode_values(vc[h], 0, vb, k, vv) * vf[h][:, None]
        s = 0.3 * qr[h] @ kt.T
        mx = s.max(1, keepdims=True)
        w = np.exp(s - mx)
        np.testing.assert_allclose(out[h], (w / w.sum(1, keepdims=True)) @ vt, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rmax[h], mx[:, 0], rtol=1e-5)
        np.testing.assert_allclose(rsum[h], w.sum(1), rtol=1e-4)


@check
def kv_layer_numba_impl():
    """vqdb.kvcache.device_decode with impl="numba" (simulated kernels on CPU tensors) equals CompressedKVLayer.attend."""
    import torch

    from vqdb.kvcache import CompressedKVLayer, make_codec
    from vqdb.kvcache import device_decode as kv

    layer = CompressedKVLayer(
        make_codec("turbo", 3, 16, role="key", side_dtype=torch.float32),
        make_codec("turbo-scaled", 2, 16, role="value", side_dtype=torch.float32),
        residual_length=4,
        flush_block=4,
    )
    g = torch.Generator().manual_seed(0)
    layer.append(torch.randn(1, 2, 12, 16, generator=g), torch.randn(1, 2, 12, 16, generator=g))
    r = layer.append(torch.randn(1, 2, 1, 16, generator=g), torch.randn(1, 2, 1, 16, generator=g))
    q = torch.randn(1, 4, 1, 16, generator=g)
    ref = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.25)
    out = kv.decode_attention(layer, q, r.keys, r.values, n_codes=r.n_codes, scale=0.25, impl="numba")
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def main(argv: list[str]) -> int:
    only = set(argv)
    for fn in CHECKS:
        if only and fn.__name__ not in only:
            continue
        t0 = time.perf_counter()
        fn()
        print(f"ok {fn.__name__} {time.perf_counter() - t0:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
