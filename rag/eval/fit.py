"""Fitting a reader's abstention: its threshold and confidence calibration, from an
evaluation run with abstention off (``rag eval --fit-threshold``, ``make fit-threshold``).

What is fitted follows the reader's own ``Abstention``: its ``objective`` decides what the
threshold maximises and its ``features`` what the calibration weighs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.eval.metrics import QuestionResult
from rag.models import Abstention
from rag.reader import SELECTION_FEATURES, VERIFIER_FEATURES, OnlinePrior, Selection
from rag.reranking import RERANK_FEATURES, RerankModel


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
    features: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    steps: int = 500,
    ridge: float = 1e-3,
) -> list[float]:
    """Weights (one per feature, then a bias) of a logistic regression, by Newton's method
    with an L2 penalty ``ridge`` on the weights (not the bias), so that separable data
    stays finite and collinear features share their weight."""
    x = np.hstack([np.asarray(features, dtype=float), np.ones((len(features), 1))])
    y = np.asarray(labels, dtype=float)
    w = np.zeros(x.shape[1])
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 1e-9
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        grad = x.T @ (p - y) + penalty @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return [round(float(v), 6) for v in w]


# Penalties the verifier's fit chooses from, on standardised features, by cross-validated
# log-loss over article folds.
RIDGES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
FOLDS = 5


def _article(r: QuestionResult) -> str:
    """A result's article (SQuAD document ids are ``<title>-<article>-<paragraph>``)."""
    return (r.gold_doc or r.id).rsplit("-", 2)[0]


def fit_standardised(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], ridges: Sequence[float] = RIDGES
) -> tuple[list[float], float, dict[str, float]]:
    """Logistic weights on the raw features (one per column, then a bias), fitted on
    standardised ones with the penalty among ``ridges`` that gives the lowest log-loss over
    ``FOLDS`` group-disjoint folds (a question's article never straddles a split)."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    names = sorted(set(groups))
    fold = {g: i % FOLDS for i, g in enumerate(names)}
    folds = np.array([fold[g] for g in groups])
    losses: dict[str, float] = {}
    for ridge in ridges:
        loss = 0.0
        for k in range(min(FOLDS, len(names))):
            train, test = folds != k, folds == k
            if not test.any() or len(set(y[train])) < 2:
                continue
            w = np.array(fit_logistic(z[train], y[train].astype(bool), ridge=ridge))
            p = 1 / (1 + np.exp(-np.clip(z[test] @ w[:-1] + w[-1], -50, 50)))
            p = np.clip(p, 1e-9, 1 - 1e-9)
            loss -= float(np.sum(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p)))
        losses[str(ridge)] = round(loss / len(y), 5)
    best = min(ridges, key=lambda r: losses[str(r)])
    w = np.array(fit_logistic(z, y.astype(bool), ridge=best))
    raw = w[:-1] / std
    bias = w[-1] - float(np.sum(w[:-1] * mean / std))
    return [round(float(v), 6) for v in (*raw, bias)], best, losses


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
    abstention = Abstention(round(threshold, 4), tuple(weights), reader.features, reader.objective)
    report = _report(results, [r.score for r in results], threshold, value, rows, keep)
    report["official_best_f1_threshold"] = round(best_threshold(f1_rows)[0], 4)
    return AbstentionFit(abstention, report)


def _feature_matrix(results: Sequence[QuestionResult], features: Sequence[str]) -> np.ndarray:
    """The verifier features of each result's best span, one row per result."""
    missing = sorted({f for r in results for f in features if f not in r.features})
    if missing:
        raise ValueError(f"results lack the verifier features {missing}: not a span reader run?")
    return np.array([[float(r.features[f]) for f in features] for r in results])


def result_values(r: QuestionResult) -> dict[str, float]:
    """The abstention feature values of a result's best span (what the composer weighs)."""
    return {**r.features, "score": r.score, "narrowed": float(r.narrowed)}


def fit_verifier(
    results: Sequence[QuestionResult],
    features: Sequence[str] = VERIFIER_FEATURES,
    keep: float = 0.0,
) -> AbstentionFit:
    """The span reader's verifier from a run with abstention off: a logistic model of
    P(correct) over the best span's ``features`` (``QuestionResult.features``; standardised,
    with the penalty chosen by article-fold cross-validation, see ``fit_standardised``),
    and the threshold on that probability that maximises the official SQuAD v2.0 F1 among those
    that keep at least ``keep`` of the answerable questions' F1."""
    x = _feature_matrix(results, features)
    y = np.array([r.correct for r in results], dtype=float)
    weights, ridge, losses = fit_standardised(x, y, [_article(r) for r in results])
    probe = Abstention(0.0, tuple(weights), tuple(features), "f1", "confidence")
    p = [probe.probability(dict(zip(features, row, strict=True))) or 0.0 for row in x.tolist()]
    rows = [(pi, None if r.impossible else r.f1) for pi, r in zip(p, results, strict=True)]
    threshold, value = best_threshold(rows, keep)
    abstention = dataclasses.replace(probe, threshold=round(threshold, 4))
    report = _report(results, p, threshold, value, rows, keep)
    report["ridge"] = ridge
    report["cv_log_loss_by_ridge"] = losses
    return AbstentionFit(abstention, report)


def fit_factorised_verifier(
    results: Sequence[QuestionResult],
    features: Sequence[str] = VERIFIER_FEATURES,
    keep: float = 0.0,
    correct_results: Sequence[QuestionResult] | None = None,
) -> AbstentionFit:
    """The factorised verifier (see ``Abstention``) from a run with abstention off:
    P(answerable) fitted on every question (was it answerable?), P(correct | answerable) on
    the answerable ones (is the best span right?), both as ``fit_standardised`` fits them;
    the threshold is on P(answerable), chosen as ``fit_verifier`` chooses its own, and the
    fit prior is the share of answerable questions in ``results``.

    ``correct_results``: replaces ``results`` for P(correct | answerable) alone (its
    answerable questions are the fit's; include the decision's own sets in it when they
    belong there), with the same ``features``; e.g. questions the reader never trained on.
    None: ``results``. The decision (P(answerable), its threshold, the fit prior) is
    ``results``' either way."""
    x = _feature_matrix(results, features)
    answerable = np.array([not r.impossible for r in results], dtype=float)
    if answerable.min() == answerable.max():
        raise ValueError("the factorised verifier needs answerable and unanswerable questions")
    groups = [_article(r) for r in results]
    w_ans, ridge_ans, losses_ans = fit_standardised(x, answerable, groups)
    pool = results if correct_results is None else correct_results
    graded = [r for r in pool if not r.impossible]
    if not graded:
        raise ValueError("P(correct | answerable) needs answerable questions")
    correct = np.array([r.correct for r in graded], dtype=float)
    w_cor, ridge_cor, losses_cor = fit_standardised(
        _feature_matrix(graded, features), correct, [_article(r) for r in graded]
    )
    fit_prior = round(float(answerable.mean()), 6)
    probe = Abstention(
        0.0, tuple(w_cor), tuple(features), "f1", "answerable", tuple(w_ans), fit_prior
    )
    values = [dict(zip(features, row, strict=True)) for row in x.tolist()]
    p = [probe.decision_value(v) for v in values]
    rows = [(pi, None if r.impossible else r.f1) for pi, r in zip(p, results, strict=True)]
    threshold, value = best_threshold(rows, keep)
    abstention = dataclasses.replace(probe, threshold=round(threshold, 4))
    report = _report(results, p, threshold, value, rows, keep)
    report["ridge"] = {"answerable": ridge_ans, "correct_if_answerable": ridge_cor}
    report["cv_log_loss_by_ridge"] = {
        "answerable": losses_ans,
        "correct_if_answerable": losses_cor,
    }
    report["correct_if_answerable_questions"] = len(graded)
    return AbstentionFit(abstention, report)


def apply_abstention(
    results: Sequence[QuestionResult], abstention: Abstention
) -> list[QuestionResult]:
    """The results of a run with abstention off as they are under ``abstention``: what the
    composer decides from the same feature values, without reading again (answers withheld
    score as SQuAD v2.0 scores an empty prediction; the confidence is P(correct), or
    sigmoid(score) when uncalibrated)."""
    out = []
    for r in results:
        if not r.answered:  # no span at all: nothing to withhold
            out.append(r)
            continue
        values = result_values(r)
        if abstention.abstains(values):
            out.append(
                dataclasses.replace(
                    r,
                    answered=False,
                    prediction="",
                    confidence=0.0,
                    em=float(r.impossible),
                    f1=float(r.impossible),
                    citation_holds_answer=False,
                    withheld_f1=r.f1,
                )
            )
            continue
        p = abstention.probability(values)
        confidence = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, r.score)))) if p is None else p
        out.append(dataclasses.replace(r, confidence=confidence))
    return out


def apply_online_prior(
    results: Sequence[QuestionResult], abstention: Abstention, window: int, pseudo_count: float
) -> list[QuestionResult]:
    """``apply_abstention`` with the factorised verifier at the answerable share an
    ``OnlinePrior`` estimates as the questions come, in ``results``' order (what a pipeline
    with ``RAG_SPAN_ANSWERABLE_PRIOR=online`` decides, asked them one after another)."""
    if abstention.fit_prior is None:
        raise ValueError("an online prior moves the factorised verifier's P(answerable)")
    online = OnlinePrior(abstention.fit_prior, window, pseudo_count)
    out = []
    for r in results:
        if not r.answered:
            out.append(r)
            continue
        out += apply_abstention([r], online.decide_with(abstention, result_values(r)))
    return out


# Irrelevant candidates paired with each relevant one in the reranker's fit: the best-ranked
# ones, where the fused order goes wrong.
NEGATIVES_PER_POSITIVE = 10


def fit_reranker(
    features: Sequence[Sequence[Mapping[str, float]]],
    relevant: Sequence[Sequence[bool]],
    names: Sequence[str] = RERANK_FEATURES,
) -> RerankModel:
    """A pairwise logistic reranker (RankNet with a linear scorer): for each question, the
    feature differences of every (relevant, irrelevant) pair of its candidates, both ways,
    the first ``NEGATIVES_PER_POSITIVE`` irrelevant ones per relevant one. ``features[q]``
    are question q's candidates in fused order, ``relevant[q]`` whether each holds the
    answer; questions with no relevant or no irrelevant candidate teach nothing."""
    rows: list[list[float]] = []
    labels: list[bool] = []
    for feats, rel in zip(features, relevant, strict=True):
        vectors = [[f[n] for n in names] for f in feats]
        pos = [v for v, r in zip(vectors, rel, strict=True) if r]
        neg = [v for v, r in zip(vectors, rel, strict=True) if not r][:NEGATIVES_PER_POSITIVE]
        for vp in pos:
            for vn in neg:
                diff = [a - b for a, b in zip(vp, vn, strict=True)]
                rows += [diff, [-d for d in diff]]
                labels += [True, False]
    if not rows:
        raise ValueError("no question has both a relevant and an irrelevant candidate")
    weights = fit_logistic(rows, labels)
    return RerankModel((*weights[:-1], 0.0), tuple(names))  # pairwise: no bias


def _conditional_logit(
    z: Sequence[np.ndarray], t: Sequence[np.ndarray], ridge: float, steps: int = 100
) -> np.ndarray:
    """Weights of a conditional logit (a softmax over each question's candidates ``z[q]``)
    minimising the cross-entropy to the target ``t[q]`` (a distribution over them) plus an
    L2 penalty ``ridge``: Newton's method, each step halved until the objective falls."""
    d = z[0].shape[1]

    def objective(w: np.ndarray) -> float:
        value = 0.5 * ridge * float(w @ w)
        for zq, tq in zip(z, t, strict=True):
            s = zq @ w
            value -= float(tq @ (s - s.max())) - math.log(float(np.exp(s - s.max()).sum()))
        return value

    w = np.zeros(d)
    current = objective(w)
    for _ in range(steps):
        grad = ridge * w
        hess = ridge * np.eye(d)
        for zq, tq in zip(z, t, strict=True):
            s = zq @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad -= zq.T @ (tq - p)
            zp = zq.T @ p
            hess += (zq * p[:, None]).T @ zq - np.outer(zp, zp)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            value = objective(w - step)
            if value <= current:
                break
            step /= 2
        else:
            break
        w, current = w - step, value
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_selection(
    rows: Sequence[Sequence[Mapping[str, float]]],
    f1s: Sequence[Sequence[float]],
    names: Sequence[str] = SELECTION_FEATURES,
    ridges: Sequence[float] = RIDGES,
    groups: Sequence[str] | None = None,
) -> tuple[Selection, float, dict[str, float]]:
    """The span selection (a conditional logit over each question's candidates,
    ``selection_rows``), fitted so the softmax puts its mass where the F1 is: question q's
    target is its candidates' F1 against the gold answers, normalised; questions with no
    candidate of F1 > 0 teach nothing. Features are standardised over all candidates; the
    penalty among ``ridges`` is the one of lowest cross-entropy over ``FOLDS`` folds of the
    questions (of ``groups``, e.g. each question's article, when given: a group never
    straddles a split). Returns the selection, that penalty and each penalty's held-out
    loss."""
    z: list[np.ndarray] = []
    t: list[np.ndarray] = []
    kept: list[str] = []
    for i, (cands, f) in enumerate(zip(rows, f1s, strict=True)):
        if len(cands) != len(f):
            raise ValueError(f"question {i}: {len(cands)} candidates but {len(f)} F1 values")
        target = np.asarray(f, dtype=float)
        if len(cands) and target.sum() > 0:
            z.append(np.array([[c[n] for n in names] for c in cands], dtype=float))
            t.append(target / target.sum())
            kept.append(str(i) if groups is None else groups[i])
    names_of = sorted(set(kept))
    if len(names_of) < FOLDS:
        raise ValueError(
            f"span selection needs at least {FOLDS} questions (or groups) with a right span"
        )
    fold_of = {g: k % FOLDS for k, g in enumerate(names_of)}
    folds = [fold_of[g] for g in kept]
    stacked = np.vstack(z)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0)
    scale[scale == 0] = 1.0
    z = [(zq - mean) / scale for zq in z]
    losses: dict[str, float] = {}
    for ridge in ridges:
        loss = 0.0
        for k in range(FOLDS):
            train = [i for i in range(len(z)) if folds[i] != k]
            w = _conditional_logit([z[i] for i in train], [t[i] for i in train], ridge)
            for i in (i for i in range(len(z)) if folds[i] == k):
                s = z[i] @ w
                log_p = s - s.max() - math.log(float(np.exp(s - s.max()).sum()))
                loss -= float(t[i] @ log_p)
        losses[str(ridge)] = round(loss / len(z), 5)
    best = min(ridges, key=lambda r: losses[str(r)])
    w = _conditional_logit(z, t, best)
    selection = Selection(
        tuple(names),
        tuple(round(float(v), 6) for v in mean),
        tuple(float(f"{v:.6g}") for v in scale),
        tuple(round(float(v), 6) for v in w),
    )
    return selection, best, losses


def _report(
    results: Sequence[QuestionResult],
    values: Sequence[float],
    threshold: float,
    value: float,
    rows: Sequence[tuple[float, float | None]],
    keep: float,
) -> dict[str, Any]:
    """What a fitted decision (abstain when ``values[i] < threshold``) does on its data."""
    unanswerable = [v for v, r in zip(values, results, strict=True) if r.impossible]
    answerable = [(v, r) for v, r in zip(values, results, strict=True) if not r.impossible]
    abstained = [r for v, r in zip(values, results, strict=True) if v < threshold]
    return {
        "decision_accuracy_at_threshold": round(100 * value, 2),
        "decision_accuracy_never_abstain": round(
            100 * sum(g or 0.0 for _, g in rows) / max(1, len(rows)), 2
        ),
        "answered_share": round(sum(v >= threshold for v in values) / max(1, len(rows)), 3),
        "no_answer_recall": round(
            sum(v < threshold for v in unanswerable) / max(1, len(unanswerable)), 3
        ),
        "no_answer_precision": round(
            sum(r.impossible for r in abstained) / max(1, len(abstained)), 3
        ),
        "has_answer_f1_at_threshold": round(
            100 * sum(r.f1 for v, r in answerable if v >= threshold) / max(1, len(answerable)),
            2,
        ),
        "has_answer_f1_never_abstain": round(
            100 * sum(r.f1 for _, r in answerable) / max(1, len(answerable)), 2
        ),
        "keep": keep,
        "questions": len(results),
        "unanswerable": len(unanswerable),
    }
