"""Metadata and document filters over one snapshot, without O(N) work: a filter is
compiled to SQL, and a question's search either lists the chunk ids it allows (at most
``exact_max``) or, for a wide one, checks each candidate hit by index lookups, knowing from
a fixed-size sample about what share of the index it allows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rag.store.schema import FilterSQL, compile_filters, metadata_values

# Ids bound in one IN (...) query: far below SQLite's variable limit.
SQL_BATCH = 500
# Chunk ids drawn to estimate the share a wide filter allows (binomial error about 2 %).
FILTER_SAMPLE = 500
# A filter whose sampled estimate allows more than this many times ``exact_max`` chunks is
# taken as wide without listing them (listing up to ``exact_max + 1`` ids is work a wide
# filter does not need; about 14 ms at 100k chunks). The margin keeps sampling error from
# sending a narrow filter there (at 2x, a filter allowing ``exact_max`` of 1M chunks is
# misjudged with probability about 0.3 %); a misjudged one is still answered exactly, only
# by the slower path.
WIDE_MARGIN = 2.0


class Filters:
    """Filter planning on the connection ``conn`` of one snapshot; ``indexed`` says whether
    its schema has the metadata table (version 2 on)."""

    def __init__(
        self, conn: sqlite3.Connection, exact_max: int, indexed: Callable[[], bool]
    ) -> None:
        self._conn = conn
        self._exact_max = exact_max
        self._indexed = indexed

    def compile(self, filters: Mapping[str, Any]) -> FilterSQL:
        """The filters as SQL, the listing driven by the metadata key that matches the
        fewest documents (each counted up to ``exact_max + 1``, so choosing costs at most
        that many index entries a key, whatever the index holds)."""
        indexed = self._indexed()
        keys = [k for k in filters if k != "doc_id"]
        driver = None
        if indexed and "doc_id" not in filters and len(keys) > 1:
            counts = {}
            for key in keys:
                values = metadata_values(filters[key])
                marks = ",".join("?" * len(values))
                counts[key] = self._conn.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM document_metadata WHERE key = ? "
                    f"AND value IN ({marks}) LIMIT ?)",
                    [key, *values, self._exact_max + 1],
                ).fetchone()[0]
            driver = min(keys, key=lambda k: counts[k])
        return compile_filters(filters, indexed, driver)

    def allowed(self, sql: FilterSQL, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` whose chunk rows exist and pass the filter."""
        return existing_ids(self._conn, ids, sql.check, sql.check_params)

    def plan(self, sql: FilterSQL, by_doc_ids: bool) -> tuple[list[int] | None, float]:
        """How to answer a filter: ``(its allowed chunk ids, 1.0)`` when they are at most
        ``exact_max``, else ``(None, the share of chunks it allows)``. A metadata filter is
        sampled first, and one estimated past ``WIDE_MARGIN * exact_max`` is not listed at
        all; doc ids name their chunks directly, so theirs is listed at once."""
        share = None
        if not by_doc_ids:
            share, estimate = self.allowed_share(sql)
            if estimate > WIDE_MARGIN * self._exact_max:
                return None, share
        rows = self._conn.execute(
            f"{sql.select} LIMIT ?", (*sql.select_params, self._exact_max + 1)
        ).fetchall()
        if len(rows) <= self._exact_max:
            return [int(r[0]) for r in rows], 1.0
        return None, self.allowed_share(sql)[0] if share is None else share

    def allowed_share(self, sql: FilterSQL) -> tuple[float, float]:
        """The share of live chunks the filter allows and the number it allows, estimated
        from ``FILTER_SAMPLE`` chunk ids drawn between the smallest and the largest (ids are
        assigned in order, so a draw misses only deleted ones): its cost follows the sample,
        not the index."""
        # Two queries: SQLite answers a lone MIN or MAX from the rowid b-tree's ends, but
        # both in one SELECT scan the whole table.
        lo, hi = self._conn.execute(
            "SELECT (SELECT MIN(id) FROM chunks), (SELECT MAX(id) FROM chunks)"
        ).fetchone()
        if lo is None:
            return 1.0, 0.0
        rng = np.random.default_rng(0)
        sample = set(rng.integers(lo, hi + 1, size=FILTER_SAMPLE).tolist())
        live = len(existing_ids(self._conn, sample))
        allowed = len(self.allowed(sql, sample))
        estimate = allowed / len(sample) * (hi - lo + 1)
        # Past ``exact_max`` allowed chunks, a sample that saw none still allows some.
        return max(allowed, 1) / max(live, 1), estimate


def existing_ids(
    conn: sqlite3.Connection,
    ids: Iterable[int],
    check: str = "1",
    params: Sequence[Any] = (),
) -> set[int]:
    """Those of ``ids`` whose chunk rows exist in ``conn``'s snapshot (not tombstones) and
    pass ``check`` (SQL over the chunk row ``c``, with ``params``); batched lookups, so the
    cost follows ``ids``, not the index."""
    values = [int(i) for i in dict.fromkeys(ids)]
    found: set[int] = set()
    for k in range(0, len(values), SQL_BATCH):
        part = values[k : k + SQL_BATCH]
        rows = conn.execute(
            f"SELECT c.id FROM chunks c WHERE c.id IN ({','.join('?' * len(part))}) AND {check}",
            [*part, *params],
        )
        found.update(r[0] for r in rows)
    return found
