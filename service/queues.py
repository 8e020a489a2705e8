"""What the service's worker queues share."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def drain(q: queue.Queue[T]) -> list[T]:
    """Take everything waiting in ``q`` now, without blocking (a stop fails what waits)."""
    items: list[T] = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
