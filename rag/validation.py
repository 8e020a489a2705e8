"""What the library accepts from outside, checked once at every entry point.

Every check here is linear in its input and raises ``InvalidInput`` with a message that
names the field, so the CLI can print one line and the service answer 422:

- text (questions, document texts, titles, chat messages, metadata strings) must be
  encodable as UTF-8: a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON) breaks the
  tokenizer, the encoder and every later JSON response that holds it; NUL is refused too;
- a document id must be addressable by a URL: no control characters, no ``.`` or ``..``
  path segments (clients remove them), and no tail that reads as the span route
  (``…/spans/1-2``);
- metadata is a JSON object of bounded depth whose numbers SQLite holds exactly (finite,
  within the 64-bit integer range);
- filters name at most ``max_keys`` keys of a plain shape (ASCII letters, digits,
  ``_ . : -``) with at most ``max_values`` values each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# SQLite stores integers in 64 bits; json_extract turns larger ones into lossy floats.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPAN_TAIL = re.compile(r"/spans/[0-9]+-[0-9]+\Z")
# The same rules as one pattern, for the OpenAPI schema (a generated client can check an id
# before sending it): ECMA-compatible, anchored without \Z.
DOC_ID_PATTERN = (
    r"^(?!.*/spans/[0-9]+-[0-9]+(?![\s\S]))(?!(?:.*/)?\.\.?(?:/|(?![\s\S])))"
    r"[^\x00-\x1f\x7f-\x9f]+(?![\s\S])"
)
# Filter keys become a quoted SQLite JSON path ($."key"): keep them to a shape that needs
# no escaping there.
FILTER_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
FILTER_KEY = re.compile(FILTER_KEY_PATTERN)
DOC_ID_MAX_CHARS = 512


class InvalidInput(ValueError):
    """Input the library refuses, with the reason (HTTP 422, CLI exit 2)."""


def check_text(value: str, field: str) -> str:
    """``value`` itself, or InvalidInput when it holds a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{field}: not valid Unicode text (a lone surrogate at character {exc.start})"
        ) from None
    return value


def check_doc_id(value: str, field: str = "id") -> str:
    """A document id that round-trips through ``/documents/{id}``, or InvalidInput."""
    check_text(value, field)
    if not 0 < len(value) <= DOC_ID_MAX_CHARS:
        raise InvalidInput(f"{field}: must be 1 to {DOC_ID_MAX_CHARS} characters")
    if (m := _CONTROL.search(value)) is not None:
        raise InvalidInput(f"{field}: holds a control character at {m.start()}")
    if any(part in {".", ".."} for part in value.split("/")):
        raise InvalidInput(f"{field}: no '.' or '..' segments between slashes")
    if _SPAN_TAIL.search(value):
        raise InvalidInput(f"{field}: must not end like a span route ('/spans/<start>-<end>')")
    return value


def check_metadata(value: Any, field: str = "metadata", max_depth: int = 8) -> dict[str, Any]:
    """A JSON object the store can hold and filter on, or InvalidInput.

    Walks the value without recursion, so a deeply nested input costs its size, not the
    stack.
    """
    if not isinstance(value, dict):
        raise InvalidInput(f"{field}: must be a JSON object")
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise InvalidInput(f"{where}: nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for k, v in item.items():
                    if not isinstance(k, str):
                        raise InvalidInput(f"{where}: keys must be strings")
                    check_text(k, f"{where} key")
                    stack.append((v, f"{where}.{k[:40]}", depth + 1))
            else:
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            check_number(item, where)
        else:
            raise InvalidInput(f"{where}: not a JSON value")
    return value


def check_number(value: float, field: str) -> float:
    """A number SQLite holds exactly as it was given: finite, within the 64-bit integer
    range (a larger integer would be stored rounded; beyond that range every float is an
    integer, so this is one bound for both)."""
    if not (math.isfinite(value) and INT64_MIN <= value <= INT64_MAX):
        raise InvalidInput(f"{field}: numbers must be finite and within ±2^63")
    return value


def check_filters(
    filters: Mapping[str, Any] | None, max_keys: int, max_values: int
) -> Mapping[str, Any] | None:
    """Filters the store can run: bounded keys and values of a plain shape."""
    if not filters:
        return filters
    if len(filters) > max_keys:
        raise InvalidInput(f"filters: {len(filters)} keys; the limit is {max_keys}")
    for key, value in filters.items():
        if not isinstance(key, str) or not FILTER_KEY.fullmatch(key):
            raise InvalidInput(
                f"filters: key {str(key)[:40]!r} must be 1-64 ASCII letters, digits or _ . : -"
            )
        values = value if isinstance(value, list) else [value]
        if len(values) > max_values:
            raise InvalidInput(f"filters.{key}: {len(values)} values; the limit is {max_values}")
        for v in values:
            if isinstance(v, str):
                check_text(v, f"filters.{key}")
            elif isinstance(v, bool):
                continue
            elif isinstance(v, int | float):
                check_number(v, f"filters.{key}")
            else:
                raise InvalidInput(f"filters.{key}: values must be strings, numbers or booleans")
    return filters


def check_document(
    doc_id: str, text: str, title: str, metadata: Any, max_metadata_depth: int = 8
) -> None:
    """Everything of a document that reaches the store and later responses."""
    check_doc_id(doc_id, "id")
    check_text(text, "text")
    check_text(title, "title")
    check_metadata(metadata, "metadata", max_metadata_depth)
