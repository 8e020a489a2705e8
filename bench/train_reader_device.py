"""Train the span reader in one time-boxed call on a lent GPU machine (see README, Training).

That machine is bare and offline and sends back only a few small files, so this script
imports the training code alone (no FAISS, no web stack), reads everything from folders it
is given, and fits the schedule to the time it has:

1. a throwaway probe of ``--probe-steps`` steps measures examples per second there;
2. the real run's learning-rate schedule spans the full ``--epochs`` when that fits in
   ``--minutes``, else as many examples as fit (the schedule then still decays to zero);
3. the run is cut into ``--segments`` equal parts with a gold-paragraph dev score after
   each (the learning curve), then scored on all of SQuAD v1.1 dev and exported; the weights
   are split into parts under 16 MB (``--split-mb``) for the trip back.

Usage there::

    python3 bench/train_reader_device.py --train T.json.gz --dev D.json.gz --base BASE \
        --init rag/data/reader --out /tmp/run --export $OUT --minutes 5.5

Here, rejoin the parts with ``cat model.safetensors.part* > model.safetensors``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rag.gold import load_squad
from rag.reader import (
    WEIGHTS_FILE,
    ReaderTrainer,
    TrainConfig,
    TrainExample,
    build_examples,
    evaluate_gold_paragraph,
)


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def probe(
    cfg: TrainConfig, args: argparse.Namespace, examples: list[TrainExample], device: str
) -> tuple[float, float]:
    """Examples per second and windows per example, measured on a throwaway trainer."""
    trainer = ReaderTrainer(cfg, args.out / "probe", init=args.init, base=args.base, device=device)
    marks: list[tuple[float, int, int]] = []

    def on_step(entry: dict[str, Any]) -> None:
        marks.append((time.perf_counter(), int(entry["examples"]), trainer.state.windows_done))

    trainer.run(examples, max_steps=args.probe_steps, save_every=10**9, on_step=on_step)
    shutil.rmtree(args.out / "probe", ignore_errors=True)
    skip = len(marks) // 4  # the first steps pay for warm-up (kernels, allocator)
    (t0, e0, w0), (t1, e1, w1) = marks[skip], marks[-1]
    return (e1 - e0) / (t1 - t0), (w1 - w0) / max(1, e1 - e0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--dev", type=Path, required=True)
    p.add_argument("--base", type=Path, required=True, help="encoder config + tokenizer folder")
    p.add_argument("--init", type=Path, help="exported weights to continue from")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints)")
    p.add_argument("--export", type=Path, required=True, help="where the results go")
    p.add_argument("--minutes", type=float, required=True, help="training time budget")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--probe-steps", type=int, default=80)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--split-mb", type=int, default=15)
    p.add_argument("--dev-questions", type=int, help="final dev score on this many (all)")
    # The dev questions scored after each segment (the learning curve): by default the same
    # first 1,000 that the CPU runs report, so the curves line up.
    p.add_argument("--curve-questions", type=int, default=1000)
    args = p.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    _say(f"torch {torch.__version__} on {device}")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        _say(torch.cuda.get_device_name(0))
    gold = load_squad(args.train)
    dev = load_squad(args.dev)
    cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, epochs=args.epochs)
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed)
    _say(f"{len(examples)} training examples")

    ex_per_s, windows_per_ex = probe(cfg, args, examples, device)
    trainer = ReaderTrainer(cfg, args.out, init=args.init, base=args.base, device=device)
    start = trainer.state.examples_done
    full = int(cfg.epochs * len(examples)) - start
    fits = int(ex_per_s * args.minutes * 60 * 0.95)
    planned = min(full, fits)
    _say(
        f"probe: {ex_per_s:.0f} examples/s, {windows_per_ex:.2f} windows/example; "
        f"planned {planned} of {full} examples from position {start}"
    )
    # The data stops where the schedule ends: the epochs the plan covers, from ``start``.
    cfg = dataclasses.replace(cfg, plan_examples=planned, epochs=(start + planned) / len(examples))
    trainer.cfg = cfg
    trainer.state.total_steps = math.ceil(planned * windows_per_ex / cfg.batch_size)
    per_segment = max(1, planned // args.segments)
    curve: list[dict[str, Any]] = []
    budget = args.minutes * 60 * 1.1  # a hard stop, in case the probe was optimistic
    t0 = time.perf_counter()
    for seg in range(args.segments):
        last = seg == args.segments - 1
        target = start + planned if last else start + per_segment * (seg + 1)
        todo = target - trainer.state.examples_done
        steps = max(1, round(todo * windows_per_ex / cfg.batch_size))
        remaining = budget - (time.perf_counter() - t0)
        trainer.run(
            examples,
            max_steps=None if last else steps,
            max_seconds=max(1.0, remaining),
            save_every=10**9,
        )
        score = evaluate_gold_paragraph(
            trainer.model, trainer.tokenizer, dev, cfg, args.curve_questions, batch_size=256
        )
        point = {
            "examples_seen": trainer.state.examples_done,
            "steps": trainer.state.steps,
            "seconds": round(trainer.state.seconds, 1),
            **{k: round(v, 2) for k, v in score.items()},
        }
        curve.append(point)
        _say(json.dumps(point))
        if time.perf_counter() - t0 >= budget:
            _say("time budget spent")
            break
    full_dev = evaluate_gold_paragraph(
        trainer.model, trainer.tokenizer, dev, cfg, args.dev_questions, batch_size=256
    )
    first = evaluate_gold_paragraph(
        trainer.model, trainer.tokenizer, dev, cfg, args.curve_questions, batch_size=256
    )
    metrics = {
        "dev_gold_paragraph": first,
        "dev_gold_paragraph_all": full_dev,
        "learning_curve": curve,
        "probe": {"examples_per_second": round(ex_per_s, 1), "windows_per_example": windows_per_ex},
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "command": "python3 bench/train_reader_device.py " + " ".join(sys.argv[1:]),
    }
    _say(json.dumps({k: metrics[k] for k in ("dev_gold_paragraph", "dev_gold_paragraph_all")}))
    folder = args.out / "export"
    trainer.export(folder, fp16=True, extra=metrics)
    args.export.mkdir(parents=True, exist_ok=True)
    for name in ("reader.json", "README.md"):
        shutil.copy(folder / name, args.export / name)
    shutil.copy(args.out / "train_log.jsonl", args.export / "train_log.jsonl")
    data = (folder / WEIGHTS_FILE).read_bytes()
    size = args.split_mb * 2**20
    for i in range(0, len(data), size):
        (args.export / f"{WEIGHTS_FILE}.part{i // size}").write_bytes(data[i : i + size])
    _say(f"exported {len(data)} bytes in {(len(data) + size - 1) // size} parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
