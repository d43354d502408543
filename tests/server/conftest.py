"""Fixtures of the service tests: one real server (keys on, demo on) shared by the session."""

from __future__ import annotations

import pytest
from vqdb_server_harness import KEYS, Server, write_keys_file


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A live ``vqdb serve`` with read/write/admin keys, the demo collection, and small body limits."""
    root = tmp_path_factory.mktemp("server")
    keys = write_keys_file(root / "keys.txt")
    srv = Server(
        root / "data",
        keys_file=keys,
        demo=True,
        env={"VQDB_MAX_BODY_BYTES": str(2 << 20), "VQDB_MAX_BULK_BYTES": str(8 << 20)},
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def admin(server):
    with server.client("admin") as c:
        yield c


@pytest.fixture(scope="session")
def keys():
    return KEYS
