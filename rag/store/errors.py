"""What can go wrong with an index, as exceptions the CLI and HTTP map to messages."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The index cannot be used as asked (missing, built for another model, damaged, ...)."""


class StoreWriteFailed(StoreError):
    """A write that could not be made (disk full, I/O error); the index is as it was."""


class StoreBusy(StoreError):
    """Another process is writing this index (a non-blocking write was asked for)."""
