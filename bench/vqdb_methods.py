"""vqdb's quantizers as benchmark ``Method`` records: fit (the base mean = centring) + encode, then a flat
brute-force scan with ``q.score`` in chunks and a running top-k."""

from __future__ import annotations

import numpy as np

from .common import Stopwatch, topk_chunked
from .peers import Built, Method

TURBO_BITS_FULL = (1, 2, 2.5, 3, 3.5, 4)
TURBO_BITS_QUICK = (1, 2, 4)


def _build(factory):
    def build(base: np.ndarray, metric: str) -> Built:
        with Stopwatch() as t_setup:  # rotation + codebooks: one-time, independent of n; reported apart
            q = factory()
            # numba compiles (or loads from its cache) on first use: keep that out of the timed encode
            warm = q.encode(base[:64])
            q.score(base[:2], warm)
        with Stopwatch() as t_fit:
            q.fit(base)
        with Stopwatch() as t_enc:
            codes = q.encode(base)
        return Built((q, codes), t_fit.s, t_enc.s, t_setup.s, float(q.code_size))

    return build


def scan(q, codes: np.ndarray, queries: np.ndarray, k: int, metric: str, chunk: int = 16384) -> np.ndarray:
    """Exact top-k over the estimated scores of every code: ip = <q, x>; l2sq = 2<q, x> - ||x||^2."""
    prepared = q.prepare(queries)
    if metric == "l2sq":
        sq = q.squared_norms(codes)
        fn = lambda s, e: 2.0 * q.score(prepared, codes[s:e]) - sq[None, s:e]  # noqa: E731
    else:
        fn = lambda s, e: q.score(prepared, codes[s:e])  # noqa: E731
    return topk_chunked(fn, codes.shape[0], queries.shape[0], k, chunk)


def _search(handle, queries: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    q, codes = handle
    return scan(q, codes, queries, k, metric)


def _method(name: str, family: str, factory, params: dict) -> Method:
    """A config the quantizer refuses fails in ``build`` and is reported as skipped, not fatal."""
    return Method(name, family, "vqdb", float("nan"), _build(factory), _search, "fit+encode", params)


def turbo_configs(d: int, quick: bool) -> list[tuple[str, float, str]]:
    """(variant, bits, rotation) triples.

    Full: ``scaled`` at 1, 2, 2.5, 3, 3.5, 4 bits with the dense (data-oblivious) rotation and with the
    fitted ``pca`` basis; ``mse`` at 1-4 bits and ``prod`` at 2-4 bits (integer bits only; at 1 bit it
    is a pure QJL sign code, run as ``qjl``) with the dense rotation; ``scaled`` at 4 bits with the
    Hadamard rotation (it pads d to a power of two, so at d = 384/768/784 its codes are larger at the
    same bits: one point shows that cost). Quick: ``scaled`` dense and pca at 1, 2, 4 bits, ``mse`` at 4.
    """
    if quick:
        return [("scaled", b, r) for r in ("dense", "pca") for b in TURBO_BITS_QUICK] + [("mse", 4, "dense")]
    out = [("scaled", b, r) for r in ("dense", "pca") for b in TURBO_BITS_FULL]
    out += [("mse", b, "dense") for b in (1, 2, 3, 4)]
    out += [("prod", b, "dense") for b in (2, 3, 4)]
    out += [("scaled", 4, "hadamard")]
    return out


def vqdb_methods(d: int, quick: bool = False) -> list[Method]:
    """TurboQuantizer variants, QJLQuantizer and PolarQuantizer; bytes per vector are known once built."""
    import vqdb

    out = []
    for bits in TURBO_BITS_QUICK if quick else TURBO_BITS_FULL:  # the presets a user gets by name
        out.append(
            _method(
                f"vqdb-default-turbo-{bits:g}",
                "vqdb-turbo-default",
                lambda b=bits: vqdb.make_quantizer(f"turbo-{b:g}", d, seed=0),
                {"preset": f"turbo-{bits:g}", "centred_query": True, "rotation": "fht"},
            )
        )
    for variant, bits, rotation in turbo_configs(d, quick):
        bits_arg = int(bits) if float(bits).is_integer() else float(bits)
        out.append(
            _method(
                f"turbo-{variant}-{bits:g}b-{rotation}",
                f"vqdb-turbo-{variant}-{rotation}",
                lambda v=variant, b=bits_arg, r=rotation: vqdb.TurboQuantizer(
                    d, bits=b, variant=v, rotation=r, seed=0
                ),
                {"variant": variant, "bits": bits, "rotation": rotation},
            )
        )
    if not quick:
        out.append(_method("qjl", "vqdb-qjl", lambda: vqdb.QJLQuantizer(d, seed=0), {"sketch_dim": d}))
        out.append(_method("polar", "vqdb-polar", lambda: vqdb.PolarQuantizer(d, seed=0), {"levels": 4}))
    return out
