# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv when missing and (re)install only when pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Three pytest workers, each taking whole test files (module fixtures and the e2e servers stay
# with their tests). Much of the suite waits (on servers, heartbeats, triggers), and a third
# worker fills those waits: on 2 cores a quiet run took 722 s with three against about 830 s
# with two (the suite's processes then used 1,326 CPU seconds, so two cores cannot go under
# about 665 s). Files are handed out in collection order, which puts the files that take
# minutes first (tests/conftest.py). `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 3 --dist loadfile --no-loadscope-reorder
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_UI_ENABLED ?= true

.PHONY: run test lint imports typecheck pytest bench bench-quick ui clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The venv counts as made only once pip is in it: a first `make` interrupted while the venv was
# being made left .venv/bin/python without pip, and every later `make` then failed at "No module
# named pip". The mark is written last; a venv without it is kept if its pip answers (one made
# before the mark existed) and made again from scratch otherwise.
$(VENV)/.made:
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { \
	    rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
	    $(BIN)/python -m pip install --quiet --upgrade pip; }
	touch $@

# One pip run each: `make run` installs the package, `make test` the package with its dev extras
# (which is also the package's install, so it marks both; a base install first, then the
# extras, cost a fresh clone a second pip resolve of everything). pyproject.toml newer than a
# mark reinstalls.
$(VENV)/.installed: pyproject.toml | $(VENV)/.made
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/.made
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed  ## train the default configuration through the Prefect flow
	$(BIN)/mnistnn train

test: $(VENV)/.installed-dev lint imports typecheck pytest  ## lint, check the import contracts, type-check and run every test

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

imports: $(VENV)/.installed-dev  ## the dependency rule (pyproject's [tool.importlinter])
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on some machines to dodge old OpenBLAS bugs;
# they force a slower kernel on a current numpy, so the full benchmark runs without them (the
# table prints the kernel in use). Tests and CI keep the environment as it is.
bench: $(VENV)/.installed-dev  ## benchmarks on the full bundled data (minutes)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -m benchmarks.run_all

bench-quick: $(VENV)/.installed-dev  ## the benchmarks on a tiny slice (seconds)
	$(BIN)/python -m benchmarks.run_all --quick

ui: $(VENV)/.installed  ## Prefect UI on http://127.0.0.1:4200 over the runs `make run` recorded
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:  ## remove generated data (never data/raw) and caches
	rm -rf data/processed data/runs data/models .pytest_cache .mypy_cache .ruff_cache
