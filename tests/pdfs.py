"""PDFs made for the tests and the extractor bench, with the text each page must give.

Laid out line by line with fpdf2 (so the test knows which word was hyphenated at a line
end, which lines are running headers and footers, and which column a line is in); the
expected text of each page is its body's words in reading order (left column, then
right), hyphenated words whole, without the running header and footer.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from fpdf import FPDF

# A Unicode TrueType font that ships inside a dependency (no system fonts needed): it has
# the "ﬁ"/"ﬂ" ligature glyphs and accented letters.
UNICODE_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
PAGE_W, PAGE_H, MARGIN, GUTTER = 210.0, 297.0, 20.0, 10.0


@dataclass(frozen=True)
class Layout:
    """How a test PDF is printed."""

    columns: int = 1
    header: str | None = None  # "{page}" is replaced by the page number
    footer: str | None = None
    hyphenate: bool = False  # split long words at line ends with a hyphen
    unicode_font: bool = False  # DejaVu Sans embedded (ligatures, accents); else Helvetica
    font_size: float = 11.0
    line_height: float = 5.5
    max_lines: int | None = None  # body lines per column (default: what fits)
    # The content stream's order: a column at a time (as typesetters write it), or line by
    # line across the columns (as some word processors do; reading order then needs the
    # positions).
    stream_order: str = "columns"


@dataclass
class Printed:
    """A printed PDF and the body text of each of its pages (reading order)."""

    data: bytes
    pages: list[list[str]] = field(default_factory=list)  # the words of each page
    hyphenated: list[str] = field(default_factory=list)  # words split at a line end

    def page_text(self, page: int) -> str:
        return " ".join(self.pages[page])


def print_pdf(paragraphs: list[str], layout: Layout | None = None) -> Printed:
    """``paragraphs`` printed with ``layout``: wrapped to the column width, a blank line
    between paragraphs, new columns and pages as they fill."""
    lay = layout or Layout()
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    if lay.unicode_font:
        pdf.add_font("DejaVu", fname=str(UNICODE_FONT))
        family = "DejaVu"
    else:
        family = "Helvetica"
    pdf.set_font(family, size=lay.font_size)
    col_w = (PAGE_W - 2 * MARGIN - GUTTER * (lay.columns - 1)) / lay.columns
    top, bottom = MARGIN + 12, PAGE_H - MARGIN - 12
    fits = int((bottom - top) / lay.line_height)
    per_col = min(fits, lay.max_lines or fits)
    out = Printed(b"")
    # Lines of the whole text: (text, words it ends or holds), blank lines between paragraphs.
    lines: list[tuple[str, list[str]]] = []
    for i, para in enumerate(paragraphs):
        if i:
            lines.append(("", []))
        lines += _wrap(pdf, para, col_w, lay.hyphenate, out.hyphenated)
    page_words: list[str] = []
    placed: list[tuple[int, int, str]] = []  # (row, column, text) of the page being laid
    slot = per_col * lay.columns  # force a new page first
    for text, words in lines:
        if slot >= per_col * lay.columns:
            if pdf.page:
                _draw(pdf, placed, lay, col_w, top)
                out.pages.append(page_words)
            page_words, placed = [], []
            pdf.add_page()
            _running(pdf, lay, family, top, bottom)
            slot = 0
        col, row = divmod(slot, per_col)
        if text:
            placed.append((row, col, text))
        page_words += words
        slot += 1
    _draw(pdf, placed, lay, col_w, top)
    out.pages.append(page_words)
    out.data = bytes(pdf.output())
    return out


def _draw(
    pdf: FPDF, placed: list[tuple[int, int, str]], lay: Layout, col_w: float, top: float
) -> None:
    """A page's body lines, written in the layout's stream order."""
    if lay.stream_order == "rows":
        placed = sorted(placed)
    else:
        placed = sorted(placed, key=lambda p: (p[1], p[0]))
    for row, col, text in placed:
        pdf.text(MARGIN + col * (col_w + GUTTER), top + (row + 1) * lay.line_height, text)


def _running(pdf: FPDF, lay: Layout, family: str, top: float, bottom: float) -> None:
    """The page's running header and footer, smaller, outside the body."""
    pdf.set_font(family, size=lay.font_size - 2)
    if lay.header:
        pdf.text(MARGIN, top - 6, lay.header.format(page=pdf.page))
    if lay.footer:
        pdf.text(MARGIN, bottom + 8, lay.footer.format(page=pdf.page))
    pdf.set_font(family, size=lay.font_size)


def _wrap(
    pdf: FPDF, para: str, width: float, hyphenate: bool, hyphenated: list[str]
) -> list[tuple[str, list[str]]]:
    """Greedy line breaking; a long word that does not fit is split with a hyphen when
    ``hyphenate`` (its first part ends the line). Each line comes with the words it starts,
    so a split word counts on the line (and page) of its first part."""
    out: list[tuple[str, list[str]]] = []
    line: list[str] = []
    words: list[str] = []

    def fits(parts: list[str]) -> bool:
        return float(pdf.get_string_width(" ".join(parts))) <= width

    for word in para.split():
        if not line or fits([*line, word]):
            line.append(word)
            words.append(word)
            continue
        head, tail = word[: len(word) // 2], word[len(word) // 2 :]
        if hyphenate and word.isalpha() and len(word) >= 7 and fits([*line, head + "-"]):
            out.append((" ".join([*line, head + "-"]), [*words, word]))
            hyphenated.append(word)
            line, words = [tail], []
            continue
        out.append((" ".join(line), words))
        line, words = [word], [word]
    if line:
        out.append((" ".join(line), words))
    return out


def image_only_pdf() -> bytes:
    """One page holding a picture and no text (a scan without OCR)."""
    from PIL import Image

    pdf = FPDF(unit="mm", format="A4")
    pdf.add_page()
    image = Image.new("RGB", (60, 20), (200, 30, 30))
    pdf.image(image, x=20, y=20, w=120)
    return bytes(pdf.output())


def encrypted_pdf(user_password: str, text: str = "A sealed page.") -> bytes:
    """A PDF encrypted with RC4-128; ``user_password`` "" opens without asking."""
    from fpdf.enums import EncryptionMethod

    pdf = FPDF(unit="mm", format="A4")
    pdf.set_encryption(
        owner_password="owner-secret",
        user_password=user_password,
        encryption_method=EncryptionMethod.RC4,
    )
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.text(20, 30, text)
    return bytes(pdf.output())


def flate_bomb_pdf(inflated_bytes: int) -> bytes:
    """A one-page PDF whose content stream is a few KB that inflates to ``inflated_bytes``
    of spaces (a decompression bomb)."""
    packer = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(inflated_bytes >> 20)]
    return _hand_pdf(b"".join(parts) + packer.flush(), pages=1)


def shared_stream_pdf(pages: int, lines: int) -> bytes:
    """``pages`` pages that all draw one compressed content stream of ``lines`` text lines:
    a small file whose text is ``pages x lines`` lines long."""
    body = b"".join(
        b"BT /F1 10 Tf 40 %d Td (Line %d of the shared text.) Tj ET\n" % (800 - i % 70 * 11, i)
        for i in range(lines)
    )
    return _hand_pdf(zlib.compress(body, 9), pages=pages)


def _hand_pdf(stream: bytes, pages: int) -> bytes:
    """A PDF of ``pages`` pages sharing one FlateDecode content stream and a Helvetica
    font, written by hand with correct cross-references."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> >>"
    ] * pages
    buf = io.BytesIO()
    buf.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(buf.tell())
        buf.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = buf.tell()
    buf.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        buf.write(b"%010d 00000 n \n" % offset)
    buf.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return buf.getvalue()
