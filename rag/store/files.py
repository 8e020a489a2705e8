"""Files of an index: checksums, durable directory entries, metadata as stored."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def _repair(value: Any) -> Any:
    """``value`` with lone surrogates replaced by U+FFFD (pairs kept), walked iteratively."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    root: list[Any] = [value]
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        keys = range(len(node)) if isinstance(node, list) else list(node)
        for k in keys:
            v = node[k]
            if isinstance(v, str):
                node[k] = _repair(v)
            elif isinstance(v, dict | list):
                stack.append(v)
            if isinstance(node, dict) and isinstance(k, str):
                fixed = _repair(k)
                if fixed != k:
                    node[fixed] = node.pop(k)
    return root[0]


def load_metadata(stored: str) -> dict[str, Any]:
    """A document's metadata as stored. Metadata stored before input was validated may hold
    a lone surrogate (stored escaped in the JSON text), which no response can encode: it
    reads back as U+FFFD, so the document stays readable."""
    metadata: dict[str, Any] = json.loads(stored)
    if "\\ud" in stored.lower():  # escapes of surrogates: repair the lone ones
        metadata = _repair(metadata)
    return metadata


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
