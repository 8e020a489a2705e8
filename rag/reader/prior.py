"""How often the questions a deployment is asked have an answer, estimated as they come.

The factorised verifier (``Abstention``) splits P(correct) into P(answerable) x P(correct |
answerable); only the first depends on how often questions have an answer, and it moves to
another share by Bayes' rule. That share differs by deployment: every question of a reading
test is answerable, a third of SQuAD v2.0's are not, and news quizzes ask in a form the
verifier's fit saw less. ``OnlinePrior`` estimates it from the P(answerable) values of the
last ``window`` questions asked (the EM of Saerens, Latinne & Decaestecker 2002, which needs
no labels), shrunk toward the fit's own share by ``pseudo_count`` questions, so a few
questions move it little; the pipeline decides each question at the estimate that includes it
(``RAG_SPAN_ANSWERABLE_PRIOR=online``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from rag.models import Abstention

# EM iterations at most (it stops once the share moves less than EM_TOLERANCE).
EM_STEPS = 200
EM_TOLERANCE = 1e-7
# EM keeps shares inside (SHARE_FLOOR, 1 - SHARE_FLOOR), so both odds stay finite; the
# shrunk share may reach 1.0 (never abstain for lack of an answer), which Bayes' rule allows.
SHARE_FLOOR = 1e-6
# Posteriors are clipped this far inside (0, 1): a 0 or 1 would pin EM's re-weighting.
POSTERIOR_CLIP = 1e-9


def estimate_prior(
    p_answerable: Sequence[float],
    fit_prior: float,
    steps: int = EM_STEPS,
    start: float | None = None,
) -> float:
    """The share of answerable questions in a set, from its unlabelled P(answerable) values
    fitted at ``fit_prior``: the EM of Saerens, Latinne & Decaestecker (2002), which
    re-weights each posterior by the ratio of the new to the fit prior until the prior is
    the mean posterior. ``start``: where the iteration begins (default ``fit_prior``; the last
    estimate when a window moved by one question, which converges in a few steps)."""
    ps = np.clip(np.asarray(p_answerable, dtype=float), POSTERIOR_CLIP, 1 - POSTERIOR_CLIP)
    if ps.size == 0:
        return fit_prior
    prior = fit_prior if start is None else min(max(start, SHARE_FLOOR), 1 - SHARE_FLOOR)
    for _ in range(steps):
        a = prior / fit_prior * ps
        b = (1 - prior) / (1 - fit_prior) * (1 - ps)
        new = float(np.mean(a / (a + b)))
        if abs(new - prior) < EM_TOLERANCE:
            return new
        prior = min(max(new, SHARE_FLOOR), 1 - SHARE_FLOOR)
    return prior


class OnlinePrior:
    """The answerable share of the questions a pipeline is asked, over its last ``window``
    (see the module docstring); thread-safe, in memory (a restart begins at the fit's share
    again)."""

    def __init__(self, fit_prior: float, window: int, pseudo_count: float) -> None:
        if not 0.0 < fit_prior < 1.0:
            raise ValueError(f"fit_prior {fit_prior} is not inside (0, 1)")
        if window < 1 or pseudo_count < 0:
            raise ValueError(
                f"window must be >= 1 and pseudo_count >= 0, got {window}, {pseudo_count}"
            )
        self.fit_prior = fit_prior
        self.pseudo_count = pseudo_count
        self._seen: deque[float] = deque(maxlen=window)
        self._em = fit_prior
        self._lock = threading.Lock()

    def observe(self, p_answerable: float) -> float:
        """Add one question's P(answerable) (at the fit's share) and return the share its
        decision is made at."""
        if not 0.0 <= p_answerable <= 1.0:  # NaN included: it would poison the estimate
            raise ValueError(f"P(answerable) must be in [0, 1], got {p_answerable}")
        with self._lock:
            self._seen.append(p_answerable)
            self._em = estimate_prior(list(self._seen), self.fit_prior, start=self._em)
            return self._share()

    def decide_with(self, verifier: Abstention, values: Mapping[str, float]) -> Abstention:
        """``verifier`` (the factorised one) at the share one more question moves this to:
        that question's P(answerable) at the fit's share (its best span's feature
        ``values``) is observed first."""
        at_fit = dataclasses.replace(verifier, prior=None)
        p = at_fit.answerable_probability(values)
        if p is None:
            raise ValueError("an online share moves the factorised verifier's P(answerable)")
        return dataclasses.replace(at_fit, prior=self.observe(p))

    def share(self) -> float:
        """The current estimate (the fit's share before any question)."""
        with self._lock:
            return self._share()

    def _share(self) -> float:
        n = len(self._seen)
        if n + self.pseudo_count == 0:
            return self.fit_prior
        shrunk = (n * self._em + self.pseudo_count * self.fit_prior) / (n + self.pseudo_count)
        return min(max(shrunk, SHARE_FLOOR), 1.0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
