"""The loaders' one error type."""

from __future__ import annotations


class LoadError(ValueError):
    """A source that cannot become a document; the message names it."""
