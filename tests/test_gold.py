"""Gold file formats; malformed files name the line and field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rag.gold import GoldFormatError, load_gold

SQUAD = {
    "version": "2.0",
    "data": [
        {
            "title": "Paris",
            "paragraphs": [
                {
                    "context": "Paris is the capital of France.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "What is the capital of France?",
                            "answers": [{"text": "Paris", "answer_start": 0}],
                        },
                        {
                            "id": "q2",
                            "question": "What is the capital of Spain?",
                            "answers": [],
                            "is_impossible": True,
                        },
                    ],
                }
            ],
        }
    ],
}


def test_squad_json_and_gz(tmp_path: Path) -> None:
    plain = tmp_path / "s.json"
    plain.write_text(json.dumps(SQUAD))
    packed = tmp_path / "s.json.gz"
    packed.write_bytes(gzip.compress(json.dumps(SQUAD).encode()))
    for path in (plain, packed):
        gold = load_gold(path)
        assert len(gold.documents) == 1 and gold.documents[0].title == "Paris"
        q1, q2 = gold.questions
        assert q1.answer_texts == ["Paris"] and q1.doc_id == gold.documents[0].id
        assert q2.is_impossible and not gold.retrieval_only


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("data"), "missing field 'data'"),
        (
            lambda d: d["data"][0]["paragraphs"][0].pop("context"),
            "paragraphs[0]: missing field 'context'",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("question"),
            "qas[0]: missing field 'question'",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[]),
            "qas[0]: answerable",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[{"t": 1}]),
            "answers[0]: missing field 'text'",
        ),
    ],
)
def test_malformed_squad_names_the_field(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(SQUAD))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GoldFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_gold(path)


def test_jsonl_gold(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(
        '{"question": "Who?", "answers": ["Ann", {"text": "Ann B", "answer_start": 3}]}\n'
        "\n"
        '{"question": "Nobody?", "answers": [], "doc_id": "d"}\n'
    )
    gold = load_gold(path)
    assert [q.answer_texts for q in gold.questions] == [["Ann", "Ann B"], []]
    assert gold.questions[1].doc_id == "d" and gold.documents == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", ":1: invalid JSON"),
        ('{"answers": []}', ":1: field 'question'"),
        ('{"question": "q", "answers": "x"}', ":1: field 'answers' must be a list"),
        ('{"question": "q", "answers": [3]}', ":1: field 'answers' items"),
    ],
)
def test_malformed_jsonl_names_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(GoldFormatError, match=message):
        load_gold(path)


def test_beir_folder(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Cats", "text": "Cats purr."}\n'
        '{"_id": "d2", "text": "Dogs bark."}\n'
    )
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "1", "text": "purring"}\n{"_id": "2", "text": "x"}\n'
    )
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n")
    gold = load_gold(tmp_path)
    assert gold.retrieval_only and gold.qrels == {"1": {"d1": 1}}
    assert [q.id for q in gold.questions] == ["1"]
    assert gold.documents[0].text == "Cats\nCats purr."
    (tmp_path / "qrels" / "test.tsv").write_text("1\td1\n")
    with pytest.raises(GoldFormatError, match=r"test\.tsv:1"):
        load_gold(tmp_path)


def test_missing_or_unknown_gold(tmp_path: Path) -> None:
    with pytest.raises(GoldFormatError, match="no such file"):
        load_gold(tmp_path / "nope.json")
    other = tmp_path / "g.csv"
    other.write_text("x")
    with pytest.raises(GoldFormatError, match="want SQuAD"):
        load_gold(other)
