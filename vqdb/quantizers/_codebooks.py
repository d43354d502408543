"""Lloyd–Max scalar codebooks for the laws the quantizers face.

* :func:`lloyd_max` — the exact coordinate law of a uniform unit vector in R^d
  (TurboQuant, papers.md §4.2): ``(x + 1) / 2 ~ Beta((d-1)/2, (d-1)/2)`` on [-1, 1].
  Values are in *unit-vector coordinate scale* (about ``N(0, 1/d)``; NOT multiplied by sqrt(d)).
* :func:`gaussian_lloyd_max` — the unit-variance Gaussian limit (the tables of papers.md §4.4).
* :func:`angle_codebook` — PolarQuant's per-level angle laws (papers.md §3.3–3.4): level 1 uniform on
  [0, 2π); level ℓ ≥ 2 has density ∝ sin^(2^(ℓ-1) - 1)(2ψ) on [0, π/2], i.e. ``sin²ψ ~ Beta(k/2, k/2)``
  with ``k = 2^(ℓ-1)``.

Each solver alternates "boundary = midpoint of neighbouring centroids" and "centroid = conditional
mean of its cell" until no centroid moves by more than 1e-12 (relative to the law's scale). Interval
masses use ``scipy.special.betainc``/``betaincc`` (the complement on the positive half, so tail cells
keep full relative precision) and partial means are closed form for the Beta and Gaussian laws;
angle partial means use 64-point Gauss–Legendre per cell (the integrands are smooth polynomials in
sin/cos). Results are cached in memory (``functools.lru_cache``) and, best effort, on disk under
``~/.cache/vqdb/codebooks`` (read-only arrays are returned; copy before mutating).

All functions return ``(centroids, boundaries)``: float64 arrays of ``2**bits`` increasing centroids and
the ``2**bits - 1`` increasing decision boundaries between them (nearest-centroid rule; a value equal to
a boundary goes to the upper cell, like ``np.searchsorted(boundaries, v, side="right")``).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

from ..errors import InvalidInputError

_MAX_ITER = 200_000
_TOL = 1e-12
_FLOOR = 1e-9  # below this (relative) residual, stagnation means round-off, not a failure


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise InvalidInputError(f"codebook bits must be an integer in [1, 8]; got {bits!r}")
    return int(bits)


# ---------------------------------------------------------------------------------------------
# on-disk cache (best effort: any failure just recomputes)
# ---------------------------------------------------------------------------------------------
def _cache_path(name: str) -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "vqdb", "codebooks", f"v1-{name}.npz")


def _disk_load(name: str):
    try:
        with np.load(_cache_path(name)) as z:
            return z["centroids"].copy(), z["boundaries"].copy()
    except Exception:  # noqa: BLE001 - a missing/corrupt cache file just means "recompute"
        return None


def _disk_store(name: str, centroids: np.ndarray, boundaries: np.ndarray) -> None:
    path = _cache_path(name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, centroids=centroids, boundaries=boundaries)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - read-only home etc.: the in-memory cache still works
        pass


def _frozen(centroids: np.ndarray, boundaries: np.ndarray):
    centroids = np.ascontiguousarray(centroids, dtype=np.float64)
    boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
    centroids.setflags(write=False)
    boundaries.setflags(write=False)
    return centroids, boundaries


# ---------------------------------------------------------------------------------------------
# symmetric laws: solve the positive half (2**(bits-1) cells on [0, hi]) and mirror
# ---------------------------------------------------------------------------------------------
def _solve_cells(lo_edge: float, hi_edge: float, init: np.ndarray, scale: float, cell_stats, density):
    """Lloyd–Max on [lo_edge, hi_edge] with fixed outer edges.

    ``cell_stats(lo, hi) -> (mass, first_moment)`` for arrays of cell edges; ``density(x)`` the law's
    density (used by the Newton step). Starts with a few plain Lloyd iterations, then Newton steps on
    the fixed point ``c = centroid(c)`` (the Jacobian is tridiagonal), halving a step that would break
    monotonicity or increase the residual. Stops when no centroid moves by more than 1e-12·scale, or
    when below 1e-9·scale the residual stops shrinking (the round-off floor of betainc, ~2e-12).
    Returns the centroids and the interior boundaries (midpoints).
    """
    from scipy.linalg import solve_banded

    def centroid_map(c):
        inner = 0.5 * (c[:-1] + c[1:])
        lo = np.concatenate(([lo_edge], inner))
        hi = np.concatenate((inner, [hi_edge]))
        mass, mom = cell_stats(lo, hi)
        ok = mass > 0
        g = np.where(ok, mom / np.where(ok, mass, 1.0), 0.5 * (lo + hi))
        return g, lo, hi, mass

    c = np.asarray(init, dtype=np.float64).copy()
    n = c.size
    for _ in range(20):  # plain Lloyd: robust start
        c = centroid_map(c)[0]
    prev_err = np.inf
    for _ in range(_MAX_ITER):
        g, lo, hi, mass = centroid_map(c)
        resid = c - g
        if float(np.max(np.abs(resid))) < _TOL * scale:
            c = g
            break
        if n == 1:
            c = g
            continue
        # d g_i / d lo_i = f(lo)(g - lo)/P, d g_i / d hi_i = f(hi)(hi - g)/P; lo_i = (c_{i-1}+c_i)/2
        safe = np.where(mass > 0, mass, np.inf)
        # outer edges are fixed (and may be ±inf or a density singularity): only interior edges move
        d_lo = np.zeros(n)
        d_hi = np.zeros(n)
        d_lo[1:] = density(lo[1:]) * (g[1:] - lo[1:]) / safe[1:]
        d_hi[:-1] = density(hi[:-1]) * (hi[:-1] - g[:-1]) / safe[:-1]
        # Jacobian of F(c) = c - g(c): tridiagonal
        diag = 1.0 - 0.5 * (d_lo + d_hi)
        upper = -0.5 * d_hi[:-1]  # dF_i/dc_{i+1}
        lower = -0.5 * d_lo[1:]  # dF_i/dc_{i-1}
        ab = np.zeros((3, n))
        ab[0, 1:] = upper
        ab[1] = diag
        ab[2, :-1] = lower
        try:
            step = solve_banded((1, 1), ab, resid)
        except (np.linalg.LinAlgError, ValueError):
            step = resid
        if not np.all(np.isfinite(step)):
            step = resid
        base_err = float(np.max(np.abs(resid)))
        if base_err < _FLOOR * scale and base_err > 0.5 * prev_err:
            break  # at the round-off floor of the special functions: no further progress possible
        prev_err = base_err
        t = 1.0
        while t > 1e-6:
            cand = c - t * step
            if np.all(np.diff(cand) > 0) and cand[0] > lo_edge and cand[-1] < hi_edge:
                if float(np.max(np.abs(cand - centroid_map(cand)[0]))) < base_err:
                    break
            t *= 0.5
        else:
            cand = g  # fall back to a Lloyd step
        c = cand
    return c, 0.5 * (c[:-1] + c[1:])


def _mirror(pos_c: np.ndarray, pos_b: np.ndarray):
    centroids = np.concatenate((-pos_c[::-1], pos_c))
    boundaries = np.concatenate((-pos_b[::-1], [0.0], pos_b))
    return centroids, boundaries


def _gaussian_init(half: int) -> np.ndarray:
    from scipy.special import ndtri

    # Panter–Dite compander start: point density ∝ f^(1/3), i.e. quantiles of N(0, 3) on the positive half
    p = 0.5 + 0.5 * (np.arange(half) + 0.5) / half
    return math.sqrt(3.0) * ndtri(p)


# ---------------------------------------------------------------------------------------------
# public solvers
# ---------------------------------------------------------------------------------------------
@functools.cache
def gaussian_lloyd_max(bits: int):
    """Lloyd–Max codebook for N(0, 1) with ``2**bits`` levels.

    Parameters
    ----------
    bits : int in [1, 8]

    Returns
    -------
    centroids : ndarray of shape (2**bits,), float64, increasing, symmetric about 0
    boundaries : ndarray of shape (2**bits - 1,), float64, midpoints of neighbouring centroids

    Notes
    -----
    Coincides with Max (1960); for b = 1..4 the mean squared error is 0.36338, 0.11748, 0.034548,
    0.0095 (papers.md §4.4). Cached in memory and on disk (a warm process imports no scipy for it).
    """
    bits = _check_bits(bits)
    name = f"gauss-b{bits}"
    cached = _disk_load(name)
    if cached is not None and cached[0].shape == (2**bits,) and cached[1].shape == (2**bits - 1,):
        return _frozen(*cached)
    from scipy.special import ndtr

    half = 2 ** (bits - 1)
    inv_sqrt_2pi = 1.0 / math.sqrt(2.0 * math.pi)

    def stats(lo, hi):
        mass = ndtr(-lo) - ndtr(-hi)  # upper-tail form keeps tail cells precise
        mom = inv_sqrt_2pi * (np.exp(-0.5 * lo * lo) - np.exp(-0.5 * hi * hi))
        return mass, mom

    def density(x):
        return inv_sqrt_2pi * np.exp(-0.5 * x * x)

    pos_c, pos_b = _solve_cells(0.0, np.inf, _gaussian_init(half), 1.0, stats, density)
    centroids, boundaries = _mirror(pos_c, pos_b)
    _disk_store(name, centroids, boundaries)
    return _frozen(centroids, boundaries)


@functools.cache
def lloyd_max(bits: int, dim: int):
    """Lloyd–Max codebook for one coordinate of a uniform unit vector in R^dim.

    The law is ``f(x) = Γ(d/2) / (√π Γ((d-1)/2)) (1 - x²)^((d-3)/2)`` on [-1, 1], i.e.
    ``(x + 1)/2 ~ Beta((d-1)/2, (d-1)/2)`` (TurboQuant Lemma 1).

    Parameters
    ----------
    bits : int in [1, 8]
        ``2**bits`` levels.
    dim : int >= 2
        The dimension d of the sphere whose coordinate is quantized.

    Returns
    -------
    centroids : ndarray of shape (2**bits,), float64
        Increasing, symmetric about 0, in unit-vector coordinate scale (≈ Gaussian table / sqrt(d)).
    boundaries : ndarray of shape (2**bits - 1,), float64
        Decision boundaries (midpoints); the middle one is exactly 0.

    Notes
    -----
    ``dim * sum_cells ∫ (x - c)² f`` is TurboQuant's D_mse (papers.md §4.4: d=128 → 0.36089, 0.11600,
    0.03397, 0.00931 for b = 1..4). Solved to |Δc| < 1e-12/sqrt(d); cached in memory and on disk.
    """
    bits = _check_bits(bits)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise InvalidInputError(f"lloyd_max dim must be an integer >= 2; got {dim!r}")
    dim = int(dim)
    name = f"beta-b{bits}-d{dim}"
    cached = _disk_load(name)
    if cached is not None and cached[0].shape == (2**bits,) and cached[1].shape == (2**bits - 1,):
        return _frozen(*cached)

    from scipy.special import betaincc, gammaln

    a = 0.5 * (dim - 1)
    half = 2 ** (bits - 1)
    k_const = math.exp(gammaln(0.5 * dim) - gammaln(0.5 * (dim - 1)) - 0.5 * math.log(math.pi))
    p = 0.5 * (dim - 1)  # exponent of (1 - x²) in the antiderivative of x f(x)

    def stats(lo, hi):
        # mass of [lo, hi] (0 <= lo < hi <= 1) with survival functions: precise in the tails
        mass = betaincc(a, a, 0.5 * (lo + 1.0)) - betaincc(a, a, 0.5 * (hi + 1.0))
        # ∫ x f(x) dx = -K (1 - x²)^((d-1)/2) / (d - 1)
        g_lo = np.power(np.clip(1.0 - lo * lo, 0.0, None), p)
        g_hi = np.power(np.clip(1.0 - hi * hi, 0.0, None), p)
        mom = k_const * (g_lo - g_hi) / (dim - 1)
        return mass, mom

    def density(x):
        return k_const * np.power(np.clip(1.0 - x * x, 0.0, None), 0.5 * (dim - 3))

    scale = 1.0 / math.sqrt(dim)
    init = _gaussian_init(half) * scale
    if init[-1] >= 1.0:  # tiny d: the law is far from Gaussian; start evenly spaced on (0, 1)
        init = (np.arange(half) + 0.5) / half
    pos_c, pos_b = _solve_cells(0.0, 1.0, init, scale, stats, density)
    centroids, boundaries = _mirror(pos_c, pos_b)
    _disk_store(name, centroids, boundaries)
    return _frozen(centroids, boundaries)


def beta_mse(bits: int, dim: int) -> float:
    """Exact D_mse = d · E[(X - Q(X))²] of :func:`lloyd_max` for a unit vector in R^dim (per vector)."""
    from scipy.special import betainc, gammaln

    c, b = lloyd_max(bits, dim)
    a = 0.5 * (dim - 1)
    k_const = math.exp(gammaln(0.5 * dim) - gammaln(0.5 * (dim - 1)) - 0.5 * math.log(math.pi))
    edges = np.concatenate(([-1.0], b, [1.0]))
    lo, hi = edges[:-1], edges[1:]
    mass = betainc(a, a, 0.5 * (hi + 1)) - betainc(a, a, 0.5 * (lo + 1))
    p = 0.5 * (dim - 1)
    mom = k_const * (np.power(1 - lo * lo, p) - np.power(1 - hi * hi, p)) / (dim - 1)
    # E[X²] = 1/d in total; E[(X-c)²] = E[X²] - 2 Σ c·mom + Σ c² mass
    return float(dim * (1.0 / dim - 2.0 * np.sum(c * mom) + np.sum(c * c * mass)))


# ---------------------------------------------------------------------------------------------
# PolarQuant angle codebooks
# ---------------------------------------------------------------------------------------------
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)


def angle_density(level: int, psi: np.ndarray) -> np.ndarray:
    """Density of a level-``level`` polar angle of a Gaussian vector (PolarQuant Lemma 2).

    Level 1: uniform 1/(2π) on [0, 2π). Level ℓ ≥ 2 on [0, π/2]:
    ``Γ(k) / (2^(k-2) Γ(k/2)²) · sin^(k-1)(2ψ)`` with ``k = 2^(ℓ-1)``.
    """
    psi = np.asarray(psi, dtype=np.float64)
    if level == 1:
        return np.full_like(psi, 1.0 / (2 * math.pi))
    from scipy.special import gammaln

    k = 2 ** (level - 1)
    log_c = gammaln(k) - (k - 2) * math.log(2.0) - 2 * gammaln(k / 2)
    return np.exp(log_c) * np.power(np.clip(np.sin(2 * psi), 0.0, None), k - 1)


@functools.cache
def angle_codebook(level: int, bits: int):
    """Lloyd–Max codebook for the level-``level`` polar angle with ``2**bits`` levels.

    Parameters
    ----------
    level : int >= 1
        1: angle ``atan2(y_2j, y_2j-1)`` mapped to [0, 2π), uniform law, uniform codebook
        ``(j + 1/2)·2π/2^b``. ℓ ≥ 2: angle ``atan2(r_2j, r_2j-1)`` of two non-negative radii, on [0, π/2].
    bits : int in [1, 8]

    Returns
    -------
    centroids : ndarray of shape (2**bits,), float64, increasing (radians)
    boundaries : ndarray of shape (2**bits - 1,), float64

    Notes
    -----
    For ℓ ≥ 2 the law is ``sin²ψ ~ Beta(k/2, k/2)``, ``k = 2^(ℓ-1)``, so cell masses are
    ``betainc(k/2, k/2, sin²ψ)`` differences; partial means by 64-point Gauss–Legendre per cell.
    Codebooks are symmetric about π/4 (papers.md §3.4: level 2, 2 bits → 0.30976, 0.63398, 0.93682,
    1.26104).
    """
    bits = _check_bits(bits)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise InvalidInputError(f"angle level must be an integer >= 1; got {level!r}")
    level = int(level)
    n = 2**bits
    if level == 1:
        width = 2 * math.pi / n
        return _frozen((np.arange(n) + 0.5) * width, np.arange(1, n) * width)

    from scipy.special import betainc

    k = 2 ** (level - 1)
    a = 0.5 * k

    def cdf(psi):
        return betainc(a, a, np.sin(psi) ** 2)

    def stats(lo, hi):
        mass = cdf(hi) - cdf(lo)
        mid = 0.5 * (hi + lo)
        half_w = 0.5 * (hi - lo)
        nodes = mid[:, None] + half_w[:, None] * _GL_X[None, :]
        mom = half_w * np.sum(_GL_W[None, :] * nodes * angle_density(level, nodes), axis=1)
        return mass, mom

    upper = 0.5 * math.pi
    # start at the law's quantiles
    from scipy.special import betaincinv

    q = (np.arange(n) + 0.5) / n
    c = np.arcsin(np.sqrt(betaincinv(a, a, q)))
    c, _ = _solve_cells(0.0, upper, c, 1.0, stats, lambda x: angle_density(level, x))
    # enforce exact symmetry about π/4 (the law is symmetric; removes round-off drift)
    c = 0.5 * (c + (upper - c[::-1]))
    return _frozen(c, 0.5 * (c[:-1] + c[1:]))


def angle_mse(level: int, bits: int) -> float:
    """E[(ψ - Q(ψ))²] of :func:`angle_codebook` under the level's law (radians²)."""
    c, b = angle_codebook(level, bits)
    if level == 1:
        w = 2 * math.pi / 2**bits
        return w * w / 12.0
    edges = np.concatenate(([0.0], b, [0.5 * math.pi]))
    total = 0.0
    for i in range(len(c)):
        lo, hi = edges[i], edges[i + 1]
        nodes = 0.5 * (hi + lo) + 0.5 * (hi - lo) * _GL_X
        total += 0.5 * (hi - lo) * float(np.sum(_GL_W * (nodes - c[i]) ** 2 * angle_density(level, nodes)))
    return total
