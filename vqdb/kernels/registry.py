"""What a kernel backend must provide (:class:`KernelSet`, a typed Protocol), the value every backend module
builds to provide it (:class:`Kernels`), and the registry of backends (:class:`KernelBackend` descriptors).

A backend module ends with one explicit declaration of its ops, e.g. ``numba_cpu.py``::

    KERNELS = reference.KERNELS.replace(name="numba", pack_bits=pack_bits, ..., warmup=warmup)

so every op it does not list is, visibly, the NumPy reference's. The dispatch (:mod:`vqdb.kernels`) registers
each backend by name with the ``"module:attribute"`` of that declaration, a probe and a priority; the module
is imported only when the backend is first used, and what it declares is checked against
:class:`KernelSet` then. Arrays are NumPy arrays (the torch and CUDA backends also take their own tensors or
device arrays, and return the same kind).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

Array = np.ndarray

OPS = (
    "pack_bits",
    "unpack_bits",
    "bucketize",
    "encode_scalar",
    "scaled_indices",
    "scaled_indices_segments",
    "encode_scaled",
    "decode_values",
    "lut_scores",
    "sign_scores",
    "topk",
    "encode_turbo_block",
    "hadamard_rotate",
    "fht_kac_rotate",
    "encode_turbo_fht",
)


@runtime_checkable
class KernelSet(Protocol):
    """The ops of one backend; shapes, dtypes and exact semantics in :mod:`vqdb.kernels.reference` (the oracle).

    Integer and bit-packing ops (``pack_bits`` .. ``encode_scaled``, ``topk`` ids) must match the reference
    bit for bit; float scores to float32 rounding.
    """

    name: str

    def pack_bits(self, idx: Array, bits: int) -> Array: ...
    def unpack_bits(self, packed: Array, bits: int, k: int) -> Array: ...
    def bucketize(self, x: Array, boundaries: Array) -> Array: ...
    def encode_scalar(self, x: Array, boundaries: Array, bits: int) -> Array: ...
    def scaled_indices(self, u: Array, boundaries: Array, centroids: Array, scales: Array) -> Array: ...
    def scaled_indices_segments(
        self, u: Array, segment: Array, boundaries: Array, centroids: Array, scales: Array
    ) -> Array: ...
    def encode_scaled(
        self, u: Array, boundaries: Array, centroids: Array, scales: Array, bits: int
    ) -> Array: ...
    def decode_values(self, codes: Array, offset: int, bits: int, k: int, values: Array) -> Array: ...
    def lut_scores(self, q: Array, codes: Array, offset: int, bits: int, values: Array) -> Array: ...
    def sign_scores(self, q: Array, codes: Array, offset: int) -> Array: ...
    def topk(self, scores: Array, k: int) -> tuple[Array, Array]: ...
    def encode_turbo_block(
        self,
        y: Array,
        r: Array,
        table: Array,
        boundaries: Array,
        values: Array,
        scaled: bool,
        full: bool,
        codes: Array,
        chat: Array | None = None,
    ) -> Array: ...
    def hadamard_rotate(self, x: Array, signs: Array) -> Array: ...
    def fht_kac_rotate(self, x: Array, signs: Array) -> Array: ...
    def encode_turbo_fht(
        self,
        x: Array,
        centres: Array | None,
        rotated_centres: Array | None,
        lists: Array | None,
        signs: Array,
        table: Array,
        boundaries: Array,
        values: Array,
        scaled: bool,
        full: bool,
        codes: Array,
        beta: bool,
    ) -> tuple[Array, Array, Array]: ...
    def num_threads(self) -> int:
        """Worker threads the quantizers may use for row tiles (1 for NumPy)."""
        ...

    def warmup(self) -> None:
        """Compile (or load from the cache) what the backend compiles, on tiny inputs."""
        ...


@dataclass(frozen=True)
class Kernels:
    """One backend's ops as plain callables: what a backend module declares (structurally a :class:`KernelSet`)."""

    name: str
    pack_bits: Callable[..., Any]
    unpack_bits: Callable[..., Any]
    bucketize: Callable[..., Any]
    encode_scalar: Callable[..., Any]
    scaled_indices: Callable[..., Any]
    scaled_indices_segments: Callable[..., Any]
    encode_scaled: Callable[..., Any]
    decode_values: Callable[..., Any]
    lut_scores: Callable[..., Any]
    sign_scores: Callable[..., Any]
    topk: Callable[..., Any]
    encode_turbo_block: Callable[..., Any]
    hadamard_rotate: Callable[..., Any]
    fht_kac_rotate: Callable[..., Any]
    encode_turbo_fht: Callable[..., Any]
    num_threads: Callable[[], int]
    warmup: Callable[[], None]

    def replace(self, *, name: str, **ops: Callable[..., Any]) -> Kernels:
        """A copy named ``name`` with ``ops`` replaced (a backend built on another one, usually the reference)."""
        unknown = set(ops) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"not kernel ops: {sorted(unknown)}")
        return dataclasses.replace(self, name=name, **ops)

    def __repr__(self) -> str:
        return f"Kernels({self.name!r})"


@dataclass(frozen=True)
class KernelBackend:
    """A registered backend: ``target`` (``"package.module:ATTRIBUTE"``, a :class:`KernelSet`) is imported on
    first use if ``probe()`` returns None (else the reason it cannot run here); the highest ``priority``
    usable backend is the default."""

    name: str
    target: str
    probe: Callable[[], str | None]
    priority: int

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not (module and sep and attr.isidentifier()):
            raise ValueError(f"KernelBackend target must be 'module:ATTRIBUTE'; got {self.target!r}")
