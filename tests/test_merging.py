"""Background segment merges: built without the write lock while writes and questions go
on, committed in one step that carries the run's new tombstones; one merger at a time;
the merges asked for are finished before the interpreter exits."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings, strategies as st

from rag.store import Store, read_segments
from tests.conftest import ROOT
from tests.test_segments import DIM, Op, _live, _upsert, ops

# A deadlock guard for the threads below, not a time asserted: generous on a loaded box.
GUARD_S = 60.0


def _exact_top(store: Store, vectors: dict[str, np.ndarray], query: np.ndarray) -> list[int]:
    live = _live(store)
    ids = np.array(sorted(live), dtype=np.int64)
    matrix = np.array([vectors[live[i][0]][live[i][1]] for i in ids]).reshape(-1, DIM)
    return ids[np.argsort(-(matrix @ query), kind="stable")][:5].tolist()


@settings(max_examples=25, deadline=None)
@given(ops=ops, factor=st.integers(2, 4), seed=st.integers(0, 9))
def test_search_equals_exact_search_while_merges_run_behind_the_writes(
    ops: list[Op], factor: int, seed: int
) -> None:
    """The property of test_segments with merges on their own thread: after every write
    (merges possibly in flight) the segmented search is the exact one over the live
    vectors; once they are done every segment is live and within its dead limit."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "idx", merge_factor=factor, background_merges=True)
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
            query = rng.standard_normal(DIM).astype(np.float32)
            with store.read() as snap:
                (got,) = snap.dense(query[None, :], depth=5)
            if vectors:
                assert [h.id for h in got] == _exact_top(store, vectors, query)
        assert store.wait_for_merges(GUARD_S)
        segments = read_segments(store.manifest())
        assert sum(s.live for s in segments) == len(_live(store))
        assert all(s.live > 0 and s.dead / s.count <= store.merger.max_dead for s in segments)
        store.close()


def _held_merges(store: Store) -> tuple[threading.Event, threading.Event, list[list[Any]]]:
    """Hold each merge of ``store`` after it read its run (until ``release``), and record the
    segments each merge commit leaves: (building, release, commits)."""
    building, release = threading.Event(), threading.Event()
    commits: list[list[Any]] = []
    new_faiss, commit_merge = store.writer.new_index, store.merger.commit

    def held(dim: int, n: int = 0) -> Any:
        if n:  # a merge's index (a commit's own asks for n = 0)
            building.set()
            assert release.wait(GUARD_S)
        return new_faiss(dim, n)

    def spied(build: Any) -> bool:
        done = commit_merge(build)
        commits.append(read_segments(store.manifest()) if done else [])
        return done

    store.writer.new_index = held  # type: ignore[method-assign]
    store.merger.commit = spied  # type: ignore[method-assign]
    return building, release, commits


def _in_thread(*steps: Any) -> None:
    writer = threading.Thread(target=lambda: [step() for step in steps])
    writer.start()
    writer.join(GUARD_S)
    assert not writer.is_alive(), "a write waited for a merge's build"


def test_writes_commit_while_a_merge_builds_and_its_deletes_become_tombstones(
    tmp_path: Path,
) -> None:
    """A merge held in the middle of its build (after it read its run) does not hold the
    write lock: a write and a delete of a document in its run commit meanwhile. The merged
    segment counts the deleted document's vectors as dead, and no search returns them."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    rng = np.random.default_rng(1)
    vectors = {
        d: rng.standard_normal((n, DIM)).astype(np.float32)
        for d, n in [("a1", 2), ("a2", 1), ("b", 3), ("c", 3)]
    }
    building, release, commits = _held_merges(store)
    store.apply([_upsert("a1", vectors["a1"]), _upsert("a2", vectors["a2"])])
    store.apply([_upsert("b", vectors["b"])])  # two segments: a merge is asked for
    assert building.wait(GUARD_S)
    _in_thread(
        lambda: store.apply([_upsert("c", vectors["c"])]),
        lambda: store.apply(deletes=["a1"]),
    )
    del vectors["a1"]
    release.set()
    assert store.wait_for_merges(GUARD_S)
    merged = next(s for s in commits[0] if s.count == 6)  # a1, a2 and b in one segment
    assert merged.dead == 2  # a1's vectors, deleted while the merge was built
    segments = read_segments(store.manifest())
    assert sum(s.live for s in segments) == len(_live(store)) == 7
    query = vectors["a2"][0]
    with store.read() as snap:
        (got,) = snap.dense(query[None, :], depth=5)
    assert [h.id for h in got] == _exact_top(store, vectors, query)
    store.close()


def test_a_merge_whose_run_changed_meanwhile_is_dropped_and_planned_again(
    tmp_path: Path,
) -> None:
    """Every vector of a segment in the run deleted while the merge builds: that segment
    leaves the manifest, so the build no longer fits and is dropped (its temp file too);
    the merges asked for since start over from the new manifest."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    rng = np.random.default_rng(2)
    vectors = {d: rng.standard_normal((2, DIM)).astype(np.float32) for d in "abc"}
    building, release, commits = _held_merges(store)
    store.apply([_upsert("a", vectors["a"])])
    store.apply([_upsert("b", vectors["b"])])
    assert building.wait(GUARD_S)
    _in_thread(
        lambda: store.apply(deletes=["a"]), lambda: store.apply([_upsert("c", vectors["c"])])
    )
    del vectors["a"]
    release.set()
    assert store.wait_for_merges(GUARD_S)
    assert commits[0] == []  # the first build was dropped
    assert not list(store.path.glob("merging.*"))
    segments = read_segments(store.manifest())
    assert [s.count for s in segments] == [4] and segments[0].dead == 0
    assert sum(s.live for s in segments) == len(_live(store)) == 4
    store.close()


def _gone_pid() -> int:
    """The process id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_live_processs_merge_temp_file_is_not_swept(tmp_path: Path) -> None:
    """A build of another process, parked or waiting for the write lock, keeps its temp file
    through this process's merges; once that process is gone the file is a killed one's."""
    store = Store(tmp_path / "idx", merge_factor=2)
    store.create()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        theirs = store.path / f"merging.{other.pid}.0.1.tmp"
        theirs.write_bytes(b"a build being committed")
        store.apply([_upsert("a", np.ones((1, DIM), np.float32))])
        store.apply([_upsert("b", np.ones((1, DIM), np.float32))])  # merged here
        assert [s.count for s in read_segments(store.manifest())] == [2]
        assert theirs.exists()
    finally:
        other.kill()
        other.wait()
    store.apply([_upsert("c", np.ones((1, DIM), np.float32))])
    store.apply([_upsert("d", np.ones((1, DIM), np.float32))])  # the next merge sweeps it
    assert not theirs.exists()
    store.close()


def test_one_merger_at_a_time_and_a_killed_mergers_temp_file_is_removed(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "idx", merge_factor=2)
    store.create()
    store.apply([_upsert("a", np.ones((1, DIM), np.float32))])
    killed = store.path / f"merging.{_gone_pid()}.0.1.tmp"
    killed.write_bytes(b"half a merge")
    # Another process holds the merge lock: no merge here, nothing removed.
    fd = os.open(store.locks.merge_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    store.apply([_upsert("b", np.ones((1, DIM), np.float32))])
    assert len(read_segments(store.manifest())) == 2
    assert store.merge() == 0
    assert killed.exists()
    os.close(fd)
    # Free again: the merge runs, and the dead merger's temp file goes.
    assert store.merge() == 1
    assert len(read_segments(store.manifest())) == 1
    assert not list(store.path.glob("merging.*"))
    store.close()


def test_the_merges_a_process_asked_for_are_done_before_it_exits(tmp_path: Path) -> None:
    """A script that writes 8 segments under merge factor 2 and exits without closing the
    store: the interpreter finishes the merges first, so the index is one segment."""
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from rag.store import Store\n"
        "from tests.test_segments import _upsert\n"
        "store = Store(Path(sys.argv[1]), merge_factor=2, background_merges=True)\n"
        "store.create()\n"
        "for i in range(8):\n"
        "    store.apply([_upsert(f'd{i}', np.full((1, 8), i + 1.0, np.float32))])\n"
    )
    path = tmp_path / "idx"
    run = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    store = Store(path)
    assert [s.count for s in read_segments(store.manifest())] == [8]
    store.close()


def _hand_a_merge_over(store: Store) -> None:
    """Under the caller's write lock, write two one-vector segments ("a", "b") and wait until
    the merge thread has built their merge and handed it over. The merge thread waits to
    build until both writes are done, so the second write's own commit cannot take it."""
    written = threading.Event()
    build = store.merger.build

    def after_the_writes() -> Any:
        assert written.wait(GUARD_S)
        return build()

    store.merger.build = after_the_writes  # type: ignore[method-assign]
    one = np.ones((1, DIM), np.float32)
    store.apply([_upsert("a", one)])
    store.apply([_upsert("b", one)])  # two segments: a merge is asked for
    written.set()
    deadline = time.monotonic() + GUARD_S
    while store.merger.parked is None:  # built, waiting for this writer
        assert time.monotonic() < deadline, "no merge was handed over"
        time.sleep(0.01)
    store.merger.build = build  # type: ignore[method-assign]


def test_a_merge_built_while_an_ingest_holds_the_write_lock_is_committed_by_its_next_write(
    tmp_path: Path,
) -> None:
    """An ingest holds the write lock across its commits: the merge thread does not wait
    for it (it would wait until the ingest ends), it hands its build over, and the ingest's
    next commit puts it in place, so segments stay merged during a long ingest."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    one = np.ones((1, DIM), np.float32)
    with store.writing():
        _hand_a_merge_over(store)
        store.apply([_upsert("c", one)])  # commits the handed-over merge, then its own
        assert read_segments(store.manifest())[0].count == 2
    assert store.wait_for_merges(GUARD_S)
    segments = read_segments(store.manifest())
    assert sum(s.live for s in segments) == len(_live(store)) == 3
    assert not list(store.path.glob("merging.*"))
    store.close()


def test_a_handed_over_build_being_committed_is_not_swept_as_a_killed_mergers(
    tmp_path: Path,
) -> None:
    """A writer that took a handed-over build commits it outside the merge lock; a merger
    starting meanwhile sweeps killed mergers' temp files, and must spare that one (it was
    removed, and the merge skipped, before)."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    with store.writing():
        _hand_a_merge_over(store)
        assert store.wait_for_merges(GUARD_S)  # the merge thread has let go of it
        build = store.merger._take_parked()  # as a writer's next commit does
        assert build is not None and build.tmp.exists()
        stale = store.path / f"merging.{_gone_pid()}.0.1.tmp"  # a killed merger's
        stale.write_bytes(b"x")
        again = store.merger._build_locked()  # the same run, not yet merged: built again
        assert build.tmp.exists() and not stale.exists()
        assert again is not None and again.tmp != build.tmp
        store.merger._finish(again)  # dropped
        store.merger._commit_parked(build)
        assert [s.count for s in read_segments(store.manifest())] == [2]
    assert not list(store.path.glob("merging.*"))
    store.close()


def test_no_merge_is_built_on_the_run_a_writer_is_committing(tmp_path: Path) -> None:
    """A writer commits a handed-over build holding the merge thread off: the merge thread,
    asked meanwhile, used to build the same run again from the manifest before that commit
    (a wasted build, dropped at its commit, and the round ended with merges still due)."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    one = np.ones((1, DIM), np.float32)
    runs: list[tuple[str, ...]] = []
    building = threading.Event()
    build, commit = store.merger.build, store.merger.commit
    writer = threading.get_ident()

    def recorded() -> Any:
        building.set()
        made = build()
        if made is not None:
            runs.append(tuple(s.file for s in made.run))
        return made

    def asked_meanwhile(made: Any) -> bool:
        if threading.get_ident() == writer:  # the writer commits the handed-over build
            building.clear()
            store.merger.scheduler.request()  # as a write of another thread would
            building.wait(1.0)  # room for the merge thread to start a build (it must not)
        return bool(commit(made))

    store.merger.build = recorded  # type: ignore[method-assign]
    store.merger.commit = asked_meanwhile  # type: ignore[method-assign, assignment]
    with store.writing():
        _hand_a_merge_over(store)
        store.apply([_upsert("c", one)])  # commits the handed-over merge
    assert store.wait_for_merges(GUARD_S)
    assert len(runs) == len(set(runs)), runs  # no run built twice
    assert [s.count for s in read_segments(store.manifest())] == [2, 1]
    store.close()


def test_a_build_handed_over_as_the_writer_lets_go_is_still_committed(tmp_path: Path) -> None:
    """The merge thread finds the write lock held and hands its build over; the writer lets
    the lock go between that attempt and the hand-over, and looks for it after: it used to
    find nothing, and the build stayed parked, uncommitted, until the next write."""
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    one = np.ones((1, DIM), np.float32)
    refused = threading.Event()
    real = store.locks._thread_lock

    class SlowToRefuse:
        """The write lock's thread lock, slow to report a refusal."""

        def acquire(self, blocking: bool = True) -> bool:
            got = real.acquire(blocking)
            if not got:
                refused.set()
                time.sleep(0.5)  # the writer lets go meanwhile
            return bool(got)

        def release(self) -> None:
            real.release()

    store.locks._thread_lock = SlowToRefuse()  # type: ignore[assignment]
    with store.writing():
        store.apply([_upsert("a", one)])
        store.apply([_upsert("b", one)])
        assert refused.wait(GUARD_S)
    assert store.wait_for_merges(GUARD_S)
    assert store.merger.parked is None
    assert [s.count for s in read_segments(store.manifest())] == [2]
    store.close()


def test_a_merge_still_building_when_its_index_is_replaced_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", merge_factor=2, background_merges=True)
    store.create()
    building, release, commits = _held_merges(store)
    store.apply([_upsert("a", np.ones((1, DIM), np.float32))])
    store.apply([_upsert("b", np.ones((1, DIM), np.float32))])
    assert building.wait(GUARD_S)
    store.retire()  # a rebuild swaps another folder in
    release.set()
    assert store.wait_for_merges(GUARD_S)
    assert commits == []  # never committed
    assert not list(store.path.glob("merging.*"))
    assert len(read_segments(Store(store.path).manifest())) == 2
