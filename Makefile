# LLM Lab: `make run` opens the app, `make test` runs every check. Both set everything up first
# and skip the work that is already done.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Test files are shared out between this many worker processes (pytest-xdist), a file to a worker.
TEST_WORKERS ?= 2

.PHONY: setup run test lint browser database bench screenshots clean-env

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

# The README's pictures: one per page, taken in headless Chromium by tests/test_screenshots.py.
screenshots: setup browser
	LLMLAB_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_screenshots.py tests/test_class_browser.py -k "not restart and not replicas"

bench: setup
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean-env:
	rm -rf $(VENV)
