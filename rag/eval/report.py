"""Evaluation outputs: metrics.json, a Markdown report, PNG plots, errors.jsonl; comparison.

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rag.eval.metrics import LOSS_STAGES, QUESTION_TYPES, QuestionResult
from rag.eval.runner import EvalRun


def write_outputs(run: EvalRun, out: Path, title: str) -> list[Path]:
    """Write every output of ``run`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "metrics.json", out / "report.md", out / "errors.jsonl"]
    files[0].write_text(json.dumps(run.metrics, indent=2) + "\n")
    with files[2].open("w", encoding="utf-8") as fh:
        for r in errors(run.results):
            fh.write(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n")
    plots = write_plots(run, out)
    files[1].write_text(markdown(run.metrics, title, [p.name for p in plots]))
    return files + plots


def errors(results: Sequence[QuestionResult]) -> Iterator[QuestionResult]:
    """Wrong (EM < 1) or abstained questions, and any citation failure."""
    for r in results:
        if r.em < 1.0 or not r.answered or r.citation_failures:
            yield r


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def markdown(metrics: Mapping[str, Any], title: str, plots: Sequence[str]) -> str:
    """A human-readable report of a metrics dict."""
    lines = [f"# Evaluation: {title}", "", f"Questions: {metrics.get('questions')}", ""]
    answers = metrics.get("answers")
    if answers:
        has, no = answers["has_answer"], answers["no_answer"]
        ab = answers["abstention"]
        lines += [
            "## Answers",
            "",
            "| | n | EM | F1 |",
            "|---|---|---|---|",
            f"| all | {answers['n']} | {_fmt(answers['em'])} | {_fmt(answers['f1'])} |",
            f"| has answer | {has['n']} | {_fmt(has['em'])} | {_fmt(has['f1'])} |",
            f"| no answer (abstained %) | {no['n']} | {_fmt(no['accuracy'])} | |",
            "",
            f"Answered: {_fmt(answers['answered_share'])} %. Abstentions: {ab['n']}, precision "
            f"{_fmt(ab['precision'])} %, recall {_fmt(ab['recall'])} %.",
            "",
            "| type | n | EM | F1 |",
            "|---|---|---|---|",
        ]
        for kind in QUESTION_TYPES:
            row = answers["by_type"].get(kind)
            if row:
                lines.append(f"| {kind} | {row['n']} | {_fmt(row['em'])} | {_fmt(row['f1'])} |")
        lines.append("")
    split = metrics.get("loss_split")
    if split and split["n"]:
        lines += [
            "## Where the F1 is lost",
            "",
            f"Answerable questions ({split['n']}) that lost F1, by stage: retrieval (no "
            f"passage of the top {split['top_k']} read holds a gold answer), abstention (the "
            "span held back was right), reader (a wrong or partial span, or none).",
            "",
            "| stage | questions % | F1 points lost |",
            "|---|---|---|",
        ]
        for stage in LOSS_STAGES:
            row = split[stage]
            lines.append(f"| {stage} | {_fmt(row['questions'])} | {_fmt(row['f1_lost'])} |")
        lines.append("")
    lines += ["## Retrieval", ""]
    for mode, m in metrics.get("retrieval", {}).items():
        parts = [f"**{mode}**"]
        if m.get("ndcg@10") is not None:
            parts.append(f"nDCG@10 {_fmt(m['ndcg@10'])}")
        for name in ("answer", "doc"):
            if f"recall_{name}" in m:
                recalls = ", ".join(f"@{k} {_fmt(v)}" for k, v in m[f"recall_{name}"].items())
                parts.append(f"recall ({name}) {recalls}; MRR {_fmt(m[f'mrr_{name}'])}")
        lines.append("- " + " — ".join(parts))
    lines.append("")
    cit = metrics.get("citations")
    if cit:
        lines += [
            "## Citations",
            "",
            f"Answers whose every citation round-trips and contains the answer: "
            f"{_fmt(cit['faithful'])} % of {cit['answered']}; failures: {len(cit['failures'])}.",
            "",
        ]
        for f in cit["failures"]:
            lines.append(f"- {f['id']}: {'; '.join(f['problems'])}")
    cal = metrics.get("calibration")
    if cal:
        lines += [
            "## Calibration",
            "",
            f"Expected calibration error: {_fmt(cal['ece'])} (correct = {cal['correct_means']}).",
            "",
            "| confidence | n | mean confidence | accuracy |",
            "|---|---|---|---|",
        ]
        for b in cal["bins"]:
            lines.append(
                f"| {b['bin']} | {b['n']} | {_fmt(b['confidence'])} | {_fmt(b['accuracy'])} |"
            )
        lines.append("")
    cost = metrics.get("cost")
    if cost:
        lines += ["## Cost", "", "```", json.dumps(cost, indent=2), "```", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_plots(run: EvalRun, out: Path) -> list[Path]:
    """recall@k curve, F1 by question type, reliability diagram, latency histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    retrieval = run.metrics.get("retrieval", {})
    if any("recall_answer" in m or "recall_doc" in m for m in retrieval.values()):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for mode, m in retrieval.items():
            key = "recall_answer" if "recall_answer" in m else "recall_doc"
            if key in m:
                ks = [int(k) for k in m[key]]
                ax.plot(ks, list(m[key].values()), marker="o", label=f"{mode} ({key[7:]})")
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "recall_at_k.png")
    answers = run.metrics.get("answers")
    if answers and answers["by_type"]:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        kinds = list(answers["by_type"])
        ax.bar(kinds, [answers["by_type"][k]["f1"] for k in kinds])
        ax.set_ylabel("F1")
        ax.set_ylim(0, 100)
        ax.set_title("F1 by question type (has-answer)")
        save(fig, "f1_by_type.png")
    cal = run.metrics.get("calibration")
    if cal and cal["ece"] is not None:
        fig, ax = plt.subplots(figsize=(4, 4))
        pts = [(b["confidence"], b["accuracy"]) for b in cal["bins"] if b["n"]]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Reliability (ECE {cal['ece']:.3f})")
        save(fig, "reliability.png")
    if run.results:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist([r.retrieve_ms for r in run.results], bins=30, alpha=0.7, label="retrieve")
        ax.hist([r.read_ms for r in run.results], bins=30, alpha=0.7, label="read")
        ax.set_xlabel("ms")
        ax.set_ylabel("questions")
        ax.legend()
        save(fig, "latency.png")
    return written


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield prefix, float(obj)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """One line per numeric metric that differs: ``name: a -> b (+delta)``."""
    left, right = dict(_leaves(a)), dict(_leaves(b))
    lines = []
    for key in sorted(set(left) | set(right)):
        x, y = left.get(key), right.get(key)
        if x == y:
            continue
        if x is None or y is None:
            lines.append(f"{key}: {_fmt(x)} -> {_fmt(y)}")
        else:
            lines.append(f"{key}: {_fmt(x)} -> {_fmt(y)} ({y - x:+.4g})")
    return lines
