"""Which candidate span the reader answers with: a fitted choice among one question's spans.

The span reader finds up to ten spans in each window of the top passages. Their margins over
their own window's "no answer" compare badly across windows (on news quizzes every window's
"no answer" runs high), so the margin alone picks the wrong passage's span. The selection
scores every candidate with a conditional logit (a softmax over one question's candidates)
of what is known about it: the verifier's features (margin, no-answer score, gap, mass,
retrieval ranks, question overlap), the rank of the passage it was read from, how many
read passages give the same text, and whether its shape fits the question
(a name for "who", digits for "how many"). Fitted on answerable SQuAD v1.1 train questions
(``bench/span_selection.py``, ``make fit-threshold``); the weights live in
``rag/data/span_selection_fit.json`` beside the rank weight of the simpler rule
(margin - w * log(read rank)) it replaces.

A softmax over one question's candidates is blind to what every candidate of a question
shares, so a shift that moves all of a question's margins (a news domain) cannot move the
choice; question-level features (its type) enter only through the answer's shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.reader.verifier import answer_key

# The verifier's per-candidate features the selection reads (rag.reader.verifier).
_VERIFIER = (
    "score",
    "null",
    "gap",
    "mass",
    "passage_rr",
    "dense",
    "dense_rr",
    "bm25_rr",
    "q_in_sentence",
    "q_in_passage",
    "answer_in_q",
    "answer_words",
    "typed_miss",
)
SELECTION_FEATURES: tuple[str, ...] = (
    *_VERIFIER,
    "read_rank_log",  # log of the rank of the retrieved passage the span was read from
    "agreement_log",  # log of how many read passages give the same text
    "name_shape",  # a "who/which person" question x the answer's capitalised share
    "number_shape",  # a number or date question x the answer holds a digit
    "place_shape",  # a "where" question x the answer's capitalised share
    "capitalised",  # the answer's share of capitalised words
    "digits",  # the answer holds a digit
)


def selection_rows(
    texts: Sequence[str],
    features: Sequence[Mapping[str, float]],
    read_ranks: Sequence[int],
) -> list[dict[str, float]]:
    """``SELECTION_FEATURES`` of each of one question's candidates: their texts, verifier
    features (``span_features``) and read ranks (``read_rank``), in any order."""
    sources: dict[str, set[int]] = {}
    for text, rank in zip(texts, read_ranks, strict=True):
        sources.setdefault(answer_key(text), set()).add(rank)
    rows = []
    for text, f, rank in zip(texts, features, read_ranks, strict=True):
        words = text.split()
        capitalised = sum(w[:1].isupper() for w in words) / max(1, len(words))
        digits = float(any(ch.isdigit() for ch in text))
        row = {name: float(f[name]) for name in _VERIFIER}
        row.update(
            read_rank_log=math.log(max(1, rank)),
            agreement_log=math.log(len(sources[answer_key(text)])),
            name_shape=float(f["q_name"]) * capitalised,
            number_shape=(float(f["q_number"]) + float(f["q_date"])) * digits,
            place_shape=float(f["q_place"]) * capitalised,
            capitalised=capitalised,
            digits=digits,
        )
        rows.append(row)
    return rows


@dataclass(frozen=True, slots=True)
class Selection:
    """A fitted conditional logit: a candidate's score is ``sum(weights * (x - mean) /
    scale)`` over ``features``; the reader answers with the highest."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ValueError("a selection needs one mean, scale and weight per feature")
        if any(not s > 0.0 for s in self.scale):
            raise ValueError("a selection's scales must be > 0")
        if not all(math.isfinite(v) for v in (*self.mean, *self.scale, *self.weights)):
            raise ValueError("a selection's means, scales and weights must be finite")
        unknown = set(self.features) - set(SELECTION_FEATURES)
        if unknown:
            raise ValueError(f"unknown selection features: {sorted(unknown)}")

    def scores(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """Each candidate's selection score (higher: answer with it)."""
        terms = list(zip(self.features, self.mean, self.scale, self.weights, strict=True))
        return [sum(w * (row[f] - m) / s for f, m, s, w in terms) for row in rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Selection:
        return cls(
            tuple(str(v) for v in data["features"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["scale"]),
            tuple(float(v) for v in data["weights"]),
        )


def load_selection(path: Path) -> Selection | None:
    """The fitted selection in ``path`` (the span selection fit file); None when the file,
    or its model, is absent (the rank-weight rule then chooses). A damaged model raises
    ``ValueError`` with the path."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a usable span selection fit ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a usable span selection fit (not a JSON object)")
    if data.get("selection") is None:
        return None
    try:
        return Selection.of(data["selection"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a usable span selection fit ({e})") from e
