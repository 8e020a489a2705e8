"""SpanReader inference: document windows around passages, spans in document coordinates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from rag.models import Document, Passage, Span
from rag.reader.span import Region, SpanReader, read_rank, read_regions
from rag.reader.span_format import load_rank_weight, save_rank_weight
from rag.reader.span_model import (
    SpanModel,
    Window,
    collate,
    encoder_dtype,
    load_reader,
    save_reader,
)
from rag.text import markup_ranges


def passage(doc: Document, start: int, end: int, pid: int = 0) -> Passage:
    return Passage(pid, doc.id, doc.title, start, end, doc.text[start:end], 1.0)


def seed_reading() -> tuple[Document, list[str], Path]:
    """The seed article, three questions it answers, and the shipped reader's weights."""
    from rag.settings import Settings
    from tests.conftest import SEED_ID, SEEDS

    doc = Document(SEED_ID, (SEEDS / SEED_ID).read_text(encoding="utf-8"))
    questions = [
        "Who said North Korean workers would be welcomed?",
        "When did Russia back new UN sanctions on North Korea?",
        "How many North Koreans worked abroad, by the State Department's estimate?",
    ]
    return doc, questions, Settings().reader_weights


def test_regions_widen_and_merge_per_document() -> None:
    doc = Document("d", "x" * 1000)
    other = Document("e", "y" * 50)
    docs = {"d": doc, "e": other}
    ps = [
        passage(doc, 100, 200),
        passage(doc, 250, 300),
        passage(doc, 800, 900),
        passage(other, 0, 50),
    ]
    assert read_regions(ps, docs, 40) == [
        Region("d", 60, 340),
        Region("d", 760, 940),
        Region("e", 0, 50),
    ]
    assert read_regions(ps, {"e": other}, 40) == [Region("e", 0, 50)]  # unknown documents skipped


def test_read_rank_is_the_best_passage_the_span_was_read_from() -> None:
    doc = Document("d", "x" * 1000)
    other = Document("e", "y" * 1000)
    ps = [passage(other, 0, 100), passage(doc, 500, 600), passage(doc, 100, 200)]
    assert read_rank("d", 150, 160, ps, 40) == 3  # inside the third passage only
    assert read_rank("d", 190, 520, ps, 40) == 2  # overlaps both: the better rank
    assert read_rank("d", 205, 215, ps, 40) == 3  # in the third's read margin
    assert read_rank("d", 470, 480, ps, 40) == 2  # in the second's read margin
    assert read_rank("e", 50, 60, ps, 40) == 1
    assert read_rank("d", 300, 310, ps, 40) == 4  # not read from these passages
    assert read_rank("z", 0, 5, ps, 40) == 4


def test_rank_weight_fit_file_round_trips_and_refuses_a_negative(tmp_path: Path) -> None:
    path = tmp_path / "selection.json"
    assert load_rank_weight(path) == 0.0  # absent: the margin alone
    save_rank_weight(path, 1.5, fitted_on="test")
    assert load_rank_weight(path) == 1.5
    save_rank_weight(path, -1.0)
    with pytest.raises(ValueError, match="rank_weight"):
        load_rank_weight(path)
    with pytest.raises(ValueError, match="rank_weight"):
        SpanReader(tmp_path, rank_weight=-0.5)


def two_passages() -> tuple[dict[str, Document], list[Passage]]:
    """Two documents, the one that does not answer "Who built the ferry?" retrieved first."""
    docs = {
        d.id: d
        for d in (
            Document("a", "The ferry was built by Anna Brask in 1902 at Quillmouth."),
            Document("b", "The bridge was built by Olle Vinge in 1911 at Stenby."),
        )
    }
    return docs, [passage(docs["b"], 0, len(docs["b"].text)), passage(docs["a"], 0, 20)]


@pytest.fixture(scope="module")
def untrained_reader(tmp_path_factory: pytest.TempPathFactory) -> SpanReader:
    folder = tmp_path_factory.mktemp("reader")
    config = {"config": {"max_length": 64, "stride": 16, "max_question_tokens": 16}}
    save_reader(SpanModel.from_base(), folder, config, fp16=True)
    return SpanReader(folder, margin_chars=30, max_answer_tokens=8, batch_size=4)


@pytest.mark.model
def test_spans_are_in_document_coordinates_and_cited_by_whole_sentences(
    untrained_reader: SpanReader,
) -> None:
    head = "Ünïcødé heading.\n\n" + " ".join(f"Sentence {i} is filler." for i in range(30))
    text = head + " The ferry was built by Zoë Lindqvist in 1902. " + head
    doc = Document("docs/ferry.txt", text)
    i = text.index("Zoë")
    # Two chunks whose boundary cuts the answer sentence: the read region spans both.
    ps = [passage(doc, i - 60, i + 2, 0), passage(doc, i + 2, i + 80, 1)]
    batch = untrained_reader.read_batch(
        ["Who built the ferry?", "When?"], [ps, ps[:1]], {doc.id: doc}
    )
    assert len(batch) == 2
    for spans in batch:
        assert spans
        keys = [(s.doc_id, s.start, s.end) for s in spans]
        assert len(keys) == len(set(keys))  # merged on absolute offsets
        assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
        for s in spans:
            assert text[s.start : s.end] == s.text
            assert s.context_start <= s.start < s.end <= s.context_end
            assert i - 60 - 30 <= s.start and s.end <= i + 80 + 30
    assert untrained_reader.read("Who?", [], {doc.id: doc}) == []


@pytest.mark.model
def test_rank_weight_ranks_spans_of_better_ranked_passages_first(
    untrained_reader: SpanReader,
) -> None:
    docs, ps = two_passages()
    q = "Who built the ferry?"
    plain = untrained_reader.read(q, ps, docs)
    ranked = SpanReader(
        untrained_reader.folder, margin_chars=30, max_answer_tokens=8, rank_weight=1e6
    ).read(q, ps, docs)
    assert sorted((s.doc_id, s.start, s.end) for s in plain) == sorted(
        (s.doc_id, s.start, s.end) for s in ranked
    )  # the same candidates, ordered differently
    ranks = [read_rank(s.doc_id, s.start, s.end, ps, 30) for s in ranked]
    assert ranks == sorted(ranks)
    assert {1, 2} <= set(ranks)
    for rank in (1, 2):  # within one rank, by margin
        scores = [s.score for s, r in zip(ranked, ranks, strict=True) if r == rank]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.model
def test_quantized_reader_loads_and_reads(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    config = {"config": {"max_length": 64, "stride": 16, "max_question_tokens": 16}}
    save_reader(SpanModel.from_base(), folder, config, fp16=True)
    doc = Document("d", "Anna Brask built the ferry of Quillmouth in 1902.")
    reader = SpanReader(folder, quantize=True)
    spans = reader.read("Who built the ferry?", [passage(doc, 0, len(doc.text))], {"d": doc})
    assert spans and all(doc.text[s.start : s.end] == s.text for s in spans)


@pytest.mark.model
def test_shipped_int8_reader_finds_the_spans_of_fp32_with_a_scale_per_channel() -> None:
    """Per-channel int8 is the quantisation that keeps quality (per tensor costs 2.3 F1 on
    SQuAD dev): every encoder Linear has it, and on the seed article it picks the same best
    spans as the fp32 model, give or take a word at an edge."""
    doc, questions, weights = seed_reading()
    fp32, int8 = SpanReader(weights), SpanReader(weights, quantize=True)
    whole = [[passage(doc, 0, len(doc.text))]] * len(questions)
    best32 = [spans[0] for spans in fp32.read_batch(questions, whole, {doc.id: doc})]
    best8 = [spans[0] for spans in int8.read_batch(questions, whole, {doc.id: doc})]
    # int8 may move a boundary by a word or two (a title before a name), never to another
    # place in the article; its margins stay within a couple of logits (the no-answer
    # fine-tuned weights give margins of 2.8-4.6 here in fp32, and int8 moved them by 0.6-1.4
    # when this was written: why int8 is not the default, see the README).
    assert all(a.start < b.end and b.start < a.end for a, b in zip(best8, best32, strict=True))
    assert all(abs(a.score - b.score) < 2.0 for a, b in zip(best8, best32, strict=True))
    assert int8._model is not None
    linears = [
        m for m in int8._model.encoder.modules() if hasattr(m, "weight") and callable(m.weight)
    ]
    assert len(linears) == 6 * 6 + 1  # q, k, v, attention out, intermediate, out; pooler
    assert all(m.weight().qscheme() == torch.per_channel_affine for m in linears)


@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=6), multiple=st.integers(1, 96))
def test_collate_pads_to_the_longest_window_rounded_up_to_the_multiple(
    lengths: list[int], multiple: int
) -> None:
    windows = [
        Window(i, [7] * n, [1] * n, offsets=[None] * n, words=[None] * n)
        for i, n in enumerate(lengths)
    ]
    batch = collate(windows, pad_id=0, multiple=multiple)
    width = batch["input_ids"].shape[1]
    assert width % multiple == 0 and max(lengths) <= width < max(lengths) + multiple
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][row, n:].eq(0).all() and batch["input_ids"][row, :n].eq(7).all()
    with pytest.raises(ValueError):
        collate(windows, pad_id=0, multiple=0)


@pytest.mark.model
def test_padding_to_shape_multiples_reads_the_same_spans() -> None:
    """Padded tokens are masked and filler windows' outputs dropped: the same best spans
    and the same candidates, margins within 0.05."""
    doc, questions, weights = seed_reading()
    questions = questions[:2]
    whole = [[passage(doc, 0, len(doc.text))]] * len(questions)
    read = {}
    for pad, batch in ((1, 1), (64, 1), (64, 4), (1, 3)):
        reader = SpanReader(weights, batch_size=5, pad_multiple=pad, batch_multiple=batch)
        read[pad, batch] = reader.read_batch(questions, whole, {doc.id: doc})
    plain = read[1, 1]
    for spans in read.values():
        assert [[(s.start, s.end) for s in q[:3]] for q in spans] == [
            [(s.start, s.end) for s in q[:3]] for q in plain
        ]
        assert all(
            abs(a.score - b.score) < 0.05
            for q, p in zip(spans, plain, strict=True)
            for a, b in zip(q[:3], p[:3], strict=True)
        )
    with pytest.raises(ValueError):
        SpanReader(weights, pad_multiple=0)
    with pytest.raises(ValueError):
        SpanReader(weights, batch_multiple=0)


def test_encoder_dtype_auto_follows_the_cpu_and_refuses_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rag.reader import span_model

    assert encoder_dtype("float32") == torch.float32
    assert encoder_dtype("bfloat16") == torch.bfloat16
    monkeypatch.setattr(span_model, "fast_bfloat16", lambda: True)
    assert encoder_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(span_model, "fast_bfloat16", lambda: False)
    assert encoder_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="float16"):
        encoder_dtype("float16")


@pytest.mark.model
def test_bfloat16_reader_finds_the_spans_of_fp32_with_close_margins() -> None:
    """The encoder in bfloat16, the head in fp32: on the seed article the same best spans
    as fp32 and margins within a fraction of a logit (SQuAD dev: bench/reader_bench.py)."""
    doc, questions, weights = seed_reading()
    fp32, bf16 = SpanReader(weights), SpanReader(weights, dtype="bfloat16")
    whole = [[passage(doc, 0, len(doc.text))]] * len(questions)
    best32 = [spans[0] for spans in fp32.read_batch(questions, whole, {doc.id: doc})]
    best16 = [spans[0] for spans in bf16.read_batch(questions, whole, {doc.id: doc})]
    assert [(a.start, a.end) for a in best16] == [(b.start, b.end) for b in best32]
    assert all(abs(a.score - b.score) < 0.5 for a, b in zip(best16, best32, strict=True))
    assert bf16._model is not None
    assert next(bf16._model.encoder.parameters()).dtype == torch.bfloat16
    assert bf16._model.qa.weight.dtype == torch.float32


@pytest.mark.model
def test_pipeline_uses_the_span_reader_when_asked_and_falls_back_without_weights(
    tmp_path: Path, untrained_reader: SpanReader
) -> None:
    from rag.pipeline import Pipeline
    from rag.settings import Settings
    from tests.conftest import FakeEmbedder

    missing = Settings(index_root=tmp_path / "i1", reader="span", reader_weights=tmp_path / "no")
    assert Pipeline(missing, embedder=FakeEmbedder()).reader.kind == "sentence"
    settings = Settings(
        index_root=tmp_path / "i2",
        reader="span",
        reader_weights=untrained_reader.folder,
        span_abstain_margin=float("-inf"),
        span_verifier_threshold=float("-inf"),
    )
    pipe = Pipeline(settings, embedder=FakeEmbedder())
    assert pipe.reader.kind == "span"
    text = "The ferry of Quillmouth was built by Anna Brask in 1902. It sails daily."
    pipe.ingest([Document("f", text)])
    answer = pipe.ask("Who built the ferry of Quillmouth?")
    assert answer.answered and text[answer.start : answer.end] == answer.text  # type: ignore[misc]
    for c in answer.citations:
        assert text[c.start : c.end] == c.quote
    assert 0.0 <= answer.confidence <= 1.0


@pytest.mark.model
def test_a_fitted_selection_orders_the_candidates(untrained_reader: SpanReader) -> None:
    """The selection reorders the margin-ordered candidates; their features stay those
    computed in margin order, whichever order it chooses."""
    from tests.test_selection import only

    docs, ps = two_passages()
    q = "Who built the ferry?"
    plain = untrained_reader.read(q, ps, docs)
    folder = untrained_reader.folder

    def read(weight: float) -> list[Span]:
        reader = SpanReader(
            folder,
            margin_chars=30,
            max_answer_tokens=8,
            rank_weight=1e6,  # unused with a selection
            selection=only("read_rank_log", weight),
        )
        return reader.read(q, ps, docs)

    for weight, ordered in ((-1.0, sorted), (1.0, lambda r: sorted(r, reverse=True))):
        chosen = read(weight)
        ranks = [read_rank(s.doc_id, s.start, s.end, ps, 30) for s in chosen]
        assert ranks == ordered(ranks) and {1, 2} <= set(ranks)
        assert sorted(chosen, key=lambda s: (s.doc_id, s.start, s.end)) == sorted(
            plain, key=lambda s: (s.doc_id, s.start, s.end)
        )  # the same candidates, features and all
        for rank in (1, 2):  # within one rank (a tie), by margin
            scores = [s.score for s, r in zip(chosen, ranks, strict=True) if r == rank]
            assert scores == sorted(scores, reverse=True)


@pytest.mark.model
def test_rank_weight_and_selection_are_the_fitted_ones_unless_set(
    untrained_reader: SpanReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.reader import SELECTION_FIT_FILE, ReaderConfigError, build_reader, load_selection
    from rag.settings import Settings
    from tests.conftest import FakeEmbedder

    fitted = Settings(reader="span", reader_weights=untrained_reader.folder)
    reader = build_reader(fitted, FakeEmbedder())
    assert isinstance(reader, SpanReader)
    assert reader.selection is not None and reader.selection == load_selection(SELECTION_FIT_FILE)
    assert reader.rank_weight == 0.0  # the rule is unused
    rule = build_reader(fitted.model_copy(update={"span_selection": "rank"}), FakeEmbedder())
    assert isinstance(rule, SpanReader) and rule.selection is None
    assert rule.rank_weight == load_rank_weight(SELECTION_FIT_FILE) > 0
    for weight in (0.0, 2.5):
        chosen = fitted.model_copy(update={"span_rank_weight": weight, "span_selection": "rank"})
        rule = build_reader(chosen, FakeEmbedder())
        assert isinstance(rule, SpanReader)
        assert rule.rank_weight == weight and rule.selection is None
    fit = tmp_path / "span_selection_fit.json"
    monkeypatch.setattr("rag.reader.factory.SELECTION_FIT_FILE", fit)
    for damaged in (
        '{"rank_weight": 1.0, "selection": {"features": ["score"]}}',
        '{"rank_weight": 1.0, "selection": {"features": ["score"], "mean": [NaN], '
        '"scale": [1.0], "weights": [1.0]}}',
        '{"rank_weight": 1',  # a fit cut short
        "[1.5]",
        '{"selection": null}',  # no rank weight for the rule
    ):
        fit.write_text(damaged)
        for mode in ("fitted", "rank"):
            if mode == "rank" and '"rank_weight": 1.0' in damaged:
                continue  # the rule reads only the weight
            settings = fitted.model_copy(update={"span_selection": mode})
            with pytest.raises(ReaderConfigError, match=r"span_selection_fit\.json"):
                build_reader(settings, FakeEmbedder())
    fit.write_text('{"rank_weight": 1.0}')  # a rank weight alone: the rule chooses
    rule = build_reader(fitted, FakeEmbedder())
    assert isinstance(rule, SpanReader) and rule.selection is None and rule.rank_weight == 1.0


@pytest.mark.model
def test_the_checker_reads_the_windows_of_the_selections_best_candidates() -> None:
    """With a selection, the checker reads the windows of the candidates it ranks first,
    and each check stays with its own span: the reader as its own checker gives each span
    its margin, whichever order the selection puts them in."""
    from tests.test_selection import only

    doc, questions, weights = seed_reading()
    ps = [passage(doc, 0, 600, 0), passage(doc, 600, 1400, 1), passage(doc, 1400, 2546, 2)]
    docs = {doc.id: doc}
    plain = SpanReader(weights, batch_size=2).read_batch(questions, [ps] * 3, docs)
    for selection in (only("read_rank_log", 1.0), only("score", -1.0)):
        chosen = SpanReader(weights, batch_size=2, selection=selection)
        checked = SpanReader(weights, batch_size=2, selection=selection, checker=weights)
        for p, c, k in zip(
            plain,
            checked.read_batch(questions, [ps] * 3, docs),
            chosen.read_batch(questions, [ps] * 3, docs),
            strict=True,
        ):
            # The selection's first candidate, checked (its window was read first).
            assert c and (c[0].doc_id, c[0].start, c[0].end) == (k[0].doc_id, k[0].start, k[0].end)
            by_key = {(s.start, s.end): s for s in p}
            for s in c:
                assert s.features["check"] == pytest.approx(s.score, abs=1e-4)
                assert by_key[s.start, s.end].features == {
                    f: v for f, v in s.features.items() if f != "check"
                }


@pytest.mark.model
def test_the_checker_scores_each_span_in_the_window_it_was_read_in(tmp_path: Path) -> None:
    """With the reader itself as its answer checker, every candidate's check is its own
    margin (the same logits at the same tokens, minus the same window's no-answer); a
    checker that reads other windows is refused."""
    doc, questions, weights = seed_reading()
    whole = [[passage(doc, 0, len(doc.text))]] * len(questions)
    plain = SpanReader(weights, batch_size=2).read_batch(questions, whole, {doc.id: doc})
    checked = SpanReader(weights, batch_size=2, checker=weights).read_batch(
        questions, whole, {doc.id: doc}
    )
    assert all("check" not in s.features for q in plain for s in q)
    for p, c in zip(plain, checked, strict=True):
        # The candidates of the windows the checker read (those of the best 4), in order.
        spans = [(s.start, s.end) for s in c]
        assert spans[:4] == [(s.start, s.end) for s in p[:4]]
        assert set(spans) <= {(s.start, s.end) for s in p} and len(spans) > 4
        for s in c:
            assert s.features["check"] == pytest.approx(s.score, abs=1e-4)
            assert {k: v for k, v in s.features.items() if k != "check"} == next(
                x.features for x in p if (x.start, x.end) == (s.start, s.end)
            )
    # A checker of other weights (the reader's start/end head doubled): its own logits
    # are read, so every check is twice the margin.
    model, card = load_reader(weights)
    with torch.no_grad():
        model.qa.weight.mul_(2.0)
        model.qa.bias.mul_(2.0)
    doubled = tmp_path / "doubled"
    save_reader(model, doubled, card, fp16=False)
    twice = SpanReader(weights, batch_size=2, checker=doubled).read_batch(
        questions, whole, {doc.id: doc}
    )
    for c in twice:
        assert all(s.features["check"] == pytest.approx(2 * s.score, abs=2e-3) for s in c)
    other = tmp_path / "checker"
    config = {"config": {"max_length": 64, "stride": 16, "max_question_tokens": 16}}
    save_reader(SpanModel.from_base(), other, config, fp16=True)
    with pytest.raises(ValueError, match="other windows"):
        SpanReader(weights, checker=other).warm_up()
    with pytest.raises(ValueError, match="checker_candidates"):
        SpanReader(weights, checker=weights, checker_candidates=0)


@pytest.mark.model
def test_the_probe_feature_is_read_at_each_span_in_its_own_window(tmp_path: Path) -> None:
    """A probe whose channels are the reader's own start/end head (minus both at [CLS])
    reads each candidate's margin over "no answer": the probe is taken at the very window
    and tokens the span's score was; a reader not asked to read it offers no such feature,
    and a missing or damaged probe file is a configuration error."""
    from rag.reader.base import ReaderConfigError
    from rag.reader.probe import AnswerabilityProbe
    from rag.reader.span_format import CONFIG_FILE, PROBE_FILE, WEIGHTS_FILE

    doc, questions, weights = seed_reading()
    folder = tmp_path / "reader"
    folder.mkdir()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        (folder / name).symlink_to((Path(weights) / name).resolve())
    whole = [[passage(doc, 0, len(doc.text))]] * len(questions)
    plain = SpanReader(folder, batch_size=2).read_batch(questions, whole, {doc.id: doc})
    assert all("probe" not in s.features for q in plain for s in q)
    with pytest.raises(ReaderConfigError, match="no answerability probe"):
        SpanReader(folder, probe=True).warm_up()
    model, _ = load_reader(folder)
    start, end = (tuple(v.tolist()) for v in model.qa.weight.detach())
    cls = tuple(-(a + b) for a, b in zip(start, end, strict=True))
    AnswerabilityProbe((cls, start, end, (0.0,) * len(start)), 0.0).save(folder)
    probed = SpanReader(folder, batch_size=2, probe=True).read_batch(
        questions, whole, {doc.id: doc}
    )
    for p, q in zip(plain, probed, strict=True):
        assert [(s.start, s.end) for s in q] == [(s.start, s.end) for s in p]
        for s, t in zip(p, q, strict=True):
            assert t.features["probe"] == pytest.approx(t.score, abs=2e-3)
            assert {k: v for k, v in t.features.items() if k != "probe"} == s.features
    # Filler windows (batch multiples), padding to shape multiples and bfloat16 states: the
    # probe is still read at each span's own window and tokens.
    shaped = SpanReader(
        folder, batch_size=3, probe=True, dtype="bfloat16", pad_multiple=16, batch_multiple=4
    ).read_batch(questions, whole, {doc.id: doc})
    for q in shaped:
        assert q and all(s.features["probe"] == pytest.approx(s.score, abs=2e-2) for s in q)
    AnswerabilityProbe(((0.0,) * 8,) * 4, 0.0).save(folder)
    with pytest.raises(ReaderConfigError, match="8-wide"):
        SpanReader(folder, probe=True).warm_up()
    (folder / PROBE_FILE).write_text("{}")
    with pytest.raises(ReaderConfigError, match=PROBE_FILE):
        SpanReader(folder, probe=True).warm_up()


@pytest.mark.model
def test_markup_is_read_as_blanks_and_no_answer_holds_any(untrained_reader: SpanReader) -> None:
    link = '<a href="https://www.cnn.com/2023/05/02/us/ferry-builder-lindqvist/index.html">'
    text = " ".join(
        f"{link}Ferry {i} was built</a> by Zoë Lindqvist, https://example.org/{i} says."
        for i in range(6)
    )
    doc = Document("docs/linked.html.txt", text)
    ps = [passage(doc, 0, len(text))]
    markup = markup_ranges(text)

    def crossing(spans: list[Span]) -> list[Span]:
        return [s for s in spans if any(a < s.end and s.start < b for a, b in markup)]

    blanked = untrained_reader.read("Who built the ferry?", ps, {doc.id: doc})
    assert blanked and not crossing(blanked)
    for s in blanked:
        assert text[s.start : s.end] == s.text
    as_words = SpanReader(
        untrained_reader.folder, margin_chars=30, max_answer_tokens=8, skip_markup=False
    ).read("Who built the ferry?", ps, {doc.id: doc})
    assert crossing(as_words)  # the same reader, reading the tags as words, answers from them
