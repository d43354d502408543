"""The arrays of an index's state file, checked before anything uses them: the quantizer rebuilt from
vqdb's registry (its own checks: :mod:`vqdb.quantizers._state_checks`), the fitted centre and the IVF
centroids finite, and the two copies of the centre equal. Any failure is a :class:`CorruptIndexError`
naming the file, so a crafted state with a valid checksum never reaches a kernel."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptIndexError, IncompatibleFormatError, InvalidInputError
from ..quantizers import _state_checks as checks
from ._codec import load_quantizer
from ._storage import MANIFEST


def load_checked(root: str, state_file: str, manifest: dict, qarrays: dict, arrays: dict):
    """The quantizer of the manifest rebuilt from ``qarrays``, ``centre_`` set from
    ``arrays["index/centre"]`` (``arrays``: the whole state file, checked shapes already)."""

    def damaged(what, file=state_file):
        return CorruptIndexError(f"state file {state_file!r} of index {root!r} is damaged: {what}", file=file)

    meta, ivf, centroids = manifest["quantizer"], manifest.get("ivf"), arrays.get("index/centroids")
    if centroids is not None and not isinstance(ivf, dict):
        raise damaged("it holds IVF centroids but the manifest describes no IVF index")
    if isinstance(ivf, dict):
        nlist, trained = ivf.get("nlist"), ivf.get("trained", centroids is not None)
        if trained != (centroids is not None):
            raise damaged(
                f"the manifest says trained={trained!r}; centroids present: {centroids is not None}"
            )
        if centroids is not None and nlist is not None and centroids.shape[0] != nlist:
            raise damaged(f"{centroids.shape[0]} IVF centroids; the manifest says nlist = {nlist!r}")
    try:
        quantizer = load_quantizer(meta, qarrays)
        centre = arrays.get("index/centre")
        for key in ("index/centre", "index/centroids"):
            if key in arrays:
                checks.finite(key, arrays[key])
    except InvalidInputError as exc:  # (an unknown kind stays an UnknownNameError: a newer vqdb's quantizer)
        in_arrays = "state array" in str(exc) or "state is missing" in str(exc)
        raise damaged(exc, state_file if in_arrays else MANIFEST) from None
    except IncompatibleFormatError as exc:
        if isinstance(exc, CorruptIndexError):
            raise
        raise damaged(exc, MANIFEST) from None
    own = qarrays.get("centre")
    if own is not None and (centre is None or not np.array_equal(own, centre)):
        raise damaged("the quantizer's centre and the index's centre differ")
    quantizer.centre_ = centre
    if own is None and centre is not None and "centre" in quantizer.state_dict()["arrays"]:
        raise damaged("the index has a centre but the quantizer state does not")
    return quantizer
