"""Backend parametrization for kernel tests: every backend usable here."""

from __future__ import annotations

import pytest

from vqdb.kernels import available_backends

BACKENDS = [name for name, reason in available_backends().items() if reason is None]


@pytest.fixture(params=BACKENDS)
def ops(request):
    from vqdb.kernels import get_ops

    return get_ops(request.param)
