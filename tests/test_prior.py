"""rag.reader.prior: the answerable share, estimated from unlabelled P(answerable) values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rag.eval import QuestionResult, apply_abstention, apply_online_prior
from rag.models import Abstention
from rag.reader import OnlinePrior, estimate_prior


def posteriors(true: float, n: int, seed: int = 0) -> list[float]:
    """P(answerable) calibrated at prior 0.5 (two unit Gaussians at -1 and +1: log-odds 2x)
    of ``n`` questions of which a share ``true`` are answerable."""
    rng = np.random.default_rng(seed)
    answerable = rng.random(n) < true
    x = rng.normal(np.where(answerable, 1.0, -1.0), 1.0)
    return (1 / (1 + np.exp(-2 * x))).tolist()  # type: ignore[no-any-return]


def test_the_prior_of_a_set_is_estimated_from_its_unlabelled_posteriors() -> None:
    for true in (0.9, 0.3):
        assert estimate_prior(posteriors(true, 20_000), 0.5) == pytest.approx(true, abs=0.02)
    assert estimate_prior([], 0.4) == 0.4


@given(st.floats(0.05, 0.95), st.integers(30, 300), st.integers(0, 99), st.floats(0.01, 0.99))
def test_where_em_starts_does_not_change_where_it_ends(
    true: float, n: int, seed: int, start: float
) -> None:
    """The likelihood of the share is concave: from anywhere, EM ends at its one maximum
    (up to its stopping tolerance, which a maximum at 0 or 1 is slow to reach)."""
    ps = posteriors(true, n, seed)
    assert estimate_prior(ps, 0.5, start=start) == pytest.approx(estimate_prior(ps, 0.5), abs=0.01)


def test_the_online_share_moves_from_the_fit_share_to_the_window_estimate() -> None:
    online = OnlinePrior(0.5, window=400, pseudo_count=20)
    assert online.share() == 0.5 and len(online) == 0
    ps = posteriors(0.95, 1000, seed=1)
    shares = [online.observe(p) for p in ps]
    # A few questions move it little; a window of them nearly all the way.
    assert abs(shares[4] - 0.5) < abs(shares[-1] - 0.5)
    assert shares[-1] == pytest.approx(0.95, abs=0.05) and len(online) == 400
    # The last window only: a stream turning unanswerable brings the share down again.
    for p in posteriors(0.2, 1000, seed=2):
        last = online.observe(p)
    assert last == pytest.approx(0.2 + 20 / 420 * 0.3, abs=0.06)


@given(st.floats(0.05, 0.95), st.integers(1, 60), st.integers(0, 99), st.floats(0.0, 50.0))
def test_the_online_share_lies_between_the_fit_share_and_the_window_estimate(
    true: float, n: int, seed: int, pseudo: float
) -> None:
    online = OnlinePrior(0.5, window=25, pseudo_count=pseudo)
    ps = posteriors(true, n, seed)
    for p in ps:
        share = online.observe(p)
    em = estimate_prior(ps[-25:], 0.5)
    assert min(em, 0.5) - 0.01 <= share <= max(em, 0.5) + 0.01


def test_bad_settings_and_bad_posteriors_are_refused() -> None:
    for bad in ((0.0, 10, 1.0), (1.0, 10, 1.0), (0.5, 0, 1.0), (0.5, 10, -1.0)):
        with pytest.raises(ValueError):
            OnlinePrior(*bad)
    online = OnlinePrior(0.5, window=10, pseudo_count=0)
    for p in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match="must be in"):
            online.observe(p)
    assert len(online) == 0 and online.share() == 0.5


def _result(i: int, score: float, impossible: bool) -> QuestionResult:
    return QuestionResult(
        id=f"q{i}",
        question="Who?",
        kind="who",
        gold_answers=[] if impossible else ["x"],
        gold_doc=None,
        impossible=impossible,
        prediction="x",
        answered=True,
        score=score,
        confidence=0.5,
        narrowed=True,
        em=float(not impossible),
        f1=float(not impossible),
        citations_round_trip=True,
        citation_holds_answer=not impossible,
        answer_rank=1,
        doc_rank=None,
        retrieve_ms=1.0,
        read_ms=1.0,
        features={},
    )


# P(answerable) = sigmoid(score) at the fit's share 0.5; P(correct | answerable) 0.8.
FACTORISED = Abstention(0.5, (0.0, 1.386294), ("score",), "f1", "answerable", (1.0, 0.0), 0.5)


def test_online_decisions_follow_the_stream_and_meet_the_fixed_rule_at_its_ends() -> None:
    """A borderline question (score -0.5: P(answerable) 0.38 at the fit share) is withheld
    at the start, and answered after a run of questions that all look answerable."""
    sure = [_result(i, 3.0, False) for i in range(60)]
    borderline = _result(99, -0.5, False)
    first = apply_online_prior([borderline, *sure], FACTORISED, 200, 10)
    last = apply_online_prior([*sure, borderline], FACTORISED, 200, 10)
    assert not first[0].answered and last[-1].answered
    assert last[-1].confidence > 0.5
    # An overwhelming pseudo-count keeps the fit's share: the fixed rule's decisions.
    rows = [*sure[:5], borderline, _result(7, -2.0, True)]
    fixed = apply_abstention(rows, FACTORISED)
    held = apply_online_prior(rows, FACTORISED, 200, 1e12)
    assert [r.answered for r in held] == [r.answered for r in fixed]
    with pytest.raises(ValueError, match="factorised"):
        apply_online_prior(
            rows,
            dataclasses.replace(FACTORISED, decides="confidence", answerable=None, fit_prior=None),
            200,
            10,
        )


def test_a_pipeline_asked_online_decides_at_its_own_index_share(tmp_path: Path) -> None:
    """RAG_SPAN_ANSWERABLE_PRIOR=online: each question is decided at the share estimated
    from the questions this index was asked (said in the no-answer reason), starting from
    the fit's; another index starts afresh; without it, no share is moved."""
    from rag.models import Document
    from rag.pipeline import Pipeline
    from rag.reader import SentenceReader
    from tests.conftest import FakeEmbedder, unit_settings

    # Abstains unless P(answerable) is near 1, so every answer here is a no-answer.
    strict = dataclasses.replace(FACTORISED, threshold=0.999)
    text = "The tower was finished in 1889 by Gustave Eiffel. It stands in Paris, France."

    def pipeline(**overrides: object) -> Pipeline:
        settings = unit_settings(index_root=tmp_path / "idx", **overrides)
        reader = SentenceReader(FakeEmbedder(), abstention=strict)
        return Pipeline(settings, embedder=FakeEmbedder(), reader=reader)

    online = pipeline(span_answerable_prior="online", span_prior_pseudo_count=5.0)
    online.ingest([Document("d", text)])
    reasons = [
        online.ask("Who finished the tower in 1889?").no_answer_reason or "" for _ in range(3)
    ]
    shares = [float(r.rsplit("answerable share ", 1)[1].rstrip(")")) for r in reasons]
    assert shares[0] != 0.5 and len(set(shares)) == 3  # each question moves it
    fresh = pipeline(span_answerable_prior="online", span_prior_pseudo_count=5.0)
    first = fresh.ask("Who finished the tower in 1889?").no_answer_reason or ""
    assert float(first.rsplit("answerable share ", 1)[1].rstrip(")")) == shares[0]
    for setting in (0.5, "off"):  # the reader's own share, never moved
        fixed = pipeline(span_answerable_prior=setting).ask("Who finished the tower in 1889?")
        assert "answerable share" not in (fixed.no_answer_reason or "")
