"""Vector segments: tombstones, the merge policy, and a segmented search equal to exact
search through any sequence of writes, deletes and merges."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rag.models import Chunk, Document
from rag.store import Segment, Store, Upsert, plan_merge, read_segments, tombstone

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
