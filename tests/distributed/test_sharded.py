"""ShardedIndex on a local Ray cluster (started once per session by ``ray_cluster``), on real WordNet vectors.

Order matters in this module: the last test restarts the Ray cluster.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import vqdb
from vqdb.distributed import ShardedIndex, ShardedSearchResult, shard_of
from vqdb.distributed import open as open_sharded
from vqdb.errors import AlreadyExistsError, DuplicateIdError, InvalidInputError, NotFoundError, ShardUnavailableError
from vqdb.testing import recall_at_k

from distributed_helpers import ACTORS, RAY_INIT

from tests.index.index_standin import StandInQuantizer  # DEV ONLY
QUANTIZER = StandInQuantizer(384)
N_QUERIES = 200


def _meta(n: int) -> list[dict]:
    return [{"pos": i % 3, "b20": i % 20} for i in range(n)]


def assert_same_result(got, want) -> None:
    """Same ids and the same scores as a single index (scores bit for bit, ids in the same order)."""
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-6)  # DEV


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(ray_cluster, wordnet):
    """(single vqdb.Index, in-memory 4-shard ShardedIndex) over the same 5,000 real vectors and metadata."""
    meta = _meta(wordnet.base.shape[0])
    single = vqdb.Index(wordnet.dim, metric="cos", quantizer=QUANTIZER)
    single.add(wordnet.base, metadata=meta)
    sharded = ShardedIndex(wordnet.dim, 4, metric="cos", quantizer=QUANTIZER, actor_options=ACTORS)
    sharded.add(wordnet.base, metadata=meta)
    yield single, sharded
    sharded.close()


@pytest.fixture(scope="module")
def stored(ray_cluster, wordnet, tmp_path_factory):
    """(single Index, durable 4-shard ShardedIndex at a path): ``ip``, float32 vectors stored for re-rank."""
    path = str(tmp_path_factory.mktemp("sharded") / "wordnet")
    single = vqdb.Index(wordnet.dim, metric="ip", quantizer=QUANTIZER, store_vectors="float32")
    single.add(wordnet.base)
    sharded = ShardedIndex(wordnet.dim, 4, metric="ip", quantizer=QUANTIZER, path=path, store_vectors="float32",
                           actor_options=ACTORS)
    sharded.add(wordnet.base)                 # the first write fits the centre, as in `single`
    return single, sharded, path


# ---- identical to a single index ------------------------------------------------------------------
def test_flat_search_identical_to_single_index(pair, wordnet):
    single, sharded = pair
    q = wordnet.queries[:N_QUERIES]
    got = sharded.search(q, 10)
    assert isinstance(got, ShardedSearchResult) and isinstance(got, vqdb.SearchResult)
    assert got.complete and got.shards_answered == (0, 1, 2, 3) and got.metric == "cos"
    assert_same_result(got, single.search(q, 10))
    assert recall_at_k(got.ids, wordnet.gt_ids[:N_QUERIES], 10) > 0.8


def test_filtered_search_identical_to_single_index(pair, wordnet):
    single, sharded = pair
    q = wordnet.queries[:50]
    for flt in ({"pos": 1}, {"b20": {"$in": [3, 7]}}):
        assert_same_result(sharded.search(q, 10, filter=flt), single.search(q, 10, filter=flt))


def test_k_beyond_the_rows_of_a_shard_pads_like_a_single_index(pair, wordnet):
    single, sharded = pair
    q = wordnet.queries[:3]
    got = sharded.search(q, 20, filter={"b20": 0, "pos": 0})   # 84 matches, k = 20 spread over 4 shards
    assert_same_result(got, single.search(q, 20, filter={"b20": 0, "pos": 0}))


def test_quantizer_state_and_codes_are_the_single_index_ones(pair):
    single, sharded = pair
    a, b = single.quantizer.state_dict(), sharded.quantizer.state_dict()
    assert a["kind"] == b["kind"] and a["config"] == b["config"]
    for name in a["arrays"]:
        np.testing.assert_array_equal(a["arrays"][name], b["arrays"][name])
    np.testing.assert_array_equal(single.quantizer.centre_, sharded.quantizer.centre_)


# ---- routing, reads -------------------------------------------------------------------------------
def test_rows_live_on_the_shard_their_id_hashes_to(pair, wordnet):
    _, sharded = pair
    n = wordnet.base.shape[0]
    assert len(sharded) == n
    assert sharded.shard_sizes() == np.bincount(shard_of(np.arange(n), 4), minlength=4).tolist()
    for s, actor in enumerate(sharded._actors):
        held = np.asarray(__import__("ray").get(actor.ids.remote()))
        assert np.all(shard_of(held, 4) == s)
    st = sharded.stats()
    assert st["n"] == n and st["n_shards"] == 4 and len(st["shards"]) == 4
    assert st["bytes_per_vector"]["codes"] == sharded.quantizer.code_size


def test_get_gathers_rows_in_the_order_asked(pair):
    single, sharded = pair
    ids = np.array([4999, 0, 17, 2500, 3])
    got, want = sharded.get(ids), single.get(ids)
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_array_equal(got.vectors, want.vectors)
    assert got.metadata == want.metadata
    with pytest.raises(NotFoundError):
        sharded.get([1, 123456])


def test_bad_input_is_rejected_at_the_door(pair):
    _, sharded = pair
    with pytest.raises(vqdb.errors.DimensionMismatchError):
        sharded.search(np.zeros((1, 5), np.float32), 10)
    with pytest.raises(InvalidInputError):
        sharded.search(np.ones((1, 384), np.float32), 0)
    with pytest.raises(InvalidInputError):
        sharded.add(np.full((1, 384), np.nan, np.float32))


# ---- writes -------------------------------------------------------------------------------------
def test_add_upsert_delete_are_routed(ray_cluster, wordnet, tmp_path):
    x = wordnet.base[:600]
    index = ShardedIndex(wordnet.dim, 3, metric="l2sq", quantizer=QUANTIZER, path=str(tmp_path / "w"),
                         actor_options=ACTORS)
    try:
        ids = index.add(x[:500], metadata=_meta(500))
        np.testing.assert_array_equal(ids, np.arange(500))
        assert index.add(x[500:510]).tolist() == list(range(500, 510))   # auto ids continue over the set
        with pytest.raises(DuplicateIdError):            # 3 new ids + 1 existing: nothing is added
            index.add(x[:4], ids=[900, 901, 902, 7])
        assert len(index) == 510 and 900 not in index
        with pytest.raises(DuplicateIdError):
            index.add(x[:2], ids=[950, 950])

        index.upsert(x[100:101], ids=[7], metadata=[{"pos": 99, "b20": 99}])   # id 7 now holds vector 100
        assert len(index) == 510
        rec = index.get([7])
        assert rec.metadata == [{"pos": 99, "b20": 99}]
        top = index.search(x[100:101], 2).ids[0].tolist()
        assert sorted(top) == [7, 100]

        assert index.delete([7, 8, 400]) == 3
        assert len(index) == 507 and 8 not in index
        with pytest.raises(NotFoundError):               # one unknown id: nothing is deleted
            index.delete([9, 8])
        assert 9 in index and len(index) == 507
        assert 7 not in index.search(x[100:101], 5).ids[0]
        sizes = index.shard_sizes()
        assert sum(sizes) == 507 and min(sizes) > 100
    finally:
        index.close()


def test_reshard_copies_every_row_into_a_new_shard_count(stored, wordnet, tmp_path):
    single, sharded, _ = stored
    two = sharded.reshard(str(tmp_path / "two"), 2, batch_size=1000, actor_options=ACTORS)
    try:
        assert two.n_shards == 2 and len(two) == len(single)
        q = wordnet.queries[:50]
        # float32 vectors stored + ip: the re-encoded codes are the original codes
        assert_same_result(two.search(q, 10), single.search(q, 10))
    finally:
        two.close()


def test_rerank_runs_inside_each_shard(stored, wordnet):
    single, sharded, _ = stored
    q = wordnet.queries[:N_QUERIES]
    got = sharded.search(q, 10, rerank=True)
    want = single.search(q, 10, rerank=True)
    # each shard re-ranks its own best k*oversample: a superset of the single index's candidates
    assert np.all(got.scores >= want.scores - 1e-6)
    assert recall_at_k(got.ids, wordnet.gt_ids[:N_QUERIES], 10) >= recall_at_k(want.ids, wordnet.gt_ids[:N_QUERIES], 10)
    exact = np.take_along_axis(q @ wordnet.base.T, got.ids, axis=1)
    np.testing.assert_allclose(got.scores, exact, rtol=1e-5, atol=1e-6)


# ---- failures -----------------------------------------------------------------------------------
def _search_while_killing(ray, index, shard, q):
    """Start a search that queues behind a sleeping shard actor, kill that actor mid-flight, return the outcome."""
    actor = index._actors[shard]
    actor.debug_sleep.remote(3.0)
    out = {}

    def run():
        try:
            out["result"] = index.search(q, 10)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    ray.kill(actor)
    thread.join(60)
    return out


def test_dead_in_memory_shard_is_an_error_never_a_partial_result(ray_cluster, wordnet):
    x = wordnet.base[:1000]
    index = ShardedIndex(wordnet.dim, 3, quantizer=QUANTIZER, actor_options=ACTORS)
    index.add(x)
    q = wordnet.queries[:20]
    full = index.search(q, 10)
    out = _search_while_killing(ray_cluster, index, 1, q)
    assert "result" not in out, "a search with a dead shard returned a result"
    err = out["error"]
    assert isinstance(err, ShardUnavailableError) and err.shards == (1,)
    assert "allow_partial" in str(err) and "lost" in str(err)
    with pytest.raises(ShardUnavailableError):
        index.search(q, 10)

    part = index.search(q, 10, allow_partial=True)
    assert part.shards_missing == (1,) and part.shards_answered == (0, 2) and not part.complete
    owner = shard_of(np.where(part.ids >= 0, part.ids, 0), 3)
    assert not np.any((owner == 1) & (part.ids >= 0))
    # what the live shards hold is still ranked exactly as before
    survivors = full.ids[shard_of(np.maximum(full.ids, 0), 3) != 1]
    assert set(survivors.tolist()) <= set(part.ids.ravel().tolist())
    index.close()


def test_dead_durable_shard_is_restarted_from_its_directory(stored, wordnet):
    single, sharded, _ = stored
    q = wordnet.queries[:N_QUERIES]
    ray = __import__("ray")
    pid_before = ray.get(sharded._actors[2].ping.remote())["pid"]
    out = _search_while_killing(ray, sharded, 2, q)
    assert "error" not in out, out.get("error")
    assert out["result"].complete
    assert_same_result(out["result"], single.search(q, 10))
    assert ray.get(sharded._actors[2].ping.remote())["pid"] != pid_before


def test_paths_are_checked(ray_cluster, tmp_path, stored):
    with pytest.raises(NotFoundError):
        open_sharded(str(tmp_path / "nothing-here"))
    _, _, path = stored
    with pytest.raises(AlreadyExistsError):
        ShardedIndex(384, 2, path=path)


# ---- persistence (last: restarts the Ray cluster) -------------------------------------------------
def test_data_survives_a_restart_of_the_cluster(stored, wordnet):
    single, sharded, path = stored
    q = wordnet.queries[:N_QUERIES]
    before = sharded.search(q, 10)
    sharded.add(wordnet.queries[:5] * 0.5, ids=[10_000, 10_001, 10_002, 10_003, 10_004])  # in the WAL only
    ray = __import__("ray")
    ray.shutdown()                      # every actor dies; nothing was saved explicitly
    ray.init(**RAY_INIT)
    reopened = open_sharded(path, actor_options=ACTORS)
    try:
        assert len(reopened) == wordnet.base.shape[0] + 5
        assert 10_003 in reopened
        reopened.delete([10_000, 10_001, 10_002, 10_003, 10_004])
        assert_same_result(reopened.search(q, 10), before)
        assert reopened.add(wordnet.base[:1]).tolist() == [10_005]   # auto ids continue after the largest
    finally:
        reopened.close()
    assert os.path.isfile(os.path.join(path, "sharded.json"))
