"""SQLite connections to an index database: one per thread, opened on first use."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from rag.store.errors import StoreError


class Connections:
    """The calling thread's connection to ``db_path`` (autocommit mode: transactions are
    explicit; foreign keys on; durable commits; a busy database waited for up to 30 s).
    ``dropped`` says whether the index was deleted (then no connection is opened)."""

    def __init__(self, db_path: Path, dropped: Callable[[], bool]) -> None:
        self.db_path = db_path
        self._dropped = dropped
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._dropped():
                raise StoreError(f"the index {self.db_path.parent.name!r} was deleted")
            if not self.db_path.is_file():
                raise StoreError(f"no index at {self.db_path.parent} (run `rag ingest PATH` first)")
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (a later use opens another)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
