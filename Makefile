# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# torch first, from the CPU wheel on disk: an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SEED_STAMP := index/default/.seeds-built
SEEDS := $(wildcard seeds/*)
PYTEST_ARGS ?=


.PHONY: install browser serve test lint typecheck index bench load-test fit-threshold eval clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The default index, rebuilt (incrementally) whenever a seed file is newer than it.
$(SEED_STAMP): $(INSTALLED) $(SEEDS)
	$(BIN)/rag ingest seeds --quiet
	touch $@

index: $(SEED_STAMP)

serve: $(SEED_STAMP)
	$(BIN)/rag serve

# Debian's Chromium + ChromeDriver for the chat page's browser test (a test tool's own
# browser download does not work here). Installed once, with apt, when missing.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
	  echo "installing Debian's chromium and chromium-driver (browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq || true; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

lint: $(INSTALLED)
	$(BIN)/ruff check rag service tests bench
	$(BIN)/ruff format --check rag service tests bench

typecheck: $(INSTALLED)
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: $(INSTALLED) browser lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

bench: $(INSTALLED)
	$(BIN)/python bench/pipeline_bench.py

# POST /ask under 1, 4 and 16 concurrent clients, then during a 500-document ingest.
load-test: $(INSTALLED)
	$(BIN)/python bench/load_test.py

SHARED ?= ../shared/data
EVAL_OUT ?= eval/reports

# Every fitted decision, reproducibly from one seed, never on the gold sets the tests ask:
# the reranker (SQuAD train), the span reader's answer verifier and margin rule (a quarter of
# the SQuAD v2.0 dev-half articles + SQuAD train with withheld paragraphs), its answerability
# probe (synthetic unanswerable rewrites) and the verifier that weighs it, the sentence reader's
# threshold (SQuAD v2.0 dev half); then the verifier on the other v2.0 articles and SQuAD
# v1.1 dev, and the reranker on SQuAD v1.1 dev (reports in eval/reports/).
FIT_SEED ?= 13
fit-threshold: $(INSTALLED)
	$(BIN)/python bench/fit_reranker.py --seed $(FIT_SEED)
	$(BIN)/python bench/span_selection.py --fit-only --fit-seed $(FIT_SEED) \
	  --write rag/data/span_selection_fit.json
	$(BIN)/python bench/fit_verifier.py --seed $(FIT_SEED)
	$(BIN)/python bench/reader_synthetic_data.py --seed $(FIT_SEED) --pairs 12000 \
	  --train-articles 400 --v2-questions 100000 --preamble-share 0.3 \
	  --out runs/probe/train.json.gz
	$(BIN)/python bench/fit_probe.py --seed $(FIT_SEED) --data runs/probe/train.json.gz --write
	RAG_SPAN_PROBE=true $(BIN)/python bench/fit_verifier.py --seed $(FIT_SEED)
	RAG_READER=sentence $(BIN)/rag eval $(SHARED)/squad/dev-v2.0-half.json.gz --sample 1000 \
	  --seed $(FIT_SEED) --fit-threshold --quiet
	$(BIN)/python bench/abstention_heldout.py --seed $(FIT_SEED)
	$(BIN)/python bench/rerank_bench.py

# The baseline: full SQuAD v1.1 dev open corpus, the seed set, SciFact (read from shared/,
# never copied); then the table in eval/README.md is rewritten from the metrics.
eval: $(SEED_STAMP)
	$(BIN)/rag eval eval/gold/squad-dev-v1.1.json.gz --ablation --out $(EVAL_OUT)/squad-dev-v1.1
	$(BIN)/rag eval eval/gold/seeds.jsonl --index default --out $(EVAL_OUT)/seeds
	$(BIN)/rag eval $(SHARED)/beir-scifact --ablation --out $(EVAL_OUT)/scifact
	$(BIN)/python bench/baseline_table.py $(EVAL_OUT)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
