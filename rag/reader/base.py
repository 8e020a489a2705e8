"""What every reader is: the ``Reader`` protocol, its abstention, and the composer.

A reader turns retrieved passages into answer spans in document coordinates, and owns its
``Abstention`` (threshold and calibration, fitted by ``make fit-threshold`` into the
reader's fit file and loaded here) and its ``confidence()``; the composer turns its best
span into an ``Answer`` with a citation, or an honest "no answer" with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.models import Abstention, Answer, Candidate, Citation, Document, Passage, Span


class ReaderConfigError(ValueError):
    """A reader's fit files and settings do not go together (told in one line, not a
    traceback: e.g. a prior set without the factorised verifier's fit)."""


class Reader(Protocol):
    """Finds answer spans for a question in retrieved passages of the given documents."""

    # The reader's name in reports and fit files ("sentence", "span").
    kind: str
    # When it abstains and how its confidence is calibrated (see ``Abstention``), and the
    # file ``make fit-threshold`` fits it into (never on the gold sets the tests ask).
    abstention: Abstention
    fit_file: Path

    def warm_up(self) -> None: ...

    def read(
        self, question: str, passages: Sequence[Passage], documents: Mapping[str, Document]
    ) -> list[Span]:
        """Spans in document coordinates, best first, merged on absolute offsets (a reader
        that subclasses ``Reader`` gets this from its ``read_batch``)."""
        return self.read_batch([question], [passages], documents)[0]

    def read_batch(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[Passage]],
        documents: Mapping[str, Document],
    ) -> list[list[Span]]:
        """``read`` for many questions, with one encoder pass over all of them."""
        ...

    def confidence(self, span: Span) -> float:
        """P(correct) of answering with ``span``, by the reader's calibration."""
        ...


def feature_values(span: Span) -> dict[str, float]:
    """The values of an answer's abstention features (see ``AbstentionFeature``)."""
    narrowed = float((span.start, span.end) != (span.context_start, span.context_end))
    return {**span.features, "score": span.score, "narrowed": narrowed}


# ---- fit files ---------------------------------------------------------------------------
def load_abstention(path: Path, kind: str, unfitted: Abstention) -> Abstention:
    """The abstention fitted for reader ``kind`` in ``path``; ``unfitted`` when the file
    is absent (a trimmed install). A file fitted for another reader is refused."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return unfitted
    except (OSError, ValueError) as e:
        raise ReaderConfigError(f"{path}: not a usable fit ({e})") from e
    if data.get("reader") != kind:
        raise ReaderConfigError(
            f"{path} holds the fit of the {data.get('reader')!r} reader, not {kind!r}"
        )
    calibration = data.get("confidence_calibration")
    answerable = data.get("answerable_calibration")
    fit_prior = data.get("fit_prior")
    features = data.get("features", unfitted.features)
    if not isinstance(features, list | tuple) or not all(isinstance(f, str) for f in features):
        raise ReaderConfigError(f"{path}: not a usable fit (features {features!r} are not names)")
    try:
        return Abstention(
            threshold=float(data["abstain_threshold"]),
            calibration=None if calibration is None else tuple(float(v) for v in calibration),
            features=tuple(features),
            objective=data.get("objective", unfitted.objective),
            decides=data.get("decides", unfitted.decides),
            answerable=None if answerable is None else tuple(float(v) for v in answerable),
            fit_prior=None if fit_prior is None else float(fit_prior),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ReaderConfigError(f"{path}: not a usable fit ({e})") from e


def save_abstention(path: Path, kind: str, abstention: Abstention, **report: Any) -> None:
    """Write a reader's fitted abstention (and what the fit measured) to its fit file."""
    data = {
        "reader": kind,
        "abstain_threshold": abstention.threshold,
        "confidence_calibration": None
        if abstention.calibration is None
        else list(abstention.calibration),
        "features": list(abstention.features),
        "objective": abstention.objective,
        "decides": abstention.decides,
        "answerable_calibration": None
        if abstention.answerable is None
        else list(abstention.answerable),
        "fit_prior": abstention.fit_prior,
        **report,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# ---- the composer ------------------------------------------------------------------------
# What an abstention decided on, in the no-answer reason.
_DECIDES = {"score": "score", "confidence": "confidence", "answerable": "P(answerable)"}


def compose_answer(
    question: str,
    spans: Sequence[Span],
    documents: Mapping[str, Document],
    passages: Sequence[Passage],
    reader: Reader,
    n: int = 1,
    abstention: Abstention | None = None,
) -> Answer:
    """The best span as an Answer with its citation, or an abstention with the reason.

    ``answers`` lists up to ``n`` distinct answers, best first: spans that overlap no better
    one (so "Marat Khusnullin" is not offered again inside "Deputy Prime Minister Marat
    Khusnullin") and that the reader would answer with on their own (its threshold).
    ``abstention``: decide and give confidence with it instead of the reader's own (the
    factorised verifier at this question's answerable share, ``rag.reader.OnlinePrior``)."""
    if not passages:
        return no_answer(question, "no passage of the index matches the question", passages)
    if not spans:
        return no_answer(question, "the retrieved passages hold no readable sentence", passages)
    best = spans[0]
    own = abstention is None
    abstention = reader.abstention if abstention is None else abstention
    if abstention.abstains(feature_values(best)):
        value = abstention.decision_value(feature_values(best))
        share = "" if abstention.prior is None else f" (answerable share {abstention.prior:.3f})"
        return no_answer(
            question,
            f"best candidate's {_DECIDES[abstention.decides]} {value:.3f} is below the abstention "
            f"threshold {abstention.threshold:.3f}{share}",
            passages,
            score=best.score,
            features=best.features,
            withheld=best.text,
        )
    chosen: list[Span] = []
    for span in spans:
        if len(chosen) == n:
            break
        if abstention.abstains(feature_values(span)):
            continue
        if not any(_overlaps(span, c) for c in chosen):
            chosen.append(span)
    candidates = [
        _candidate(
            span, documents[span.doc_id], _confidence(span, reader, None if own else abstention)
        )
        for span in chosen
    ]
    top = candidates[0]
    return Answer(
        question=question,
        text=top.text,
        doc_id=top.doc_id,
        start=top.start,
        end=top.end,
        score=top.score,
        confidence=top.confidence,
        citations=top.citations,
        passages=list(passages),
        answers=candidates,
        features=best.features,
    )


def _overlaps(a: Span, b: Span) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end


def _confidence(span: Span, reader: Reader, abstention: Abstention | None) -> float:
    """P(correct) of ``span``: by ``abstention`` when given and calibrated, else the
    reader's own."""
    p = None if abstention is None else abstention.probability(feature_values(span))
    return reader.confidence(span) if p is None else p


def _candidate(span: Span, doc: Document, confidence: float) -> Candidate:
    """A span as an answer, cited by its context (whole sentences)."""
    quote = doc.text[span.context_start : span.context_end]
    citation = Citation(
        span.doc_id,
        doc.title,
        span.context_start,
        span.context_end,
        quote,
        doc.pages_of(span.context_start, span.context_end),
    )
    return Candidate(
        span.text,
        span.doc_id,
        span.start,
        span.end,
        span.score,
        confidence,
        [citation],
    )


def no_answer(
    question: str,
    reason: str,
    passages: Sequence[Passage] = (),
    score: float = 0.0,
    features: Mapping[str, float] | None = None,
    withheld: str | None = None,
) -> Answer:
    """An honest abstention (``withheld``: the best span it held back, if any)."""
    return Answer(
        question=question,
        text="",
        doc_id=None,
        start=None,
        end=None,
        score=score,
        confidence=0.0,
        citations=[],
        no_answer_reason=reason,
        passages=list(passages),
        features=dict(features or {}),
        withheld=withheld,
    )
