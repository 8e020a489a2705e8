"""Evaluation: ``metrics`` (judging and metrics), ``runner`` (a gold set through the
pipeline), ``fit`` (a reader's abstention fitted on a run), ``report`` (metrics.json,
report.md, plots, errors.jsonl, comparison). Gold formats and SQuAD scoring stay in
``rag.gold``, which reader training reaches too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.faces import lazy_face

if TYPE_CHECKING:
    from rag.eval.fit import (
        AbstentionFit as AbstentionFit,
        apply_abstention as apply_abstention,
        apply_online_prior as apply_online_prior,
        best_threshold as best_threshold,
        fit_abstention as fit_abstention,
        fit_factorised_verifier as fit_factorised_verifier,
        fit_logistic as fit_logistic,
        fit_reranker as fit_reranker,
        fit_selection as fit_selection,
        fit_standardised as fit_standardised,
        fit_verifier as fit_verifier,
        result_values as result_values,
    )
    from rag.eval.metrics import (
        QUESTION_TYPES as QUESTION_TYPES,
        PassageRef as PassageRef,
        QuestionResult as QuestionResult,
        answer_metrics as answer_metrics,
        calibration as calibration,
        judge as judge,
        loss_split as loss_split,
        ndcg_at as ndcg_at,
        question_kind as question_kind,
        retrieval_metrics as retrieval_metrics,
    )
    from rag.eval.report import (
        compare as compare,
        markdown as markdown,
        write_outputs as write_outputs,
    )
    from rag.eval.runner import (
        EvalRun as EvalRun,
        Evaluator as Evaluator,
        corpus_index_name as corpus_index_name,
    )
    from rag.eval.splits import (
        QUALITY_GATE_QUESTIONS as QUALITY_GATE_QUESTIONS,
        asked_articles as asked_articles,
        drop_articles as drop_articles,
        quality_gate_sample as quality_gate_sample,
        sample_articles as sample_articles,
        split_articles as split_articles,
        withhold_paragraphs as withhold_paragraphs,
    )

_NAMES = {
    **dict.fromkeys(
        [
            "AbstentionFit",
            "apply_abstention",
            "apply_online_prior",
            "best_threshold",
            "fit_abstention",
            "fit_factorised_verifier",
            "fit_logistic",
            "fit_reranker",
            "fit_selection",
            "fit_standardised",
            "fit_verifier",
            "result_values",
        ],
        "rag.eval.fit",
    ),
    **dict.fromkeys(
        [
            "QUESTION_TYPES",
            "PassageRef",
            "QuestionResult",
            "answer_metrics",
            "calibration",
            "judge",
            "loss_split",
            "ndcg_at",
            "question_kind",
            "retrieval_metrics",
        ],
        "rag.eval.metrics",
    ),
    **dict.fromkeys(["compare", "markdown", "write_outputs"], "rag.eval.report"),
    **dict.fromkeys(["EvalRun", "Evaluator", "corpus_index_name"], "rag.eval.runner"),
    **dict.fromkeys(
        [
            "QUALITY_GATE_QUESTIONS",
            "asked_articles",
            "drop_articles",
            "quality_gate_sample",
            "sample_articles",
            "split_articles",
            "withhold_paragraphs",
        ],
        "rag.eval.splits",
    ),
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
