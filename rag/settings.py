"""Settings for the library, the CLI and the service (``RAG_*`` environment variables).

One settings class per stage (``IndexSettings``, ``IngestSettings``, ``RetrievalSettings``,
``ReaderSettings``, ``LimitSettings``, ``ServiceSettings``); ``Settings`` is all of them. A
component takes the group it reads (``build_reader(settings: ReaderSettings, ...)``), so a
stage's knobs are found in one class; the variables stay flat (``RAG_CHUNK_TOKENS``), as
deployments and the README name them.

Nothing is read at import time: ``Settings()`` reads the environment when it is constructed.
The readers' fitted abstention is not a setting: each reader loads its own fit file
(``rag.reader``); the ``*_abstain_*`` and ``*_calibration`` settings only override it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DATA_DIR = Path(__file__).parent / "data"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# An index's (a collection's) name: a folder under the index root, never hidden or a path.
INDEX_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# In a key's scope: every collection.
ALL_COLLECTIONS = "*"


class KeyScope(BaseModel):
    """The collections one API key may read and write (``RAG_API_KEY_SCOPES``); writing
    a collection includes reading it. ``"*"`` is every collection."""

    model_config = ConfigDict(extra="forbid")

    read: list[Annotated[str, Field(pattern=INDEX_NAME_PATTERN + r"|^\*$")]] = []
    write: list[Annotated[str, Field(pattern=INDEX_NAME_PATTERN + r"|^\*$")]] = []

    def allows(self, collection: str, write: bool) -> bool:
        names = self.write if write else [*self.read, *self.write]
        return ALL_COLLECTIONS in names or collection in names


class IndexSettings(BaseSettings):
    """Where the indexes live and how their vectors are kept."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    index_root: Path = Field(Path("index"), description="Folder holding the named indexes.")
    index_name: str = Field(
        "default",
        pattern=INDEX_NAME_PATTERN,
        description="Index to use (the service's default collection).",
    )
    faiss_index_type: str = Field(
        "IDMap,Flat",
        pattern=r"^IDMap2?,",
        description="faiss.index_factory string of small (exact) segments, inner product over "
        "L2-normalised vectors, keyed by chunk id (IDMap first). A segment's ids are written "
        "in increasing order and looked up by bisection, so IDMap2's reverse hash map (about "
        "41 MB and 0.13 s of loading per million vectors) is not needed; indexes written "
        "with IDMap2 segments are read as they are.",
    )
    segment_merge_factor: int = Field(
        10,
        ge=2,
        description="Vector segments merge this many at a time: each write adds a segment, "
        "and this many adjacent segments of one size tier become one (Lucene's merge factor; "
        "higher: cheaper writes, more segments searched per question).",
    )
    segment_max_dead: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="A vector segment whose share of deleted chunks' vectors passes this is "
        "rewritten without them (a search asks each segment for that many more hits).",
    )
    segment_merge_background: bool = Field(
        True,
        description="Merge segments on a thread of their own after writes, built without "
        "the write lock and committed in one short step (a write never waits for a merge's "
        "build); false merges in the writer after its commit. `rag` commands let the merges "
        "asked for finish before they exit.",
    )
    ann_index_type: str = Field(
        "HNSW12_SQ8",
        description="faiss.index_factory string (without IDMap) of the approximate index a "
        "merge builds for a segment of at least ann_min_vectors vectors, trained on its own "
        "vectors; empty: every segment stays faiss_index_type. Chosen by recall@10 against "
        "exact search on real embeddings and bytes a vector (bench/ann_recall.py, "
        "eval/reports/store/ann.md): 12 links over 8-bit codes, 496 bytes a vector against "
        "HNSW32_SQ8's 656, at the same recall and latency once efSearch is 384.",
    )
    ann_min_vectors: int = Field(
        20_000,
        ge=1,
        description="Segments with at least this many vectors are built as ann_index_type "
        "(smaller ones stay exact: cheap to build, and few enough to scan).",
    )
    ann_ef_search: int = Field(
        384,
        ge=1,
        description="HNSW efSearch of approximate segments: candidates kept while searching "
        "(higher: better recall, slower; never below the hits asked for). 384 with "
        "HNSW12_SQ8: recall@10 0.9725 through the store at 1M chunks (HNSW32_SQ8 at 256: "
        "0.9655), dense p50 7.3 vs 6.9 ms side by side (bench/dense_ab.py).",
    )
    ann_small_vectors: int = Field(
        50_000,
        ge=0,
        description="HNSW segments with fewer vectors than this are searched with "
        "ann_small_ef_search instead of ann_ef_search (0: every one with ann_ef_search; IVF "
        "segments keep ann_nprobe): a small graph finds its nearest vectors with fewer "
        "candidates. HNSW12_SQ8 alone on "
        "real embeddings (bench/ann_recall.py): recall@10 0.980 at efSearch 128 over 20k "
        "vectors, 0.9455 over 100k.",
    )
    ann_small_ef_search: int = Field(
        128,
        ge=1,
        description="HNSW efSearch of segments under ann_small_vectors (meant to be below "
        "ann_ef_search). At 1M chunks (four HNSW segments of 204,800 and eight of 20,480): "
        "dense p50 ratio 0.77 with the same top 10 for 300 real questions as efSearch 384 "
        "everywhere (bench/dense_ab.py).",
    )
    ann_nprobe: int = Field(
        32, ge=1, description="IVF nprobe of approximate segments: inverted lists searched."
    )
    ann_ef_construction: int = Field(
        80,
        ge=1,
        description="HNSW efConstruction of the graphs merges build (candidates kept while "
        "linking each vector; higher: a better graph, slower merges). 80 over faiss's 40: "
        "recall@10 0.949 -> 0.964 at efSearch 256 on 200k real embeddings, build +18 %, "
        "searches no slower.",
    )
    search_threads: int = Field(
        2,
        ge=1,
        description="Threads one question's dense search spreads the vector segments over "
        "(faiss releases the GIL while it searches), once the index holds 50,000 vectors in "
        "two segments or more; 1 searches them one after another.",
    )
    mmap_vectors: bool = Field(
        True,
        description="Map vector segment files into memory (faiss IO_FLAG_MMAP_IFC) instead of "
        "copying them in: opening an index copies no vectors (the check still reads each "
        "file once for its checksum) and their pages are the OS page cache, shared between "
        "the processes serving one index and reclaimable; false copies them into each "
        "process (e.g. for a network filesystem where mapped reads are slow).",
    )
    filter_exact_max: int = Field(
        20_000,
        ge=0,
        description="A filtered vector search over at most this many allowed chunks compares "
        "the question with exactly those chunks' vectors (cost follows them); a filter that "
        "allows more searches every segment and keeps the allowed hits, asking for more in "
        "proportion to the share it allows (estimated from a sample of chunk ids).",
    )

    @property
    def index_dir(self) -> Path:
        return self.index_root / self.index_name


class IngestSettings(BaseSettings):
    """How documents become chunks and vectors."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    chunk_tokens: int = Field(
        160,
        ge=8,
        description="Chunk window in cl100k tokens. 160 keeps every chunk of the seeds and of "
        "SQuAD dev under the embedder's 256 wordpieces (checked by tests and bench).",
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    sentence_snap_tokens: int = Field(
        48,
        ge=0,
        description="A chunk ends at the last sentence end within this many tokens of its "
        "window end, so chunks hold whole sentences where one is near.",
    )
    embed_batch_size: int = Field(32, ge=1, description="Texts per encoder batch.")
    commit_chunks: int = Field(
        2048,
        ge=1,
        description="A streamed ingest (rag ingest) commits every this many chunks: an "
        "interrupted one keeps what it committed and a re-run embeds only the rest; memory "
        "holds one commit's documents and vectors.",
    )
    embed_title: bool = Field(
        False,
        description="Embed each chunk after its document's title (the stored text and its "
        "offsets are unchanged): a passage deep in a long document often never names its "
        "topic. An index records which way it was built.",
    )
    pdf_max_pages: int = Field(
        2000,
        ge=1,
        description="A PDF with more pages is refused by name (the others still load): "
        "bounds a page-count bomb before any page is read.",
    )
    pdf_max_stream_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes one PDF stream may inflate to, and the page content streams "
        "of one PDF in all (a stream shared by pages counts per page); past it the file is "
        "refused as a decompression bomb (a few KB can inflate to gigabytes).",
    )
    pdf_max_chars: int = Field(
        20_000_000,
        ge=1,
        description="Most characters of text one PDF may give; past it the file is refused "
        "(extraction stops there).",
    )


class RetrievalSettings(BaseSettings):
    """How passages are found."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    top_k: int = Field(5, ge=1, le=50, description="Passages returned and read per question.")
    retrieve_depth: int = Field(
        30, ge=1, description="Candidates taken from each retriever before fusion."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant k.")
    keyword_beside_dense: bool = Field(
        True,
        description="Run a hybrid question's BM25 search on a thread of its own while its "
        "vector segments are searched, after the question is encoded (one question at a "
        "time; others asked meanwhile search one after the other). Over 1M chunks: hybrid "
        "p50 9.62 -> 8.69 ms, same top 5 for 600 of 600 questions (bench/hybrid_ab.py); "
        "POST /ask within the noise of bench/ask_ab.py (p50 ratio 0.962 over 1M, 0.94-1.07 "
        "over the seed index). false: BM25 after the dense search.",
    )
    retrievers: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="Which retrievers feed the reader."
    )
    rerank: bool = Field(
        True,
        description="Rerank the fused candidates (rag/reranking.py, fitted on SQuAD train) "
        "before the top_k are read; off: the fused order is read.",
    )
    rerank_depth: int = Field(
        20, ge=1, le=200, description="Fused candidates the reranker reorders per question."
    )


class ReaderSettings(BaseSettings):
    """Which reader answers, how it reads, and overrides of its fitted abstention."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    reader: Literal["sentence", "span"] = Field(
        "span",
        description="The reader: 'span' is the trained span reader (weights in "
        "reader_weights; falls back to 'sentence' when they are absent), 'sentence' the "
        "sentence scorer with typed narrowing.",
    )
    reader_weights: Path = Field(
        DATA_DIR / "reader",
        description="Folder of the span reader's weights and model card (rag train-reader "
        "--export).",
    )
    span_checker: Path | None = Field(
        None,
        description="Folder of the answer checker's weights: a second span model, trained "
        "for 'no answer' on synthetic unanswerable rewrites (bench/reader_synthetic_data.py), "
        "that reads the windows of the best candidates (span_checker_candidates); its margin "
        "for each candidate span is the verifier's 'check' feature (CHECKED_FEATURES), "
        "fitted into rag/data/span_reader_checked_fit.json (the factorised verifier: "
        "span_reader_checked_prior_fit.json). Unset: no checker, the verifier's fit without "
        "it. Not loaded with span_verifier off (the margin rule reads no feature).",
    )
    span_probe: bool = Field(
        False,
        description="The verifier also weighs the answerability probe: a logistic read of "
        "the span reader's own states (its [CLS], the span's ends, the question), fitted on "
        "SQuAD questions beside synthetic unanswerable rewrites (bench/fit_probe.py; "
        "probe.json in reader_weights), at no second pass; with its own verifier fits "
        "(rag/data/span_reader_probed_fit.json, span_reader_probed_prior_fit.json). Held "
        "out, at the default online share (eval/reports/verifier/experiments/"
        "answerability-probe.md): SQuAD v2.0 held-out articles F1 60.44 -> 64.44, no-answer "
        "recall 49.0 -> 60.9 % at precision 77.7 -> 74.7 %, ECE 0.148 -> 0.108; SQuAD v1.1 "
        "dev open F1 77.70 -> 77.65; but news quizzes 2020-2021 F1 59.44 -> 56.11 (answered "
        "87.3 -> 82.1 %), so it is not the default. Not loaded with span_verifier off.",
    )
    span_checker_candidates: int = Field(
        4,
        ge=1,
        description="The answer checker reads the windows of each question's best this many "
        "candidates (most share one or two windows), not all the reader read; a candidate "
        "whose best reading is in another window is not offered.",
    )
    span_margin_chars: int = Field(
        200,
        ge=0,
        description="Characters of the document read on each side of a retrieved chunk.",
    )
    span_skip_markup: bool = Field(
        True,
        description="The span reader reads markup in a document's text (HTML tags and "
        "comments, web addresses: a news page's links) as blanks, and no answer holds any; "
        "offsets stay the document's. News quizzes whose evidence keeps its links, 2022-2023, "
        "open corpus: F1 44.90 -> 51.35 at the default, 62.67 -> 66.39 never abstaining; "
        "SQuAD, without markup, unchanged (bench/news_eval.py). About 0.3 ms a question. Off: "
        "markup is read as words.",
    )
    span_max_answer_tokens: int = Field(
        30, ge=1, description="Longest answer span the span reader returns (wordpieces)."
    )
    span_batch_windows: int = Field(16, ge=1, description="Windows per span reader forward pass.")
    span_quantize: bool = Field(
        False,
        description="Run the span reader's encoder with int8 dynamic quantisation (a scale "
        "per output channel): 2x faster than fp32 on 2 cores (p50 77 vs 153 ms for the top "
        "5 passages) for 0.4-1.3 F1 on SQuAD dev (bench/reader_bench.py). Off by default: "
        "int8 margins run lower, and with the fp32-fitted margin it abstains more.",
    )
    span_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="The span reader's encoder arithmetic: 'bfloat16' runs it in bfloat16 "
        "(the start/end head stays fp32): where the CPU multiplies bfloat16 natively "
        "(AVX512-BF16, AMX) a read takes half the time (SQuAD dev top 5: p50 43 vs 86 ms) "
        "for F1 -0.14 +- 0.13 (5 answers of 1,000 changed; margins moved by 0.04 at the "
        "median; bench/reader_bench.py --no-int8), with half the weights' and activations' "
        "memory; elsewhere bfloat16 is emulated and slower. 'auto': bfloat16 on such CPUs, "
        "else float32. Ignored with span_quantize.",
    )
    span_pad_multiple: int = Field(
        64,
        ge=1,
        le=512,
        description="The span reader pads each forward pass's windows to its longest, "
        "rounded up to a multiple of this many tokens: a few matrix shapes instead of one "
        "per length, so the kernels oneDNN compiles and caches per shape, and the "
        "allocator's freed blocks, serve the next question. Over a 1M-chunk index, 640 "
        "questions: peak RSS 1,657 -> 1,555 MiB, anonymous memory at rest 697 -> 573 MiB, "
        "POST /ask p50 117.5 -> 114.3 ms (bench/serve_index.sh). 1: the longest window's "
        "length. At most 512, the encoder's positions.",
    )
    span_batch_multiple: int = Field(
        4,
        ge=1,
        description="The span reader's forward passes hold a whole multiple of this many "
        "windows (copies of the last window fill up, their outputs dropped): with "
        "span_pad_multiple, a few shapes for every question. Over a 1M-chunk index, 640 "
        "questions: peak RSS 1,556 -> 1,481 MiB, anonymous memory at rest 572 -> 537 MiB "
        "(bench/serve_index.sh). 1: the windows as they are.",
    )
    span_selection: Literal["fitted", "rank"] = Field(
        "fitted",
        description="Which candidate span the span reader answers with. 'fitted': the "
        "candidate the fitted selection scores highest, a conditional logit over each "
        "question's candidates of the verifier's features, the read passage's rank, the "
        "other passages' agreement and the answer's shape against the question "
        "(rag/reader/selection.py; fitted by `make fit-threshold` on SQuAD v1.1 train "
        "questions, rag/data/span_selection_fit.json, bench/span_selection.py). Abstention "
        "off, F1 against 'rank' (measured with the reader before 2026-12-05): news quizzes "
        "2022-2023 59.05 -> 62.10, SQuAD v1.1 dev open 77.04 -> 77.21. "
        "'rank': the highest margin - w * log(read rank), w = span_rank_weight (also used "
        "when the fit file holds no selection).",
    )
    span_rank_weight: float | None = Field(
        None,
        ge=0.0,
        description="With span_selection 'rank', the span reader answers with the candidate "
        "of highest margin - w * log(rank of the retrieved passage it was read from); this "
        "is w. Unset: the weight fitted by `make fit-threshold` on SQuAD v1.1 train "
        "questions (rag/data/span_selection_fit.json, bench/span_selection.py; 0 when "
        "absent). 0: the margin alone.",
    )
    span_verifier: bool = Field(
        True,
        description="The span reader decides answer vs. no answer, and gives its "
        "confidence, with the answer verifier: logistic models of P(answerable) and "
        "P(correct | answerable) over the reader's, the retrievers' and the question's "
        "signals (rag/reader/verifier.py), fitted by `make fit-threshold` into "
        "rag/data/span_reader_prior_fit.json (the factorised verifier, the default; see "
        "span_answerable_prior) and span_reader_fit.json (one model of P(correct), with "
        "span_answerable_prior 'off'). Off: the margin "
        "rule (a threshold on the span's margin over no-answer, Platt-scaled confidence; "
        "rag/data/span_margin_fit.json).",
    )
    span_verifier_threshold: float | None = Field(
        None,
        description="With the verifier on, the span reader abstains when its best answer's "
        "P(answerable) (the factorised verifier, the default) or P(correct) (the one-model "
        "verifier, RAG_SPAN_ANSWERABLE_PRIOR=off) is below this. Unset: "
        "the threshold fitted with the verifier (best official SQuAD v2.0 F1 among those "
        "keeping 90% of the answerable F1).",
    )
    span_answerable_prior: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["online", "off"] = (
        Field(
            "online",
            description="How often questions have an answer, for the factorised verifier "
            "(rag/data/span_reader_prior_fit.json: P(correct) = P(answerable) x P(correct | "
            "answerable), abstaining when P(answerable) is below its threshold), whose "
            "P(answerable) moves by Bayes' rule from the share it was fitted on (its fit "
            "file's fit_prior) to this one, and its decision and confidence follow. 'online': "
            "the share estimated from the questions this index has been asked "
            "(rag.reader.OnlinePrior: EM over the last span_prior_window questions' "
            "P(answerable), shrunk toward the fit's share by span_prior_pseudo_count "
            "questions; in memory, per index and process). A number: that share, fixed (1.0 "
            "never abstains for lack of an answer). 'off': the one-model verifier "
            "(rag/data/span_reader_fit.json). Held out (bench/abstention_heldout.py, "
            "bench/news_eval.py): 'online' answers 99.1 % of SQuAD v1.1 dev open (F1 77.70, "
            "ECE 0.033) and 96.4 % of news quizzes 2022-2023 (F1 65.10), and catches 49 % of "
            "held-out SQuAD v2.0 unanswerables at 77.7 % precision (F1 60.44); the one-model "
            "verifier 85.6 % (71.84), 80.9 % (58.83), 43.7 % at 73.1 % (57.60).",
        )
    )
    span_prior_window: int = Field(
        200,
        ge=1,
        description="With RAG_SPAN_ANSWERABLE_PRIOR=online, how many of the last questions "
        "the answerable share is estimated from.",
    )
    span_prior_pseudo_count: float = Field(
        20.0,
        ge=0.0,
        description="With RAG_SPAN_ANSWERABLE_PRIOR=online, how many questions' worth of "
        "weight the fit's own share keeps in the estimate (a few questions move it little).",
    )
    span_abstain_margin: float | None = Field(
        None,
        description="With the verifier off, the span reader abstains when its best span's "
        "logit beats the no-answer logit by less than this. Unset: the margin fitted by `make "
        "fit-threshold` (best official F1 among margins keeping 90% of the answerable F1), "
        "stored in rag/data/span_margin_fit.json (0 when absent).",
    )
    span_confidence_calibration: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Span confidence = sigmoid(a * margin + c) (Platt scaling: a = "
        "1/temperature), [a, c]. Unset: fitted with the margin on P(F1 > 0.5 or exact match) "
        "(sigmoid(margin) when absent).",
    )
    reader_dense_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Sentence score = w * cosine(question, sentence) + (1 - w) * share of the "
        "question's content words found in the sentence.",
    )
    reader_max_sentences: int = Field(
        8,
        ge=1,
        description="Sentences embedded per question: the ones sharing most question words. "
        "Sentence encoding dominates read time, so this bounds it.",
    )
    abstain_threshold: float | None = Field(
        None,
        description="Answers whose sentence score is below this abstain. Unset: fitted on "
        "SQuAD v2.0 dev (half) by `make fit-threshold`, stored in "
        "rag/data/sentence_reader_fit.json.",
    )
    confidence_calibration: list[float] | None = Field(
        None,
        min_length=3,
        max_length=3,
        description="Sentence confidence = sigmoid(a * score + b * narrowed + c), [a, b, c]. "
        "Unset: fitted on gold data with the threshold (P(F1 > 0.5 or exact match); the "
        "clipped score when absent).",
    )


class LimitSettings(BaseSettings):
    """Bounds on questions and documents, enforced by the library at every entry point."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    max_question_chars: int = Field(
        1000, ge=1, description="Longest question accepted (characters)."
    )
    max_answers: int = Field(
        10, ge=1, description="Most distinct answers one question may ask for (`answers`)."
    )
    max_filter_keys: int = Field(
        16, ge=1, description="Most keys in a question's filters (else 422)."
    )
    max_filter_values: int = Field(
        256,
        ge=1,
        description="Most values of one filter key (else 422): each becomes a bound SQL parameter.",
    )
    max_metadata_depth: int = Field(
        8, ge=1, description="Deepest nesting of a document's metadata object (else 422)."
    )


class ServiceSettings(BaseSettings):
    """The HTTP service: address, keys, limits, queues, chat, operations."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP service binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP service listens on.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys accepted as `Authorization: Bearer <key>` (comma-separated in "
        "RAG_API_KEYS). Document writes and deletes always need one. When empty, the service "
        "creates a random key once in `<index_root>/.api-key` (mode 0600) and uses that.",
    )
    api_key_scopes: dict[str, KeyScope] = Field(
        default_factory=dict,
        description="Keys limited to some collections, as JSON: "
        '{"<key>": {"read": ["<collection>", ...], "write": [...]}} ("*": every '
        "collection; write includes read). A scoped key never creates or deletes "
        "collections; the keys of RAG_API_KEYS (or the key file) may do everything.",
    )
    max_collections: int = Field(
        100, ge=1, description="Most collections the service holds (POST /collections, else 409)."
    )
    read_requires_key: bool = Field(
        False, description="Whether questions, document reads and the chat need a key too."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma-separated in "
        "RAG_CORS_ORIGINS; '*' for any). Empty: same origin only.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted (else 413)."
    )
    max_batch_questions: int = Field(
        64, ge=1, description="Most questions in one POST /ask/batch (else 422)."
    )
    max_top_k: int = Field(50, ge=1, description="Largest top_k a request may ask for.")
    sync_ingest_max_chars: int = Field(
        20_000,
        ge=0,
        description="Uploads up to this many characters (one document) are ingested within "
        "the request (201); larger ones, and multi-document JSONL, go to the background "
        "ingest worker (202 with a job id).",
    )
    ask_batching: bool = Field(
        True,
        description="Answer concurrent questions together (one encoder pass per batch, one "
        "model call at a time) instead of each in its own thread.",
    )
    ask_batch_workers: int = Field(
        2,
        ge=1,
        description="Threads answering batches: with 2 cores, one batch retrieves while "
        "another encodes (measured by bench/load_test.py).",
    )
    heap_trim_idle_s: float = Field(
        1.0,
        ge=0.0,
        description="Seconds without questions after which the heap's freed memory goes back "
        "to the OS (glibc malloc_trim, about 9 ms); 0: never. A server's RSS otherwise stays "
        "at its worst burst (over a 1M-chunk index, about 150-220 MB of freed memory after "
        "120 questions). Between back-to-back questions only after heap_trim_growth_mb of "
        "growth: the next question faults the pages in again.",
    )
    heap_trim_growth_mb: int = Field(
        64,
        ge=0,
        description="Between back-to-back questions, the heap's freed memory goes back to "
        "the OS once the server's anonymous resident memory has grown by this many MiB "
        "since it last did (checked after each batch, one read of /proc/self/statm; the "
        "trim, about 9 ms, runs on the worker after its answers are sent). It bounds a long "
        "burst's peak: over a 1M-chunk index 160 questions otherwise leave about 160 MiB "
        "of freed memory resident. 0: only when idle (heap_trim_idle_s).",
    )
    heap_arenas: int = Field(
        1,
        ge=0,
        le=64,
        description="Most glibc malloc arenas (M_ARENA_MAX, set by `rag serve` before the "
        "models load). Each thread answering questions otherwise gets an arena of its own, "
        "and each keeps the freed activations of the longest question it read: over the "
        "1M-chunk index one arena took the peak RSS from 1,495 to 1,430 MiB at the same "
        "POST /ask latency (p50 ratio 0.995, bench/ask_ab.py --index). 0: glibc's default "
        "(8 per core).",
    )
    heap_mmap_threshold_kb: int = Field(
        0,
        ge=0,
        le=32768,
        description="Allocations of at least this many KiB get pages of their own (glibc "
        "M_MMAP_THRESHOLD, set by `rag serve`), handed back to the OS the moment they are "
        "freed. It cuts the peak further (1M-chunk index: 4096 KiB, 1,420 vs 1,507 MiB) but "
        "every question then faults its activations' pages in again: POST /ask 15 % (4096) "
        "to 20-40 % (256) slower, so off by default. 0: glibc's own threshold.",
    )
    ask_max_batch: int = Field(
        32, ge=1, description="Most concurrent questions answered in one batch."
    )
    max_page_size: int = Field(200, ge=1, description="Largest page of GET /documents.")
    max_upload_records: int = Field(
        10_000, ge=1, description="Most documents in one upload (JSONL records; else 422)."
    )
    max_queued_jobs: int = Field(
        16,
        ge=1,
        description="Background ingest jobs queued or running at once; another submission "
        "gets 429 until one finishes.",
    )
    question_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest a question may wait for its answer (queue and work) before it "
        "gets 504 with a message instead of holding the request open.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown, how long to wait for a running ingest job to commit; "
        "queued questions and jobs are not waited for (jobs left are marked interrupted).",
    )
    max_chat_messages: int = Field(
        64, ge=1, description="Most messages in one chat completion request (else 422)."
    )
    max_chat_message_chars: int = Field(
        32_000,
        ge=1,
        description="Longest text of one chat message, or of one of its content parts "
        "(characters; else 422). The question itself is the last RAG_MAX_QUESTION_CHARS "
        "characters of the last user message.",
    )
    max_chat_parts: int = Field(
        16, ge=1, description="Most content parts in one chat message (else 422)."
    )
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header values served (comma-separated in RAG_TRUSTED_HOSTS; '*' "
        "for any); others get 400, which stops DNS rebinding. Empty: the loopback names "
        "when the service binds to a loopback address, any host otherwise.",
    )
    span_context_chars: int = Field(
        300, ge=0, description="Default characters of context on each side of a cited span."
    )
    chat_model_id: str = Field(
        "rag-extractive", description="Model id reported by /v1/models and chat completions."
    )
    chat_followup_turns: int = Field(
        1,
        ge=0,
        description="Earlier user turns added to the retrieval query when the last question "
        "looks like a follow-up (a pronoun or under followup_max_words words).",
    )
    chat_followup_max_words: int = Field(
        6, ge=0, description="Questions this short are treated as follow-ups in a chat."
    )
    chat_stream_chunk_chars: int = Field(
        24, ge=1, description="Characters of answer text per streamed chat chunk (at most)."
    )
    chat_sources_in_text: bool = Field(
        True,
        description="Append a 'Sources' list (numbered quotes) to the chat message content, "
        "for frontends that ignore the structured `citations` field.",
    )
    no_answer_message: str = Field(
        "I could not find an answer to that in the indexed documents.",
        description="The chat reply when the service abstains.",
    )
    log_requests: bool = Field(True, description="One JSON log line per HTTP request.")

    @field_validator("api_keys", "cors_origins", "trusted_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def allowed_hosts(self) -> list[str]:
        """The Host names served: ``trusted_hosts``, or the loopback names when bound to a
        loopback address (a page on another site cannot rebind its name to us), else any."""
        if self.trusted_hosts:
            return list(self.trusted_hosts)
        if self.host in LOOPBACK_HOSTS:
            return sorted(LOOPBACK_HOSTS)
        return ["*"]


# Groups are listed last-first: pydantic collects fields from the bases in reverse order,
# so the table and ``model_fields`` read index, ingest, retrieval, reader, limits, service.
class Settings(
    ServiceSettings, LimitSettings, ReaderSettings, RetrievalSettings, IngestSettings, IndexSettings
):
    """Every tunable of the pipeline, with what it is for: one group per stage, each a
    settings class of its own (components take the group they read), all read from the
    same flat ``RAG_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")


# Defaults that are computed, shown in words in the settings table.
_COMPUTED_DEFAULTS = {
    "api_keys": "(empty: a key file)",
    "cors_origins": "(empty)",
    "trusted_hosts": "(empty: loopback names on loopback)",
    "abstain_threshold": "(unset: fitted)",
    "confidence_calibration": "(unset: fitted)",
    "span_abstain_margin": "(unset: fitted)",
    "span_rank_weight": "(unset: fitted)",
    "span_verifier_threshold": "(unset: fitted)",
    "span_confidence_calibration": "(unset: fitted)",
    "reader_weights": "rag/data/reader (in the package)",
}


GROUPS: tuple[type[BaseSettings], ...] = (
    IndexSettings,
    IngestSettings,
    RetrievalSettings,
    ReaderSettings,
    LimitSettings,
    ServiceSettings,
)


def settings_markdown() -> str:
    """The settings as Markdown, a table per group (the README embeds it; a test keeps
    them equal)."""
    out: list[str] = []
    for group in GROUPS:
        out += [f"**{group.__name__}**: {group.__doc__}", ""]
        out += ["| variable | default | what it is for |", "|---|---|---|"]
        for name, f in group.model_fields.items():
            default = _COMPUTED_DEFAULTS.get(name, f.default)
            if isinstance(default, Path):
                default = default.as_posix()
            description = (f.description or "").replace("|", "\\|")
            out.append(f"| `RAG_{name.upper()}` | `{default}` | {description} |")
        out.append("")
    return "\n".join(out).rstrip()
