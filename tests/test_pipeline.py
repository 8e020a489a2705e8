"""End to end with the real model over the seed article."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.gold import load_jsonl
from rag.ingest import Embedder, load_paths
from rag.models import Answer, Document
from rag.pipeline import Pipeline, QuestionError
from rag.settings import Settings
from rag.validation import InvalidInput
from tests.conftest import ROOT, SEED_ID, SEEDS, FakeEmbedder, unit_settings

pytestmark = pytest.mark.model
GOLD = ROOT / "eval" / "gold" / "seeds.jsonl"


def assert_round_trip(pipe: Pipeline, answer: Answer) -> None:
    for c in answer.citations:
        doc = pipe.document(c.doc_id)
        assert doc is not None and doc.text[c.start : c.end] == c.quote
        assert c.title == doc.title
    if answer.answered:
        doc = pipe.document(answer.doc_id or "")
        assert doc is not None and doc.text[answer.start : answer.end] == answer.text
        c = answer.citations[0]
        assert c.start <= (answer.start or 0) < (answer.end or 0) <= c.end


def test_seed_chunks_fit_the_embedder(seed_pipeline: Pipeline, real_embedder: Embedder) -> None:
    doc = load_paths([SEEDS]).documents[0]
    chunks = seed_pipeline.chunk(doc)
    counts = [real_embedder.wordpiece_count(c.text) for c in chunks]
    assert max(counts) <= real_embedder.max_seq_length, counts


def test_manifest_records_model_and_weights(
    seed_pipeline: Pipeline, real_embedder: Embedder
) -> None:
    manifest = seed_pipeline.stats().manifest
    assert manifest["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["embedding_sha256"] == real_embedder.weights_sha256
    assert len(manifest["embedding_sha256"]) == 64


def test_who_welcomed_north_korean_workers(seed_pipeline: Pipeline) -> None:
    """The default (span) reader answers with the name, not the sentence around it."""
    assert seed_pipeline.reader.kind == "span"
    answer = seed_pipeline.ask("Who said North Korean workers would be welcomed?")
    assert answer.answered, answer.no_answer_reason
    assert "Khusnullin" in answer.text
    assert answer.doc_id == SEED_ID
    assert len(answer.text) < 60  # a phrase, not the sentence
    assert_round_trip(seed_pipeline, answer)
    assert answer.timings_ms["retrieve"] > 0 and answer.timings_ms["read"] > 0
    # The confidence is the factorised verifier's P(correct) over the best span's features,
    # which the answer carries, at the share the fixture fixes (the fit's); its
    # P(answerable) is at least the threshold the verifier answers at.
    verifier = seed_pipeline.reader.abstention
    assert verifier.decides == "answerable" and verifier.prior == verifier.fit_prior
    values = {**answer.features, "score": answer.score}
    assert answer.confidence == pytest.approx(verifier.probability(values))
    assert (verifier.answerable_probability(values) or 0.0) >= verifier.threshold


def test_abstains_on_an_unanswerable_question(seed_pipeline: Pipeline) -> None:
    """The article never mentions football: the verifier turns the best span down."""
    answer = seed_pipeline.ask("Who won the 2024 European football championship?")
    assert not answer.answered and answer.no_answer_reason
    assert answer.text == "" and answer.start is None
    assert_round_trip(seed_pipeline, answer)


def test_a_prior_of_one_answers_what_the_fit_prior_withholds(
    seed_index_root: Path, real_embedder: Embedder
) -> None:
    """RAG_SPAN_ANSWERABLE_PRIOR=1.0 (every question answerable): the factorised verifier
    answers, no longer abstaining for lack of an answer, and the confidence is then
    P(correct | answerable); the same span is withheld at the fit's own prior."""
    question = "Who won the 2024 European football championship?"
    sure = Pipeline(
        Settings(index_root=seed_index_root, span_answerable_prior=1.0), embedder=real_embedder
    )
    assert sure.reader.abstention.prior == 1.0
    answer = sure.ask(question)
    assert answer.answered and answer.doc_id == SEED_ID
    assert_round_trip(sure, answer)
    fitted = dataclasses.replace(sure.reader.abstention, prior=None)
    values = {**answer.features, "score": answer.score}
    assert fitted.abstains(values)
    assert fitted.fit_prior is not None
    at_fit = Pipeline(
        Settings(index_root=seed_index_root, span_answerable_prior=fitted.fit_prior),
        embedder=real_embedder,
    ).ask(question)
    assert not at_fit.answered and "P(answerable)" in (at_fit.no_answer_reason or "")
    assert answer.confidence == pytest.approx(
        dataclasses.replace(
            fitted, answerable=None, fit_prior=None, decides="confidence"
        ).probability(values)
    )


def test_an_online_prior_rises_with_answerable_questions(
    seed_index_root: Path, real_embedder: Embedder
) -> None:
    """RAG_SPAN_ANSWERABLE_PRIOR=online (the default) over the seed article: a fresh
    pipeline decides at the fit's share; after a run of questions the article answers, the
    share has risen, and the next question is decided at it (the no-answer reason says so)."""
    question = "Who won the 2024 European football championship?"
    pipe = Pipeline(Settings(index_root=seed_index_root), embedder=real_embedder)
    fit_prior = pipe.reader.abstention.fit_prior
    assert fit_prior is not None and pipe.reader.abstention.prior is None
    assert pipe.answerable_share() == fit_prior
    first = pipe.ask(question)
    after_one = pipe.answerable_share()
    answerable = [q.question for q in load_jsonl(GOLD).questions if not q.is_impossible]
    pipe.ask_batch(answerable * 3)
    risen = pipe.answerable_share()
    assert after_one is not None and risen is not None and risen > max(after_one, fit_prior)
    again = pipe.ask(question)
    for a in (first, again):
        assert_round_trip(pipe, a)
    if not again.answered:
        assert f"answerable share {pipe.answerable_share():.3f}" in (again.no_answer_reason or "")
    fixed = Pipeline(
        Settings(index_root=seed_index_root, span_answerable_prior="off"), embedder=real_embedder
    )
    assert fixed.answerable_share() is None


def test_sentence_reader_stays_available(seed_index_root: Path, real_embedder: Embedder) -> None:
    pipe = Pipeline(Settings(index_root=seed_index_root, reader="sentence"), embedder=real_embedder)
    assert pipe.reader.kind == "sentence"
    answer = pipe.ask("Who said North Korean workers would be welcomed?")
    assert answer.answered and "Khusnullin" in answer.text
    assert_round_trip(pipe, answer)
    if pipe.reader.abstention.calibration is not None:
        a, b, c = pipe.reader.abstention.calibration
        expected = 1 / (1 + math.exp(-(a * answer.score + b + c)))  # a narrowed span
        assert answer.confidence == pytest.approx(expected)


def test_gold_set_is_well_formed() -> None:
    gold = load_jsonl(GOLD)
    text = (SEEDS / SEED_ID).read_text(encoding="utf-8")
    assert len(gold.questions) >= 30
    assert sum(q.is_impossible for q in gold.questions) >= 5
    for q in gold.questions:
        for a in q.answers:
            assert a.answer_start is not None
            assert text[a.answer_start : a.answer_start + len(a.text)] == a.text


def _gold_run(pipe: Pipeline) -> tuple[int, int, int, int, int]:
    """(answerable, answered, answered with the gold answer in the cited sentence,
    unanswerable, abstained on unanswerable), checking every citation on the way."""
    gold = load_jsonl(GOLD)
    answerable = answered = hits = impossible = abstained = 0
    for q in gold.questions:
        answer = pipe.ask(q.question)
        assert_round_trip(pipe, answer)
        if q.is_impossible:
            impossible += 1
            abstained += not answer.answered
            continue
        answerable += 1
        answered += answer.answered
        quote = answer.citations[0].quote if answer.citations else ""
        hits += any(a.text in quote for a in q.answers)
    return answerable, answered, hits, impossible, abstained


def test_gold_set_with_the_fitted_threshold(seed_pipeline: Pipeline) -> None:
    """The decision on the seed article (default pipeline: reranker and answer verifier):
    every citation round-trips; what is answered is right; every question the article
    cannot answer is abstained on.

    The floors are regression gates set below the figures measured when they were written
    (issue 13's note: 29 of 33 answered, all 8 unanswerables abstained). The verifier is
    fitted on SQuAD (bench/fit_verifier.py), never on these questions.
    """
    answerable, answered, hits, impossible, abstained = _gold_run(seed_pipeline)
    assert answered >= 25, f"answered {answered}/{answerable}"
    assert hits / answered >= 0.9, f"{hits}/{answered} answered correctly"
    assert abstained == impossible, f"abstained on {abstained}/{impossible}"


@pytest.mark.parametrize(
    "no_abstention",
    [
        {
            "reader": "span",
            "span_abstain_margin": float("-inf"),
            "span_verifier_threshold": float("-inf"),
        },
        {"reader": "sentence", "abstain_threshold": float("-inf")},
    ],
    ids=["span", "sentence"],
)
def test_gold_set_without_abstention_finds_most_answers(
    seed_index_root: Path, real_embedder: Embedder, no_abstention: dict[str, object]
) -> None:
    """Retrieval + reading alone: the cited sentence holds the gold answer."""
    pipe = Pipeline(
        Settings(index_root=seed_index_root, **no_abstention),  # type: ignore[arg-type]
        embedder=real_embedder,
    )
    answerable, answered, hits, _, abstained = _gold_run(pipe)
    assert answered == answerable and abstained == 0
    assert hits / answerable >= 0.7, f"{hits}/{answerable}"


def test_incremental_reingest_embeds_nothing(
    seed_index_root: Path, real_embedder: Embedder
) -> None:
    pipe = Pipeline(Settings(index_root=seed_index_root), embedder=real_embedder)
    report = pipe.ingest(load_paths([SEEDS]).documents)
    assert report.unchanged == [SEED_ID] and report.chunks_embedded == 0


def test_filters_and_new_documents(tmp_path: Path, real_embedder: Embedder) -> None:
    pipe = Pipeline(Settings(index_root=tmp_path, abstain_threshold=0.0), embedder=real_embedder)
    pipe.ingest(
        [
            Document("paris.txt", "The Eiffel Tower was completed in 1889 in Paris.", "Paris"),
            Document("rome.txt", "The Colosseum was completed in 80 AD in Rome.", "Rome"),
        ]
    )
    answer = pipe.ask("When was the Colosseum completed?")
    assert answer.doc_id == "rome.txt" and "80" in answer.text
    filtered = pipe.ask("When was the Colosseum completed?", filters={"doc_id": "paris.txt"})
    assert filtered.doc_id in {None, "paris.txt"}
    assert pipe.delete("rome.txt")
    after = pipe.ask("When was the Colosseum completed?")
    assert after.doc_id != "rome.txt"


def test_bad_questions_are_refused(seed_pipeline: Pipeline) -> None:
    for bad in ["", "   ", "x" * (seed_pipeline.settings.max_question_chars + 1)]:
        with pytest.raises(QuestionError):
            seed_pipeline.ask(bad)


def test_answer_serialises_to_json(seed_pipeline: Pipeline) -> None:
    import dataclasses

    answer = seed_pipeline.ask("Who is Marat Khusnullin?")
    payload = json.loads(json.dumps(dataclasses.asdict(answer)))
    assert set(payload) >= {"text", "doc_id", "start", "end", "score", "confidence", "citations"}


SQUAD_DEV = ROOT.parent / "shared" / "data" / "squad" / "dev-v1.1.json.gz"


@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason="needs ../shared/data/squad")
def test_squad_dev_chunks_fit_the_embedder(real_embedder: Embedder) -> None:
    from rag.gold import load_squad
    from rag.ingest import Chunker, embedding_text

    chunker = Chunker(**_chunker_defaults())
    # With the document's title before it (RAG_EMBED_TITLE), the longer of the two inputs.
    longest = max(
        real_embedder.wordpiece_count(embedding_text(d.title, c.text, True))
        for d in load_squad(SQUAD_DEV).documents
        for c in chunker.chunk(d)
    )
    assert longest <= real_embedder.max_seq_length


def _chunker_defaults() -> dict[str, int]:
    s = Settings()
    return {
        "max_tokens": s.chunk_tokens,
        "overlap": s.chunk_overlap,
        "snap_tokens": s.sentence_snap_tokens,
    }


def test_a_streamed_ingest_commits_as_it_goes_and_a_rerun_embeds_only_the_rest(
    tmp_path: Path,
) -> None:
    """An iterable is read as it is ingested, a commit every few chunks; stopped half way
    (the input fails, as a Ctrl-C would), the commits made stay, and the same input again
    embeds only the documents those commits lacked."""
    settings = unit_settings(index_root=tmp_path / "idx")
    docs = [Document(f"d{i}", f"Document {i} is about the number {i}.") for i in range(12)]
    read: list[str] = []

    def stream(stop_at: int | None) -> Iterator[Document]:
        for i, doc in enumerate(docs):
            if i == stop_at:
                raise KeyboardInterrupt
            read.append(doc.id)
            yield doc

    embedder = FakeEmbedder()
    pipe = Pipeline(settings, embedder=embedder)
    with pytest.raises(KeyboardInterrupt):
        pipe.ingest(stream(stop_at=7), commit_every=3)
    # Lazily read: nothing past the stop; three commits of three chunks made it.
    assert read == [d.id for d in docs[:7]]
    assert pipe.counts() == (6, 6)
    embedder.texts_embedded = 0
    report = pipe.ingest(stream(stop_at=None), commit_every=3)
    assert len(report.unchanged) == 6 and len(report.added) == 6
    assert report.chunks_embedded == embedder.texts_embedded == 6
    assert pipe.counts() == (12, 12)
    pipe.close()


def test_a_bad_document_in_a_stream_is_left_out_and_named(tmp_path: Path) -> None:
    """A stream goes on past a bad document (named in the report); a sequence is checked
    whole first, and nothing of it is written."""
    pipe = Pipeline(unit_settings(index_root=tmp_path / "idx"), embedder=FakeEmbedder())
    docs = [Document("a", "Alpha."), Document("..", "A bad id."), Document("b", "Beta.")]
    report = pipe.ingest(iter(docs), commit_every=1)
    assert report.added == ["a", "b"] and list(report.failed) == [".."]
    assert pipe.counts() == (2, 2)
    with pytest.raises(InvalidInput):
        pipe.ingest([Document("d", "Delta."), docs[1]], commit_every=1)
    assert pipe.counts() == (2, 2)
    pipe.close()
