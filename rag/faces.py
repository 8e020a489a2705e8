"""Lazy package faces: a package's ``__init__`` names what it offers, loaded on first use.

A face that imported its modules eagerly would make ``import rag.reader.training`` pull in
FAISS, or ``import rag`` pull in torch: the reader's training runs on machines that have
neither, and the CLI answers ``--help`` without loading either. So a face maps each public
name to the module that defines it (PEP 562), and type checkers read the same names from
its ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``names`` (public name -> module) on first use."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
