"""`rag eval` end to end on toy gold files with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cli import main
from rag.pipeline import Pipeline
from rag.reader import VERIFIER_FEATURES
from rag.settings import Settings

pytestmark = pytest.mark.model

SQUAD = {
    "version": "2.0",
    "data": [
        {
            "title": "Towers",
            "paragraphs": [
                {
                    "context": "The Eiffel Tower in Paris was completed in 1889. It is 330 metres "
                    "tall and was designed by the engineering firm of Gustave Eiffel.",
                    "qas": [
                        {
                            "id": "t1",
                            "question": "When was the Eiffel Tower completed?",
                            "answers": [{"text": "1889", "answer_start": 43}],
                        },
                        {
                            "id": "t2",
                            "question": "How tall is the Eiffel Tower?",
                            "answers": [{"text": "330 metres", "answer_start": 55}],
                        },
                    ],
                },
                {
                    "context": "The Colosseum in Rome was completed in 80 AD under the emperor "
                    "Titus. It could hold about 50,000 spectators.",
                    "qas": [
                        {
                            "id": "c1",
                            "question": "How many spectators could the Colosseum hold?",
                            "answers": [{"text": "about 50,000", "answer_start": 88}],
                        },
                        {
                            "id": "c2",
                            "question": "Who painted the ceiling of the Colosseum?",
                            "answers": [],
                            "is_impossible": True,
                        },
                    ],
                },
            ],
        }
    ],
}


def test_eval_outputs_fit_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = tmp_path / "toy.json"
    gold.write_text(json.dumps(SQUAD))
    root = ["--index-root", str(tmp_path / "idx")]
    out_a = tmp_path / "a"
    assert main(["eval", str(gold), "--out", str(out_a), "--ablation", "--quiet", *root]) == 0
    metrics = json.loads((out_a / "metrics.json").read_text())
    assert metrics["questions"] == 4
    assert metrics["citations"]["failures"] == []
    assert metrics["citations"]["faithful"] in (100.0, None)
    assert set(metrics["retrieval"]) == {"hybrid", "dense", "bm25"}
    assert metrics["retrieval"]["hybrid"]["recall_answer"]["5"] == 1.0
    # Every answerable question is retrieved here: no F1 is lost to retrieval.
    split = metrics["loss_split"]
    assert split["n"] == 3 and split["retrieval"] == {"questions": 0.0, "f1_lost": 0.0}
    lost = sum(split[s]["f1_lost"] for s in ("retrieval", "abstention", "reader"))
    assert lost == pytest.approx(100 - metrics["answers"]["has_answer"]["f1"], abs=0.02)
    assert "## Where the F1 is lost" in (out_a / "report.md").read_text()
    # The settings block names the reader that answered and the threshold it abstained at.
    pipe = Pipeline(Settings(index_root=tmp_path / "idx"))
    assert metrics["settings"]["reader"] == pipe.reader.kind
    assert metrics["settings"]["abstain_threshold"] == pipe.reader.abstention.threshold
    for name in ("report.md", "errors.jsonl", "recall_at_k.png", "latency.png", "f1_by_type.png"):
        assert (out_a / name).is_file(), name
    assert (out_a / "recall_at_k.png").read_bytes().startswith(b"\x89PNG")

    # The corpus index is cached by content hash: one eval-* folder after two runs.
    fit = tmp_path / "fit.json"
    assert main(["eval", str(gold), "--fit-threshold", str(fit), "--quiet", *root]) == 0
    assert len(list((tmp_path / "idx").glob("eval-*"))) == 1
    fitted = json.loads(fit.read_text())
    assert isinstance(fitted["abstain_threshold"], float)
    # The default reader is the span reader with the factorised verifier (at the share
    # estimated online), and a refit fits that kind: P(answerable) and P(correct |
    # answerable) over every verifier feature, at the run's share of answerable questions.
    assert fitted["reader"] == "span" and fitted["decides"] == "answerable"
    assert fitted["features"] == list(VERIFIER_FEATURES)
    assert fitted["fit_prior"] == pytest.approx(3 / 4)
    assert len(fitted["answerable_calibration"]) == len(VERIFIER_FEATURES) + 1
    assert 0.0 <= fitted["abstain_threshold"] <= 1.0
    # 'off': the one-model verifier, a logistic model of P(correct) deciding on it.
    monkeypatch.setenv("RAG_SPAN_ANSWERABLE_PRIOR", "off")
    one = tmp_path / "one-model.json"
    assert main(["eval", str(gold), "--fit-threshold", str(one), "--quiet", *root]) == 0
    fitted = json.loads(one.read_text())
    assert fitted["decides"] == "confidence" and fitted["fit_prior"] is None
    assert len(fitted["confidence_calibration"]) == len(VERIFIER_FEATURES) + 1
    monkeypatch.delenv("RAG_SPAN_ANSWERABLE_PRIOR")
    # With the verifier off, the margin rule: Platt scaling of the margin alone.
    monkeypatch.setenv("RAG_SPAN_VERIFIER", "false")
    margin = tmp_path / "margin.json"
    assert main(["eval", str(gold), "--fit-threshold", str(margin), "--quiet", *root]) == 0
    fitted = json.loads(margin.read_text())
    assert fitted["features"] == ["score"] and fitted["decides"] == "score"
    assert len(fitted["confidence_calibration"]) == 2
    monkeypatch.delenv("RAG_SPAN_VERIFIER")

    capsys.readouterr()
    assert (
        main(["eval", "--compare", str(out_a / "metrics.json"), str(out_a / "metrics.json")]) == 0
    )
    assert capsys.readouterr().out.strip() == "no differences"


def test_eval_beir_folder(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "Cats", "Cats purr when they are content."),
        ("d2", "Dogs", "Dogs bark at strangers and fetch sticks."),
        ("d3", "Granite", "Granite is an igneous rock formed from slowly cooling magma."),
    ]
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    )
    (beir / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "which animal purrs"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "rock made from magma"})
        + "\n"
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    out = tmp_path / "out"
    args = ["eval", str(beir), "--ablation", "--out", str(out), "--quiet"]
    assert main([*args, "--index-root", str(tmp_path / "idx")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for mode in ("hybrid", "dense", "bm25"):
        assert metrics["retrieval"][mode]["ndcg@10"] == 1.0


def test_bad_gold_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok", "answers": []}\n{"answers": []}\n')
    assert main(["eval", str(bad), "--index-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "question" in err and "\n" not in err.strip()
