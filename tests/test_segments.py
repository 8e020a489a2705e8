"""Vector segments: tombstones, the merge policy, and a segmented search equal to exact
search through any sequence of writes, deletes and merges."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rag.models import Chunk, Document
from rag.store import AnnPolicy, Segment, Store, Upsert, plan_merge, read_segments, tombstone
from tests.conftest import ROOT

DIM = 8


def seg(lo: int, count: int, dead: int = 0) -> Segment:
    return Segment(f"vectors.{lo}.faiss", None, count, dead, lo)


def test_tombstones_are_counted_in_the_segment_of_their_id_range() -> None:
    segments = [seg(1, 3), seg(4, 2), seg(6, 5)]
    out = tombstone(segments, [1, 2, 3, 6])
    # The first segment has no live vector left: dropped; the third has one dead.
    assert [(s.lo, s.count, s.dead) for s in out] == [(4, 2, 0), (6, 5, 1)]
    with pytest.raises(ValueError, match="in no segment"):
        tombstone([seg(5, 1)], [1])


def test_the_merge_policy_merges_a_tier_of_adjacent_segments_or_a_mostly_dead_one() -> None:
    assert plan_merge([seg(1, 1), seg(2, 1)], factor=3, max_dead=0.3) is None
    assert plan_merge([seg(1, 1), seg(2, 1), seg(3, 1)], factor=3, max_dead=0.3) == (0, 3)
    # A big segment and three small ones after it: the small ones merge.
    big = [seg(1, 9), seg(10, 1), seg(11, 1), seg(12, 1)]
    assert plan_merge(big, factor=3, max_dead=0.3) == (1, 4)
    # Not adjacent in one tier: nothing.
    assert plan_merge([seg(1, 1), seg(2, 9), seg(11, 1)], factor=2, max_dead=0.3) is None
    assert plan_merge([seg(1, 10, dead=4)], factor=10, max_dead=0.3) == (0, 1)
    assert plan_merge([seg(1, 10, dead=3)], factor=10, max_dead=0.3) is None


def test_a_store_refuses_a_merge_policy_that_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Store(tmp_path / "x", merge_factor=1)
    with pytest.raises(ValueError):
        Store(tmp_path / "x", max_dead=0.0)


def _upsert(doc_id: str, vectors: np.ndarray) -> Upsert:
    text = "x" * len(vectors)
    chunks = [Chunk(doc_id, i, i + 1, "x", 1) for i in range(len(vectors))]
    return Upsert(Document(doc_id, text), chunks, vectors)


def _live(store: Store) -> dict[int, tuple[str, int]]:
    with store.read() as snap:
        rows = snap._conn.execute("SELECT id, doc_id, start FROM chunks").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


Op = tuple[str, int, int]  # ("put" | "delete", document number, chunks)
ops = st.lists(
    st.tuples(st.sampled_from(["put", "put", "delete"]), st.integers(0, 7), st.integers(1, 6)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(
    ops=ops,
    factor=st.integers(2, 4),
    max_dead=st.sampled_from([0.2, 0.5, 1.0]),
    seed=st.integers(0, 9),
)
def test_segmented_search_equals_exact_search(
    ops: list[Op], factor: int, max_dead: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "idx", merge_factor=factor, max_dead=max_dead)
        store.create()
        vectors: dict[str, np.ndarray] = {}
        for kind, number, n in ops:
            doc = f"d{number}"
            if kind == "put":
                vectors[doc] = rng.standard_normal((n, DIM)).astype(np.float32)
                store.apply([_upsert(doc, vectors[doc])])
            else:
                vectors.pop(doc, None)
                store.apply(deletes=[doc])
            live = _live(store)
            segments = read_segments(store.manifest())
            assert sum(s.live for s in segments) == len(live)
            assert all(s.live > 0 and s.dead / s.count <= max_dead for s in segments)
            # Exact search over the live vectors, against the segmented one.
            query = rng.standard_normal((2, DIM)).astype(np.float32)
            ids = np.array(sorted(live), dtype=np.int64)
            matrix = np.array([vectors[live[i][0]][live[i][1]] for i in ids]).reshape(-1, DIM)
            with store.read() as snap:
                got = snap.dense(query, depth=5)
            for qi in range(len(query)):
                scores = matrix @ query[qi]
                want = ids[np.argsort(-scores, kind="stable")][:5].tolist()
                assert [h.id for h in got[qi]] == want
        store.close()


def test_writes_merge_into_logarithmically_many_segments(tmp_path: Path) -> None:
    """64 writes of one vector each with merge factor 2 behave as a binary counter: 63
    merges leave one segment of 64, each vector rewritten log2(64) = 6 times (not once per
    later write, as one rewritten file would)."""
    store = Store(tmp_path / "idx", merge_factor=2)
    store.create()
    rng = np.random.default_rng(0)
    for i in range(64):
        store.apply([_upsert(f"d{i}", rng.standard_normal((1, DIM)).astype(np.float32))])
    segments = read_segments(store.manifest())
    assert [s.count for s in segments] == [64]
    # Files written (the generation counter numbers each): 64 writes and 63 merges.
    assert int(store.manifest()["generation"]) == 64 + 63
    store.close()


def test_a_search_whose_nearest_vectors_were_deleted_asks_again(tmp_path: Path) -> None:
    """Deletes that take exactly a query's nearest vectors: the first ask of the segment
    (depth plus its dead share) comes back short, and the second finds the live ones."""
    rng = np.random.default_rng(3)
    query = rng.standard_normal(DIM).astype(np.float32)
    near = query + 0.01 * rng.standard_normal((5, DIM)).astype(np.float32)
    far = rng.standard_normal((20, DIM)).astype(np.float32)
    store = Store(tmp_path / "idx", max_dead=0.5)
    store.create()
    store.apply([_upsert("near", near), _upsert("far", far)])
    store.apply(deletes=["near"])
    (segment,) = read_segments(store.manifest())
    assert (segment.count, segment.dead) == (25, 5)
    with store.read() as snap:
        (hits,) = snap.dense(query[None, :], depth=5)
        far_ids = sorted(_live(store))
    want = [far_ids[i] for i in np.argsort(-(far @ query))[:5]]
    assert [h.id for h in hits] == want
    store.close()


def _inner_type(index: faiss.Index) -> str:
    return type(faiss.downcast_index(faiss.downcast_index(index).index)).__name__


def test_small_approximate_segments_are_searched_with_their_own_ef(tmp_path: Path) -> None:
    """A segment under ``small_vectors`` is searched with ``small_ef_search``, a larger one
    with ``ef_search``: read from disk, and installed by the merge that built it (its heap
    copy, without mapped vectors: tuned while still empty, so tuned again once its size is
    known)."""
    assert AnnPolicy(ef_search=48).ef_search_for(10) == 48  # no small tier unless asked
    policy = AnnPolicy("HNSW32_SQ8", 300, 48, small_vectors=1000, small_ef_search=16)
    assert (policy.ef_search_for(999), policy.ef_search_for(1000)) == (16, 48)
    rng = np.random.default_rng(7)
    large = dataclasses.replace(policy, small_vectors=300)  # 400 vectors: not small
    store = Store(tmp_path / "idx", merge_factor=10, ann=large, mmap_vectors=False)
    store.create()
    for i in range(10):
        store.apply([_upsert(f"d{i}", rng.standard_normal((40, DIM)).astype(np.float32))])
        with store.read() as snap:  # a reader: the merge's own index is installed for it
            snap.dense(np.ones((1, DIM), np.float32), depth=1)
    with store.read() as snap:
        ((segment, index),) = snap.segments()
        assert segment.count == 400
        assert faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch == 48
    store.close()
    again = Store(tmp_path / "idx", ann=policy)  # read from disk: 400 < 1000, small
    with again.read() as snap:
        ((_, index),) = snap.segments()
        assert faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch == 16
    again.close()


def test_a_merge_past_the_ann_size_builds_an_approximate_segment(tmp_path: Path) -> None:
    """Ten writes of 40 vectors merge into one HNSW segment over 8-bit codes (trained on
    its own vectors, efSearch set on it); it answers its own vectors first, serves exact
    filtered search by reconstruction, and takes deletes and a rewrite like any segment."""
    rng = np.random.default_rng(5)
    ann = AnnPolicy("HNSW32_SQ8", min_vectors=300, ef_search=48)
    store = Store(tmp_path / "idx", merge_factor=10, max_dead=0.3, ann=ann)
    store.create()
    vectors = {f"d{i}": rng.standard_normal((40, DIM)).astype(np.float32) for i in range(10)}
    for doc, v in vectors.items():
        v /= np.linalg.norm(v, axis=1, keepdims=True)  # unit: each is its own nearest
        store.apply([_upsert(doc, v)])
    with store.read() as snap:
        ((segment, index),) = snap.segments()
        assert segment.count == 400 and _inner_type(index) == "IndexHNSWSQ"
        assert faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch == 48
        hits = snap.dense(vectors["d3"][:5], depth=1)
        live = _live(store)
        assert [live[h[0].id] for h in hits] == [("d3", i) for i in range(5)]
        # Reconstructed from 8-bit codes: close to the vectors given, not equal.
        exact = snap.dense(vectors["d3"][:1], depth=3, filters={"doc_id": "d3"})
        assert live[exact[0][0].id] == ("d3", 0)
    store.apply(deletes=["d0", "d1", "d2", "d3"])  # 40 % dead: rewritten without them
    (segment,) = read_segments(store.manifest())
    assert (segment.count, segment.dead) == (240, 0)
    with store.read() as snap:
        ((_, index),) = snap.segments()
        assert _inner_type(index).startswith("IndexFlat")  # 240 < 300: exact again
    store.close()
    # A fresh process loads the approximate segment with the policy's search setting.
    again = Store(tmp_path / "idx", ann=AnnPolicy("HNSW32_SQ8", min_vectors=300, ef_search=20))
    for doc, v in vectors.items():
        if doc < "d4":
            again.apply([_upsert(doc, v)])
    merged = [s for s in read_segments(again.manifest()) if s.count >= 300]
    with again.read() as snap:
        loaded = dict((s.file, i) for s, i in snap.segments())
        for s in merged:
            inner = faiss.downcast_index(faiss.downcast_index(loaded[s.file]).index)
            assert inner.hnsw.efSearch == 20
    again.close()


@pytest.mark.model
def test_ann_segments_keep_recall_on_real_embeddings(tmp_path: Path, real_embedder: Any) -> None:
    """Real embeddings (sentences of SQuAD v1.1 dev paragraphs, their questions as queries):
    the store's approximate segments, as configured by default save for their size
    threshold, find at least 0.95 of the exact top 10."""
    from rag.settings import IndexSettings

    with gzip.open(ROOT / "eval" / "gold" / "squad-dev-v1.1.json.gz", "rt") as fh:
        data = json.load(fh)["data"]
    paragraphs = [p for a in data for p in a["paragraphs"]][:300]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p["context"])][:1500]
    questions = [q["question"] for p in paragraphs for q in p["qas"]][:200]
    vectors = real_embedder.embed(sentences)
    queries = real_embedder.embed(questions)
    defaults = IndexSettings()
    ann = AnnPolicy(
        defaults.ann_index_type,
        500,
        defaults.ann_ef_search,
        defaults.ann_nprobe,
        defaults.ann_ef_construction,
        defaults.ann_small_vectors,
        defaults.ann_small_ef_search,
    )
    assert ann.ef_search_for(1500) == defaults.ann_small_ef_search  # the small tier's
    store = Store(tmp_path / "idx", merge_factor=10, ann=ann)
    store.create()
    step = len(vectors) // 10  # ten writes: one merge, into one approximate segment
    vectors = vectors[: 10 * step]
    for k in range(0, len(vectors), step):
        store.apply([_upsert(f"d{k:05d}", vectors[k : k + step])])
    with store.read() as snap:
        ((segment, index),) = snap.segments()
        assert segment.count == len(vectors) and "Flat" not in _inner_type(index)
        got = snap.dense(queries, depth=10)
    rows = dict(_live(store))
    order = {key: n for n, key in enumerate(sorted(rows.values()))}
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [[order[rows[h.id]] for h in hits] for hits in got]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95, recall
    store.close()


def test_a_process_that_only_writes_keeps_no_segment_in_memory(tmp_path: Path) -> None:
    """An ingest's memory follows what it writes, not the index: its segments (written or
    loaded for a merge) leave memory after each commit; once it has read, the newest stay
    loaded for the next question."""
    store = Store(tmp_path / "idx", merge_factor=3)
    store.create()
    rng = np.random.default_rng(2)
    for i in range(7):
        store.apply([_upsert(f"d{i}", rng.standard_normal((2, DIM)).astype(np.float32))])
        assert store.cache.loaded == {}
    with store.read() as snap:
        assert len(snap.segments()) == len(read_segments(store.manifest()))
    store.apply([_upsert("d9", rng.standard_normal((2, DIM)).astype(np.float32))])
    assert set(store.cache.loaded) == {s.file for s in read_segments(store.manifest())}
    store.close()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    dead_every=st.integers(2, 7),
    depth=st.integers(1, 12),
    share=st.sampled_from([None, 0.3, 0.8]),
    seed=st.integers(0, 2**16),
)
def test_segments_searched_side_by_side_give_the_same_hits(
    sizes: list[int], dead_every: int, depth: int, share: float | None, seed: int
) -> None:
    """The first pass on a thread pool (RAG_SEARCH_THREADS) returns exactly the hits of
    the segments searched one after another, tombstones and filters included."""
    from rag.store.segments import SearchThreads, search_segments

    rng = np.random.default_rng(seed)
    loaded = []
    lo = 1
    for n in sizes:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
        ids = np.arange(lo, lo + n, dtype=np.int64)
        index.add_with_ids(rng.standard_normal((n, DIM)).astype(np.float32), ids)
        dead = sum(1 for i in ids if i % dead_every == 0)
        loaded.append((Segment(f"vectors.{lo}.faiss", None, n, dead, lo), index))
        lo += n

    def alive(found: set[int]) -> set[int]:
        return {i for i in found if i % dead_every and (share is None or i % 3)}

    queries = rng.standard_normal((3, DIM)).astype(np.float32)
    alone = search_segments(loaded, queries, depth, alive, share=share)
    side = search_segments(loaded, queries, depth, alive, share=share, pool=SearchThreads(2))
    assert side == alone


def test_idmap2_segments_are_read_beside_idmap_ones_and_filtered_search_is_exact(
    tmp_path: Path,
) -> None:
    """An index written with IDMap2 segments (before the reverse map was dropped) opens under
    the IDMap default without a rebuild; new segments are IDMap; a filter's exact search
    looks vectors up in both kinds and equals brute force over the stored vectors."""
    rng = np.random.default_rng(3)
    old = Store(tmp_path / "idx", faiss_index_type="IDMap2,Flat")
    old.create()
    vectors = {d: rng.standard_normal((3, DIM)).astype(np.float32) for d in "abcd"}
    old.apply([_upsert("a", vectors["a"]), _upsert("b", vectors["b"])])
    old.apply(manifest={"faiss_index_type": "IDMap2,Flat"})
    old.close()
    store = Store(tmp_path / "idx")
    store.check_compatible({"faiss_index_type": "IDMap,Flat"})
    with pytest.raises(Exception, match="was built with"):
        store.check_compatible({"faiss_index_type": "IDMap,HNSW32"})
    store.apply([_upsert("c", vectors["c"]), _upsert("d", vectors["d"])])
    with store.read() as snap:
        kinds = {type(faiss.downcast_index(index)).__name__ for _, index in snap.segments()}
        assert kinds == {"IndexIDMap2", "IndexIDMap"}
        query = rng.standard_normal(DIM).astype(np.float32)
        for allowed in (["a", "c"], ["b", "d"], ["d"]):
            (hits,) = snap.dense(query[None, :], depth=4, filters={"doc_id": allowed})
            rows = np.concatenate([vectors[d] for d in allowed])
            scores = sorted((rows @ query).tolist(), reverse=True)[:4]
            assert [round(h.score, 4) for h in hits] == [round(s, 4) for s in scores]
    store.close()


def test_a_vector_lookup_refuses_ids_a_segment_does_not_hold() -> None:
    from rag.store.segments import lookup_vectors

    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    stored = np.random.default_rng(0).standard_normal((4, DIM)).astype(np.float32)
    index.add_with_ids(stored, np.array([2, 5, 9, 11], dtype=np.int64))
    assert np.allclose(lookup_vectors(index, np.array([5, 11])), stored[[1, 3]])
    for missing in ([3], [12], [5, 6]):
        with pytest.raises(ValueError, match="not in this segment"):
            lookup_vectors(index, np.array(missing))


def test_search_threads_run_every_job_in_order_and_stop_at_a_failure() -> None:
    """``SearchThreads.run`` returns each job's result in order; when a job fails, no job
    is started after it and none is still running once the call has raised."""
    import functools
    import time

    from rag.store.segments import SearchThreads

    threads = SearchThreads(2)
    assert threads.run([functools.partial(pow, i, 2) for i in range(10)]) == [
        i * i for i in range(10)
    ]
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("a damaged segment")
        time.sleep(0.01)
        return i

    with pytest.raises(ValueError, match="damaged"):
        threads.run([functools.partial(job, i) for i in range(50)])
    seen = len(started)
    time.sleep(0.1)
    assert len(started) == seen < 50
