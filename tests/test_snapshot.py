"""Snapshot queries: filters by index lookups, exact vs post-filtered vector search."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rag.models import Chunk, Document
from rag.store import Segment, Store, Upsert, segment_vectors
from rag.store.schema import INDEX_METADATA, SCHEMA, compile_filters
from rag.store.segments import exact_search

DIM = 8
scalars = st.one_of(st.sampled_from(["en", "fr", "de"]), st.integers(2019, 2021), st.booleans())
metadata = st.dictionaries(st.sampled_from(["lang", "year", "draft"]), scalars, max_size=3)
filters = st.dictionaries(
    st.sampled_from(["lang", "year", "draft", "doc_id"]),
    st.one_of(scalars, st.lists(scalars, max_size=3)),
    min_size=1,
    max_size=3,
)


def table_of(docs: list[dict[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    for i, meta in enumerate(docs):
        text = json.dumps(meta, sort_keys=True)
        conn.execute("INSERT INTO documents VALUES (?, '', '', ?, 'x', 1, '')", (f"d{i}", text))
        conn.execute(INDEX_METADATA, (f"d{i}", text))
        conn.execute(
            "INSERT INTO chunks (doc_id, start, end, n_tokens) VALUES (?, 0, 1, 1)", (f"d{i}",)
        )
    return conn


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(metadata, max_size=12), wanted=filters)
def test_indexed_filters_select_what_the_documents_json_says(
    docs: list[dict[str, Any]], wanted: dict[str, Any]
) -> None:
    """The metadata table gives the rows that reading each document's JSON (version 1, and
    before this table) gives, for any filter: lists, booleans, numbers, absent keys."""
    conn = table_of(docs)
    fast, slow = compile_filters(wanted, indexed=True), compile_filters(wanted, indexed=False)
    got = {r[0] for r in conn.execute(fast.select, fast.select_params)}
    want = {r[0] for r in conn.execute(slow.select, slow.select_params)}
    assert got == want
    checked = {
        r[0]
        for r in conn.execute(f"SELECT c.id FROM chunks c WHERE {fast.check}", fast.check_params)
    }
    assert checked == want


@pytest.mark.parametrize(
    "wanted",
    [
        {"lang": "en"},
        {"doc_id": ["a", "b"]},
        {"lang": ["en", "fr"], "year": 2020},
        {"doc_id": "a", "x": 1},
    ],
)
def test_a_filter_is_index_lookups_never_a_scan(wanted: dict[str, Any]) -> None:
    """Listing the allowed chunks and checking a keyword hit use indexes only: their cost
    follows the rows they touch, not the index."""
    conn = table_of([])
    sql = compile_filters(wanted)
    plans = [
        conn.execute(f"EXPLAIN QUERY PLAN {sql.select} LIMIT 5", sql.select_params).fetchall(),
        conn.execute(
            f"EXPLAIN QUERY PLAN SELECT c.id FROM chunks c WHERE c.id IN (?, ?) AND {sql.check}",
            [1, 2, *sql.check_params],
        ).fetchall(),
    ]
    steps = [row[3] for plan in plans for row in plan]
    scans = [s for s in steps if s.startswith("SCAN")]
    assert scans == [], steps


def test_exact_search_ranks_exactly_the_given_ids_across_segments() -> None:
    rng = np.random.default_rng(3)
    store_vectors = rng.standard_normal((30, DIM)).astype(np.float32)
    loaded = []
    for lo in (0, 10, 20):
        index = faiss.index_factory(DIM, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
        index.add_with_ids(store_vectors[lo : lo + 10], np.arange(lo, lo + 10))
        loaded.append((Segment(f"v{lo}", "", 10, 0, lo), index))
    ids = np.array([1, 5, 12, 13, 27], dtype=np.int64)
    query = rng.standard_normal((2, DIM)).astype(np.float32)
    runs = exact_search(loaded, query, ids, 3)
    for q, run in zip(query, runs, strict=True):
        scores = store_vectors[ids] @ q
        order = ids[np.argsort(-scores)][:3]
        assert [i for i, _ in run] == order.tolist()
        assert np.allclose([s for _, s in run], np.sort(scores)[::-1][:3], atol=1e-5)
    assert exact_search(loaded, query, np.zeros(0, np.int64), 3) == [[], []]


def build(path: Path, exact_max: int, rng: np.random.Generator) -> tuple[Store, dict[int, Any]]:
    """An index of 120 one-chunk documents over six writes (six segments, some deleted),
    metadata ``lang`` in en/fr/de and ``year``; (store, chunk id -> (vector, metadata))."""
    store = Store(path, merge_factor=50, filter_exact_max=exact_max)
    store.create()
    for w in range(6):
        ups = []
        for i in range(20):
            n = w * 20 + i
            meta = {"lang": ["en", "fr", "de"][n % 3], "year": 2019 + n % 4}
            text = f"doc {n}"
            vec = rng.standard_normal((1, DIM)).astype(np.float32)
            ups.append(
                Upsert(
                    Document(f"d{n}", text, metadata=meta),
                    [Chunk(f"d{n}", 0, len(text), text, 2)],
                    vec,
                )
            )
        store.apply(ups)
    store.apply([], deletes=[f"d{n}" for n in range(0, 120, 7)])
    live: dict[int, Any] = {}
    with store.read() as snap:
        for _, index in snap.segments():
            ids, vecs = segment_vectors(index)
            rows = dict(
                snap._conn.execute(
                    "SELECT c.id, d.metadata FROM chunks c JOIN documents d ON d.id = c.doc_id"
                )
            )
            for i, v in zip(ids.tolist(), vecs, strict=True):
                if i in rows:
                    live[i] = (v, json.loads(rows[i]))
    return store, live


@pytest.mark.parametrize("exact_max", [0, 1_000])
@pytest.mark.parametrize(
    "wanted",
    [{"lang": "en"}, {"lang": ["fr", "de"], "year": [2019, 2020]}, {"year": 2022}, {"lang": []}],
)
def test_filtered_dense_search_is_exact_both_ways(
    tmp_path: Path, exact_max: int, wanted: dict[str, Any]
) -> None:
    """Whether the allowed chunks are compared one by one (few) or the segments searched
    and the hits filtered (many), the answer is the exact top k among the allowed."""
    rng = np.random.default_rng(7)
    store, live = build(tmp_path / "idx", exact_max, rng)
    queries = rng.standard_normal((5, DIM)).astype(np.float32)

    def allows(meta: dict[str, Any]) -> bool:
        return all(meta.get(k) in (v if isinstance(v, list) else [v]) for k, v in wanted.items())

    allowed = {i: v for i, (v, meta) in live.items() if allows(meta)}
    with store.read() as snap:
        runs = snap.dense(queries, 10, wanted)
    for q, hits in zip(queries, runs, strict=True):
        want = sorted(allowed, key=lambda i: -float(allowed[i] @ q))[:10]
        assert [h.id for h in hits] == want
    store.close()


def test_a_wide_filter_whose_chunks_sit_in_one_segment_does_not_search_the_others_whole(
    tmp_path: Path,
) -> None:
    """Three segments of 300 chunks; the filter allows only the newest one's. The result is
    exact, and the older segments are not re-asked until exhausted: once their lowest score
    falls below the 10th best allowed hit, they stop (far fewer ids checked than stored)."""
    rng = np.random.default_rng(11)
    store = Store(tmp_path / "idx", merge_factor=50, filter_exact_max=0)
    store.create()
    vectors = {}
    for w, lang in enumerate(["en", "fr", "de"]):
        v = rng.standard_normal((300, DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        vectors[lang] = v
        text = "x" * 300
        chunks = [Chunk(f"d{w}", i, i + 1, "x", 1) for i in range(300)]
        doc = Document(f"d{w}", text, metadata={"lang": lang})
        store.apply([Upsert(doc, chunks, v)])
    checked: list[int] = []
    with store.read() as snap:
        real = snap._filters.allowed

        def counting(sql: Any, ids: Any) -> set[int]:
            ids = list(ids)
            checked.append(len(ids))
            return real(sql, ids)

        snap._filters.allowed = counting  # type: ignore[method-assign]
        query = vectors["de"][:3] + 0.3 * rng.standard_normal((3, DIM)).astype(np.float32)
        runs = snap.dense(query, 10, {"lang": "de"})
        first_de = min(
            i for _, index in snap.segments() for i in segment_vectors(index)[0] if i > 600
        )
    for q, hits in zip(query, runs, strict=True):
        want = (np.argsort(-(vectors["de"] @ q))[:10] + first_de).tolist()
        assert [h.id for h in hits] == want
    # The share sample (500 ids) plus the searches' hits: well under the 900 stored, twice.
    assert sum(checked) - 500 < 900
    store.close()


def test_the_listing_is_driven_by_the_most_selective_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx")
    store.create()
    ups = []
    for n in range(40):
        meta = {"lang": "en", "year": 1999 if n < 2 else 2020}
        text = f"doc {n}"
        chunk = Chunk(f"d{n}", 0, len(text), text, 2)
        ups.append(
            Upsert(Document(f"d{n}", text, metadata=meta), [chunk], np.ones((1, DIM), np.float32))
        )
    store.apply(ups)
    with store.read() as snap:
        for wanted in ({"lang": "en", "year": 1999}, {"year": 1999, "lang": "en"}):
            sql = snap._filters.compile(wanted)
            assert sql.select_params[:2] == ("year", 1999)
            assert len(snap._conn.execute(sql.select, sql.select_params).fetchall()) == 2
    store.close()


def test_exact_search_leaves_out_ids_below_every_segment() -> None:
    index = faiss.index_factory(DIM, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(np.eye(DIM, dtype=np.float32)[:4], np.arange(10, 14))
    loaded = [(Segment("v", "", 4, 0, 10), index)]
    runs = exact_search(loaded, np.eye(DIM, dtype=np.float32)[:1], np.array([3, 10, 12]), 5)
    assert [i for i, _ in runs[0]] == [10, 12]
