"""PDF documents: the text layer of each page, cleaned, and where each page starts.

The stored text is the extracted text after cleaning; every offset refers to it, as for
HTML. Pages are joined with a blank line and ``page_starts`` records where each begins, so
a citation's pages follow from its offsets (``Document.pages_of``), never from a search.

Extraction is pypdf's (pure Python, no dependencies): on the PDFs of
``bench/pdf_extractors.py`` it keeps two-column text in reading order where pdfplumber
interleaves the columns line by line, at a fraction of the time (eval/reports/pdf).
Cleaning, page by page:

- ligature glyphs (U+FB00-FB06) become their letters and soft hyphens go; other control
  characters become spaces;
- a word hyphenated at a line end is joined when the next line goes on in lower case
  ("Bro-" + "ncos" -> "Broncos"; across a page break too, on the first page);
  "well-" + "Known" keeps its hyphen;
- the lines of a paragraph are joined with spaces: a line break stays only after a line
  that ends a sentence or falls well short of the page's usual line length (a heading, a
  paragraph's last line), so a sentence printed over three lines is one sentence;
- a running header or footer (a line that, digits aside, recurs on most pages of a
  document of several pages) is dropped.

Bounds: more than ``max_pages`` pages, a stream that inflates past ``max_stream_bytes``
(a decompression bomb), page content streams past ``max_stream_bytes`` in all (a stream
shared by many pages counts once per page: extraction walks it each time), or more than
``max_chars`` of text is refused before any text is kept; each is checked as it is reached,
so the work done is bounded by them, not by the file. An encrypted PDF is read if
it opens without a password; otherwise, like a broken file or one without a text layer
(a scan; there is no OCR), it is refused with the reason.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.ingest.errors import LoadError
from rag.settings import IngestSettings

PAGE_SEPARATOR = "\n\n"
_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\u00ad": None,  # soft hyphen: a break opportunity, never text
    }
)
# Control characters other than tab and newline (a PDF's text layer has stray ones).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])-[ \t]*\n[ \t]*(?=[a-zß-ÿ])")
_SENTENCE_END = re.compile(r"[.!?:;…][\"'”’)\]]*$")
# A line shorter than this share of the page's median line ends its paragraph.
SHORT_LINE_SHARE = 0.6
# A line among the first or last RUNNING_EDGE_LINES of a page that recurs there (digits
# aside) on at least this share of pages, and on RUNNING_MIN_PAGES pages or more, is a
# running header or footer.
RUNNING_SHARE = 0.6
RUNNING_MIN_PAGES = 3
RUNNING_EDGE_LINES = 3


@dataclass(frozen=True, slots=True)
class PdfLimits:
    """What one PDF may cost before it is refused (``IngestSettings.pdf_*``)."""

    max_pages: int = 2000
    max_stream_bytes: int = 64 * 1024 * 1024
    max_chars: int = 20_000_000

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> PdfLimits:
        return cls(settings.pdf_max_pages, settings.pdf_max_stream_bytes, settings.pdf_max_chars)


@dataclass(frozen=True, slots=True)
class PdfText:
    """A PDF's stored text, its title and the offset where each page starts."""

    text: str
    title: str
    page_starts: tuple[int, ...]


def read_pdf(data: bytes, limits: PdfLimits | None = None) -> PdfText:
    """The cleaned text of a PDF's pages; LoadError (with the reason) for a PDF that is
    broken, encrypted with a password, image-only, or past ``limits``."""
    pages, title = extract_pages(data, limits or PdfLimits())
    pdf = assemble_pages(pages, title)
    if not pdf.text.strip():
        raise LoadError("no text besides running headers and footers")
    return pdf


def extract_pages(data: bytes, limits: PdfLimits) -> tuple[list[str], str]:
    """Each page's raw text layer (pypdf) and the document's /Title, within ``limits``."""
    if b"%PDF-" not in data[:1024]:
        raise LoadError("not a PDF (no %PDF- header)")
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    # pypdf's bounds on inflation, for this read only (a context-local configuration).
    bounds = {
        name: limits.max_stream_bytes
        for name in (
            "maximum_declared_stream_length",
            "array_based_stream_maximum_output_length",
            "jbig2_maximum_output_length",
            "lzw_maximum_output_length",
            "run_length_maximum_output_length",
            "zlib_maximum_output_length",
            "brotli_maximum_output_length",
            "image_maximum_buffer_size",
        )
    }
    bounds["page_tree_maximum_page_entries"] = limits.max_pages + 1
    try:
        with pypdf.apply_configuration(None, **bounds):
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise LoadError("encrypted PDF: it needs a password to open")
            try:
                n = len(reader.pages)  # the page tree is flattened within the page bound
            except LimitReachedError:
                n = limits.max_pages + 1
            if n > limits.max_pages:
                raise LoadError(f"{n} pages; the limit is {limits.max_pages} (RAG_PDF_MAX_PAGES)")
            pages = _page_texts(reader.pages, limits)
            info = reader.metadata
            title = str(info.title) if info is not None and info.title else ""
    except LoadError:
        raise
    except LimitReachedError:
        raise LoadError(
            f"a stream inflates past {limits.max_stream_bytes} bytes "
            "(RAG_PDF_MAX_STREAM_BYTES): refused as a decompression bomb"
        ) from None
    except (DependencyError, FileNotDecryptedError):
        raise LoadError("encrypted PDF: it cannot be opened without a password") from None
    except RecursionError:
        raise LoadError("not a readable PDF (objects nested too deep)") from None
    except Exception as exc:  # pypdf raises many types on hostile files; each is a bad file
        raise LoadError(f"not a readable PDF ({type(exc).__name__}: {exc})"[:300]) from None
    if not any(p.strip() for p in pages):
        raise LoadError("no text layer (a scanned or image-only PDF; OCR is not supported)")
    return pages, title


def _page_texts(pages: Any, limits: PdfLimits) -> list[str]:
    """Each page's text layer, within ``limits`` as a whole. A page's content stream is
    decoded first, on its own: text extraction swallows a stream past the inflation bound
    (the page would read as empty), this raises it, and counts its size (decoded data is
    cached, so it is not decoded twice)."""
    out: list[str] = []
    content = chars = 0
    for page in pages:
        contents = page.get_contents()
        if contents is not None:
            content += len(contents.get_data())
            if content > limits.max_stream_bytes:
                raise LoadError(
                    f"page content past {limits.max_stream_bytes} bytes in all "
                    "(RAG_PDF_MAX_STREAM_BYTES)"
                )
        text = str(page.extract_text() or "")
        chars += len(text)
        if chars > limits.max_chars:
            raise LoadError(f"more than {limits.max_chars} characters of text (RAG_PDF_MAX_CHARS)")
        out.append(text)
    return out


def assemble_pages(pages: Sequence[str], title: str = "") -> PdfText:
    """Pages cleaned (module docstring) and joined; ``page_starts`` by construction."""
    cleaned = clean_pages(pages)
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for i, page in enumerate(cleaned):
        if i:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        starts.append(offset)
        parts.append(page)
        offset += len(page)
    text = "".join(parts)
    title = " ".join(_CONTROL.sub(" ", title.translate(_LIGATURES)).split())
    if not title:
        title = next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]
    return PdfText(text, title, tuple(starts))


def clean_pages(pages: Sequence[str]) -> list[str]:
    """Each page's lines normalised, running lines dropped, hyphens and paragraphs joined."""
    lines = [_lines(page) for page in pages]
    running = running_lines(lines)
    body = []
    for page in lines:
        edges = _edge_indices(page)
        body.append([ln for i, ln in enumerate(page) if not (i in edges and _shape(ln) in running)])
    for page, after in itertools.pairwise(body):
        _join_across(page, after)
    return [_reflow(page) for page in body]


def _join_across(page: list[str], after: list[str]) -> None:
    """A word hyphenated at a page's end is finished on that page ("Ric-" + "hard ...")
    when the next page's body goes on in lower case: its first word moves back."""
    last = next((i for i in range(len(page) - 1, -1, -1) if page[i]), None)
    first = next((i for i, ln in enumerate(after) if ln), None)
    if last is None or first is None:
        return
    if not _HYPHEN_BREAK.search(page[last] + "\n" + after[first]):
        return
    head, _, rest = after[first].partition(" ")
    page[last] = page[last][:-1] + head
    after[first : first + 1] = [rest] if rest else []


def _lines(page: str) -> list[str]:
    page = _CONTROL.sub(" ", page.translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n"))
    page = _HYPHEN_BREAK.sub("", page)
    return [" ".join(line.split()) for line in page.split("\n")]


def _shape(line: str) -> str:
    """A line with its digits masked: page numbers change, running lines do not."""
    return re.sub(r"\d+", "#", line)


def _edge_indices(page: Sequence[str]) -> set[int]:
    """Indices of a page's first and last ``RUNNING_EDGE_LINES`` non-empty lines."""
    filled = [i for i, ln in enumerate(page) if ln]
    return set(filled[:RUNNING_EDGE_LINES] + filled[-RUNNING_EDGE_LINES:])


def running_lines(pages: Sequence[Sequence[str]]) -> frozenset[str]:
    """Shapes of the lines at the pages' edges that recur on at least ``RUNNING_SHARE`` of
    the pages (and ``RUNNING_MIN_PAGES`` of them)."""
    counts = Counter(
        shape for page in pages for shape in {_shape(page[i]) for i in _edge_indices(page)}
    )
    need = max(RUNNING_MIN_PAGES, math.ceil(RUNNING_SHARE * len(pages)))
    return frozenset(shape for shape, n in counts.items() if n >= need)


def _reflow(lines: Sequence[str]) -> str:
    """A page's lines as paragraphs: a break stays after a sentence end, a short line or
    an empty one; elsewhere it becomes a space."""
    lengths = [len(ln) for ln in lines if ln]
    if not lengths:
        return ""
    short = SHORT_LINE_SHARE * statistics.median(lengths)
    out: list[str] = []
    for ln in lines:
        if not ln:
            if out and out[-1] != "\n":
                out.append("\n")
            continue
        if out and out[-1] != "\n":
            prev = out[-1]
            out.append("\n" if _SENTENCE_END.search(prev) or len(prev) < short else " ")
        out.append(ln)
    return "".join(out).strip("\n")
