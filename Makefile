# rtsim — two commands: `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888
IP ?= 127.0.0.1
STAMP := $(VENV)/.installed

# Headless when CI or NO_BROWSER is set; root (containers, CI) needs --allow-root.
ifeq ($(shell id -u),0)
ROOT_FLAG := --allow-root
endif
ifneq ($(strip $(CI)$(NO_BROWSER)),)
LAB_FLAGS := --no-browser
endif

.PHONY: lab test venv lint typecheck unit notebooks check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The lab serves the repository root, so a notebook's links to ../docs/*.md open in the lab;
# it opens the start notebook, with the file browser in notebooks/. Terminals opened from the
# lab find the venv first on PATH (`rtsim ...` works there) and run the user's shell as a
# non-login shell: Jupyter's default when its output is not a terminal is a login shell,
# which re-reads /etc/profile and drops the venv from PATH.
lab: export PATH := $(abspath $(BIN)):$(PATH)
lab: export VIRTUAL_ENV := $(abspath $(VENV))
lab: venv
	$(BIN)/jupyter lab --ServerApp.root_dir=. --FileContentsManager.preferred_dir=notebooks \
	  --LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb \
	  --ServerApp.terminado_settings=shell_command="$${SHELL:-/bin/bash}" \
	  --ip=$(IP) --port=$(PORT) --ServerApp.port_retries=0 $(LAB_FLAGS) $(ROOT_FLAG)

lint: venv
	$(BIN)/ruff check rtsim tests benchmarks
	$(BIN)/ruff format --check rtsim tests benchmarks

typecheck: venv
	$(BIN)/mypy rtsim

# In TEST_WORKERS processes (pytest-xdist; 0: one process): most live tests wait on I/O and
# timers, so 4 on 2 cores overlap their waits. Tests marked xdist_group (the browser modules)
# stay together on one worker (tests/conftest.py works around pytest-xdist#1386 for that).
# nbval is for `make notebooks` and `make check` only; loading it costs every process ~3 s
# (nbformat's schema checker), so the unit run leaves it out. The 15 slowest tests are
# listed at the end (where to look first when the suite grows slower).
TEST_WORKERS ?= 4
unit: venv
	$(BIN)/pytest -p no:nbval -n $(TEST_WORKERS) --dist loadgroup --durations=15 tests

# Two kernels at a time (NOTEBOOK_WORKERS; 0: one): every notebook stays on one worker (loadscope).
NOTEBOOK_WORKERS ?= 2
notebooks: venv
	$(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks -p no:cacheprovider \
	  -n $(NOTEBOOK_WORKERS) --dist loadscope

# Run notebooks (and the worked solutions in notebooks/solutions/) top to bottom and store
# their outputs (do this after changing one). `make notebooks` checks both: pytest recurses.
execute-notebooks: venv
	for nb in notebooks/*.ipynb notebooks/solutions/*.ipynb; do $(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done

# `make test`'s run: the tests and nbval over every notebook in one pytest run of
# TEST_WORKERS processes. Each notebook nbval checks is one xdist group (its cells in order,
# in one kernel, on one worker), and the workers take the longest work first: the browser
# notebook groups, then the notebooks, then the other tests (tests/conftest.py, which needs
# --no-loadscope-reorder to keep that order), so no worker idles while another finishes.
check: venv
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=15 \
	  --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks

test: lint typecheck unit notebooks

bench: venv
	for b in benchmarks/bench_*.py; do $(BIN)/python "$$b" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
