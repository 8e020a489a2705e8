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
from rag.reader.base import Reader, ReaderConfigError, load_abstention
from rag.reader.selection import Selection, load_selection
from rag.reader.span_format import (
    MARGIN_FIT_FILE,
    PROBE_FILE,
    SELECTION_FIT_FILE,
    WEIGHTS_FILE,
    load_rank_weight,
    verifier_fit_file,
)
from rag.reader.verifier import offered_features
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


def _selection(mode: str, override: float | None) -> tuple[Selection | None, float]:
    """The span selection and the rank weight of the rule: the fitted selection when asked
    for and fitted (the rule then unused: weight 0), else the rank-weight rule with
    ``override`` or the fitted weight. A damaged fit file is one line, not a traceback."""
    try:
        selection = load_selection(SELECTION_FIT_FILE) if mode == "fitted" else None
        if selection is not None:
            if override is not None:
                log.warning("RAG_SPAN_RANK_WEIGHT is unused: RAG_SPAN_SELECTION=fitted chooses")
            return selection, 0.0
        if mode == "fitted":
            log.warning(
                "no span selection fit in %s: the rank-weight rule chooses", SELECTION_FIT_FILE
            )
        weight = load_rank_weight(SELECTION_FIT_FILE) if override is None else override
    except ValueError as e:
        raise ReaderConfigError(str(e)) from e
    return None, weight


def build_reader(settings: ReaderSettings, embedder: Embedder) -> Reader:
    """The configured reader; the sentence reader when the span weights are absent."""
    s = settings
    if s.reader == "span" and (Path(s.reader_weights) / WEIGHTS_FILE).is_file():
        from rag.reader import span  # torch is imported only when needed

        kind = span.SpanReader.kind
        # With a prior, the factorised verifier (its P(answerable) moves with the prior). A
        # share set by hand must be usable; "online" (the default) is where the factorised
        # fit is there (the pipeline then moves it per question), else the one-model fit.
        prior = None if s.span_answerable_prior == "off" else s.span_answerable_prior
        fixed = isinstance(prior, float)
        # The answer checker feeds the verifier only: without it, nothing reads its margin.
        checker = Path(s.span_checker) if s.span_checker is not None and s.span_verifier else None
        if checker is not None and not (checker / WEIGHTS_FILE).is_file():
            raise ReaderConfigError(f"RAG_SPAN_CHECKER: no {WEIGHTS_FILE} in {checker}")
        # The answerability probe, too, feeds the verifier only; it is part of the weights.
        probe = s.span_probe and s.span_verifier
        if probe and not (Path(s.reader_weights) / PROBE_FILE).is_file():
            raise ReaderConfigError(
                f"RAG_SPAN_PROBE: no {PROBE_FILE} in {s.reader_weights} (bench/fit_probe.py)"
            )
        # Without its fit (the first fit run), the checker still reads and the margin rule
        # decides, as for the verifier without the checker.
        verifier_file = verifier_fit_file(checker is not None, prior is not None, probe)
        if s.span_verifier and prior == "online" and not verifier_file.is_file():
            log.warning(
                "no factorised verifier fit at %s: the one-model verifier's, if fitted",
                verifier_file,
            )
            prior = None
            verifier_file = verifier_fit_file(checker is not None, False, probe)
        if s.span_verifier and not verifier_file.is_file():
            if fixed:
                raise ReaderConfigError(
                    f"RAG_SPAN_ANSWERABLE_PRIOR needs the factorised verifier's fit at "
                    f"{verifier_file} (make fit-threshold)"
                )
            log.warning("no verifier fit at %s: the margin rule decides", verifier_file)
        if s.span_verifier and verifier_file.is_file():
            fit_file = verifier_file
            fitted = load_abstention(fit_file, kind, span.UNFITTED)
            # A fit can only weigh what the reader offers (a fit file put in another's place).
            offered = {*offered_features(probe, checker is not None), "narrowed"}
            lacking = set(fitted.features) - offered
            if lacking:
                raise ReaderConfigError(
                    f"{fit_file} weighs {sorted(lacking)}, which this reader does not offer"
                )
            if fitted.decides == "score":  # a margin fit in the verifier's file
                raise ReaderConfigError(f"{fit_file} holds no verifier fit")
            if prior is not None and fitted.answerable is None:
                raise ReaderConfigError(f"{fit_file} holds no factorised verifier fit")
            abstention = _with_overrides(fitted, s.span_verifier_threshold, None)
            if isinstance(prior, float):  # "online": the pipeline moves it per question
                abstention = dataclasses.replace(abstention, prior=prior)
        else:
            if fixed:
                raise ReaderConfigError(
                    "RAG_SPAN_ANSWERABLE_PRIOR moves the verifier's P(answerable): it needs "
                    "RAG_SPAN_VERIFIER=true"
                )
            fit_file = MARGIN_FIT_FILE
            fitted = load_abstention(fit_file, kind, span.UNFITTED)
            abstention = _with_overrides(
                fitted, s.span_abstain_margin, s.span_confidence_calibration
            )
        selection, weight = _selection(s.span_selection, s.span_rank_weight)
        return span.SpanReader(
            Path(s.reader_weights),
            s.span_margin_chars,
            s.span_max_answer_tokens,
            s.span_batch_windows,
            s.span_quantize,
            abstention,
            fit_file,
            weight,
            s.span_dtype,
            s.span_pad_multiple,
            s.span_batch_multiple,
            checker,
            s.span_checker_candidates,
            selection,
            s.span_skip_markup,
            probe,
        )
    if s.reader == "span":
        log.warning("no span reader weights in %s: using the sentence reader", s.reader_weights)
        if isinstance(s.span_answerable_prior, float):
            log.warning(
                "the sentence reader has no P(answerable): RAG_SPAN_ANSWERABLE_PRIOR unused"
            )
    reader = sentence.SentenceReader
    fitted = load_abstention(reader.fit_file, reader.kind, sentence.UNFITTED)
    return reader(
        embedder,
        s.reader_dense_weight,
        s.reader_max_sentences,
        _with_overrides(fitted, s.abstain_threshold, s.confidence_calibration),
    )
