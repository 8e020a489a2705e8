"""The whole flow behind one object: ingest, delete, ask, stats.

The CLI and the HTTP service both drive this class, so they answer the same way.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.ingest import Chunker, Embedder, embedding_text
from rag.models import (
    Answer,
    Chunk,
    Document,
    DocumentInfo,
    IndexStats,
    IngestReport,
    Passage,
    ReaderInfo,
    Span,
)
from rag.reader import OnlinePrior, Reader, build_reader, compose_answer, feature_values, no_answer
from rag.reranking import Reranker, load_rerank_model
from rag.retrieval import Mode, Retriever
from rag.settings import Settings
from rag.store import IndexHealth, Snapshot, Store, StoreError, Upsert
from rag.validation import InvalidInput, check_document, check_filters, check_text

ProgressFn = Callable[[int], None]
# Encoder batches per progress update (the encoder sorts texts by length within a call).
PROGRESS_BATCHES = 16


class QuestionError(ValueError):
    """A question the service will not process (empty, blank, too long)."""


class Pipeline:
    """Documents in, cited extractive answers out."""

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        reader: Reader | None = None,
        store: Store | None = None,
        models_of: Pipeline | None = None,
    ) -> None:
        """Collaborators not given are built from ``settings`` (tests and benches pass their
        own: a fake embedder, a reader variant, a store they also inspect); ``models_of``
        lends its models (embedder, reader, reranker) instead of loading them again."""
        self.settings = settings or Settings()
        s = self.settings
        if models_of is not None:
            embedder = embedder or models_of.embedder
            reader = reader or models_of._reader
        self.embedder: Embedder = embedder or Embedder(batch_size=s.embed_batch_size)
        self._chunker = Chunker(s.chunk_tokens, s.chunk_overlap, s.sentence_snap_tokens)
        self._store = store or Store.from_settings(s)
        self._retriever = Retriever(
            self.embedder, s.retrieve_depth, s.rrf_k, s.retrievers, s.keyword_beside_dense
        )
        self._reranker: Reranker | None
        if models_of is not None:
            self._reranker = models_of._reranker
        else:
            model = load_rerank_model() if s.rerank else None
            self._reranker = Reranker(model) if model is not None else None
        self._reader: Reader = reader or build_reader(s, self.embedder)
        # RAG_SPAN_ANSWERABLE_PRIOR=online: this index's answerable share, as questions come.
        self._online: OnlinePrior | None = None
        verifier = self._reader.abstention
        # Only a reader whose share is its fit's (a reader given with its own fixed share
        # keeps it).
        if (
            s.span_answerable_prior == "online"
            and verifier.fit_prior is not None
            and verifier.prior is None
        ):
            self._online = OnlinePrior(
                verifier.fit_prior, s.span_prior_window, s.span_prior_pseudo_count
            )

    def for_index(self, name: str) -> Pipeline:
        """The same pipeline over another named index under the same root, sharing this
        one's models (embedder, reader, reranker): serving many indexes costs one set."""
        return Pipeline(self.settings.model_copy(update={"index_name": name}), models_of=self)

    def warm_up(self) -> None:
        """Load the models so that the first question is not slow."""
        self.embedder.warm_up()
        self._reader.warm_up()

    def answerable_share(self) -> float | None:
        """The answerable share the next question of this index is decided at, estimated
        from those asked so far (``RAG_SPAN_ANSWERABLE_PRIOR=online``); None otherwise."""
        return None if self._online is None else self._online.share()

    @property
    def reader(self) -> ReaderInfo:
        """Which reader answers, its abstention, and the file its fit is written to."""
        r = self._reader
        return ReaderInfo(r.kind, r.abstention, r.fit_file)

    def build_manifest(self) -> dict[str, str]:
        """Keys an index must agree on with this pipeline before it is written to."""
        return {
            **self.embedder.manifest(),
            "embedding_input": "title+chunk" if self.settings.embed_title else "chunk",
            **self._chunker.manifest(),
            "faiss_index_type": self._store.faiss_index_type,
        }

    def chunk(self, document: Document) -> list[Chunk]:
        """The chunks this pipeline would index ``document`` as."""
        return self._chunker.chunk(document)

    # ---- the index -----------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self._store.path

    def exists(self) -> bool:
        """Whether the index has been built."""
        return self._store.exists()

    def check_index(self) -> IndexHealth | None:
        """Check an index's files where one is (or its remains are), without creating one
        where none is; None when there is none. What `rag serve` says before it starts: the
        segments checked here stay loaded, so a later ``open_index`` does not read them
        again."""
        store = self._store
        if not (store.exists() or store.has_vector_files()):
            return None
        store.create()
        store.hold_serving()  # from now on: a rebuild is refused, not swapped in under it
        return store.check()

    def open_index(self) -> IndexHealth:
        """Create the index if missing, check that it was built the way this pipeline builds
        and that its files are whole, and hold it as served (a rebuild is refused while
        this process lives): StoreError with the reason otherwise."""
        self._store.create()
        self._store.check_compatible(self.build_manifest())
        health = self._store.check()
        self._store.hold_serving()
        return health

    def manifest(self) -> dict[str, str]:
        return self._store.manifest()

    def stamp(self, entries: Mapping[str, str]) -> None:
        """Write ``entries`` into the index's manifest (one atomic commit)."""
        with self._store.writing():
            self._store.apply(manifest=entries)

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) of the index; (0, 0) before it exists."""
        return self._store.counts() if self._store.exists() else (0, 0)

    def close(self, wait_merges: bool = True) -> None:
        """Close this thread's connection and stop holding the index as served, once the
        segment merges asked for are done (``wait_merges``; see ``Store.close``)."""
        self._store.close(wait_merges)

    def drop_index(self) -> None:
        """Delete this pipeline's index for good (``Store.drop``): StoreError while another
        process serves it."""
        self._store.drop()

    # ---- writes ------------------------------------------------------------------------
    def ingest(
        self,
        documents: Iterable[Document],
        progress: ProgressFn | None = None,
        rebuild: bool = False,
        commit_every: int | Literal["setting"] | None = "setting",
        plan: ProgressFn | None = None,
        stamp: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> IngestReport:
        """Add new documents, replace changed ones, skip unchanged ones (no embedding).

        Commits every ``commit_every`` chunks (by default the ``commit_chunks`` setting; an
        interrupted long ingest keeps what it committed, and a re-run embeds only what is
        missing), or once at the end when None (all of it or nothing, as the service's
        ingest jobs want). A sequence is checked whole before anything is written; any other
        iterable is streamed, one commit's worth of documents in memory at a time, each
        checked as it comes (a bad one is left out and named in ``report.failed``; the
        rest goes in). ``plan`` is told
        how many chunks will be embedded (it reads the whole input first); ``stamp``
        entries are written into the manifest by the same commit(s).
        """
        t0 = time.perf_counter()
        if commit_every == "setting":
            commit_every = self.settings.commit_chunks
        if isinstance(documents, Sequence):  # refused before anything is written
            for doc in documents:
                self._check(doc)
        if rebuild:
            return self._rebuild(documents, progress)
        manifest = self.build_manifest()
        # The read-compare-write below is one writer's: other threads and processes wait
        # for it (or, with ``wait=False``, StoreBusy at once).
        with self._store.writing(blocking=wait):
            self._store.create()
            self._store.check_compatible(manifest)
            manifest = {**manifest, **(stamp or {})}
            return self._ingest(documents, manifest, progress, commit_every, plan, t0)

    def _check(self, doc: Document) -> None:
        check_document(doc.id, doc.text, doc.title, doc.metadata, self.settings.max_metadata_depth)

    def _changed(
        self,
        documents: Iterable[Document],
        report: IngestReport,
        metadata_only: list[Document],
    ) -> Iterator[tuple[Document, list[Chunk]]]:
        """The documents to embed, chunked, as they come: each compared with its stored
        identity by one lookup (unchanged ones counted in ``report``, ones whose title,
        metadata or page map alone changed put in ``metadata_only``)."""
        streamed = not isinstance(documents, Sequence)
        for doc in documents:
            try:
                self._check(doc)
            except InvalidInput as exc:
                if not streamed:
                    raise
                report.failed[doc.id] = str(exc)  # a stream goes on past a bad document
                continue
            old = self._store.document_infos([doc.id]).get(doc.id)
            if old is not None and old.sha256 == doc.sha256:
                stored = (old.title, json.dumps(old.metadata, sort_keys=True), old.page_starts)
                given = (doc.title, json.dumps(doc.metadata, sort_keys=True), doc.page_starts)
                if stored != given:
                    metadata_only.append(doc)
                    report.updated.append(doc.id)
                else:
                    report.unchanged.append(doc.id)
                continue
            (report.updated if old is not None else report.added).append(doc.id)
            yield doc, self._chunker.chunk(doc)

    def _ingest(
        self,
        documents: Iterable[Document],
        manifest: Mapping[str, str],
        progress: ProgressFn | None,
        commit_every: int | None,
        plan: ProgressFn | None,
        t0: float,
    ) -> IngestReport:
        report = IngestReport()
        metadata_only: list[Document] = []
        todo: Iterable[tuple[Document, list[Chunk]]] = self._changed(
            documents, report, metadata_only
        )
        if plan is not None:
            todo = list(todo)
            plan(sum(len(c) for _, c in todo))
        embedded, embed_seconds, committed = 0, 0.0, False
        batch: list[tuple[Document, list[Chunk]]] = []
        for item in todo:
            batch.append(item)
            if commit_every is not None and sum(len(c) for _, c in batch) >= commit_every:
                n, secs = self._commit(batch, manifest, progress, metadata_only)
                embedded, embed_seconds, batch, committed = (
                    embedded + n,
                    embed_seconds + secs,
                    [],
                    True,
                )
                metadata_only.clear()
        if batch or metadata_only or not committed:
            n, secs = self._commit(batch, manifest, progress, metadata_only)
            embedded, embed_seconds = embedded + n, embed_seconds + secs
        return dataclasses.replace(
            report,
            chunks_embedded=embedded,
            seconds=time.perf_counter() - t0,
            embed_seconds=embed_seconds,
        )

    def _commit(
        self,
        batch: Sequence[tuple[Document, list[Chunk]]],
        manifest: Mapping[str, str],
        progress: ProgressFn | None,
        metadata_only: Sequence[Document] = (),
    ) -> tuple[int, float]:
        texts = [
            embedding_text(doc.title, c.text, self.settings.embed_title)
            for doc, chunks in batch
            for c in chunks
        ]
        if texts:
            self.embedder.warm_up()
        t0 = time.perf_counter()
        vectors = self._embed_with_progress(texts, progress)
        embed_seconds = time.perf_counter() - t0
        upserts, row = [], 0
        for doc, chunks in batch:
            upserts.append(Upsert(doc, chunks, vectors[row : row + len(chunks)]))
            row += len(chunks)
        self._store.apply(upserts, manifest=manifest, metadata_only=metadata_only)
        return len(texts), embed_seconds

    def _embed_with_progress(self, texts: Sequence[str], progress: ProgressFn | None) -> np.ndarray:
        if not texts:  # nothing to embed: do not load the model for it
            return np.zeros((0, 0), dtype=np.float32)
        step = len(texts) if progress is None else self.embedder.batch_size * PROGRESS_BATCHES
        parts = []
        for i in range(0, len(texts), step):
            parts.append(self.embedder.embed(texts[i : i + step]))
            if progress is not None:
                progress(len(parts[-1]))
        return np.concatenate(parts)

    def _rebuild(self, documents: Iterable[Document], progress: ProgressFn | None) -> IngestReport:
        """Build a fresh index beside the old one, then swap it in.

        Refused while a server holds the index (it would keep using the replaced files);
        other writers wait, so two rebuilds never share the folder they build in."""
        final = self._store.path
        # The old index's merges finish first: one waiting for the write lock taken below
        # would otherwise wait for it while this waits for the merge.
        self._store.wait_for_merges()
        with self._store.replacing(), self._store.writing():
            tmp = final.with_name(final.name + ".rebuild")
            shutil.rmtree(tmp, ignore_errors=True)
            fresh = Pipeline(
                self.settings.model_copy(update={"index_name": tmp.name}),
                self.embedder,
                self._reader,
            )
            report = fresh.ingest(documents, progress)
            fresh.close()
            self._store.retire()
            self._store.close(wait_merges=False)  # none left (waited for above)
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
            for lock in (fresh._store.locks.write_path, fresh._store.locks.serve_path):
                lock.unlink(missing_ok=True)
        # The swapped-in folder is new: open it afresh (the old connection saw the old one).
        self._store = Store.from_settings(self.settings, final)
        return report

    def delete(self, doc_id: str) -> bool:
        """Remove a document and its vectors; False when it was not there."""
        if not self._store.exists():
            return False
        with self._store.writing():
            if self._store.document_info(doc_id) is None:
                return False
            self._store.apply(deletes=[doc_id])
        return True

    # ---- reads -------------------------------------------------------------------------
    def check_question(self, question: str) -> str:
        """The question stripped, or QuestionError saying what is wrong with it."""
        if not isinstance(question, str) or not question.strip():
            raise QuestionError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise QuestionError(
                f"the question has {len(question)} characters; the limit is "
                f"{self.settings.max_question_chars}"
            )
        try:
            check_text(question, "question")
        except InvalidInput as exc:
            raise QuestionError(str(exc)) from None
        return question.strip()

    def check_filters(self, filters: Mapping[str, Any] | None) -> None:
        """QuestionError unless the store can run ``filters`` (bounded, plain keys)."""
        s = self.settings
        try:
            check_filters(filters, s.max_filter_keys, s.max_filter_values)
        except InvalidInput as exc:
            raise QuestionError(str(exc)) from None

    def check_answers(self, answers: int) -> None:
        """QuestionError unless ``answers`` (how many distinct answers) is 1..max_answers."""
        limit = self.settings.max_answers
        if isinstance(answers, bool) or not isinstance(answers, int) or not 1 <= answers <= limit:
            raise QuestionError(f"answers must be between 1 and {limit}")

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        context: str | None = None,
        answers: int = 1,
    ) -> Answer:
        """Answer one question from the index, or abstain with the reason.

        ``context`` (earlier turns of a conversation) is added to the retrieval query only;
        the reader answers ``question`` itself. ``answers``: how many distinct answers
        ``Answer.answers`` lists (best first).
        """
        return self.ask_batch([question], top_k, filters, mode, [context], answers)[0]

    def ask_batch(
        self,
        questions: Sequence[str],
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        contexts: Sequence[str | None] | None = None,
        answers: int = 1,
    ) -> list[Answer]:
        """``ask`` for many questions: one encoder pass for the queries, one for the reader."""
        checked = [self.check_question(q) for q in questions]
        self.check_filters(filters)
        self.check_answers(answers)
        if not checked:
            return []
        if not self._store.exists() or self._store.is_empty():
            return [no_answer(q, "no documents: the index is empty") for q in checked]
        # Vectors of another model would be silent garbage: refuse them.
        self._store.check_compatible(self.embedder.manifest())
        contexts = list(contexts) if contexts is not None else [None] * len(checked)
        queries = [
            f"{self._clip_context(c)} {q}" if c and c.strip() else q
            for q, c in zip(checked, contexts, strict=True)
        ]
        t0 = time.perf_counter()
        # One snapshot for retrieval and the documents it cites: a concurrent ingest or delete
        # is seen entirely or not at all.
        with self._store.read() as snap:
            passages = self._retrieve(snap, queries, top_k, filters, mode)
            documents = snap.documents_by_id([p.doc_id for ps in passages for p in ps])
        t1 = time.perf_counter()
        spans = self._reader.read_batch(checked, passages, documents)
        composed = [
            self._compose(q, ps, sp, documents, answers)
            for q, ps, sp in zip(checked, passages, spans, strict=True)
        ]
        t2 = time.perf_counter()
        n = len(checked)
        timings = {"retrieve": (t1 - t0) * 1000 / n, "read": (t2 - t1) * 1000 / n}
        return [dataclasses.replace(a, timings_ms=timings) for a in composed]

    def _clip_context(self, context: str) -> str:
        """The end of a conversation context, at most a question's length: a long earlier
        turn must not become a huge keyword query."""
        limit = self.settings.max_question_chars
        try:
            return check_text(context.strip()[-limit:], "context")
        except InvalidInput as exc:
            raise QuestionError(str(exc)) from None

    def retrieve(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[Passage]:
        """The fused passages for ``question`` without reading them (evaluation, benches)."""
        return self.retrieve_batch([question], top_k, filters, mode)[0]

    def retrieve_batch(
        self,
        questions: Sequence[str],
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
    ) -> list[list[Passage]]:
        """``retrieve`` for many questions: one query encoder pass, one snapshot."""
        self.check_filters(filters)
        with self._store.read() as snap:
            return self._retrieve(snap, questions, top_k, filters, mode)

    def _retrieve(
        self,
        snap: Snapshot,
        queries: Sequence[str],
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        mode: Mode | None,
    ) -> list[list[Passage]]:
        """Fused candidates, reranked when the reranker is on, cut to ``top_k``."""
        k = top_k or self.settings.top_k
        if self._reranker is None:
            return self._retriever.retrieve_batch(snap, queries, k, filters, mode)
        depth = max(k, self.settings.rerank_depth)
        fused = self._retriever.retrieve_batch(snap, queries, depth, filters, mode)
        return [ps[:k] for ps in self._reranker.rerank_batch(queries, fused)]

    def documents_of(self, passages: Sequence[Passage]) -> dict[str, Document]:
        """The stored documents the passages come from, by id (one snapshot)."""
        with self._store.read() as snap:
            return snap.documents_by_id([p.doc_id for p in passages])

    def _compose(
        self,
        question: str,
        passages: Sequence[Passage],
        spans: Sequence[Span],
        documents: Mapping[str, Document],
        answers: int = 1,
    ) -> Answer:
        abstention = None
        if self._online is not None and spans:
            abstention = self._online.decide_with(self._reader.abstention, feature_values(spans[0]))
        return compose_answer(
            question, spans, documents, passages, self._reader, answers, abstention
        )

    def read(self, question: str, passages: Sequence[Passage]) -> Answer:
        """Compose the answer from already retrieved passages (evaluation reuses retrieval)."""
        documents = self.documents_of(passages)
        spans = self._reader.read(question, passages, documents)
        return self._compose(question, passages, spans, documents)

    # ---- documents ---------------------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        """A stored document with its text, or None."""
        if not self._store.exists():
            return None
        return self._store.document(doc_id)

    def document_with_info(self, doc_id: str) -> tuple[Document, DocumentInfo] | None:
        """A stored document and its identity (chunk count), read from one snapshot."""
        if not self._store.exists():
            return None
        with self._store.read() as snap:
            doc, info = snap.document(doc_id), snap.document_info(doc_id)
        return None if doc is None or info is None else (doc, info)

    def documents(self, limit: int = 100, offset: int = 0) -> list[DocumentInfo]:
        """A page of the stored documents, by id."""
        if not self._store.exists():
            return []
        return self._store.documents(limit, offset)

    def stats(self) -> IndexStats:
        if not self._store.exists():
            raise StoreError(f"no index at {self._store.path} (run `rag ingest PATH` first)")
        docs, chunks = self._store.counts()
        return IndexStats(str(self._store.path), docs, chunks, self._store.manifest())
