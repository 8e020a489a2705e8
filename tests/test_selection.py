"""The span selection: its features, its fitted conditional logit, and its fit file."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from rag.eval import fit_selection
from rag.reader import (
    SELECTION_FEATURES,
    VERIFIER_FEATURES,
    Selection,
    load_selection,
    save_rank_weight,
    selection_rows,
)


def features(score: float, null: float = 5.0, **kind: float) -> dict[str, float]:
    """Verifier features of a candidate: every one 0 but its margin and no-answer score."""
    base = dict.fromkeys(VERIFIER_FEATURES, 0.0)
    return {**base, "score": score, "null": null, **kind}


def only(name: str, weight: float = 1.0) -> Selection:
    """A selection that reads one feature."""
    n = len(SELECTION_FEATURES)
    weights = [weight if f == name else 0.0 for f in SELECTION_FEATURES]
    return Selection(SELECTION_FEATURES, (0.0,) * n, (1.0,) * n, tuple(weights))


def test_rows_count_agreement_by_passage_and_read_the_answer_shape() -> None:
    texts = ["Anna Brask", "anna  brask!", "in 1902", "Anna Brask"]
    rows = selection_rows(
        texts,
        [features(2.0, q_name=1.0), features(1.0), features(0.5, q_number=1.0), features(0.0)],
        [1, 3, 2, 1],
    )
    assert [set(r) for r in rows] == [set(SELECTION_FEATURES)] * 4
    # "Anna Brask" is read from passages 1 and 3 (case and punctuation aside).
    assert rows[0]["agreement_log"] == rows[1]["agreement_log"] == math.log(2)
    assert rows[2]["agreement_log"] == 0.0
    assert rows[0]["read_rank_log"] == 0.0 and rows[1]["read_rank_log"] == math.log(3)
    assert rows[0]["capitalised"] == 1.0 and rows[0]["name_shape"] == 1.0
    assert rows[1]["name_shape"] == 0.0  # not a name question
    assert rows[2]["digits"] == 1.0 and rows[2]["number_shape"] == 1.0
    assert rows[2]["capitalised"] == 0.0
    with pytest.raises(ValueError):
        selection_rows(texts, [features(0.0)] * 4, [1, 2])


@given(
    st.lists(st.floats(-20, 20), min_size=1, max_size=12),
    st.lists(st.floats(-20, 20), min_size=12, max_size=12),
    st.floats(-50, 50),
)
def test_a_shift_every_candidate_shares_does_not_move_the_choice(
    scores: list[float], nulls: list[float], shift: float
) -> None:
    """A domain that moves all of a question's no-answer scores (news) moves every
    candidate's score alike: the softmax's choice stays."""
    n = len(SELECTION_FEATURES)
    selection = Selection(
        SELECTION_FEATURES,
        (0.0,) * n,
        (1.0,) * n,
        tuple(0.1 * (i + 1) * (-1) ** i for i in range(n)),
    )
    texts = [f"answer {i}" for i in range(len(scores))]
    ranks = [1 + i % 5 for i in range(len(scores))]
    plain = [features(s, nu) for s, nu in zip(scores, nulls, strict=False)]
    shifted = [features(s, nu + shift) for s, nu in zip(scores, nulls, strict=False)]
    a = selection.scores(selection_rows(texts, plain, ranks))
    b = selection.scores(selection_rows(texts, shifted, ranks))
    w_null = selection.weights[SELECTION_FEATURES.index("null")]
    for x, y in zip(a, b, strict=True):
        assert y - x == pytest.approx(w_null * shift, abs=1e-6)


def test_a_selection_is_checked_and_scores_standardised_features() -> None:
    n = len(SELECTION_FEATURES)
    with pytest.raises(ValueError, match="one mean"):
        Selection(SELECTION_FEATURES, (0.0,) * (n - 1), (1.0,) * n, (0.0,) * n)
    with pytest.raises(ValueError, match="scales"):
        Selection(SELECTION_FEATURES, (0.0,) * n, (0.0,) * n, (0.0,) * n)
    with pytest.raises(ValueError, match="finite"):
        Selection(SELECTION_FEATURES, (math.nan,) * n, (1.0,) * n, (0.0,) * n)
    with pytest.raises(ValueError, match="unknown"):
        Selection(("score", "colour"), (0.0, 0.0), (1.0, 1.0), (1.0, 1.0))
    selection = Selection(("score", "digits"), (1.0, 0.5), (2.0, 0.5), (1.0, -1.0))
    rows = [{"score": 5.0, "digits": 1.0}, {"score": 1.0, "digits": 0.0}]
    assert selection.scores(rows) == [2.0 - 1.0, 0.0 + 1.0]


def test_the_fit_file_round_trips_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "span_selection_fit.json"
    assert load_selection(path) is None  # absent: the rank-weight rule
    save_rank_weight(path, 1.5)
    assert load_selection(path) is None  # a rank weight alone
    selection = only("score")
    save_rank_weight(path, 1.5, selection=selection.to_json())
    assert load_selection(path) == selection
    data = json.loads(path.read_text())
    data["selection"]["weights"] = data["selection"]["weights"][:3]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a usable span selection fit"):
        load_selection(path)
    path.write_text("[1.5]")
    with pytest.raises(ValueError, match="not a JSON object"):
        load_selection(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a usable"):
        load_selection(path)


def synthetic(n: int, seed: int) -> tuple[list[list[dict[str, float]]], list[list[float]]]:
    """Questions whose right candidate holds a digit (number questions) and has a modest
    margin, among distractors with higher margins half of the time."""
    rng = random.Random(seed)
    rows, f1s = [], []
    for _ in range(n):
        k = rng.randint(3, 8)
        right = rng.randrange(k)
        texts = [
            f"{rng.randint(1, 99)} ships" if i == right else f"the harbour {chr(97 + i)}"
            for i in range(k)
        ]
        feats = [
            features(rng.gauss(1.0 if i == right else 1.5, 1.0), rng.gauss(5, 1), q_number=1.0)
            for i in range(k)
        ]
        rows.append(selection_rows(texts, feats, [1 + i % 5 for i in range(k)]))
        f1s.append([1.0 if i == right else 0.0 for i in range(k)])
    return rows, f1s


def test_the_fit_learns_the_answer_shape_and_beats_the_margin() -> None:
    rows, f1s = synthetic(300, seed=1)
    selection, ridge, losses = fit_selection(rows, f1s)
    assert set(losses) == {"0.01", "0.1", "1.0", "10.0", "100.0", "1000.0"}
    assert losses[str(ridge)] == min(losses.values())
    assert selection.weights[SELECTION_FEATURES.index("number_shape")] > 0
    test_rows, test_f1s = synthetic(300, seed=2)

    def accuracy(choose: Selection) -> float:
        hits = 0.0
        for r, f in zip(test_rows, test_f1s, strict=True):
            s = choose.scores(r)
            hits += f[max(range(len(r)), key=lambda i: s[i])]
        return hits / len(test_rows)

    assert accuracy(selection) > 0.95
    assert accuracy(only("score")) < 0.6  # the margin alone is misled
    with pytest.raises(ValueError, match="at least"):
        fit_selection(rows[:3], f1s[:3])
    with pytest.raises(ValueError, match="at least"):  # five questions, but one article
        fit_selection(rows[:5], f1s[:5], groups=["a"] * 5)
    with pytest.raises(ValueError, match="F1 values"):
        fit_selection(rows, [f[:-1] for f in f1s])
    grouped, _, _ = fit_selection(rows, f1s, groups=[str(i % 40) for i in range(len(rows))])
    assert grouped.weights[SELECTION_FEATURES.index("number_shape")] > 0
    with pytest.raises(ValueError, match="at least"):
        fit_selection(rows, [[0.0] * len(f) for f in f1s])  # no right span anywhere


def test_the_shipped_fit_holds_a_selection() -> None:
    from rag.reader import SELECTION_FIT_FILE

    selection = load_selection(SELECTION_FIT_FILE)
    assert selection is not None and selection.features == SELECTION_FEATURES
