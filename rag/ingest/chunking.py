"""Token-window chunking with exact character offsets.

The text is encoded once with tiktoken (cl100k_base, loaded from the project's own copy of
the BPE file and sha256-checked). Each token's byte length gives its byte offset; byte
offsets map to character offsets through the UTF-8 lengths of the characters. A token that
splits a multi-byte character is widened to the whole character (start floors, end ceils),
so ``document.text[chunk.start:chunk.end] == chunk.text`` holds by construction and the
chunks cover every character of the text.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from rag.models import Chunk, Document
from rag.settings import DATA_DIR

# The tokenizer chunks are counted in; an index records it (``Chunker.manifest``).
TOKENIZER_NAME = "cl100k_base"
CL100K_FILE = DATA_DIR / f"{TOKENIZER_NAME}.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's pre-tokeniser pattern, as published with tiktoken (tiktoken_ext.openai_public).
CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SENTENCE_END_CHARS = frozenset(".!?…\n")
_CLOSERS = "\"'”’)]»"


class TokenizerError(RuntimeError):
    """The project's BPE file is missing or corrupt."""


@lru_cache(maxsize=1)
def cl100k() -> tiktoken.Encoding:
    """cl100k_base from the file shipped in ``rag/data`` (never downloaded)."""
    if not CL100K_FILE.is_file():
        raise TokenizerError(f"BPE file missing: {CL100K_FILE}")
    digest = hashlib.sha256(CL100K_FILE.read_bytes()).hexdigest()
    if digest != CL100K_SHA256:
        raise TokenizerError(f"BPE file {CL100K_FILE} has sha256 {digest}, want {CL100K_SHA256}")
    ranks = load_tiktoken_bpe(str(CL100K_FILE), expected_hash=CL100K_SHA256)
    return tiktoken.Encoding(
        name="cl100k_base_local",
        pat_str=CL100K_PAT,
        mergeable_ranks=ranks,
        special_tokens={},
    )


@dataclass(frozen=True, slots=True)
class TokenOffsets:
    """Per-token character offsets of one text (token i covers ``starts[i]:ends[i]``)."""

    starts: list[int]
    ends: list[int]
    sentence_end: list[bool]


def token_offsets(text: str, encoding: tiktoken.Encoding | None = None) -> TokenOffsets:
    """Character offsets of every token of ``text``, from the tokenizer's own byte lengths."""
    enc = encoding or cl100k()
    tokens = enc.encode_ordinary(text)
    token_bytes = [enc.decode_single_token_bytes(t) for t in tokens]
    byte_ends = list(accumulate(len(b) for b in token_bytes))
    # char_byte_starts[c] = byte offset where character c starts; plus the total at the end.
    char_byte_starts = [0, *accumulate(len(ch.encode("utf-8")) for ch in text)]
    starts: list[int] = []
    ends: list[int] = []
    sentence_end: list[bool] = []
    byte_start = 0
    for tb, byte_end in zip(token_bytes, byte_ends, strict=True):
        # floor: the character containing byte_start; ceil: first char starting at/after end.
        starts.append(bisect.bisect_right(char_byte_starts, byte_start) - 1)
        ends.append(bisect.bisect_left(char_byte_starts, byte_end))
        stripped = tb.decode("utf-8", errors="ignore").rstrip(" \t").rstrip(_CLOSERS)
        sentence_end.append(bool(stripped) and stripped[-1] in _SENTENCE_END_CHARS)
        byte_start = byte_end
    return TokenOffsets(starts=starts, ends=ends, sentence_end=sentence_end)


class Chunker:
    """Splits documents into overlapping token windows, snapped to sentence ends.

    A window holds at most ``max_tokens`` tokens. It ends after the last sentence-ending
    token within ``snap_tokens`` of its limit, if there is one; the next window starts
    ``overlap`` tokens before the previous end, moved forward to a sentence start if one lies
    inside the overlap.
    """

    def __init__(self, max_tokens: int = 160, overlap: int = 32, snap_tokens: int = 48) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be positive")
        if not 0 <= overlap < max_tokens:
            raise ValueError("overlap must be in [0, max_tokens)")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.snap_tokens = min(snap_tokens, max_tokens - 1)

    def manifest(self) -> dict[str, str]:
        """What an index built with this chunker must record (its chunks depend on it)."""
        config = {
            "tokenizer": TOKENIZER_NAME,
            "max_tokens": self.max_tokens,
            "overlap": self.overlap,
            "snap_tokens": self.snap_tokens,
        }
        return {"chunker": json.dumps(config, sort_keys=True)}

    def windows(self, offsets: TokenOffsets) -> list[tuple[int, int]]:
        """Token index ranges ``[i, j)`` of the chunks."""
        n = len(offsets.starts)
        out: list[tuple[int, int]] = []
        i = 0
        while i < n:
            j = min(i + self.max_tokens, n)
            if j < n:
                for k in range(j - 1, j - 1 - self.snap_tokens, -1):
                    if k > i and offsets.sentence_end[k]:
                        j = k + 1
                        break
            out.append((i, j))
            if j >= n:
                break
            nxt = max(j - self.overlap, i + 1)
            for k in range(nxt - 1, j - 1):
                if offsets.sentence_end[k]:
                    nxt = k + 1
                    break
            i = nxt
        return out

    def chunk(self, document: Document) -> list[Chunk]:
        """The chunks of one document; blank windows (only white space) are dropped."""
        offsets = token_offsets(document.text)
        chunks: list[Chunk] = []
        for i, j in self.windows(offsets):
            start, end = offsets.starts[i], offsets.ends[j - 1]
            text = document.text[start:end]
            if text.strip():
                chunks.append(Chunk(document.id, start, end, text, j - i))
        return chunks

    def chunk_batch(self, documents: Iterable[Document]) -> list[list[Chunk]]:
        """``chunk`` over many documents."""
        return [self.chunk(d) for d in documents]


def covered(text: str, chunks: Sequence[Chunk]) -> bool:
    """True when every non-white-space character of ``text`` lies inside some chunk."""
    inside = [False] * len(text)
    for c in chunks:
        for p in range(c.start, c.end):
            inside[p] = True
    return all(inside[p] or ch.isspace() for p, ch in enumerate(text))
