"""The torch (``cuda-torch``) kernels on CPU tensors against the NumPy reference; device-resident index scan
on CPU tensors against the host scan; ``device="cuda"`` errors without a GPU; real-GPU checks (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import vqdb  # noqa: E402
from vqdb import kernels  # noqa: E402
from vqdb.errors import BackendUnavailableError  # noqa: E402
from vqdb.kernels import reference as R  # noqa: E402
from vqdb.kernels.cuda import probe_cuda_torch  # noqa: E402
from vqdb.kernels.cuda import torch_cuda as tc  # noqa: E402

HAS_CUDA = probe_cuda_torch() is None
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")


@pytest.fixture
def cpu_device():
    tc.set_device("cpu")
    yield
    tc.set_device(None)


def test_ops_match_reference(rng, cpu_device):
    for bits in (1, 2, 3, 4, 8):
        idx = rng.integers(0, 2**bits, (7, 13)).astype(np.uint8)
        packed = tc.pack_bits(idx, bits)
        assert np.array_equal(packed, R.pack_bits(idx, bits))
        assert np.array_equal(tc.unpack_bits(packed, bits, 13), idx)
        values = rng.standard_normal(2**bits).astype(np.float32)
        q = rng.standard_normal((3, 13)).astype(np.float32)
        np.testing.assert_array_equal(
            tc.decode_values(packed, 0, bits, 13, values), R.decode_values(packed, 0, bits, 13, values)
        )
        np.testing.assert_allclose(
            tc.lut_scores(q, packed, 0, bits, values),
            R.lut_scores(q, packed, 0, bits, values),
            rtol=1e-5,
            atol=1e-5,
        )
    x = rng.standard_normal((9, 16)).astype(np.float32)
    qz = vqdb.TurboQuantizer(16, bits=3)
    cents, bounds = qz.codebook
    assert np.array_equal(tc.encode_scalar(x, bounds, 3), R.encode_scalar(x, bounds, 3))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sc = np.asarray(qz.scales)
    assert np.array_equal(tc.encode_scaled(u, bounds, cents, sc, 3), R.encode_scaled(u, bounds, cents, sc, 3))


def test_blocked_topk_ties_like_reference(rng):
    s = rng.standard_normal((5, 300)).astype(np.float32)
    s[0, 50:200] = 1.0
    s[1] = -np.inf
    s[2, ::3] = 0.25
    for k in (1, 7, 64, 300, 320):
        ids, top = tc.topk_tensor(torch.from_numpy(s), k, block=37)
        rids, rtop = R.topk(s, k)
        assert np.array_equal(ids.numpy(), rids), k
        assert np.array_equal(top.numpy(), rtop), k


def test_quantizers_through_backend(rng, cpu_device, monkeypatch):
    kernels.register_backend(
        kernels.KernelBackend("cuda-torch", "vqdb.kernels.cuda.torch_cuda:KERNELS", lambda: None, 30)
    )
    try:
        x = rng.standard_normal((40, 24)).astype(np.float32)
        q = rng.standard_normal((4, 24)).astype(np.float32)
        for qz in (
            vqdb.TurboQuantizer(24, bits=4),
            vqdb.TurboQuantizer(24, bits=3, variant="prod"),
            vqdb.QJLQuantizer(24),
            vqdb.PolarQuantizer(24),
        ):
            with kernels.use_backend("reference"):
                c_ref, s_ref = qz.encode(x), None
                s_ref = qz.score(q, c_ref)
            with kernels.use_backend("cuda-torch"):
                c = qz.encode(x)
                s = qz.score(q, c_ref)
            assert np.array_equal(c, c_ref), type(qz).__name__
            np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-4)
    finally:
        from vqdb.kernels.cuda import probe_cuda_torch as probe

        kernels.register_backend(
            kernels.KernelBackend("cuda-torch", "vqdb.kernels.cuda.torch_cuda:KERNELS", probe, 30)
        )


def test_dispatch_reports_no_cuda_here():
    avail = kernels.available_backends()
    assert "cuda-numba" in avail and "cuda-torch" in avail
    if not HAS_CUDA:
        assert "no CUDA device" in avail["cuda-torch"]
        assert kernels.get_ops().name not in ("cuda-numba", "cuda-torch")
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            kernels.get_ops("cuda-numba")


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present")
def test_index_device_cuda_without_gpu_raises():
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        vqdb.Index(16, device="cuda")


@pytest.mark.parametrize("metric,quantizer", [("cos", "turbo-4"), ("l2sq", "turbo-2"), ("ip", "qjl")])
def test_index_device_scan_matches_host(rng, monkeypatch, cpu_device, metric, quantizer):
    """Index(device="cuda") with the device scan forced onto CPU tensors gives the host scan's results."""
    monkeypatch.setattr(kernels, "require_device", lambda device, *, what: None)
    x = rng.standard_normal((600, 32)).astype(np.float32)
    meta = [{"even": i % 2 == 0} for i in range(600)]
    host = vqdb.Index(32, metric=metric, quantizer=quantizer, flush_rows=250)
    dev = vqdb.Index(32, metric=metric, quantizer=quantizer, flush_rows=250, device="cuda")
    for idx in (host, dev):
        idx.add(x, metadata=meta)
        idx.delete([3, 5])
    q = rng.standard_normal((5, 32)).astype(np.float32)
    for flt in (None, {"even": True}):
        a, b = host.search(q, 10, filter=flt), dev.search(q, 10, filter=flt)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-4, atol=1e-4)
        assert (a.ids == b.ids).mean() > 0.95  # ties / float rounding may swap neighbours
    assert dev._gpu_scorer() is not None and dev._gpu_scorer().scorer.device.type == "cpu"


@gpu
@needs_gpu
def test_real_gpu_ops_and_index():
    tc.set_device(None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 64)).astype(np.float32)
    q = rng.standard_normal((8, 64)).astype(np.float32)
    host = vqdb.Index(64, quantizer="turbo-4")
    dev = vqdb.Index(64, quantizer="turbo-4", device="cuda")
    host.add(x)
    dev.add(x)
    a, b = host.search(q, 10), dev.search(q, 10)
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-3, atol=1e-3)
    assert dev._gpu_scorer().device.type == "cuda"
    codes = host._snap.segments[0].codes if host._snap.segments else None
    if codes is not None:
        vals = np.linspace(-1, 1, 16).astype(np.float32)
        np.testing.assert_allclose(
            tc.lut_scores(q, codes, 0, 4, vals), R.lut_scores(q, codes, 0, 4, vals), rtol=1e-3, atol=1e-3
        )
