"""Metadata filters: dict and pyarrow-expression forms, Mongo null semantics, and k results at any selectivity."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from index_helpers import exact_topk

import vqdb
from vqdb.errors import FilterError
from vqdb.index import _filters
from vqdb.testing import recall_at_k

TABLE = pa.table(
    {
        "lang": ["en", "de", None, "en", "fr"],
        "year": [2019, 2020, 2021, None, 2024],
        "score": [0.1, 0.5, 0.9, 0.3, None],
        "draft": [True, False, False, None, True],
    }
)


def rows(flt) -> list[int]:
    return np.flatnonzero(_filters.evaluate(_filters.compile_filter(flt, TABLE.schema), TABLE)).tolist()


@pytest.mark.parametrize(
    "flt, expected",
    [
        ({"lang": "en"}, [0, 3]),
        ({"lang": {"$eq": "en"}}, [0, 3]),
        ({"lang": {"$ne": "en"}}, [1, 2, 4]),  # a missing value matches $ne (Mongo)
        ({"year": {"$gte": 2020}}, [1, 2, 4]),
        ({"year": {"$gt": 2020, "$lte": 2024}}, [2, 4]),
        ({"year": {"$lt": 2020}}, [0]),
        ({"score": {"$lte": 0.3}}, [0, 3]),
        ({"lang": {"$in": ["de", "fr"]}}, [1, 4]),
        ({"lang": {"$nin": ["de", "fr"]}}, [0, 2, 3]),
        ({"lang": {"$in": []}}, []),
        ({"lang": None}, [2]),
        ({"lang": {"$exists": True}}, [0, 1, 3, 4]),
        ({"year": {"$not": {"$gte": 2020}}}, [0, 3]),
        ({"$not": {"lang": "en"}}, [1, 2, 4]),
        ({"$or": [{"lang": "de"}, {"year": 2024}]}, [1, 4]),
        ({"$and": [{"lang": "en"}, {"draft": True}]}, [0]),
        ({"$nor": [{"lang": "en"}, {"draft": True}]}, [1, 2]),
        ({"lang": "en", "year": {"$gte": 2000}}, [0]),
        ({"draft": False}, [1, 2]),
        (pc.field("year") >= 2021, [2, 4]),  # Arrow semantics: null does not match
        ((pc.field("lang") == "en") | (pc.field("score") > 0.8), [0, 2, 3]),
    ],
)
def test_filter_semantics(flt, expected):
    assert rows(flt) == expected


@pytest.mark.parametrize(
    "flt",
    [
        {"lang": {"$regex": "e.*"}},  # unknown operator
        {"$xor": [{"lang": "en"}]},  # unknown logical operator
        {"lnag": "en"},  # unknown field (a typo)
        {"year": "2020"},  # type mismatch
        {"lang": ["en", "de"]},  # list as value
        {"lang": {"$in": "en"}},  # $in needs a list
        {"$or": {"lang": "en"}},  # $or needs a list
        {"$or": []},
        {"lang": {"nested": 1}},  # nested documents
        {"year": {"$gt": None}},
        {"lang": {}},
        "lang == 'en'",  # strings are not filters
        pc.field("year") + 1,  # not a boolean expression
        pc.field("nope") == 1,
    ],
)
def test_malformed_filters_raise(flt):
    with pytest.raises(FilterError):
        _filters.compile_filter(flt, TABLE.schema)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("field, value, fraction", [("half", 0, 0.5), ("b20", 3, 0.05), ("b200", 7, 0.005)])
def test_filtered_search_returns_k_correct_results(request, wordnet, kind, field, value, fraction):
    index = request.getfixturevalue(f"{kind}_index")
    n = wordnet.base.shape[0]
    allowed = (np.arange(n) % {"half": 2, "b20": 20, "b200": 200}[field]) == value
    assert allowed.mean() == fraction
    q, k = wordnet.queries[:40], 10
    # nprobe=1: the filtered search must still find k matches, opening more lists (or scanning the subset)
    res = index.search(q, k, filter={field: value}, nprobe=1)
    assert np.all(res.ids >= 0), "fewer than k results although >= k vectors match"
    assert np.all(allowed[res.ids])
    gt, _ = exact_topk(wordnet.base, q, k, allowed=allowed)
    res = index.search(q, k, filter={field: value}, nprobe=16)
    assert np.all(allowed[res.ids])
    assert recall_at_k(res.ids, gt, k) >= 0.85
    # re-ranking everything that matches gives exactly the filtered exact search
    exact = index.search(q, k, filter={field: value}, nprobe=1, rerank=n / k)
    np.testing.assert_array_equal(exact.ids, gt)


def test_filter_fewer_matches_than_k_pads(flat_index, wordnet):
    res = flat_index.search(wordnet.queries[:5], 10, filter={"i": {"$in": [3, 14, 15]}})
    assert np.all(np.sort(res.ids[:, :3], axis=1) == [3, 14, 15]) and np.all(res.ids[:, 3:] == -1)
    none = flat_index.search(wordnet.queries[:5], 10, filter={"i": -1})
    assert np.all(none.ids == -1)


def test_filter_combinations_and_expressions(flat_index, wordnet):
    q = wordnet.queries[:20]
    flt = {"$or": [{"b20": 1}, {"word": "w3", "score": {"$gte": 0.5}}], "half": {"$ne": 0}}
    res = flat_index.search(q, 10, filter=flt)
    i = res.ids
    assert np.all(i >= 0)
    assert np.all(((i % 20 == 1) | ((i % 7 == 3) & ((i % 100) >= 50))) & (i % 2 == 1))
    expr = (pc.field("b200") < 10) & ~pc.field("word").isin(["w0", "w1"])
    res = flat_index.search(q, 10, filter=expr)
    assert np.all(res.ids >= 0) and np.all(res.ids % 200 < 10) and not np.isin(res.ids % 7, [0, 1]).any()


def test_filter_on_fields_added_later_and_deleted_rows(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(wordnet.base[:1000])  # no metadata at all
    index.add(wordnet.base[1000:2000], metadata=[{"src": "b" if i % 2 else "a"} for i in range(1000)])
    index.add(wordnet.base[2000:2100], metadata={"src": ["a"] * 100, "n": np.arange(100)})
    q = wordnet.queries[:10]
    res = index.search(q, 20, filter={"src": "a"})
    assert np.all(((res.ids >= 1000) & (res.ids < 2000) & (res.ids % 2 == 0)) | (res.ids >= 2000))
    res = index.search(q, 20, filter={"src": {"$exists": False}})
    assert np.all(res.ids < 1000)
    index.delete(np.arange(1000, 2100, 2))
    res = index.search(q, 20, filter={"src": "a"})
    assert np.all(res.ids >= 2000) and np.all(res.ids % 2 == 1)


def test_ivf_filter_opens_more_lists_when_the_probed_ones_hold_too_few(ivf_index, wordnet, monkeypatch):
    """Matching vectors all sit in one list that the query does not probe first: still k results."""
    from vqdb.index import index as index_module

    monkeypatch.setattr(index_module, "SUBSET_MAX_ROWS", 0)  # force the IVF path, not the subset scan
    seg = ivf_index._snap.segments[0]
    q = wordnet.queries[:1]
    probe_order = np.argsort(-ivf_index._snap.coarse.probe_scores(q, "ip")[0])
    far = int(probe_order[-1])  # the least promising list
    members = seg.ids[seg.lists == far]
    assert members.size >= 10
    res = ivf_index.search(q, 10, filter={"i": {"$in": members.tolist()}}, nprobe=1)
    assert np.all(np.isin(res.ids, members)) and np.all(res.ids >= 0)


def test_empty_filter_matches_everything_and_ids_filter(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(wordnet.base[:100])
    res = index.search(wordnet.queries[:3], 5, filter={})
    np.testing.assert_array_equal(res.ids, index.search(wordnet.queries[:3], 5).ids)
    index.add(wordnet.base[100:200], metadata=[{"g": i % 4} for i in range(100)])
    np.testing.assert_array_equal(np.sort(index.ids(filter={"g": 1})), np.arange(101, 200, 4))
    np.testing.assert_array_equal(np.sort(index.ids(filter={"g": {"$exists": False}})), np.arange(100))


@pytest.mark.parametrize(
    "expr, fields",
    [
        ((pc.field("lang") == "en") & pc.field("year").is_null(), ["lang", "year"]),
        (pc.field("score") > pc.field("year"), ["score", "year"]),
        (pc.scalar(True), []),
        (pc.field(0) == "en", None),  # positional: a sub-schema would re-point it, so every field is read
        (pc.field("nope") == 1, None),  # not a field of the index: compile_filter refuses it
    ],
)
def test_the_fields_an_expression_reads(expr, fields):
    assert _filters.expression_fields(expr, TABLE.schema) == fields
    assert _filters.field_names(expr, TABLE.schema) == fields


def test_an_expression_filter_aligns_only_the_fields_it_reads(wordnet, quantizer, monkeypatch):
    """With 300 metadata fields (two writes of 200), an Expression reads (aligns) only its own fields,
    as a dict filter does, and both select exactly the rows a NumPy mask of the same condition selects;
    a positional reference still answers right (every field aligned)."""
    from vqdb.index import _metadata as md

    rng = np.random.default_rng(11)
    values = rng.integers(0, 5, (400, 300))
    index = vqdb.Index(wordnet.dim, quantizer=quantizer)
    index.add(wordnet.base[:200], metadata=pa.table({f"f{j}": values[:200, j] for j in range(200)}))
    index.add(wordnet.base[200:400], metadata=pa.table({f"f{j}": values[200:, j] for j in range(100, 300)}))
    present = np.zeros((400, 300), bool)
    present[:200, :200] = present[200:, 100:] = True
    want = np.flatnonzero(present[:, 7] & (values[:, 7] == 3) | present[:, 250] & (values[:, 250] < 1))
    aligned = []
    align = md.align

    def spy(meta, schema, n, names=None):
        aligned.append(names)
        return align(meta, schema, n, names)

    monkeypatch.setattr(md, "align", spy)
    expr = (pc.field("f7") == 3) | (pc.field("f250") < 1)
    assert np.array_equal(np.sort(index.ids(filter=expr)), want)
    assert aligned and all(sorted(names) == ["f250", "f7"] for names in aligned)
    assert np.array_equal(np.sort(index.ids(filter={"$or": [{"f7": 3}, {"f250": {"$lt": 1}}]})), want)
    aligned.clear()
    positional = (pc.field(7) == 3) | (pc.field("f250") < 1)  # f7 is the 8th field of the index's schema
    assert np.array_equal(np.sort(index.ids(filter=positional)), want)
    assert aligned and all(names is None for names in aligned)
    hits = index.search(wordnet.queries[:3], 5, filter=expr).ids
    assert (hits >= 0).all() and np.isin(hits, want).all()
