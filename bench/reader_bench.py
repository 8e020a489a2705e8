"""Span reader speed and precision cost: fp32 vs bf16 and int8 on the same passages, side by side.

    .venv/bin/python bench/reader_bench.py [--weights rag/data/reader] [--questions 1000]

Retrieves the top 5 passages for seeded SQuAD v1.1 dev questions once (index
``bench-squad-dev``), then reads each question with every variant in rotation, so all see
the same machine load: fp32, the encoder in bfloat16 (``RAG_SPAN_DTYPE=bfloat16``), int8
(dynamic quantisation, a scale per output channel; ``RAG_SPAN_QUANTIZE``) and, for
reference, int8 with one scale per tensor (``--no-int8``: fp32 and bf16 only). The median
change of the best span's margin from fp32 is reported too: the margin feeds abstention.
Reports read latency p50/p95 (ms), open-corpus EM/F1, and the paired F1 difference to fp32
with its standard error.
Nothing is asserted; results go to stdout and bench/results/reader_bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SQUAD_DEV, gold_index, load_squad, percentile  # noqa: E402
from rag.gold import exact_match, f1  # noqa: E402
from rag.reader import SpanReader, quantize_encoder  # noqa: E402
from rag.settings import Settings  # noqa: E402


def per_tensor_int8(reader: SpanReader) -> None:
    """Swap the reader's encoder for int8 with one scale per tensor (the reference)."""
    reader.warm_up()
    assert reader._model is not None
    reader._model.encoder = quantize_encoder(reader._model.encoder, per_channel=False)


def diff(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=Settings().reader_weights)
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-int8", action="store_true", help="fp32 and bf16 only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reader_bench.json")
    args = ap.parse_args()

    gold = load_squad(SQUAD_DEV)
    pipe = gold_index(gold, "bench-squad-dev")
    questions = random.Random(args.seed).sample(
        [q for q in gold.questions if q.answers], args.questions
    )
    s = Settings()
    variants = [("fp32", False, "float32"), ("bf16", False, "bfloat16")]
    if not args.no_int8:
        variants += [("int8", True, "float32"), ("int8-per-tensor", False, "float32")]
    readers = {
        name: SpanReader(
            args.weights,
            s.span_margin_chars,
            s.span_max_answer_tokens,
            s.span_batch_windows,
            q,
            dtype=dtype,
            pad_multiple=s.span_pad_multiple,
            batch_multiple=s.span_batch_multiple,
        )
        for name, q, dtype in variants
    }
    if "int8-per-tensor" in readers:
        per_tensor_int8(readers["int8-per-tensor"])
    for r in readers.values():
        r.warm_up()
    times: dict[str, list[float]] = {n: [] for n in readers}
    em: dict[str, list[float]] = {n: [] for n in readers}
    f1s: dict[str, list[float]] = {n: [] for n in readers}
    margins: dict[str, list[float]] = {n: [] for n in readers}
    for i, q in enumerate(questions):
        passages = pipe.retrieve(q.question, args.top_k)
        documents = pipe.documents_of(passages)
        names = list(readers)
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate: same load for all
        for name in order:
            t = time.perf_counter()
            spans = readers[name].read(q.question, passages, documents)
            times[name].append((time.perf_counter() - t) * 1000)
            margins[name].append(spans[0].score if spans else float("nan"))
            pred = spans[0].text if spans else ""
            em[name].append(exact_match(pred, q.answer_texts))
            f1s[name].append(f1(pred, q.answer_texts))
    n = len(questions)
    results = {
        "weights": str(args.weights),
        "questions": n,
        "top_k": args.top_k,
        "readers": {
            name: {
                "read_p50_ms": round(percentile(times[name], 50), 1),
                "read_p95_ms": round(percentile(times[name], 95), 1),
                "em": round(100 * sum(em[name]) / n, 2),
                "f1": round(100 * sum(f1s[name]) / n, 2),
                "f1_minus_fp32": round(100 * statistics.mean(diff(f1s[name], f1s["fp32"])), 2),
                "f1_minus_fp32_se": round(
                    100 * statistics.stdev(diff(f1s[name], f1s["fp32"])) / n**0.5, 2
                ),
                "answers_changed": sum(a != b for a, b in zip(f1s[name], f1s["fp32"], strict=True)),
                # How far the best span's margin moves from fp32's (it decides abstention).
                "margin_abs_diff_median": round(
                    statistics.median(
                        [
                            abs(a - b)
                            for a, b in zip(margins[name], margins["fp32"], strict=True)
                            if a == a and b == b
                        ]
                        or [float("nan")]
                    ),
                    4,
                ),
            }
            for name in readers
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
