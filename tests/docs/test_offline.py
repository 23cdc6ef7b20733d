"""The built site loads nothing from the network: the check that a strict build runs on every page."""

from __future__ import annotations

import pytest

from .conftest import load_extension

pytest.importorskip("sphinx", reason="the docs extra (make docs) is not installed")

# MyST-Parser 5.2 still reads an attribute that Sphinx 9 deprecates (for Sphinx 11); nothing molvae can change
pytestmark = pytest.mark.filterwarnings(
    "ignore:'myst_parser.sphinx_ext.myst_refs.MystReferenceResolver.app' is deprecated:PendingDeprecationWarning"
)

offline = load_extension("offline_check")


def test_remote_scripts_styles_fonts_and_images_are_found() -> None:
    page = """<html><head>
    <script src="https://cdn.example.org/mathjax.js"></script>
    <link rel="stylesheet" href="//fonts.example.org/css?family=Lato">
    <link rel="preload" as="font" href="http://example.org/f.woff2">
    <style>@import url("https://example.org/extra.css");</style>
    </head><body><img src="https://example.org/badge.svg"><p style="background: url(https://example.org/x.png)">x</p>
    </body></html>"""
    found = offline.remote_resources(page)
    assert len(found) == 6, found


def test_local_resources_and_links_a_reader_follows_pass() -> None:
    page = """<html><head>
    <script src="_static/documentation_options.js"></script>
    <link rel="stylesheet" href="_static/styles/furo.css">
    <link rel="canonical" href="https://example.org/docs/">
    </head><body><a href="https://github.com/molecularsets/moses">MOSES</a><img src="_images/path.png">
    <img src="data:image/png;base64,AAAA"></body></html>"""
    assert offline.remote_resources(page) == []


def test_remote_fonts_in_style_sheets_are_found() -> None:
    css = "@font-face { src: url('https://example.org/f.woff2') } .a { background: url(data:image/svg+xml;x) }"
    assert offline.remote_css(css) == ["https://example.org/f.woff2"]


def test_the_built_cli_reference_works_offline(cli_site) -> None:
    """The theme's pages and style sheets as built: scripts and styles are there, all of them local."""
    site, _ = cli_site
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "<script" in page and 'rel="stylesheet"' in page
    assert offline.offline_problems(site) == []
