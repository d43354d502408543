"""Slow reference implementations of TurboQuant (Alg. 1 and 2), QJL (Def. 3.1) and PolarQuant (Alg. 1).

They take the random state (rotation, sketch, codebooks) as arrays, so they can be compared bit for bit
with vqdb's quantizers built from the same state. Layouts follow the class docstrings of vqdb.
"""

from __future__ import annotations

import math

import numpy as np


# ---------------------------------------------------------------------------------------------
# bits, one at a time
# ---------------------------------------------------------------------------------------------
def pack_slow(idx: np.ndarray, bits: int) -> np.ndarray:
    """Index j occupies stream bits [j*bits, (j+1)*bits), LSB first; stream bit t is bit t%8 of byte t//8."""
    n, k = idx.shape
    out = np.zeros((n, (k * bits + 7) // 8), dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            for b in range(bits):
                if (int(idx[i, j]) >> b) & 1:
                    t = j * bits + b
                    out[i, t // 8] |= 1 << (t % 8)
    return out


def unpack_slow(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    n = packed.shape[0]
    out = np.zeros((n, k), dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            v = 0
            for b in range(bits):
                t = j * bits + b
                v |= ((int(packed[i, t // 8]) >> (t % 8)) & 1) << b
            out[i, j] = v
    return out


def nearest(y: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """argmin_k |y - c_k| per entry (TurboQuant Alg. 1, line 'idx_j = argmin |y_j - c_k|')."""
    return np.argmin(np.abs(y.astype(np.float64)[..., None] - centroids[None, None, :]), axis=-1).astype(
        np.uint8
    )


def _floats(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype="<f4").view(np.uint8).reshape(values.shape[0], -1)


# ---------------------------------------------------------------------------------------------
# TurboQuant (single part: integer bits)
# ---------------------------------------------------------------------------------------------
def turbo_encode(x, rotation, centroids, bits, *, variant="mse", scales=(1.0,), sketch=None, centre=None):
    """Alg. 1 (mse), the scaled variant (grid of pre-scales, best cosine), Alg. 2 (prod) on r = x - centre."""
    x = np.asarray(x, np.float32)
    r = x if centre is None else (x - centre).astype(np.float32)
    n, d = r.shape
    rows_idx, factors, recon = [], [], []
    for i in range(n):
        y = (r[i : i + 1] @ rotation.T)[0]  # Πr (float32, as the product computes it)
        norm = math.sqrt(float(np.sum(r[i].astype(np.float64) ** 2)))
        u = (y / (norm if norm > 0 else 1.0)).astype(np.float32)
        if variant == "scaled":
            best, best_cos = None, -np.inf
            for t in scales:
                idx = nearest((u.astype(np.float64) * t)[None, :], centroids)[0]
                v = centroids[idx]
                cos = float(np.dot(u.astype(np.float64), v) / np.linalg.norm(v))
                if cos > best_cos:
                    best, best_cos = idx, cos
            idx = best
            chat = centroids[idx].astype(np.float32).astype(np.float64)
            dot = float(np.dot(u.astype(np.float64), chat))
            factors.append(norm / dot if dot > 0 and norm > 0 else 0.0)
        else:
            idx = nearest(u[None, :], centroids)[0]
            factors.append(norm)
        rows_idx.append(idx)
        recon.append((centroids[idx].astype(np.float32) @ rotation) * np.float32(norm))
    idx = np.array(rows_idx, dtype=np.uint8).reshape(n, -1)
    parts = [pack_slow(idx, bits)]
    side = [np.array(factors)]
    if variant == "prod":
        e = r - np.array(recon, dtype=np.float32).reshape(n, d)
        signs = ((e @ sketch.T) > 0).astype(np.uint8)
        parts.append(pack_slow(signs, 1))
        side.append(np.sqrt(np.sum(e.astype(np.float64) ** 2, axis=1)))
    side.append(np.sum(x.astype(np.float64) ** 2, axis=1))
    return np.hstack(parts + [_floats(np.stack(side, 1))])


def turbo_score(q, codes, rotation, centroids, bits, *, variant="mse", sketch=None, scale=None, centre=None):
    """<q, x> estimates: ||r||·<Πq, c[idx]> (mse), factor·<Πq, c[idx]> (scaled), + QJL term (prod)."""
    d = rotation.shape[0]
    nb = (d * bits + 7) // 8
    idx = unpack_slow(codes[:, :nb], bits, d)
    chat = centroids[idx]
    nside = 3 if variant == "prod" else 2
    side = np.ascontiguousarray(codes[:, -4 * nside :]).view("<f4").astype(np.float64)
    out = (q.astype(np.float64) @ rotation.T.astype(np.float64)) @ chat.T * side[:, 0][None, :]
    if variant == "prod":
        signs = unpack_slow(codes[:, nb : nb + (d + 7) // 8], 1, d).astype(np.float64) * 2 - 1
        out += (q.astype(np.float64) @ sketch.T.astype(np.float64)) @ signs.T * (scale * side[:, 1])[None, :]
    if centre is not None:
        out += (q.astype(np.float64) @ centre.astype(np.float64))[:, None]
    return out


# ---------------------------------------------------------------------------------------------
# QJL
# ---------------------------------------------------------------------------------------------
def qjl_encode(x, sketch, centre=None):
    r = np.asarray(x, np.float32) if centre is None else (x - centre).astype(np.float32)
    signs = ((r @ sketch.T) > 0).astype(np.uint8)
    side = np.stack(
        [np.sqrt(np.sum(r.astype(np.float64) ** 2, 1)), np.sum(np.asarray(x, np.float64) ** 2, 1)], 1
    )
    return np.hstack([pack_slow(signs, 1), _floats(side)])


def qjl_score(q, codes, sketch, scale, centre=None):
    """scale · ||r|| · <S q, sign(S r)> (+ <q, centre>)."""
    m = sketch.shape[0]
    signs = unpack_slow(codes[:, : (m + 7) // 8], 1, m).astype(np.float64) * 2 - 1
    norm = np.ascontiguousarray(codes[:, -8:-4]).view("<f4")[:, 0].astype(np.float64)
    out = (q.astype(np.float64) @ sketch.T.astype(np.float64)) @ signs.T * (scale * norm)[None, :]
    if centre is not None:
        out += (q.astype(np.float64) @ centre.astype(np.float64))[:, None]
    return out


# ---------------------------------------------------------------------------------------------
# PolarQuant
# ---------------------------------------------------------------------------------------------
def polar_transform(y: np.ndarray, levels: int):
    """PolarQuant Alg. 1 'Polar' per block of 2**levels: returns ([angles per level], radius per block)."""
    n, p = y.shape
    rho = y.astype(np.float64)
    angles = []
    for level in range(1, levels + 1):
        a, b = rho[:, 0::2], rho[:, 1::2]
        psi = np.arctan2(b, a)
        if level == 1:
            psi = np.mod(psi, 2 * np.pi)
        angles.append(psi)
        rho = np.sqrt(a * a + b * b)
    return angles, rho


def polar_inverse(angle_values, radii):
    """PolarQuant 'DeQuant': r_{2j-1} = r_j cos θ, r_{2j} = r_j sin θ, from the top level down."""
    rho = radii.astype(np.float64)
    for theta in reversed(angle_values):
        nxt = np.empty((rho.shape[0], 2 * rho.shape[1]))
        nxt[:, 0::2] = rho * np.cos(theta)
        nxt[:, 1::2] = rho * np.sin(theta)
        rho = nxt
    return rho


def polar_encode(x, rotation, codebooks, level_bits, centre=None):
    r = np.asarray(x, np.float32) if centre is None else (x - centre).astype(np.float32)
    y = r @ rotation.T
    angles, radius = polar_transform(y, len(level_bits))
    parts = []
    for psi, (c, _), bits in zip(angles, codebooks, level_bits):
        parts.append(pack_slow(nearest(psi.astype(np.float32), c), bits))
    parts.append(np.ascontiguousarray(radius.astype("<f2")).view(np.uint8).reshape(r.shape[0], -1))
    parts.append(_floats(np.sum(np.asarray(x, np.float64) ** 2, 1)[:, None]))
    return np.hstack(parts)
