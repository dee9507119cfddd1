# LLM Lab: `make run` opens the app, `make test` runs every check. Both set everything up first
# and skip the work that is already done.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Test files are shared out between this many worker processes (pytest-xdist), a file to a worker.
TEST_WORKERS ?= 2

.PHONY: setup run test test-avx2 lint browser database bench screenshots clean-env

$(VENV)/.requirements.done: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@cp requirements.txt $@

setup: $(VENV)/.requirements.done
	$(PY) -m llmlab setup

run: setup
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

browser:
	@bash scripts/ensure_chromium.sh

# PostgreSQL for the class store's tests (each test run starts its own throwaway server).
database:
	@bash scripts/ensure_postgresql.sh

lint: $(VENV)/.requirements.done
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup browser database lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The test files whose checks compare float results (a model's scores, probabilities, sums).
NUMERIC_TESTS := tests/test_knockout.py tests/test_next_token.py tests/test_architecture.py \
	tests/test_branching.py tests/test_decoding.py tests/test_decoding_units.py \
	tests/test_batched_steps.py tests/test_classroom_activities.py tests/test_embeddings.py \
	tests/test_filters.py tests/test_filter_steps.py tests/test_engine.py tests/test_training.py \
	tests/test_chat.py tests/test_models.py tests/test_precision.py
# PyTorch's own kernels at each of these vector widths in turn (ATEN_CPU_CAPABILITY): avx2 is
# what a CPU without AVX-512 runs, default is the build's baseline without AVX at all; each
# sums in another order, so a tolerance tighter than the rounding allows fails here.
CPU_CAPABILITIES ?= avx2 default

test-avx2: setup
	@for capability in $(CPU_CAPABILITIES); do \
		ATEN_CPU_CAPABILITY=$$capability $(PY) -c "import torch; print('== ATEN_CPU_CAPABILITY=' \
			'$$capability: torch kernels', torch.backends.cpu.get_cpu_capability())"; \
		ATEN_CPU_CAPABILITY=$$capability $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile \
			-m "not browser" $(NUMERIC_TESTS) || exit 1; \
	done

# The README's pictures: one per page, taken in headless Chromium by tests/test_screenshots.py.
screenshots: setup browser
	LLMLAB_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_screenshots.py tests/test_class_browser.py -k "not restart and not replicas"

bench: setup
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean-env:
	rm -rf $(VENV)
