"""The answerability probe: what the reader computes per window is the probe the fit fitted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rag.eval import fit_standardised
from rag.reader.probe import (
    CHANNELS,
    PROBE_FILE,
    AnswerabilityProbe,
    load_probe,
    probe_from_weights,
    question_mask,
    span_states,
    weights_digest,
)
from rag.reader.span_format import WEIGHTS_FILE


def windows(
    seed: int, batch: int, tokens: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random states of ``batch`` windows: [CLS] question [SEP] context [SEP] padding, with
    question and padding lengths drawn per window."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, tokens, width, generator=g)
    types = torch.zeros(batch, tokens, dtype=torch.long)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    for b in range(batch):
        q = int(torch.randint(1, tokens // 2, (1,), generator=g))
        pad = int(torch.randint(0, tokens // 4, (1,), generator=g))
        types[b, q + 2 : tokens - pad] = 1
        mask[b, tokens - pad :] = 0
    return hidden, types, mask


def random_probe(seed: int, width: int) -> AnswerabilityProbe:
    rng = np.random.default_rng(seed)
    weights = tuple(tuple(rng.normal(size=width).tolist()) for _ in CHANNELS)
    return AnswerabilityProbe(weights, float(rng.normal()))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 4),
    tokens=st.integers(8, 24),
    width=st.integers(1, 12),
)
def test_window_parts_sum_to_the_probe_of_the_span_states(
    seed: int, batch: int, tokens: int, width: int
) -> None:
    """What the reader computes (a constant per window, a start and an end channel per
    token) is, for every span, the probe's logit of the states it was fitted on."""
    hidden, types, mask = windows(seed, batch, tokens, width)
    probe = random_probe(seed, width)
    base, starts, ends = probe.windows(hidden, types, mask)
    rng = np.random.default_rng(seed)
    spans = []
    for w in range(batch):
        i = int(rng.integers(1, tokens))
        spans.append((w, i, int(rng.integers(i, tokens))))
    expected = probe.logit(span_states(hidden, types, mask, spans))
    got = [base[w] + starts[w, i] + ends[w, j] for w, i, j in spans]
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_question_is_segment_zero_without_cls_or_padding() -> None:
    types = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert question_mask(types, mask).tolist() == [
        [False, True, True, False, False, False],
        [False, True, False, False, False, False],
    ]


def test_a_probe_is_saved_with_its_reader_and_loads_back(tmp_path: Path) -> None:
    assert load_probe(tmp_path) is None  # a reader without one offers no probe feature
    probe = random_probe(3, 5)
    path = probe.save(tmp_path)
    assert path == tmp_path / PROBE_FILE
    loaded = load_probe(tmp_path)
    assert loaded is not None
    assert loaded.weights == probe.weights and loaded.bias == probe.bias
    states = np.random.default_rng(0).normal(size=(4, 4 * 5))
    assert np.allclose(loaded.logit(states), probe.logit(states))


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"channels": ["cls"], "weights": [[1.0]], "bias": 0.0}),
        json.dumps({"channels": list(CHANNELS), "weights": [[1.0]] * 3, "bias": 0.0}),
        json.dumps({"channels": list(CHANNELS), "weights": [[1.0], [1.0], [1.0], []], "bias": 0}),
        json.dumps({"channels": list(CHANNELS), "weights": [[1.0]] * 4}),
        json.dumps({"channels": list(CHANNELS), "weights": [[float("nan")]] * 4, "bias": 0}),
        json.dumps({"channels": list(CHANNELS), "weights": [[1.0]] * 4, "bias": float("inf")}),
    ],
)
def test_a_damaged_probe_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    (tmp_path / PROBE_FILE).write_text(text)
    with pytest.raises(ValueError, match=PROBE_FILE):
        load_probe(tmp_path)


def test_a_probe_fitted_on_other_weights_is_refused(tmp_path: Path) -> None:
    """A probe records the weights it read (their sha256): the same folder's weights
    retrained under it would make its channels mean nothing, so it is refused, not read."""
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights one")
    digest = weights_digest(tmp_path)
    probe = random_probe(1, 3)
    AnswerabilityProbe(probe.weights, probe.bias, {"weights_sha256": digest}).save(tmp_path)
    assert load_probe(tmp_path) is not None
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights two")
    with pytest.raises(ValueError, match="other weights"):
        load_probe(tmp_path)


def test_probe_weights_split_into_channels_in_order() -> None:
    probe = probe_from_weights([1, 2, 3, 4, 5, 6, 7, 8, -1.5], {"n": 1})
    assert probe.weights == ((1, 2), (3, 4), (5, 6), (7, 8))
    assert probe.bias == -1.5 and probe.width == 2 and probe.report == {"n": 1}
    with pytest.raises(ValueError, match="channels"):
        probe_from_weights([1, 2, 3, 0.0], {})
    with pytest.raises(ValueError, match="wide"):
        probe.windows(torch.zeros(1, 3, 5), torch.zeros(1, 3), torch.ones(1, 3))


def test_a_fitted_probe_reads_what_tells_answerable_states_apart() -> None:
    """States whose answerability shows in one coordinate of the [CLS] state: the fit puts
    its weight there, and separates fresh states of the same kind."""
    rng = np.random.default_rng(7)
    width = 6

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.random(n) < 0.5
        x = rng.normal(size=(n, 4 * width))
        x[:, 2] += np.where(y, 1.5, -1.5)
        return x, y

    x, y = draw(400)
    groups = [f"article-{i % 20}" for i in range(len(y))]
    weights, _, _ = fit_standardised(x, y.astype(float), groups, (0.1, 1.0, 10.0))
    probe = probe_from_weights(weights, {})
    assert int(np.argmax(np.abs(probe.weights[0]))) == 2 and probe.weights[0][2] > 0
    fresh, truth = draw(400)
    logits = probe.logit(fresh)
    assert np.mean((logits > 0) == truth) > 0.9
