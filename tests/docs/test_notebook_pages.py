"""Notebooks become pages with their stored outputs (figures included) and are never run by the build."""

from __future__ import annotations

import base64
import io
import re

import matplotlib
import nbformat
import pandas as pd
import pytest

from .conftest import build_pages

pytest.importorskip("sphinx", reason="the docs extra (make docs) is not installed")

# MyST-Parser 5.2 still reads an attribute that Sphinx 9 deprecates (for Sphinx 11); nothing molvae can change
pytestmark = pytest.mark.filterwarnings(
    "ignore:'myst_parser.sphinx_ext.myst_refs.MystReferenceResolver.app' is deprecated:PendingDeprecationWarning"
)


def _png() -> bytes:
    """A real matplotlib figure as PNG bytes, as a notebook stores it."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _notebooks(png: bytes) -> dict[str, nbformat.NotebookNode]:
    """One notebook executed (a figure, a table, printed text) and one never run, whose code would fail if it were."""
    v4 = nbformat.v4
    table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1"], "qed": [0.41, 0.44]})
    executed = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# With outputs\n\nThe path from $z_0$ to $z_1$."),
            v4.new_code_cell(
                "plot()",
                execution_count=1,
                outputs=[
                    v4.new_output("stream", name="stdout", text="12 molecules\n"),
                    v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode()}),
                    v4.new_output("execute_result", data={"text/html": table.to_html()}, execution_count=1),
                ],
            ),
        ]
    )
    unrun = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# Without outputs"),
            v4.new_code_cell('raise RuntimeError("the build ran this notebook")'),
        ]
    )
    for nb in (executed, unrun):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"executed": executed, "unrun": unrun}


@pytest.fixture(scope="module")
def png() -> bytes:
    return _png()


@pytest.fixture(scope="module")
def site(tmp_path_factory, png):
    src = tmp_path_factory.mktemp("notebook-docs")
    (src / "tutorials").mkdir()
    for name, nb in _notebooks(png).items():
        nbformat.write(nb, src / "tutorials" / f"{name}.ipynb")
    (src / "index.md").write_text("# molvae\n\n```{toctree}\ntutorials/executed\ntutorials/unrun\n```\n")
    return build_pages(src)


def test_notebook_pages_build_without_warnings(site) -> None:
    _, warnings = site
    assert warnings == ""


def test_stored_outputs_are_on_the_page_with_the_figure_as_an_image(site, png) -> None:
    html_dir, _ = site
    page = (html_dir / "tutorials" / "executed.html").read_text(encoding="utf-8")
    assert "12 molecules" in page and "c1ccccc1" in page and "<math" in page
    images = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(images) == 1
    assert (html_dir / "tutorials" / images[0]).resolve().read_bytes() == png


def test_a_notebook_without_outputs_is_shown_not_run(site) -> None:
    html_dir, _ = site
    page = (html_dir / "tutorials" / "unrun.html").read_text(encoding="utf-8")
    assert "the build ran this notebook" in page  # the code, shown
    assert "Traceback" not in page and "RuntimeError</span>:" not in page
