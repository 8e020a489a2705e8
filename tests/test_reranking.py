"""The reranker: its features (no model), its order, its fit file, and the pipeline stage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from rag.models import Passage
from rag.reranking import (
    RERANK_FEATURES,
    Reranker,
    RerankModel,
    load_rerank_model,
    rerank_features,
    save_rerank_model,
)


def _p(
    pid: int,
    text: str,
    dense: float | None,
    dense_rank: int | None,
    bm25_rank: int | None,
    title: str = "",
) -> Passage:
    return Passage(
        pid, f"d{pid}", title, 0, len(text), text, 0.0, dense, None, dense_rank, bm25_rank
    )


QUESTION = "Which river flows through the city of Paris?"
CANDIDATES = [
    _p(1, "Paris hosts many museums. The Louvre is the largest.", 0.71, 1, 2),
    _p(2, "The Seine is a river that flows through Paris, the city of light.", 0.65, 2, 1),
    _p(3, "Rivers of Germany include the Rhine.", 0.40, None, 3, title="Rivers"),
]


def test_features_reflect_ranks_similarity_and_lexical_fit() -> None:
    f1, f2, f3 = rerank_features(QUESTION, CANDIDATES)
    assert all(set(f) == set(RERANK_FEATURES) for f in (f1, f2, f3))
    assert (f1["fused_rr"], f2["fused_rr"], f3["fused_rr"]) == (1.0, 0.5, pytest.approx(1 / 3))
    assert f1["dense_gap"] == 0.0 and f2["dense_gap"] == pytest.approx(-0.06)
    assert f3["dense_rr"] == 0.0 and f3["bm25_rr"] == pytest.approx(1 / 3)
    # The second holds every content word of the question, in one sentence, with its pairs.
    assert f2["coverage"] == pytest.approx(1.0) and f2["sentence_coverage"] == pytest.approx(1.0)
    assert f2["coverage"] > f1["coverage"] > 0.0
    assert f2["pairs"] > f1["pairs"] == 0.0
    assert f3["title"] > 0.0 == f1["title"]


def test_rerank_orders_by_the_model_and_scores_each_passage() -> None:
    lexical = RerankModel(
        (*tuple(1.0 if f == "sentence_coverage" else 0.0 for f in RERANK_FEATURES), 0.0)
    )
    ranked = Reranker(lexical).rerank(QUESTION, CANDIDATES)
    assert [p.id for p in ranked] == [2, 1, 3]  # 1 and 3 tie (one rare word each)
    assert [p.score for p in ranked] == sorted((p.score for p in ranked), reverse=True)
    assert {p.id for p in ranked} == {1, 2, 3}
    # Ties keep the fused order.
    flat = RerankModel((0.0,) * (len(RERANK_FEATURES) + 1))
    assert [p.id for p in Reranker(flat).rerank(QUESTION, CANDIDATES)] == [1, 2, 3]
    assert Reranker(flat).rerank(QUESTION, CANDIDATES[:1]) == CANDIDATES[:1]


def test_fit_file_round_trips_and_a_wrong_length_is_refused(tmp_path: Path) -> None:
    model = RerankModel(tuple(float(i) for i in range(len(RERANK_FEATURES) + 1)))
    save_rerank_model(tmp_path / "r.json", model, seed=1)
    assert load_rerank_model(tmp_path / "r.json") == model
    assert load_rerank_model(tmp_path / "absent.json") is None
    with pytest.raises(ValueError, match="weights"):
        RerankModel((1.0, 2.0))


def test_the_shipped_fit_ranks_the_answer_passage_first() -> None:
    model = load_rerank_model()
    assert model is not None and model.features == RERANK_FEATURES
    assert Reranker(model).rerank(QUESTION, CANDIDATES)[0].id == 2


@given(st.lists(st.text(max_size=60), min_size=1, max_size=8), st.text(max_size=40))
def test_features_are_finite_for_any_text(texts: list[str], question: str) -> None:
    passages = [_p(i, t, None, None, None) for i, t in enumerate(texts)]
    for f in rerank_features(question, passages):
        assert all(math.isfinite(v) for v in f.values())
        assert 0.0 <= f["coverage"] <= 1.0 + 1e-9 and 0.0 <= f["pairs"] <= 1.0


def test_the_pipeline_reads_the_reranked_top_k(tmp_path: Path) -> None:
    """The stage in place: the same fused candidates, reordered by the reranker and cut to
    top_k; off, the fused order is kept."""
    from rag.models import Document
    from rag.pipeline import Pipeline
    from tests.conftest import FakeEmbedder, unit_settings

    docs = [
        Document("a", "Museums of the city. The Louvre is large and old and famous."),
        Document("b", "The Seine river flows through Paris, the city of light."),
        Document("c", "Rivers of Germany include the Rhine and the Elbe."),
        Document("d", "Paris is the capital. Paris hosts the Louvre."),
    ]
    question = "Which river flows through Paris?"
    on = Pipeline(unit_settings(index_root=tmp_path, rerank_depth=4), embedder=FakeEmbedder())
    on.ingest(docs)
    off = Pipeline(unit_settings(index_root=tmp_path, rerank=False), embedder=FakeEmbedder())
    fused = off.retrieve(question, top_k=4)
    model = load_rerank_model()
    assert model is not None
    expected = Reranker(model).rerank(question, fused)
    got = on.retrieve(question, top_k=2)
    assert [p.id for p in got] == [p.id for p in expected[:2]]
    assert got[0].doc_id == "b" and got[0].score >= got[1].score
    assert [p.id for p in off.retrieve(question, top_k=2)] == [p.id for p in fused[:2]]


def test_a_tiny_pairwise_fit_learns_what_tells_relevant_passages_apart() -> None:
    """Relevant candidates hold the question's word pairs but sit low in the fused order:
    the fit must weigh pairs up and let them win over the fused rank."""
    from rag.eval import fit_reranker

    features, relevant = [], []
    for q in range(30):
        rows = []
        for rank in range(1, 6):
            f = dict.fromkeys(RERANK_FEATURES, 0.0)
            f["fused_rr"] = 1.0 / rank
            f["pairs"] = 1.0 if rank == 1 + q % 4 + 1 else 0.1 * (q % 3)
            rows.append(f)
        features.append(rows)
        relevant.append([f["pairs"] == 1.0 for f in rows])
    model = fit_reranker(features, relevant)
    assert model.weights[-1] == 0.0 and model.features == RERANK_FEATURES
    assert model.weights[RERANK_FEATURES.index("pairs")] > 0
    for rows, rel in zip(features, relevant, strict=True):
        scores = [model.score(f) for f in rows]
        assert rel[scores.index(max(scores))]
    with pytest.raises(ValueError, match="no question"):
        fit_reranker([features[0]], [[False] * 5])
