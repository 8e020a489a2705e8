"""Regression gate: answer quality on the seed set and a fixed SQuAD dev sample.

Fails when EM, F1 or recall@5 drops more than ``margin`` points below the floor recorded in
eval/floors.json, and when one rises more than ``ratchet`` above it (record the better
baseline, so that floors move up and never down silently). To record floors after an
improvement: ``RAG_RECORD_FLOORS=1 .venv/bin/pytest tests/test_quality_gate.py`` (it only
ever raises them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rag.eval import Evaluator, quality_gate_sample
from rag.gold import load_gold
from rag.ingest import Embedder
from rag.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.model
FLOORS = ROOT / "eval" / "floors.json"
GATED = ("answers.em", "answers.f1", "retrieval.hybrid.recall_answer.5")


def _get(metrics: dict[str, Any], dotted: str) -> float:
    value: Any = metrics
    for part in dotted.split("."):
        value = value[part]
    return float(value) * (100 if dotted.startswith("retrieval") else 1)


def gate(name: str, metrics: dict[str, Any]) -> None:
    floors = json.loads(FLOORS.read_text())
    measured = {key: round(_get(metrics, key), 2) for key in GATED}
    if os.environ.get("RAG_RECORD_FLOORS") == "1":
        old = floors.get(name, {})
        floors[name] = {k: max(v, old.get(k, v)) for k, v in measured.items()}
        FLOORS.write_text(json.dumps(floors, indent=2) + "\n")
        pytest.skip(f"recorded floors for {name}: {floors[name]}")
    for key, value in measured.items():
        floor = floors[name][key]
        assert value >= floor - floors["margin"], f"{name} {key} fell to {value} (floor {floor})"
        assert value <= floor + floors["ratchet"], (
            f"{name} {key} rose to {value} (floor {floor}): record it with RAG_RECORD_FLOORS=1"
        )


def test_seed_set_gate(seed_index_root: Path, real_embedder: Embedder) -> None:
    evaluator = Evaluator(Settings(index_root=seed_index_root), real_embedder, progress=False)
    run = evaluator.run(load_gold(ROOT / "eval" / "gold" / "seeds.jsonl"), index_name="default")
    assert run.metrics["citations"]["failures"] == []
    gate("seeds", run.metrics)


def test_squad_dev_sample_gate(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder
) -> None:
    gold = quality_gate_sample(load_gold(ROOT / "eval" / "gold" / "squad-dev-v1.1.json.gz"))
    root = tmp_path_factory.mktemp("squad-index")
    run = Evaluator(Settings(index_root=root), real_embedder, progress=False).run(gold)
    assert run.metrics["citations"]["failures"] == []
    gate("squad-dev-300", run.metrics)
