# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every runtime, local and dev dependency, pinned with hashes: every machine installs the same versions.
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: install run test test-fast bench lint lock hooks clean

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## make install: the virtualenv in .venv, from the lock file (a changed lock reinstalls)
install: $(STAMP)

## make run: install, then start web, worker, flower and the Gemini simulator on embedded services
run: install
	$(BIN)/taskapp dev

## make test: install, the import contracts, the type check, then every test on real PostgreSQL,
## Redis, workers and the simulator: tests/unit, tests/integration, tests/system, tests/faults, in that order
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make test-fast: for iteration; the import contracts, then tests/unit (no services) and
## tests/integration (PostgreSQL, Redis, the simulator, the web app): no worker processes, no faults
test-fast: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest tests/unit tests/integration $(PYTEST_ARGS)

## make bench: the benchmark tables for docs/benchmarks.md
bench: install
	$(BIN)/python -m bench.run_all

## make lint: ruff, the import contracts and mypy (what the pre-commit hooks run, on every file)
lint: install
	$(BIN)/ruff check taskapp web tests bench celeryconfig.py
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

## make lock: re-resolve requirements/lock.txt after a change to pyproject.toml's dependencies; the
## pins it holds stay unless they must move (LOCK_ARGS=--upgrade moves them all, or
## LOCK_ARGS="--upgrade-package NAME" one)
lock: $(LOCK_TOOLS)/bin/uv
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra local --extra dev --universal \
		--python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet \
		-o $(LOCK) $(LOCK_ARGS)

$(LOCK_TOOLS)/bin/uv:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

## make hooks: run ruff, import-linter and mypy before every commit (.pre-commit-config.yaml)
hooks: install
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) build *.egg-info
