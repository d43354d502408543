"""Fused encode kernels (``encode_turbo_block``, ``hadamard_rotate``) and the tiled TurboQuant encoder:
every backend bit for bit against the NumPy reference, odd dims, batches of 0/1/7, several tiles."""

from __future__ import annotations

import numpy as np
import pytest
from reference.oracles import pack_slow, unpack_slow

from vqdb import TurboQuantizer
from vqdb.kernels import reference as ref
from vqdb.kernels import use_backend
from vqdb.quantizers import _common as cm
from vqdb.quantizers._codebooks import lloyd_max
from vqdb.quantizers._rotation import FhtKacRotation, HadamardRotation


def _table(d, widths):
    """Slices of ``d`` coordinates: (table, boundaries, values) with the Lloyd–Max codebooks."""
    rows, bnds, vals, start, off = [], [], [], 0, 0
    for k, bits in widths:
        c, b = lloyd_max(bits, d)
        rows.append([start, start + k, bits, off])
        bnds.append(np.pad(b, (0, 255 - b.size), constant_values=np.inf))
        vals.append(np.pad(c, (0, 256 - c.size)).astype(np.float32))
        start, off = start + k, off + (k * bits + 7) // 8
    return (
        np.array(rows, np.int64).reshape(-1, 4),
        np.array(bnds).reshape(-1, 255),
        np.array(vals, np.float32).reshape(-1, 256),
        off,
    )


@pytest.mark.parametrize(
    "widths",
    [
        [(97, 1)],
        [(97, 3)],
        [(64, 4)],
        [(5, 8), (9, 7), (11, 6), (16, 5), (20, 4), (9, 3), (3, 2)],
        [(40, 2), (20, 1)],
    ],
)
@pytest.mark.parametrize("n", [0, 1, 7, 50])
def test_encode_turbo_block_bit_exact(ops, widths, n):
    d = sum(k for k, _ in widths) + 3  # 3 trailing coordinates without bits
    rng = np.random.default_rng(n + d)
    r = rng.standard_normal((n, d)).astype(np.float32)
    if n > 2:
        r[1] = 0.0  # zero residual: factor 0, indices of u = 0
    y = np.ascontiguousarray(r[:, : d - 3] * 1.01, dtype=np.float32)
    table, bnds, vals, nbytes = _table(d, widths)
    if n > 3:  # values exactly on a boundary (after the division by the norm) go up
        nrm = np.sqrt(np.cumsum(r[3].astype(np.float64) ** 2)[-1])
        on = bnds[0, : min(4, (1 << int(table[0, 2])) - 1)]
        y[3, : on.size] = (on * nrm).astype(np.float32)
    for scaled in (True, False):
        for full in (True, False):
            got = np.full((n, nbytes + 2), 7, np.uint8)
            want = got.copy()
            chat_got = np.full(y.shape, 5.0, np.float32)
            chat_want = chat_got.copy()
            f_got = ops.encode_turbo_block(
                y, r, table, bnds, vals, scaled, full, got, chat_got if full else None
            )
            f_want = ref.encode_turbo_block(
                y, r, table, bnds, vals, scaled, full, want, chat_want if full else None
            )
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(chat_got, chat_want)
            np.testing.assert_array_equal(f_got, f_want)
            assert f_got.dtype == np.float32 and f_got.shape == (n,)
            assert (got[:, -2:] == 7).all()  # bytes outside the slices untouched
            # the centred-query sums <c, r> and <Πc, ĉ>: bit for bit, and their plain meaning
            c = rng.standard_normal(d).astype(np.float32)
            pc = rng.standard_normal(y.shape[1]).astype(np.float32)
            t_got, t_want = np.full((n, 2), 9.0), np.full((n, 2), 9.0)
            ops.encode_turbo_block(y, r, table, bnds, vals, scaled, full, got, None, c, pc, t_got)
            ref.encode_turbo_block(y, r, table, bnds, vals, scaled, full, want, chat_want, c, pc, t_want)
            np.testing.assert_array_equal(t_got, t_want)
            if n and full:
                np.testing.assert_allclose(t_want[:, 0], r.astype(np.float64) @ c, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(
                    t_want[:, 1], chat_want.astype(np.float64) @ pc, rtol=1e-12, atol=1e-12
                )
    # the reference's indices are the plain float64 rule, packed LSB first
    if n:
        codes = np.zeros((n, nbytes), np.uint8)
        ref.encode_turbo_block(y, r, table, bnds, vals, False, True, codes)
        nrm = np.sqrt(np.cumsum(r.astype(np.float64) ** 2, axis=1)[:, -1])
        u = (y / np.where(nrm > 0, nrm, 1.0)[:, None]).astype(np.float32).astype(np.float64)
        start, stop, bits, off = table[0]
        idx = np.searchsorted(bnds[0, : (1 << bits) - 1], u[:, start:stop], side="right").astype(np.uint8)
        np.testing.assert_array_equal(
            codes[:, off : off + (int(stop - start) * int(bits) + 7) // 8], pack_slow(idx, int(bits))
        )


@pytest.mark.parametrize("d", [3, 97, 128, 129])
@pytest.mark.parametrize("n", [0, 1, 7])
def test_hadamard_rotate_bit_exact(ops, d, n):
    rot = HadamardRotation(d, np.random.default_rng(d))
    x = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    got = ops.hadamard_rotate(x, rot.signs)
    np.testing.assert_array_equal(got, ref.hadamard_rotate(x, rot.signs))
    np.testing.assert_array_equal(got, rot.forward(x))
    assert got.shape == (n, rot.p) and got.dtype == np.float32


@pytest.mark.parametrize("d", [2, 3, 97, 128, 129, 384, 784])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 70])  # one row at a time (< 8), 64-row groups
def test_fht_kac_rotate_bit_exact_and_orthogonal(ops, d, n):
    rot = FhtKacRotation(d, np.random.default_rng(d))
    x = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    got = ops.fht_kac_rotate(x, rot.signs)
    np.testing.assert_array_equal(got, ref.fht_kac_rotate(x, rot.signs))
    np.testing.assert_array_equal(got, rot.forward(x))
    assert got.shape == (n, d) and got.dtype == np.float32
    m = rot.matrix().astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(d), atol=2e-6)  # an exact rotation, up to float32
    np.testing.assert_allclose(rot.inverse(got), x, atol=1e-5)


CONFIGS = [
    dict(bits=4),
    dict(bits=1),
    dict(bits=2, variant="mse"),
    dict(bits=3.5),
    dict(bits=2.5, rotation="hadamard"),
    dict(bits=4, rotation="hadamard"),
    dict(bits=2, rotation="pca"),
    dict(bits=4, rotation="pca"),
    dict(bits=8),
    dict(bits=3, variant="prod"),
    dict(bits=1, variant="prod"),
    dict(bits=2, variant="prod", rotation="hadamard"),
    dict(bits=1, rotation="fht", centred_query=True),
    dict(bits=4, rotation="fht", centred_query=True),
    dict(bits=2.5, rotation="fht", centred_query=True),
    dict(bits=2, centred_query=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("d", [97, 129])
def test_tiled_encode_matches_reference_backend(cfg, d, monkeypatch):
    """Several tiles over several threads (numba) vs one thread (reference): same bytes; the index bytes
    also equal the untiled general path (side floats to float32 rounding: sums are ordered differently)."""
    monkeypatch.setattr(cm, "ENCODE_TILE", 16)
    rng = np.random.default_rng(d)
    x = (rng.standard_normal((61, d)) * np.linspace(3, 0.2, d) + 0.4).astype(np.float32)
    q = TurboQuantizer(d, seed=2, **cfg).fit(x)
    centre = rng.standard_normal(d).astype(np.float32)
    outs = {}
    for backend in ("reference", "numba"):
        with use_backend(backend):
            outs[backend] = [q.encode(x[:n]) for n in (0, 1, 7, 61)] + [q.encode(x, centre=centre)]
    for a, b in zip(outs["reference"], outs["numba"]):
        np.testing.assert_array_equal(a, b)
    # vs the untiled general path on well-conditioned data (n > d): sgemm rounds differently with the
    # tile shape, so an index may flip where a coordinate sits on a boundary (rare), and sums are ordered
    # differently, so side floats agree to float32 rounding; ||x||² is computed exactly as before
    x = (rng.standard_normal((300, d)) * np.linspace(3, 0.2, d) + 0.4).astype(np.float32)
    q.fit(x)
    with use_backend("numba"):
        tiled = q.encode(x)
    general = q._encode_general(x, q.centre_)
    ns = 4 * q._n_side
    same = (tiled[:, :-ns] == general[:, :-ns]).all(axis=1)
    assert same.mean() >= 0.98
    side = lambda c: np.ascontiguousarray(c[same, -ns:]).view("<f4")  # noqa: E731
    # factor: float32 rounding of differently ordered sums; β = <c, r> - f <Πc, ĉ> cancels, so a few ulps more
    np.testing.assert_allclose(side(tiled), side(general), rtol=2e-6, atol=1e-5)
    np.testing.assert_array_equal(tiled[:, -4:], general[:, -4:])


def test_encode_scalar_and_decode_serial_and_parallel_paths(ops):
    """encode_scalar / decode_values run serially on small batches (tile callers) and in parallel on large ones."""
    c, b = lloyd_max(3, 33)
    x = (np.random.default_rng(4).standard_normal((2100, 33)) / np.sqrt(33)).astype(np.float32)
    want = ref.encode_scalar(x, b, 3)
    np.testing.assert_array_equal(ops.encode_scalar(x, b, 3), want)
    np.testing.assert_array_equal(ops.encode_scalar(x[:7], b, 3), want[:7])
    vals = c.astype(np.float32)
    dec = ref.decode_values(want, 0, 3, 33, vals)
    np.testing.assert_array_equal(ops.decode_values(want, 0, 3, 33, vals), dec)
    np.testing.assert_array_equal(ops.decode_values(want[:7], 0, 3, 33, vals), dec[:7])


@pytest.mark.parametrize("name", ["qjl", "polar"])
def test_qjl_polar_tiled_encode_backends_agree(name, monkeypatch):
    from vqdb.presets import make_quantizer

    monkeypatch.setattr(cm, "ENCODE_TILE", 16)
    x = np.random.default_rng(8).standard_normal((53, 97)).astype(np.float32)
    q = make_quantizer(name, 97).fit(x)
    outs = {}
    for backend in ("reference", "numba"):
        with use_backend(backend):
            outs[backend] = [q.encode(x[:n]) for n in (0, 1, 7, 53)]
    for a, b in zip(outs["reference"], outs["numba"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(120)
def test_tiled_encode_after_fork(monkeypatch):
    """The shared encode thread pool is re-created in a forked child (its threads do not survive a fork)."""
    import multiprocessing as mp

    monkeypatch.setattr(cm, "ENCODE_TILE", 16)
    x = np.random.default_rng(3).standard_normal((100, 40)).astype(np.float32)
    q = TurboQuantizer(40, 2, seed=1)
    with use_backend("numba"):
        want = q.encode(x)  # starts the pool in this process
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_encode_in_child, (q.state_dict(), x)).get(timeout=100)
    np.testing.assert_array_equal(got, want)


def _encode_in_child(state, x):
    import vqdb
    from vqdb.kernels import use_backend as ub

    cm.ENCODE_TILE = 16
    with ub("numba"):
        return vqdb.load_quantizer(state).encode(x)


def test_concurrent_encodes_and_blas_limit_restored(monkeypatch):
    """Encodes from several threads at once give the sequential bytes; the BLAS limit is restored after."""
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(cm, "ENCODE_TILE", 32)
    x = np.random.default_rng(6).standard_normal((300, 64)).astype(np.float32)
    qs = [TurboQuantizer(64, b, seed=b) for b in (1, 2, 4)] + [
        TurboQuantizer(64, 2, rotation="hadamard", seed=5)
    ]
    assert cm.can_pin_blas()

    def blas_threads():  # the libraries the encoders pin (those loaded when they first pinned: numpy's BLAS)
        return [lib.get_num_threads() for lib in cm._blas.blas_libs()]

    before = blas_threads()
    with use_backend("numba"):
        want = [q.encode(x) for q in qs]
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda q: q.encode(x), qs * 3))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, want[i % len(qs)])
    with cm.blas_one_thread():
        with cm.blas_one_thread():
            pass
        assert blas_threads() and all(t == 1 for t in blas_threads())
    assert blas_threads() == before


def test_pca_fit_same_basis_for_any_thread_count():
    import numba

    x = (np.random.default_rng(9).standard_normal((9000, 48)) * np.linspace(2, 0.1, 48)).astype(np.float32)
    states = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        prev = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            with use_backend("numba"):
                states.append(TurboQuantizer(48, 2, rotation="pca", seed=3).fit(x).state_dict()["arrays"])
        finally:
            numba.set_num_threads(prev)
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])


@pytest.mark.parametrize("d", [10, 97, 256, 384])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("centres", ["none", "one", "lists"])
def test_encode_turbo_fht_bit_exact(ops, d, bits, centres):
    """The fused rotate + encode op: codes, factor, β and ||x||² equal the reference composition bit for bit
    (n = 70: one full group of 64 lanes and a partial one); β is <c, r> - factor <Πc, ĉ> of each row's own
    centre."""
    rng = np.random.default_rng(d * 10 + bits)
    n = 70
    x = (rng.standard_normal((n, d)) + 0.3).astype(np.float32)
    rot = FhtKacRotation(d, rng)
    table, bnds, vals, size = _table(d, [(d, bits)])
    if centres == "none":
        cen = rc = lists = None
    else:
        cen = rng.standard_normal((1 if centres == "one" else 5, d)).astype(np.float32)
        rc = ref.fht_kac_rotate(cen, rot.signs)
        lists = rng.integers(0, cen.shape[0], n)
    got, want = np.zeros((n, size), np.uint8), np.zeros((n, size), np.uint8)
    args = (rot.signs, table, bnds, vals, True, True)
    f_got = ops.encode_turbo_fht(x, cen, rc, lists, *args, got, cen is not None)
    f_want = ref.encode_turbo_fht(x, cen, rc, lists, *args, want, cen is not None)
    np.testing.assert_array_equal(got, want)
    for a, b in zip(f_got, f_want):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    # the meaning: the bucket of u = rotate(x - c) / ||x - c|| (the kernel compares y with the scaled
    # boundaries instead of dividing, so a coordinate within rounding of a boundary may differ)
    oracle = _pack_ref(x, cen, lists, rot, bnds[0, : (1 << bits) - 1], bits)
    assert (unpack_slow(got, bits, d) == unpack_slow(oracle, bits, d)).mean() > 0.999
    if cen is not None:  # β from its definition, in float64 (the float32 rounding of each term aside)
        r = (x - cen[lists]).astype(np.float32).astype(np.float64)  # the float32 residual the codes see
        chat = vals[0][unpack_slow(got, bits, d)].astype(np.float64)  # the levels the codes hold
        beta = np.einsum("ij,ij->i", r, cen[lists]) - f_want[0] * np.einsum("ij,ij->i", chat, rc[lists])
        np.testing.assert_allclose(f_want[1], beta, rtol=1e-5, atol=1e-4)


def test_encode_turbo_fht_into_a_column_window(ops):
    """Codes written into columns 3..3+size of a wider array (not C-contiguous): the same bytes as into their
    own array, and the columns around them untouched."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((70, 97)) + 0.3).astype(np.float32)
    rot = FhtKacRotation(97, rng)
    table, bnds, vals, size = _table(97, [(97, 2)])
    args = (rot.signs, table, bnds, vals, True, True)
    wide = np.full((70, size + 6), 7, np.uint8)
    want = np.zeros((70, size), np.uint8)
    ops.encode_turbo_fht(x, None, None, None, *args, wide[:, 3 : 3 + size], False)
    ref.encode_turbo_fht(x, None, None, None, *args, want, False)
    np.testing.assert_array_equal(wide[:, 3 : 3 + size], want)
    assert (wide[:, :3] == 7).all() and (wide[:, 3 + size :] == 7).all()


def _pack_ref(x, cen, lists, rot, bnd, bits):
    """Packed indices of rotate(x - c) / ||x - c|| by the slow oracle packer."""
    r = x if cen is None else (x - cen[lists]).astype(np.float32)
    y = ref.fht_kac_rotate(r, rot.signs).astype(np.float64)
    nrm = np.sqrt(np.cumsum(r.astype(np.float64) ** 2, axis=1)[:, -1])
    u = (y / nrm[:, None]).astype(np.float32).astype(np.float64)
    return pack_slow(np.searchsorted(bnd, u, side="right").astype(np.uint8), bits)


def _numba_encodings(q, x, monkeypatch, tile, *, splits):
    """``q.encode`` on numba for 1 and 2 threads x each tile size of ``tile`` = (module, attribute, sizes):
    the whole batch, and the batch encoded in pieces cut at ``splits`` and stacked."""
    import numba

    module, name, sizes = tile
    outs = []
    prev = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            for size in sizes:
                monkeypatch.setattr(module, name, size)
                with use_backend("numba"):
                    outs.append(q.encode(x))
                    outs.append(np.vstack([q.encode(piece) for piece in np.split(x, splits)]))
    finally:
        numba.set_num_threads(prev)
    return outs


@pytest.mark.parametrize("preset", ["turbo-1", "turbo-2", "turbo-3", "turbo-4"])
def test_default_codes_same_for_any_batching_and_threads(preset, monkeypatch):
    """The presets' fused encode: the same bytes whatever the batch split, work-item size and thread count,
    and the same as the NumPy reference backend (whole, and in passes)."""

    from vqdb.kernels import numba_cpu
    from vqdb.presets import make_quantizer

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((333, 97)) * np.linspace(2, 0.3, 97) + 0.5).astype(np.float32)
    q = make_quantizer(preset, 97).fit(x)
    assert q._fused_fht()
    with use_backend("reference"):
        want = q.encode(x)
        monkeypatch.setattr(ref, "ENCODE_ROWS", 100)  # the reference in passes of 100 rows
        np.testing.assert_array_equal(q.encode(x), want)
    parts = (numba_cpu, "_ENCODE_PART_ROWS", (1024, 64))  # one serial call; 6 parallel work items
    for got in _numba_encodings(q, x, monkeypatch, parts, splits=(1, 65)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "preset",
    [
        "turbo-prod-3",
        "turbo-prod-4",
        "turbo-mse-2",
        "turbo-pca-2",
        "turbo-hadamard-4",
        "turbo-2.5",
        "turbo-3.5",
    ],
)
def test_other_turbo_codes_same_for_any_batching_threads_and_backend(preset, monkeypatch):
    """Every other TurboQuant configuration (the tiled path: dense rotations by the sequential row product,
    prod's QJL sketch and reconstruction too): the same bytes for one row at a time, odd splits, small tiles,
    1 and 2 threads, and on the NumPy reference backend."""

    from vqdb.presets import make_quantizer

    rng = np.random.default_rng(12)
    x = (rng.standard_normal((300, 97)) * np.linspace(2, 0.3, 97) + 0.5).astype(np.float32)
    q = make_quantizer(preset, 97).fit(x)
    with use_backend("reference"):
        want = q.encode(x)
        np.testing.assert_array_equal(np.vstack([q.encode(x[i : i + 1]) for i in range(3)]), want[:3])
    for got in _numba_encodings(
        q, x, monkeypatch, (cm, "ENCODE_TILE", (512, 40)), splits=(1, 2, 3, 4, 5, 70)
    ):
        np.testing.assert_array_equal(got, want)
