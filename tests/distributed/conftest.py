"""One local Ray cluster per test session (2 CPUs, no dashboard), shut down at the end."""

from __future__ import annotations

import pytest
from distributed_helpers import RAY_INIT


@pytest.fixture(scope="session")
def ray_cluster():
    """Start Ray for the session; yields the ``ray`` module. A test that restarts it uses ``RAY_INIT``."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(**RAY_INIT)
    yield ray
    ray.shutdown()
