"""The answerability probe: a linear read of the span reader's own states, for the verifier.

The reader's "no answer" is one logit of its ``[CLS]`` state, trained with the few real
unanswerable questions there are. The probe is a logistic model over four of the reader's
last-layer states for a candidate span, fitted on many more (``bench/fit_probe.py``: SQuAD
questions beside synthetic rewrites their paragraph no longer answers, ``rag.reader.augment``,
and the real ones): the ``[CLS]`` state, the span's start and end token states, and the mean
state of the question's tokens. Being linear in each state, it splits into four 384-wide
channels read off every token with one small matrix product per window, so it costs the
reader no second pass; its logit for each candidate is the verifier's "probe" feature
(``rag.reader.verifier.PROBE_FEATURES``).

Saved as ``probe.json`` in the reader's folder: it belongs to those weights (another reader's
states mean other things), and a reader without one offers no "probe" feature.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rag.reader.span_format import PROBE_FILE, WEIGHTS_FILE
from rag.reader.span_model import CLS_INDEX

# The channels, in the order of the weights (each as wide as the reader's states).
CHANNELS: tuple[str, ...] = ("cls", "start", "end", "question")


@dataclass(frozen=True, slots=True)
class AnswerabilityProbe:
    """Logistic weights over the concatenated states ``CHANNELS`` (``weights[c]`` is channel
    ``c``'s, as wide as the reader's hidden states) and a bias; ``report``: what its fit
    measured (kept in the file; of it, only the weights' sha256 is read back, by
    ``load_probe``)."""

    weights: tuple[tuple[float, ...], ...]
    bias: float
    report: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(self.weights) != len(CHANNELS):
            raise ValueError(f"a probe has {len(CHANNELS)} channels, not {len(self.weights)}")
        if len({len(w) for w in self.weights}) != 1 or not self.weights[0]:
            raise ValueError("a probe's channels must be equally wide and not empty")
        if not all(math.isfinite(v) for w in self.weights for v in w) or not math.isfinite(
            self.bias
        ):
            raise ValueError("a probe's weights and bias must be finite")

    @property
    def width(self) -> int:
        """The hidden size the probe reads."""
        return len(self.weights[0])

    def matrix(self) -> torch.Tensor:
        """The weights as a (width, channels) float32 matrix (hidden @ matrix: channels)."""
        return torch.tensor(self.weights, dtype=torch.float32).T.contiguous()

    def windows(
        self, hidden: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For windows of reader states ``hidden`` (batch, tokens, width): each window's
        constant part (the ``[CLS]`` and question channels and the bias), and per token its
        start and end channel: a span's logit is ``base[w] + start[w, i] + end[w, j]``."""
        if hidden.shape[-1] != self.width:
            raise ValueError(f"the probe reads {self.width}-wide states, not {hidden.shape[-1]}")
        ch = hidden.float() @ self.matrix()
        mask = question_mask(token_type_ids, attention_mask).float()
        question = (ch[..., 3] * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        base = ch[:, CLS_INDEX, 0] + question + self.bias
        return base.numpy(), ch[..., 1].numpy(), ch[..., 2].numpy()

    def logit(self, states: np.ndarray) -> np.ndarray:
        """The probe's logit for rows of concatenated states (``span_states``' rows)."""
        w = np.concatenate([np.asarray(c, dtype=np.float64) for c in self.weights])
        out: np.ndarray = np.asarray(states, dtype=np.float64) @ w + self.bias
        return out

    def save(self, folder: Path) -> Path:
        """Write ``probe.json`` into a reader's folder."""
        path = folder / PROBE_FILE
        data = {"channels": list(CHANNELS), "weights": [list(w) for w in self.weights]}
        data |= {"bias": self.bias, "report": self.report or {}}
        path.write_text(json.dumps(data) + "\n")
        return path


def question_mask(token_type_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The question's tokens of each window: segment 0 without ``[CLS]`` (its closing
    ``[SEP]`` included)."""
    mask = (token_type_ids == 0) & (attention_mask == 1)
    mask[:, CLS_INDEX] = False
    return mask


def span_states(
    hidden: torch.Tensor,
    token_type_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    spans: Sequence[tuple[int, int, int]],
) -> np.ndarray:
    """The probe's inputs for spans given as (window, start token, end token): one row
    each, the states of ``CHANNELS`` side by side (what ``bench/fit_probe.py`` fits on)."""
    mask = question_mask(token_type_ids, attention_mask).float()
    h = hidden.float()
    question = (h * mask[..., None]).sum(1) / mask.sum(-1, keepdim=True).clamp(min=1.0)
    rows = [
        torch.cat([h[w, CLS_INDEX], h[w, i], h[w, j], question[w]]).numpy() for w, i, j in spans
    ]
    return np.stack(rows) if rows else np.zeros((0, 4 * hidden.shape[-1]), dtype=np.float32)


def weights_digest(folder: Path) -> str:
    """The sha256 of a reader's weights file: a probe records the weights it was fitted on."""
    h = hashlib.sha256()
    with (folder / WEIGHTS_FILE).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_probe(folder: Path) -> AnswerabilityProbe | None:
    """The probe saved in a reader's folder, or None when it has none. A damaged file, or
    one fitted on other weights than the folder's (its report's ``weights_sha256``), is a
    ``ValueError`` naming it."""
    path = folder / PROBE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if list(data["channels"]) != list(CHANNELS):
            raise ValueError(f"channels {data['channels']} are not {list(CHANNELS)}")
        weights = tuple(tuple(float(v) for v in w) for w in data["weights"])
        probe = AnswerabilityProbe(weights, float(data["bias"]), dict(data.get("report", {})))
        fitted_on = (probe.report or {}).get("weights_sha256")
        if fitted_on is not None and fitted_on != weights_digest(folder):
            raise ValueError("fitted on other weights than this folder's: refit it")
        return probe
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not an answerability probe ({e})") from e


def probe_from_weights(weights: Sequence[float], report: dict[str, Any]) -> AnswerabilityProbe:
    """A probe from logistic weights over ``span_states``' columns, then a bias (what
    ``rag.eval.fit_standardised`` returns)."""
    *w, bias = (float(v) for v in weights)
    if len(w) % len(CHANNELS):
        raise ValueError(f"{len(w)} weights do not split into {len(CHANNELS)} channels")
    width = len(w) // len(CHANNELS)
    channels = tuple(tuple(w[k * width : (k + 1) * width]) for k in range(len(CHANNELS)))
    return AnswerabilityProbe(channels, bias, report)
