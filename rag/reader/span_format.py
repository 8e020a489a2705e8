"""The span reader's files and window shape: what a saved reader is, without torch.

The pipeline checks for the weights and the training and the reader agree on the window
shape through this module, which imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "reader.json"
# The reader's answerability probe (``rag.reader.probe``), beside its weights when fitted.
PROBE_FILE = "probe.json"
# The span reader's abstention fits (in rag/data, beside rag.settings.DATA_DIR's other
# files; named here so that training needs no settings): the one-model verifier
# (RAG_SPAN_ANSWERABLE_PRIOR=off), the factorised verifier (the default, at the share
# RAG_SPAN_ANSWERABLE_PRIOR says) and the margin rule (RAG_SPAN_VERIFIER=false), written by
# `make fit-threshold`.
_DATA = Path(__file__).resolve().parents[1] / "data"
VERIFIER_FIT_FILE = _DATA / "span_reader_fit.json"
PRIOR_FIT_FILE = _DATA / "span_reader_prior_fit.json"
MARGIN_FIT_FILE = _DATA / "span_margin_fit.json"
# The same two verifiers fitted with the answer checker's feature (RAG_SPAN_CHECKER).
CHECKED_FIT_FILE = _DATA / "span_reader_checked_fit.json"
CHECKED_PRIOR_FIT_FILE = _DATA / "span_reader_checked_prior_fit.json"
# ... with the answerability probe's (RAG_SPAN_PROBE); with both, "_probed_checked".
PROBED_FIT_FILE = _DATA / "span_reader_probed_fit.json"
PROBED_PRIOR_FIT_FILE = _DATA / "span_reader_probed_prior_fit.json"


def verifier_fit_file(checked: bool, factorised: bool, probed: bool = False) -> Path:
    """The verifier's fit file: with or without the answerability probe's and the answer
    checker's features, the one-model verifier or the factorised one."""
    name = "span_reader" + ("_probed" if probed else "") + ("_checked" if checked else "")
    return _DATA / (name + ("_prior" if factorised else "") + "_fit.json")


# Which span the reader answers with: the weight of the read passage's rank beside the
# span's margin, fitted by `make fit-threshold` (bench/span_selection.py).
SELECTION_FIT_FILE = _DATA / "span_selection_fit.json"
# The window shape a reader is trained with and read with (recorded in its reader.json).
MAX_LENGTH = 256
STRIDE = 128
MAX_QUESTION_TOKENS = 48


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How ``[CLS] question [SEP] context [SEP]`` windows are cut: wordpieces per window,
    the overlap of consecutive windows (doc stride), and the question's share at most."""

    max_length: int = MAX_LENGTH
    stride: int = STRIDE
    max_question_tokens: int = MAX_QUESTION_TOKENS

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> WindowConfig:
        """The window shape recorded in a saved reader's (or a run's) config."""
        return cls(
            int(config.get("max_length", MAX_LENGTH)),
            int(config.get("stride", STRIDE)),
            int(config.get("max_question_tokens", MAX_QUESTION_TOKENS)),
        )


def load_rank_weight(path: Path) -> float:
    """The fitted weight of the read passage's rank in span selection; 0 (the margin
    alone) when the file is absent."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weight = float(data["rank_weight"])
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a usable span selection fit ({e!r})") from e
    if not weight >= 0.0:
        raise ValueError(f"{path}: rank_weight must be >= 0, got {weight}")
    return weight


def rank_weight(override: float | None) -> float:
    """The rank weight a reader uses: ``override`` (``RAG_SPAN_RANK_WEIGHT``) when set,
    else the fitted one (``SELECTION_FIT_FILE``)."""
    return load_rank_weight(SELECTION_FIT_FILE) if override is None else override


def save_rank_weight(path: Path, weight: float, **report: Any) -> None:
    """Write the fitted rank weight with what it was fitted on (provenance, figures)."""
    import json

    path.write_text(json.dumps({"rank_weight": weight, **report}, indent=2) + "\n")
