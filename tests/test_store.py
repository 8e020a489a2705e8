"""Store: incremental writes, deletes, and atomicity under SIGKILL."""

from __future__ import annotations

import functools
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from rag.models import Chunk, Document
from rag.pipeline import Pipeline
from rag.store import (
    SCHEMA_VERSION,
    Segment,
    Store,
    StoreError,
    Upsert,
    keyword,
    read_segments,
    segment_vectors,
)
from rag.store.filters import Filters
from tests.conftest import ROOT, FakeEmbedder, unit_settings
from tests.store_kill_worker import deleted_at


def segment_ids(loaded: Sequence[tuple[Segment, faiss.Index]]) -> list[int]:
    """Every chunk id the loaded segments hold (tombstones included)."""
    return [i for _, index in loaded for i in segment_vectors(index)[0].tolist()]


def keyword_ids(store: Store) -> list[int]:
    """Every chunk id the keyword engine holds (an audit: its own reader, all documents)."""
    import tantivy

    index = store.keywords._open()
    index.reload()
    searcher = index.searcher()
    found = searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1)).hits
    return [int(v) for v in searcher.fast_field_values("id", [a for _, a in found])]


def assert_consistent(store: Store, catch_up: bool = False) -> dict[str, str]:
    """Rows, the keyword engine and the vector segments agree; returns the manifest. (An
    audit of the store's own tables: it reads the snapshot's connection, which nothing
    outside the store does.) ``catch_up``: first apply what a killed writer left pending
    for the keyword engine, as start-up does."""
    if catch_up:
        store.sync_keywords()
    with store.read() as snap:
        conn = snap._conn
        manifest = snap.manifest()
        loaded = snap.segments()
        chunk_ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
        assert conn.execute("SELECT COUNT(*) FROM keyword_pending").fetchone()[0] == 0
        keywords = keyword_ids(store)
        per_doc = dict(conn.execute("SELECT doc_id, COUNT(*) FROM chunks GROUP BY doc_id"))
        declared = dict(conn.execute("SELECT id, n_chunks FROM documents"))
        rows = conn.execute(
            "SELECT c.id, c.start, c.end, d.text FROM chunks c JOIN documents d ON d.id = c.doc_id"
        ).fetchall()
        passages = snap.passages([r[0] for r in rows])
    vector_ids = segment_ids(loaded)
    assert len(vector_ids) == len(set(vector_ids))  # one vector per chunk id
    # Every chunk has its vector; every other vector is counted dead in its segment.
    assert chunk_ids <= set(vector_ids)
    for segment, index in loaded:
        ids = set(segment_vectors(index)[0].tolist())
        assert index.ntotal == segment.count
        assert len(ids - chunk_ids) == segment.dead
        assert min(ids) >= segment.lo
    los = [s.lo for s, _ in loaded]
    assert los == sorted(los)
    assert len(keywords) == len(set(keywords)) and set(keywords) == chunk_ids
    assert {k: v for k, v in declared.items() if v} == per_doc
    for chunk_id, start, end, doc_text in rows:
        assert passages[chunk_id].text == doc_text[start:end]
    files = sorted(p.name for p in store.path.glob("vectors.*"))
    assert {s.file for s, _ in loaded} <= set(files)
    return manifest


def test_incremental_ingest_update_and_delete(fake_pipeline: Pipeline, fake_store: Store) -> None:
    emb = fake_pipeline.embedder
    assert isinstance(emb, FakeEmbedder)
    docs = [Document("a", "Alpha text. " * 50), Document("b", "Beta text. " * 50)]
    r1 = fake_pipeline.ingest(docs)
    assert r1.added == ["a", "b"] and r1.chunks_embedded > 0
    embedded = emb.texts_embedded
    r2 = fake_pipeline.ingest(docs)
    assert r2.unchanged == ["a", "b"] and r2.chunks_embedded == 0
    assert emb.texts_embedded == embedded  # unchanged documents do no embedding work
    r3 = fake_pipeline.ingest([Document("a", "Alpha changed. " * 10), docs[1]])
    assert r3.updated == ["a"] and r3.unchanged == ["b"]
    store = fake_store
    assert_consistent(store)
    assert "changed" in (store.document("a") or Document("x", "")).text
    r4 = fake_pipeline.ingest([Document("b", docs[1].text, title="New title", metadata={"k": 1})])
    assert r4.updated == ["b"] and r4.chunks_embedded == 0
    assert store.documents()[1].title == "New title"
    assert fake_pipeline.delete("a") is True
    assert fake_pipeline.delete("a") is False
    assert [d.id for d in store.documents()] == ["b"]
    manifest = assert_consistent(store)
    # The first segment ("a", "b") was half dead after "a" changed: rewritten with "b"
    # only; the second ("a" changed) was dropped when "a" was deleted.
    segments = read_segments(manifest)
    assert [(s.count, s.dead) for s in segments] == [(1, 0)]
    # On disk: those, and the replaced manifest's (the dropped one) for readers one behind.
    assert sorted(p.name for p in store.path.glob("vectors.*")) == [
        "vectors.2.faiss",
        "vectors.3.faiss",
    ]


def test_index_built_with_another_model_is_refused(tmp_path: Path) -> None:
    settings = unit_settings(index_root=tmp_path)
    Pipeline(settings, embedder=FakeEmbedder(tag="model-a")).ingest([Document("a", "text")])
    other = Pipeline(settings, embedder=FakeEmbedder(tag="model-b"))
    with pytest.raises(StoreError, match="embedding_model=model-a"):
        other.ingest([Document("b", "more")])
    with pytest.raises(StoreError, match="embedding_model=model-a"):
        other.ask("Does asking check it too?")


def test_a_title_embedded_with_each_chunk_leaves_the_text_exact(tmp_path: Path) -> None:
    text = "The final was played in February. Denver won it."
    seen: list[str] = []

    class Recording(FakeEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            seen.extend(texts)
            return super().embed(texts)

    settings = unit_settings(index_root=tmp_path, embed_title=True)
    pipe = Pipeline(settings, embedder=Recording())
    pipe.ingest([Document("a", text, "Super Bowl 50")])
    (chunk,) = pipe.chunk(Document("a", text, "Super Bowl 50"))
    assert seen == [f"Super Bowl 50\n\n{text}"]
    assert chunk.text == text[chunk.start : chunk.end] == text
    assert pipe.retrieve("Which city won the Super Bowl?")[0].text == text
    assert pipe.stats().manifest["embedding_input"] == "title+chunk"
    # An index built one way is not extended the other way.
    other = Pipeline(unit_settings(index_root=tmp_path), embedder=FakeEmbedder())
    with pytest.raises(StoreError, match="embedding_input"):
        other.ingest([Document("b", "More text.")])


def test_changed_chunk_settings_are_refused(tmp_path: Path) -> None:
    Pipeline(unit_settings(index_root=tmp_path), embedder=FakeEmbedder()).ingest(
        [Document("a", "t")]
    )
    other = Pipeline(unit_settings(index_root=tmp_path, chunk_tokens=64), embedder=FakeEmbedder())
    with pytest.raises(StoreError, match="chunker"):
        other.ingest([Document("b", "t")])


def test_rebuild_swaps_in_a_fresh_index(fake_pipeline: Pipeline) -> None:
    fake_pipeline.ingest([Document("old", "Old text.")])
    fake_pipeline.ingest([Document("new", "New text.")], rebuild=True)
    assert [d.id for d in fake_pipeline.documents()] == ["new"]
    assert_consistent(Store(fake_pipeline.index_path))  # the folder swapped in


def test_failed_write_rolls_back_and_leaves_no_file(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    fake_pipeline.ingest([Document("a", "Alpha. " * 30)])
    store = fake_store
    before = assert_consistent(store)
    bad = Document("bad", "Bad. " * 30)
    from rag.store import Upsert

    with pytest.raises(ValueError):
        store.apply([Upsert(bad, fake_pipeline.chunk(bad), np.zeros((0, 64), np.float32))])
    assert assert_consistent(store) == before
    assert [d.id for d in store.documents()] == ["a"]


def _kill_worker(folder: Path, rng: random.Random, seconds: float, *args: str) -> int:
    """Run ``tests.store_kill_worker`` on ``folder`` until its first commit, SIGKILL it a
    random moment (up to ``seconds``) later; the last step it reported committed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store_kill_worker", str(folder), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("committed"), line
    reported = int(line.split()[1])
    time.sleep(rng.uniform(0.0, seconds))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    for line in out.splitlines():
        reported = int(line.split()[1])
    return reported


def test_sigkill_mid_ingest_leaves_a_consistent_index(tmp_path: Path) -> None:
    """Kill a writer at random moments; every reopen is consistent and loses nothing done."""
    rng = random.Random(7)
    for _ in range(6):
        reported = _kill_worker(tmp_path, rng, 0.6)
        store = Store(tmp_path / "default")
        manifest = assert_consistent(store, catch_up=True)
        assert int(manifest["test_generation"]) >= reported
        docs = store.documents(limit=1000)
        assert len(docs) == 40
        generations = {d.metadata["generation"] for d in docs}
        assert len(generations) == 1  # one ingest is one atomic step
        # Every document is at the last committed generation, or one ahead when the kill
        # landed after the ingest committed but before the marker did.
        assert generations <= {
            int(manifest["test_generation"]),
            int(manifest["test_generation"]) + 1,
        }
        store.close()


def test_sigkill_during_segment_merges_leaves_a_consistent_index(tmp_path: Path) -> None:
    """Kill a writer whose every step adds a document (and every third deletes one) under
    merge factor 2, so that kills land in merges: every reopen is consistent, and every
    document a reported step wrote is there."""
    rng = random.Random(11)
    for _ in range(5):
        reported = _kill_worker(tmp_path, rng, 0.8, "merge")
        store = Store(tmp_path / "default")
        manifest = assert_consistent(store, catch_up=True)
        step = int(manifest["test_generation"])
        assert step >= reported
        have = {d.id for d in store.documents(limit=10_000)}
        deleted = {deleted_at(s) for s in range(1, step + 1)}
        want = {f"doc-{s}" for s in range(1, step + 1)} - deleted
        # The next step may have landed in part before the kill: its ingest, its delete.
        assert want - {deleted_at(step + 1)} <= have
        assert have - want <= {f"doc-{step + 1}"}
        store.close()


def test_a_read_snapshot_does_not_see_a_concurrent_write(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    store = fake_store
    with store.read() as conn:
        before = conn.counts()[1]
        writer = threading.Thread(
            target=fake_pipeline.ingest, args=([Document("b", "Beta is the second letter.")],)
        )
        writer.start()
        writer.join()
        with store.read() as inner:  # nested: joins the same snapshot
            assert inner is conn
            assert inner.document("b") is None
            assert inner.counts()[1] == before
    with store.read() as conn:
        assert conn.document("b") is not None


def _ingest_in_thread(pipe: Pipeline, doc: Document) -> None:
    """A write from another thread (this one may hold an open read transaction)."""
    writer = threading.Thread(target=pipe.ingest, args=([doc],))
    writer.start()
    writer.join()


def test_a_read_keeps_its_segments_through_later_writes_and_merges(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """The race CI once hit: a reader's snapshot names segments, writers commit and merge
    them away (deleting their files), and only then does the reader ask for vectors."""
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    store = fake_store
    store.merger.merge_factor = 2
    with store.read() as snap:
        ids = {r[0] for r in snap._conn.execute("SELECT id FROM chunks")}
        for i in range(3):
            _ingest_in_thread(fake_pipeline, Document(f"b{i}", f"Beta number {i}."))
        assert set(segment_ids(snap.segments())) == ids
        assert len(snap.dense(np.ones((1, 64), np.float32), 10)[0]) == len(ids)
    manifest = assert_consistent(store)
    segments = read_segments(manifest)
    assert len(segments) == 1  # merged: 1 + 1 -> 2, 2 + 1 + 1 -> ... one segment of 4
    assert segments[0].count == 4
    # Once no reader holds them, merged segments leave memory: the newest manifest's stay.
    assert set(store.cache.loaded) == {s.file for s in segments}


def _writes_after_snapshot(
    reader: Store, writes: list[Callable[[], object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``reader``'s next snapshot see ``writes`` (each run in a thread, through another
    process's Store, whose lock and pins are its own) right after its first SELECT, before
    it loads the segments that snapshot names: the only window a pin cannot cover."""
    original = reader.cache.pin

    def pin(manifest: dict[str, str], segments: list[Segment]) -> list[str]:
        monkeypatch.setattr(reader.cache, "pin", original)
        for write in writes:
            thread = threading.Thread(target=write)
            thread.start()
            thread.join()
        return original(manifest, segments)

    monkeypatch.setattr(reader.cache, "pin", pin)


def test_a_reader_in_another_process_keeps_its_segments_or_is_told_to_ask_again(
    fake_pipeline: Pipeline, fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Store on the same folder stands for another process. A read loads its
    segments as it pins them, so later merges there cannot take them away; a merge landing
    between its snapshot and that load finds the replaced segments still on disk; two
    merges there make it ask again, never hand out a torn index."""
    fake_store.merger.merge_factor = 2
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    other = Store(fake_pipeline.index_path)
    with other.read() as snap:
        for doc in [Document("b", "Beta."), Document("c", "Gamma.")]:
            _ingest_in_thread(fake_pipeline, doc)  # merges away the segment this read pinned
        assert len(segment_ids(snap.segments())) == 1
    ingest_d = functools.partial(fake_pipeline.ingest, [Document("d", "Delta.")])
    _writes_after_snapshot(other, [ingest_d], monkeypatch)
    with other.read() as snap:
        assert len(segment_ids(snap.segments())) == 3  # one behind: "a", "b", "c"
    # Two writes that each rewrite the segment the snapshot names (a quarter of it dead).
    fake_store.merger.max_dead = 0.1
    deletes = [functools.partial(fake_pipeline.delete, d) for d in ("a", "b")]
    _writes_after_snapshot(other, deletes, monkeypatch)
    with other.read() as snap:
        assert snap.counts()[0] == 4  # the snapshot before the deletes
        with pytest.raises(StoreError, match="ask again"):
            snap.segments()
    with other.read() as snap:
        assert sorted(segment_ids(snap.segments())) == sorted(
            r[0] for r in snap._conn.execute("SELECT id FROM chunks")
        )
    assert set(other.cache.loaded) == {s.file for s in read_segments(other.manifest())}
    other.close()


def test_a_write_removes_merged_segments_and_temp_files(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    store = fake_store
    for i in range(3):
        fake_pipeline.ingest([Document(f"d{i}", f"Document number {i}.")])
    (store.path / "vectors.0.faiss").write_bytes(b"stale")
    (store.path / "vectors.99.tmp").write_bytes(b"killed writer")
    fake_pipeline.ingest([Document("e", "One more.")])
    segments = read_segments(store.manifest())
    files = sorted(p.name for p in store.path.glob("vectors.*"))
    assert files == sorted(s.file for s in segments)
    assert_consistent(store)


@pytest.mark.parametrize("merge_factor", [10, 2])
def test_questions_during_ingests_never_see_a_torn_index(tmp_path: Path, merge_factor: int) -> None:
    """Readers in threads while a writer replaces documents (and, with merge factor 2, merges
    segments at nearly every write): every answer cites text that is exactly in the
    document version it read, and no reader fails."""
    settings = unit_settings(
        index_root=tmp_path / "idx", abstain_threshold=0.0, segment_merge_factor=merge_factor
    )
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    pipe.ingest([Document(f"d{i}", f"Version 0 of doc {i}: the colour is red.") for i in range(20)])
    stop = threading.Event()
    errors: list[BaseException] = []
    answers = 0

    def reader() -> None:
        nonlocal answers
        while not stop.is_set():
            try:
                for a in pipe.ask_batch(["What is the colour?", "Which version of doc 3?"]):
                    for c in a.citations:
                        # A version marker and its colour always change together.
                        version = c.quote.split()[1]
                        colour = {"0": "red", "1": "blue", "2": "green"}[version]
                        assert colour in c.quote, c.quote
                        # The passage read and the document cited come from one snapshot.
                        for p in a.passages:
                            if p.doc_id == c.doc_id:
                                assert p.text.split()[1] == version, (p.text, c.quote)
                    answers += 1
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for version, colour in [(1, "blue"), (2, "green"), (1, "blue")]:
        pipe.ingest(
            [
                Document(f"d{i}", f"Version {version} of doc {i}: the colour is {colour}.")
                for i in range(20)
            ]
        )
        pipe.delete("d19")
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert answers > 0


def test_incremental_ingest_compares_across_lookup_batches(fake_pipeline: Pipeline) -> None:
    """Ingest looks up only the documents it is given, in batches of ids: more than one
    batch's worth are told apart right (unchanged, a title changed, new)."""
    from rag.store.filters import SQL_BATCH

    n = 2 * SQL_BATCH + 7
    docs = [Document(f"d{i:04d}", f"Document {i}.", f"t{i}") for i in range(n)]
    assert len(fake_pipeline.ingest(docs).added) == n
    changed = Document(docs[SQL_BATCH + 3].id, docs[SQL_BATCH + 3].text, "new title")
    again = [*docs[: SQL_BATCH + 3], changed, *docs[SQL_BATCH + 4 :], Document("zz", "New.")]
    report = fake_pipeline.ingest(again)
    assert report.updated == [changed.id] and report.added == ["zz"]
    assert len(report.unchanged) == n - 1 and report.chunks_embedded == 1


def test_an_index_from_before_segments_reads_and_converts_on_its_next_write(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Indexes written before segments name one vector file (``faiss_file``) whose deletes
    were applied to it: it is read as one segment, and the next write lists it as one."""
    fake_pipeline.ingest([Document("a", "Alpha is the first letter."), Document("b", "Beta.")])
    (segment,) = read_segments(fake_store.manifest())
    conn = sqlite3.connect(fake_store.db_path)
    with conn:
        conn.execute("DELETE FROM manifest WHERE key = 'segments'")
        conn.executemany(
            "INSERT INTO manifest VALUES (?, ?)",
            [("faiss_file", segment.file), ("faiss_sha256", segment.sha256)],
        )
    conn.close()
    old = Store(fake_pipeline.index_path)
    assert old.check().vectors == 2
    assert fake_pipeline.retrieve("Which letter is first?")[0].doc_id == "a"
    fake_pipeline.ingest([Document("c", "Gamma is the third letter.")])
    manifest = assert_consistent(old)
    assert "faiss_file" not in manifest
    first = read_segments(manifest)[0]
    assert (first.file, first.count, first.dead, first.lo) == (segment.file, 2, 0, 0)
    fake_pipeline.delete("b")  # half of it dead: rewritten
    first = read_segments(assert_consistent(old))[0]
    assert first.file != segment.file and (first.count, first.dead, first.lo) == (1, 0, 0)
    old.close()


def test_a_chunk_text_is_stored_once_and_its_words_leave_with_it(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Chunk rows hold offsets only (the text is the document's); the keyword engine
    forgets a replaced or deleted chunk's words."""
    fake_pipeline.ingest([Document("a", "Zebras graze on the savanna."), Document("b", "Owls.")])
    fake_pipeline.ingest([Document("a", "Yaks graze on the plateau."), Document("b", "Owls.")])
    with fake_store.read() as snap:
        columns = [r[1] for r in snap._conn.execute("PRAGMA table_info(chunks)")]
        assert "text" not in columns
        assert snap.keyword(["zebras"], 5) == []
        (hit,) = snap.keyword(["yaks"], 5)
        assert snap.passages([hit.id])[hit.id].text == "Yaks graze on the plateau."
    fake_pipeline.delete("a")
    with fake_store.read() as snap:
        assert snap.keyword(["yaks"], 5) == [] and snap.keyword(["graze"], 5) == []
        assert len(snap.keyword(["owls"], 5)) == 1
    assert_consistent(fake_store)


def _record(store: Store) -> tuple[str, int]:
    """What the engine's text field records (its meta.json), and the bytes of its position
    files."""
    import json

    (text,) = [
        f
        for f in json.loads((store.keywords.folder / "meta.json").read_text())["schema"]
        if f["name"] == "text"
    ]
    size = sum(p.stat().st_size for p in store.keywords.folder.glob("*.pos"))
    return text["options"]["indexing"]["record"], size


def test_the_keyword_engine_keeps_no_positions_and_reads_older_engines_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BM25 needs chunk ids and term frequencies only: a new engine writes no positions,
    and an engine written with them (before) gives the same hits in the same order."""
    docs = [
        Document(f"d{i}", " ".join(["owl"] * (1 + i % 5) + ["grey", f"word{i}", "flies"] * 2))
        for i in range(40)
    ]
    questions = [["owl"], ["grey", "owl"], ["word7", "flies"], ["nothing"]]

    def hits(folder: str) -> tuple[list[list[object]], tuple[str, int]]:
        settings = unit_settings(index_root=tmp_path / folder, abstain_threshold=0.0)
        store = Store(settings.index_dir)
        Pipeline(settings, embedder=FakeEmbedder(), store=store).ingest(docs)
        with store.read() as snap:
            found = [[(h.id, round(h.score, 5)) for h in snap.keyword(q, 10)] for q in questions]
        record = _record(store)
        store.close()
        return found, record

    now, (now_record, now_bytes) = hits("now")
    positional = keyword._schema

    def with_positions() -> object:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=False, indexed=True, fast=True)
        builder.add_text_field("text", stored=False, tokenizer_name=keyword.ANALYZER)
        return builder.build()

    monkeypatch.setattr(keyword, "_schema", with_positions)
    before, (before_record, before_bytes) = hits("before")
    monkeypatch.setattr(keyword, "_schema", positional)
    assert (now_record, before_record) == ("freq", "position")
    assert now_bytes < before_bytes / 4  # empty files' headers only
    assert now == before and all(now[:3])


@pytest.mark.parametrize("estimate", [True, False])
def test_a_wide_keyword_filter_finds_what_the_exact_one_does(
    fake_pipeline: Pipeline, fake_store: Store, monkeypatch: pytest.MonkeyPatch, estimate: bool
) -> None:
    """A filter allowing more than ``filter_exact_max`` chunks is checked per hit, asking
    the engine for more while too few pass: the same hits, in the same order, as the search
    restricted to the allowed ids inside the engine, even for a group whose chunks rank
    last; with the share estimate, and without it (every round trip then re-asks)."""
    if not estimate:
        monkeypatch.setattr(Filters, "allowed_share", lambda self, sql: (1.0, 0.0))
    docs = [
        Document(
            f"d{i}",
            " ".join(["letter"] * (1 + i % 9) + [f"filler{j}" for j in range(9)]),
            metadata={"g": i % 7},
        )
        for i in range(63)
    ]
    fake_pipeline.ingest(docs)
    wide = Store(fake_pipeline.index_path, filter_exact_max=0)
    for g in range(7):
        for depth in (1, 4, 20):
            with fake_store.read() as snap:
                exact = snap.keyword(["letter", "filler3"], depth, {"g": g})
            with wide.read() as snap:
                assert snap.keyword(["letter", "filler3"], depth, {"g": g}) == exact
            assert len(exact) == min(depth, 9)
    with wide.read() as snap:
        assert snap.keyword(["letter"], 5, {"g": 99}) == []
    wide.close()


def letter_documents(n: int) -> list[Document]:
    """``n`` one-chunk documents in three metadata groups ``g``, each saying "letter" a
    different number of times (distinct BM25 and dense scores within a group)."""
    return [
        Document(f"d{i}", " ".join(["letter"] * (1 + i // 3) + [f"w{i}"]), metadata={"g": i % 3})
        for i in range(n)
    ]


def test_a_filter_sampled_as_wide_is_never_listed(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """A metadata filter whose sample estimates far more than ``filter_exact_max`` allowed
    chunks goes straight to the per-hit check, without listing up to ``exact_max`` ids; its
    answers are the listed path's. A narrow one is still listed."""
    fake_pipeline.ingest(letter_documents(90))
    query = FakeEmbedder().embed(["Which letter is it?"])
    wide = Store(fake_pipeline.index_path, filter_exact_max=4)
    statements: list[str] = []
    for g in (0, 1, 2, 99):
        with fake_store.read() as snap:
            want = (snap.dense(query, 5, {"g": g})[0], snap.keyword(["letter"], 5, {"g": g}))
        with wide.read() as snap:
            snap._conn.set_trace_callback(statements.append)
            got = (snap.dense(query, 5, {"g": g})[0], snap.keyword(["letter"], 5, {"g": g}))
            snap._conn.set_trace_callback(None)
        assert [h.id for h in got[0]] == [h.id for h in want[0]] and got[1] == want[1]
        listed = [q for q in statements if "document_metadata m0" in q]
        assert bool(listed) == (g == 99), listed
        statements.clear()
    wide.close()


def test_no_statement_a_question_runs_scans_a_table(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Every SQL statement a question runs (dense and keyword, unfiltered, wide and narrow
    filters) is answered by index lookups: ``EXPLAIN QUERY PLAN`` of each shows no SCAN, so
    no per-question cost grows with the index. (MIN and MAX of the chunk ids in one SELECT
    scanned the whole table.)"""
    fake_pipeline.ingest(letter_documents(60))
    query = FakeEmbedder().embed(["Which letter is it?"])
    store = Store(fake_pipeline.index_path, filter_exact_max=4)
    statements: list[str] = []
    with store.read() as snap:
        snap._conn.set_trace_callback(statements.append)
        for filters in (None, {"g": 1}, {"g": [1, 2], "x": 1}, {"doc_id": ["d1", "d2"]}):
            snap.dense(query, 5, filters)
            snap.keyword(["letter"], 5, filters)
        snap.passages([1, 2, 3])
        snap._conn.set_trace_callback(None)
        plans = {
            q: [row[3] for row in snap._conn.execute(f"EXPLAIN QUERY PLAN {q}")]
            for q in set(statements)
            if q.lstrip().upper().startswith("SELECT")
        }
    assert len(plans) > 5
    # Bounded: a constant row, a LIMITed subquery's rows, the manifest's few keys.
    bounded = ("SCAN CONSTANT ROW", "SCAN (subquery", "SCAN manifest")
    scans = {
        q: [s for s in p if s.startswith("SCAN") and not s.startswith(bounded)]
        for q, p in plans.items()
    }
    assert {q: p for q, p in scans.items() if p} == {}
    store.close()


def test_a_reader_never_creates_the_keyword_engine(tmp_path: Path) -> None:
    """Before any chunk is written there is no keyword index, and reading (a search, the
    start-up check) does not make one: only the writer does."""
    store = Store(tmp_path / "idx")
    store.create()
    with store.read() as snap:
        assert snap.keyword(["alpha"], 5) == [] and snap.keyword_rows() == 0
    assert store.check().keyword_rows == 0
    assert not store.keywords.exists() and not store.keywords.folder.exists()
    store.close()


def test_a_chunk_that_is_not_its_documents_slice_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx")
    store.create()
    doc = Document("a", "Alpha beta.")
    with pytest.raises(ValueError, match="slice"):
        store.apply([Upsert(doc, [Chunk("a", 0, 5, "Alpha!", 1)], np.ones((1, 4), np.float32))])
    assert store.is_empty()


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Lone surrogates are left out: they cannot be encoded, so no document can hold them.
@given(
    text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
)
def test_passages_are_their_documents_slices_for_any_text(
    tmp_path: Path, text: str, cuts: list[int]
) -> None:
    """Any text SQLite can hold (astral characters, NULs, combining marks) comes back as the
    exact slices the chunks name."""
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    chunks = [Chunk("d", a, b, text[a:b], 1) for a, b in itertools.pairwise(bounds) if a < b]
    store = Store(tmp_path / f"idx-{uuid.uuid4().hex}")
    store.create()
    vectors = np.ones((len(chunks), 4), np.float32)
    store.apply([Upsert(Document("d", text), chunks, vectors)])
    with store.read() as snap:
        ids = [r[0] for r in snap._conn.execute("SELECT id FROM chunks ORDER BY id")]
        assert [snap.passages(ids)[i].text for i in ids] == [c.text for c in chunks]
    store.apply([], deletes=["d"])
    assert store.check().keyword_rows == 0
    store.close()


def downgrade_to_v3(db: Path) -> None:
    """Rewrite a version-4 index the way version 3 kept it: no page map column."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        """
        BEGIN;
        ALTER TABLE documents DROP COLUMN page_starts;
        UPDATE manifest SET value = '3' WHERE key = 'schema_version';
        COMMIT;
        """
    )
    conn.close()


def downgrade_to_v2(db: Path) -> None:
    """Rewrite a version-4 index the way version 2 kept it: the keyword index a contentless
    FTS5 table in the database (filled from the chunks' slices), no keyword engine."""
    downgrade_to_v3(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        """
        BEGIN;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='',
            tokenize='porter unicode61 remove_diacritics 2');
        INSERT INTO chunks_fts(rowid, text) SELECT c.id, substr(d.text, c.start + 1,
            c.end - c.start) FROM chunks c JOIN documents d ON d.id = c.doc_id;
        DROP TABLE keyword_pending;
        DELETE FROM manifest WHERE key = 'keyword_version';
        UPDATE manifest SET value = '2' WHERE key = 'schema_version';
        COMMIT;
        """
    )
    conn.close()
    shutil.rmtree(db.parent / "keyword")


def downgrade_to_v1(db: Path, nan_metadata: str | None = None) -> None:
    """Rewrite a version-4 index the way version 1 kept it: every chunk's text copied
    into ``chunks.text``, the keyword table reading it through triggers, no metadata
    table. ``nan_metadata`` names a document whose metadata is rewritten with a NaN, as
    version 1 could store before non-finite numbers were refused."""
    downgrade_to_v2(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        """
        BEGIN;
        ALTER TABLE chunks ADD COLUMN text TEXT NOT NULL DEFAULT '';
        UPDATE chunks SET text = (SELECT substr(d.text, chunks.start + 1,
            chunks.end - chunks.start) FROM documents d WHERE d.id = chunks.doc_id);
        DROP TABLE chunks_fts;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2');
        INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
        DROP TABLE document_metadata;
        UPDATE manifest SET value = '1' WHERE key = 'schema_version';
        COMMIT;
        """
    )
    if nan_metadata is not None:
        with conn:
            conn.execute(
                'UPDATE documents SET metadata = \'{"score": NaN, "lang": "en"}\' WHERE id = ?',
                (nan_metadata,),
            )
    conn.close()


def test_a_version_3_index_gains_the_page_map_with_its_next_write(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Version 3 (no page map) is read as it is, its documents without pages; its next
    write adds the column (no row rewritten: the old documents read as unpaged) and a
    paged document keeps its page starts."""
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    fake_store.close()
    downgrade_to_v3(fake_store.db_path)
    old = Store(fake_pipeline.index_path)
    assert old.manifest()["schema_version"] == "3"
    with old.read() as snap:
        doc = snap.document("a")
        assert doc is not None and doc.page_starts == ()
    text = "Page one.\n\nPage two."
    chunks = [Chunk("p", 0, len(text), text, 5)]
    vectors = FakeEmbedder().embed([text])
    old.apply([Upsert(Document("p", text, page_starts=(0, 11)), chunks, vectors)])
    assert assert_consistent(old)["schema_version"] == SCHEMA_VERSION
    with old.read() as snap:
        paged, plain = snap.document("p"), snap.document("a")
        assert paged is not None and paged.page_starts == (0, 11)
        assert plain is not None and plain.page_starts == ()
    old.close()


def test_a_version_1_index_is_read_as_it_is_and_migrated_by_its_next_write(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Read as it is (filters through each document's JSON), then migrated by the next
    write: the keyword engine, no chunk texts, metadata rows, even for metadata with
    a NaN that SQLite's JSON cannot read; filters give the same answers before and after."""
    fake_pipeline.ingest(
        [
            Document("a", "Alpha is the first letter.", metadata={"lang": "en", "n": 1}),
            Document("b", "Beta.", metadata={"lang": "el", "tags": ["x", "y"]}),
            Document("c", "Gamma is the third letter.", metadata={"lang": "en"}),
        ]
    )
    fake_store.close()
    downgrade_to_v1(fake_store.db_path, nan_metadata="c")
    old = Store(fake_pipeline.index_path, filter_exact_max=0)
    assert old.manifest()["schema_version"] == "1" and old.check().keyword_rows == 3
    query = FakeEmbedder().embed(["Which letter is first?"])
    wanted = [{"lang": "en"}, {"lang": "el", "tags": '["x","y"]'}, {"n": [1, 2]}]

    def answers() -> list[list[str]]:
        with old.read() as snap:
            doc_of = dict(snap._conn.execute("SELECT id, doc_id FROM chunks").fetchall())
            runs = [snap.dense(query, 5, w)[0] for w in wanted]
            runs += [snap.keyword(["letter"], 5, w) for w in wanted]
        return [sorted(doc_of[h.id] for h in run) for run in runs]

    before = answers()
    # c's metadata (with a NaN) is unreadable to SQLite's JSON: no filter matches it yet.
    assert before[:3] == [["a"], ["b"], ["a"]]
    with old.read() as snap:
        (hit,) = snap.keyword(["alpha"], 5)
        assert snap.passages([hit.id])[hit.id].text == "Alpha is the first letter."
    old.apply([], deletes=["zz"])  # a write (of nothing) migrates
    manifest = assert_consistent(old)
    assert manifest["schema_version"] == SCHEMA_VERSION
    with old.read() as snap:
        assert "text" not in [r[1] for r in snap._conn.execute("PRAGMA table_info(chunks)")]
        rows = snap._conn.execute("SELECT doc_id, key FROM document_metadata").fetchall()
        assert sorted(rows) == [
            ("a", "lang"),
            ("a", "n"),
            ("b", "lang"),
            ("b", "tags"),
            ("c", "lang"),
            ("c", "score"),
        ]
    after = answers()
    assert after[0] == ["a", "c"] and after[1:3] == before[1:3]
    assert after[3:] == [["a", "c"], [], ["a"]]  # keyword: the word is in a and c only
    old.apply([], deletes=["b"])
    with old.read() as snap:
        assert len(snap.keyword(["alpha"], 5)) == 1 and snap.keyword(["beta"], 5) == []
    old.close()


def test_a_version_2_index_keeps_its_fts5_answers_until_its_next_write_moves_them(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """Version 2 (keyword table in the database) is read as it is; its next write drops the
    FTS5 table and fills the keyword engine from every chunk, with the same keyword
    answers (filtered ones too) before and after."""
    fake_pipeline.ingest(
        [
            Document("a", "Alpha is the first letter.", metadata={"lang": "en"}),
            Document("b", "Beta is the second letter.", metadata={"lang": "el"}),
            Document("c", "Gamma; no such word here.", metadata={"lang": "en"}),
        ]
    )
    fake_store.close()
    downgrade_to_v2(fake_store.db_path)
    old = Store(fake_pipeline.index_path)
    assert old.manifest()["schema_version"] == "2" and old.check().keyword_rows == 3
    assert not old.keywords.exists()

    def answers() -> list[list[str]]:
        with old.read() as snap:
            doc_of = dict(snap._conn.execute("SELECT id, doc_id FROM chunks").fetchall())
            runs = [snap.keyword(["letter"], 5), snap.keyword(["letter"], 5, {"lang": "el"})]
            runs.append(snap.keyword(["word", "alpha"], 5))
        return [sorted(doc_of[h.id] for h in run) for run in runs]

    before = answers()
    assert before == [["a", "b"], ["b"], ["a", "c"]]
    old.apply([], deletes=["zz"])  # a write (of nothing) migrates
    manifest = assert_consistent(old)
    assert manifest["schema_version"] == SCHEMA_VERSION and old.keywords.exists()
    with old.read() as snap:
        tables = {r[0] for r in snap._conn.execute("SELECT name FROM sqlite_master")}
    assert "chunks_fts" not in tables
    assert answers() == before
    old.close()


def test_a_writer_killed_between_the_database_and_the_keyword_engine_loses_nothing(
    fake_pipeline: Pipeline, fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write commits in the database, then the keyword engine fails (a full disk, or the
    process dies there): the write stands, its chunks wait as pending ids, and the next
    start-up check brings them in; a replay of what the engine already took is harmless."""
    from rag.store.keyword import KeywordIndex

    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])

    def full_disk(self: KeywordIndex, changes: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(KeywordIndex, "update", full_disk)
        fake_pipeline.ingest([Document("b", "Beta is the second letter.")])
        fake_pipeline.delete("a")
    with fake_store.read() as snap:
        assert snap.keyword_pending() == 2  # b's chunk in, a's out: both pending
        assert [snap.passages([h.id])[h.id].doc_id for h in snap.keyword(["letter"], 5)] == []
    fake_store.close()
    fresh = Store(fake_pipeline.index_path)
    health = fresh.check()  # start-up catches up
    assert health.keyword_rows == health.chunks == 1
    with fresh.read() as snap:
        (hit,) = snap.keyword(["letter"], 5)
        assert snap.passages([hit.id])[hit.id].doc_id == "b"
    # The engine took the ids in, then the process died before the database forgot them:
    # applying them again leaves one entry per chunk.
    with fresh.read() as snap:
        ids = [r[0] for r in snap._conn.execute("SELECT id FROM chunks")]
    fresh.keywords.update([(i, "Beta is the second letter.") for i in ids])
    with fresh.writing(), fresh._conn() as conn:
        conn.executemany("INSERT INTO keyword_pending VALUES (?)", [(i,) for i in ids])
    assert fresh.check().keyword_rows == 1
    assert_consistent(fresh)
    fresh.close()


@pytest.mark.parametrize("moment", ["before", "after"])
def test_sigkill_around_the_keyword_engines_commit_is_caught_up(
    tmp_path: Path, moment: str
) -> None:
    """SIGKILL a real writer right before and right after the keyword engine commits (the
    database has committed): the reopened index is consistent once start-up catches up,
    and every chunk is found by its words."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.store_kill_worker", str(tmp_path), "keyword", moment],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = Store(tmp_path / "default")
    with store.read() as snap:
        pending = snap.keyword_pending()
    assert pending > 0  # the write was committed in the database, not yet cleared
    health = store.check()
    assert health.keyword_rows == health.chunks > 0
    assert_consistent(store)
    with store.read() as snap:
        hits = snap.keyword(["generation"], 1000)
        assert {h.id for h in hits} == {r[0] for r in snap._conn.execute("SELECT id FROM chunks")}
    store.close()


def test_an_index_of_a_newer_schema_is_neither_written_nor_read(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    fake_pipeline.ingest([Document("a", "Alpha.")])
    conn = sqlite3.connect(fake_store.db_path)
    with conn:
        conn.execute("UPDATE manifest SET value = '9' WHERE key = 'schema_version'")
    conn.close()
    other = Store(fake_pipeline.index_path)
    with pytest.raises(StoreError, match="schema version 9"):
        other.apply([], deletes=["a"])
    with pytest.raises(StoreError, match="schema version 9"):
        other.check()
    with pytest.raises(StoreError, match="schema version 9"), other.read():
        pass
    assert other.document("a") is not None
    other.close()


def test_a_damaged_keyword_index_is_a_store_error_on_every_read(tmp_path: Path) -> None:
    """tantivy's own errors (here: unreadable metadata) reach callers as a StoreError naming
    the keyword index, which the service answers with a status and a reason, never a 500."""
    from rag.store.keyword import KeywordIndex

    KeywordIndex(tmp_path).update([(1, "Alpha is the first letter.")])
    (tmp_path / "keyword" / "meta.json").write_text("{not json")
    damaged = KeywordIndex(tmp_path)
    for read in (
        lambda: damaged.refresh("7"),
        damaged.count,
        lambda: damaged.search(["alpha"], 5, lambda ids: ids),
    ):
        with pytest.raises(StoreError, match="keyword index"):
            read()
