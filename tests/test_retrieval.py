"""Fusion, BM25 queries, filters, and retrieval over a fake-embedded index."""

from __future__ import annotations

import pytest

from rag.models import Document
from rag.pipeline import Pipeline
from rag.retrieval import keyword_words, rrf


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = rrf({"dense": [1, 2, 3], "bm25": [3, 1]}, k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert sorted(fused, key=lambda i: -fused[i]) == [1, 3, 2]


def test_rrf_k_flattens_rank_differences() -> None:
    small, large = rrf({"a": [1, 2]}, k=1), rrf({"a": [1, 2]}, k=1000)
    assert small[1] / small[2] > large[1] / large[2]


def test_keyword_words_are_content_words_once() -> None:
    assert keyword_words('Who said "welcome" to the workers?') == ["said", "welcome", "workers"]
    assert keyword_words("the of and") == []
    assert keyword_words('AND OR NOT "quote" quote') == ["not", "quote"]


@pytest.fixture
def indexed(fake_pipeline: Pipeline) -> Pipeline:
    fake_pipeline.ingest(
        [
            Document("cats.txt", "Cats purr loudly. Cats sleep all day.", metadata={"kind": "pet"}),
            Document(
                "dogs.txt", "Dogs bark at strangers. Dogs fetch sticks.", metadata={"kind": "pet"}
            ),
            Document(
                "rocks.txt",
                "Granite is an igneous rock formed from magma.",
                metadata={"kind": "geo"},
            ),
        ]
    )
    return fake_pipeline


def test_hybrid_returns_passages_with_offsets_and_scores(indexed: Pipeline) -> None:
    passages = indexed.retrieve("Why do dogs bark?", top_k=3)
    assert passages[0].doc_id == "dogs.txt"
    top = passages[0]
    assert top.bm25_rank == 1 and top.dense_score is not None and top.score > 0
    for p in passages:
        doc = indexed.document(p.doc_id)
        assert doc is not None and doc.text[p.start : p.end] == p.text


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_single_retriever_modes(indexed: Pipeline, mode: str) -> None:
    passages = indexed.retrieve("granite magma rock", top_k=2, mode=mode)  # type: ignore[arg-type]
    assert passages[0].doc_id == "rocks.txt"
    assert (passages[0].bm25_score is None) == (mode == "dense")
    assert (passages[0].dense_score is None) == (mode == "bm25")


def test_filters_by_doc_id_and_metadata(indexed: Pipeline) -> None:
    only_cats = indexed.retrieve("dogs bark", top_k=5, filters={"doc_id": "cats.txt"})
    assert {p.doc_id for p in only_cats} == {"cats.txt"}
    geo = indexed.retrieve("dogs bark", top_k=5, filters={"kind": "geo"})
    assert {p.doc_id for p in geo} == {"rocks.txt"}
    pets = indexed.retrieve("rock", top_k=5, filters={"kind": ["pet"]})
    assert {p.doc_id for p in pets} <= {"cats.txt", "dogs.txt"}
    none = indexed.retrieve("rock", top_k=5, filters={"doc_id": "missing"})
    assert none == []
    assert indexed.retrieve("rock", top_k=5, filters={"kind": []}) == []


def test_batch_form_matches_single(indexed: Pipeline) -> None:
    qs = ["Why do dogs bark?", "What is granite?"]
    batch = indexed.retrieve_batch(qs, top_k=2)
    assert [[p.id for p in ps] for ps in batch] == [
        [p.id for p in indexed.retrieve(q, top_k=2)] for q in qs
    ]


def test_empty_index_answers_no_documents(fake_pipeline: Pipeline) -> None:
    answer = fake_pipeline.ask("Anything at all?")
    assert not answer.answered and "no documents" in (answer.no_answer_reason or "")
    fake_pipeline.ingest([Document("a", "Some text.")])
    fake_pipeline.delete("a")
    assert "no documents" in (fake_pipeline.ask("Anything?").no_answer_reason or "")


def test_keyword_search_beside_the_dense_one_gives_the_same_passages(indexed: Pipeline) -> None:
    """RAG_KEYWORD_BESIDE_DENSE changes when BM25 runs, never what a question gets: with
    filters, in batches, and with questions asked at once from several threads (one runs
    beside its dense search, the others one after the other)."""
    from concurrent.futures import ThreadPoolExecutor

    from rag.retrieval import Retriever

    plain = Retriever(indexed.embedder, keyword_beside_dense=False)
    beside = Retriever(indexed.embedder, keyword_beside_dense=True)
    questions = ["Why do dogs bark?", "What is granite?", "Do cats sleep?"]
    store = indexed._store
    with store.read() as snap:
        for filters in (None, {"kind": "pet"}, {"doc_id": "rocks.txt"}):
            got = beside.retrieve_batch(snap, questions, 3, filters)
            assert got == plain.retrieve_batch(snap, questions, 3, filters)
            assert any(got)

    def ask(question: str) -> list[object]:
        with store.read() as snap:
            return list(beside.retrieve(snap, question, 3))

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, questions * 4))
    with store.read() as snap:
        assert together == [plain.retrieve(snap, q, 3) for q in questions * 4]
