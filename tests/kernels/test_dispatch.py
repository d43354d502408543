"""Backend registry: lazy selection, VQDB_BACKEND, clear errors, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vqdb import kernels
from vqdb.errors import BackendUnavailableError, UnknownNameError


def test_reference_always_available():
    assert kernels.available_backends()["reference"] is None
    assert kernels.get_ops("reference").name == "reference"


def test_forced_backend_env(monkeypatch):
    monkeypatch.setenv("VQDB_BACKEND", "reference")
    assert kernels.get_ops().name == "reference"


def test_unknown_backend_lists_names(monkeypatch):
    monkeypatch.setenv("VQDB_BACKEND", "nope")
    with pytest.raises(UnknownNameError, match="reference"):
        kernels.get_ops()


def test_unusable_backend_lists_reasons(monkeypatch):
    kernels.register_backend(
        kernels.KernelBackend("broken", "vqdb.kernels.reference", lambda: "no device here", -5)
    )
    try:
        with pytest.raises(BackendUnavailableError, match="no device here") as info:
            kernels.get_ops("broken")
        assert "reference: usable" in str(info.value)
        assert kernels.get_ops().name != "broken"  # never chosen by default
    finally:
        kernels._REGISTRY.pop("broken", None)


def test_missing_op_falls_back_to_reference():
    import types

    mod = types.ModuleType("partial_backend")
    mod.topk = lambda s, k: ("mine", k)
    ops = kernels.KernelOps("partial", mod, kernels.get_ops("reference"))
    assert ops.topk(None, 3) == ("mine", 3)
    assert ops.pack_bits is kernels.get_ops("reference").pack_bits


def test_use_backend_context():
    with kernels.use_backend("reference") as ops:
        assert kernels.get_ops() is ops
    assert kernels._FORCED is None


def test_import_vqdb_and_quantizers_load_neither_numba_nor_torch():
    code = (
        "import sys, vqdb, vqdb.quantizers, vqdb.quantizers.turbo, vqdb.quantizers.qjl, vqdb.quantizers.polar, "
        "vqdb.presets, vqdb.kernels\n"
        "vqdb.TurboQuantizer; vqdb.presets(16)\n"
        "bad = [m for m in ('numba', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import numpy as np\n"
        "q = vqdb.TurboQuantizer(16, 2)\n"
        "from vqdb.kernels import use_backend\n"
        "with use_backend('reference'):\n"
        "    q.score(np.ones((1, 16), np.float32), q.encode(np.ones((2, 16), np.float32)))\n"
        "assert 'numba' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
