"""The index database: tables, filters, the schema's migrations.

SQLite (stdlib, WAL) holds the manifest, documents (their text, stored once) and chunks
(offsets into their document's text, no copy of it). The BM25 side lives in the keyword
engine beside it (``keyword``); ``keyword_pending`` holds the chunk ids a write added or
deleted that the engine has not taken in yet, written in the write's own transaction.

``document_metadata`` holds each document's top-level metadata as (key, value) rows under an
index, so a filter is an index lookup, not a scan of every document's JSON.

Version 1 kept every chunk's text a second time in ``chunks.text``, with an FTS5 table
reading it through triggers; version 2 had a contentless FTS5 table as its keyword index;
version 3 had no page map (``documents.page_starts``: a paged document's page start
offsets as JSON, ``''`` for the others). ``migrate`` brings any of them to version 4 inside
the caller's write transaction; each is still read as it is until then.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.store.errors import StoreError

SCHEMA_VERSION = "4"
# Versions this code reads (writing migrates an older one first).
READABLE_VERSIONS = ("1", "2", "3", "4")
# Versions without the page map column.
UNPAGED_VERSIONS = ("1", "2", "3")
# Versions whose keyword index is an FTS5 table in the database.
FTS5_VERSIONS = ("1", "2")
DB_FILE = "index.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    text TEXT NOT NULL,
    n_chunks INTEGER NOT NULL,
    page_starts TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS keyword_pending (chunk_id INTEGER PRIMARY KEY);
"""
METADATA_TABLE = (
    """CREATE TABLE IF NOT EXISTS document_metadata (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY (doc_id, key)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS document_metadata_value ON document_metadata(key, value)",
)
# A document's top-level metadata keys and values as rows (the values json_extract gives).
INDEX_METADATA = (
    "INSERT INTO document_metadata (doc_id, key, value) SELECT ?, key, value FROM json_each(?)"
)
SCHEMA += "".join(f"{statement};\n" for statement in METADATA_TABLE)
PENDING = "INSERT OR IGNORE INTO keyword_pending (chunk_id) VALUES (?)"


def manifest_of(conn: sqlite3.Connection) -> dict[str, str]:
    """The manifest as ``conn``'s snapshot sees it."""
    return dict(conn.execute("SELECT key, value FROM manifest").fetchall())


def check_version(path: Path, manifest: Mapping[str, str]) -> str:
    """The index's schema version, when this code reads it (a newer one is refused: its
    rows may mean something this code does not know)."""
    version = manifest.get("schema_version", SCHEMA_VERSION)
    if version not in READABLE_VERSIONS:
        raise StoreError(
            f"index {path} has schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}: upgrade rag-extractive or rebuild the index"
        )
    return version


def check_is_index(tables: set[str], db_path: Path) -> None:
    """StoreError unless ``tables`` (a database's) are an index's."""
    if not {"manifest", "documents", "chunks"} <= tables:
        raise StoreError(
            f"{db_path} is not an index database (tables: "
            f"{', '.join(sorted(tables)) or 'none'}); it is not overwritten"
        )


def create_database(folder: Path) -> None:
    """The index database of ``folder`` with this schema (idempotent), never over the
    remains of another index: an existing database must be an index; a missing or
    zero-byte one is created only when no vector file is there (otherwise the next commit
    would delete vectors that a restore could still pair with their rows). The caller holds
    the write lock."""
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / DB_FILE
    vectors = sorted(p.name for p in folder.glob("vectors.*.faiss"))
    empty = not db_path.exists() or db_path.stat().st_size == 0
    if empty and vectors:
        what = "missing" if not db_path.exists() else "empty (0 bytes)"
        raise StoreError(
            f"the index database {db_path} is {what} but vector files are there "
            f"({', '.join(vectors[:3])}): restore the database or move the folder away; "
            "it is not recreated over them"
        )
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            if not empty:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                check_is_index(tables, db_path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO manifest VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the index database {db_path} is damaged: {exc}") from None


def migrate(conn: sqlite3.Connection, version: str) -> None:
    """An older version to this one in the caller's write transaction (all or nothing with
    it). From 1 or 2: the FTS5 table goes, and every chunk id becomes pending for the
    keyword engine, which the writer fills after the commit; version 1's chunk texts leave
    ``chunks`` and its metadata table is made (a cost that follows the index, once; the
    space freed is reused). From 1 to 3: the page map column is added (SQLite adds a
    column with a constant default without rewriting a row)."""
    if version == "1":
        _migrate_v1_rows(conn)
    if version in FTS5_VERSIONS:
        conn.execute("DROP TABLE IF EXISTS chunks_fts")
        conn.execute("CREATE TABLE IF NOT EXISTS keyword_pending (chunk_id INTEGER PRIMARY KEY)")
        conn.execute("INSERT OR IGNORE INTO keyword_pending (chunk_id) SELECT id FROM chunks")
    if version in UNPAGED_VERSIONS:
        conn.execute("ALTER TABLE documents ADD COLUMN page_starts TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE manifest SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))


def _migrate_v1_rows(conn: sqlite3.Connection) -> None:
    """Version 1's rows as version 2 has them: chunk texts out, metadata rows in."""
    conn.execute("DROP TRIGGER IF EXISTS chunks_ai")
    conn.execute("DROP TRIGGER IF EXISTS chunks_ad")
    conn.execute("DROP TABLE IF EXISTS chunks_fts")
    conn.execute("ALTER TABLE chunks DROP COLUMN text")
    for statement in METADATA_TABLE:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO document_metadata (doc_id, key, value) SELECT d.id, j.key, j.value "
        "FROM documents d, json_each(d.metadata) j WHERE json_valid(d.metadata)"
    )
    # Metadata SQLite's JSON cannot read (NaN or Infinity, stored before such numbers were
    # refused): its rows from Python's reading, so the migration never fails on it.
    for doc_id, text in conn.execute(
        "SELECT id, metadata FROM documents WHERE NOT json_valid(metadata)"
    ).fetchall():
        conn.executemany(
            "INSERT INTO document_metadata (doc_id, key, value) VALUES (?, ?, ?)",
            [(doc_id, key, sql_value(value)) for key, value in json.loads(text).items()],
        )


def dump_page_starts(starts: tuple[int, ...]) -> str:
    """A page map as stored: JSON, or ``''`` for a document without pages."""
    return json.dumps(list(starts), separators=(",", ":")) if starts else ""


def load_page_starts(text: str | None) -> tuple[int, ...]:
    """A stored page map (``dump_page_starts``); ``()`` for none."""
    return tuple(int(x) for x in json.loads(text)) if text else ()


def metadata_values(value: Any) -> list[Any]:
    """The values a filter key allows: a list's items, or the one value."""
    return list(value) if isinstance(value, list) else [value]


def sql_value(value: Any) -> Any:
    """A metadata value as ``json_extract`` gives it: scalars as themselves (booleans as
    1 / 0), arrays and objects as compact JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


@dataclass(frozen=True, slots=True)
class FilterSQL:
    """A question's filters as SQL over a chunk row ``c``, in two forms whose cost follows
    what they touch, never the index: ``check`` decides one row by index lookups (a keyword
    or vector hit is checked as it comes); ``select`` lists allowed chunk ids, driven by the
    most selective index (the doc ids named, or one metadata key's values)."""

    check: str
    check_params: tuple[Any, ...]
    select: str
    select_params: tuple[Any, ...]


def compile_filters(
    filters: Mapping[str, Any], indexed: bool = True, driver_key: str | None = None
) -> FilterSQL:
    """SQL for ``{"doc_id": id | [ids], "<metadata key>": value | [values]}`` (all must hold;
    a list allows any of its values; an empty list matches nothing). The listing is driven
    by the doc ids when named, else by ``driver_key``'s values (the caller's pick of the
    most selective key), else by the first metadata key. ``indexed=False`` is a version-1
    database, which has no metadata table: there a check reads the document's JSON and a
    listing scans (until the next write migrates it)."""
    checks: list[str] = []
    params: list[Any] = []
    driver: tuple[str, list[Any]] | None = None
    for key, value in filters.items():
        values = metadata_values(value)
        if key == "doc_id":
            values = [str(v) for v in values]
        marks = ",".join("?" * len(values))
        if not values:
            checks.append("0")
        elif key == "doc_id":
            checks.append(f"c.doc_id IN ({marks})")
            params += values
            driver = (f"FROM chunks c WHERE c.doc_id IN ({marks})", values)
        elif indexed:
            checks.append(
                "EXISTS (SELECT 1 FROM document_metadata m WHERE m.doc_id = c.doc_id "
                f"AND m.key = ? AND m.value IN ({marks}))"
            )
            params += [key, *values]
            if driver is None or (key == driver_key and "doc_id" not in filters):
                driver = (
                    "FROM document_metadata m0 JOIN chunks c ON c.doc_id = m0.doc_id "
                    f"WHERE m0.key = ? AND m0.value IN ({marks})",
                    [key, *values],
                )
        else:
            # Metadata SQLite's JSON cannot read (a NaN) matches nothing, never an error.
            checks.append(
                "(SELECT CASE WHEN json_valid(d.metadata) THEN json_extract(d.metadata, ?) END "
                f"FROM documents d WHERE d.id = c.doc_id) IN ({marks})"
            )
            params += ["$." + json.dumps(key), *values]
    check = " AND ".join(checks) or "1"
    source, source_params = driver or ("FROM chunks c WHERE 1", [])
    return FilterSQL(
        check,
        tuple(params),
        f"SELECT c.id {source} AND {check}",
        (*source_params, *params),
    )
