"""ShardedIndex on a local Ray cluster (started once per session by ``ray_cluster``), on real WordNet vectors.

Order matters in this module: the last test restarts the Ray cluster.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from distributed_helpers import ACTORS, RAY_INIT

import vqdb
from vqdb.distributed import ShardedIndex, ShardedSearchResult, shard_of
from vqdb.distributed import open as open_sharded
from vqdb.errors import (
    AlreadyExistsError,
    DuplicateIdError,
    InvalidInputError,
    NotFoundError,
    ShardUnavailableError,
)
from vqdb.testing import recall_at_k

QUANTIZER = "turbo-4"
N_QUERIES = 200


def _meta(n: int) -> list[dict]:
    return [{"pos": i % 3, "b20": i % 20} for i in range(n)]


def assert_same_result(got, want, *, atol: float = 0.0) -> None:
    """Same ids in the same order, and the same scores (bit for bit when ``atol`` is 0)."""
    np.testing.assert_array_equal(got.ids, want.ids)
    if atol:
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=atol)
    else:
        np.testing.assert_array_equal(got.scores, want.scores)


def search_small_batches(index, q, k, **kwargs):
    """Search in batches of 8 queries: the per-code LUT kernel path, whose scores do not depend on how
    many codes a segment holds (batches of >= 16 queries use a GEMM whose float rounding can)."""
    parts = [index.search(q[i : i + 8], k, **kwargs) for i in range(0, q.shape[0], 8)]
    return vqdb.SearchResult(
        np.vstack([p.ids for p in parts]), np.vstack([p.scores for p in parts]), parts[0].metric
    )


# The quantizer's encode rounds its rotation (a BLAS GEMM) differently for different batch compositions and
# BLAS thread counts (Ray runs actors with OMP_NUM_THREADS=1), so a row encoded with its shard's rows inside an
# actor can get a code one rounding step away from the same row encoded in one batch in this process (a few
# percent of rows; their scores then differ by ~1e-7). Against a single index holding the same codes (fed the
# same batches, in an actor) the sharded search is bit for bit identical; against one fed everything at once
# here, ids are identical and scores agree to SCORE_ATOL. The fast-scan scanner sums a code's terms in an order
# that depends on how codes are blocked (one segment vs four shards), so even with the same codes the scores
# agree to SCORE_ATOL (float32 rounding), while the ids stay identical.
SCORE_ATOL = 1e-6


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(ray_cluster, wordnet):
    """(single vqdb.Index, in-memory 4-shard ShardedIndex) over the same 5,000 real vectors and metadata,
    the single index fed in one batch exactly as the sharded one."""
    meta = _meta(wordnet.base.shape[0])
    single = vqdb.Index(wordnet.dim, metric="cos", quantizer=QUANTIZER)
    single.add(wordnet.base, metadata=meta)
    sharded = ShardedIndex(wordnet.dim, 4, metric="cos", quantizer=QUANTIZER, actor_options=ACTORS)
    sharded.add(wordnet.base, metadata=meta)
    yield single, sharded
    sharded.close()


@pytest.fixture(scope="module")
def same_batches(pair, wordnet):
    """One vqdb.Index (a 1-shard set: the index inside one actor) holding the same codes as the 4 shards:
    the same fitted quantizer, fed the same per-shard batches in the same kind of process."""
    _, sharded = pair
    meta = _meta(wordnet.base.shape[0])
    single = ShardedIndex(wordnet.dim, 1, metric="cos", quantizer=sharded.quantizer, actor_options=ACTORS)
    owner = shard_of(np.arange(wordnet.base.shape[0]), 4)
    for s in range(4):
        rows = np.flatnonzero(owner == s)
        single.add(wordnet.base[rows], ids=rows, metadata=[meta[i] for i in rows])
    yield single
    single.close()


@pytest.fixture(scope="module")
def stored(ray_cluster, wordnet, tmp_path_factory):
    """(single Index, durable 2-shard ShardedIndex at a path): ``ip``, float32 vectors stored for re-rank."""
    path = str(tmp_path_factory.mktemp("sharded") / "wordnet")
    single = vqdb.Index(wordnet.dim, metric="ip", quantizer=QUANTIZER, store_vectors="float32")
    single.add(wordnet.base)
    sharded = ShardedIndex(
        wordnet.dim,
        2,
        metric="ip",
        quantizer=QUANTIZER,
        path=path,
        store_vectors="float32",
        actor_options=ACTORS,
    )
    sharded.add(wordnet.base)  # the first write fits the centre, as in `single`
    return single, sharded, path


# ---- identical to a single index ------------------------------------------------------------------
def test_flat_search_identical_to_single_index_bit_for_bit(pair, same_batches, wordnet):
    _, sharded = pair
    q = wordnet.queries[:N_QUERIES]
    got = sharded.search(q[:8], 10)
    assert isinstance(got, ShardedSearchResult) and isinstance(got, vqdb.SearchResult)
    assert got.complete and got.shards_answered == (0, 1, 2, 3) and got.metric == "cos"
    got = search_small_batches(sharded, q, 10)
    assert_same_result(got, search_small_batches(same_batches, q, 10), atol=SCORE_ATOL)
    assert recall_at_k(got.ids, wordnet.gt_ids[:N_QUERIES], 10) > 0.8


def test_flat_search_matches_a_single_index_fed_at_once(pair, wordnet):
    single, sharded = pair
    q = wordnet.queries[:N_QUERIES]
    assert_same_result(
        search_small_batches(sharded, q, 10), search_small_batches(single, q, 10), atol=SCORE_ATOL
    )
    # one batch of 200 queries: the GEMM scoring path
    assert_same_result(sharded.search(q, 10), single.search(q, 10), atol=SCORE_ATOL)


def test_filtered_search_identical_to_single_index(pair, same_batches, wordnet):
    single, sharded = pair
    q = wordnet.queries[:16]
    for flt in ({"pos": 1}, {"b20": {"$in": [3, 7]}}):
        got = search_small_batches(sharded, q, 10, filter=flt)
        assert_same_result(got, search_small_batches(same_batches, q, 10, filter=flt), atol=SCORE_ATOL)
        assert_same_result(
            sharded.search(q, 10, filter=flt), same_batches.search(q, 10, filter=flt), atol=SCORE_ATOL
        )
        assert_same_result(got, search_small_batches(single, q, 10, filter=flt), atol=SCORE_ATOL)


def test_k_beyond_the_rows_of_a_shard_pads_like_a_single_index(pair, wordnet):
    single, sharded = pair
    q = wordnet.queries[:3]
    got = sharded.search(q, 100, filter={"b20": 0, "pos": 0})  # 84 matches, about 21 per shard
    assert (
        np.all(got.ids[:, :84] >= 0)
        and np.all(got.ids[:, 84:] == -1)
        and np.all(np.isneginf(got.scores[:, 84:]))
    )
    assert_same_result(got, single.search(q, 100, filter={"b20": 0, "pos": 0}), atol=SCORE_ATOL)


def test_every_shard_uses_the_single_index_quantizer_state(pair):
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
    for s in range(4):
        actor = sharded.actor(s)
        held = np.asarray(__import__("ray").get(actor.ids.remote()))
        assert np.all(shard_of(held, 4) == s)
    st = sharded.stats()
    assert st["n"] == n and st["n_shards"] == 4 and len(st["shards"]) == 4
    assert st["bytes_per_vector"]["codes"] == sharded.quantizer.code_size


def test_get_gathers_rows_in_the_order_asked(pair, same_batches):
    single, sharded = pair
    ids = np.array([4999, 0, 17, 2500, 3])
    got, want = sharded.get(ids), same_batches.get(ids)
    np.testing.assert_array_equal(got.ids, ids)
    # reconstructions of the same codes (decoded in other batches: float rounding only)
    np.testing.assert_allclose(got.vectors, want.vectors, rtol=0, atol=1e-6)
    assert got.metadata == want.metadata == single.get(ids).metadata
    assert not got.exact
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
    index = ShardedIndex(
        wordnet.dim, 2, metric="l2sq", quantizer=QUANTIZER, path=str(tmp_path / "w"), actor_options=ACTORS
    )
    try:
        ids = index.add(x[:500], metadata=_meta(500))
        np.testing.assert_array_equal(ids, np.arange(500))
        assert index.add(x[500:510]).tolist() == list(range(500, 510))  # auto ids continue over the set
        assert sorted(index.ids(filter={"pos": 1}).tolist()) == list(range(1, 500, 3))
        with pytest.raises(DuplicateIdError):  # 3 new ids + 1 existing: nothing is added
            index.add(x[:4], ids=[900, 901, 902, 7])
        assert len(index) == 510 and 900 not in index
        with pytest.raises(DuplicateIdError):
            index.add(x[:2], ids=[950, 950])

        index.upsert(x[100:101], ids=[7], metadata=[{"pos": 99, "b20": 99}])  # id 7 now holds vector 100
        assert len(index) == 510
        rec = index.get([7])
        assert rec.metadata == [{"pos": 99, "b20": 99}]
        top = index.search(x[100:101], 2).ids[0].tolist()
        assert sorted(top) == [7, 100]

        assert index.delete([7, 8, 400]) == 3
        assert len(index) == 507 and 8 not in index
        with pytest.raises(NotFoundError):  # one unknown id: nothing is deleted
            index.delete([9, 8])
        assert 9 in index and len(index) == 507
        assert 7 not in index.search(x[100:101], 5).ids[0]
        sizes = index.shard_sizes()
        assert sum(sizes) == 507 and min(sizes) > 200
    finally:
        index.close()


def test_reshard_copies_every_row_into_a_new_shard_count(stored, wordnet, tmp_path):
    single, sharded, _ = stored
    three = sharded.reshard(str(tmp_path / "three"), 3, batch_size=1000, actor_options=ACTORS)
    try:
        assert three.n_shards == 3 and len(three) == len(single)
        q = wordnet.queries[:50]
        # float32 vectors stored + ip: rows re-encoded from the exact vectors (codes equal up to encode rounding)
        assert_same_result(three.search(q, 10), single.search(q, 10), atol=SCORE_ATOL)
    finally:
        three.close()


def test_rerank_runs_inside_each_shard(stored, wordnet):
    single, sharded, _ = stored
    q = wordnet.queries[:N_QUERIES]
    got = sharded.search(q, 10, rerank=True)
    want = single.search(q, 10, rerank=True)
    # each shard re-ranks its own best k*oversample: a superset of the single index's candidates
    assert np.all(got.scores >= want.scores - 1e-6)
    assert recall_at_k(got.ids, wordnet.gt_ids[:N_QUERIES], 10) >= recall_at_k(
        want.ids, wordnet.gt_ids[:N_QUERIES], 10
    )
    exact = np.take_along_axis(q @ wordnet.base.T, got.ids, axis=1)
    np.testing.assert_allclose(got.scores, exact, rtol=1e-5, atol=1e-6)


# ---- failures -----------------------------------------------------------------------------------
def _search_while_killing(ray, index, shard, q):
    """Start a search that queues behind a sleeping shard actor, kill that actor mid-flight, return the outcome."""
    actor = index.actor(shard)
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
    index = ShardedIndex(wordnet.dim, 2, quantizer=QUANTIZER, actor_options=ACTORS)
    index.add(x)
    q = wordnet.queries[:20]
    full = index.search(q, 10)

    index.actor(1).debug_sleep.remote(2.0)  # shard 1 busy: it misses the deadline
    with pytest.raises(ShardUnavailableError) as info:
        index.search(q, 10, timeout=0.5)
    assert info.value.shards == (1,)
    late = index.search(q, 10, timeout=0.5, allow_partial=True)
    assert late.shards_missing == (1,) and late.shards_answered == (0,)
    assert index.search(q, 10).complete  # waits for shard 1 to wake up

    out = _search_while_killing(ray_cluster, index, 1, q)
    assert "result" not in out, "a search with a dead shard returned a result"
    err = out["error"]
    assert isinstance(err, ShardUnavailableError) and err.shards == (1,)
    assert "allow_partial" in str(err) and "lost" in str(err)
    with pytest.raises(ShardUnavailableError):
        index.search(q, 10)

    part = index.search(q, 10, allow_partial=True)
    assert part.shards_missing == (1,) and part.shards_answered == (0,) and not part.complete
    found = part.ids[part.ids >= 0]
    assert found.size and np.all(shard_of(found, 2) == 0)
    # what the live shard holds is still ranked exactly as before
    survivors = full.ids[shard_of(np.maximum(full.ids, 0), 2) == 0]
    assert set(survivors.tolist()) <= set(part.ids.ravel().tolist())
    index.close()


def test_dead_durable_shard_is_restarted_from_its_directory(stored, wordnet):
    single, sharded, _ = stored
    q = wordnet.queries[:N_QUERIES]
    ray = __import__("ray")
    pid_before = ray.get(sharded.actor(1).ping.remote())["pid"]
    out = _search_while_killing(ray, sharded, 1, q)
    assert "error" not in out, out.get("error")
    assert out["result"].complete
    assert_same_result(out["result"], single.search(q, 10), atol=SCORE_ATOL)
    assert ray.get(sharded.actor(1).ping.remote())["pid"] != pid_before


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
    ray.shutdown()  # every actor dies; nothing was saved explicitly
    ray.init(**RAY_INIT)
    reopened = open_sharded(path, actor_options=ACTORS)
    try:
        assert len(reopened) == wordnet.base.shape[0] + 5
        assert 10_003 in reopened
        reopened.delete([10_000, 10_001, 10_002, 10_003, 10_004])
        assert_same_result(reopened.search(q, 10), before, atol=SCORE_ATOL)
        assert reopened.add(wordnet.base[:1]).tolist() == [10_005]  # auto ids continue after the largest
    finally:
        reopened.close()
    assert os.path.isfile(os.path.join(path, "sharded.json"))


def test_graph_per_shard(ray_cluster, wordnet, tmp_path):
    """``graph=`` builds a graph in every shard; the merged top-k reaches brute-force recall, ef is passed
    through, deletes are never returned, and a reopened set answers the same."""
    x, q = wordnet.base[:3000], wordnet.queries[:60]
    path = str(tmp_path / "g")
    sharded = ShardedIndex(
        wordnet.dim, 2, metric="ip", quantizer=QUANTIZER, graph=True, path=path, actor_options=ACTORS
    )
    sharded.add(x)
    exact = np.argsort(-(q.astype(np.float64) @ x.astype(np.float16).astype(np.float64).T), axis=1)[:, :10]
    res = sharded.search(q, 10, ef=64)
    assert recall_at_k(res.ids, exact, 10) >= 0.95
    assert recall_at_k(sharded.search(q, 10, ef=8).ids, exact, 10) < recall_at_k(res.ids, exact, 10)
    gone = np.unique(res.ids[:, 0])
    sharded.delete(gone)
    after = sharded.search(q, 10, ef=64)
    assert not np.isin(after.ids, gone).any() and (after.ids >= 0).all()
    stats = sharded.stats()
    assert all(s["graph"]["degree"] == 32 for s in stats["shards"])
    sharded.save()
    sharded.close()
    again = open_sharded(path, actor_options=ACTORS)
    try:
        np.testing.assert_array_equal(again.search(q, 10, ef=64).ids, after.ids)
    finally:
        again.close()
