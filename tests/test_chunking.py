"""Chunk offsets round-trip and cover the text, for any unicode input."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rag.ingest import chunking
from rag.ingest.chunking import Chunker, covered, token_offsets
from rag.models import Document
from rag.pipeline import Pipeline
from rag.validation import InvalidInput

TRICKY = [
    "",
    "a",
    " ",
    "\r\n",
    "Hello, world.",
    "Line one.\r\nLine two.\r\n\r\nLine three!",
    "Emoji 👩‍👩‍👧‍👦 family and flags 🇫🇷🇩🇪. Done?",
    "中文文本没有空格。日本語のテキストも。한국어 문장입니다.",
    "Combining marks: e\u0301 a\u0308 o\u0302\u0323 and Zalgo z\u0336\u0334\u0338.",
    "x" * 5000,
    "word " * 2000,
]


def _check(text: str, chunker: Chunker) -> None:
    doc = Document("d", text)
    chunks = chunker.chunk(doc)
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert 0 <= c.start < c.end <= len(text)
        assert c.n_tokens <= chunker.max_tokens
        assert c.text.strip()
    assert covered(text, chunks)
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_round_trip_and_cover(text: str) -> None:
    _check(text, Chunker(max_tokens=16, overlap=4, snap_tokens=6))
    _check(text, Chunker())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(
        alphabet=st.one_of(
            # Any text the edges accept: lone surrogates are refused before chunking
            # (rag.validation; see test_lone_surrogates_never_reach_the_chunker).
            st.characters(exclude_categories=("Cs",)),
            st.sampled_from(list(".!?\n\r \u0301😀中é")),
        ),
        max_size=400,
    ),
    max_tokens=st.integers(min_value=2, max_value=40),
    data=st.data(),
)
def test_property_round_trip_and_cover(text: str, max_tokens: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=max_tokens - 1))
    snap = data.draw(st.integers(min_value=0, max_value=max_tokens))
    _check(text, Chunker(max_tokens=max_tokens, overlap=overlap, snap_tokens=snap))


def test_token_offsets_come_from_the_tokenizer() -> None:
    text = "Café ☕ costs $3.50."
    offs = token_offsets(text)
    # Token character ranges tile the text in order (multi-byte splits are widened).
    assert offs.starts[0] == 0 and offs.ends[-1] == len(text)
    for a, b in zip(offs.ends, offs.starts[1:], strict=False):
        assert b <= a
    assert offs.sentence_end[-1]


def test_chunks_end_at_sentence_ends_when_near() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. "
    doc = Document("d", sentence * 40)
    chunks = Chunker(max_tokens=50, overlap=10, snap_tokens=15).chunk(doc)
    assert len(chunks) > 3
    for c in chunks[:-1]:
        assert c.text.rstrip().endswith(".")


def test_overlap_means_consecutive_chunks_share_text() -> None:
    doc = Document("d", "word " * 500)
    chunks = Chunker(max_tokens=50, overlap=10, snap_tokens=0).chunk(doc)
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end


def test_bad_chunker_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        Chunker(max_tokens=10, overlap=10)
    with pytest.raises(ValueError):
        Chunker(max_tokens=0)


def test_bpe_file_is_the_checked_one() -> None:
    digest = hashlib.sha256(chunking.CL100K_FILE.read_bytes()).hexdigest()
    assert digest == chunking.CL100K_SHA256


def test_corrupt_bpe_file_is_refused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "cl100k_base.tiktoken"
    bad.write_bytes(b"not a bpe file")
    monkeypatch.setattr(chunking, "CL100K_FILE", bad)
    chunking.cl100k.cache_clear()
    try:
        with pytest.raises(chunking.TokenizerError):
            chunking.cl100k()
    finally:
        monkeypatch.undo()
        chunking.cl100k.cache_clear()


def test_lone_surrogates_never_reach_the_chunker(fake_pipeline: Pipeline) -> None:
    with pytest.raises(InvalidInput, match="surrogate"):
        fake_pipeline.ingest([Document("x.txt", "text \ud800 here")])
