"""What start-up can afford to verify of an index: the database is one, the manifest's
segment files are there with their recorded checksums and sizes, and live vectors, chunk
rows and keyword rows agree in number."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.store.errors import StoreBusy, StoreError
from rag.store.schema import check_is_index, check_version
from rag.store.segments import read_segments

if TYPE_CHECKING:
    from rag.store.engine import Store


@dataclass(frozen=True, slots=True)
class IndexHealth:
    """What ``Store.check`` counted: equal vectors, chunk rows and keyword rows."""

    documents: int
    chunks: int
    vectors: int
    keyword_rows: int


def check(store: Store) -> IndexHealth:
    """Open ``store``'s index and verify it (see the module docstring). Chunk ids a killed
    writer left pending for the keyword engine are applied first, unless another process is
    writing (it applies them itself; the keyword count is then not compared). StoreError
    with the reason otherwise."""
    if not store.exists():
        raise StoreError(f"no index at {store.path} (run `rag ingest PATH` first)")
    try:
        try:
            with store.writing(blocking=False):
                store.sync_keywords()
                return _check(store, settled=True)
        except StoreBusy:
            return _check(store, settled=False)
    except StoreError:
        raise  # already says what is wrong (it is a RuntimeError too)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the index database {store.db_path} is damaged: {exc}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise StoreError(f"the keyword index of {store.path} cannot be read: {exc}") from None


def _check(store: Store, settled: bool) -> IndexHealth:
    path = store.path
    try:
        with store.read() as snap:
            check_is_index(snap.table_names(), store.db_path)
            manifest = snap.manifest()
            check_version(path, manifest)
            docs, chunks = snap.counts()
            keyword = snap.keyword_rows()
            settled = settled and not snap.keyword_pending()
            for segment in read_segments(manifest):
                if not (path / segment.file).is_file():
                    raise StoreError(f"the vector file {path / segment.file} is missing")
            loaded = snap.segments()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the index database {store.db_path} is damaged: {exc}") from None
    for segment, index in loaded:
        if segment.count >= 0 and index.ntotal != segment.count:
            raise StoreError(
                f"the vector file {path / segment.file} holds {index.ntotal} vectors, "
                f"its manifest says {segment.count}"
            )
    vectors = sum(int(index.ntotal) - segment.dead for segment, index in loaded)
    if vectors != chunks or (settled and keyword != chunks):
        raise StoreError(
            f"the index at {path} is inconsistent: {vectors} vectors, {chunks} chunk "
            f"rows, {keyword} keyword rows"
        )
    return IndexHealth(int(docs), int(chunks), vectors, int(keyword))
