"""The troubleshooting page explains every MolvaeError class, and its generated catalog holds what molvae raises."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

import molvae
from molvae import drugs, latent
from molvae.errors import MolvaeError, UnknownTokenError
from molvae.tokenizers import SmilesTokenizer

from .conftest import DOCS, load_extension

pytest.importorskip("sphinx", reason="the docs extra (make docs) is not installed")
catalog = load_extension("error_catalog")
PACKAGE = Path(molvae.__file__).resolve().parent


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


@pytest.fixture(scope="module")
def messages() -> list:
    return catalog.collect_messages(PACKAGE)


def _matches(template: str, message: str) -> bool:
    """Whether ``message`` is what ``template`` gives for some values of its placeholders."""
    parts = re.split(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", template)
    return re.fullmatch(".+".join(map(re.escape, parts)), message, re.DOTALL) is not None


def test_the_scan_finds_the_error_classes_python_finds() -> None:
    """The classes read from the source are the MolvaeError subclasses that importing their modules defines."""
    classes = catalog.error_classes(PACKAGE)
    for module in set(classes.values()):
        importlib.import_module(module)
    runtime = {cls.__name__: cls.__module__ for cls in _subclasses(MolvaeError) if cls.__module__.startswith("molvae.")}
    assert classes == {"MolvaeError": "molvae.errors", **runtime}


def test_every_error_class_has_a_section_and_its_messages_on_the_troubleshooting_page() -> None:
    page = (DOCS / "troubleshooting.md").read_text()
    headings = re.findall(r"^## `(\w+)`", page, re.MULTILINE)
    listed = re.findall(r"^```\{error-messages\} (\w+)$", page, re.MULTILINE)
    classes = catalog.error_classes(PACKAGE)
    assert sorted(headings) == sorted(classes)
    assert sorted(listed) == sorted(classes)


def test_a_message_built_in_the_class_comes_from_its_init(messages) -> None:
    """UnknownTokenError composes its message in __init__: the catalog shows that template, which the real one fits."""
    templates = [m.template for m in messages if m.error == "UnknownTokenError"]
    assert len(templates) == 1 and "{" in templates[0]
    assert _matches(templates[0], str(UnknownTokenError("[Se]", "C[Se]C")))


@pytest.mark.parametrize(
    "error,module,make",
    [
        ("ConfigError", "molvae.latent", lambda: latent.t_grid(1)),
        ("ConfigError", "molvae.latent", lambda: latent.neighbourhood(None, "CCO", n=0)),
        ("UnknownDrugError", "molvae.drugs", lambda: drugs.resolve_molecule("aspirn")),
        ("InvalidMoleculeError", "molvae.drugs", lambda: drugs.resolve_molecule("C1CC(")),
        ("TokenizationError", "molvae.tokenizers", lambda: SmilesTokenizer().tokenize("CC§C")),
    ],
)
def test_messages_raised_for_real_have_a_template_in_the_catalog(messages, error, module, make) -> None:
    with pytest.raises(MolvaeError) as raised:
        make()
    assert type(raised.value).__name__ == error
    candidates = [m.template for m in messages if m.error == error and m.module == module]
    assert any(_matches(t, str(raised.value)) for t in candidates), (str(raised.value), candidates)


def test_the_catalog_leaves_out_errors_that_are_not_molvae_errors(messages) -> None:
    """lerp's shape check raises ValueError, a programming error: its message is not a user error."""
    with pytest.raises(ValueError) as raised:
        latent.lerp(np.zeros(2), np.zeros(3), 0.5)
    assert not isinstance(raised.value, MolvaeError)
    assert not any(_matches(m.template, str(raised.value)) for m in messages)
    assert {m.error for m in messages} <= set(catalog.error_classes(PACKAGE))
