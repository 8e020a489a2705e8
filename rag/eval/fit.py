"""Fitting a reader's abstention: its threshold and confidence calibration, from an
evaluation run with abstention off (``rag eval --fit-threshold``, ``make fit-threshold``).

What is fitted follows the reader's own ``Abstention``: its ``objective`` decides what the
threshold maximises and its ``features`` what the calibration weighs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.eval.metrics import QuestionResult
from rag.models import Abstention


# ---- fitting the reader's abstention threshold and confidence --------------------------
def best_threshold(
    rows: Sequence[tuple[float, float | None]], keep: float = 0.0
) -> tuple[float, float]:
    """(threshold, value) maximising the mean decision value over ``(score, gain)`` rows.

    ``gain`` is what answering earns (None for an unanswerable question, where abstaining
    earns 1 and answering 0); abstaining on an answerable question earns 0. The threshold
    is the midpoint between the two scores where the best split falls. ``keep`` bounds what
    abstention may cost the answerable questions: only thresholds that keep at least this
    share of their gain (vs. never abstaining) are considered.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    n = len(ordered)
    if n == 0:
        return 0.0, 0.0
    answer_gain = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        answer_gain[i] = answer_gain[i + 1] + (ordered[i][1] or 0.0)
    best_t, best = ordered[0][0] - 1e-6, answer_gain[0] / n
    abstain_gain = 0.0
    for i in range(1, n + 1):
        abstain_gain += 1.0 if ordered[i - 1][1] is None else 0.0
        if answer_gain[i] < keep * answer_gain[0] - 1e-9:
            break  # the kept gain only falls from here on
        value = (abstain_gain + answer_gain[i]) / n
        if value > best:
            upper = ordered[i][0] if i < n else ordered[-1][0] + 2e-6
            best_t, best = (ordered[i - 1][0] + upper) / 2, value
    return best_t, best


def fit_logistic(
    features: Sequence[Sequence[float]], labels: Sequence[bool], steps: int = 500
) -> list[float]:
    """Weights (one per feature, then a bias) of a logistic regression, by Newton's method
    with a small ridge so that separable data stays finite."""
    x = np.hstack([np.asarray(features, dtype=float), np.ones((len(features), 1))])
    y = np.asarray(labels, dtype=float)
    w = np.zeros(x.shape[1])
    ridge = 1e-3 * np.eye(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return [round(float(v), 6) for v in w]


@dataclass(frozen=True, slots=True)
class AbstentionFit:
    """A fitted abstention and what the fit measured on its data (for the fit file)."""

    abstention: Abstention
    report: dict[str, Any]


def fit_abstention(
    results: Sequence[QuestionResult], reader: Abstention, keep: float = 0.0
) -> AbstentionFit:
    """The abstention threshold and confidence calibration of a reader whose abstention is
    ``reader`` (its objective and features), from a run with abstention off.

    Objective "cited" (the sentence reader): the threshold maximises right decisions (an
    answer whose cited sentence holds a gold answer, or an abstention on an unanswerable
    question). Objective "f1" (phrase answers, the span reader): the threshold maximises the
    official SQuAD v2.0 F1 (an answer earns its F1, an abstention on an unanswerable
    question 1) among thresholds that keep at least ``keep`` of the answerable questions'
    F1. Confidence is a logistic model of P(correct) on the reader's features (for the span
    reader, its margin alone: Platt scaling, sigmoid(score / T + c)).
    """
    f1_rows = [(r.score, None if r.impossible else r.f1) for r in results]
    if reader.objective == "f1":
        rows = f1_rows
    else:
        rows = [
            (r.score, None if r.impossible else float(r.citation_holds_answer)) for r in results
        ]
        keep = 0.0
    weights = fit_logistic(
        [tuple(float(getattr(r, f)) for f in reader.features) for r in results],
        [r.correct for r in results],
    )
    threshold, value = best_threshold(rows, keep)
    unanswerable = [r for r in results if r.impossible]
    answerable = [r for r in results if not r.impossible]
    abstained = [r for r in results if r.score < threshold]
    abstention = Abstention(round(threshold, 4), tuple(weights), reader.features, reader.objective)
    report = {
        "decision_accuracy_at_threshold": round(100 * value, 2),
        "decision_accuracy_never_abstain": round(
            100 * sum(g or 0.0 for _, g in rows) / max(1, len(rows)), 2
        ),
        "answered_share": round(sum(r.score >= threshold for r in results) / max(1, len(rows)), 3),
        "no_answer_recall": round(
            sum(r.score < threshold for r in unanswerable) / max(1, len(unanswerable)), 3
        ),
        "no_answer_precision": round(
            sum(r.impossible for r in abstained) / max(1, len(abstained)), 3
        ),
        "has_answer_f1_at_threshold": round(
            100 * sum(r.f1 for r in answerable if r.score >= threshold) / max(1, len(answerable)),
            2,
        ),
        "has_answer_f1_never_abstain": round(
            100 * sum(r.f1 for r in answerable) / max(1, len(answerable)), 2
        ),
        "keep": keep,
        "official_best_f1_threshold": round(best_threshold(f1_rows)[0], 4),
        "questions": len(results),
        "unanswerable": len(unanswerable),
    }
    return AbstentionFit(abstention, report)
