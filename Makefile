# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

## make run: install, then start web, worker, flower and the Gemini simulator on embedded services
run: install
	$(BIN)/taskapp dev

## make test: install, check the import contracts, then run every test on real PostgreSQL, Redis,
## workers and the simulator: tests/unit, tests/integration, tests/system, tests/faults, in that order
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make test-fast: for iteration; the import contracts, then tests/unit (no services) and
## tests/integration (PostgreSQL, Redis, the simulator, the web app): no worker processes, no faults
test-fast: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest tests/unit tests/integration $(PYTEST_ARGS)

## make bench: the benchmark tables for docs/benchmarks.md
bench: install
	$(BIN)/python -m bench.run_all

lint: install
	$(BIN)/ruff check taskapp web tests bench celeryconfig.py
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
