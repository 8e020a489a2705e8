"""PDF documents (rag.ingest.pdf): the text of each page in reading order, hyphens joined,
running lines dropped, the page map by construction; bad files refused one by one; pages
carried into citations and span views, over the library and HTTP (model-free)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, strategies as st

from rag.ingest import LoadError, PdfLimits, assemble_pages, load_paths, read_pdf
from rag.models import Document
from rag.pipeline import Pipeline
from service.app import create_app
from tests.conftest import LOCAL, ROOT, FakeEmbedder, unit_settings
from tests.pdfs import (
    Layout,
    encrypted_pdf,
    flate_bomb_pdf,
    image_only_pdf,
    print_pdf,
    shared_stream_pdf,
)

SEED = next((ROOT / "seeds").glob("*.txt")).read_text()
PARAGRAPHS = [p for p in SEED.split("\n") if len(p.split()) > 8]
RUNNING = Layout(
    unicode_font=True, header="The seed, printed {page}", footer="Page {page}", hyphenate=True
)


def page_words(text: str, starts: tuple[int, ...]) -> list[list[str]]:
    bounds = [*starts, len(text)]
    return [text[a:b].split() for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("columns", [1, 2])
def test_each_page_holds_exactly_its_printed_words(columns: int) -> None:
    """Every page's slice of the stored text is the words printed in its body, in reading
    order: hyphenated words whole (at line ends and across a page break), the running
    header and footer gone, two columns one after the other."""
    layout = Layout(**{**RUNNING.__dict__, "columns": columns, "max_lines": 14})
    printed = print_pdf(PARAGRAPHS, layout)
    assert len(printed.pages) >= 3 and printed.hyphenated
    pdf = read_pdf(printed.data)
    assert page_words(pdf.text, pdf.page_starts) == printed.pages
    assert pdf.page_starts[0] == 0 and list(pdf.page_starts) == sorted(pdf.page_starts)
    words = set(pdf.text.split())
    assert all(word in words for word in printed.hyphenated)
    assert "printed" not in pdf.text and "Page" not in words


def test_sentences_printed_over_lines_are_one_line_of_text() -> None:
    """Each printed paragraph ending a sentence is one line of stored text (its lines
    joined with spaces). (A paragraph without an end mark whose last line is full width,
    like the seed's headline, runs on into the next: the text layer has no blank lines.)"""
    paragraphs = [p for p in PARAGRAPHS if p.rstrip().endswith(".")][:4]
    printed = print_pdf(paragraphs, Layout(unicode_font=True))
    text = read_pdf(printed.data).text
    assert text.split("\n") == [" ".join(p.split()) for p in paragraphs]


def test_ligature_glyphs_become_letters() -> None:
    printed = print_pdf(
        ["The \ufb01rst \ufb02oor was o\ufb00ered to the e\ufb03cient sta\ufb00."],
        Layout(unicode_font=True),
    )
    assert read_pdf(printed.data).text == "The first floor was offered to the efficient staff."


@pytest.mark.parametrize(
    ("pages", "text"),
    [
        (
            ["A sentence that goes\non here. Another\none.\nHeading\nBody text goes on."],
            "A sentence that goes on here. Another one.\nHeading\nBody text goes on.",
        ),
        (["The Denver Bro-\nncos won."], "The Denver Broncos won."),
        (
            ["a well-\nKnown case and a 1990-\n91 season"],
            "a well- Known case and a 1990- 91 season",
        ),
        (["Soft\u00adhyphen and a\x07bell."], "Softhyphen and a bell."),
        (
            ["Page one ends with Ric-", "hard, who starts page two."],
            "Page one ends with Richard,\n\nwho starts page two.",
        ),
    ],
)
def test_cleaning_rules(pages: list[str], text: str) -> None:
    assert assemble_pages(pages).text == text


def test_running_lines_need_several_pages_and_a_page_edge() -> None:
    """A line at the top of every page of a three-page PDF is a running line; on two pages
    (of two or of three) it is text, and so is a recurring line inside the body (a row of
    numbers whose digits differ looks the same once digits are masked)."""
    three = assemble_pages([f"Acme report {i}\nBody {w}." for i, w in enumerate("abc", 1)])
    assert "Acme" not in three.text and three.text.count("Body") == 3
    two = assemble_pages([f"Acme report {i}\nBody {w}." for i, w in enumerate("ab", 1)])
    assert two.text.count("Acme") == 2
    pages = [f"Acme report {i}\nBody {w}." for i, w in enumerate("ab", 1)] + ["Other.\nText."]
    assert assemble_pages(pages).text.count("Acme") == 2
    rows = [f"T{i}\nU{i}\nV{i}\n{i}1 {i}2 {i}3\nW{i}\nX{i}\nY{i}" for i in range(1, 5)]
    assert assemble_pages(rows).text.count("1 ") == 4


@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=8),
    st.integers(0, 400),
    st.integers(0, 60),
)
def test_pages_of_a_range(lengths: list[int], start: int, width: int) -> None:
    """The pages of [start, end) are exactly those whose text it overlaps (an empty range:
    the page of its start)."""
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    total = starts[-1] + lengths[-1]
    start = min(start, total - 1)
    end = min(start + width, total)
    doc = Document("d", "x" * total, page_starts=tuple(starts))
    bounds = [*starts, total]
    want = [
        p + 1
        for p in range(len(starts))
        if bounds[p] < max(end, start + 1) and start < bounds[p + 1]
    ]
    assert list(doc.pages_of(start, end)) == want
    assert Document("e", "x" * total).pages_of(start, end) == ()


def test_bad_pdfs_fail_one_by_one(tmp_path: Path) -> None:
    """Each bad file is refused by name with its reason; the good ones (an owner-only
    encrypted PDF among them) still load."""
    good = print_pdf(PARAGRAPHS[:2], Layout(unicode_font=True)).data
    files = {
        "good.pdf": good,
        "owner-only.pdf": encrypted_pdf(user_password="", text="Readable without a password."),
        "locked.pdf": encrypted_pdf(user_password="letmein"),
        "scan.pdf": image_only_pdf(),
        "truncated.pdf": good[: len(good) // 3],
        "garbage.pdf": b"%PDF-1.7\n" + bytes(range(256)) * 20,
        "not-a-pdf.pdf": b"GIF89a....",
        "bomb.pdf": flate_bomb_pdf(8 << 20),
        "long.pdf": print_pdf(PARAGRAPHS, Layout(unicode_font=True, max_lines=3)).data,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "notes.txt").write_text("Plain text still loads.")
    result = load_paths([tmp_path], PdfLimits(max_pages=6, max_stream_bytes=1 << 20))
    loaded = {d.id: d for d in result.documents}
    assert sorted(loaded) == ["good.pdf", "notes.txt", "owner-only.pdf"]
    assert loaded["owner-only.pdf"].text == "Readable without a password."
    assert loaded["owner-only.pdf"].page_starts == (0,)
    reasons = {Path(k).name: v for k, v in result.failures.items()}
    assert sorted(reasons) == sorted(set(files) - {"good.pdf", "owner-only.pdf"})
    assert "password" in reasons["locked.pdf"]
    assert "no text layer" in reasons["scan.pdf"]
    assert "not a readable PDF" in reasons["truncated.pdf"] or "no text" in reasons["truncated.pdf"]
    assert "not a readable PDF" in reasons["garbage.pdf"] or "no text" in reasons["garbage.pdf"]
    assert "no %PDF- header" in reasons["not-a-pdf.pdf"]
    assert "decompression bomb" in reasons["bomb.pdf"]
    assert "RAG_PDF_MAX_PAGES" in reasons["long.pdf"]


def test_a_stream_shared_by_many_pages_is_bounded_in_all() -> None:
    """A 38 KB file whose 200 pages draw one stream: the work stops at the content and
    text bounds (a shared stream counts once per page), and a small one reads whole."""
    small = read_pdf(shared_stream_pdf(pages=3, lines=100))
    assert len(small.page_starts) == 3 and "Line 50 of the shared text." in small.text
    data = shared_stream_pdf(pages=200, lines=2000)
    with pytest.raises(LoadError, match="RAG_PDF_MAX_STREAM_BYTES"):
        read_pdf(data, PdfLimits(max_stream_bytes=1 << 20))
    with pytest.raises(LoadError, match="RAG_PDF_MAX_CHARS"):
        read_pdf(data, PdfLimits(max_chars=200_000))
    with pytest.raises(LoadError, match="RAG_PDF_MAX_PAGES"):
        read_pdf(data, PdfLimits(max_pages=199))


def test_aes_encrypted_with_an_empty_user_password_opens() -> None:
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    pdf.set_encryption(
        owner_password="o", user_password="", encryption_method=EncryptionMethod.AES_256
    )
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.text(20, 30, "Opened with AES-256.")
    assert read_pdf(bytes(pdf.output())).text == "Opened with AES-256."
    with pytest.raises(LoadError, match="no %PDF- header"):
        read_pdf(b"")


def test_citations_carry_the_pages_they_quote(fake_pipeline: Pipeline, tmp_path: Path) -> None:
    """A PDF through the pipeline: stored with its page map, chunks are slices of the
    stored text, and an answer's citation names the page its quote is printed on."""
    printed = print_pdf(PARAGRAPHS, Layout(**{**RUNNING.__dict__, "max_lines": 12}))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "seed.pdf").write_bytes(printed.data)
    loaded = load_paths([tmp_path / "docs"])
    assert not loaded.failures
    fake_pipeline.ingest(loaded.documents)
    doc = fake_pipeline.document("seed.pdf")
    assert doc is not None and doc.page_starts == loaded.documents[0].page_starts
    assert len(doc.page_starts) == len(printed.pages) >= 3
    last = printed.pages[-1]
    question = " ".join(last[:12])
    answer = fake_pipeline.ask(question)
    assert answer.citations, answer.no_answer_reason
    for c in answer.citations:
        assert doc.text[c.start : c.end] == c.quote
        assert c.pages == doc.pages_of(c.start, c.end) and c.pages
        bounds = [*doc.page_starts, len(doc.text)]
        first, final = c.pages[0], c.pages[-1]
        assert bounds[first - 1] <= c.start and c.end <= bounds[final]


def test_pdf_upload_over_http(tmp_path: Path) -> None:
    """POST /documents takes a PDF file: stored with its page starts, answered with
    citation pages, its spans show their page; a bad PDF is a 422 naming the reason."""
    settings = unit_settings(
        index_root=tmp_path / "idx",
        abstain_threshold=0.0,
        api_keys=["k"],
        log_requests=False,
        pdf_max_stream_bytes=1 << 20,
    )
    auth = {"Authorization": "Bearer k"}
    printed = print_pdf(PARAGRAPHS, Layout(**{**RUNNING.__dict__, "max_lines": 12}))
    app = create_app(settings, warm_up=False, pipeline=Pipeline(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL) as client:
        r = client.post(
            "/documents",
            files={"file": ("seed.pdf", printed.data, "application/pdf")},
            headers=auth,
        )
        assert r.status_code in (201, 202), r.text
        if r.status_code == 202:
            from tests.test_service_api import wait_job

            assert wait_job(client, r.json()["job"]["id"])["state"] == "done"
        doc = client.get("/documents/seed.pdf").json()
        starts = doc["page_starts"]
        assert (
            len(starts) == len(printed.pages)
            and page_words(doc["text"], tuple(starts)) == printed.pages
        )
        question = " ".join(printed.pages[1][:12])
        cited = client.post("/ask", json={"question": question}).json()["citations"][0]
        assert doc["text"][cited["start"] : cited["end"]] == cited["quote"]
        assert cited["pages"] and all(1 <= p <= len(starts) for p in cited["pages"])
        span = client.get(f"/documents/seed.pdf/spans/{starts[1]}-{starts[1] + 5}").json()
        assert span["pages"] == [2]
        for name, data, words in [
            ("bomb.pdf", flate_bomb_pdf(4 << 20), "decompression bomb"),
            ("scan.pdf", image_only_pdf(), "no text layer"),
            ("a.pdf", b"%PDF-1.4", "not a readable PDF"),
        ]:
            r = client.post(
                "/documents", files={"file": (name, data, "application/pdf")}, headers=auth
            )
            assert r.status_code == 422 and words in r.text, r.text
        assert client.get("/documents").json()["total"] == 1


def test_the_same_text_now_paged_updates_the_page_map(fake_pipeline: Pipeline) -> None:
    """Same id, same text, now with pages: an update of the page map alone (nothing is
    embedded again), and the citations then carry pages."""
    text = "Page one holds this.\n\nPage two holds that."
    fake_pipeline.ingest([Document("d", text)])
    embedded = fake_pipeline.embedder.texts_embedded  # type: ignore[attr-defined]
    report = fake_pipeline.ingest([Document("d", text, page_starts=(0, 22))])
    assert report.updated == ["d"] and not report.added and not report.unchanged
    assert fake_pipeline.embedder.texts_embedded == embedded  # type: ignore[attr-defined]
    doc = fake_pipeline.document("d")
    assert doc is not None and doc.page_starts == (0, 22)
    again = fake_pipeline.ingest([Document("d", text, page_starts=(0, 22))])
    assert again.unchanged == ["d"]
