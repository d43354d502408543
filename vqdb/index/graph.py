"""The graph index of ``Index(graph=True | degree)``: nodes, insertion, code-scored search, persistence.

One node per stored row version (an upsert adds a node and retires the old one; a delete retires it).
Retired nodes stay in the graph as waypoints, never in results, until :meth:`Index.compact` rebuilds it.
Each node's row holds its neighbours' ids and codes contiguously (layout in :mod:`vqdb.kernels.graph`);
a search scores a hop's neighbours with the fast-scan LUT of the index's own quantizer
(:class:`vqdb.kernels.scanner.FastScanner`: the same LUTs, factors and score formula as flat and IVF
scans) and scores every node it expands exactly from its float16 vector, which is also the re-rank.

Construction: prefix-doubling batch insertion with RobustPrune (ParlayANN's parallel DiskANN build):
batches of at most ``max(1, n_linked)`` and ``BATCH_FRACTION`` of the add, each searched in parallel
against the graph linked so far. Distances between nodes are squared L2 of the float16 vectors; for
``cos`` (unit vectors) that orders neighbours exactly as the cosine does.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError

DEFAULT_DEGREE = 32
DEFAULT_EF = 64
BUILD_EF = 96  # beam width of the construction searches (DiskANN's L)
ALPHA = 1.2  # RobustPrune's alpha, applied to squared distances
BATCH_FRACTION = 0.02  # a batch links at most this share of the nodes being added (and >= 64)
MIN_BATCH = 64
REFINE_MIN = 1024  # a first add of at least this many vectors gets the second construction pass
MAX_DEGREE = 256
BITPLANES = 4  # 1-bit codes: bits of the quantized query in the walk's popcount estimates


def as_graph(value) -> int | None:
    """``graph=`` argument -> degree (None = no graph)."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_DEGREE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 4 <= value <= MAX_DEGREE:
        raise InvalidInputError(
            f"graph must be False, True or a degree (int in [4, {MAX_DEGREE}]); got {value!r}"
        )
    return int(value)


def _kernels():
    from ..kernels import graph as kg

    return kg


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


class Graph:
    """Nodes of the graph of one index (mutated under the index's write lock; searched lock-free).

    Parameters
    ----------
    scanner : vqdb.kernels.scanner.FastScanner
        Of the index's quantizer (the code layout and LUTs).
    dim : int
    degree : int
        Out-degree R.
    metric : {"ip", "l2sq"}
        Score of a search (``cos`` indexes pass ``ip``: their vectors are unit).
    """

    def __init__(self, scanner, dim: int, degree: int, metric: str):
        self.sc = scanner
        self.dim = dim
        self.R = degree
        self.l2 = metric == "l2sq"
        # the quantizer's per-vector additive term (TurboQuant's centred-query β): folded into each node's
        # code constant (``code_sq``: ||x||² - 2β for l2sq, -β for ip). Graphs written before it keep ||x||².
        self.offsets = getattr(scanner, "additive", None) is not None
        self.nsteps = int(scanner.nsteps)
        self.G = int(scanner.n_groups)
        # a node's code record: its S code bytes (whole uint64 words: a 1-bit code's sign words), then
        # (float32) its G factors and its code constant
        self.bits = bool(scanner.one_bit)
        self.fo = 2 * -(-self.nsteps // 8)
        self.rec_bytes = int(-(-(self.fo + self.G + 1) * 4 // 64) * 64)
        self.code_size = None
        self.n = 0
        self.entry = 0
        self._writable = True
        self._node_of: dict[int, int] | None = {}
        self._vf = None
        self._alloc(0)

    # ---- storage -------------------------------------------------------------------------------
    _ARRAYS = ("ids", "live", "norms", "links", "recs")

    def _alloc(self, cap: int, keep: int = 0) -> None:
        """Fresh arrays for ``cap`` nodes holding the first ``keep`` nodes of the current ones; attached only
        once filled, so a search running meanwhile sees either the old arrays or complete new ones."""
        new = {
            "ids": np.full(cap, -1, np.int64),
            "live": np.zeros(cap, bool),
            "vbits": np.zeros((cap, self.dim), np.uint16),
            "vrow": np.arange(cap, dtype=np.int64),
            "norms": np.zeros(cap, np.float32),
            "links": np.full((cap, self.R), -1, np.int32),
            "recs": np.zeros((cap, self.rec_bytes), np.uint8),
        }
        for name in self._ARRAYS if keep else ():
            new[name][:keep] = getattr(self, name)[:keep]
        if keep:
            new["vbits"][:keep] = self.vectors(np.arange(keep))
        for name in ("links", "recs", "vbits", "vrow", "norms", "live", "ids"):
            setattr(self, name, new[name])

    def vectors(self, nodes) -> np.ndarray:
        """(len(nodes), d) uint16 float16 bits of the vectors of ``nodes``."""
        return self.vbits[self.vrow[nodes]]

    @property
    def recf(self) -> np.ndarray:
        """(capacity, rec_bytes / 4) float32 view of the code records (factors at fo.., constant at fo + G)."""
        return self.recs.view(np.float32)

    @property
    def sqc(self) -> np.ndarray:
        """(capacity,) float32 each node's code constant (subtracted from l2sq / offset estimates)."""
        return self.recf[:, self.fo + self.G]

    @property
    def capacity(self) -> int:
        return int(self.ids.shape[0])

    def _reserve(self, need: int) -> None:
        """Room for ``need`` nodes in writable arrays (new arrays: running searches keep the old ones)."""
        if need <= self.capacity and self._writable:
            return
        cap = max(need, int(self.capacity * 1.5) + 1024) if need > self.capacity else self.capacity
        self._alloc(cap, keep=self.n)
        self._writable = True

    @property
    def nbytes_per_node(self) -> dict:
        """Bytes per node held for search: links, the code record, the float16 vector (0 while the graph reads
        its segment's own vectors, see :func:`_node_vectors`), its row number and norm, id/flag."""
        return {
            "graph_links": 4 * self.R,
            "graph_code": self.rec_bytes,
            "graph_vector": 2 * self.dim if self.vbits.flags.writeable else 0,
            "graph_vector_row": 8,
            "graph_norm": 4,
            "graph_id": 9,
        }

    def _by_id(self) -> dict:
        """id -> live node (built from ids/live on first use: an opened graph that only searches never needs
        it, about 100 bytes per node)."""
        if self._node_of is None:
            n = self.n
            self._node_of = {int(i): j for j, i in enumerate(self.ids[:n].tolist()) if self.live[j]}
        return self._node_of

    # ---- code records ----------------------------------------------------------------------------
    def _records(self, codes: np.ndarray) -> np.ndarray:
        """(n, rec_bytes) uint8 code records of codes (n, code_size): the fast-scan slots two per byte (slot
        2t in the low nibble of byte t), each kernel part's factor and the code constant (||x||^2 for l2sq,
        with the quantizer's additive term folded in when it has one)."""
        from ..kernels import reference_fastscan as rf

        sc = self.sc
        n = codes.shape[0]
        slots = np.zeros((n, 2 * self.nsteps), np.uint8)
        side = np.ascontiguousarray(codes[:, sc.side_offset : sc.side_offset + 4 * sc.n_side]).view("<f4")
        side = side.reshape(n, sc.n_side)
        recs = np.zeros((n, self.rec_bytes), np.uint8)
        recf = recs.view(np.float32)
        col = 0
        for i, p in enumerate(sc.parts):
            slots[:, col : col + sc.slots[i]] = rf.nibble_slots(codes, p["offset"], p["bits"], p["k"])
            col += sc.slots[i]
            if sc.group_first[sc.group_of[i]] == i:
                recf[:, self.fo + sc.group_of[i]] = side[:, p["side"]] * np.float32(p["mult"])
        recs[:, : self.nsteps] = slots[:, 0::2] | (slots[:, 1::2] << 4)
        const = side[:, sc.n_side - 1].astype(np.float32)  # ||x||^2, subtracted from l2sq estimates
        if self.offsets:  # the estimate gains alpha * β: subtract -alpha * β (alpha = 2 for l2sq, 1 for ip)
            beta = side[:, int(sc.additive)].astype(np.float32)
            const = const - np.float32(2.0) * beta if self.l2 else -beta
        recf[:, self.fo + self.G] = const
        return recs

    # ---- writes ----------------------------------------------------------------------------------
    def retire(self, ids: np.ndarray) -> None:
        """Nodes of ``ids`` (where present) are no longer results."""
        if not self._writable:
            self._reserve(self.n)
        by_id = self._by_id()
        for i in np.asarray(ids, np.int64).tolist():
            node = by_id.pop(i, None)
            if node is not None:
                self.live[node] = False

    def insert(
        self, ids: np.ndarray, vectors: np.ndarray, codes: np.ndarray, *, build_ef: int = BUILD_EF
    ) -> None:
        """Add nodes: ``ids`` (b,) int64, ``vectors`` (b, d) float (stored as float16), ``codes`` (b, code_size)
        uint8. Ids already present are retired first (upsert)."""
        b = int(ids.shape[0])
        if b == 0:
            return
        kg = _kernels()
        self.retire(ids)
        v16 = np.ascontiguousarray(vectors, dtype=np.float16)
        n0 = self.n
        if n0 == 0:  # the entry point: the vector nearest the batch mean, linked first
            x = v16.astype(np.float32)
            first = int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))
            order = np.r_[first, np.delete(np.arange(b), first)]
            ids, v16, codes = ids[order], v16[order], codes[order]
        self._reserve(n0 + b)
        self.code_size = codes.shape[1]
        sl = slice(n0, n0 + b)
        self.ids[sl] = ids
        self.live[sl] = True
        self.vbits[sl] = v16.view(np.uint16)
        self.recs[sl] = self._records(codes)
        self.links[sl] = -1
        new_nodes = np.arange(n0, n0 + b, dtype=np.int64)
        kg.squared_norms(kg.read_only(self.vbits), self.vrow, new_nodes, self.norms)
        vf = self._float_vectors(n0, b)
        cur = n0
        if cur == 0:
            cur = 1  # node 0 is the entry; it has no one to link to yet
            self.entry = 0
        cap = max(MIN_BATCH, int(math.ceil(BATCH_FRACTION * b)))
        while cur < n0 + b:
            size = min(n0 + b - cur, max(1, cur), cap)
            batch = np.arange(cur, cur + size, dtype=np.int64)
            tasks = max(1, min(size, 8 * _threads()))
            incoming = np.empty(size * self.R, np.int64)
            kg.link_batch(
                batch, cur, self.entry, vf, self.norms, self.links, self.R,
                int(build_ef), np.float32(ALPHA), tasks, incoming,
            )  # fmt: skip
            self._merge_incoming(incoming, vf)
            cur += size
        if n0 == 0 and b >= REFINE_MIN:  # the first bulk add: Vamana's second pass over the whole graph
            self._refine(vf, n0 + b, cap, build_ef)
        by_id = self._by_id()
        for j, i in enumerate(ids.tolist()):
            by_id[i] = n0 + j
        self.n = n0 + b

    def _merge_incoming(self, incoming: np.ndarray, vf: np.ndarray) -> None:
        """Add the reverse edges ``incoming`` (target << 32 | source, -1 = none) to their targets' lists
        (re-pruning a list that overflows)."""
        pairs = np.sort(incoming[incoming >= 0])
        if not pairs.size:
            return
        tgt = pairs >> 32
        starts = np.r_[np.flatnonzero(np.r_[True, tgt[1:] != tgt[:-1]]), pairs.size].astype(np.int64)
        hit = np.empty(starts.size - 1, np.int64)
        _kernels().merge_reverse(pairs, starts, vf, self.norms, self.links, self.R, np.float32(ALPHA), hit)

    def _refine(self, vf: np.ndarray, n: int, batch: int, build_ef: int) -> None:
        """Second pass over nodes [0, n): batches searched against the whole graph (lists RobustPruned
        over the search's best and the current list), their lists written, reverse edges merged."""
        kg = _kernels()
        for start in range(0, n, batch):
            nodes = np.arange(start, min(n, start + batch), dtype=np.int64)
            lists = np.empty((nodes.size, self.R), np.int64)
            tasks = max(1, min(nodes.size, 8 * _threads()))
            kg.refine_batch(
                nodes, n, self.entry, vf, self.norms, self.links, self.R, int(build_ef),
                np.float32(ALPHA), tasks, lists,
            )  # fmt: skip
            self.links[start : start + nodes.size] = lists
            incoming = np.where(lists >= 0, (lists << 32) | nodes[:, None], -1).reshape(-1)
            self._merge_incoming(incoming, vf)

    def _float_vectors(self, n0: int, b: int) -> np.ndarray:
        """(capacity, d) float32 copy of the float16 vectors for construction, kept while this object
        writes (so small adds do not widen every vector again): nodes [0, n0) as cached, [n0, n0+b) new."""
        vf = self._vf
        if vf is None or vf.shape[0] < n0 + b:
            old = vf
            vf = np.empty((self.capacity, self.dim), np.float32)
            have = 0 if old is None else min(old.shape[0], n0)
            if have:
                vf[:have] = old[:have]
            vf[have:n0] = self.vectors(np.arange(have, n0)).view(np.float16)
            self._vf = vf
        vf[n0 : n0 + b] = self.vbits[n0 : n0 + b].view(np.float16)
        return vf

    # ---- search ----------------------------------------------------------------------------------
    def search(self, q: np.ndarray, k: int, ef: int, *, centre=None, ok: np.ndarray | None = None):
        """(nodes (m, k) int64 -1 padded, scores (m, k) float32, expanded (m,) int64) of (m, d) queries.

        ``ok`` (n,) bool: nodes that may be returned (live and matching a filter); default the live ones."""
        kg = _kernels()
        m = q.shape[0]
        n = self.n
        out_nodes = np.full((m, k), -1, np.int64)
        out_scores = np.full((m, k), -np.inf, np.float32)
        stats = np.zeros(m, np.int64)
        if m == 0 or n == 0:
            return out_nodes, out_scores, stats
        ok = self.live[:n] if ok is None else ok
        prep = self.sc.prepare(q, metric="l2sq" if self.l2 else "ip")
        c0 = q @ centre if centre is not None else np.zeros(m, np.float32)
        base = (prep.alpha * c0 + prep.qconst).astype(np.float32)
        G = self.G
        nd = kg.Nodes(
            self.links, self.recs, self.recf, self.recs.view(np.uint64), self.fo, kg.read_only(self.vbits),
            self.vrow, self.norms, np.ascontiguousarray(ok), n,
            self.entry,
        )  # fmt: skip
        pr = kg.Probe(
            np.ascontiguousarray(q, np.float32), prep.luts, np.ascontiguousarray(prep.inv[:, :G]),
            np.ascontiguousarray(prep.off[:, :G]), base, self.sc.part_steps, np.float32(prep.alpha), self.l2,
            self.l2 or self.offsets, *self._bitplanes(prep, m),
        )  # fmt: skip
        ef = max(int(ef), k)
        tasks = max(1, min(m, 4 * _threads()))
        if tasks == 1:  # one range on this thread: no parallel region to start and join
            kg.search_range(nd, pr, ef, k, 0, m, out_nodes, out_scores, stats)
        else:
            kg.search(nd, pr, ef, k, tasks, out_nodes, out_scores, stats)
        return out_nodes, out_scores, stats

    def _bitplanes(self, prep, m: int) -> tuple:
        """The popcount estimate's query side (:class:`vqdb.kernels.graph.Probe` fields from ``bits``): for a
        single 1-bit part, its query quantized to ``BITPLANES`` bit planes; otherwise empty arrays."""
        if not self.bits:
            z = np.zeros(m, np.float32)
            return False, np.zeros((m, 1, 1), np.uint64), z, z, z, np.float32(0), np.float32(0)
        q = np.ascontiguousarray(prep.parts_q[0], np.float32)
        words = np.empty((m, BITPLANES, -(-q.shape[1] // 64)), np.uint64)
        lo, delta, qsum = (np.empty(m, np.float32) for _ in range(3))
        _kernels().bit_planes(q, BITPLANES, words, lo, delta, qsum)
        v = np.asarray(self.sc.parts[0]["values"], np.float64)
        return True, words, lo, delta, qsum, np.float32(v[0]), np.float32(v[1] - v[0])

    def nodes_of(self, ids: np.ndarray) -> np.ndarray:
        """(a,) int64 live node of each of ``ids`` (int64 keys); ids without a live node are left out."""
        get = self._by_id().get
        nodes = np.fromiter((get(i, -1) for i in np.asarray(ids, np.int64).tolist()), np.int64, len(ids))
        return nodes[nodes >= 0]

    def exact(self, q: np.ndarray, k: int, nodes: np.ndarray):
        """(nodes (m, k) int64 -1 padded, scores (m, k) float32) of (m, d) float32 queries by exact scores
        of the float16 vectors of ``nodes`` (a small subset, e.g. the matches of a selective filter): the
        filtered fallback, the same scores a graph walk gives, best first (ties: lower node)."""
        m, a = q.shape[0], int(nodes.shape[0])
        out_nodes = np.full((m, k), -1, np.int64)
        out_scores = np.full((m, k), -np.inf, np.float32)
        if m == 0 or a == 0:
            return out_nodes, out_scores
        nodes = np.sort(nodes)
        sub = self.vectors(nodes).view(np.float16).astype(np.float32)
        kk = min(k, a)
        step = max(1, (1 << 22) // a)  # queries per block: at most ~4M scores (16 MB) at once
        for i0 in range(0, m, step):
            qb = q[i0 : i0 + step]
            s = qb @ sub.T
            if self.l2:
                s = 2.0 * s - self.norms[nodes][None, :] - np.einsum("ij,ij->i", qb, qb)[:, None]
            part = (
                np.argpartition(-s, kk - 1, axis=1)[:, :kk]
                if kk < a
                else np.broadcast_to(np.arange(a), s.shape)
            )
            ps = np.take_along_axis(s, part, axis=1)
            order = np.lexsort((part, -ps), axis=1)  # score descending, then lower node
            out_nodes[i0 : i0 + qb.shape[0], :kk] = nodes[np.take_along_axis(part, order, axis=1)]
            out_scores[i0 : i0 + qb.shape[0], :kk] = np.take_along_axis(ps, order, axis=1)
        return out_nodes, out_scores

    def ok_for(self, allowed_ids: np.ndarray) -> np.ndarray:
        """(n,) bool: live nodes whose id is in ``allowed_ids``."""
        n = self.n
        return self.live[:n] & np.isin(self.ids[:n], allowed_ids)

    # ---- persistence -----------------------------------------------------------------------------
    def to_table(self) -> pa.Table:
        """The nodes as an Arrow table (one row per node): id, live, links, code record, and the float16
        vector bits of retired nodes only (null for live ones: their vectors are the segments' stored
        vectors, attached again by :meth:`from_file`, so no vector is written twice)."""
        n = self.n
        gone = ~self.live[:n]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(gone * (2 * self.dim), out=offsets[1:])
        retired = pa.BinaryArray.from_buffers(
            pa.binary(),
            n,
            [
                pa.py_buffer(np.packbits(gone, bitorder="little")),
                pa.py_buffer(offsets),
                pa.py_buffer(
                    np.ascontiguousarray(self.vectors(np.flatnonzero(gone))).view(np.uint8).reshape(-1)
                ),
            ],
            null_count=int(n - gone.sum()),
        )

        def fixed(a: np.ndarray) -> pa.Array:
            a = np.ascontiguousarray(a[:n])
            width = a.shape[1] * a.itemsize
            return pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width), n, [None, pa.py_buffer(a.view(np.uint8).reshape(-1))]
            )

        return pa.table(
            {
                "id": pa.array(self.ids[:n], pa.int64()),
                "live": pa.array(self.live[:n], pa.bool_()),
                "retired_f16": retired,
                "links": fixed(self.links),
                "code_record": fixed(self.recs),
            }
        )

    def meta(self) -> dict:
        out = {"degree": self.R, "entry": int(self.entry), "nodes": int(self.n), "rec_bytes": self.rec_bytes}
        if self.offsets:
            out["code_offsets"] = True
        return out

    @classmethod
    def from_file(cls, path: str, scanner, dim: int, metric: str, meta: dict, live_vectors=()) -> Graph:
        """Nodes of a file written from :meth:`to_table` (checked by the caller), memory-mapped copy-on-write:
        pages are shared with the file until this process writes them (never back to the file), and the
        arrays are ordinary writable arrays for the kernels (no second compilation for read-only arrays).

        ``live_vectors``: iterable of (ids (a,) int64, vectors (a, d)) pairs, the stored vectors of the live
        rows (the segments'); every live node's vector is taken from them into one float16 array (graph
        files written before this kept every vector in a ``vector_f16`` column: read from there)."""
        g = cls(scanner, dim, int(meta["degree"]), metric)
        g.offsets = bool(meta.get("code_offsets", False))  # graphs written before the offsets: as before
        buf = pa.memory_map(path, "r").read_buffer()
        table = pa.ipc.open_file(buf).read_all()
        inline = "rec_bytes" not in meta  # written before the code records: neighbours' codes inline
        if int(meta["row_bytes"] if inline else meta["rec_bytes"]) != (
            g._inline_row_bytes() if inline else g.rec_bytes
        ) or table.num_rows != int(meta["nodes"]):
            raise ValueError("graph file does not match the index's code layout")
        n = table.num_rows
        cow = np.memmap(path, dtype=np.uint8, mode="c") if n else np.zeros(0, np.uint8)

        def column(name: str, dtype, width: int) -> np.ndarray:
            col = table.column(name)
            size = width * np.dtype(dtype).itemsize
            if n == 0:
                return np.zeros((0, width), dtype)
            if col.num_chunks != 1 or col.null_count:
                raise ValueError(f"graph file column {name!r} is not one dense chunk")
            arr = col.chunk(0)
            start = arr.buffers()[1].address - buf.address + arr.offset * size
            if start < 0 or start + n * size > cow.shape[0]:
                raise ValueError(f"graph file column {name!r} lies outside the file")
            return cow[start : start + n * size].view(dtype).reshape(n, width)

        g.ids = column("id", np.int64, 1).reshape(-1)
        g.live = np.asarray(table.column("live").to_numpy(zero_copy_only=False), dtype=bool)
        if "vector_f16" in table.column_names:
            g.vbits, g.vrow = column("vector_f16", np.uint16, dim), np.arange(n, dtype=np.int64)
        else:
            g.vbits, g.vrow = _node_vectors(table, g.ids, g.live, dim, live_vectors)
        if inline:
            g._from_inline(column)
        else:
            g.links = column("links", np.int32, g.R)
            g.recs = column("code_record", np.uint8, g.rec_bytes)
        g.norms = np.zeros(n, np.float32)
        if n:
            kg = _kernels()
            kg.squared_norms(kg.read_only(g.vbits), g.vrow, np.arange(n, dtype=np.int64), g.norms)
        g.n = n
        g.entry = int(meta["entry"])
        if not 0 <= g.entry < max(n, 1):
            raise ValueError(f"graph entry {g.entry} outside {n} nodes")
        g._writable = g.vbits.flags.writeable  # a segment's vectors: the first write copies them
        g._node_of = None  # built when first needed (a search does not need it)
        return g

    def _inline_row_bytes(self) -> int:
        """Row size of the graph files written before the code records (each row: its neighbours' codes in
        fast-scan blocks, ids, factors and code constants)."""
        io = -(-self.R // 32) * self.nsteps * 8
        return int(-(-(io + (2 + self.G) * self.R) * 4 // 64) * 64)

    def _from_inline(self, column) -> None:
        """Links and code records from the columns of a graph file written before the code records (``row``:
        ids at int32 offset ``io``; ``slots``, ``factors``, ``code_sq``: each node's own code)."""
        n = self.ids.shape[0]
        io = -(-self.R // 32) * self.nsteps * 8
        self.links = np.ascontiguousarray(
            column("row", np.uint8, self._inline_row_bytes()).view(np.int32)[:, io : io + self.R]
        )
        slots = column("slots", np.uint8, 2 * self.nsteps)
        self.recs = np.zeros((n, self.rec_bytes), np.uint8)
        self.recs[:, : self.nsteps] = slots[:, 0::2] | (slots[:, 1::2] << 4)
        self.recf[:, self.fo : self.fo + self.G] = column("factors", np.float32, max(self.G, 1))[:, : self.G]
        self.recf[:, self.fo + self.G] = column("code_sq", np.float32, 1).reshape(-1)


def _node_vectors(table: pa.Table, ids: np.ndarray, live: np.ndarray, dim: int, live_vectors):
    """(vbits, vrow) of every node (see :class:`vqdb.kernels.graph.Nodes`): retired nodes' vectors from the
    graph table's ``retired_f16``, live ones from ``live_vectors`` (see :meth:`Graph.from_file`); ValueError
    when one is missing. When every node is live and one float16 array holds them all (a single segment),
    that array itself is returned (read-only, not copied: the vectors are held once in memory) with each
    node's row in it; otherwise a (n, d) copy and vrow = arange(n)."""
    n = ids.shape[0]
    gone = np.flatnonzero(~live)
    col = table.column("retired_f16").combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False) if n else np.zeros(0, bool)
    if not np.array_equal(valid, ~live):
        raise ValueError("graph file's retired vectors do not match its live flags")
    sources = [(np.asarray(sid, np.int64), vec) for sid, vec in live_vectors]
    if not gone.size and len(sources) == 1 and sources[0][1].dtype == np.float16 and n:
        sid, vec = sources[0]
        order = np.argsort(sid, kind="stable")
        pos = np.minimum(np.searchsorted(sid[order], ids), max(sid.size - 1, 0))
        if sid.size and (sid[order][pos] == ids).all():
            return np.ascontiguousarray(vec).view(np.uint16), order[pos].astype(np.int64)
    out = np.zeros((n, dim), np.uint16)
    if gone.size:
        offs = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + n + 1]
        data = np.frombuffer(col.buffers()[2], np.uint8)
        start = offs[gone]
        if not (offs[gone + 1] - start == 2 * dim).all() or int(offs[-1]) > data.size:
            raise ValueError("graph file's retired vectors have the wrong width")
        out[gone] = data[start[:, None] + np.arange(2 * dim)].view(np.uint16)
    nodes = np.flatnonzero(live)
    order = np.argsort(ids[nodes], kind="stable")
    keys = ids[nodes][order]
    filled = np.zeros(nodes.size, bool)
    for sid, vec in sources:
        if not sid.size or not keys.size:
            continue
        pos = np.minimum(np.searchsorted(keys, sid), keys.size - 1)
        hit = keys[pos] == sid
        out[nodes[order[pos[hit]]]] = np.asarray(vec)[hit].astype(np.float16).view(np.uint16)
        filled[order[pos[hit]]] = True
    if not filled.all():
        raise ValueError(f"{int((~filled).sum())} live graph nodes have no stored vector")
    return out, np.arange(n, dtype=np.int64)
