#!/usr/bin/env python
"""Remove outputs, execution counts and run metadata from notebooks, so they are committed clean.

Usage:
    python scripts/strip_notebooks.py                 # strip every notebooks/*.ipynb in place
    python scripts/strip_notebooks.py a.ipynb b.ipynb # strip these
    python scripts/strip_notebooks.py --check         # change nothing; exit 1 listing notebooks that need it

A notebook is clean when no code cell has outputs or an execution count, no cell has
per-run metadata (execution timings, collapsed/scrolled state) and the notebook
metadata holds only the kernel spec and language info.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
RUN_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip ``nb`` in place; True when anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs"):
                cell.outputs = []
                changed = True
            if cell.get("execution_count") is not None:
                cell.execution_count = None
                changed = True
        for key in RUN_CELL_METADATA:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in list(nb.metadata):
        if key not in KEEP_NOTEBOOK_METADATA:
            del nb.metadata[key]
            changed = True
    language_info = nb.metadata.get("language_info")
    if language_info is not None and set(language_info) != {"name"}:
        # the interpreter version etc. change with every machine that runs the notebook
        nb.metadata["language_info"] = {"name": language_info.get("name", "python")}
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="report notebooks that need stripping, change nothing")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    verb = "need stripping" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    if args.check and dirty:
        print("run: python scripts/strip_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
