"""Helpers shared by the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import statistics
from pathlib import Path

from rag.gold import GoldSet, load_squad
from rag.ingest import LoadResult
from rag.pipeline import Pipeline
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SQUAD_DEV = SHARED / "squad" / "dev-v1.1.json.gz"
SQUAD_V2_HALF = SHARED / "squad" / "dev-v2.0-half.json.gz"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def gold_index(gold: GoldSet, name: str, **overrides: object) -> Pipeline:
    """A pipeline over an index of the gold set's documents, built once under index/."""
    settings = Settings(index_name=name, **overrides)  # type: ignore[arg-type]
    pipe = Pipeline(settings)
    report = pipe.ingest(gold.documents)
    print(
        f"index {name}: {len(report.added)} added, {len(report.unchanged)} unchanged, "
        f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f}s"
    )
    return pipe


__all__ = ["SQUAD_DEV", "SQUAD_V2_HALF", "LoadResult", "gold_index", "load_squad", "percentile"]
