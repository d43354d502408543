"""The three implementations of ``vqdb.IndexProtocol``, each with integer and with string ids:

- ``index``: an embedded ``vqdb.Index``;
- ``sharded``: a ``vqdb.distributed.ShardedIndex`` of 3 shards on a local Ray cluster (as tests/distributed);
- ``remote``: a ``RemoteCollection`` of a real ``vqdb serve`` subprocess on loopback (as tests/server).

``make_index(id_type)`` gives a fresh, empty one (metric cos, turbo-4, float32 vectors stored); it is
closed or deleted at the end of the test.
"""

from __future__ import annotations

import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from vqdb_server_harness import KEYS, Server, write_keys_file  # noqa: E402

import vqdb  # noqa: E402

DIM = 384
OPTIONS = {"metric": "cos", "quantizer": "turbo-4", "store_vectors": "float32"}
KINDS = ("index", "sharded", "remote")
_names = itertools.count()


@pytest.fixture(scope="session")
def contract_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract-server")
    srv = Server(root / "data", keys_file=write_keys_file(root / "keys.txt"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def contract_client(contract_server):
    with vqdb.Client(contract_server.url, api_key=KEYS["admin"]) as client:
        yield client


@pytest.fixture(scope="session")
def contract_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module", params=("int", "str"))
def id_type(request):
    return request.param


def _factory(kind, request, tmp_path):
    made = []

    def make(id_type=None):
        if kind == "index":
            index = vqdb.Index(DIM, path=tmp_path / f"ix{len(made)}", id_type=id_type, **OPTIONS)
        elif kind == "sharded":
            request.getfixturevalue("contract_ray")
            from vqdb.distributed import ShardedIndex

            kwargs = {} if id_type is None else {"id_type": id_type}
            index = ShardedIndex(DIM, 3, actor_options={"num_cpus": 0}, **OPTIONS, **kwargs)
        else:
            client = request.getfixturevalue("contract_client")
            index = client.create_collection(f"contract-{next(_names)}", DIM, id_type=id_type, **OPTIONS)
        made.append(index)
        return index

    def close():
        for index in made:
            if kind == "remote":
                index.client.delete_collection(index.name)
            else:
                index.close()

    return make, close


@pytest.fixture
def make_index(kind, request, tmp_path):
    """A factory of fresh indexes for this test (a test that writes gets its own)."""
    make, close = _factory(kind, request, tmp_path)
    yield make
    close()


@pytest.fixture(scope="module")
def make_shared(kind, request, tmp_path_factory):
    """A factory of indexes shared by the tests of one module, implementation and id kind (tests that
    change nothing when the contract holds share one, so that the suite starts fewer Ray actors)."""
    make, close = _factory(kind, request, tmp_path_factory.mktemp("shared"))
    yield make
    close()
