"""Official SQuAD metrics on hand-checked values, retrieval and calibration maths, fitting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.eval.fit import best_threshold, fit_abstention, fit_logistic
from rag.eval.metrics import (
    QuestionResult,
    answer_metrics,
    calibration,
    loss_split,
    ndcg_at,
    question_kind,
    retrieval_metrics,
)
from rag.eval.report import compare, markdown
from rag.gold import exact_match, f1, normalize_answer
from rag.models import Abstention


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an  apple,  a pear ", "apple pear"),
        ("Theatre of the Absurd", "theatre of absurd"),
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f1_value"),
    [
        ("the Eiffel Tower!", ["Eiffel tower"], 1.0, 1.0),
        ("in Paris France", ["Paris"], 0.0, 0.5),  # p = 1/3, r = 1
        ("Denver Broncos", ["Broncos", "Denver Broncos"], 1.0, 1.0),
        ("Carolina Panthers won", ["Denver Broncos"], 0.0, 0.0),
        ("1,000 sappers", ["1,000"], 0.0, 2 * 0.5 * 1 / 1.5),  # "1000 sappers" vs "1000"
        # the article "a" is dropped: "b c d" vs "b c e", p = r = 2/3
        ("a b c d", ["b c e"], 0.0, 2 / 3),
        ("", [], 1.0, 1.0),  # unanswerable, abstained
        ("something", [], 0.0, 0.0),  # unanswerable, answered
        ("", ["Paris"], 0.0, 0.0),
    ],
)
def test_em_and_f1_match_the_official_script(
    prediction: str, golds: list[str], em: float, f1_value: float
) -> None:
    assert exact_match(prediction, golds) == em
    assert f1(prediction, golds) == pytest.approx(f1_value)


def _result(**kw: object) -> QuestionResult:
    base: dict[str, object] = dict(
        id="q",
        question="Who?",
        kind="who",
        gold_answers=["x"],
        gold_doc=None,
        impossible=False,
        prediction="x",
        answered=True,
        score=0.5,
        confidence=0.5,
        narrowed=True,
        em=1.0,
        f1=1.0,
        citations_round_trip=True,
        citation_holds_answer=True,
        answer_rank=1,
        doc_rank=None,
        retrieve_ms=1.0,
        read_ms=2.0,
    )
    base.update(kw)
    return QuestionResult(**base)  # type: ignore[arg-type]


def test_toy_file_official_aggregate() -> None:
    """Three questions: EM (1 + 0 + 1)/3, F1 (1 + 0.5 + 1)/3, as the official script."""
    rows = [
        ("the Eiffel Tower!", ["Eiffel tower"], False),
        ("in Paris France", ["Paris"], False),
        ("", [], True),
    ]
    results = [
        _result(
            prediction=p,
            gold_answers=g,
            impossible=imp,
            answered=bool(p),
            em=exact_match(p, g),
            f1=f1(p, g),
            kind="what",
        )
        for p, g, imp in rows
    ]
    m = answer_metrics(results)
    assert m["em"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert m["f1"] == pytest.approx(100 * 2.5 / 3, abs=0.01)
    assert m["has_answer"] == {"n": 2, "em": 50.0, "f1": 75.0}
    assert m["no_answer"] == {"n": 1, "accuracy": 100.0}
    assert m["abstention"] == {"n": 1, "precision": 100.0, "recall": 100.0}
    assert m["by_type"]["what"]["n"] == 2


def test_retrieval_metrics() -> None:
    m = retrieval_metrics([1, 3, None, 20], [2, None, None, None], [1, 5, 20])
    assert m["recall_answer"] == {"1": 0.25, "5": 0.5, "20": 0.75}
    assert m["mrr_answer"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 4, abs=1e-4)
    assert m["recall_doc"]["5"] == 0.25


def test_ndcg() -> None:
    assert ndcg_at(["a", "b"], {"a": 1}) == 1.0
    assert ndcg_at(["x", "a"], {"a": 1}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at(["x"], {"a": 1, "b": 1}) == 0.0
    assert ndcg_at(["b", "a"], {"a": 2, "b": 1}) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )


def test_calibration_ece() -> None:
    results = [_result(confidence=0.9, em=1.0, f1=1.0)] * 9 + [
        _result(confidence=0.9, em=0.0, f1=0.0)
    ]
    cal = calibration(results)
    assert cal["ece"] == pytest.approx(0.0)
    skewed = [_result(confidence=0.95, em=0.0, f1=0.0)] * 4
    assert calibration(skewed)["ece"] == pytest.approx(0.95)


def test_loss_split_attributes_each_lost_point_to_one_stage() -> None:
    results = [
        _result(),  # right: loses nothing
        _result(answer_rank=None, prediction="y", em=0.0, f1=0.0),  # not retrieved
        _result(answer_rank=7, prediction="x y", em=0.0, f1=2 / 3),  # read only the top 5
        _result(answered=False, prediction="", em=0.0, f1=0.0, withheld_f1=1.0),  # held back
        _result(answered=False, prediction="", em=0.0, f1=0.0, withheld_f1=0.4),  # wrong span
        _result(prediction="x y z", em=0.0, f1=0.5),  # partial span
        _result(impossible=True, gold_answers=[], answered=False, em=1.0, f1=1.0),  # not counted
    ]
    split = loss_split(results, top_k=5)
    assert split["n"] == 6
    assert split["retrieval"] == {
        "questions": round(200 / 6, 2),
        "f1_lost": round(100 * (1 + 1 / 3) / 6, 2),
    }
    assert split["abstention"] == {"questions": round(100 / 6, 2), "f1_lost": round(100 / 6, 2)}
    assert split["reader"] == {"questions": round(200 / 6, 2), "f1_lost": round(150 / 6, 2)}
    has_f1 = answer_metrics(results)["has_answer"]["f1"]
    lost = sum(split[s]["f1_lost"] for s in ("retrieval", "abstention", "reader"))
    assert lost == pytest.approx(100 - has_f1, abs=0.02)
    assert "## Where the F1 is lost" in markdown({"questions": 7, "loss_split": split}, "t", [])


def test_best_threshold_separates() -> None:
    rows: list[tuple[float, float | None]] = [(0.1, None), (0.2, None), (0.8, 1.0), (0.9, 1.0)]
    t, value = best_threshold(rows)
    assert 0.2 < t < 0.8 and value == 1.0
    never: list[tuple[float, float | None]] = [(0.5, 1.0), (0.6, 1.0)]
    t2, v2 = best_threshold(never)
    assert t2 < 0.5 and v2 == 1.0


def test_best_threshold_keeps_the_answerable_gain_it_is_told_to() -> None:
    # Three unanswerables score above one of the two answers: best F1 gives that answer up.
    rows: list[tuple[float, float | None]] = [
        (0.1, None),
        (0.2, 1.0),
        (0.3, None),
        (0.4, None),
        (0.5, None),
        (0.9, 1.0),
    ]
    t, value = best_threshold(rows)
    assert 0.5 < t < 0.9 and value == 5 / 6
    t_keep, v_keep = best_threshold(rows, keep=0.9)  # both answers must stay
    assert 0.1 < t_keep < 0.2 and v_keep == 3 / 6
    assert best_threshold(rows, keep=0.5) == (t, value)


def test_fit_logistic_learns_direction() -> None:
    xs = [(s / 10, 0.0) for s in range(10)] * 5
    ys = [s >= 5 for s in range(10)] * 5
    a, _, c = fit_logistic(xs, ys)
    assert a > 0 and -a < c < 0


def test_question_kind() -> None:
    assert question_kind("How many people?") == "how many"
    assert question_kind("In which year?") == "what"
    assert question_kind("Whose book?") == "who"
    assert question_kind("Name the river.") == "other"


def test_compare_and_markdown() -> None:
    a = {"answers": {"em": 10.0, "f1": 20.0}, "cost": {"qps": 1}}
    b = {"answers": {"em": 12.5, "f1": 20.0}, "cost": {"qps": 2}}
    assert compare(a, b) == ["answers.em: 10.00 -> 12.50 (+2.5)", "cost.qps: 1.00 -> 2.00 (+1)"]
    assert markdown({"questions": 3, "retrieval": {}}, "t", []).startswith("# Evaluation: t")


# The abstentions the two readers fit (their UNFITTED defaults' features and objectives).
SPAN = Abstention(features=("score",), objective="f1")
SENTENCE = Abstention(features=("score", "narrowed"), objective="cited")


def test_fit_reader_span_maximises_f1_and_scales_the_margin() -> None:
    """Span fit: the margin splits unanswerables (low margins) from good answers (high);
    a wrong answer whose citation holds the gold (sentence reader's gain) does not count."""
    unanswerable = [
        _result(impossible=True, gold_answers=[], score=s, em=0.0, f1=0.0)
        for s in (-3.0, -2.0, -1.5)
    ]
    right = [_result(score=s) for s in (1.0, 2.0, 3.0)]
    # Cited sentence holds the answer but the span is wrong: F1 0.
    wrong = [_result(score=-1.75, em=0.0, f1=0.0, citation_holds_answer=True)]
    fit = fit_abstention(unanswerable + right + wrong, SPAN)
    assert fit.abstention.features == ("score",) and fit.abstention.objective == "f1"
    assert -1.0 < fit.abstention.threshold < 1.0
    assert fit.report["no_answer_recall"] == 1.0 and fit.report["no_answer_precision"] == 0.75
    assert fit.report["has_answer_f1_at_threshold"] == 75.0
    assert fit.abstention.calibration is not None
    a, _ = fit.abstention.calibration  # the margin's weight and a bias: Platt scaling
    assert a > 0
    assert fit.report["has_answer_f1_never_abstain"] == 75.0
    # Keeping all of the answerable F1 forbids abstaining on the right answers only.
    assert fit_abstention(unanswerable + right + wrong, SPAN, keep=1.0).abstention.threshold < 1.0
    sentence = fit_abstention(unanswerable + right + wrong, SENTENCE).abstention
    assert sentence.threshold < -1.75  # the wrong span's sentence counts there


def test_a_cached_corpus_index_of_an_older_schema_is_brought_to_this_codes(
    tmp_path: Path,
) -> None:
    """The evaluation's own cached corpus index is migrated before it is asked (a version-2
    index would otherwise answer through its old FTS5 table, not the keyword engine this
    code serves with); a second run reuses it without embedding again."""
    from rag.eval.runner import Evaluator
    from rag.gold import GoldAnswer, GoldQuestion, GoldSet
    from rag.models import Document
    from rag.store import SCHEMA_VERSION
    from tests.conftest import FakeEmbedder, unit_settings
    from tests.test_store import downgrade_to_v2

    doc = Document("p1", "Alpha is the first letter of the Greek alphabet.")
    gold = GoldSet([GoldQuestion("q1", "Which letter is first?", (GoldAnswer("Alpha", 0),))], [doc])
    embedder = FakeEmbedder()
    evaluator = Evaluator(unit_settings(index_root=tmp_path), embedder, progress=False)
    pipe = evaluator.pipeline_for(gold)
    pipe.close()
    downgrade_to_v2(pipe.index_path / "index.sqlite")
    embedded = embedder.texts_embedded
    again = evaluator.pipeline_for(gold)
    assert (
        again.manifest()["schema_version"] == SCHEMA_VERSION and embedder.texts_embedded == embedded
    )
    with again._store.read() as snap:
        assert len(snap.keyword(["letter"], 5)) == 1
    again.close()
