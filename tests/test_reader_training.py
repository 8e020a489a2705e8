"""Span reader training: offsets and targets, a tiny run whose loss falls, save/load and
resume that reproduce the model exactly."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings, strategies as st

from rag.gold import GoldAnswer, GoldQuestion, GoldSet
from rag.ingest import default_model_path
from rag.models import Document
from rag.reader.span_format import WindowConfig
from rag.reader.span_model import (
    CLS_INDEX,
    collate,
    decode,
    encode_windows,
    load_reader,
    load_tokenizer,
)
from rag.reader.training import (
    ReaderTrainer,
    TrainConfig,
    TrainExample,
    boundary_error,
    build_examples,
    featurize,
    model_card,
    span_targets,
    teacher_targets,
)

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parent.parent

NAMES = ["Anna Brask", "Tobias Wrenfield", "Marat Khusnullin", "Zoë Lindqvist", "José Núñez"]
PLACES = ["Quillmouth", "Østerby", "Kraków", "東京", "São Paulo"]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer()


def tiny_gold() -> GoldSet:
    gold = GoldSet()
    for i, (name, place) in enumerate(zip(NAMES, PLACES, strict=True)):
        text = f"The ferry of {place} was built in {1900 + i} by {name}. It sails daily."
        doc = Document(f"d{i}", text, "Ferries", {"article": "Ferries"})
        gold.documents.append(doc)
        for j, (q, a) in enumerate(
            [(f"Who built the ferry of {place}?", name), (f"Where is {name}'s ferry?", place)]
        ):
            gold.questions.append(
                GoldQuestion(f"q{i}-{j}", q, (GoldAnswer(a, text.index(a)),), doc.id)
            )
    return gold


def test_examples_are_seeded_and_negatives_come_from_the_same_article() -> None:
    gold = tiny_gold()
    a = build_examples(gold, negative_ratio=1.0, seed=3)
    assert a == build_examples(gold, negative_ratio=1.0, seed=3)
    assert a != build_examples(gold, negative_ratio=1.0, seed=4)
    positives = [e for e in a if e.start >= 0]
    negatives = [e for e in a if e.start < 0]
    assert len(positives) == len(negatives) == len(gold.questions)
    for e in positives:
        assert e.context[e.start : e.end] in NAMES + PLACES
    texts = {d.text for d in gold.documents}
    assert all(e.context in texts for e in negatives)


def test_unanswerable_questions_are_negatives_on_their_own_paragraph() -> None:
    """SQuAD v2.0's unanswerables train "no answer" where it is hardest: the paragraph the
    question was written about."""
    gold = tiny_gold()
    doc = gold.documents[0]
    gold.questions.append(GoldQuestion("impossible", "Who sank the ferry?", (), doc.id))
    examples = build_examples(gold, negative_ratio=0.0, seed=0)
    (neg,) = [e for e in examples if e.start < 0]
    assert (neg.question, neg.context, neg.end) == ("Who sank the ferry?", doc.text, -1)
    assert len(examples) == len(gold.questions)


@pytest.mark.parametrize("answer", ["Zoë Lindqvist", "東京", "Kraków 🚢", "São Paulo"])
def test_offsets_map_tricky_text_back_exactly(tokenizer: object, answer: str) -> None:
    context = f"Ünïcødé prelude — 🚢 emoji, then {answer}, then more text after it."
    start = context.index(answer)
    (w,) = encode_windows(tokenizer, ["Who?"], [context], WindowConfig(64, 16, 16))
    s, e = span_targets(w, start, start + len(answer))
    assert s != CLS_INDEX
    a, b = w.offsets[s], w.offsets[e]
    assert a is not None and b is not None
    assert context[a[0] : b[1]] == answer


def test_answer_at_a_window_edge_targets_cls_where_it_is_cut(tokenizer: object) -> None:
    filler = " ".join(f"word{i}" for i in range(60))
    context = f"{filler} The answer is Tobias Wrenfield of Quillmouth. {filler}"
    start = context.index("Tobias Wrenfield")
    windows = encode_windows(tokenizer, ["Who?"], [context], WindowConfig(48, 16, 8))
    assert len(windows) > 2
    found = 0
    for w in windows:
        s, e = span_targets(w, start, start + len("Tobias Wrenfield"))
        inside = [o for o in w.offsets if o is not None]
        whole = inside[0][0] <= start and start + len("Tobias Wrenfield") <= inside[-1][1]
        if whole:
            found += 1
            assert context[w.offsets[s][0] : w.offsets[e][1]] == "Tobias Wrenfield"  # type: ignore[index]
        else:
            assert (s, e) == (CLS_INDEX, CLS_INDEX)
    assert found >= 1
    # Decoded spans of every window map to the right characters of the context.
    logits = torch.zeros((len(windows), max(len(w.input_ids) for w in windows)))
    for c in decode(windows, logits, logits, 5):
        assert 0 <= c.start < c.end <= len(context)


@pytest.mark.parametrize("word", ["disarmament", "Wrenfield", "Khusnullin", "40km"])
def test_a_span_starting_or_ending_inside_a_word_is_widened_to_the_word(
    tokenizer: object, word: str
) -> None:
    context = f"It was agreed, after {word} talks, in Quillmouth."
    (w,) = encode_windows(tokenizer, ["What?"], [context], WindowConfig(64, 16, 16))
    a = context.index(word)
    pieces = [i for i, o in enumerate(w.offsets) if o is not None and a <= o[0] < a + len(word)]
    assert len(pieces) >= 2  # the word is several wordpieces
    # The model's best span is one continuation piece ("##sar").
    start = torch.full((1, len(w.input_ids)), -5.0)
    end = torch.full((1, len(w.input_ids)), -5.0)
    start[0, pieces[1]] = 5.0
    end[0, pieces[1]] = 5.0
    best = decode([w], start, end, 5, top_n=3)[0]
    assert context[best.start : best.end] == word

    # No decoded candidate begins or ends inside a run of letters and digits.
    def inside(i: int) -> bool:
        return 0 < i < len(context) and context[i - 1].isalnum() and context[i].isalnum()

    for c in decode([w], start, end, 5, top_n=len(w.input_ids)):
        assert not inside(c.start) and not inside(c.end)


def _cfg(**kw: object) -> TrainConfig:
    base = dict(max_length=64, stride=16, batch_size=8, lr=5e-4, warmup_ratio=0.1, epochs=40.0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_tiny_run_loss_falls_and_export_round_trips(tmp_path: Path, tokenizer: object) -> None:
    gold = tiny_gold()
    cfg = _cfg(negative_ratio=0.5, plan_examples=300)
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed)
    losses: list[float] = []
    trainer = ReaderTrainer(cfg, tmp_path / "run")
    trainer.run(examples, max_steps=30, on_step=lambda e: losses.append(float(e["loss"])))  # type: ignore[arg-type]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses

    feats = featurize(tokenizer, examples[:6], cfg)
    batch = collate([f.window for f in feats], tokenizer.pad_token_id)  # type: ignore[attr-defined]
    trainer.model.eval()
    with torch.inference_mode():
        s0, e0 = trainer.model(**batch)
    trainer.export(tmp_path / "fp32", fp16=False, extra={})
    trainer.export(tmp_path / "fp16", fp16=True, extra={})
    for folder, tol in [("fp32", 0.0), ("fp16", 0.05)]:
        model, card = load_reader(tmp_path / folder)
        assert card["training"]["steps"] == 30 and card["config"]["seed"] == cfg.seed
        with torch.inference_mode():
            s1, e1 = model(**batch)
        assert torch.allclose(s0, s1, atol=tol) and torch.allclose(e0, e1, atol=tol), folder
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * (
        tmp_path / "fp32" / "model.safetensors"
    ).stat().st_size

    # --init continues the exported run's data position; --fine-tune starts other data
    # from its beginning, from the same weights.
    seen = trainer.state.examples_done
    assert seen > 0
    assert ReaderTrainer(cfg, tmp_path / "c", init=tmp_path / "fp32").state.examples_done == seen
    tuned = ReaderTrainer(cfg, tmp_path / "t", init=tmp_path / "fp32", fine_tune=True)
    assert tuned.state.examples_done == 0
    assert tuned.run(examples, max_steps=2).steps == 2
    # The fine-tuned card says what it was tuned on and keeps the run it started from.
    command = "rag train-reader t.json --init w --fine-tune"
    facts = {"command": command, "train_data": "t.json", "fine_tune": True}
    tuned.export(tmp_path / "tuned", fp16=True, extra=facts)
    card = json.loads((tmp_path / "tuned" / "reader.json").read_text())
    assert card["earlier_runs"][-1]["steps"] == trainer.state.steps
    text = (tmp_path / "tuned" / "README.md").read_text()
    assert "**Fine-tuned**" in text and "`t.json`" in text and f"`{command}`" in text


def test_resume_continues_exactly(tmp_path: Path) -> None:
    gold = tiny_gold()
    cfg = _cfg(plan_examples=100)
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed)
    straight = ReaderTrainer(cfg, tmp_path / "a")
    straight.run(examples, max_steps=4)
    first = ReaderTrainer(cfg, tmp_path / "b")
    first.run(examples, max_steps=2)
    second = ReaderTrainer(cfg, tmp_path / "b")
    assert second.load_checkpoint()
    assert second.state.steps == 2
    second.run(examples, max_steps=2)
    assert second.state.examples_done == straight.state.examples_done
    for (name, a), b in zip(
        straight.model.state_dict().items(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_bf16_autocast_on_the_cpu_trains_fp32_weights_and_says_so(tmp_path: Path) -> None:
    """``cpu_bfloat16``: the products in bf16, the weights and their updates in fp32, the
    loss falling as in fp32; the model card records the arithmetic."""
    gold = tiny_gold()
    cfg = _cfg(negative_ratio=0.5, plan_examples=300)
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed)
    losses: list[float] = []
    trainer = ReaderTrainer(cfg, tmp_path / "run", cpu_bfloat16=True)
    trainer.run(examples, max_steps=30, on_step=lambda e: losses.append(float(e["loss"])))  # type: ignore[arg-type]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    trainer.export(tmp_path / "w", fp16=True, extra={})
    _, card = load_reader(tmp_path / "w")
    assert card["training"]["bf16_autocast"] is True
    plain = ReaderTrainer(cfg, tmp_path / "plain")
    plain.export(tmp_path / "p", fp16=True, extra={})
    assert load_reader(tmp_path / "p")[1]["training"]["bf16_autocast"] is False
    # A run is resumed in the arithmetic it was started in.
    with pytest.raises(ValueError, match="bf16 autocast"):
        ReaderTrainer(cfg, tmp_path / "run").load_checkpoint()
    assert ReaderTrainer(cfg, tmp_path / "run", cpu_bfloat16=True).load_checkpoint()


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    examples = [TrainExample("Who?", "Anna built it.", 0, 4)] * 8
    ReaderTrainer(_cfg(), tmp_path / "r").run(examples, max_steps=1)
    with pytest.raises(ValueError, match="other settings"):
        ReaderTrainer(_cfg(lr=1e-3), tmp_path / "r").load_checkpoint()


def _squad_json(gold: GoldSet) -> dict[str, object]:
    """``gold`` written back as one SQuAD v1.1 article (what the device script reads)."""
    paragraphs = [
        {
            "context": d.text,
            "qas": [
                {
                    "id": q.id,
                    "question": q.question,
                    "answers": [
                        {"text": a.text, "answer_start": a.answer_start} for a in q.answers
                    ],
                }
                for q in gold.questions
                if q.doc_id == d.id
            ],
        }
        for d in gold.documents
    ]
    return {"version": "1.1", "data": [{"title": "Ferries", "paragraphs": paragraphs}]}


def test_training_needs_neither_faiss_nor_the_web_stack() -> None:
    """The GPU machine has torch and transformers but no FAISS, FastAPI or pydantic: the
    training code must import without them."""
    blocked = ["faiss", "fastapi", "pydantic", "pydantic_settings", "sentence_transformers"]
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "import rag.reader.training, rag.gold\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_device_script_fits_the_schedule_curves_and_splits_the_weights(tmp_path: Path) -> None:
    """bench/train_reader_device.py end to end on a tiny set: a learning curve point per
    segment, a model card with the command, and weight parts that rejoin to the export."""
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps(_squad_json(tiny_gold())))
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "bench/train_reader_device.py",
        *("--train", str(squad), "--dev", str(squad), "--base", str(default_model_path())),
        *("--out", str(tmp_path / "run"), "--export", str(out), "--minutes", "0.05"),
        *("--batch-size", "4", "--probe-steps", "4", "--segments", "2", "--split-mb", "8"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((out / "reader.json").read_text())
    assert 1 <= len(card["learning_curve"]) <= 2
    assert card["dev_gold_paragraph_all"]["questions"] == len(tiny_gold().questions)
    assert card["command"].startswith("python3 bench/train_reader_device.py")
    assert "Learning curve" in (out / "README.md").read_text()
    parts = sorted(out.glob("model.safetensors.part*"), key=lambda p: int(p.suffix[5:]))
    assert len(parts) >= 2 and all(p.stat().st_size <= 8 * 2**20 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    assert joined == (tmp_path / "run" / "export" / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("prediction", "golds", "kind"),
    [
        (
            "UN Security Council sanctions imposed on it",
            ["UN Security Council sanctions"],
            "too_long",
        ),
        ("Security Council", ["UN Security Council sanctions"], "too_short"),
        ("General Assembly", ["UN Security Council sanctions"], None),
        ("", ["UN Security Council sanctions"], None),
        ("Councils", ["Council"], None),  # whole words only
        ("the 1990 war", ["war", "1990 war"], "too_long"),
    ],
)
def test_boundary_error_tells_span_end_drift_from_wrong_answers(
    prediction: str, golds: list[str], kind: str | None
) -> None:
    assert boundary_error(prediction, golds) == kind


def test_a_question_too_long_loses_its_opening_sentences_not_what_it_asks(
    tokenizer: Any,
) -> None:
    """A news quiz question opens with context ("X happened this week. How many ...?"):
    past the question's token limit, the fewest whole leading sentences go, and what is
    asked stays; a question with no sentence to drop is cut at its end, as before."""
    context = "Tobias Wrenfield was sentenced to twelve years in Quillmouth."
    opening = "Marat Khusnullin said in Quillmouth this week that the long trial was over. "
    asked = "How many years was the sentence?"

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def question_ids(question: str, limit: int) -> list[int]:
        (w,) = encode_windows(tokenizer, [question], [context], WindowConfig(160, 16, limit))
        kinds = zip(w.input_ids, w.token_type_ids, strict=True)
        return [t for t, kind in kinds if kind == 0][1:-1]  # without [CLS] and [SEP]

    one, tail = len(ids(opening)), len(ids(asked))
    assert question_ids(opening * 3 + asked, tail + 2) == ids(asked)
    # Room for one opening sentence: one stays.
    assert question_ids(opening * 3 + asked, one + tail + 2) == ids(opening + asked)
    long_one = "Which of these words " + "word " * 40 + "comes first?"
    assert question_ids(long_one, 16) == ids(long_one)[:16]
    assert question_ids("Who?", 16) == ids("Who?")
    # Nothing the tokenizer keeps after the last sentence end: cut at the end, never whole.
    odd = "word " * 60 + "end. \ufffd"
    assert question_ids(odd, 16) == ids(odd)[:16]


def test_model_card_states_an_interpolation_recipe() -> None:
    """An interpolated reader's card names both weight sets, the weight and the command; a
    card without one says nothing of it."""
    card: dict[str, Any] = {
        "base_model": "m",
        "config": {"negative_ratio": 0.25},
        "training": {"steps": 3, "windows_seen": 9, "seconds": 36.0, "examples_seen": 8},
        "command": "rag train-reader d.json",
    }
    assert "Interpolated" not in model_card(card, fp16=True)
    card["interpolation"] = {
        "alpha": 0.3,
        "base": "runs/a",
        "tuned": "runs/b",
        "command": "python bench/reader_soup.py --alphas 0.3",
        "base_command": "rag train-reader a.json",
    }
    text = model_card(card, fp16=True)
    assert "(1 - 0.3) x `runs/a` + 0.3 x `runs/b`" in text
    assert "`python bench/reader_soup.py --alphas 0.3`" in text
    assert "`rag train-reader a.json`" in text


CONTEXT = "The ferries of the north are old. "


def taught(gold: GoldSet) -> tuple[GoldSet, dict[str, str]]:
    """``gold`` with a context sentence before every question, and per question id the
    question without it (what a distillation teacher reads)."""
    given_context = GoldSet(
        documents=gold.documents,
        questions=[dataclasses.replace(q, question=CONTEXT + q.question) for q in gold.questions],
    )
    return given_context, {q.id: q.question for q in gold.questions}


def test_teacher_questions_ride_along_without_changing_the_draws() -> None:
    gold, plain = taught(tiny_gold())
    with_teacher = build_examples(gold, 0.5, 3, plain)
    assert [dataclasses.replace(e, teacher_question=None) for e in with_teacher] == (
        build_examples(gold, 0.5, 3)
    )
    assert all(e.teacher_question == e.question[len(CONTEXT) :] for e in with_teacher)


def test_teacher_windows_only_where_each_reads_the_paragraph_in_one_window(
    tokenizer: object,
) -> None:
    short = TrainExample(CONTEXT + "Who built it?", "Anna built it in 1901.", 0, 4, "Who built it?")
    long_text = " ".join(f"Sentence {i} says little about ferries." for i in range(40))
    long = TrainExample(CONTEXT + "Who built it?", long_text, -1, -1, "Who built it?")
    plain = TrainExample("Who built it?", "Anna built it in 1901.", 0, 4)
    feats = featurize(tokenizer, [short, long, plain], _cfg())
    by_sample: dict[int, list[object]] = {}
    for f in feats:
        by_sample.setdefault(f.window.sample, []).append(f.teacher)
    assert len(by_sample[0]) == 1 and by_sample[0][0] is not None
    teacher_text = tokenizer.decode(by_sample[0][0].input_ids)  # type: ignore[attr-defined]
    assert "who built it" in teacher_text and "ferries" not in teacher_text
    assert len(by_sample[1]) > 1 and all(t is None for t in by_sample[1])
    assert by_sample[2] == [None]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 20.0))
def test_teacher_targets_are_the_teachers_distribution_on_shared_positions(
    seed: int, scale: float
) -> None:
    """[CLS] to [CLS], each paragraph token to its twin, nothing on the question: the
    targets are the teacher's softmax over those positions, renormalised."""
    tok = load_tokenizer()
    # Accents and Hangul: pieces of one character share its offsets, paired in order.
    text = "The ferry of São Paulo was built in 1901 by 한국 Núñez in Kraków."
    cfg = _cfg()
    (student,) = featurize(tok, [TrainExample(CONTEXT + "Who built it?", text, -1, -1)], cfg)
    (teacher,) = featurize(tok, [TrainExample("Who built it?", text, -1, -1)], cfg)
    g = torch.Generator().manual_seed(seed)
    n = len(teacher.window.input_ids)
    t_start, t_end = scale * torch.randn(n, generator=g), scale * torch.randn(n, generator=g)
    length = len(student.window.input_ids) + 3
    p_start, p_end = teacher_targets(student.window, teacher.window, t_start, t_end, length)
    shared_t = [0] + [i for i, o in enumerate(teacher.window.offsets) if o is not None]
    shared_s = [0] + [i for i, o in enumerate(student.window.offsets) if o is not None]
    assert len(shared_t) == len(shared_s)
    for p, logits in ((p_start, t_start), (p_end, t_end)):
        want = torch.softmax(logits[shared_t], dim=-1)
        assert torch.allclose(p[shared_s], want, atol=1e-6)
        assert abs(float(p.sum()) - 1.0) < 1e-5
        others = [i for i in range(length) if i not in shared_s]
        assert float(p[others].abs().sum()) == 0.0


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path: Path) -> None:
    """Two students trained alike from the base encoder on questions given a context
    sentence, one also learning a teacher reading them without it: that one ends nearer
    the teacher (the distillation term, measured the same way for both)."""
    cfg = _cfg(negative_ratio=0.5, plan_examples=300)
    # A teacher that answers each question with its paragraph's other answer, so that what
    # it teaches differs from the gold spans the students learn in any case.
    crossed = tiny_gold()
    crossed.questions = [
        dataclasses.replace(q, answers=other.answers)
        for q, other in zip(
            crossed.questions,
            [crossed.questions[i ^ 1] for i in range(len(crossed.questions))],
            strict=True,
        )
    ]
    teacher = ReaderTrainer(cfg, tmp_path / "teacher")
    teacher.run(build_examples(crossed, cfg.negative_ratio, cfg.seed), max_steps=30)
    teacher.export(tmp_path / "t", fp16=False, extra={})
    gold, plain = taught(tiny_gold())
    examples = build_examples(gold, cfg.negative_ratio, cfg.seed, plain)
    distilled = ReaderTrainer(
        dataclasses.replace(cfg, distill_weight=1.0), tmp_path / "d", teacher=tmp_path / "t"
    )
    alone = ReaderTrainer(cfg, tmp_path / "a")
    pad = distilled.tokenizer.pad_token_id
    feats = featurize(distilled.tokenizer, examples[:16], cfg)
    assert all(f.teacher is not None for f in feats)
    batch = collate([f.window for f in feats], pad)
    gaps = {}
    for name, student in (("distilled", distilled), ("alone", alone)):
        student.run(examples, max_steps=20)
        student.model.eval()
        with torch.inference_mode():
            s_log, e_log = student.model(**batch)
            # Measured the same way for both: against the distilled run's teacher.
            gaps[name] = float(distilled.distill_loss(feats, s_log, e_log, pad))
    assert gaps["distilled"] < gaps["alone"], gaps


def test_resume_accepts_a_checkpoint_from_before_a_setting_and_checks_the_teacher(
    tmp_path: Path,
) -> None:
    """A checkpoint written before ``distill_weight`` existed resumes as weight 0; one
    trained with a teacher resumes only with that teacher."""
    cfg = _cfg(negative_ratio=0.5, plan_examples=300)
    examples = build_examples(tiny_gold(), cfg.negative_ratio, cfg.seed)
    ReaderTrainer(cfg, tmp_path / "old").run(examples, max_steps=2)
    path = tmp_path / "old" / "checkpoint.pt"
    ck = torch.load(path, weights_only=False)
    del ck["config"]["distill_weight"], ck["teacher"]
    torch.save(ck, path)
    assert ReaderTrainer(cfg, tmp_path / "old").load_checkpoint()

    ReaderTrainer(cfg, tmp_path / "teacher").export(tmp_path / "t", fp16=False, extra={})
    taught_cfg = dataclasses.replace(cfg, distill_weight=1.0)
    ReaderTrainer(taught_cfg, tmp_path / "run", teacher=tmp_path / "t").run(examples, max_steps=2)
    (tmp_path / "t2").mkdir()
    for f in (tmp_path / "t").iterdir():
        (tmp_path / "t2" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="teacher"):
        ReaderTrainer(taught_cfg, tmp_path / "run", teacher=tmp_path / "t2").load_checkpoint()
    assert ReaderTrainer(taught_cfg, tmp_path / "run", teacher=tmp_path / "t").load_checkpoint()
    with pytest.raises(ValueError, match="go together"):
        ReaderTrainer(cfg, tmp_path / "x", teacher=tmp_path / "t")
