"""Sphinx extension: the one-line error messages molvae can raise, read from its source.

``.. error-messages:: ConfigError`` lists every message template of that
:class:`~molvae.errors.MolvaeError` subclass, with the module that raises it. The
templates come from scanning the package with :mod:`ast` (nothing is imported or
run): every call that constructs an error class, whether raised at once or returned
by a helper, gives one template; f-string placeholders show as ``{expression}``. A
message built in a variable of the same function shows each string assigned to it;
a class whose ``__init__`` composes its message shows the templates of that
``__init__`` instead of its call sites.

A class with messages but no ``error-messages`` directive anywhere in the project is
a warning, so a strict build fails until the troubleshooting page explains it.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

BASE = "MolvaeError"


@dataclass(frozen=True)
class Message:
    """One message template and where it is raised."""

    error: str
    module: str
    line: int
    template: str


def _modules(package_dir: Path) -> Iterator[tuple[str, ast.Module]]:
    """``(dotted module name, parsed tree)`` of every ``.py`` file of the package, in path order."""
    root = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _base_names(node: ast.ClassDef) -> list[str]:
    return [base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases]


def error_classes(package_dir: Path) -> dict[str, str]:
    """Every class of the package derived from ``MolvaeError`` (itself included): name -> defining module."""
    defined: dict[str, tuple[str, list[str]]] = {}
    for module, tree in _modules(package_dir):
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                defined[node.name] = (module, _base_names(node))
    found = {BASE: defined[BASE][0]}
    # Subclasses of subclasses: repeat until no class joins.
    while True:
        new = {
            name: module
            for name, (module, bases) in defined.items()
            if name not in found and any(base in found for base in bases)
        }
        if not new:
            return found
        found.update(new)


def _template(node: ast.expr) -> str:
    """The message a string expression makes, with each computed part as ``{expression}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
            for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left) + _template(node.right)
    return "{" + ast.unparse(node) + "}"


def _message_args(call: ast.Call) -> list[ast.expr]:
    if call.args:
        return [call.args[0]]
    return [kw.value for kw in call.keywords if kw.arg in ("msg", "message")]


def _templates(arg: ast.expr, scope: ast.AST) -> list[str]:
    """The templates of a message argument; a variable stands for every string assigned to it in ``scope``."""
    if isinstance(arg, ast.Name):
        assigned = [
            node.value
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == arg.id for t in node.targets)
        ]
        if assigned:
            return [_template(value) for value in assigned]
    return [_template(arg)]


def _calls(tree: ast.Module) -> Iterator[tuple[ast.Call, ast.AST, ast.AST | None]]:
    """Every call with the innermost function around it (or the module) and the class around that (or None)."""

    def visit(
        node: ast.AST, scope: ast.AST, owner: ast.AST | None
    ) -> Iterator[tuple[ast.Call, ast.AST, ast.AST | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call):
                yield child, scope, owner
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, child, owner)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, child, child)
            else:
                yield from visit(child, scope, owner)

    yield from visit(tree, tree, None)


def _is_super_init(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "__init__"
        and isinstance(func.value, ast.Call)
        and getattr(func.value.func, "id", None) == "super"
    )


def collect_messages(package_dir: Path) -> list[Message]:
    """Every message template of every ``MolvaeError`` class raised in the package, in source order."""
    classes = error_classes(package_dir)
    composed: set[str] = set()  # classes whose __init__ builds the message from other arguments
    messages: list[Message] = []
    calls: list[tuple[str, int, str, list[str]]] = []
    for module, tree in _modules(package_dir):
        aliases = {
            alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.name in classes
        }
        for call, scope, owner in _calls(tree):
            if _is_super_init(call) and isinstance(owner, ast.ClassDef) and owner.name in classes:
                if isinstance(scope, ast.FunctionDef) and scope.name == "__init__" and call.args:
                    composed.add(owner.name)
                    for text in _templates(call.args[0], scope):
                        messages.append(Message(owner.name, module, call.lineno, text))
                continue
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            name = aliases.get(name, name)
            if name in classes:
                args = _message_args(call)
                calls.append((name, call.lineno, module, [t for arg in args for t in _templates(arg, scope)]))
    for name, line, module, texts in calls:
        if name not in composed:
            messages.extend(Message(name, module, line, text) for text in texts if text)
    return messages


class ErrorMessages(SphinxDirective):
    """``.. error-messages:: ClassName``: a list of that class's message templates and their modules."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        catalog = _catalog(self.env)
        if name not in catalog.classes:
            logger.warning(
                "error-messages: %s is not a MolvaeError class of molvae", name, location=self.get_location()
            )
            return []
        placed = self.env.domaindata.setdefault("error_catalog", {}).setdefault("placed", {})
        placed[name] = self.env.docname
        grouped: dict[str, list[str]] = defaultdict(list)
        for message in catalog.by_class.get(name, []):
            if message.module not in grouped[message.template]:
                grouped[message.template].append(message.module)
        if not grouped:
            para = nodes.paragraph(text=f"molvae raises no {name} itself: it is the base of the classes below.")
            return [para]
        items = nodes.bullet_list(classes=["error-messages"])
        for template, modules in grouped.items():
            para = nodes.paragraph()
            para += nodes.literal(text=template)
            para += nodes.Text(" (")
            for i, module in enumerate(modules):
                if i:
                    para += nodes.Text(", ")
                para += nodes.emphasis(text=module)
            para += nodes.Text(")")
            items += nodes.list_item("", para)
        return [items]


@dataclass
class _Catalog:
    classes: dict[str, str]
    by_class: dict[str, list[Message]]


@functools.cache
def _scan(package_dir: str) -> _Catalog:
    """The error classes and messages of the package, scanned once per process."""
    by_class: dict[str, list[Message]] = defaultdict(list)
    for message in collect_messages(Path(package_dir)):
        by_class[message.error].append(message)
    return _Catalog(error_classes(Path(package_dir)), dict(by_class))


def _catalog(env: BuildEnvironment) -> _Catalog:
    """The scan of the package that ``error_catalog_package`` names."""
    return _scan(env.config.error_catalog_package)


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    placed = env.domaindata.get("error_catalog", {}).get("placed", {})
    for name in [name for name, doc in placed.items() if doc == docname]:
        del placed[name]


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    env.domaindata.setdefault("error_catalog", {}).setdefault("placed", {}).update(
        other.domaindata.get("error_catalog", {}).get("placed", {})
    )


def _check(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn about error classes that a page of the build should list but none does."""
    placed = env.domaindata.get("error_catalog", {}).get("placed", {})
    if not placed:
        return  # a build without the troubleshooting page (a single page built for a test)
    for name in _catalog(env).classes:
        if name not in placed:
            logger.warning("error-messages: %s has no error-messages directive on any page", name)


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directive and the ``error_catalog_package`` setting (the package folder to scan)."""
    app.add_config_value("error_catalog_package", "", "env", types=[str])
    app.add_directive("error-messages", ErrorMessages)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
