"""Document loaders: ``.txt``, ``.md``, ``.html``/``.htm``, ``.jsonl`` and ``.pdf``.

A document's id is its path relative to the ingested root (POSIX separators), or the id given
in a JSONL record. The stored text is what every offset refers to: for HTML it is the visible
text and for PDF the cleaned text layer (``rag.ingest.pdf``, with its page map), extracted
here once, so citations point into that text, never into the markup or the file.
A file that cannot be read or decoded is reported by name; the others still load.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from rag.ingest.errors import LoadError
from rag.ingest.pdf import PdfLimits, read_pdf
from rag.models import Document
from rag.validation import InvalidInput, check_document

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".pdf"})
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 "
    "h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split()
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "template", "noscript", "svg"})


@dataclass
class LoadResult:
    """Documents loaded, and failures keyed by file (or ``file:line``) with the reason."""

    documents: list[Document] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


# libxml2 refuses deeper trees (XML_PARSE_HUGE is off): a page nested this deep is
# refused by name rather than read in part.
HTML_MAX_DEPTH = 255


def html_to_text(markup: str) -> tuple[str, str]:
    """(visible text, title) of an HTML page; white space inside a line is collapsed.

    Parsed by libxml2's HTML parser (lxml): C, linear in the input on every pattern we
    tried (unclosed tags, bogus comments, entities, 1 MB runs of each), tolerant of broken
    markup, and bounded in depth; ``html.parser`` was quadratic on runs of unclosed tags
    and raised on ``<![foo[``, and an HTML5 tree builder (lexbor) is quadratic in nesting
    depth. The tree is walked without recursion.
    """
    if not markup.strip():
        return "", ""
    parser = etree.HTMLParser(
        encoding="utf-8", recover=True, no_network=True, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(markup.encode("utf-8"), parser)
    except etree.ParserError:  # nothing but white space or markup without content
        return "", ""
    if any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log):
        raise LoadError(f"HTML nested deeper than {HTML_MAX_DEPTH} elements")
    if root is None:
        return "", ""
    parts: list[str] = []
    title_parts: list[str] = []
    hidden = 0
    for event, el in etree.iterwalk(root, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if tag == "title" and el.text:
                title_parts.append(el.text)
            if tag in _HIDDEN_TAGS:
                hidden += 1
            elif not hidden:
                if tag in _BLOCK_TAGS:
                    parts.append("\n")
                if el.text:
                    parts.append(el.text)
            continue
        if tag in _HIDDEN_TAGS:
            hidden -= 1
        elif not hidden and tag in _BLOCK_TAGS:
            parts.append("\n")
        if not hidden and el.tail:
            parts.append(el.tail)
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    text = "\n".join(line for line in lines if line)
    title = " ".join("".join(title_parts).split())
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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc


def load_file(path: Path, doc_id: str, pdf_limits: PdfLimits | None = None) -> list[Document]:
    """The documents in one file (several for JSONL). Raises LoadError for a bad file."""
    return load_bytes(_read_bytes(path), path.suffix, doc_id, pdf_limits=pdf_limits)


def load_bytes(
    data: bytes,
    suffix: str,
    doc_id: str,
    max_records: int | None = None,
    pdf_limits: PdfLimits | None = None,
) -> list[Document]:
    """The documents in a file's bytes, typed by ``suffix`` (``.txt``, ...)."""
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"unsupported file type {suffix or '(none)'}")
    if suffix == ".pdf":
        return [pdf_document(data, doc_id, pdf_limits)]
    return parse_text(decode_text(data), suffix, doc_id, max_records)


def pdf_document(data: bytes, doc_id: str, limits: PdfLimits | None = None) -> Document:
    """A PDF as one document: its cleaned text, its /Title (else first line), its pages."""
    pdf = read_pdf(data, limits)
    doc = Document(doc_id, pdf.text, pdf.title, {"source": doc_id}, pdf.page_starts)
    return _checked(doc, doc_id)


def parse_text(
    raw: str, suffix: str, doc_id: str, max_records: int | None = None
) -> list[Document]:
    """Documents from decoded text of the given type; ``doc_id`` names single documents.

    A JSONL file with more than ``max_records`` records is refused (LoadError)."""
    if suffix == ".jsonl":
        docs: list[Document] = []
        for doc in parse_jsonl(raw.splitlines(), source=doc_id):
            if max_records is not None and len(docs) >= max_records:
                raise LoadError(f"more than {max_records} records: split the file")
            docs.append(doc)
        return docs
    if suffix in {".html", ".htm"}:
        text, title = html_to_text(raw)
        title = title or _first_line_title(text)
    else:
        text, title = raw, _first_line_title(raw)
    return [_checked(Document(doc_id, text, title, {"source": doc_id}), doc_id)]


def _checked(doc: Document, where: str) -> Document:
    try:
        check_document(doc.id, doc.text, doc.title, doc.metadata)
    except InvalidInput as exc:
        raise LoadError(f"{where}: {exc}") from None
    return doc


def parse_jsonl(lines: Iterable[str], source: str) -> Iterator[Document]:
    """Documents from JSONL records ``{id, text, title?, metadata?}``; errors name the line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"{where}: invalid JSON ({exc.msg})") from None
        except (ValueError, RecursionError):  # a 5,000-digit number, nesting past the stack
            raise LoadError(
                f"{where}: invalid JSON (a number too long or nesting too deep)"
            ) from None
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
        yield _checked(
            Document(str(doc_id), text, title or _first_line_title(text), metadata), where
        )


def iter_files(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, document id) pairs under ``root``; a file root yields itself, named by its name.

    A depth-first walk, each folder's entries in name order (the order of sorting every
    path by its parts), holding one folder's listing per level, never the whole tree's;
    hidden entries (a name starting with ".") are skipped without being entered, and
    symlinked folders are not followed (a link loop cannot make the walk endless)."""
    if root.is_file():
        yield root, root.name
        return
    stack: list[tuple[tuple[str, ...], Iterator[os.DirEntry[str]]]] = []
    listing = _listing(root)
    if listing is not None:
        stack.append(((), listing))
    while stack:
        parts, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        rel = (*parts, entry.name)
        try:
            folder = entry.is_dir(follow_symlinks=False)
            file = not folder and entry.is_file()
        except OSError:
            continue
        if folder:
            inner = _listing(Path(entry.path))
            if inner is not None:
                stack.append((rel, inner))
        elif file and Path(entry.name).suffix.lower() in SUPPORTED_SUFFIXES:
            yield Path(entry.path), "/".join(rel)


def _listing(folder: Path) -> Iterator[os.DirEntry[str]] | None:
    """One folder's entries in name order; None when it cannot be listed."""
    try:
        with os.scandir(folder) as scan:
            return iter(sorted(scan, key=lambda e: e.name))
    except OSError:
        return None


def plan_paths(paths: Iterable[Path]) -> tuple[int, int]:
    """(files, bytes) that ``stream_paths`` will read: a walk of the folders, no reading,
    so a progress bar has a total before the first document."""
    files = size = 0
    for root in paths:
        if root.exists():
            for path, _ in iter_files(root):
                files += 1
                with contextlib.suppress(OSError):
                    size += path.stat().st_size
    return files, size


class LoadStream:
    """The documents of every supported file under ``paths``, read one file at a time as
    they are iterated (memory follows one file, not the folder). Failures are collected in
    ``failures`` (by file, or ``file:line``) instead of stopping; ``bytes_read`` counts the
    files handled so far and ``on_file`` (if set) is told each one's size."""

    def __init__(
        self,
        paths: Iterable[Path],
        on_file: Callable[[int], None] | None = None,
        pdf_limits: PdfLimits | None = None,
    ):
        self.paths = list(paths)
        self.pdf_limits = pdf_limits
        self.failures: dict[str, str] = {}
        self.bytes_read = 0
        self.on_file = on_file

    def __iter__(self) -> Iterator[Document]:
        seen: dict[str, str] = {}
        for root in self.paths:
            if not root.exists():
                self.failures[str(root)] = "no such file or folder"
                continue
            for path, doc_id in iter_files(root):
                try:
                    docs = load_file(path, doc_id, self.pdf_limits)
                except LoadError as exc:
                    self.failures[str(path)] = str(exc)
                    docs = []
                size = 0
                with contextlib.suppress(OSError):
                    size = path.stat().st_size
                self.bytes_read += size
                if self.on_file is not None:
                    self.on_file(size)
                for doc in docs:
                    if doc.id in seen:
                        self.failures[str(path)] = (
                            f"document id {doc.id!r} also comes from {seen[doc.id]}"
                        )
                        continue
                    seen[doc.id] = str(path)
                    yield doc


def load_paths(paths: Iterable[Path], pdf_limits: PdfLimits | None = None) -> LoadResult:
    """Load every supported file under ``paths``, collecting failures instead of stopping."""
    stream = LoadStream(paths, pdf_limits=pdf_limits)
    documents = list(stream)
    return LoadResult(documents, stream.failures)
