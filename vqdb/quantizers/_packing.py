"""Bit packing of b-bit indices: it lives in :mod:`vqdb._core.packing` (the kernels need it too); re-exported
here for the quantizer modules."""

from .._core.packing import pack_bits, packed_size, unpack_bits

__all__ = ["pack_bits", "packed_size", "unpack_bits"]
