"""Document loaders: ``.txt``, ``.md``, ``.html``/``.htm`` and ``.jsonl``.

A document's id is its path relative to the ingested root (POSIX separators), or the id given
in a JSONL record. The stored text is what every offset refers to: for HTML it is the visible
text, extracted here once, so citations point into that text, never into the markup.
A file that cannot be read or decoded is reported by name; the others still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rag.models import Document

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl"})
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 "
    "h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split()
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "template", "noscript", "svg"})


class LoadError(ValueError):
    """A source that cannot become a document; the message names it."""


@dataclass
class LoadResult:
    """Documents loaded, and failures keyed by file (or ``file:line``) with the reason."""

    documents: list[Document] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


class _VisibleText(HTMLParser):
    """Collects the text a browser would show, one line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """(visible text, title) of an HTML page; white space inside a line is collapsed."""
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = "\n".join(line for line in lines if line)
    title = " ".join("".join(parser.title_parts).split())
    return text, title


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


def decode_text(data: bytes) -> str:
    """UTF-8 (a leading BOM dropped), or LoadError naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not UTF-8 text (byte {exc.start})") from exc


def _read_text(path: Path) -> str:
    try:
        return decode_text(path.read_bytes())
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc


def load_file(path: Path, doc_id: str) -> list[Document]:
    """The documents in one file (several for JSONL). Raises LoadError for a bad file."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"unsupported file type {suffix or '(none)'}")
    return parse_text(_read_text(path), suffix, doc_id)


def load_bytes(data: bytes, suffix: str, doc_id: str) -> list[Document]:
    """The documents in an uploaded file's bytes, typed by ``suffix`` (``.txt``, ...)."""
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"unsupported file type {suffix or '(none)'}")
    return parse_text(decode_text(data), suffix, doc_id)


def parse_text(raw: str, suffix: str, doc_id: str) -> list[Document]:
    """Documents from decoded text of the given type; ``doc_id`` names single documents."""
    if suffix in {".html", ".htm"}:
        text, title = html_to_text(raw)
        return [Document(doc_id, text, title or _first_line_title(text), {"source": doc_id})]
    if suffix == ".jsonl":
        return list(parse_jsonl(raw.splitlines(), source=doc_id))
    return [Document(doc_id, raw, _first_line_title(raw), {"source": doc_id})]


def parse_jsonl(lines: Iterable[str], source: str) -> Iterator[Document]:
    """Documents from JSONL records ``{id, text, title?, metadata?}``; errors name the line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise LoadError(f"{where}: a record must be a JSON object")
        doc_id, text = record.get("id"), record.get("text")
        if not isinstance(doc_id, str | int) or str(doc_id).strip() == "":
            raise LoadError(f"{where}: field 'id' must be a non-empty string")
        if not isinstance(text, str):
            raise LoadError(f"{where}: field 'text' must be a string")
        title = record.get("title", "")
        if not isinstance(title, str):
            raise LoadError(f"{where}: field 'title' must be a string")
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise LoadError(f"{where}: field 'metadata' must be an object")
        yield Document(str(doc_id), text, title or _first_line_title(text), metadata)


def iter_files(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, document id) pairs under ``root``; a file root yields itself, named by its name."""
    if root.is_file():
        yield root, root.name
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            yield path, rel.as_posix()


def load_paths(paths: Iterable[Path]) -> LoadResult:
    """Load every supported file under ``paths``, collecting failures instead of stopping."""
    result = LoadResult()
    seen: dict[str, str] = {}
    for root in paths:
        if not root.exists():
            result.failures[str(root)] = "no such file or folder"
            continue
        for path, doc_id in iter_files(root):
            try:
                docs = load_file(path, doc_id)
            except LoadError as exc:
                result.failures[str(path)] = str(exc)
                continue
            for doc in docs:
                if doc.id in seen:
                    result.failures[str(path)] = (
                        f"document id {doc.id!r} also comes from {seen[doc.id]}"
                    )
                    continue
                seen[doc.id] = str(path)
                result.documents.append(doc)
    return result
