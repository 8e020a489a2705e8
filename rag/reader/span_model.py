"""The span reader's model: all-MiniLM-L6-v2's BERT encoder with a start/end head.

Windows of text are encoded as ``[CLS] question [SEP] context [SEP]`` with the encoder's own
wordpiece tokenizer (the fast one, for its offset mapping); long contexts are cut into
overlapping windows (doc stride). Every candidate span carries the character offsets of its
first and last wordpiece in the *context*, so answers map back to document coordinates by
construction. Position 0 (``[CLS]``) is the "no answer" target and score.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rag.ingest import default_model_path
from rag.reader.span_format import CONFIG_FILE, WEIGHTS_FILE, WindowConfig

CLS_INDEX = 0


def load_tokenizer(model_path: Path | None = None) -> Any:
    """The encoder's fast wordpiece tokenizer (offset mapping), from the installed package."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path or default_model_path()), use_fast=True)


class SpanModel(nn.Module):
    """BERT encoder + linear start/end head."""

    def __init__(self, encoder: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.qa = nn.Linear(hidden_size, 2)

    @classmethod
    def from_base(cls, model_path: Path | None = None) -> SpanModel:
        """The pretrained sentence encoder with a freshly initialised head."""
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(str(model_path or default_model_path()))
        return cls(encoder, encoder.config.hidden_size)

    @classmethod
    def from_config(cls, model_path: Path | None = None) -> SpanModel:
        """The architecture only (weights come from a saved state dict)."""
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(str(model_path or default_model_path()))
        return cls(AutoModel.from_config(config), config.hidden_size)  # type: ignore[no-untyped-call]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, end, _ = self.read(input_ids, attention_mask, token_type_ids)
        return start, end

    def read(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start and end logits, and the last-layer states they were read from (for the
        answerability probe, ``rag.reader.probe``)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        # The head reads in its own dtype (fp32 when the encoder runs in bfloat16: the
        # logits' small differences decide the span and the answer decision).
        logits = self.qa(hidden.to(self.qa.weight.dtype))
        start, end = logits[..., 0].float(), logits[..., 1].float()
        # Padding can never be a span boundary.
        mask = attention_mask == 0
        return start.masked_fill(mask, -1e4), end.masked_fill(mask, -1e4), hidden


@dataclass(frozen=True, slots=True)
class Window:
    """One encoded window: which input it came from, and where its context tokens point."""

    sample: int
    input_ids: list[int]
    token_type_ids: list[int]
    # Per token: (start, end) character offsets in the sample's context, or None for
    # question and special tokens.
    offsets: list[tuple[int, int] | None]
    # Per token: the character range of the whole word it is a piece of (the encoder's
    # pre-tokenizer words, split at white space and punctuation; the pieces inside this
    # window), or None where ``offsets`` is None. Answers are cut at these, never inside a
    # word ("sarmament" of "disarmament").
    words: list[tuple[int, int] | None]


def encode_windows(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    window: WindowConfig,
) -> list[Window]:
    """Windows of (question, context) pairs, with context character offsets per token.

    Questions are clipped so that every window keeps more context tokens than ``stride``
    (3 special tokens: [CLS] and two [SEP])."""
    max_length, stride = window.max_length, window.stride
    max_question_tokens = window.max_question_tokens
    max_question_tokens = max(1, min(max_question_tokens, max_length - stride - 4))
    questions = _clip_questions(tokenizer, questions, max_question_tokens)
    enc = tokenizer(
        list(questions),
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows = []
    for i, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(i)
        offsets = [
            (int(o[0]), int(o[1])) if s == 1 else None
            for o, s in zip(enc["offset_mapping"][i], seq, strict=True)
        ]
        windows.append(
            Window(
                sample=int(enc["overflow_to_sample_mapping"][i]),
                input_ids=list(ids),
                token_type_ids=list(enc["token_type_ids"][i]),
                offsets=offsets,
                words=_word_ranges(offsets, enc.word_ids(i)),
            )
        )
    return windows


def _word_ranges(
    offsets: Sequence[tuple[int, int] | None], word_ids: Sequence[int | None]
) -> list[tuple[int, int] | None]:
    """Per context token, the character range of the word its pieces make up (first
    piece's start, last piece's end), from the tokenizer's word ids; linear in the window."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for o, w in zip(offsets, word_ids, strict=True):
        if o is None or w is None:
            continue
        first.setdefault(w, o[0])
        last[w] = o[1]
    return [
        None if o is None or w is None else (first[w], last[w])
        for o, w in zip(offsets, word_ids, strict=True)
    ]


# The end of a sentence inside a question (before more text): what context sentences end with.
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)]*\s+(?=\S)")


def _clip_questions(tokenizer: Any, questions: Sequence[str], max_tokens: int) -> list[str]:
    """Each question cut to ``max_tokens`` wordpieces (at a character offset of the
    tokenizer); one batched tokenizer call for all of them. A question too long that opens
    with sentences of context (a news quiz's "X happened this week. Which ...?") loses its
    first sentences, whole, until it fits, so that what is asked stays; only what still
    does not fit is cut at its end."""
    if not questions:
        return []
    enc = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"], strict=True):
        if len(ids) <= max_tokens:
            out.append(q)
            continue
        first = 0  # the first token kept: after the fewest leading sentences that make it fit
        for match in _SENTENCE_END.finditer(q):
            after = next((i for i, (a, _) in enumerate(offsets) if a >= match.end()), len(ids))
            if after >= len(ids):  # nothing the tokenizer keeps follows (e.g. "\ufffd")
                break
            first = after
            if len(ids) - first <= max_tokens:
                break
        last = min(len(ids), first + max_tokens) - 1
        out.append(q[offsets[first][0] : offsets[last][1]])
    return out


def collate(windows: Sequence[Window], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest window (dynamic padding), rounded up to a multiple of
    ``multiple`` tokens: a few shapes instead of one per length, so that the kernels
    (oneDNN caches one per matrix shape) and the allocator's freed blocks of earlier
    batches serve the next."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    n = max(len(w.input_ids) for w in windows)
    n = -(-n // multiple) * multiple
    ids = [w.input_ids + [pad_id] * (n - len(w.input_ids)) for w in windows]
    types = [w.token_type_ids + [0] * (n - len(w.token_type_ids)) for w in windows]
    mask = [[1] * len(w.input_ids) + [0] * (n - len(w.input_ids)) for w in windows]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "token_type_ids": torch.tensor(types, dtype=torch.long),
    }


def save_reader(model: SpanModel, folder: Path, config: dict[str, Any], fp16: bool) -> None:
    """Weights (safetensors, fp16 or fp32) and the reader's config/model card data."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_reader(folder: Path, base: Path | None = None) -> tuple[SpanModel, dict[str, Any]]:
    """A saved reader, in fp32, with its config (``base``: the encoder's config folder,
    by default the installed package's)."""
    from safetensors.torch import load_file

    model = SpanModel.from_config(base)
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    model.load_state_dict(state)
    model.eval()
    config: dict[str, Any] = json.loads((folder / CONFIG_FILE).read_text())
    return model, config


@dataclass(frozen=True, slots=True)
class SpanScore:
    """A candidate answer of one input: context character range, span and null logits."""

    sample: int
    start: int
    end: int
    score: float
    null_score: float
    # Where the logits were read: the window (index into ``decode``'s ``windows``) and the
    # start and end tokens, so that another model's logits over the same window can score
    # the same span (the answer checker).
    window: int = -1
    start_token: int = -1
    end_token: int = -1


def decode(
    windows: Sequence[Window],
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    max_answer_tokens: int,
    top_n: int = 20,
) -> list[SpanScore]:
    """Candidate spans of every window (top ``top_n`` starts x ends, inside the context,
    at most ``max_answer_tokens`` long), best first, each widened to whole words (a start
    or end inside a word moves to the word's edge; two candidates may so become one span,
    the caller keeps the best). ``null_score`` is the window's CLS start + end logit: how
    strongly this window says "no answer here"."""
    out: list[SpanScore] = []
    starts_all = start_logits.float().numpy()
    ends_all = end_logits.float().numpy()
    for i, w in enumerate(windows):
        n = len(w.input_ids)
        s_log, e_log = starts_all[i, :n], ends_all[i, :n]
        null = float(s_log[CLS_INDEX] + e_log[CLS_INDEX])
        starts = s_log.argsort()[::-1][:top_n]
        ends = e_log.argsort()[::-1][:top_n]
        for s in starts:
            os_ = w.words[s]
            if os_ is None:
                continue
            for e in ends:
                oe = w.words[e]
                if oe is None or e < s or e - s + 1 > max_answer_tokens:
                    continue
                out.append(
                    SpanScore(
                        w.sample, os_[0], oe[1], float(s_log[s] + e_log[e]), null, i, int(s), int(e)
                    )
                )
    out.sort(key=lambda c: -c.score)
    return out


def fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX): there
    the encoder in bfloat16 is several times faster than fp32; elsewhere bfloat16 is
    emulated and slower."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def encoder_dtype(name: str) -> torch.dtype:
    """The encoder's dtype for a ``span_dtype`` setting: "float32", "bfloat16", or "auto"
    (bfloat16 where ``fast_bfloat16``, else float32)."""
    if name == "auto":
        return torch.bfloat16 if fast_bfloat16() else torch.float32
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"span dtype must be auto, float32 or bfloat16, got {name!r}")
    return getattr(torch, name)  # type: ignore[no-any-return]


def quantize_encoder(encoder: nn.Module, per_channel: bool = True) -> nn.Module:
    """int8 dynamic quantisation of the encoder's Linear layers, by default one scale per
    output channel: one scale per tensor costs 2.3 F1 on SQuAD dev, one per channel 0.4-1.3,
    at the same speed (bench/reader_bench.py). The 2-logit span head stays fp32, since its
    small logit differences decide the span."""
    qconfig = (
        torch.ao.quantization.per_channel_dynamic_qconfig
        if per_channel
        else torch.ao.quantization.default_dynamic_qconfig
    )
    with warnings.catch_warnings():  # torch.ao's notices that it moves to torchao one day
        # (torch is pinned, so they change nothing here)
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            encoder, {nn.Linear: qconfig}, dtype=torch.qint8
        )
    return quantized
