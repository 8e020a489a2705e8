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

.PHONY: install serve test lint typecheck index bench fit-threshold clean

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

lint: $(INSTALLED)
	$(BIN)/ruff check rag service tests bench
	$(BIN)/ruff format --check rag service tests bench

typecheck: $(INSTALLED)
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: $(INSTALLED) lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

bench: $(INSTALLED)
	$(BIN)/python bench/pipeline_bench.py

fit-threshold: $(INSTALLED)
	$(BIN)/python bench/fit_threshold.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
