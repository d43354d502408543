"""Backend registry: lazy selection, VQDB_BACKEND, clear errors, import hygiene."""

from __future__ import annotations

import importlib
import inspect
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
        kernels.KernelBackend("broken", "vqdb.kernels.reference:KERNELS", lambda: "no device here", -5)
    )
    try:
        with pytest.raises(BackendUnavailableError, match="no device here") as info:
            kernels.get_ops("broken")
        assert "reference: usable" in str(info.value)
        assert kernels.get_ops().name != "broken"  # never chosen by default
    finally:
        kernels._REGISTRY.pop("broken", None)


def test_a_partial_backend_borrows_the_reference_ops_it_names_none_of():
    ref = kernels.get_ops("reference")
    ops = ref.replace(name="partial", topk=lambda s, k: ("mine", k))
    assert ops.topk(None, 3) == ("mine", 3)
    assert ops.pack_bits is ref.pack_bits and ops.name == "partial"
    with pytest.raises(TypeError, match="not kernel ops"):
        ref.replace(name="typo", topkk=ref.topk)


def _protocol_params(op: str) -> list[inspect.Parameter]:
    return list(inspect.signature(getattr(kernels.KernelSet, op)).parameters.values())[1:]  # without self


def _check_signature(backend: str, op: str, fn) -> None:
    want = _protocol_params(op)
    got = list(inspect.signature(fn).parameters.values())
    names = [p.name for p in got[: len(want)]]
    assert names == [p.name for p in want], f"{backend}.{op}{inspect.signature(fn)}: expected {want}"
    for p, w in zip(got, want):
        assert p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD), (
            f"{backend}.{op}: {p} must be positional"
        )
        assert (w.default is w.empty) or (p.default is not p.empty), (
            f"{backend}.{op}: {p.name} needs a default"
        )
    extra = got[len(want) :]
    assert all(p.default is not p.empty for p in extra), f"{backend}.{op}: extra parameters need defaults"


# every backend the dispatch registers, imported directly (a CUDA module imports without a device: its kernels
# compile on first call) so that each one is checked here whatever this machine has
_IMPORTABLE = {"numba": "numba", "torch": "torch", "cuda-numba": "numba", "cuda-torch": "torch"}


@pytest.mark.parametrize("name", sorted(kernels._REGISTRY))
def test_every_registered_backend_implements_the_protocol(name):
    backend = kernels._REGISTRY[name]
    if name in _IMPORTABLE:
        pytest.importorskip(_IMPORTABLE[name])
    module, _, attr = backend.target.partition(":")
    ops = getattr(importlib.import_module(module), attr)
    assert isinstance(ops, kernels.KernelSet), f"{backend.target} is not a KernelSet"
    assert ops.name == name
    for op in (*kernels.OPS, "num_threads", "warmup"):
        fn = getattr(ops, op)
        assert callable(fn), f"{name}.{op} is not callable"
        _check_signature(name, op, fn)
    assert int(ops.num_threads()) >= 1


def test_registry_covers_every_op_of_the_protocol():
    methods = {
        n for n in vars(kernels.KernelSet) if not n.startswith("_") and callable(vars(kernels.KernelSet)[n])
    }
    assert methods == set(kernels.OPS) | {"num_threads", "warmup"}


def test_a_target_that_is_not_a_kernel_set_is_unavailable():
    kernels.register_backend(
        kernels.KernelBackend("not-a-set", "vqdb.kernels.reference:topk", lambda: None, -5)
    )
    try:
        with pytest.raises(BackendUnavailableError, match="not a KernelSet"):
            kernels.get_ops("not-a-set")
    finally:
        kernels._REGISTRY.pop("not-a-set", None)
    with pytest.raises(ValueError, match="module:ATTRIBUTE"):
        kernels.KernelBackend("bad", "vqdb.kernels.reference", lambda: None, 0)
    with pytest.raises(TypeError, match="KernelBackend"):
        kernels.register_backend(("bad", "vqdb.kernels.reference:KERNELS"))


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


def test_the_signature_check_rejects_a_backend_that_renames_or_adds_a_required_parameter():
    with pytest.raises(AssertionError, match="lut_scores"):
        _check_signature("bad", "lut_scores", lambda q, codes, off, bits, values: None)
    with pytest.raises(AssertionError, match="defaults"):
        _check_signature("bad", "topk", lambda scores, k, block: None)
    _check_signature("ok", "topk", lambda scores, k, *, block=8: None)
