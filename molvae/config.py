"""One validator for the dataclass configurations saved as JSON (model, training, optimization).

Each field declares its type by annotation and its range with :func:`rule` in the
field's metadata; :func:`validate_config` checks an instance against both and
:func:`config_from_dict` builds one from parsed JSON (unknown and missing keys
are errors). Every config therefore rejects a wrong type, an out-of-range value
or a stray key with the same kind of one-line :class:`~molvae.errors.ConfigError`,
whether it came from the command line, a Python call or a saved ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from molvae.errors import ConfigError

C = TypeVar("C")

_RULE = "molvae_rule"


@dataclass(frozen=True)
class Rule:
    """Range of a numeric field (``ge``/``gt``/``le``/``lt``) or the allowed values of any field (``choices``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return f">= {_num(self.ge)}" if self.ge is not None else f"> {_num(self.gt)}"
        if hi:
            return f"<= {_num(self.le)}" if self.le is not None else f"< {_num(self.lt)}"
        return ""


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def rule(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
) -> dict[str, Rule]:
    """Field metadata for :func:`dataclasses.field`: ``x: int = field(default=1, metadata=rule(ge=1))``."""
    return {_RULE: Rule(ge, gt, le, lt, tuple(choices) if choices is not None else None)}


def field_rule(f: dataclasses.Field) -> Rule | None:
    """The :func:`rule` a dataclass field declares (None: none)."""
    return f.metadata.get(_RULE)


# ----------------------------------------------------------------------------- types


def _is_optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _type_ok(value: Any, hint: Any) -> bool:
    """Does a JSON-like ``value`` fit the annotation ``hint``? (bool is not an int; an int is a float)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if _is_union(hint):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        # NaN/Inf pass every comparison the wrong way or make no sense as a setting.
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, Sequence, tuple):
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0] if args else Any) for v in value)
    if origin is dict:
        key, val = args if args else (Any, Any)
        return isinstance(value, dict) and all(_type_ok(k, key) and _type_ok(v, val) for k, v in value.items())
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    if _is_union(hint):
        names = [_type_name(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(names) + (" or null" if _is_optional(hint) else "")
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", Any: "anything"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, Sequence, tuple):
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "an object"
    return getattr(hint, "__name__", str(hint))


def _expectation(hint: Any, r: Rule | None) -> str:
    """What a field must be, in words: 'a positive integer', 'a finite number in [0, 1)', ..."""
    base = [a for a in typing.get_args(hint) if a is not type(None)] if _is_optional(hint) else [hint]
    optional = " or null" if _is_optional(hint) else ""
    if r is None:
        return _type_name(hint)
    if r.choices is not None:
        return r.describe() + optional
    if len(base) == 1 and base[0] is int and r.ge in (0, 1) and r.gt is r.le is r.lt is None:
        return ("a positive integer" if r.ge == 1 else "a non-negative integer") + optional
    return f"{_type_name(base[0]) if len(base) == 1 else _type_name(hint)} {r.describe()}{optional}"


# ----------------------------------------------------------------------------- validation


def validate_config(config: Any, section: str) -> None:
    """Check every field of a dataclass instance against its annotation and :func:`rule`.

    Raises :class:`ConfigError` ``"<section>: <field> must be <what>, got <value>"``
    at the first field that does not fit.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        hint = hints[f.name]
        r = field_rule(f)
        ok = _type_ok(value, hint)
        if ok and r is not None and value is not None:
            ok = r.accepts(value)
        if not ok:
            raise ConfigError(f"{section}: {f.name} must be {_expectation(hint, r)}, got {value!r}")


def config_from_dict(cls: type[C], data: Any, section: str) -> C:
    """Build and validate a config dataclass from parsed JSON; unknown or missing keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a JSON object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in fields}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ConfigError(f"{section}: unknown fields {unknown}; known: {', '.join(sorted(known))}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{section}: {', '.join(missing)} missing")
    config = cls(**data)
    validate_config(config, section)
    return config
