"""The index database: tables, the FTS5 keyword table kept in step by triggers, filters.

SQLite (stdlib, WAL) holds the manifest, documents, chunks and an FTS5 table over the chunk
texts (the BM25 side: persistent and incremental with the rows it indexes, in the same
transaction as every write).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = "1"
DB_FILE = "index.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    text TEXT NOT NULL,
    n_chunks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""


def filter_sql(filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """SQL over ``d`` (documents) for ``{"doc_id": id | [ids], "<metadata key>": value}``."""
    if not filters:
        return "1", []
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        values = value if isinstance(value, list) else [value]
        if not values:  # an empty list of allowed values matches nothing
            clauses.append("0")
        elif key == "doc_id":
            clauses.append(f"d.id IN ({','.join('?' * len(values))})")
            params += [str(v) for v in values]
        else:
            clauses.append(f"json_extract(d.metadata, ?) IN ({','.join('?' * len(values))})")
            params.append("$." + json.dumps(key))
            params += values
    return " AND ".join(clauses), params
