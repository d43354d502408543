"""The frameworks' standard suites have ``async def`` tests without a marker (they expect pytest-asyncio's
auto mode); mark those collected here, so the rest of the suite keeps pytest-asyncio's strict mode."""

from __future__ import annotations

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        marks = getattr(obj, "pytestmark", [])
        if not any(m.name == "asyncio" for m in marks):
            pytest.mark.asyncio(obj)
    return None


# ---- a live `vqdb serve` for the stores' remote mode ------------------------------------------------

_SERVER_TESTS = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "server")


@pytest.fixture(scope="session")
def vqdb_server(tmp_path_factory):
    """One real ``vqdb serve`` subprocess (keys on) shared by the remote-mode tests of this package."""
    import sys

    if _SERVER_TESTS not in sys.path:
        sys.path.insert(0, _SERVER_TESTS)
    from vqdb_server_harness import KEYS, Server, write_keys_file

    root = tmp_path_factory.mktemp("integrations-server")
    server = Server(root / "data", keys_file=write_keys_file(root / "keys.txt")).start()
    server.admin_key = KEYS["admin"]
    yield server
    server.stop()


@pytest.fixture
def collection_name(request):
    """A collection name unique to the test (the remote stores create it at the first write)."""
    import re
    import uuid

    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:40] + "-" + uuid.uuid4().hex[:8]
