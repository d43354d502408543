"""Multi-table fast scan (5–8-bit parts of turbo-pca-N) against its NumPy oracle (vqdb.kernels.reference_multitable).

Integer paths (tables, window sums, accumulation) and the returned scores must match the oracle bit for
bit; the ranking must be the float path's (the quantizer's own scores) and recall that of exact search.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import vqdb  # noqa: E402
from vqdb._core.packing import pack_bits  # noqa: E402
from vqdb.kernels import reference as ref  # noqa: E402
from vqdb.kernels import reference_fastscan as rf  # noqa: E402
from vqdb.kernels import reference_multitable as rm  # noqa: E402
from vqdb.kernels import scanner  # noqa: E402
from vqdb.kernels.fastscan import multitable as mt  # noqa: E402
from vqdb.kernels.scanner_multitable import MultiTableScanner  # noqa: E402


# ---------------------------------------------------------------------------------------------
# layout and tables
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [5, 6, 7, 8])
def test_wide_codes_hold_the_indices_and_the_documented_layout(bits):
    rng = np.random.default_rng(bits)
    idx = rng.integers(0, 1 << bits, size=(64, 11), dtype=np.uint8)
    packed = pack_bits(idx, bits)
    codes = np.concatenate([np.full((64, 3), 9, np.uint8), packed, np.full((64, 2), 7, np.uint8)], axis=1)
    np.testing.assert_array_equal(rm.wide_codes(codes, 3, bits, 11), idx)
    blocks = rm.interleave_wide(idx)
    assert blocks.shape == (2, 11, 32)
    assert blocks[1, 4, 7] == idx[32 + 7, 4]  # block b, coordinate c, byte v = vector 32 b + v
    assert rm.table_width(bits) == (64 if bits <= 6 else 1 << bits)


def test_wide_weights_keep_entries_in_a_byte_and_the_sum_exact_in_float32():
    inv_n = np.array([0.01, 0.01, 1e-9, 0.5], np.float32)  # the nibble group's steps
    top_w = np.array([[2.55, 25.5], [1.0, 0.0], [1.0, 2.0], [0.0, 0.0]])  # largest range of each run
    rows_n, rows_w = 196, np.array([16, 40])
    inv, w, requant = rm.wide_weights(inv_n, top_w, rows_n, rows_w)
    assert inv.dtype == np.float32 and w.dtype == np.int64
    assert ((w * inv.astype(np.float64)[:, None]) >= top_w / 255.0).all()  # (top - min) * a <= 255
    assert (255 * (rows_n + (w * rows_w).sum(axis=1)) <= rm.MAX_COMBINED).all()
    # rows 0, 1, 3: the unit is the nibble step, w = ceil(top / 255 / step) (>= 1), no re-quantization
    np.testing.assert_array_equal(inv[[0, 1, 3]], inv_n[[0, 1, 3]])
    np.testing.assert_array_equal(w[0], np.ceil(top_w[0] / 255.0 / np.float64(inv[0])))
    np.testing.assert_array_equal(w[1], [1, 1])
    np.testing.assert_array_equal(w[3], [1, 1])
    # row 2: a tiny nibble step would need weights past 2**24 / 255: the unit doubles, the nibble re-quantizes
    assert requant.tolist() == [False, False, True, False]
    assert inv[2] > inv_n[2] and (w[2] >= 1).all()
    # no nibble parts: the unit is the widest run's natural step
    inv0, w0, rq0 = rm.wide_weights(None, top_w, 0, rows_w)
    assert not rq0.any() and inv0[0] == np.float32(25.5 / 255.0)
    assert ((w0 * inv0.astype(np.float64)[:, None]) >= top_w / 255.0).all()


def test_table_kernels_match_the_reference_bit_for_bit():
    rng = np.random.default_rng(5)
    m = 6
    runs = [(5, 7), (6, 3), (8, 2)]  # (bits, coordinates)
    coords = np.concatenate([[0], np.cumsum([k for _, k in runs])]).astype(np.int64)
    bits = np.array([b for b, _ in runs], np.int64)
    coff, stride = rm.table_offsets(coords, bits)
    fl = np.zeros(m * stride, np.float32)
    run_tops = np.zeros((m, len(runs)))
    tables = []
    for g, (b, k) in enumerate(runs):
        q = rng.standard_normal((m, k)).astype(np.float32)
        values = np.sort(rng.standard_normal(1 << b)).astype(np.float32).astype(np.float64)
        mt.wide_float_tables(q, values, int(coords[g]), coff, stride, fl, run_tops, g)
        want = rm.float_tables(q, values)
        for c in range(k):
            o = coff[coords[g] + c]
            np.testing.assert_array_equal(fl.reshape(m, -1)[:, o : o + (1 << b)], want[:, c])
        np.testing.assert_array_equal(run_tops[:, g], rm.row_tops(want).max(axis=1))
        tables.append(want)
    a = rng.uniform(50, 90, size=m)
    acc = np.zeros((m, 4))
    u8 = np.zeros(m * stride, np.uint8)
    acc_ref = np.zeros((m, 4))
    for g, (b, k) in enumerate(runs):
        mt.quantize_wide(fl, int(coords[g]), int(coords[g + 1]), 1 << b, coff, stride, a, u8, acc)
        want = rm.quantize_rows(tables[g], a, acc_ref)
        for c in range(k):
            o = coff[coords[g] + c]
            np.testing.assert_array_equal(u8.reshape(m, -1)[:, o : o + (1 << b)], want[:, c])
    np.testing.assert_array_equal(acc, acc_ref)
    # the nibble tables of the same group scheme
    nfl = rng.standard_normal((m, 10, 16)).astype(np.float32)
    nu8 = np.zeros((m, 10, 16), np.uint8)
    acc, acc_ref = np.zeros((m, 4)), np.zeros((m, 4))
    mt.quantize_nibble(nfl, 2, 8, a, nu8, acc)
    np.testing.assert_array_equal(nu8[:, 2:8], rm.quantize_rows(nfl[:, 2:8], a, acc_ref))
    np.testing.assert_array_equal(acc, acc_ref)
    assert not nu8[:, :2].any() and not nu8[:, 8:].any()
    off, err = rm.row_bounds(acc_ref)
    np.testing.assert_array_equal(off, acc_ref[:, 0])
    assert (err >= acc_ref[:, 1]).all()
    assert (rm.row_bounds(acc_ref, 2.0)[1] <= err).all()


@pytest.mark.parametrize("nibble", [True, False])
def test_fused_wide_tables_equal_the_oracles_composed(nibble):
    """wide_tables (one call per batch: float tables, run ranges, unit and weights, uint8 tables, offset and
    bound) against float_tables + row_tops + wide_weights + quantize_rows + row_bounds, bit for bit."""
    rng = np.random.default_rng(11)
    m = 7
    runs = [(7, 5), (6, 32), (6, 9), (5, 20)]  # (bits, coordinates)
    coords = np.concatenate([[0], np.cumsum([k for _, k in runs])]).astype(np.int64)
    bits = np.array([b for b, _ in runs], np.int64)
    coff, stride = rm.table_offsets(coords, bits)
    qw = rng.standard_normal((m, int(coords[-1]))).astype(np.float32)
    qw[3] = 0.0  # an all-zero query
    values = np.zeros((len(runs), 256))
    for r, (b, _) in enumerate(runs):
        values[r, : 1 << b] = np.sort(rng.standard_normal(1 << b)).astype(np.float32)
    inv_n = (rng.uniform(0.005, 0.02, m) if nibble else np.zeros(m)).astype(np.float32)
    rows_n = 196 if nibble else 0
    limit = rm.MAX_COMBINED if nibble else 255 * 200  # small: some queries must take a coarser unit
    for sigmas in (-1.0, 3.0):
        out = dict(
            fl=np.zeros(m * stride, np.float32), u8=np.zeros(m * stride, np.uint8), inv=np.empty(m, np.float32),
            w=np.empty((m, len(runs)), np.int64), rq=np.zeros(m, np.bool_), off=np.empty(m), err=np.empty(m),
        )  # fmt: skip
        mt.wide_tables(
            qw, values, coords, bits, coff, stride, inv_n, rows_n, limit, sigmas, out["fl"], out["u8"],
            out["inv"], out["w"], out["rq"], out["off"], out["err"],
        )  # fmt: skip
        tables = [
            rm.float_tables(qw[:, coords[r] : coords[r + 1]], values[r, : 1 << b])
            for r, (b, _) in enumerate(runs)
        ]
        tops = np.stack([rm.row_tops(t).max(axis=1) for t in tables], axis=1)
        old = rm.MAX_COMBINED
        try:
            rm.MAX_COMBINED = limit
            inv, w, rq = rm.wide_weights(inv_n if nibble else None, tops, rows_n, np.diff(coords))
        finally:
            rm.MAX_COMBINED = old
        np.testing.assert_array_equal(out["inv"], inv)
        np.testing.assert_array_equal(out["w"], w)
        np.testing.assert_array_equal(out["rq"], rq)
        acc = np.zeros((m, 4))
        for r, (b, _) in enumerate(runs):
            u8 = rm.quantize_rows(tables[r], 1.0 / (w[:, r] * inv.astype(np.float64)), acc)
            for j, c in enumerate(range(coords[r], coords[r + 1])):
                o = coff[c]
                np.testing.assert_array_equal(out["fl"].reshape(m, -1)[:, o : o + (1 << b)], tables[r][:, j])
                np.testing.assert_array_equal(out["u8"].reshape(m, -1)[:, o : o + (1 << b)], u8[:, j])
        off, err = rm.row_bounds(acc, sigmas)
        np.testing.assert_array_equal(out["off"], off)
        np.testing.assert_array_equal(out["err"], err)
    assert nibble or not out["rq"].any()  # without nibble parts nothing is quantized again


# ---------------------------------------------------------------------------------------------
# accumulation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ["vbmi", "avx2", "generic"])
@pytest.mark.parametrize("bits", [5, 6, 7, 8])
def test_window_variants_match_the_oracle(isa, bits):
    """Each ISA's window: weighted sums stored (first) then added, per-block maxima, both query counts;
    256 coordinates of worst-case 255 entries (the uint16 lanes' limit)."""
    from numba import njit

    if (isa, mt.WIDE_ISA) in (("vbmi", "avx2"), ("vbmi", "generic"), ("avx2", "generic")):
        pytest.skip(f"this CPU has no {isa}")
    rng = np.random.default_rng(bits)
    K, nblk, tw = 256, 3, rm.table_width(bits)
    blocks = rng.integers(0, 1 << bits, size=(nblk, K, 32), dtype=np.uint8)
    tables = rng.integers(0, 256, size=(2, K, tw), dtype=np.uint8)
    tables[:, :, (1 << bits) - 1] = 255
    blocks[0, :, 5] = (1 << bits) - 1
    tables[:, :, 1 << bits :] = 0
    want = rm.accumulate_ref(blocks, tables).astype(np.int64).reshape(2, nblk * 32)
    flat_b, flat_t = blocks.reshape(-1), tables.reshape(-1)
    lbases = np.array([0, K * tw, 0, 0], np.int64)
    wmul = np.array([3, 5, 0, 0], np.int64)
    wins = mt.make_windows(isa)
    for nq in (1, 2):
        win = wins[(nq, bits)]

        @njit
        def run(out, mx, win=win):
            win(flat_b, 0, K * 32, nblk, flat_t, lbases, wmul, K, out, 0, 32 * nblk, 1, mx, 0, nblk)
            win(flat_b, 0, K * 32, nblk, flat_t, lbases, wmul, K, out, 0, 32 * nblk, 0, mx, 0, nblk)

        out, mx = np.full(2 * 32 * nblk, 7, np.int32), np.zeros(2 * nblk, np.int32)
        run(out, mx)
        expect = 2 * wmul[:nq, None] * want[:nq]
        np.testing.assert_array_equal(out.reshape(2, -1)[:nq], expect, err_msg=f"{isa} nq={nq}")
        np.testing.assert_array_equal(mx.reshape(2, -1)[:nq], expect.reshape(nq, nblk, 32).max(axis=2))


# a run longer than one uint16 window (tables past L1_TABLE_BYTES: run by run); small tables (block by block)
@pytest.mark.parametrize("runs", [[(7, 20), (6, 300), (5, 9)], [(8, 3), (6, 40), (5, 7)]])
def test_accumulate_wide_is_the_exact_sum_over_runs_of_each_width(runs):
    rng = np.random.default_rng(runs[1][1])
    coords = np.concatenate([[0], np.cumsum([k for _, k in runs])]).astype(np.int64)
    bits = np.array([b for b, _ in runs], np.int64)
    K, nb, m = int(coords[-1]), 37, 5  # not a multiple of the 16-block sub-chunks
    coff, stride = rm.table_offsets(coords, bits)
    assert (stride <= mt.L1_TABLE_BYTES) == (runs[0][0] == 8)  # both orders of the sums are exercised
    codes = np.concatenate([rng.integers(0, 1 << b, size=(nb * 32, k)) for b, k in runs], axis=1).astype(
        np.uint8
    )
    luts = np.zeros(m * stride, np.uint8)
    dense = np.zeros((m, K, 256), np.uint8)
    for g, (b, _) in enumerate(runs):
        for c in range(coords[g], coords[g + 1]):
            t = rng.integers(0, 256, size=(m, 1 << b), dtype=np.uint8)
            luts.reshape(m, -1)[:, coff[c] : coff[c] + (1 << b)] = t
            dense[:, c, : 1 << b] = t
    blocks = rm.interleave_wide(codes)
    wide = mt.WideCodes(blocks.reshape(-1), codes, K, coords, bits)
    wq = mt.WideQueries(luts, np.zeros(m * stride, np.float32), stride, coff, np.ones((m, 3), np.int64),
                        np.ones(m, np.float32), np.zeros(m, np.float32), np.zeros(m, np.float32))  # fmt: skip
    want = rm.accumulate_ref(blocks, dense)
    np.testing.assert_array_equal(mt.accumulate_wide(wide, wq, m), want)
    np.testing.assert_array_equal(mt.accumulate_wide_serial(wide, wq, m), want)


# ---------------------------------------------------------------------------------------------
# the scan: the oracle's exact scores, the float path's ranking
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(wordnet):
    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:12], dtype=np.float32)
    return x, q


@pytest.fixture(scope="module")
def fitted(sample):
    x, _ = sample
    out = {}
    for name in ("turbo-pca-2", "turbo-pca-3", "turbo-pca-4", "turbo-pca-8"):
        qz = vqdb.make_quantizer(name, x.shape[1]).fit(x)
        out[name] = (qz, qz.encode(x))
    return out


def _oracle_topk(sc, lay, prep, k, allow=None, probe=None, lists=None):
    """The oracle's exact scores of every position (filter, padding and probed lists applied) and top k."""
    m, K = prep.m, lay.wide.ncoords
    wq = prep.wide
    wfl = np.zeros((m, K, 256), np.float32)
    for r in range(len(sc.wide_runs)):  # runs of one bit width
        ne = 1 << int(sc.wide_bits[r])
        for c in range(sc.wide_coords[r], sc.wide_coords[r + 1]):
            wfl[:, c, :ne] = wq.fluts.reshape(m, -1)[:, wq.coff[c] : wq.coff[c] + ne]
    slots = rf.deinterleave(lay.blocks.reshape(lay.n_blocks, lay.nsteps, 32))
    beta = sc._beta(lay, prep, allow)
    s = rm.exact_scores_ref(
        slots=slots, fluts=prep.fluts, wide_rows=lay.wide.rows, wide_fluts=wfl, factor=lay.factors[0],
        beta=beta, alpha=prep.alpha, qconst=prep.qconst, cterm=prep.cterm, block_list=lay.block_list,
    )  # fmt: skip
    if probe is not None:
        ptr, pl = probe
        plist = np.repeat(lay.block_list.astype(np.int64), 32)
        for i in range(m):
            s[i, ~np.isin(plist, pl[ptr[i] : ptr[i + 1]])] = -np.inf
    top_s, top_p = rm.topk_ref(s, k)
    return top_s, np.where(top_p >= 0, lay.row_of[np.maximum(top_p, 0)], -1)


@pytest.mark.parametrize("name", ["turbo-pca-2", "turbo-pca-3", "turbo-pca-4", "turbo-pca-8"])
@pytest.mark.parametrize("metric", ["ip", "l2sq"])
def test_scan_returns_the_oracle_topk_bit_for_bit(sample, fitted, name, metric):
    x, q = sample
    qz, codes = fitted[name]
    sc = scanner.for_quantizer(qz)
    assert isinstance(sc, MultiTableScanner)
    assert sc.wide_parts and all(p["bits"] >= 5 for p in sc.wide_parts)
    lay = sc.layout(codes)
    cterm = (q @ qz.centre_)[:, None].astype(np.float32)
    for rows in (slice(None), slice(3, 4)):  # a batch, and one query (the single-query sums' block order)
        prep = sc.prepare(q[rows], metric=metric, cterm=cterm[rows])
        for k in (1, 10, 100):
            s, r = sc.topk(lay, prep, k)
            want_s, want_r = _oracle_topk(sc, lay, prep, k)
            np.testing.assert_array_equal(s, want_s)
            np.testing.assert_array_equal(r, want_r)
    prep = sc.prepare(q, metric=metric, cterm=cterm)
    # the float path (the quantizer's own float32 scores): same ranking up to float rounding
    full = qz.score(q, codes, centre=np.zeros(qz.dim, np.float32)) + cterm
    if metric == "l2sq":
        full = 2 * full - qz.squared_norms(codes)[None, :] - np.einsum("ij,ij->i", q, q)[:, None]
    s, r = sc.topk(lay, prep, 10)
    want_r, want_s = ref.topk(np.ascontiguousarray(full, np.float32), 10)
    np.testing.assert_allclose(s, want_s, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want_s).max())))
    assert (r == want_r).mean() >= 0.99


def test_filters_ivf_lists_threads_and_statistical_margin(sample, fitted):
    import numba

    x, q = sample
    qz, codes = fitted["turbo-pca-3"]
    codes = codes.copy()  # a new array: its own layout, with IVF lists
    rng = np.random.default_rng(1)
    sc = scanner.for_quantizer(qz)
    lists = np.sort(rng.integers(-1, 20, size=x.shape[0]))
    lay = sc.layout(codes, lists)
    cterm = rng.standard_normal((q.shape[0], 21)).astype(np.float32)
    allow = rng.random(x.shape[0]) < 0.3
    probe = scanner.probe_csr(np.argsort(-rng.random((q.shape[0], 20)), axis=1), 3)
    prep = sc.prepare(q, metric="ip", cterm=cterm)
    for kw in ({}, {"allow": allow}, {"probe_ptr": probe[0], "probe_lists": probe[1], "allow": allow}):
        want = _oracle_topk(sc, lay, prep, 20, allow=kw.get("allow"),
                            probe=probe if "probe_ptr" in kw else None)  # fmt: skip
        old = numba.get_num_threads()
        for t in sorted({1, old}):
            numba.set_num_threads(t)
            try:
                got = sc.topk(lay, prep, 20, **kw)
            finally:
                numba.set_num_threads(old)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    # a statistical margin (re-rank searches) still returns exact scores of real rows
    loose = sc.prepare(q, metric="ip", cterm=cterm, margin=4.0)
    assert (loose.wide.err <= prep.wide.err).all()
    s, r = sc.topk(lay, loose, 10)
    exact = _oracle_topk(sc, lay, prep, 3000)
    for i in range(q.shape[0]):
        full = dict(zip(exact[1][i].tolist(), exact[0][i].tolist()))
        assert [full[j] for j in r[i]] == s[i].tolist()
    with pytest.raises(ValueError, match="table"):
        sc.topk(lay, prep, 10, path="blas")


def test_a_coarser_unit_requantizes_the_nibble_tables_and_stays_exact(sample, fitted, monkeypatch):
    """When the wide weights would push T past the float32-exact range, the unit doubles and the nibble
    tables are quantized again (forced here with a small limit): still the oracle's top-k, bit for bit."""
    x, q = sample
    qz, codes = fitted["turbo-pca-4"]
    sc = scanner.for_quantizer(qz)
    lay = sc.layout(codes)
    cterm = (q @ qz.centre_)[:, None].astype(np.float32)
    normal = sc.prepare(q, metric="ip", cterm=cterm)
    rows = 2 * sc.nsteps + int(sc.wide_coords[-1])
    monkeypatch.setattr(rm, "MAX_COMBINED", 255 * rows * 2)
    prep = sc.prepare(q, metric="ip", cterm=cterm)
    assert (prep.wide.inv >= normal.wide.inv).all()
    assert (prep.wide.inv > normal.wide.inv).sum() >= q.shape[0] // 2  # most queries took a coarser unit
    assert (
        255 * (2 * sc.nsteps + (prep.wide.weight * np.diff(sc.wide_coords)).sum(axis=1)) <= rm.MAX_COMBINED
    ).all()
    assert not np.array_equal(prep.luts, normal.luts)
    for k in (1, 50):
        s, r = sc.topk(lay, prep, k)
        want_s, want_r = _oracle_topk(sc, lay, prep, k)
        np.testing.assert_array_equal(s, want_s)
        np.testing.assert_array_equal(r, want_r)


def test_pca1_without_wide_slices_stays_on_the_nibble_scanner(sample):
    x, _ = sample
    qz = vqdb.make_quantizer("turbo-pca-1", x.shape[1]).fit(x)
    assert max(p["bits"] for p in qz.scan_parts()["parts"]) <= 4
    assert type(scanner.for_quantizer(qz)) is scanner.FastScanner


# ---------------------------------------------------------------------------------------------
# through the index: planned on the fast kernel, same results as the float path, recall of exact search
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,ivf", [("cos", False), ("ip", 16)])
def test_index_runs_pca_on_the_table_scan_with_the_float_path_results(wordnet, monkeypatch, metric, ivf):
    from vqdb.index import _plan

    x = np.ascontiguousarray(wordnet.base[:4000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:40], dtype=np.float32)
    index = vqdb.Index(x.shape[1], metric=metric, quantizer="turbo-pca-2", ivf=ivf)
    index.add(x, metadata=[{"even": i % 2 == 0} for i in range(x.shape[0])])
    index.delete(np.arange(0, 4000, 7))
    seen = []
    real = _plan.plan_search

    def spy(**kw):
        plan = real(**kw)
        seen.append(plan)
        return plan

    monkeypatch.setattr(_plan, "plan_search", spy)
    runs = {}
    for fast in (True, False):
        monkeypatch.setattr(scanner, "enabled", lambda fast=fast: fast)
        runs[fast] = [index.search(q, 10, nprobe=3), index.search(q, 10, filter={"even": True}, nprobe=3)]
    fast_plans = [p for p in seen if p.route in ("flat", "ivf")]
    assert fast_plans and all(p.kernel == "fastscan" and isinstance(p.scanner, MultiTableScanner)
                              for p in fast_plans[:1])  # fmt: skip
    for a, b in zip(runs[True], runs[False]):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
        assert (a.ids == b.ids).mean() >= 0.99, (a.ids == b.ids).mean()


def test_recall_against_exact_search_on_real_vectors(wordnet, monkeypatch):
    """turbo-pca-2 on 5,000 real MiniLM vectors, 400 word queries: the table scan returns the float path's
    neighbours (same recall@10 against exact search), well above turbo-2's recall at about the same bytes."""
    from vqdb.testing import recall_at_k

    x = np.ascontiguousarray(wordnet.base, dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries, dtype=np.float32)
    got = {}
    for name in ("turbo-pca-2", "turbo-2"):
        index = vqdb.Index(x.shape[1], metric="ip", quantizer=name)
        index.add(x)
        for fast in (True, False):
            monkeypatch.setattr(scanner, "enabled", lambda fast=fast: fast)
            got[name, fast] = recall_at_k(index.search(q, 10).ids, wordnet.gt_ids, 10)
    assert abs(got["turbo-pca-2", True] - got["turbo-pca-2", False]) <= 0.002, got
    assert got["turbo-pca-2", True] >= got["turbo-2", True] + 0.02, got
