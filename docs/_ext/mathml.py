"""Sphinx extension: maths rendered to MathML when the site is built.

Sphinx's default renderer, MathJax, is a script loaded from a CDN, and the site must
work offline from its folder. Browsers render MathML themselves, so the pages need no
script at all; latex2mathml does the conversion. Select it with
``html_math_renderer = "mathml"``.
"""

from __future__ import annotations

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.writers.html5 import HTML5Translator


def _visit_inline(self: HTML5Translator, node: nodes.math) -> None:
    self.body.append(f'<span class="math">{convert(node.astext(), display="inline")}</span>')
    raise nodes.SkipNode


def _visit_block(self: HTML5Translator, node: nodes.math_block) -> None:
    self.body.append(f'<div class="math">{convert(node.astext(), display="block")}</div>')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, object]:
    """Register the ``mathml`` renderer."""
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
