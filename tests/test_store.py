"""Store: incremental writes, deletes, and atomicity under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag.models import Document
from rag.pipeline import Pipeline
from rag.store import Store, StoreError
from tests.conftest import ROOT, FakeEmbedder, unit_settings


def assert_consistent(store: Store) -> dict[str, str]:
    """Rows, FTS and FAISS agree; returns the manifest. (An audit of the store's own
    tables: it reads the snapshot's connection, which nothing outside the store does.)"""
    with store.read() as snap:
        conn = snap._conn
        manifest = snap.manifest()
        index = snap.vectors()
        chunk_ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
        fts = conn.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0]
        per_doc = dict(conn.execute("SELECT doc_id, COUNT(*) FROM chunks GROUP BY doc_id"))
        declared = dict(conn.execute("SELECT id, n_chunks FROM documents"))
        rows = conn.execute(
            "SELECT c.start, c.end, c.text, d.text FROM chunks c "
            "JOIN documents d ON d.id = c.doc_id"
        ).fetchall()
    faiss_ids = set() if index is None else set(faiss.vector_to_array(index.id_map).tolist())
    assert faiss_ids == chunk_ids
    assert fts == len(chunk_ids)
    assert {k: v for k, v in declared.items() if v} == per_doc
    for start, end, text, doc_text in rows:
        assert doc_text[start:end] == text
    files = sorted(p.name for p in store.path.glob("vectors.*"))
    assert manifest.get("faiss_file") in files or index is None
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
    assert_consistent(store)
    # Older generations are removed; the one just replaced stays for readers one behind.
    assert len(list(store.path.glob("vectors.*"))) == 2


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


def test_sigkill_mid_ingest_leaves_a_consistent_index(tmp_path: Path) -> None:
    """Kill a writer at random moments; every reopen is consistent and loses nothing done."""
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reported = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.store_kill_worker", str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        # Wait for at least one commit of this run, then kill at a random moment after it.
        line = proc.stdout.readline()
        assert line.startswith("committed"), line
        reported = int(line.split()[1])
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.splitlines():
            reported = int(line.split()[1])
        store = Store(tmp_path / "default")
        manifest = assert_consistent(store)
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


def test_a_read_keeps_its_generation_through_later_writes(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    """The race CI once hit: a reader's snapshot names generation N, writers commit N+1 and
    N+2 (whose cleanup deletes N's file), and only then does the reader ask for vectors."""
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    store = fake_store
    with store.read() as snap:
        ids = {r[0] for r in snap._conn.execute("SELECT id FROM chunks")}
        for i in range(3):
            _ingest_in_thread(fake_pipeline, Document(f"b{i}", f"Beta number {i}."))
        index = snap.vectors()
        assert index is not None
        assert set(faiss.vector_to_array(index.id_map).tolist()) == ids
    manifest = assert_consistent(store)
    files = sorted(p.name for p in store.path.glob("vectors.*"))
    generation = int(manifest["generation"])
    assert files == [f"vectors.{generation - 1}.faiss", f"vectors.{generation}.faiss"]
    # Once no reader holds it, the old generation leaves memory: only the newest stays.
    assert list(store._indexes) == [manifest["faiss_file"]]


def _writes_after_snapshot(
    reader: Store, pipe: Pipeline, docs: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``reader``'s next snapshot see ``docs`` ingested by another process (``pipe``'s
    Store, whose lock and pins are its own) right after its first SELECT, before it loads
    the generation that snapshot names: the only window a pin cannot cover."""
    original = reader._manifest

    def manifest(conn: sqlite3.Connection) -> dict[str, str]:
        result = original(conn)
        monkeypatch.setattr(reader, "_manifest", original)
        for doc in docs:
            _ingest_in_thread(pipe, doc)
        return result

    monkeypatch.setattr(reader, "_manifest", manifest)


def test_a_reader_in_another_process_keeps_its_generation_or_is_told_to_ask_again(
    fake_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Store on the same folder stands for another process. A read loads its
    generation as it pins it, so later writes there cannot take it away; a write landing
    between its snapshot and that load finds the replaced generation still on disk; two
    writes there make it ask again, never hand out a torn index."""
    fake_pipeline.ingest([Document("a", "Alpha is the first letter.")])
    other = Store(fake_pipeline.index_path)
    with other.read() as snap:
        for doc in [Document("b", "Beta."), Document("c", "Gamma.")]:
            _ingest_in_thread(fake_pipeline, doc)  # deletes the file this read pinned
        index = snap.vectors()
        assert index is not None and index.ntotal == 1
    _writes_after_snapshot(other, fake_pipeline, [Document("d", "Delta.")], monkeypatch)
    with other.read() as snap:
        index = snap.vectors()
        assert index is not None and index.ntotal == 3  # one behind: "a", "b", "c"
    two = [Document("e", "Epsilon."), Document("f", "Zeta.")]
    _writes_after_snapshot(other, fake_pipeline, two, monkeypatch)
    with other.read() as snap:
        assert snap.counts()[0] == 4
        with pytest.raises(StoreError, match="ask again"):
            snap.vectors()
    with other.read() as snap:
        index = snap.vectors()
        assert index is not None and index.ntotal == 6
    assert list(other._indexes) == [other.manifest()["faiss_file"]]
    other.close()


def test_a_write_removes_older_generations_and_temp_files(
    fake_pipeline: Pipeline, fake_store: Store
) -> None:
    store = fake_store
    for i in range(3):
        fake_pipeline.ingest([Document(f"d{i}", f"Document number {i}.")])
    (store.path / "vectors.0.faiss").write_bytes(b"stale")
    (store.path / "vectors.99.tmp").write_bytes(b"killed writer")
    fake_pipeline.ingest([Document("e", "One more.")])
    generation = int(store.manifest()["generation"])
    files = sorted(p.name for p in store.path.glob("vectors.*"))
    assert files == [f"vectors.{generation - 1}.faiss", f"vectors.{generation}.faiss"]
    assert_consistent(store)


def test_questions_during_ingests_never_see_a_torn_index(tmp_path: Path) -> None:
    """Readers in threads while a writer replaces documents: every answer cites text that is
    exactly in the document version it read, and no reader fails."""
    settings = unit_settings(index_root=tmp_path / "idx", abstain_threshold=0.0)
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
    from rag.store.snapshot import SQL_BATCH

    n = 2 * SQL_BATCH + 7
    docs = [Document(f"d{i:04d}", f"Document {i}.", f"t{i}") for i in range(n)]
    assert len(fake_pipeline.ingest(docs).added) == n
    changed = Document(docs[SQL_BATCH + 3].id, docs[SQL_BATCH + 3].text, "new title")
    again = [*docs[: SQL_BATCH + 3], changed, *docs[SQL_BATCH + 4 :], Document("zz", "New.")]
    report = fake_pipeline.ingest(again)
    assert report.updated == [changed.id] and report.added == ["zz"]
    assert len(report.unchanged) == n - 1 and report.chunks_embedded == 1
