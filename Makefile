# Two commands: `make run` (the app on the built-in demo) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test test-slow lint demo bench bench-gpu

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

# The GPU step-time figures of the README (ViT-B-16, random weights; needs CUDA).
bench-gpu: $(STAMP_RUN)
	$(BIN)/python bench/bench_train_step.py --arch ViT-B-16 --device cuda --steps 20 --warmup 5 \
		--json bench/results/vitb16_b32.json | tee bench/results/vitb16_b32.txt
	$(BIN)/python bench/bench_train_step.py --arch ViT-B-16 --device cuda --batch 128 --steps 10 \
		--warmup 3 --json bench/results/vitb16_b128.json | tee bench/results/vitb16_b128.txt
