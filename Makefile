# Every target that needs the virtualenv creates it when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/weft.yaml

.PHONY: serve test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/weft serve --config $(CONFIG) --access-log

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# -P: bench/http.py would otherwise shadow the standard library's http module
bench: $(STAMP)
	$(BIN)/python -P bench/checkpointer.py
	$(BIN)/python -P bench/workflows.py
	$(BIN)/python -P bench/threads.py
	$(BIN)/python -P bench/runs.py
	$(BIN)/python -P bench/http.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
