"""Readers: retrieved passages in, answer spans in document coordinates out.

``base`` (the ``Reader`` protocol, its abstention and fit files, the composer),
``sentences`` (sentence splitting, typed short answers), ``sentence`` (the sentence
reader), ``span_format`` / ``span_model`` / ``span`` (the trained span reader: its files,
its torch model, the reader), ``verifier`` (the features its abstention weighs),
``selection`` (which of its candidate spans it answers with), ``probe`` (a linear read
of its states for whether the question is answered), ``prior`` (how often the
questions asked have an answer, estimated as they come),
``training`` (``rag train-reader``), ``factory`` (the reader
a configuration asks for). torch is imported only by the span modules, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.faces import lazy_face

if TYPE_CHECKING:
    from rag.reader.augment import (
        CONTEXT_MAX_WORDS as CONTEXT_MAX_WORDS,
        CONTEXT_MIN_WORDS as CONTEXT_MIN_WORDS,
        Rewrite as Rewrite,
        context_sentence as context_sentence,
        context_sentences as context_sentences,
        unanswerable_rewrites as unanswerable_rewrites,
    )
    from rag.reader.base import (
        Reader as Reader,
        ReaderConfigError as ReaderConfigError,
        compose_answer as compose_answer,
        feature_values as feature_values,
        load_abstention as load_abstention,
        no_answer as no_answer,
        save_abstention as save_abstention,
    )
    from rag.reader.factory import (
        build_reader as build_reader,
    )
    from rag.reader.prior import (
        OnlinePrior as OnlinePrior,
        estimate_prior as estimate_prior,
    )
    from rag.reader.probe import (
        AnswerabilityProbe as AnswerabilityProbe,
        load_probe as load_probe,
        probe_from_weights as probe_from_weights,
        span_states as span_states,
        weights_digest as weights_digest,
    )
    from rag.reader.selection import (
        SELECTION_FEATURES as SELECTION_FEATURES,
        Selection as Selection,
        load_selection as load_selection,
        selection_rows as selection_rows,
    )
    from rag.reader.sentence import (
        SentenceReader as SentenceReader,
    )
    from rag.reader.sentences import (
        Sentence as Sentence,
        content_terms as content_terms,
        narrow as narrow,
        question_type as question_type,
        sentence_bounds as sentence_bounds,
        split_sentences as split_sentences,
    )
    from rag.reader.span import (
        SpanReader as SpanReader,
        read_rank as read_rank,
    )
    from rag.reader.span_format import (
        CHECKED_FIT_FILE as CHECKED_FIT_FILE,
        CHECKED_PRIOR_FIT_FILE as CHECKED_PRIOR_FIT_FILE,
        CONFIG_FILE as CONFIG_FILE,
        MARGIN_FIT_FILE as MARGIN_FIT_FILE,
        PRIOR_FIT_FILE as PRIOR_FIT_FILE,
        PROBE_FILE as PROBE_FILE,
        SELECTION_FIT_FILE as SELECTION_FIT_FILE,
        VERIFIER_FIT_FILE as VERIFIER_FIT_FILE,
        WEIGHTS_FILE as WEIGHTS_FILE,
        WindowConfig as WindowConfig,
        load_rank_weight as load_rank_weight,
        rank_weight as rank_weight,
        save_rank_weight as save_rank_weight,
        verifier_fit_file as verifier_fit_file,
    )
    from rag.reader.span_model import (
        collate as collate,
        decode as decode,
        encode_windows as encode_windows,
        encoder_dtype as encoder_dtype,
        load_reader as load_reader,
        load_tokenizer as load_tokenizer,
        quantize_encoder as quantize_encoder,
        save_reader as save_reader,
    )
    from rag.reader.training import (
        ReaderTrainer as ReaderTrainer,
        TrainConfig as TrainConfig,
        TrainExample as TrainExample,
        build_examples as build_examples,
        evaluate_gold_paragraph as evaluate_gold_paragraph,
        model_card as model_card,
    )
    from rag.reader.verifier import (
        CHECKED_FEATURES as CHECKED_FEATURES,
        CHECKER_FEATURES as CHECKER_FEATURES,
        FORM_FEATURES as FORM_FEATURES,
        PROBE_FEATURES as PROBE_FEATURES,
        QUESTION_FEATURES as QUESTION_FEATURES,
        READER_FEATURES as READER_FEATURES,
        RETRIEVAL_FEATURES as RETRIEVAL_FEATURES,
        VERIFIER_FEATURES as VERIFIER_FEATURES,
        offered_features as offered_features,
        span_features as span_features,
    )

_NAMES = {
    **dict.fromkeys(["OnlinePrior", "estimate_prior"], "rag.reader.prior"),
    **dict.fromkeys(
        [
            "AnswerabilityProbe",
            "load_probe",
            "probe_from_weights",
            "span_states",
            "weights_digest",
        ],
        "rag.reader.probe",
    ),
    **dict.fromkeys(
        [
            "Reader",
            "ReaderConfigError",
            "compose_answer",
            "feature_values",
            "load_abstention",
            "no_answer",
            "save_abstention",
        ],
        "rag.reader.base",
    ),
    "build_reader": "rag.reader.factory",
    **dict.fromkeys(
        [
            "CONTEXT_MAX_WORDS",
            "CONTEXT_MIN_WORDS",
            "Rewrite",
            "context_sentence",
            "context_sentences",
            "unanswerable_rewrites",
        ],
        "rag.reader.augment",
    ),
    "SentenceReader": "rag.reader.sentence",
    **dict.fromkeys(
        [
            "Sentence",
            "content_terms",
            "narrow",
            "question_type",
            "sentence_bounds",
            "split_sentences",
        ],
        "rag.reader.sentences",
    ),
    **dict.fromkeys(
        ["SELECTION_FEATURES", "Selection", "load_selection", "selection_rows"],
        "rag.reader.selection",
    ),
    **dict.fromkeys(["SpanReader", "read_rank"], "rag.reader.span"),
    **dict.fromkeys(
        [
            "collate",
            "decode",
            "encode_windows",
            "encoder_dtype",
            "load_reader",
            "load_tokenizer",
            "quantize_encoder",
            "save_reader",
        ],
        "rag.reader.span_model",
    ),
    **dict.fromkeys(
        [
            "CHECKED_FEATURES",
            "CHECKER_FEATURES",
            "FORM_FEATURES",
            "PROBE_FEATURES",
            "QUESTION_FEATURES",
            "READER_FEATURES",
            "RETRIEVAL_FEATURES",
            "VERIFIER_FEATURES",
            "offered_features",
            "span_features",
        ],
        "rag.reader.verifier",
    ),
    **dict.fromkeys(
        [
            "CHECKED_FIT_FILE",
            "CHECKED_PRIOR_FIT_FILE",
            "CONFIG_FILE",
            "MARGIN_FIT_FILE",
            "PRIOR_FIT_FILE",
            "PROBE_FILE",
            "SELECTION_FIT_FILE",
            "VERIFIER_FIT_FILE",
            "WEIGHTS_FILE",
            "WindowConfig",
            "load_rank_weight",
            "rank_weight",
            "save_rank_weight",
            "verifier_fit_file",
        ],
        "rag.reader.span_format",
    ),
    **dict.fromkeys(
        [
            "ReaderTrainer",
            "TrainConfig",
            "TrainExample",
            "build_examples",
            "evaluate_gold_paragraph",
            "model_card",
        ],
        "rag.reader.training",
    ),
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
