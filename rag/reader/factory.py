"""The reader a configuration asks for, with its abstention loaded through one path.

``RAG_READER=span`` is the trained span reader when its weights are there, else the
sentence reader (said in a warning); whichever is built carries its own fitted
``Abstention``, from its own fit file, with the settings' overrides on top. So a fit run
always fits, and writes the fit file of, the reader that actually answered.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from rag.ingest import Embedder
from rag.models import Abstention
from rag.reader import sentence
from rag.reader.base import Reader, load_abstention
from rag.reader.span_format import MARGIN_FIT_FILE, VERIFIER_FIT_FILE, WEIGHTS_FILE
from rag.settings import ReaderSettings

log = logging.getLogger("rag.reader")


def _with_overrides(
    fitted: Abstention, threshold: float | None, calibration: list[float] | None
) -> Abstention:
    return dataclasses.replace(
        fitted,
        threshold=fitted.threshold if threshold is None else threshold,
        calibration=fitted.calibration if calibration is None else tuple(calibration),
    )


def build_reader(settings: ReaderSettings, embedder: Embedder) -> Reader:
    """The configured reader; the sentence reader when the span weights are absent."""
    s = settings
    if s.reader == "span" and (Path(s.reader_weights) / WEIGHTS_FILE).is_file():
        from rag.reader import span  # torch is imported only when needed

        kind = span.SpanReader.kind
        if s.span_verifier and not VERIFIER_FIT_FILE.is_file():
            log.warning("no verifier fit at %s: the margin rule decides", VERIFIER_FIT_FILE)
        if s.span_verifier and VERIFIER_FIT_FILE.is_file():
            fit_file = VERIFIER_FIT_FILE
            fitted = load_abstention(fit_file, kind, span.UNFITTED)
            if fitted.decides != "confidence":  # a margin fit in the verifier's file
                raise ValueError(f"{fit_file} holds no verifier fit")
            abstention = _with_overrides(fitted, s.span_verifier_threshold, None)
        else:
            fit_file = MARGIN_FIT_FILE
            fitted = load_abstention(fit_file, kind, span.UNFITTED)
            abstention = _with_overrides(
                fitted, s.span_abstain_margin, s.span_confidence_calibration
            )
        return span.SpanReader(
            Path(s.reader_weights),
            s.span_margin_chars,
            s.span_max_answer_tokens,
            s.span_batch_windows,
            s.span_quantize,
            abstention,
            fit_file,
        )
    if s.reader == "span":
        log.warning("no span reader weights in %s: using the sentence reader", s.reader_weights)
    reader = sentence.SentenceReader
    fitted = load_abstention(reader.fit_file, reader.kind, sentence.UNFITTED)
    return reader(
        embedder,
        s.reader_dense_weight,
        s.reader_max_sentences,
        _with_overrides(fitted, s.abstain_threshold, s.confidence_calibration),
    )
