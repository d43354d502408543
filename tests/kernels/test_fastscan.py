"""Fast-scan kernels and paths against the NumPy oracle (vqdb.kernels.reference_fastscan) and the float path.

Integer paths (LUT accumulation, uint8 LUTs, popcount) must match bit for bit; float paths (re-scored
candidates, BLAS tiles) must give the float path's top-k with scores to tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import vqdb  # noqa: E402
from vqdb._core.packing import pack_bits, unpack_bits  # noqa: E402
from vqdb.kernels import fastscan as fk  # noqa: E402
from vqdb.kernels import reference as ref  # noqa: E402
from vqdb.kernels import reference_fastscan as rf  # noqa: E402
from vqdb.kernels import scanner  # noqa: E402
from vqdb.kernels.fastscan import isa as fk_isa  # noqa: E402


# ---------------------------------------------------------------------------------------------
# layout and LUTs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [5, 64, 97])
def test_nibble_slots_hold_the_indices(bits, k):
    rng = np.random.default_rng(bits * 7 + k)
    idx = rng.integers(0, 1 << bits, size=(9, k), dtype=np.uint8)
    codes = np.concatenate(
        [np.zeros((9, 3), np.uint8), pack_bits(idx, bits), np.zeros((9, 4), np.uint8)], axis=1
    )
    slots = rf.nibble_slots(codes, 3, bits, k)
    assert slots.shape == (9, rf.slots_per_part(k, bits)) and slots.shape[1] % 2 == 0
    cps = rf.coords_per_slot(bits)
    back = np.zeros((9, slots.shape[1] * cps), np.uint8)
    for t in range(cps):
        back[:, t::cps] = (slots >> (t * bits)) & ((1 << bits) - 1)
    np.testing.assert_array_equal(back[:, :k], idx)
    assert not back[:, k:].any()


def test_interleave_round_trip_and_documented_layout():
    rng = np.random.default_rng(0)
    slots = rng.integers(0, 16, size=(64, 6), dtype=np.uint8)
    blocks = rf.interleave(slots)
    assert blocks.shape == (2, 3, 32)
    np.testing.assert_array_equal(rf.deinterleave(blocks), slots)
    # byte i of step t: slot 2t of vector i (low nibble) | slot 2t of vector 16+i (high nibble)
    assert blocks[1, 2, 5] == slots[32 + 5, 4] | (slots[32 + 21, 4] << 4)
    assert blocks[0, 1, 16 + 7] == slots[7, 3] | (slots[23, 3] << 4)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_build_luts_matches_reference_bit_for_bit(bits):
    rng = np.random.default_rng(bits)
    k = 37
    q = rng.standard_normal((5, k)).astype(np.float32)
    values = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
    ns = rf.slots_per_part(k, bits)
    fl_ref = rf.float_luts(q, bits, values, ns)
    u8_ref, inv_ref, off_ref, emax_ref, erms_ref = rf.quantize_luts(fl_ref)
    u8 = np.zeros((5, ns + 2, 16), np.uint8)
    fl = np.zeros((5, ns + 2, 16), np.float32)
    inv, off, err = (np.zeros((5, 2), np.float32) for _ in range(3))
    fk.build_luts(q, bits, values.astype(np.float64), ns, 2, -1.0, u8, fl, inv, off, err, 1)
    np.testing.assert_array_equal(u8[:, 2:], u8_ref)
    np.testing.assert_array_equal(fl[:, 2:], fl_ref)
    np.testing.assert_allclose(inv[:, 1], inv_ref, rtol=1e-6)
    np.testing.assert_allclose(off[:, 1], off_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(err[:, 1], emax_ref, rtol=1e-5)
    # the rigorous bound holds for every code
    codes = rng.integers(0, 1 << bits if bits == 3 else 16, size=(200, ns))
    exact = np.take_along_axis(fl_ref[0].astype(np.float64)[None], codes[:, :, None], axis=2)[..., 0].sum(
        axis=1
    )
    approx = np.take_along_axis(u8_ref[0].astype(np.float64)[None], codes[:, :, None], axis=2)[..., 0].sum(
        axis=1
    )
    assert np.all(np.abs(approx * inv_ref[0] + off_ref[0] - exact) <= emax_ref[0])
    # sigma margins are never wider than the rigorous bound
    fk.build_luts(q, bits, values.astype(np.float64), ns, 2, 3.0, u8, fl, inv, off, err, 0)
    assert np.all(err[:, 0] <= emax_ref * (1 + 1e-6))


def test_quantize_group_matches_reference_bit_for_bit():
    """Parts sharing a factor (the bit-width slices of a PCA block) share one LUT scale."""
    rng = np.random.default_rng(7)
    fl = np.concatenate(
        [
            rf.float_luts(
                rng.standard_normal((4, 9)).astype(np.float32) * sc,
                bits,
                np.sort(rng.standard_normal(1 << bits)).astype(np.float32),
                rf.slots_per_part(9, bits),
            )
            for bits, sc in ((4, 3.0), (3, 1.0), (1, 0.2))
        ],
        axis=1,
    )
    u8 = np.zeros(fl.shape, np.uint8)
    inv, off, err = (np.zeros((4, 2), np.float32) for _ in range(3))
    fk.quantize_group(fl, 2, fl.shape[1], -1.0, u8, inv, off, err, 1)
    u8_ref, inv_ref, off_ref, emax_ref, _ = rf.quantize_luts(fl[:, 2:])
    np.testing.assert_array_equal(u8[:, 2:], u8_ref)
    np.testing.assert_array_equal(u8[:, :2], 0)
    np.testing.assert_allclose(inv[:, 1], inv_ref, rtol=1e-6)
    np.testing.assert_allclose(off[:, 1], off_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(err[:, 1], emax_ref, rtol=1e-5)


def test_pca_slices_scan_as_two_parts(sample):
    x, _ = sample
    sc = scanner.FastScanner(vqdb.make_quantizer("turbo-pca-1", x.shape[1]).fit(x))
    assert len(sc.parts) > 2 and sc.n_groups == 2 and sc.group_of.tolist() == [0] + [1] * (len(sc.parts) - 1)
    assert sc.part_steps.tolist() == [0, sc.slots[0] // 2, sc.nsteps]


# ---------------------------------------------------------------------------------------------
# integer kernels
# ---------------------------------------------------------------------------------------------
def _random_blocks(rng, n_blocks, part_steps, m, lut_max=256):
    S = int(part_steps[-1])
    blocks = rng.integers(0, 256, size=(n_blocks, S, 32), dtype=np.uint8)
    luts = rng.integers(0, lut_max, size=(m, S, 32), dtype=np.uint8)
    return blocks, luts


@pytest.mark.parametrize("part_steps", [[0, 1], [0, 7], [0, 3, 10], [0, 300]])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 6])
def test_accumulate_bit_exact(part_steps, m):
    rng = np.random.default_rng(len(part_steps) * 10 + m)
    ps = np.array(part_steps, np.int64)
    blocks, luts = _random_blocks(rng, 11, ps, m)
    luts[0] = 255  # worst case for the uint16 windows
    got = fk.accumulate(blocks.reshape(-1), int(ps[-1]), ps, luts.reshape(-1), m)
    np.testing.assert_array_equal(got, rf.accumulate_ref(blocks, luts, ps))


def test_window_variants_agree_with_the_python_twin():
    """The intrinsic on this CPU, its SSSE3/portable code generation and the NUMBA_DISABLE_JIT twin:
    sums stored (first window), then added (second window), and the per-block maxima."""
    from numba import njit

    rng = np.random.default_rng(3)
    S, nblk = 9, 3
    blocks = rng.integers(0, 256, size=nblk * S * 32, dtype=np.uint8)
    luts = rng.integers(0, 256, size=2 * S * 32, dtype=np.uint8)
    lbases = np.array([0, S * 32, 0, 0], np.int64)
    ref_sums = rf.accumulate_ref(blocks.reshape(nblk, S, 32), luts.reshape(2, S, 32), np.array([0, S]))[:, 0]
    ref_sums = ref_sums.astype(np.int32)

    def twice(win, out, mx):
        win(blocks, 0, S * 32, nblk, luts, lbases, S, out, 0, 32 * nblk, 1, mx, 0, nblk)
        win(blocks, 0, S * 32, nblk, luts, lbases, S, out, 0, 32 * nblk, 0, mx, 0, nblk)

    expect, emx = np.full(2 * 32 * nblk, 7, np.int32), np.zeros(2 * nblk, np.int32)
    twice(fk_isa._py_window(2), expect, emx)
    np.testing.assert_array_equal(expect.reshape(2, -1), 2 * ref_sums)
    np.testing.assert_array_equal(emx.reshape(2, nblk), (2 * ref_sums).reshape(2, nblk, 32).max(axis=2))
    for isa in ("avx2", "ssse3", "generic"):
        if isa == "avx2" and fk.ISA != "avx2":
            continue
        win = fk_isa._make_window(2, isa=isa)

        @njit
        def run(out, mx):
            win(blocks, 0, S * 32, nblk, luts, lbases, S, out, 0, 32 * nblk, 1, mx, 0, nblk)
            win(blocks, 0, S * 32, nblk, luts, lbases, S, out, 0, 32 * nblk, 0, mx, 0, nblk)

        out, mx = np.full_like(expect, 7), np.zeros_like(emx)
        run(out, mx)
        np.testing.assert_array_equal(out, expect, err_msg=isa)
        np.testing.assert_array_equal(mx, emx, err_msg=isa)


@pytest.mark.parametrize("k", [1, 64, 130])
def test_popcount_bit_exact(k):
    rng = np.random.default_rng(k)
    bits = rng.integers(0, 2, size=(40, k), dtype=np.uint8)
    codes = np.concatenate([pack_bits(bits, 1), np.zeros((40, 8), np.uint8)], axis=1)
    words = rf.sign_words(codes, 0, k)
    np.testing.assert_array_equal(
        unpack_bits(np.ascontiguousarray(words.view(np.uint8))[:, : (k + 7) // 8], 1, k), bits
    )
    q = rng.standard_normal((3, k)).astype(np.float32)
    qw, lo, delta, elo, ehi = rf.bitplane_query(q, 6)
    acc, ones = fk.popcount_dot(words, qw)
    acc_r, ones_r = rf.popcount_ref(words, qw)
    np.testing.assert_array_equal(acc, acc_r)
    np.testing.assert_array_equal(ones, ones_r)
    # the quantized dot product is within its stated bounds of the exact one
    exact = q.astype(np.float64) @ bits.T.astype(np.float64)
    approx = lo[:, None] * ones[None, :] + delta[:, None] * acc
    assert np.all(exact - approx >= elo[:, None] - 1e-9) and np.all(exact - approx <= ehi[:, None] + 1e-9)


# ---------------------------------------------------------------------------------------------
# paths against the float path
# ---------------------------------------------------------------------------------------------
def _float_topk(qz, q, codes, lists, cterm, k, metric, allow=None, probe=None):
    s = qz.score(q, codes, centre=np.zeros(qz.dim, np.float32)) + cterm[:, lists + 1]
    if metric == "l2sq":
        s = 2 * s - qz.squared_norms(codes)[None, :] - np.einsum("ij,ij->i", q, q)[:, None]
    if allow is not None:
        s[:, ~allow] = -np.inf
    if probe is not None:
        ptr, pl = probe
        for i in range(q.shape[0]):
            s[i, ~np.isin(lists, pl[ptr[i] : ptr[i + 1]])] = -np.inf
    return s, ref.topk(np.ascontiguousarray(s, np.float32), k)


def _check_same_topk(full, got_s, got_r, k):
    """Same ranking as the float path: every returned row is a true top-k row up to float ties."""
    want_r, want_s = ref.topk(np.ascontiguousarray(full, np.float32), k)
    tol = 1e-5 * max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(want_s), want_s, 0)))))
    np.testing.assert_allclose(got_s, want_s, rtol=0, atol=tol)
    for i in range(full.shape[0]):
        ok = got_r[i] >= 0
        np.testing.assert_allclose(full[i, got_r[i][ok]], got_s[i][ok], rtol=0, atol=tol)
        assert ok.sum() == (want_r[i] >= 0).sum()


@pytest.fixture(scope="module")
def sample(wordnet):
    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:12], dtype=np.float32)
    return x, q


QUANTIZERS = ["turbo-4", "turbo-3", "turbo-2", "turbo-1", "turbo-prod-3", "turbo-2.5", "turbo-pca-1", "qjl"]


@pytest.mark.parametrize("name", QUANTIZERS)
def test_paths_give_the_float_topk(sample, name):
    x, q = sample
    qz = vqdb.make_quantizer(name, x.shape[1]).fit(x)
    codes = qz.encode(x)
    sc = scanner.FastScanner(qz)
    lay = sc.layout(codes)
    cterm = (q @ qz.centre_)[:, None].astype(np.float32)
    lists = np.full(x.shape[0], -1)
    paths = ["fastscan", "blas"] + (["popcount"] if sc.one_bit else [])
    for metric in ("ip", "l2sq"):
        prep = sc.prepare(q, metric=metric, cterm=cterm)
        full, _ = _float_topk(qz, q, codes, lists, cterm, 10, metric)
        for path in paths:
            s, r = sc.topk(lay, prep, 10, path=path)
            _check_same_topk(full, s, r, 10)


def test_filters_ivf_lists_and_small_segments(sample):
    x, q = sample
    rng = np.random.default_rng(0)
    qz = vqdb.make_quantizer("turbo-4", x.shape[1]).fit(x)
    lists = np.sort(rng.integers(-1, 20, size=x.shape[0]))
    codes = qz.encode(x)
    cterm = rng.standard_normal((q.shape[0], 21)).astype(np.float32)
    allow = rng.random(x.shape[0]) < 0.3
    order = np.argsort(-rng.random((q.shape[0], 20)), axis=1)
    probe = scanner.probe_csr(order, 3)
    sc = scanner.FastScanner(qz)
    prep = sc.prepare(q, cterm=cterm)
    for kw in ({"allow": allow}, {"probe": probe}, {"allow": allow, "probe": probe}):
        full, _ = _float_topk(qz, q, codes, lists, cterm, 7, "ip", kw.get("allow"), kw.get("probe"))
        s, r = sc.segment_topk(codes, lists, prep, 7, **kw)
        _check_same_topk(full, s, r, 7)
        s2, r2 = sc._small_topk(codes, lists, prep, 7, kw.get("allow"), kw.get("probe"))
        _check_same_topk(full, s2, r2, 7)


@pytest.mark.parametrize(
    "order,qblock,qgroup",
    [("block", 1, 4), ("block", 3, 2), ("block", 32, 4), ("block", 32, 3), ("query", 32, 4), ("list", 32, 4)],
)
def test_ivf_work_orders_give_the_float_topk(sample, order, qblock, qgroup):
    x, q = sample
    rng = np.random.default_rng(1)
    qz = vqdb.make_quantizer("turbo-4", x.shape[1]).fit(x)
    lists = np.sort(rng.integers(-1, 12, size=x.shape[0]))
    codes = qz.encode(x)
    qq = np.concatenate([q, q[::-1] + 0.01 * rng.standard_normal(q.shape).astype(np.float32)])
    cterm = rng.standard_normal((qq.shape[0], 13)).astype(np.float32)
    probe = scanner.probe_csr(np.argsort(-rng.random((qq.shape[0], 12)), axis=1), 5)
    config = scanner.ScanConfig(
        ivf_order=order, ivf_qblock=qblock, ivf_min_blocks=1, ivf_qgroup=qgroup, chunk_blocks=2
    )  # chunk_blocks=2: several chunks per list
    sc = scanner.FastScanner(qz, config=config)
    for metric in ("ip", "l2sq"):
        prep = sc.prepare(qq, metric=metric, cterm=cterm)
        full, _ = _float_topk(qz, qq, codes, lists, cterm, 7, metric, probe=probe)
        s, r = sc.segment_topk(codes, lists, prep, 7, probe=probe)
        _check_same_topk(full, s, r, 7)


def test_scan_config_rejects_unknown_orders_and_bad_sizes():
    from vqdb.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="ivf_order"):
        scanner.ScanConfig(ivf_order="diagonal")
    with pytest.raises(InvalidInputError, match="chunk_blocks"):
        scanner.ScanConfig(chunk_blocks=0)
    with pytest.raises(InvalidInputError, match="ivf_qgroup"):
        scanner.ScanConfig(ivf_qgroup=5)
    assert scanner.FastScanner(vqdb.make_quantizer("turbo-2", 64)).config == scanner.DEFAULT_CONFIG


def test_block_items_cover_each_probed_chunk_once():
    from vqdb.kernels import fastscan

    rng = np.random.default_rng(2)
    nl, m = 9, 11
    sizes = rng.integers(1, 6, size=nl)  # blocks per list
    b1 = np.cumsum(sizes).astype(np.int64)
    b0 = b1 - sizes
    list_pos = np.full(nl + 2, -1, np.int64)
    list_pos[np.arange(nl) + 1] = np.arange(nl)  # list 8 absent below: drop it from the layout
    list_pos[nl] = -1
    ptr, pl = scanner.probe_csr(np.argsort(-rng.random((m, nl)), axis=1), 4)
    it = fastscan.ivf_items_by_block(ptr, pl, 0, m, list_pos, b0, b1, 2, 3, 2)
    ib0, ib1, iq, ipair, q_ptr, task_ptr = it
    got = sorted(
        (int(q), int(c)) for i in range(ib0.size) for q in iq[i] if q >= 0 for c in range(ib0[i], ib1[i])
    )
    want = sorted(
        (q, c)
        for q in range(m)
        for lst in pl[ptr[q] : ptr[q + 1]]
        if 0 <= lst < nl - 1
        for c in range(b0[lst], b1[lst])
    )
    assert got == want
    assert task_ptr[0] == 0 and task_ptr[-1] == ib0.size and np.all(np.diff(task_ptr) >= 0)
    for t in range(task_ptr.size - 1):  # a query's items stay inside one task
        qs = set(iq[task_ptr[t] : task_ptr[t + 1]].ravel()) - {-1}
        assert qs <= set(range(3 * t, 3 * t + 3))
    assert np.all(ipair[iq >= 0] == iq[iq >= 0]) and np.all(q_ptr == np.arange(m + 1))


@pytest.mark.parametrize("name", ["turbo-4", "turbo-pca-1"])
def test_rescore_four_equals_rescore_one_bit_for_bit(sample, name):
    from vqdb.kernels import fastscan

    x, q = sample
    rng = np.random.default_rng(3)
    qz = vqdb.make_quantizer(name, x.shape[1]).fit(x)
    lists = np.sort(rng.integers(-1, 5, size=x.shape[0]))
    sc = scanner.FastScanner(qz)
    lay = sc.layout(qz.encode(x), lists)
    cterm = rng.standard_normal((q.shape[0], 6)).astype(np.float32)
    for metric in ("ip", "l2sq"):
        prep = sc.prepare(q, metric=metric, cterm=cterm)
        beta = sc._beta(lay, prep, None)
        pos = rng.permutation(lay.pos_of)[:64].astype(np.int64)
        args = (
            lay.rows,
            sc.part_steps,
            prep.fluts,
            lay.factors,
            beta,
            prep.alpha,
            prep.qconst,
            prep.cterm,
            lay.block_list,
        )
        for i in (0, q.shape[0] - 1):
            one = np.array([fastscan._rescore_one(*args, i, r) for r in pos], dtype=np.float32)
            four = np.empty(pos.size, dtype=np.float32)
            for c in range(0, pos.size, 4):
                fastscan._rescore_four(*args, i, pos, c, four)
            np.testing.assert_array_equal(four, one)


def test_probe_csr_extends_until_need_is_met():
    order = np.array([[2, 0, 1, 3], [3, 2, 1, 0]])
    rows = np.array([5, 0, 1, 2])
    ptr, lists = scanner.probe_csr(order, 1, rows, need=4)
    assert lists[ptr[0] : ptr[1]].tolist() == [-1, 2, 0]  # 1 row, then 1 + 5 after doubling
    assert lists[ptr[1] : ptr[2]].tolist() == [-1, 3, 2, 1, 0]  # 2, 3, 3, then all
    ptr, lists = scanner.probe_csr(order, 2)
    assert lists.tolist() == [-1, 2, 0, -1, 3, 2]


def test_massive_ties_keep_the_exact_topk(sample):
    x, q = sample
    x = np.repeat(x[:3], 1000, axis=0)  # 1000 identical copies of each vector
    qz = vqdb.make_quantizer("turbo-2", x.shape[1]).fit(x)
    codes = qz.encode(x)
    sc = scanner.FastScanner(qz)
    cterm = (q @ qz.centre_)[:, None].astype(np.float32)
    prep = sc.prepare(q[:3], cterm=cterm[:3])
    s, r = sc.topk(sc.layout(codes), prep, 50, path="fastscan")
    full, _ = _float_topk(qz, q[:3], codes, np.full(x.shape[0], -1), cterm[:3], 50, "ip")
    _check_same_topk(full, s, r, 50)


def test_path_choice_follows_the_persisted_thresholds(sample, monkeypatch):
    x, _ = sample
    sc = scanner.FastScanner(vqdb.make_quantizer("turbo-4", x.shape[1]))
    one = scanner.FastScanner(vqdb.make_quantizer("turbo-1", x.shape[1]))
    monkeypatch.setattr(scanner, "_COSTS", {"blas_min_queries": {"4": 64}, "popcount_min_queries": 8})
    assert sc.choose(1, 100_000) == "fastscan"
    assert sc.choose(64, 100_000) == "blas"
    assert sc.choose(64, 100_000, ivf=True) == "fastscan"
    assert one.choose(1, 100_000) == "fastscan" and one.choose(8, 100_000) == "popcount"
    monkeypatch.setattr(scanner, "_COSTS", None)
    assert set(scanner.costs()) >= {"blas_min_queries", "popcount_min_queries"}


# ---------------------------------------------------------------------------------------------
# through the index: the fast paths return what the float path returns
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,ivf", [("cos", False), ("l2sq", False), ("ip", 16)])
def test_index_results_equal_the_float_path(wordnet, monkeypatch, metric, ivf):
    x = np.ascontiguousarray(wordnet.base[:4000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:20], dtype=np.float32)
    index = vqdb.Index(x.shape[1], metric=metric, quantizer="turbo-4", ivf=ivf)
    index.add(x, metadata=[{"even": i % 2 == 0} for i in range(x.shape[0])])
    index.delete(np.arange(0, 4000, 7))
    runs = {}
    for fast in (True, False):
        monkeypatch.setattr(scanner, "enabled", lambda fast=fast: fast)
        runs[fast] = [index.search(q, 10, nprobe=3), index.search(q, 10, filter={"even": True}, nprobe=3)]
    for a, b in zip(runs[True], runs[False]):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
        same = (a.ids == b.ids).mean()
        assert same >= 0.99, same  # only exact float ties may swap


def test_ivf_ties_respect_the_probed_lists(sample):
    x, q = sample
    x = np.repeat(x[:4], 500, axis=0)
    lists = np.repeat(np.arange(4), 500)
    qz = vqdb.make_quantizer("turbo-2", x.shape[1]).fit(x)
    codes = qz.encode(x)
    sc = scanner.FastScanner(qz)
    cterm = np.zeros((3, 5), np.float32)
    prep = sc.prepare(q[:3], cterm=cterm)
    probe = scanner.probe_csr(np.tile(np.arange(4), (3, 1)), 2)
    s, r = sc.segment_topk(codes, lists, prep, 20, probe=probe)
    full, _ = _float_topk(qz, q[:3], codes, lists, cterm, 20, "ip", probe=probe)
    _check_same_topk(full, s, r, 20)
    assert np.isin(lists[r], [0, 1]).all()


def test_probe_order_is_a_sorted_prefix():
    from vqdb.index._scan import probe_order

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(50, 40)).astype(np.float32)  # many ties
    full = np.argsort(-scores, axis=1, kind="stable")
    for nprobe in (1, 7, 39, 40, 60):
        got = probe_order(scores, nprobe)
        want = full[:, : min(nprobe, 40)]
        # the same scores in order (tied lists in any order, ties straddling the cut may pick other lists)
        np.testing.assert_array_equal(np.take_along_axis(scores, got, 1), np.take_along_axis(scores, want, 1))
        inside = np.take_along_axis(scores, want, 1) > np.take_along_axis(scores, want, 1)[:, -1:]
        for g, w, i in zip(got, want, inside):
            assert set(g[i]) == set(w[i]) and len(set(g)) == len(g)


def test_rerank_searches_use_a_statistical_margin(wordnet, monkeypatch):
    """With an exact re-rank the scan only proposes candidates: a 4-sigma margin instead of the rigorous one
    (narrower bounds), and the same results up to rare swaps at the candidate cut."""
    from vqdb.index import _plan

    x = np.ascontiguousarray(wordnet.base[:4000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:30], dtype=np.float32)
    sc = scanner.FastScanner(vqdb.make_quantizer("turbo-4", x.shape[1]).fit(x))
    exact, loose = sc.prepare(q), sc.prepare(q, margin=_plan.RERANK_MARGIN)
    assert np.all(loose.err <= exact.err) and np.mean(loose.err) < 0.5 * np.mean(exact.err)
    index = vqdb.Index(x.shape[1], metric="ip", quantizer="turbo-4", ivf=16, store_vectors=True)
    index.add(x)
    got = index.search(q, 10, nprobe=4, rerank=4)
    monkeypatch.setattr(_plan, "RERANK_MARGIN", None)
    want = index.search(q, 10, nprobe=4, rerank=4)
    assert (got.ids == want.ids).mean() >= 0.98


def test_threaded_rerank_gives_the_same_scores(wordnet, monkeypatch):
    from vqdb.index import _scan

    x = np.ascontiguousarray(wordnet.base[:2000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:40], dtype=np.float32)
    index = vqdb.Index(x.shape[1], metric="l2sq", quantizer="turbo-4", ivf=8, store_vectors=True)
    index.add(x)
    monkeypatch.setattr(_scan, "_RERANK_FLOATS", 3 * 40 * x.shape[1])  # 3 queries per step: 14 steps
    runs = []
    for n in (1, 2):
        monkeypatch.setattr(_scan, "_rerank_threads", lambda m, step, n=n: n)
        runs.append(index.search(q, 10, nprobe=3, rerank=4))
    np.testing.assert_array_equal(runs[0].ids, runs[1].ids)
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)


@pytest.mark.parametrize("name", ["turbo-4", "turbo-1", "turbo-pca-1"])
@pytest.mark.parametrize("k", [1, 100, 1000])
def test_every_k_gives_the_float_topk(sample, name, k):
    """k from 1 to 1,000 (beyond the old candidate slices), flat and IVF, one query and a batch."""
    x, q = sample
    rng = np.random.default_rng(k)
    qz = vqdb.make_quantizer(name, x.shape[1]).fit(x)
    codes = qz.encode(x)
    lists = np.sort(rng.integers(-1, 6, size=x.shape[0]))
    cterm = rng.standard_normal((q.shape[0], 7)).astype(np.float32)
    sc = scanner.FastScanner(qz)
    probe = scanner.probe_csr(np.argsort(-rng.random((q.shape[0], 6)), axis=1), 3)
    for kw in ({}, {"probe": probe}):
        full, _ = _float_topk(qz, q, codes, lists, cterm, k, "ip", probe=kw.get("probe"))
        s, r = sc.segment_topk(codes, lists, sc.prepare(q, cterm=cterm), k, **kw)
        _check_same_topk(full, s, r, k)
        one = {"probe": (kw["probe"][0][:2], kw["probe"][1][: kw["probe"][0][1]])} if kw else {}
        s1, r1 = sc.segment_topk(codes, lists, sc.prepare(q[:1], cterm=cterm[:1]), k, **one)
        _check_same_topk(full[:1], s1, r1, k)


@pytest.mark.parametrize("S", [3, 300])
def test_block_sums_are_the_exact_lut_sums(S):
    """The numba-callable block scorer (graph traversals) against the oracle, past one 256-step window."""
    rng = np.random.default_rng(S)
    nblk = 3
    blocks = rng.integers(0, 256, size=(nblk, S, 32), dtype=np.uint8)
    luts = rng.integers(0, 256, size=(2, S, 32), dtype=np.uint8)
    want = rf.accumulate_ref(blocks, luts, np.array([0, S]))[1, 0].astype(np.int32)
    sums, mx = np.zeros(32 * nblk, np.int32), np.zeros(nblk, np.int32)
    lbases = np.array([S * 32], np.int64)  # the second query's LUT
    fk.block_sums(blocks.reshape(-1), 0, nblk, S, luts.reshape(-1), lbases, sums, mx)
    np.testing.assert_array_equal(sums, want)
    np.testing.assert_array_equal(mx, want.reshape(nblk, 32).max(axis=1))
    assert lbases[0] == S * 32


@pytest.mark.parametrize("name", ["turbo-4", "turbo-1", "turbo-2.5"])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_a_small_pending_buffer_gives_the_same_results(sample, name, k, monkeypatch):
    """A pending buffer of 64 fills again and again during the scan: making room (dropping what the
    threshold has passed, re-scoring the k best bounds, or everything) must not change one score or row,
    flat or IVF, serial or parallel kernels, and the same rows as the float path."""
    x, q = sample
    rng = np.random.default_rng(7)
    qz = vqdb.make_quantizer(name, x.shape[1]).fit(x)
    codes = qz.encode(x)
    lists = np.sort(rng.integers(-1, 4, size=x.shape[0]))
    cterm = rng.standard_normal((q.shape[0], 5)).astype(np.float32)
    probe = scanner.probe_csr(np.argsort(-rng.random((q.shape[0], 4)), axis=1), 2)
    small = scanner.FastScanner(qz, config=scanner.ScanConfig(pending_slots=64))
    wide = scanner.FastScanner(qz)
    for kw in ({}, {"probe": probe}):
        full, _ = _float_topk(qz, q, codes, lists, cterm, k, "ip", probe=kw.get("probe"))
        s, r = small.segment_topk(codes, lists, small.prepare(q, cterm=cterm), k, path="fastscan", **kw)
        s2, r2 = wide.segment_topk(codes, lists, wide.prepare(q, cterm=cterm), k, path="fastscan", **kw)
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(r, r2)
        _check_same_topk(full, s, r, k)
        with (
            monkeypatch.context() as mp
        ):  # the parallel build (this batch is small enough for the serial one)
            mp.setattr(scanner, "PAR_MIN_NS", 0.0)
            s3, r3 = small.segment_topk(codes, lists, small.prepare(q, cterm=cterm), k, path="fastscan", **kw)
        np.testing.assert_array_equal(s3, s)
        np.testing.assert_array_equal(r3, r)
    with pytest.raises(vqdb.errors.InvalidInputError):
        scanner.ScanConfig(pending_slots=32)
