"""The rag command: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main
from rag.models import Document
from tests.conftest import SEED_ID, SEEDS

ROOT = Path(__file__).resolve().parent.parent

RAG = str(Path(sys.executable).parent / "rag")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAG, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--index-root", str(tmp_path)]
    cases = [
        (["ask", "Who?", *root], "no index"),
        (["stats", *root], "no index"),
        (["delete", "nope", *root], "no document"),
        (["ask", "Who?", "--index", "../escape", *root], "invalid setting"),
        (["ask", "Who?", "--top-k", "0", *root], "invalid setting"),
        (["ask", "Who?", "--filter", "novalue", *root], None),
        (["ask", "Who?", "--answers", "0", *root], "answers must be between 1 and"),
    ]
    for argv, message in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert "\n" not in err and err.startswith("rag: error:"), err
        if message:
            assert message in err


def test_argparse_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ask"])
    assert exc.value.code == 2


@pytest.mark.model
def test_cli_end_to_end(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    (corpus / "broken.txt").write_bytes(b"\xff\xfe bad bytes")
    idx = ["--index-root", str(tmp_path / "idx")]

    ingest = run("ingest", str(corpus), *idx, cwd=tmp_path)
    assert ingest.returncode == 1, ingest.stderr  # one file failed, named, others ingested
    assert "broken.txt" in ingest.stderr and "Traceback" not in ingest.stderr
    assert "1 added" in ingest.stdout and "chunks/s" in ingest.stdout
    assert "Loading weights" not in ingest.stderr

    ask = run(
        "ask", "Who said North Korean workers would be welcomed?", "--json", *idx, cwd=tmp_path
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert "Khusnullin" in answer["text"] and "withheld" not in answer
    text = (SEEDS / SEED_ID).read_text(encoding="utf-8")
    for c in answer["citations"]:
        assert text[c["start"] : c["end"]] == c["quote"]

    plain = run("ask", "Who said North Korean workers would be welcomed?", *idx, cwd=tmp_path)
    assert plain.returncode == 0 and "**" in plain.stdout and "Khusnullin" in plain.stdout

    several = run(
        "ask",
        "Who said North Korean workers would be welcomed?",
        "--answers",
        "3",
        "--json",
        *idx,
        cwd=tmp_path,
    )
    best = json.loads(several.stdout)["answers"]
    assert 1 <= len(best) <= 3 and best[0]["text"] == answer["text"]
    for i, c in enumerate(best):
        assert text[c["start"] : c["end"]] == c["text"]
        assert all(c["end"] <= o["start"] or o["end"] <= c["start"] for o in best[:i])
    listed = run(
        "ask",
        "Who said North Korean workers would be welcomed?",
        "--answers",
        "3",
        *idx,
        cwd=tmp_path,
    )
    assert listed.returncode == 0 and listed.stdout.startswith("1. ")

    stats = run("stats", "--json", *idx, cwd=tmp_path)
    assert json.loads(stats.stdout)["documents"] == 1

    empty = run("ask", "   ", *idx, cwd=tmp_path)
    assert empty.returncode == 2 and "empty" in empty.stderr and "Traceback" not in empty.stderr

    gone = run("delete", SEED_ID, *idx, cwd=tmp_path)
    assert gone.returncode == 0
    after = run("ask", "Who said North Korean workers would be welcomed?", *idx, cwd=tmp_path)
    assert after.returncode == 0 and "No answer" in after.stdout and "no documents" in after.stdout


# A distillation run's options up to its --teacher-questions file.
TAUGHT = ["EXISTING", "--teacher", "TEACHER", "--distill-weight", "1", "--teacher-questions"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["missing.json.gz"], "no such file"),
        (["EXISTING", "--stride", "999"], "stride"),
        (["EXISTING", "--dev", "missing-dev.json"], "no such file"),
        (["NOTJSON"], "invalid JSON"),
        (["EXISTING", "--fine-tune"], "--fine-tune needs --init"),
        (["EXISTING", "--distill-weight", "1"], "--teacher and a positive --distill-weight"),
        (["EXISTING", "--teacher", "TEACHER"], "--teacher and a positive --distill-weight"),
        (["EXISTING", "--teacher", "missing-teacher", "--distill-weight", "1"], "no model"),
        (["EXISTING", "--distill-weight", "-1"], "not negative"),
        (["EXISTING", "--distill-weight", "nan"], "finite"),
        (["EXISTING", "--teacher-questions", "NOTJSON"], "--teacher-questions needs --teacher"),
        ([*TAUGHT, "NOTJSON"], "not a readable JSON file"),
        ([*TAUGHT, "EXISTING"], "question id -> question text"),
        ([*TAUGHT, "UNMATCHED"], "none of its question ids"),
        (
            ["EXISTING", "--teacher", "NOCARD", "--distill-weight", "1"],
            "not exported reader weights",
        ),
        (
            ["EXISTING", "--teacher", "DAMAGED", "--distill-weight", "1"],
            "not exported reader weights",
        ),
        (["EXISTING", "--init", "DAMAGED", "--fine-tune"], "not exported reader weights"),
    ],
)
def test_train_reader_user_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    good = tmp_path / "train.json"
    good.write_text(json.dumps({"data": []}))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    unmatched = tmp_path / "teacher.json"
    unmatched.write_text(json.dumps({"no-such-id": "What is it?"}))
    # Weights without their card; a weights file that is not one.
    (tmp_path / "NOCARD").mkdir()
    shutil.copy(ROOT / "rag" / "data" / "reader" / "model.safetensors", tmp_path / "NOCARD")
    (tmp_path / "DAMAGED").mkdir()
    (tmp_path / "DAMAGED" / "model.safetensors").write_bytes(b"not safetensors at all")
    (tmp_path / "DAMAGED" / "reader.json").write_text("{}")
    args = [
        str(good)
        if a == "EXISTING"
        else str(bad)
        if a == "NOTJSON"
        else str(ROOT / "rag" / "data" / "reader")
        if a == "TEACHER"
        else str(unmatched)
        if a == "UNMATCHED"
        else str(tmp_path / a)
        if a in ("NOCARD", "DAMAGED")
        else str(tmp_path / a)
        if a.startswith("missing")
        else a
        for a in extra
    ]
    assert main(["train-reader", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


@pytest.mark.model
def test_a_prior_without_its_fit_is_one_line_not_a_traceback(
    seed_index_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RAG_SPAN_ANSWERABLE_PRIOR needs the factorised verifier's fit: without it, exit 2
    and one line that says so; nothing is answered with a verifier the user did not ask."""
    import rag.reader.factory

    real = rag.reader.factory.verifier_fit_file
    monkeypatch.setattr(
        rag.reader.factory,
        "verifier_fit_file",
        lambda checked, factorised, probed=False: (
            tmp_path / "absent.json" if factorised else real(checked, factorised, probed)
        ),
    )
    monkeypatch.setenv("RAG_SPAN_ANSWERABLE_PRIOR", "0.9")
    argv = ["ask", "Who said North Korean workers would be welcomed?"]
    assert main([*argv, "--index-root", str(seed_index_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "RAG_SPAN_ANSWERABLE_PRIOR" in err


def test_an_interrupted_ingest_says_how_to_go_on_and_the_rerun_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C half way through a folder: exit 130 with one line, the commits made stay, and
    the same command embeds only the files not yet committed."""
    import rag.ingest.loaders
    import rag.pipeline
    from tests.conftest import FakeEmbedder

    embedder = FakeEmbedder()
    monkeypatch.setattr(rag.pipeline, "Embedder", lambda **_: embedder)
    monkeypatch.setenv("RAG_COMMIT_CHUNKS", "2")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.txt").write_text(f"File {i} tells of the number {i}.")
    real_load = rag.ingest.loaders.load_file
    stop = {"at": "4.txt"}

    def load(path: Path, doc_id: str, pdf_limits: object = None) -> list[Document]:
        if path.name == stop["at"]:
            raise KeyboardInterrupt
        return real_load(path, doc_id)

    monkeypatch.setattr(rag.ingest.loaders, "load_file", load)
    idx = ["--index-root", str(tmp_path / "idx"), "--quiet"]
    assert main(["ingest", str(corpus), *idx]) == 130
    err = capsys.readouterr().err
    assert "run the same command again" in err and err.count("\n") == 1
    assert main(["stats", "--json", *idx[:2]]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 4
    stop["at"] = ""
    embedder.texts_embedded = 0
    assert main(["ingest", str(corpus), *idx]) == 0
    out = capsys.readouterr().out
    assert "2 added" in out and "4 unchanged" in out and embedder.texts_embedded == 2


def test_a_folder_of_pdfs_is_ingested_and_answers_name_their_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rag ingest <folder of PDFs>`: the good ones stored with their pages, each bad one
    named on its own stderr line (exit 1: partial), and `rag ask` prints the page."""
    import rag.pipeline
    from tests.conftest import FakeEmbedder
    from tests.pdfs import Layout, encrypted_pdf, image_only_pdf, print_pdf

    monkeypatch.setattr(rag.pipeline, "Embedder", lambda **_: FakeEmbedder())
    monkeypatch.setenv("RAG_READER", "sentence")
    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "0")
    seed = (SEEDS / SEED_ID).read_text()
    paragraphs = [p for p in seed.split("\n") if len(p.split()) > 8]
    folder = tmp_path / "pdfs"
    (folder / "inner").mkdir(parents=True)
    printed = print_pdf(paragraphs, Layout(unicode_font=True, max_lines=8))
    (folder / "seed.pdf").write_bytes(printed.data)
    (folder / "inner" / "scan.pdf").write_bytes(image_only_pdf())
    (folder / "locked.pdf").write_bytes(encrypted_pdf(user_password="pw"))
    idx = ["--index-root", str(tmp_path / "idx"), "--quiet"]
    assert main(["ingest", str(folder), *idx]) == 1
    out, err = capsys.readouterr()
    assert "1 added" in out and "2 failed" in out
    assert [line.split(": ")[2] for line in err.strip().splitlines()] == [
        str(folder / "inner" / "scan.pdf"),
        str(folder / "locked.pdf"),
    ]
    last_page = " ".join(printed.pages[-1][:10])
    assert main(["ask", last_page, *idx[:2]]) == 0
    out = capsys.readouterr().out
    assert f"[seed.pdf p. {len(printed.pages)}" in out or f"-{len(printed.pages)} " in out
