"""The keyword engine: BM25 over the chunk texts in a tantivy index beside the database.

tantivy (the Rust Lucene-like engine) was chosen over SQLite's FTS5 by measurement
(eval/reports/store/bm25_engines.md: at 1M chunks 10.4 / 25 ms p50 / p95 against 298 /
911 ms, the same SQuAD answer-hit@5) because its block-max WAND skips the postings of
common question words that an FTS5 OR-query reads whole.

It is kept in step with the database, which stays the one source of truth: every write
records the chunk ids it adds or deletes in ``keyword_pending`` inside its own transaction,
and after the commit the writer brings those ids here (``update``): an id whose chunk row
exists is (re)indexed with its text, any other is deleted. Chunk ids are never reused, so
that rule is idempotent and needs no order: a writer killed between the database's commit
and tantivy's, or between tantivy's and clearing the ids, leaves ids pending that the next
writer (or ``Store.check`` at start-up) applies again with the same result. Readers never
trust the engine alone: every hit is checked against their snapshot's chunk rows.

Analysis matches the FTS5 table it replaces: words split at non-alphanumerics, lowercased,
folded to ASCII (diacritics removed) and Porter-stemmed (Snowball English).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import tantivy

from rag.models import Hit
from rag.store.errors import StoreError

KEYWORD_DIR = "keyword"
ANALYZER = "rag_en"
# Words longer than this are not indexed (tantivy's default limit): no query asks for them.
MAX_WORD = 40
# Pending chunk ids brought into the engine per commit of it (a write's own are fewer; a
# migration's are every chunk, committed in steps so that it resumes).
KEYWORD_BATCH = 20_000
# Memory of the one indexing thread (tantivy's floor is 15 MB; more only batches more).
WRITER_HEAP = 64_000_000
# What a posting records and a query decodes: chunk ids and term frequencies, all BM25
# needs. No query here is a phrase, so positions are neither written (new indexes: about
# half the engine's disk) nor read: a term query decodes positions by default, which over
# the 1M-chunk benchmark index made 90 MiB more of the engine's files resident after 600
# questions, for the same hits (eval/reports/store/scale-search.md).
RECORD = "freq"


def analyzer() -> tantivy.TextAnalyzer:
    """The analysis of both the texts and the questions' words."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_WORD))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=False, indexed=True, fast=True)
    builder.add_text_field("text", stored=False, tokenizer_name=ANALYZER, index_option=RECORD)
    return builder.build()


class KeywordIndex:
    """The tantivy index of one store (``<index>/keyword/``), opened on first use.

    Thread-safe: searches share one reader, reloaded when the database says the engine
    moved on (``refresh``); ``update`` is called by the store's one writer only."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / KEYWORD_DIR
        self._index: tantivy.Index | None = None
        self._analyzer = analyzer()
        self._seen: str | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return (self.folder / "meta.json").is_file()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """tantivy's errors on a read (a damaged folder; files a writer in another process
        merged away under a reload) as a StoreError naming the index, never a 500."""
        try:
            yield
        except (ValueError, OSError) as exc:
            raise StoreError(
                f"the keyword index at {self.folder} cannot be read ({exc}); ask again, or "
                "rebuild the index (rag ingest --rebuild) if it persists"
            ) from None

    def _open(self) -> tantivy.Index:
        """The index, created when missing (only the writer creates: ``update``)."""
        with self._lock:
            if self._index is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                if self.exists():
                    index = tantivy.Index.open(str(self.folder))
                else:
                    index = tantivy.Index(_schema(), path=str(self.folder))
                index.register_tokenizer(ANALYZER, self._analyzer)
                index.config_reader("manual")
                self._index = index
            return self._index

    def close(self) -> None:
        """Let go of the engine's files (opened again on next use)."""
        with self._lock:
            self._index = None
            self._seen = None

    def refresh(self, version: str) -> None:
        """See the engine's newest commit if ``version`` (the database's count of keyword
        commits) differs from the one last seen; nothing before the engine exists."""
        if self._seen == version or not self.exists():
            return
        with self._reading():
            index = self._open()
            with self._lock:
                if version != self._seen:
                    index.reload()
                    self._seen = version

    def update(self, changes: Iterable[tuple[int, str | None]]) -> None:
        """Apply ``(chunk id, text)`` pairs in one commit: a text (re)indexes the chunk,
        None deletes it. Deleting first makes a replay after a crash idempotent."""
        index = self._open()
        with index.writer(WRITER_HEAP, 1) as writer:
            # Files of a writer killed before its commit: no commit names them, and the
            # next commit would collide with their names.
            writer.garbage_collect_files()
            for chunk_id, text in changes:
                writer.delete_documents_by_term("id", chunk_id)
                if text is not None:
                    writer.add_document(tantivy.Document(id=chunk_id, text=text))
            writer.commit()
            writer.wait_merging_threads()
        with self._lock:
            index.reload()

    def count(self) -> int:
        """Chunks indexed (deleted ones excluded)."""
        if not self.exists():
            return 0
        with self._reading():
            return int(self._open().searcher().num_docs)

    def terms(self, words: Sequence[str]) -> list[str]:
        """The index terms of a question's words, each once, in order."""
        out: dict[str, None] = {}
        for word in words:
            out.update(dict.fromkeys(self._analyzer.analyze(word)))
        return list(out)

    def search(
        self,
        words: Sequence[str],
        depth: int,
        keep: Callable[[set[int]], set[int]],
        allowed: Sequence[int] | None = None,
        share: float = 1.0,
    ) -> list[Hit]:
        """The ``depth`` best chunks by BM25 for any of ``words`` among those ``keep``
        accepts (the caller's snapshot check), best first. ``allowed`` restricts the search
        to those ids inside the engine; otherwise it asks ``depth / share`` hits and asks
        again for twice as many while too few pass ``keep`` and more may exist."""
        if not self.exists():
            return []
        with self._reading():
            return self._search(words, depth, keep, allowed, share)

    def _search(
        self,
        words: Sequence[str],
        depth: int,
        keep: Callable[[set[int]], set[int]],
        allowed: Sequence[int] | None,
        share: float,
    ) -> list[Hit]:
        index = self._open()
        schema = index.schema
        terms = self.terms(words)
        if not terms:
            return []
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t, RECORD))
                for t in terms
            ]
        )
        if allowed is not None:
            if not allowed:
                return []
            # Scored 0: the restriction must not add to the BM25 score.
            within = tantivy.Query.const_score_query(
                tantivy.Query.term_set_query(schema, "id", [int(i) for i in allowed]), 0.0
            )
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, within)]
            )
        searcher = index.searcher()
        limit = max(depth, int(depth / max(share, 1e-6)))
        while True:
            found = searcher.search(query, limit, count=False).hits
            addresses = [address for _, address in found]
            ids = [int(v) for v in searcher.fast_field_values("id", addresses)]  # type: ignore[arg-type]
            good = keep(set(ids))
            hits = [Hit(i, float(s)) for (s, _), i in zip(found, ids, strict=True) if i in good]
            if len(hits) >= depth or len(found) < limit:
                return hits[:depth]
            limit *= 2


def sync_pending(
    conn: sqlite3.Connection,
    engine: KeywordIndex,
    texts_of: Callable[[Sequence[int]], dict[int, str]],
    batch: int = KEYWORD_BATCH,
) -> int:
    """Apply the chunk ids pending in ``conn``'s database to ``engine`` (write lock held),
    ``batch`` per commit of the engine, each followed by a database commit that clears them
    and counts the engine's version (what readers reload on); ``texts_of`` gives the texts
    of those whose chunk rows exist. The ids applied."""
    done = 0
    while True:
        ids = [
            int(r[0])
            for r in conn.execute(
                "SELECT chunk_id FROM keyword_pending ORDER BY chunk_id LIMIT ?", (batch,)
            )
        ]
        if not ids:
            return done
        texts = texts_of(ids)
        engine.update((i, texts.get(i)) for i in ids)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM keyword_pending WHERE chunk_id <= ?", (ids[-1],))
            conn.execute(
                "INSERT INTO manifest VALUES ('keyword_version', '1') ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        done += len(ids)
