"""The answer verifier: its features (no model), its fit, and its decision in the composer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from rag.eval import QuestionResult, fit_factorised_verifier, fit_verifier
from rag.models import Abstention, Document, Passage, Span
from rag.reader import (
    CHECKED_FEATURES,
    PRIOR_FIT_FILE,
    VERIFIER_FEATURES,
    VERIFIER_FIT_FILE,
    ReaderConfigError,
    SentenceReader,
    compose_answer,
    load_abstention,
    save_abstention,
    span_features,
)
from tests.conftest import FakeEmbedder


def test_the_composer_decides_with_the_abstention_it_is_given() -> None:
    """The pipeline's online share comes as an abstention beside the reader's own: the
    decision, the no-answer reason and every candidate's confidence follow it."""
    names = ("score",)
    # P(answerable) = sigmoid(score - 2) at the fit share 0.5; P(correct | answerable) 0.8.
    own = Abstention(0.5, (0.0, 1.386294), names, "f1", "answerable", (1.0, -2.0), 0.5)
    reader = SentenceReader(FakeEmbedder(), abstention=own)
    sure = Span("d", 34, 48, "Gustave Eiffel", 1.0, 0, 49, {})
    withheld = compose_answer("Who?", [sure], {"d": DOC}, [P0], reader)
    assert not withheld.answered and "answerable share" not in (withheld.no_answer_reason or "")
    moved = dataclasses.replace(own, prior=0.95)
    answer = compose_answer("Who?", [sure], {"d": DOC}, [P0], reader, abstention=moved)
    assert answer.answered
    assert answer.confidence == pytest.approx(moved.probability({"score": 1.0}))
    assert answer.answers[0].confidence == answer.confidence
    low = dataclasses.replace(own, prior=0.05)
    refused = compose_answer("Who?", [sure], {"d": DOC}, [P0], reader, abstention=low)
    assert not refused.answered
    assert "answerable share 0.050" in (refused.no_answer_reason or "")


TEXT = "The tower was finished in 1889 by Gustave Eiffel. It stands in Paris, France."
DOC = Document("d", TEXT, "T")
P0 = Passage(7, "d", "T", 0, 49, TEXT[:49], 0.03, 0.62, 4.1, 2, 1)
P1 = Passage(8, "d", "T", 50, len(TEXT), TEXT[50:], 0.02, 0.40, None, 1, None)


def _span(text: str, score: float, nth: int = 0) -> Span:
    start = [i for i in range(len(TEXT)) if TEXT.startswith(text, i)][nth]
    end = start + len(text)
    ctx = (0, 49) if start < 49 else (50, len(TEXT))
    return Span("d", start, end, text, score, *ctx)


def test_features_are_named_bounded_and_read_what_the_pipeline_knows() -> None:
    spans = [_span("1889", 6.0), _span("Gustave Eiffel", 4.0), _span("Paris", 1.0)]
    feats = span_features(
        "When was the tower finished?", spans, [1.5, 2.0, 3.0], [P0, P1], {"d": DOC}
    )
    assert [set(f) for f in feats] == [set(VERIFIER_FEATURES)] * 3
    best, second, third = feats
    assert best["score"] == 6.0 and best["null"] == 1.5
    assert best["gap"] == 2.0 and second["gap"] == -2.0  # to the best other answer
    assert sum(f["mass"] for f in feats) == pytest.approx(1.0)
    assert best["mass"] == pytest.approx(1 / (1 + math.exp(-2) + math.exp(-5)))
    # Where the passage holding the span ranked: fused (1st), dense (2nd), BM25 (1st).
    assert (best["passage_rr"], best["dense_rr"], best["bm25_rr"]) == (1.0, 0.5, 1.0)
    assert third["passage_rr"] == 0.5 and third["bm25_rr"] == 0.0
    assert best["dense"] == 0.62 and best["dense_top"] == 0.62
    # "tower" and "finished" are in the cited sentence; "when" is a stopword.
    assert best["q_in_sentence"] == 1.0 and third["q_in_sentence"] == 0.0
    assert best["q_date"] == 1.0 and best["typed_miss"] == 0.0
    assert second["typed_miss"] == 1.0  # a date question answered with a name
    assert best["answer_in_q"] == 0.0
    # The question's form: 5 words, and the reader's scores and the overlap at that length.
    length = math.log1p(5)
    assert best["q_words"] == third["q_words"] == pytest.approx(length)
    assert best["null_by_words"] == pytest.approx(1.5 * length)
    assert third["score_by_words"] == pytest.approx(third["score"] * length)
    assert best["overlap_by_words"] == pytest.approx(length) and third["overlap_by_words"] == 0.0
    longer = span_features(
        "The tower made news this week. When was the tower finished?",
        spans,
        [1.5, 2.0, 3.0],
        [P0, P1],
        {"d": DOC},
    )
    assert longer[0]["q_words"] > best["q_words"]
    # With the answer checker's margins: the same features and each span's own check.
    checked = span_features(
        "When was the tower finished?",
        spans,
        [1.5, 2.0, 3.0],
        [P0, P1],
        {"d": DOC},
        [0.25, -3.0, 7.5],
    )
    assert [set(f) for f in checked] == [set(CHECKED_FEATURES)] * 3
    assert [f["check"] for f in checked] == [0.25, -3.0, 7.5]
    assert [{k: v for k, v in f.items() if k != "check"} for f in checked] == feats


def test_same_text_in_two_places_shares_its_mass_and_has_no_rival_of_its_own() -> None:
    text = "Paris is big. Paris is old."
    doc = Document("d", text, "T")
    spans = [
        Span("d", 0, 5, "Paris", 3.0, 0, 13),
        Span("d", 14, 19, "Paris", 3.0, 14, 27),
    ]
    passage = Passage(1, "d", "T", 0, len(text), text, 0.1)
    feats = span_features("Which city?", spans, [0.0, 0.0], [passage], {"d": doc})
    assert [f["mass"] for f in feats] == [pytest.approx(1.0)] * 2
    assert feats[0]["gap"] == feats[1]["gap"] > 0


@given(
    st.lists(st.floats(-20, 20), min_size=1, max_size=30),
    st.text(min_size=1, max_size=40),
)
def test_features_are_finite_for_any_scores_and_question(scores: list[float], q: str) -> None:
    scores = sorted(scores, reverse=True)
    spans = [Span("d", 0, 3, TEXT[0:3], s, 0, 49) for s in scores]
    for f in span_features(q, spans, [0.0] * len(spans), [P0], {"d": DOC}):
        assert all(math.isfinite(v) for v in f.values())
        assert 0.0 <= f["mass"] <= 1.0 + 1e-9


def _result(correct: bool, impossible: bool, **features: float) -> QuestionResult:
    return QuestionResult(
        id="q",
        question="Who?",
        kind="who",
        gold_answers=[] if impossible else ["x"],
        gold_doc=None,
        impossible=impossible,
        prediction="x" if correct else "y",
        answered=True,
        score=features.get("score", 0.0),
        confidence=0.5,
        narrowed=True,
        em=float(correct),
        f1=float(correct),
        citations_round_trip=True,
        citation_holds_answer=correct,
        answer_rank=1,
        doc_rank=None,
        retrieve_ms=1.0,
        read_ms=1.0,
        features={f: features.get(f, 0.0) for f in VERIFIER_FEATURES},
    )


def test_fit_learns_from_the_features_and_decides_on_confidence() -> None:
    """A tiny fit: unanswerables have a low mass whatever their margin, right answers a
    high one; the verifier must weigh mass, abstain on the first and answer the second."""
    rows = [_result(False, True, score=8.0 + i % 3, mass=0.2 + 0.05 * (i % 4)) for i in range(40)]
    rows += [_result(True, False, score=8.0 + i % 3, mass=0.7 + 0.05 * (i % 4)) for i in range(40)]
    rows += [_result(False, False, score=8.0, mass=0.45)] * 4
    fit = fit_verifier(rows)
    a = fit.abstention
    assert a.decides == "confidence" and a.features == VERIFIER_FEATURES
    assert a.calibration is not None
    assert a.calibration[VERIFIER_FEATURES.index("mass")] > 0
    assert fit.report["no_answer_recall"] == 1.0 and fit.report["no_answer_precision"] > 0.9
    assert not a.abstains(rows[-5].features) and a.abstains(rows[0].features)
    p_right = a.probability(rows[40].features) or 0.0
    assert 0.5 < p_right <= 1.0 and 0.0 <= a.threshold < p_right
    with pytest.raises(ValueError, match="lack the verifier features"):
        fit_verifier([_result(True, False), QuestionResult(**{**vars_of(rows[0]), "features": {}})])


def vars_of(r: QuestionResult) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def test_the_composer_withholds_what_the_verifier_doubts() -> None:
    """Decided on confidence: a high margin does not answer when P(correct) is low, and an
    n-best candidate the verifier doubts is skipped, not the ones after it."""
    names = ("score", "mass")
    verifier = Abstention(0.5, (0.0, 10.0, -5.0), names, "f1", "confidence")
    reader = SentenceReader(FakeEmbedder(), abstention=verifier)
    doubted = Span("d", 26, 30, "1889", 9.0, 0, 49, {"mass": 0.2})
    sure = Span("d", 34, 48, "Gustave Eiffel", 2.0, 0, 49, {"mass": 0.9})
    paris = Span("d", 62, 67, "Paris", 1.0, 50, len(TEXT), {"mass": 0.8})
    withheld = compose_answer("When?", [doubted, sure], {"d": DOC}, [P0], reader)
    assert not withheld.answered and "confidence" in (withheld.no_answer_reason or "")
    assert withheld.features == {"mass": 0.2}
    answer = compose_answer("Who?", [sure, doubted, paris], {"d": DOC}, [P0, P1], reader, n=3)
    assert [c.text for c in answer.answers] == ["Gustave Eiffel", "Paris"]
    assert answer.confidence == pytest.approx(1 / (1 + math.exp(-4.0)))
    with pytest.raises(ValueError, match="needs a calibration"):
        Abstention(0.5, None, names, "f1", "confidence")


def test_a_saved_verifier_loads_back_and_decides_the_same(tmp_path: Path) -> None:
    """Save/load parity: the fit file gives back the very abstention, and with it the same
    probabilities and decisions."""
    weights = tuple(0.1 * (i % 5) - 0.2 for i in range(len(VERIFIER_FEATURES) + 1))
    verifier = Abstention(0.4321, weights, VERIFIER_FEATURES, "f1", "confidence")
    path = tmp_path / "fit.json"
    save_abstention(path, "span", verifier, questions=3)
    loaded = load_abstention(path, "span", Abstention())
    assert loaded == verifier
    spans = [_span("1889", 6.0), _span("Gustave Eiffel", 0.5), _span("Paris", -3.0)]
    for values in span_features("When?", spans, [1.0, 2.0, 3.0], [P0, P1], {"d": DOC}):
        assert loaded.probability(values) == verifier.probability(values)
        assert loaded.abstains(values) == verifier.abstains(values)
    with pytest.raises(ValueError, match="not 'sentence'"):
        load_abstention(path, "sentence", Abstention())


def test_the_shipped_verifier_is_fitted_over_every_feature() -> None:
    from rag.settings import DATA_DIR

    assert VERIFIER_FIT_FILE.parent == DATA_DIR.resolve()
    fitted = load_abstention(VERIFIER_FIT_FILE, "span", Abstention())
    assert fitted.decides == "confidence" and fitted.features == VERIFIER_FEATURES
    assert fitted.calibration is not None and 0.0 < fitted.threshold < 1.0
    factorised = load_abstention(PRIOR_FIT_FILE, "span", Abstention())
    assert factorised.decides == "answerable" and factorised.features == VERIFIER_FEATURES
    assert factorised.calibration is not None and factorised.answerable is not None
    assert factorised.fit_prior is not None and 0.0 < factorised.fit_prior < 1.0
    assert 0.0 < factorised.threshold < 1.0
    # RAG_SPAN_PROBE's fits weigh the probe too, and the probe is there for them.
    from rag.reader import load_probe, offered_features, verifier_fit_file

    for factorised_fit in (False, True):
        probed = load_abstention(
            verifier_fit_file(False, factorised_fit, True), "span", Abstention()
        )
        assert probed.features == offered_features(probe=True, checker=False)
    assert load_probe(DATA_DIR / "reader") is not None


# ---- the factorised verifier: P(answerable) x P(correct | answerable) -------------------
def test_the_factorised_fit_learns_answerability_and_correctness_apart() -> None:
    """Unanswerables have a low mass; among answerable questions, a narrow gap marks the
    wrong span. P(answerable) must weigh mass and decide; P(correct | answerable) must
    weigh the gap, so a wrong answer to an answerable question is answered, with a low
    confidence, and an unanswerable one is withheld."""
    rows = [_result(False, True, mass=0.2 + 0.05 * (i % 4), gap=1.0 + i % 3) for i in range(40)]
    rows += [_result(True, False, mass=0.7 + 0.05 * (i % 4), gap=3.0 + i % 3) for i in range(40)]
    rows += [_result(False, False, mass=0.7 + 0.05 * (i % 4), gap=0.1 * (i % 3)) for i in range(40)]
    fit = fit_factorised_verifier(rows)
    a = fit.abstention
    assert a.decides == "answerable" and a.fit_prior == pytest.approx(80 / 120)
    assert a.answerable is not None and a.calibration is not None
    assert a.answerable[VERIFIER_FEATURES.index("mass")] > 0
    assert a.calibration[VERIFIER_FEATURES.index("gap")] > 0
    assert a.abstains(rows[0].features) and not a.abstains(rows[100].features)
    right, wrong = a.probability(rows[40].features), a.probability(rows[100].features)
    assert right is not None and wrong is not None and right > 0.5 > wrong
    assert fit.report["no_answer_recall"] == 1.0
    with pytest.raises(ValueError, match="answerable and unanswerable"):
        fit_factorised_verifier(rows[40:])


def test_the_correctness_part_can_be_fitted_on_another_run() -> None:
    """With ``correct_results`` P(correct | answerable) is that run's alone (there, a wide
    gap marks the wrong span, the reverse of ``results``), while P(answerable), its
    threshold and the fit prior stay ``results``'; a run without answerable questions to
    grade is refused."""
    rows = [_result(False, True, mass=0.2 + 0.05 * (i % 4), gap=1.0 + i % 3) for i in range(40)]
    rows += [_result(True, False, mass=0.7 + 0.05 * (i % 4), gap=3.0 + i % 3) for i in range(40)]
    rows += [_result(False, False, mass=0.7 + 0.05 * (i % 4), gap=0.1 * (i % 3)) for i in range(40)]
    other = [_result(True, False, gap=0.1 * (i % 3)) for i in range(40)]
    other += [_result(False, False, gap=3.0 + i % 3) for i in range(40)]
    own, moved = fit_factorised_verifier(rows), fit_factorised_verifier(rows, correct_results=other)
    gap = VERIFIER_FEATURES.index("gap")
    assert own.abstention.calibration is not None and moved.abstention.calibration is not None
    assert own.abstention.calibration[gap] > 0 > moved.abstention.calibration[gap]
    assert moved.abstention.answerable == own.abstention.answerable
    assert moved.abstention.threshold == own.abstention.threshold
    assert moved.abstention.fit_prior == own.abstention.fit_prior
    assert moved.report["correct_if_answerable_questions"] == 80
    assert own.report["correct_if_answerable_questions"] == 80
    with pytest.raises(ValueError, match="needs answerable questions"):
        fit_factorised_verifier(rows, correct_results=rows[:40])


@given(
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    st.floats(-2, 2),
    st.floats(0.05, 0.95),
    st.floats(0.01, 0.99),
)
def test_a_new_prior_moves_the_answerable_odds_by_bayes_rule(
    w_ans: list[float], w_cor: list[float], mass: float, fit_prior: float, prior: float
) -> None:
    names = ("score", "mass")
    base = Abstention(0.5, tuple(w_cor), names, "f1", "answerable", tuple(w_ans), fit_prior)
    values = {"score": 1.0, "mass": mass}
    same = dataclasses.replace(base, prior=fit_prior)
    assert same.probability(values) == pytest.approx(base.probability(values))
    p0, p1 = (
        base.answerable_probability(values),
        dataclasses.replace(base, prior=prior).answerable_probability(values),
    )
    assert p0 is not None and p1 is not None
    if 1e-6 < p0 < 1 - 1e-6 and 1e-6 < p1 < 1 - 1e-6:
        odds = (p1 / (1 - p1)) / (p0 / (1 - p0))
        prior_odds = (prior / (1 - prior)) / (fit_prior / (1 - fit_prior))
        assert odds == pytest.approx(prior_odds, rel=1e-6)
    # The confidence is the product of the two factors at any prior.
    shifted = dataclasses.replace(base, prior=prior)
    z_cor = w_cor[0] * 1.0 + w_cor[1] * mass + w_cor[2]
    assert shifted.probability(values) == pytest.approx(
        (shifted.answerable_probability(values) or 0.0) / (1 + math.exp(-z_cor))
    )
    # Every question answerable: never abstain, and the confidence is P(correct | answerable).
    sure = dataclasses.replace(base, prior=1.0)
    assert not sure.abstains(values)
    z = w_cor[0] * 1.0 + w_cor[1] * mass + w_cor[2]
    assert sure.probability(values) == pytest.approx(1 / (1 + math.exp(-z)))


def test_a_saved_factorised_verifier_loads_back_the_same(tmp_path: Path) -> None:
    n = len(VERIFIER_FEATURES) + 1
    verifier = Abstention(
        0.37,
        tuple(0.1 * (i % 5) - 0.2 for i in range(n)),
        VERIFIER_FEATURES,
        "f1",
        "answerable",
        tuple(0.05 * (i % 7) - 0.1 for i in range(n)),
        0.61,
    )
    path = tmp_path / "fit.json"
    save_abstention(path, "span", verifier)
    assert load_abstention(path, "span", Abstention()) == verifier
    with pytest.raises(ValueError, match="needs its weights and prior"):
        Abstention(0.5, verifier.calibration, VERIFIER_FEATURES, "f1", "answerable")
    with pytest.raises(ValueError, match="prior"):
        dataclasses.replace(verifier, prior=0.0)
    with pytest.raises(ValueError, match="go together"):
        dataclasses.replace(verifier, decides="confidence", fit_prior=None)
    plain = Abstention(0.5, verifier.calibration, VERIFIER_FEATURES, "f1", "confidence")
    with pytest.raises(ValueError, match="needs the factorised verifier"):
        dataclasses.replace(plain, prior=0.9)
    # A damaged fit file is one clear error naming it.
    path.write_text('{"reader": "span", "abstain_threshold": "x"}')
    with pytest.raises(ReaderConfigError, match="not a usable fit"):
        load_abstention(path, "span", Abstention())
    path.write_text("{not json")
    with pytest.raises(ReaderConfigError, match="not a usable fit"):
        load_abstention(path, "span", Abstention())


def test_a_prior_without_the_verifier_is_refused() -> None:
    """The margin rule has no P(answerable) to move: a prior there is a clear error."""
    from rag.reader import build_reader
    from rag.settings import ReaderSettings

    settings = ReaderSettings(span_verifier=False, span_answerable_prior=0.9)
    with pytest.raises(ReaderConfigError, match="RAG_SPAN_VERIFIER=true"):
        build_reader(settings, FakeEmbedder())


def test_the_checker_needs_its_weights_and_reads_with_its_own_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """RAG_SPAN_CHECKER reads with the verifier fitted with its feature: without weights
    there, a clear error; without that fit (the first fit run), the checker reads and the
    margin rule decides, said in a warning; with the margin rule it is not loaded."""
    from rag.reader import build_reader, factory
    from rag.settings import ReaderSettings

    weights = ReaderSettings().reader_weights
    with pytest.raises(ReaderConfigError, match=r"no model\.safetensors"):
        build_reader(ReaderSettings(span_checker=tmp_path), FakeEmbedder())
    calls: list[tuple[bool, bool]] = []

    def missing(checked: bool, factorised: bool, probed: bool = False) -> Path:
        calls.append((checked, factorised))
        return tmp_path / "absent.json"

    monkeypatch.setattr(factory, "verifier_fit_file", missing)
    first_fit = build_reader(ReaderSettings(span_checker=weights), FakeEmbedder())
    # The default online share wants the factorised fit; missing, the one-model one.
    assert calls == [(True, True), (True, False)]
    assert first_fit.checker == weights  # type: ignore[attr-defined]
    assert first_fit.abstention.decides == "score"
    assert "no verifier fit" in caplog.text
    margin_rule = build_reader(
        ReaderSettings(span_checker=weights, span_verifier=False), FakeEmbedder()
    )
    assert margin_rule.checker is None  # type: ignore[attr-defined]


def test_the_probe_is_read_with_its_own_fit_and_a_fit_weighs_only_what_is_offered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAG_SPAN_PROBE reads with the verifier fitted with the probe's feature, and needs
    the probe saved with the reader's weights; a fit that weighs a feature the reader does
    not offer (the probed fit without the probe) is a clear error, not a KeyError later."""
    from rag.reader import PROBE_FEATURES, WEIGHTS_FILE, build_reader, factory
    from rag.reader.probe import AnswerabilityProbe
    from rag.settings import ReaderSettings

    reader = tmp_path / "reader"
    reader.mkdir()
    shipped = Path(ReaderSettings().reader_weights)
    for name in (WEIGHTS_FILE, "reader.json"):
        (reader / name).symlink_to((shipped / name).resolve())
    with pytest.raises(ReaderConfigError, match=r"RAG_SPAN_PROBE: no probe\.json"):
        build_reader(ReaderSettings(reader_weights=reader, span_probe=True), FakeEmbedder())
    AnswerabilityProbe(((0.0,) * 384,) * 4, 0.0).save(reader)
    features = VERIFIER_FEATURES + PROBE_FEATURES
    n = len(features) + 1
    fit = tmp_path / "fit.json"
    save_abstention(
        fit,
        "span",
        Abstention(0.5, (0.0,) * n, features, "f1", "answerable", (0.0,) * n, 0.6),
    )
    calls: list[tuple[bool, bool, bool]] = []

    def probed_fit(checked: bool, factorised: bool, probed: bool = False) -> Path:
        calls.append((checked, factorised, probed))
        return fit

    monkeypatch.setattr(factory, "verifier_fit_file", probed_fit)
    built = build_reader(ReaderSettings(reader_weights=reader, span_probe=True), FakeEmbedder())
    assert calls == [(False, True, True)]
    assert built.abstention.decides == "answerable" and built.probe  # type: ignore[attr-defined]
    with pytest.raises(ReaderConfigError, match=r"weighs \['probe'\]"):
        build_reader(ReaderSettings(reader_weights=reader), FakeEmbedder())
    margin_rule = build_reader(
        ReaderSettings(reader_weights=reader, span_probe=True, span_verifier=False),
        FakeEmbedder(),
    )
    assert not margin_rule.probe  # type: ignore[attr-defined]


def test_fit_files_are_named_by_what_their_verifier_weighs(tmp_path: Path) -> None:
    """One name per combination of the probe and the checker; a fit whose features are not
    names is one clear error."""
    from rag.reader.span_format import (
        CHECKED_FIT_FILE,
        CHECKED_PRIOR_FIT_FILE,
        PROBED_FIT_FILE,
        PROBED_PRIOR_FIT_FILE,
        verifier_fit_file,
    )

    assert verifier_fit_file(False, False) == VERIFIER_FIT_FILE
    assert verifier_fit_file(False, True) == PRIOR_FIT_FILE
    assert verifier_fit_file(True, False) == CHECKED_FIT_FILE
    assert verifier_fit_file(True, True) == CHECKED_PRIOR_FIT_FILE
    assert verifier_fit_file(False, False, True) == PROBED_FIT_FILE
    assert verifier_fit_file(False, True, True) == PROBED_PRIOR_FIT_FILE
    both = {verifier_fit_file(True, f, True).name for f in (False, True)}
    assert both == {
        "span_reader_probed_checked_fit.json",
        "span_reader_probed_checked_prior_fit.json",
    }
    path = tmp_path / "fit.json"
    path.write_text('{"reader": "span", "abstain_threshold": 0.5, "features": [["score"], 1]}')
    with pytest.raises(ReaderConfigError, match="not names"):
        load_abstention(path, "span", Abstention())
