"""The index on disk: immutable FAISS vector segments and a tantivy keyword index beside an
SQLite database (rows, the source of truth), written atomically, merged in the background of
writes, and read through ``Snapshot``s."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.faces import lazy_face

if TYPE_CHECKING:
    from rag.store.engine import DROPPED_PREFIX as DROPPED_PREFIX, Store as Store
    from rag.store.errors import (
        StoreBusy as StoreBusy,
        StoreError as StoreError,
        StoreWriteFailed as StoreWriteFailed,
    )
    from rag.store.health import IndexHealth as IndexHealth
    from rag.store.schema import DB_FILE as DB_FILE, SCHEMA_VERSION as SCHEMA_VERSION
    from rag.store.segments import (
        AnnPolicy as AnnPolicy,
        Segment as Segment,
        plan_merge as plan_merge,
        read_segments as read_segments,
        segment_vectors as segment_vectors,
        tombstone as tombstone,
    )
    from rag.store.snapshot import Snapshot as Snapshot
    from rag.store.writes import Upsert as Upsert

_NAMES = {
    "IndexHealth": "rag.store.health",
    "DROPPED_PREFIX": "rag.store.engine",
    "Store": "rag.store.engine",
    "Upsert": "rag.store.writes",
    "StoreBusy": "rag.store.errors",
    "StoreError": "rag.store.errors",
    "StoreWriteFailed": "rag.store.errors",
    "Snapshot": "rag.store.snapshot",
    "SCHEMA_VERSION": "rag.store.schema",
    "DB_FILE": "rag.store.schema",
    **dict.fromkeys(
        ["AnnPolicy", "Segment", "plan_merge", "read_segments", "segment_vectors", "tombstone"],
        "rag.store.segments",
    ),
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
