"""Helpers of the documentation tests: the docs folder, its Sphinx extensions, the CLI reference built alone.

Sphinx comes with the docs extra (``make docs`` installs it, and CI runs ``make docs`` before
the tests); without it these tests are skipped, so ``make test`` alone does not need it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_extension(name: str) -> ModuleType:
    """The module of docs/_ext/``name``.py, loaded from its file (it is not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"docs_ext_{name}", DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the importlib recipe: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def build_pages(src: Path) -> tuple[Path, str]:
    """Build the pages in ``src`` to HTML with the site's conf.py: (the HTML folder, the warnings)."""
    # here: without the docs extra the tests that need these skip
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    out = src / "_build"
    warnings = io.StringIO()
    # sphinx-argparse parses help texts with docutils' own reporter, which writes to stderr, not to Sphinx's warnings
    stderr = io.StringIO()
    # as sphinx-build does: the directives and nodes one build registers in docutils go with it
    with patch_docutils(DOCS), docutils_namespace(), contextlib.redirect_stderr(stderr):
        app = Sphinx(
            srcdir=src,
            confdir=DOCS,
            outdir=out / "html",
            doctreedir=out / "doctrees",
            buildername="html",
            status=None,
            warning=warnings,
            freshenv=True,
        )
        app.build()
    return out / "html", warnings.getvalue() + stderr.getvalue()


@pytest.fixture(scope="session")
def cli_site(tmp_path_factory) -> tuple[Path, str]:
    """The CLI reference page built alone with the site's conf.py: (the HTML folder, the warnings)."""
    src = tmp_path_factory.mktemp("cli-docs")
    (src / "reference").mkdir()
    shutil.copyfile(DOCS / "reference" / "cli.md", src / "reference" / "cli.md")
    # the pages the CLI reference links to, so that its links resolve as in the full site
    (src / "troubleshooting.md").write_text("# Troubleshooting\n\nBuilt for the test.\n")
    (src / "index.md").write_text("# molvae\n\n```{toctree}\nreference/cli\ntroubleshooting\n```\n")
    return build_pages(src)
