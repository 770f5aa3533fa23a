# Two commands: `make run` (the app on the built-in demo) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test test-slow lint demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(STAMP_DEV): $(STAMP_RUN) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(STAMP_RUN)
	$(BIN)/fairvlm demo --if-missing
	$(BIN)/fairvlm prepare-demo-model

run: demo
	$(BIN)/streamlit run app.py --server.headless true --server.address $(HOST) --server.port $(PORT)

test: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP_DEV)
	$(BIN)/ruff check .

bench: $(STAMP_DEV)
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done
