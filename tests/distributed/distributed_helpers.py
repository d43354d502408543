"""Constants shared by the distributed tests (a plain module: ``conftest`` names clash across test folders)."""

RAY_INIT = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

# actors reserve no CPU, so 4 shards fit on the 2-CPU test cluster
ACTORS = {"num_cpus": 0}
