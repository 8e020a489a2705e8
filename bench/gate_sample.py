"""The quality gate's SQuAD figures outside the test: EM, F1 and the share answered on the
fixed sample of 300 SQuAD v1.1 dev questions that ``tests/test_quality_gate.py`` gates
(``rag.eval.quality_gate_sample``), with this tree's reader, fits and settings.

    .venv/bin/python bench/gate_sample.py

To see a candidate reader against the floors in ``eval/floors.json`` before running the
whole suite; for another revision, run it from a worktree of it with
``PYTHONPATH=<worktree>`` (the editable install otherwise imports this tree's ``rag``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.eval import Evaluator, quality_gate_sample  # noqa: E402
from rag.gold import load_gold  # noqa: E402
from rag.ingest import Embedder  # noqa: E402
from rag.settings import Settings  # noqa: E402


def main() -> int:
    embedder = Embedder()
    embedder.warm_up()
    gold = quality_gate_sample(load_gold(ROOT / "eval" / "gold" / "squad-dev-v1.1.json.gz"))
    with tempfile.TemporaryDirectory() as root:
        run = Evaluator(Settings(index_root=Path(root)), embedder, progress=False).run(gold)
    answers = run.metrics["answers"]
    floors = json.loads((ROOT / "eval" / "floors.json").read_text())["squad-dev-300"]
    print(
        json.dumps(
            {
                "em": answers["em"],
                "f1": answers["f1"],
                "answered_share": answers.get("answered_share"),
                "floors": floors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
