"""AskBatcher: concurrent questions answered together, each caller gets its own answer."""

from __future__ import annotations

import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rag.models import Answer
from rag.reader import no_answer
from service.batching import AskBatcher, Stopping, Timeout
from service.memory import HeapKeeper, anonymous_resident_bytes


class Recorder:
    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[tuple[list[str], Any]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.started = threading.Event()

    def __call__(
        self,
        questions: Sequence[str],
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        contexts: Sequence[str | None],
    ) -> list[Answer]:
        self.calls.append((list(questions), filters))
        self.started.set()
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in questions:
            raise RuntimeError("boom")
        return [no_answer(q, f"{q}|{top_k}|{c}") for q, c in zip(questions, contexts, strict=True)]


def test_each_caller_gets_its_own_answer_and_waiting_ones_share_a_batch() -> None:
    rec = Recorder(delay=0.5)
    batcher = AskBatcher(rec, max_batch=8)
    try:
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(batcher.ask, "q0", 3, None, None)
            assert rec.started.wait(5)
            # These arrive while q0 is being answered: they must be answered together.
            rest = [pool.submit(batcher.ask, f"q{i}", 3, None, f"c{i}") for i in range(1, 6)]
            answers = [first.result(), *(f.result() for f in rest)]
        assert [a.question for a in answers] == [f"q{i}" for i in range(6)]
        assert answers[3].no_answer_reason == "q3|3|c3"
        assert [len(q) for q, _ in rec.calls] == [1, 5]
    finally:
        batcher.stop()


def test_different_filters_are_answered_in_separate_calls() -> None:
    rec = Recorder(delay=0.5)
    batcher = AskBatcher(rec, max_batch=8)
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(batcher.ask, "q0", None, None, None)
            assert rec.started.wait(5)
            a = pool.submit(batcher.ask, "a", None, {"doc_id": "x"}, None)
            b = pool.submit(batcher.ask, "b", None, {"doc_id": "y"}, None)
            time.sleep(0.05)
            first.result(), a.result(), b.result()
        assert sorted(str(f) for _, f in rec.calls[1:]) == ["{'doc_id': 'x'}", "{'doc_id': 'y'}"]
    finally:
        batcher.stop()


def test_an_error_reaches_only_the_callers_of_its_batch() -> None:
    rec = Recorder(fail_on="bad")
    batcher = AskBatcher(rec, max_batch=8)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.ask("bad", None, None, None)
        assert batcher.ask("good", None, None, None).question == "good"
    finally:
        batcher.stop()


def test_max_batch_bounds_a_batch() -> None:
    rec = Recorder(delay=0.1)
    batcher = AskBatcher(rec, max_batch=2)
    try:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(batcher.ask, "q0", None, None, None)
            assert rec.started.wait(5)
            rest = [pool.submit(batcher.ask, f"q{i}", None, None, None) for i in range(1, 6)]
            first.result()
            for f in rest:
                f.result()
        assert max(len(q) for q, _ in rec.calls) <= 2
        assert sum(len(q) for q, _ in rec.calls) == 6
    finally:
        batcher.stop()


def test_a_bad_question_never_fails_its_batch_mates() -> None:
    """The poisoned question shares a batch with good ones: only it gets the error."""
    rec = Recorder(delay=0.3, fail_on="bad")
    batcher = AskBatcher(rec, max_batch=32)
    try:
        with ThreadPoolExecutor(20) as pool:
            first = pool.submit(batcher.ask, "q0", None, None, None)
            assert rec.started.wait(5)
            good = [pool.submit(batcher.ask, f"g{i}", None, None, None) for i in range(18)]
            bad = pool.submit(batcher.ask, "bad", None, None, None)
            first.result()
            assert [f.result().question for f in good] == [f"g{i}" for i in range(18)]
            with pytest.raises(RuntimeError, match="boom"):
                bad.result()
        assert any("bad" in q and len(q) > 1 for q, _ in rec.calls)  # it did share a batch
    finally:
        batcher.stop()


def test_a_question_over_its_time_budget_gets_timeout_and_is_dropped() -> None:
    rec = Recorder(delay=1.0)
    batcher = AskBatcher(rec, max_batch=1)
    try:
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(batcher.ask, "q0", None, None, None)
            assert rec.started.wait(5)
            with pytest.raises(Timeout, match="busy"):
                batcher.ask("late", None, None, None, timeout=0.1)
            slow.result()
        time.sleep(0.2)
        assert [q for q, _ in rec.calls] == [["q0"]]  # "late" was never answered
    finally:
        batcher.stop()


def test_stop_does_not_work_through_the_queue() -> None:
    rec = Recorder(delay=0.5)
    batcher = AskBatcher(rec, max_batch=1)
    with ThreadPoolExecutor(12) as pool:
        first = pool.submit(batcher.ask, "q0", None, None, None)
        assert rec.started.wait(5)
        queued = [pool.submit(batcher.ask, f"q{i}", None, None, None) for i in range(1, 11)]
        time.sleep(0.05)
        batcher.stop(timeout=5)
        first.result()
        for f in queued:
            with pytest.raises(Stopping):
                f.result()
    assert len(rec.calls) == 1
    with pytest.raises(Stopping):
        batcher.ask("after", None, None, None)


def test_on_idle_runs_after_a_pause_in_the_questions_not_between_batches() -> None:
    """q0 is answered while q1..q3 wait, so their batch follows at once (no idle call
    between); once the queue stays empty for idle_s after it, one call, then none while
    nothing is asked."""
    rec = Recorder(delay=0.3)
    idle: list[int] = []
    called = threading.Event()

    def on_idle() -> None:
        idle.append(len(rec.calls))
        called.set()

    batcher = AskBatcher(rec, max_batch=8, on_idle=on_idle, idle_s=0.2)
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(batcher.ask, "q0", 3, None, None)
            assert rec.started.wait(5)
            rest = [pool.submit(batcher.ask, f"q{i}", 3, None, None) for i in range(1, 4)]
            [f.result() for f in [first, *rest]]
        assert called.wait(10)
        batcher.ask("q4", 3, None, None)
        called.clear()
        assert called.wait(10)
        batcher.stop()
        assert [len(q) for q, _ in rec.calls] == [1, 3, 1]
        assert idle == [2, 3]
    finally:
        batcher.stop()


def test_the_heap_keeper_trims_once_per_growth_and_when_idle() -> None:
    """A trim after a batch only once anonymous memory has grown by the set amount since
    the first batch after the last trim (what that batch faulted in again is not growth);
    always when idle; never at 0."""
    level = [100]
    trims: list[int] = []

    def trim() -> None:
        trims.append(level[0])
        level[0] -= 60  # what the trim handed back

    keeper = HeapKeeper(50, trim=trim, measure=lambda: level[0])
    # floor 100; trim at 150 (back to 90); the next batch faults 60 in again: floor 150;
    # trim at 200
    for grow in (0, 20, 20, 9, 1, 60, 10, 39, 1):
        level[0] += grow
        keeper.after_batch()
    assert trims == [150, 200] and keeper.trims == 2
    keeper.idle()
    assert trims == [150, 200, 140]
    assert HeapKeeper(0, trim=trim, measure=lambda: 10**9).after_batch() is False
    assert HeapKeeper(50, trim=trim, measure=lambda: None).after_batch() is False
    assert len(trims) == 3
    heard: list[str] = []
    unable = HeapKeeper(50, trim=lambda: False, measure=lambda: 10, on_trim=heard.append)
    unable.idle()  # no C library call (not glibc): nothing done, nothing counted
    assert unable.trims == 0 and heard == []
    keeper.idle()
    assert keeper.trims == 4


def test_after_batch_runs_after_each_batch_is_answered_and_its_failure_is_logged() -> None:
    rec = Recorder()
    seen: list[int] = []

    def after() -> None:
        seen.append(len(rec.calls))
        if len(seen) == 1:
            raise RuntimeError("housekeeping failed")

    batcher = AskBatcher(rec, max_batch=8, after_batch=after)
    try:
        batcher.ask("q0", 3, None, None)
        batcher.ask("q1", 3, None, None)  # the worker survived the first failure
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [1, 2]
    finally:
        batcher.stop()


def test_anonymous_resident_bytes_reads_this_process() -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("no /proc")
    before = anonymous_resident_bytes()
    block = bytearray(64 << 20)  # zero pages are only resident once written
    block[::4096] = b"x" * len(block[::4096])
    after = anonymous_resident_bytes()
    assert before is not None and after is not None and after - before >= 60 << 20
    del block


def test_trim_heap_returns_freed_memory_on_glibc() -> None:
    import platform

    from service.memory import trim_heap

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert trim_heap() is True


def _capped_and_default(script: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """``script`` run in a fresh interpreter with the argument "cap" and again with
    "default" (an allocator setting holds for the whole process); skipped off glibc."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    return {
        way: subprocess.run(
            [sys.executable, "-c", script, way], check=True, capture_output=True, text=True
        )
        for way in ("cap", "default")
    }


def test_a_capped_mmap_threshold_hands_large_freed_blocks_back_at_once() -> None:
    """By default glibc raises its mmap threshold to the largest block freed, so a second
    8 MiB array comes from the heap and stays resident after it is freed; capped (as `rag
    serve` does with RAG_HEAP_MMAP_THRESHOLD_KB), each one is unmapped when freed."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from service.memory import cap_mmap_threshold\n"
        "def anon():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('RssAnon'):\n"
        "            return int(line.split()[1])\n"
        "if sys.argv[1] == 'cap':\n"
        "    assert cap_mmap_threshold(256 * 1024)\n"
        "before = anon()\n"
        "for _ in range(3):\n"
        "    a = np.ones(8 << 20, dtype=np.uint8)\n"
        "    del a\n"
        "print(anon() - before)\n"
    )
    kept = {way: int(run.stdout) for way, run in _capped_and_default(script).items()}
    assert kept["default"] >= 4096  # KiB: the 8 MiB block stayed in the heap
    assert kept["cap"] < 1024


def test_capped_arenas_keep_every_thread_in_one_arena() -> None:
    """Threads allocating side by side get arenas of their own by default; capped at one (as
    `rag serve` does), glibc's malloc_stats counts a single arena."""
    script = (
        "import ctypes, sys, threading\n"
        "from service.memory import cap_arenas\n"
        "if sys.argv[1] == 'cap':\n"
        "    assert cap_arenas(1)\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "go = threading.Barrier(4)\n"
        "def work():\n"
        "    go.wait()\n"
        "    for _ in range(2000):\n"
        "        libc.free(libc.malloc(4096))\n"
        "threads = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "libc.malloc_stats()\n"
    )
    arenas = {way: run.stderr.count("Arena ") for way, run in _capped_and_default(script).items()}
    assert arenas["cap"] == 1
    assert arenas["default"] > 1
