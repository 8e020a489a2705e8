"""Vector segments: the immutable FAISS files an index's vectors live in, as Lucene keeps
its postings.

A commit writes its new vectors as one new segment (``vectors.<n>.faiss``) and never
rewrites an old one, so its cost follows the batch, not the index. A chunk whose row is
deleted keeps its vector in its segment until a merge: the segment's ``dead`` count says
how many of its vectors are tombstones, and a search asks each segment for that many more
hits and keeps those whose chunk row is still in the snapshot (chunk ids are never reused).

Segments hold disjoint, increasing ranges of chunk ids (ids grow with every commit and only
adjacent segments are merged), so the segment of an id is found by bisection on ``lo``.
The manifest names the live segments (``segments``, JSON), in the same SQLite transaction
as the rows they belong to.

Merge policy (log-structured, as Lucene's LogMergePolicy): segments are grouped in tiers of
live size, tier t holding up to ``factor ** t`` times the smallest; ``factor`` adjacent
segments of one tier merge into one of the next, so each vector is rewritten about
log_factor(N) times in all; a segment whose dead share passes ``max_dead`` is rewritten
alone.
"""

from __future__ import annotations

import bisect
import collections
import functools
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import faiss
import numpy as np

# The id maps a segment may be written with (prefixes of its factory string).
ID_MAPS = ("IDMap,", "IDMap2,")

SEGMENT_PATTERN = "vectors.{}.faiss"
# Manifest keys of the single-file layout before segments (read as one segment).
LEGACY_KEYS = ("faiss_file", "faiss_sha256")


@dataclass(frozen=True, slots=True)
class Segment:
    """One immutable vector file: ``count`` vectors of chunk ids from ``lo`` up to the next
    segment's ``lo``, ``dead`` of them tombstones."""

    file: str
    sha256: str | None
    count: int
    dead: int
    lo: int

    @property
    def live(self) -> int:
        return self.count - self.dead


def read_segments(manifest: Mapping[str, str], legacy_count: int = -1) -> list[Segment]:
    """The live segments a manifest names. An index written before segments names one file
    (``faiss_file``), whose deletes were applied to it: it is one segment with no dead
    vectors (its count is ``legacy_count``, which only the writer needs)."""
    raw = manifest.get("segments")
    if raw is not None:
        return [Segment(**s) for s in json.loads(raw)]
    name = manifest.get("faiss_file")
    if name is None:
        return []
    return [Segment(name, manifest.get("faiss_sha256"), legacy_count, 0, 0)]


def dump_segments(segments: Sequence[Segment]) -> str:
    return json.dumps([asdict(s) for s in segments], separators=(",", ":"))


def segment_file(number: int) -> str:
    return SEGMENT_PATTERN.format(number)


def tombstone(segments: Sequence[Segment], ids: Sequence[int] | np.ndarray) -> list[Segment]:
    """``segments`` with ``ids`` (chunk ids whose rows are being deleted) counted dead, and
    segments left with no live vector dropped."""
    los = [s.lo for s in segments]
    dead = [0] * len(segments)
    for i in ids:
        k = bisect.bisect_right(los, int(i)) - 1
        if k < 0:
            raise ValueError(f"chunk id {i} is in no segment")
        dead[k] += 1
    out = []
    for s, d in zip(segments, dead, strict=True):
        s = replace(s, dead=s.dead + d) if d else s
        if s.live > 0:
            out.append(s)
    return out


def plan_merge(segments: Sequence[Segment], factor: int, max_dead: float) -> tuple[int, int] | None:
    """The run ``[i, j)`` of adjacent segments to merge next, or None.

    First a segment whose dead share is above ``max_dead`` (rewritten alone), then the
    first run of ``factor`` adjacent segments in one size tier (tier: floor(log_factor of
    live size over the smallest live size))."""
    for i, s in enumerate(segments):
        if s.count > 0 and s.dead / s.count > max_dead:
            return i, i + 1
    if len(segments) < factor:
        return None
    floor = max(1, min(s.live for s in segments))
    tiers = [int(math.log(max(s.live, 1) / floor, factor)) for s in segments]
    run = 1
    for i in range(1, len(tiers)):
        run = run + 1 if tiers[i] == tiers[i - 1] else 1
        if run == factor:
            return i - factor + 1, i + 1
    return None


@dataclass(frozen=True, slots=True)
class AnnPolicy:
    """Which segments are approximate and how they are built and searched: ``index_type``
    (a factory string without IDMap2; empty: none) from ``min_vectors`` vectors on, HNSW
    ``ef_construction`` for the graphs merges build, HNSW ``ef_search`` and IVF ``nprobe``
    set on every loaded segment; a segment of fewer than ``small_vectors`` vectors is
    searched with ``small_ef_search`` instead (0: no such tier), as a small graph finds its
    nearest vectors with fewer candidates."""

    index_type: str = ""
    min_vectors: int = 20_000
    ef_search: int = 384
    nprobe: int = 32
    ef_construction: int = 80
    small_vectors: int = 0
    small_ef_search: int = 0

    def ef_search_for(self, vectors: int) -> int:
        """The HNSW efSearch of a segment of ``vectors`` vectors."""
        if self.small_ef_search and vectors < self.small_vectors:
            return self.small_ef_search
        return self.ef_search

    def tune(self, index: faiss.Index) -> None:
        """Set the search parameters on a segment index (a no-op for exact ones); an IVF
        one also gets its direct map, so its vectors can be looked up by position."""
        inner = faiss.downcast_index(getattr(faiss.downcast_index(index), "index", index))
        hnsw = getattr(inner, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = self.ef_search_for(int(index.ntotal))
            hnsw.efConstruction = self.ef_construction  # used when a merge adds vectors
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.nprobe = self.nprobe
            if ivf.direct_map.type == faiss.DirectMap.NoMap:  # type: ignore[attr-defined]
                ivf.make_direct_map()


def same_storage(a: str, b: str) -> bool:
    """Whether two segment factory strings store vectors alike (IDMap and IDMap2 differ only
    in how a segment finds an id's row, which both read)."""
    return a.replace("IDMap2,", "IDMap,", 1) == b.replace("IDMap2,", "IDMap,", 1)


def _segment_ids(index: faiss.Index) -> np.ndarray:
    """The chunk ids of a segment's rows, in row order, without copying (a view valid while
    ``index`` lives)."""
    mapped: Any = faiss.downcast_index(index)
    n = int(mapped.id_map.size())
    if not n:
        return np.zeros(0, dtype=np.int64)
    return faiss.rev_swig_ptr(mapped.id_map.data(), n)


def lookup_vectors(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (sorted, every one in the segment): an IDMap2 segment
    through its reverse map, an IDMap one by bisection over its increasing ids, so the cost
    follows ``len(ids)``, not the segment."""
    mapped: Any = faiss.downcast_index(index)
    if isinstance(mapped, faiss.IndexIDMap2):
        return mapped.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
    rows = _segment_ids(mapped)
    at = np.searchsorted(rows, ids)
    if len(ids) and (at.max() >= len(rows) or not np.array_equal(rows[at], ids)):
        raise ValueError("chunk ids not in this segment (or its ids are out of order)")
    return faiss.downcast_index(mapped.index).reconstruct_batch(at.astype(np.int64))


def segment_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a segment written as ``IDMap``/``IDMap2`` over a storage that
    reconstructs (flat, HNSW flat, scalar quantisers)."""
    mapped: Any = faiss.downcast_index(index)
    ids = faiss.vector_to_array(mapped.id_map).astype(np.int64)
    inner = faiss.downcast_index(mapped.index)
    vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d))
    return ids, np.ascontiguousarray(vectors, dtype=np.float32)


def run_dim(indexes: Sequence[faiss.Index]) -> int:
    """The vector dimension of a run of segments (one index, one dimension)."""
    dims = {int(index.d) for index in indexes}
    if len(dims) != 1:
        raise ValueError(f"segments of different dimensions: {sorted(dims)}")
    return dims.pop()


_T = TypeVar("_T")

# A dense search spreads its segments over threads from this many vectors on (below it, a
# search takes a millisecond or two and handing it to threads costs more than it saves).
PARALLEL_MIN_VECTORS = 50_000


def search_segments(
    loaded: Sequence[tuple[Segment, faiss.Index]],
    queries: np.ndarray,
    depth: int,
    alive: Callable[[set[int]], set[int]],
    share: float | None = None,
    pool: SearchThreads | None = None,
) -> list[list[tuple[int, float]]]:
    """Per query, the ``depth`` best live (id, score) hits over every segment, best first.

    A segment with tombstones is asked for more hits in proportion to its dead share (the
    share expected among its nearest if deletes fall anywhere), and again for twice as many
    for a query left short (its nearest were deleted), never more than ``depth + dead``:
    the cost follows ``depth``, not the number of tombstones. ``alive`` says which of some
    ids still have their rows. With ``share`` (a filter allowing about that share of the
    chunks, which ``alive`` then checks too), each segment is asked for ``depth / share``
    hits, and for twice as many while short, up to all of it.

    Every segment is asked once before any is asked again, and a segment is not asked again
    for a query once its last answer's lowest score is below the query's ``depth``-th best
    hit over all segments: nothing further in it can enter the result (a filter whose
    allowed chunks all sit in one segment does not make the others be searched whole).

    With ``pool``, that first pass (every segment asked for every query) runs on its
    threads, the segments side by side (faiss releases the GIL while it searches); the
    hits are then taken in segment order, as without it. When no segment holds tombstones
    and nothing is filtered, no segment can be asked again, and the first pass's hits are
    merged in one array sort instead of hit by hit (same order: ties in segment order)."""
    n = len(queries)
    # The latest hits of each segment per query (a re-ask replaces a segment's hits).
    best: list[dict[int, list[tuple[int, float]]]] = [{} for _ in range(n)]
    rounds: list[tuple[int, faiss.Index, int, int, list[int]]] = []
    for number, (segment, index) in enumerate(loaded):
        most = min(depth + segment.dead, index.ntotal) if share is None else index.ntotal
        if most <= 0:
            continue
        extra = math.ceil(depth * segment.dead / max(segment.live, 1)) if segment.dead else 0
        want = depth + extra if share is None else math.ceil((depth + extra) / max(share, 1e-6))
        rounds.append((number, index, min(want, most), most, list(range(n))))
    filtered = share is not None
    # The first pass asks every segment for every query (nothing is known yet to prune).
    ahead: list[tuple[np.ndarray, np.ndarray]] | None = None
    if pool is not None and len(rounds) > 1:
        # Largest segments first: the threads end together (a longest-job-first schedule).
        order = sorted(range(len(rounds)), key=lambda pos: -rounds[pos][1].ntotal)
        jobs = [functools.partial(_ask, rounds[pos][1], queries, rounds[pos][2]) for pos in order]
        got = dict(zip(order, pool.run(jobs), strict=True))
        ahead = [got[pos] for pos in range(len(rounds))]
    if not filtered and rounds and all(loaded[r[0]][0].dead == 0 for r in rounds):
        return _merged(ahead or [_ask(r[1], queries, r[2]) for r in rounds], depth)
    while rounds:
        later = []
        for pos, (number, index, k, most, pending) in enumerate(rounds):
            segment = loaded[number][0]
            if ahead is not None:
                asked = pending
                scores, ids = ahead[pos]
            else:
                asked = [qi for qi in pending if _may_improve(best[qi], number, depth)]
                if not asked:
                    continue
                scores, ids = index.search(queries[asked], k)
            found = {int(i) for i in ids.ravel() if i >= 0}
            live = alive(found) if segment.dead or filtered else found
            short = []
            for row, qi in enumerate(asked):
                hits = [
                    (int(i), float(s))
                    for i, s in zip(ids[row], scores[row], strict=True)
                    if i >= 0 and int(i) in live
                ]
                best[qi][number] = hits[:depth]
                returned = scores[row][ids[row] >= 0]
                if len(hits) < depth and k < most and len(returned):
                    best[qi][-1 - number] = [(-1, float(returned.min()))]  # its floor
                    short.append(qi)
            if short:
                later.append((number, index, min(2 * k, most), most, short))
        rounds = later
        ahead = None
    out = []
    for per_segment in best:
        hits = [h for key, run in per_segment.items() if key >= 0 for h in run]
        hits.sort(key=lambda h: -h[1])
        out.append(hits[:depth])
    return out


def _ask(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One segment's ``k`` nearest for every query: (scores, ids), -1 ids where short
    (typed here as the arrays faiss returns; its stubs say tensors)."""
    scores, ids = index.search(queries, k)
    return scores, ids


def _merged(
    found: Sequence[tuple[np.ndarray, np.ndarray]], depth: int
) -> list[list[tuple[int, float]]]:
    """Per query, the ``depth`` best of every segment's (scores, ids), best first, ties in
    segment order (a stable sort over the segments' hits side by side)."""
    scores = np.concatenate([f[0] for f in found], axis=1)
    ids = np.concatenate([f[1] for f in found], axis=1)
    out = []
    for row_scores, row_ids in zip(scores, ids, strict=True):
        real = row_ids >= 0
        row_scores, row_ids = row_scores[real], row_ids[real]
        top = np.argsort(-row_scores, kind="stable")[:depth]
        out.append(list(zip(row_ids[top].tolist(), row_scores[top].tolist(), strict=True)))
    return out


def _may_improve(
    per_segment: Mapping[int, list[tuple[int, float]]], number: int, depth: int
) -> bool:
    """Whether asking segment ``number`` again could change a query's top ``depth``: yes
    before it was asked, or while the lowest score it returned (kept under ``-1 - number``)
    is not below the ``depth``-th best hit of all segments."""
    floor = per_segment.get(-1 - number)
    if floor is None:
        return True
    scores = sorted(
        (s for key, run in per_segment.items() if key >= 0 for _, s in run), reverse=True
    )
    return len(scores) < depth or floor[0][1] >= scores[depth - 1]


def exact_search(
    loaded: Sequence[tuple[Segment, faiss.Index]],
    queries: np.ndarray,
    ids: np.ndarray,
    depth: int,
) -> list[list[tuple[int, float]]]:
    """Per query, the ``depth`` best of exactly the chunks ``ids`` (sorted, live), by inner
    product with their stored vectors: each id is looked up in the segment whose range holds
    it (bisection on ``lo``), so the cost follows ``len(ids)``, not the index."""
    if not len(ids):
        return [[] for _ in range(len(queries))]
    los = [s.lo for s, _ in loaded]
    owner = np.searchsorted(np.asarray(los, dtype=np.int64), ids, side="right") - 1
    parts = []
    for i in np.unique(owner):
        if i < 0:
            continue
        index = loaded[int(i)][1]
        parts.append(lookup_vectors(index, ids[owner == i]))
    vectors = np.concatenate(parts) if parts else np.zeros((0, queries.shape[1]), np.float32)
    kept = ids[owner >= 0]
    scores = queries @ vectors.T
    k = min(depth, len(kept))
    out = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-row[top], kind="stable")]
        out.append([(int(kept[j]), float(row[j])) for j in top])
    return out


def _one_omp_thread() -> None:
    """A search thread's faiss runs single-threaded (an OpenMP setting of the calling
    thread): the pool already runs segments side by side, and a single query's search
    gains nothing from an OpenMP team but its start-up cost (on 2 cores, nested teams
    oversubscribe them)."""
    faiss.omp_set_num_threads(1)


class SearchThreads:
    """The threads a question's dense search spreads its segments over: made on first
    use, shared by every snapshot of a store; none for ``count`` < 2."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor | None:
        if self.count < 2:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.count, thread_name_prefix="segment-search", initializer=_one_omp_thread
                )
            return self._pool

    def run(self, jobs: Sequence[Callable[[], _T]]) -> list[_T]:
        """Every job's result, in order. Each thread takes the next job nobody has started
        until none is left: ``count`` hand-overs per call instead of one per job (about
        0.05 ms each), and a thread that drew small segments takes more of them while the
        other searches a large one. Without threads (``count`` < 2), in the calling one."""
        pool = self.get()
        if pool is None or len(jobs) < 2:
            return [job() for job in jobs]
        results: list[Any] = [None] * len(jobs)
        todo = collections.deque(range(len(jobs)))

        def drain() -> None:
            while True:
                try:
                    number = todo.popleft()  # atomic: each job is taken once
                except IndexError:
                    return
                try:
                    results[number] = jobs[number]()
                except BaseException:
                    todo.clear()  # the others start nothing more
                    raise

        futures = [pool.submit(drain) for _ in range(min(self.count, len(jobs)))]
        # Every thread is done before this returns or raises: no job outlives the call
        # (and the read it searches for).
        errors = [f.exception() for f in futures]
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            raise failed
        return results
