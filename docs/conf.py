"""Sphinx configuration of molvae's documentation site: ``make docs`` builds it into docs/_build/html.

Why Sphinx rather than MkDocs: the references users already know for this kind of
toolkit (BoTorch's, chemprop's) are Sphinx sites; Sphinx, MyST-Parser and MyST-NB
are actively released, while MkDocs core has not had a release since 1.6.1 (2024)
and Material for MkDocs is in maintenance mode. MyST-Parser keeps the pages in
Markdown, MyST-NB renders the notebooks with their stored outputs, autodoc reads
the API reference from the docstrings and sphinx-argparse the CLI reference from
the argument parsers, so neither reference can drift from the code.

Strict mode (``sphinx-build -W --keep-going -n``, what ``make docs`` and CI run):
every warning fails the build, and in nitpicky mode so does every reference that
does not resolve. Intersphinx would fetch other projects' inventories from the
network, so references to other packages' types are let through by the narrow
patterns of ``nitpick_ignore_regex`` instead; references inside molvae must
resolve.

The site works offline from docs/_build/html: the theme (Furo) ships its own assets,
maths is rendered to MathML when the site is built (docs/_ext/mathml.py) instead of by
MathJax from a CDN, and docs/_ext/offline_check.py fails the build if a page would load
anything from the network.
"""

from __future__ import annotations

import dataclasses
import filecmp
import shutil
import sys
from pathlib import Path

from sphinx.application import Sphinx

import molvae

DOCS = Path(__file__).resolve().parent
# The project's own extensions (error catalog, offline check, MathML, the CLI reference's parser): the usual layout.
sys.path.insert(0, str(DOCS / "_ext"))

project = "molvae"
author = "the molvae contributors"
copyright = "the molvae contributors, MIT licence"
release = version = molvae.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST-Parser, which it loads) and the notebooks
    # Not napoleon: molvae's docstrings are reStructuredText prose without Google or NumPy
    # sections, and napoleon reads an attribute comment with a colon ("Raised while ...: the
    # CLI says ...") as "type: description", making references out of its first words.
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
    "error_catalog",
    "mathml",
    "offline_check",
]

root_doc = "index"
# Option names such as --out must stay two hyphens wherever they are written (help texts
# included); smart quotes would print them as an en dash.
smartquotes = False
# Blocks that name no language (usage lines, program output) are shown as plain text.
highlight_language = "none"
exclude_patterns = ["_build", "_ext", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# ------------------------------------------------------------------ Markdown and notebooks

# The notebooks' text writes maths as $...$, as Jupyter shows it.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# Rendered with the outputs committed in notebooks/; the build never runs a notebook.
nb_execution_mode = "off"
# MyST-NB would otherwise load the ipywidgets scripts from a CDN; molvae's notebooks use no widgets.
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
nb_merge_streams = True

# The notebooks live in notebooks/ (where Jupyter users open them). Sphinx reads sources
# only under docs/, so each build copies them into docs/tutorials/ (git-ignored): one
# copy of each notebook is committed, and symlinks would not survive a Windows checkout
# or a source archive.
NOTEBOOKS = DOCS.parent / "notebooks"
TUTORIALS = DOCS / "tutorials"


def copy_notebooks(app: Sphinx) -> None:
    """Mirror notebooks/*.ipynb into docs/tutorials/, touching only the files that changed."""
    if Path(app.srcdir).resolve() != DOCS:
        return  # a test building one page from another folder needs no tutorials
    TUTORIALS.mkdir(exist_ok=True)
    wanted = {path.name: path for path in NOTEBOOKS.glob("*.ipynb")}
    for old in TUTORIALS.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for name, source in wanted.items():
        target = TUTORIALS / name
        # an unchanged copy keeps its time stamp, so Sphinx does not read it again
        if not target.exists() or not filecmp.cmp(source, target, shallow=False):
            shutil.copyfile(source, target)


def factory_defaults(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """A dataclass's ``field(default_factory=dict)`` shown as ``dict()`` rather than ``<factory>``.

    ``<factory>`` is not Python, so Sphinx cannot parse such a signature and splits it at
    every comma, making references of fragments such as ``dict[str``.
    """
    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    for field in dataclasses.fields(obj):
        if field.init and field.default_factory is not dataclasses.MISSING:
            factory = getattr(field.default_factory, "__qualname__", "factory")
            signature = signature.replace("<factory>", f"{factory}()", 1)
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    """Copy the notebooks in before Sphinx looks for sources; readable dataclass defaults."""
    app.connect("builder-inited", copy_notebooks)
    app.connect("autodoc-process-signature", factory_defaults)


# Each subcommand's section is titled "molvae train", not "train".
sphinxarg_full_subcommand_name = True

# ------------------------------------------------------------------ API reference

autodoc_member_order = "groupwise"
autodoc_typehints = "signature"

# Folder that the error catalog scans: the molvae that autodoc documents.
error_catalog_package = str(Path(molvae.__file__).resolve().parent)

nitpicky = True
# Types of other packages (and of the standard library) that signatures and docstrings
# name, by their full names: without intersphinx nothing documents them here.
nitpick_ignore_regex = [
    (r"py:(class|func)", r"(torch|numpy|pandas|rdkit|botorch)\..+"),
    (r"py:class", r"(collections\.abc|pathlib|os)\..+"),
    # map_molecules's TypeVar: a placeholder in its signature, not an object to document
    (r"py:class", r"molvae\.chemistry\.molecules\.T"),
]

# ------------------------------------------------------------------ HTML

html_theme = "furo"
html_title = f"molvae {release}"
html_static_path = ["_static"]
html_css_files = ["molvae.css"]
html_show_sourcelink = False
html_math_renderer = "mathml"
