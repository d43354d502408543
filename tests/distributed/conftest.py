"""One local Ray cluster per test session (2 CPUs, no dashboard), shut down at the end."""

from __future__ import annotations

import pytest

RAY_INIT = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)


@pytest.fixture(scope="session")
def ray_cluster():
    """Start Ray for the session; yields the ``ray`` module. Tests that restart it use ``RAY_INIT``."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(**RAY_INIT)
    yield ray
    ray.shutdown()


# actors take no CPU reservation, so 4 shards fit on a 2-CPU test cluster
ACTORS = {"num_cpus": 0}
