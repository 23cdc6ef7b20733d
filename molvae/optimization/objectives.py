"""Objectives: what a molecule is optimized for, and the grammar a user writes them in.

An *objective* maps a batch of SMILES to floats, higher is better, NaN where a
molecule is invalid. Specifications a user can write::

    esol                       estimated aqueous solubility logS (ESOL, no extra needed)
    solubility                 ADMET-AI's aqueous solubility logS (the admet extra)
    admet:hERG                 any ADMET-AI endpoint, oriented by its declared direction (hERG: negated)
    qed, logp, tpsa, mw, ...   any property of molvae.chemistry.PROPERTIES
    penalized_logp             JT-VAE normalized penalized logP
    sa                         synthetic accessibility, negated (easier = higher)
    target(logp=2.5,tpsa=70)   minus the scaled distance to target values (admet:<endpoint> too)
    range(mw=250:450)          0 inside the range, minus the scaled distance outside
    0.7*qed+0.3*esol           weighted sum of any of the above
    mypkg.scoring:score        any importable callable list[str] -> sequence of floats
    path/to/scoring.py:score   the same from a Python file (no install, nothing added to sys.path)

Every property of :data:`~molvae.chemistry.properties.PROPERTIES` is an objective, maximized in the
direction its table entry declares, and so is every ADMET-AI endpoint of
``molvae.chemistry.admet.DIRECTIONS`` that declares one. :class:`molvae.optimization.oracle.Oracle` scores them
with a run's budget and accounting.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molvae import chemistry
from molvae.errors import MolvaeError, ObjectiveError, ObjectiveFailure

__all__ = [
    "BUILTIN_OBJECTIVES",
    "TARGET_SCALES",
    "Objective",
    "ObjectiveError",
    "ObjectiveFailure",
    "call_size",
    "parse_objective",
    "parse_objectives",
]


# name -> (property name in chemistry.PROPERTIES, sign, description): every property is an objective,
# maximized in its declared direction.
BUILTIN_OBJECTIVES: dict[str, tuple[str, float, str]] = {
    name: (name, prop.direction, prop.objective_description) for name, prop in chemistry.PROPERTIES.items()
}

# Typical spread of each property: target(...) and range(...) divide distances by these.
TARGET_SCALES: dict[str, float] = {name: prop.scale for name, prop in chemistry.PROPERTIES.items()}

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FILE_CALLABLE_RE = re.compile(r"^(.+\.py):([A-Za-z_][\w.]*)$", re.S)
_FUNC_RE = re.compile(r"^(target|range)\((.*)\)$", re.S)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WEIGHT_RE = re.compile(rf"^({_NUMBER})\s*\*\s*(.+)$", re.S)
_WEIGHT_AFTER_RE = re.compile(rf"^(.+?)\s*\*\s*({_NUMBER})$", re.S)


@dataclass
class Objective:
    """A named scoring function over a batch of SMILES (higher is better, NaN where invalid)."""

    name: str
    func: Callable[[list[str]], Any]
    description: str = ""
    key: str = field(default="")
    #: Most molecules per call (None: a whole round's at once). The run journals each call's
    #: scores as it returns, so a run killed mid-round re-scores at most one call's molecules:
    #: a slow custom function declares ``score.batch_size = 1`` to lose none.
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.key:
            self.key = re.sub(r"[^0-9A-Za-z]+", "_", self.name).strip("_").lower() or "objective"
        if self.batch_size is None:
            self.batch_size = getattr(self.func, "batch_size", None)
        size = self.batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ObjectiveError(f"objective {self.name!r}: batch_size must be a positive integer, got {size!r}")

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        smiles = list(smiles)
        if not smiles:
            return np.empty(0, dtype=np.float64)
        try:
            raw = self.func(smiles)
        except MolvaeError:
            raise
        except SystemExit as exc:  # sys.exit() inside an objective must not end the run silently, or with exit 0
            raise ObjectiveFailure(
                f"objective {self.name!r} called sys.exit({exc.code!r}) while scoring "
                f"{len(smiles)} molecules; an objective returns scores (NaN for a molecule it "
                "cannot score) and cannot end the run"
            ) from None
        except Exception as exc:  # a user callable failed: say which one
            raise ObjectiveFailure(f"objective {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ObjectiveFailure(
                f"objective {self.name!r} returned non-numbers ({type(raw).__name__}); expected one float per molecule"
            ) from None
        if values.ndim == 0 or values.shape != (len(smiles),):
            raise ObjectiveFailure(
                f"objective {self.name!r} returned {values.size if values.ndim else 'a scalar'} value(s) with shape "
                f"{values.shape} for {len(smiles)} molecules; expected one float per molecule"
            )
        return values


# --------------------------------------------------------------------------- parsing


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (a ``+`` in a number's exponent, as in ``1e+2``, is not a split)."""
    parts, depth, current = [], 0, []
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        exponent = sep == "+" and re.search(r"(?:^|[^0-9A-Za-z_.])[0-9.]+[eE]$", text[:i]) is not None
        if ch == sep and depth == 0 and not exponent:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _known_names() -> list[str]:
    return sorted(BUILTIN_OBJECTIVES) + ["admet:<endpoint>", "target(...)", "range(...)", "module:function"]


def _unknown(spec: str) -> ObjectiveError:
    close = difflib.get_close_matches(spec.lower(), list(BUILTIN_OBJECTIVES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ObjectiveError(f"unknown objective {spec!r}{hint} (known: {', '.join(_known_names())})")


def _builtin(name: str) -> Objective:
    prop, sign, desc = BUILTIN_OBJECTIVES[name]
    func = chemistry.PROPERTIES[prop]
    chemistry.require_extra(func)  # a missing extra stops the run before the model loads
    if sign == 1.0:
        return Objective(name, func, desc)
    return Objective(name, lambda smiles, f=func, s=sign: s * f(smiles), desc)


def _endpoint(spec: str) -> Objective:
    """``admet:<endpoint>``: maximized in the endpoint's declared direction."""
    prop = chemistry.lookup_property(spec)
    if prop is None:
        key = spec.split(":", 1)[1].strip()
        close = difflib.get_close_matches(key, list(chemistry.admet.DIRECTIONS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(chemistry.admet.PREFIX + c for c in close)}?" if close else ""
        raise ObjectiveError(
            f"unknown ADMET-AI endpoint {spec!r}{hint} (known: {', '.join(chemistry.admet.DIRECTIONS)})"
        )
    chemistry.require_extra(prop)
    if prop.direction == 0:
        raise ObjectiveError(
            f"objective {spec!r}: {prop.name} has no better direction (it depends on the project); "
            f"give a goal: target({prop.name}=VALUE) or range({prop.name}=LOW:HIGH)"
        )
    if prop.direction == 1.0:
        return Objective(prop.name, prop, prop.objective_description)
    return Objective(prop.name, lambda smiles, f=prop, s=prop.direction: s * f(smiles), prop.objective_description)


def _parse_assignments(kind: str, body: str, spec: str) -> list[tuple[str, str]]:
    if not body.strip():
        raise ObjectiveError(f"malformed objective {spec!r}: {kind}(...) needs at least one property=value")
    out = []
    for item in body.split(","):
        if "=" not in item:
            raise ObjectiveError(
                f"malformed objective {spec!r}: expected property=value in {kind}(...), got {item.strip()!r}"
            )
        prop, value = (x.strip() for x in item.split("=", 1))
        found = chemistry.lookup_property(prop)
        if found is None:
            close = difflib.get_close_matches(prop, list(chemistry.PROPERTIES), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ObjectiveError(
                f"malformed objective {spec!r}: unknown property {prop!r}{hint} (known: "
                f"{', '.join(sorted(chemistry.PROPERTIES))}, {chemistry.admet.PREFIX}<endpoint>)"
            )
        chemistry.require_extra(found)
        out.append((found.name, value))
    return out


def _scale(name: str) -> float:
    """The spread target() and range() divide ``name``'s distances by (its table entry's scale)."""
    prop = chemistry.lookup_property(name)  # a known name: _parse_assignments checked it
    return TARGET_SCALES.get(name, 1.0) if prop is None else prop.scale


def _float(value: str, spec: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ObjectiveError(f"malformed objective {spec!r}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ObjectiveError(f"malformed objective {spec!r}: {value!r} is not a finite number")
    return x


def _target(body: str, spec: str) -> Objective:
    targets = [(p, _float(v, spec)) for p, v in _parse_assignments("target", body, spec)]

    def score(smiles: list[str]) -> np.ndarray:
        table = chemistry.property_table(smiles, [p for p, _ in targets])
        sq = sum(((table[p].to_numpy() - t) / _scale(p)) ** 2 for p, t in targets)
        return -np.sqrt(sq)

    desc = "minus scaled distance to " + ", ".join(f"{p}={t:g}" for p, t in targets)
    return Objective(spec, score, desc)


def _range(body: str, spec: str) -> Objective:
    ranges = []
    for prop, value in _parse_assignments("range", body, spec):
        if ":" not in value:
            raise ObjectiveError(f"malformed objective {spec!r}: expected {prop}=low:high, got {prop}={value}")
        lo, hi = (_float(v, spec) for v in value.split(":", 1))
        if lo > hi:
            raise ObjectiveError(f"malformed objective {spec!r}: empty range {prop}={value}")
        ranges.append((prop, lo, hi))

    def score(smiles: list[str]) -> np.ndarray:
        table = chemistry.property_table(smiles, [p for p, _, _ in ranges])
        sq = 0.0
        for p, lo, hi in ranges:
            v = table[p].to_numpy()
            sq = sq + (np.maximum(lo - v, 0.0) / _scale(p)) ** 2 + (np.maximum(v - hi, 0.0) / _scale(p)) ** 2
        return -np.sqrt(sq)

    desc = "minus scaled distance outside " + ", ".join(f"{p} in [{lo:g}, {hi:g}]" for p, lo, hi in ranges)
    return Objective(spec, score, desc)


def _import_callable(spec: str) -> Objective:
    module_name, attr = spec.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        # `molvae` is an installed script: the working directory is not on its import path
        here = Path(*module_name.split(".")).with_suffix(".py")
        hint = (
            f"; {here} is in this directory: pass it as a file, --objective {here}:{attr}"
            if here.is_file()
            else "; install it, add its folder to PYTHONPATH, or pass a file: path/to/file.py:function"
        )
        raise ObjectiveError(f"objective {spec!r}: cannot import module {module_name!r} ({exc}){hint}") from None
    except Exception as exc:
        raise ObjectiveError(
            f"objective {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return _attribute_objective(spec, obj, module_name, attr)


def _file_callable(path_text: str, attr: str) -> Objective:
    """``path/to/file.py:function``: the module is loaded from the file under a private name.

    The objective is named by the file's absolute path, so a resumed run finds it from any
    working directory.
    """
    import hashlib
    import importlib.util

    path = Path(path_text).expanduser().resolve()
    spec = f"{path}:{attr}"
    if not path.is_file():
        raise ObjectiveError(f"objective {path_text}:{attr}: no such file {path}")
    name = f"molvae_objective_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ObjectiveError(f"objective {spec!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise ObjectiveError(f"objective {spec!r}: loading {path} failed: {type(exc).__name__}: {exc}") from None
    return _attribute_objective(spec, module, str(path), attr)


def _attribute_objective(spec: str, obj: Any, module_name: str, attr: str) -> Objective:
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ObjectiveError(f"objective {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ObjectiveError(f"objective {spec!r}: {attr!r} in {module_name!r} is not callable")
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return Objective(spec, obj, doc[0] if doc else f"custom objective {spec}", key=attr.split(".")[-1])


def _single(spec: str) -> Objective:
    if spec in BUILTIN_OBJECTIVES:
        return _builtin(spec)
    if spec.lower() in BUILTIN_OBJECTIVES:
        return _builtin(spec.lower())
    m = _FUNC_RE.match(spec)
    if m:
        return _target(m.group(2), spec) if m.group(1) == "target" else _range(m.group(2), spec)
    if re.match(r"^(target|range)\b", spec):
        raise ObjectiveError(
            f"malformed objective {spec!r}: expected e.g. target(logp=2.5,tpsa=70) or range(mw=250:450)"
        )
    if spec.lower().startswith(chemistry.admet.PREFIX):  # before module:function, which it also matches
        return _endpoint(spec)
    m = _FILE_CALLABLE_RE.match(spec)  # before module:function, which "scoring.py:score" also matches
    if m:
        return _file_callable(m.group(1), m.group(2))
    if _CALLABLE_RE.match(spec):
        return _import_callable(spec)
    raise _unknown(spec)


def parse_objective(spec: str | Callable | Objective, name: str | None = None) -> Objective:
    """Turn a specification (see the module docstring), a callable or an Objective into an Objective."""
    if isinstance(spec, Objective):
        return spec
    if callable(spec):
        label = name or getattr(spec, "__name__", "objective")
        return Objective(label, spec, f"custom objective {label}")
    if not isinstance(spec, str) or not spec.strip():
        raise ObjectiveError(f"objective must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    terms = _split_top_level(spec, "+")
    if len(terms) == 1 and not _WEIGHT_RE.match(spec) and not _WEIGHT_AFTER_RE.match(spec) and not spec.startswith("-"):
        return _single(spec)
    parsed: list[tuple[float, Objective]] = []
    for term in terms:
        if not term:
            raise ObjectiveError(f"malformed objective {spec!r}: empty term in weighted sum")
        m = _WEIGHT_RE.match(term)
        m2 = None if m else _WEIGHT_AFTER_RE.match(term)
        if m:
            weight, inner = _float(m.group(1), spec), m.group(2).strip()
        elif m2:
            weight, inner = _float(m2.group(2), spec), m2.group(1).strip()
        elif term.startswith("-"):
            weight, inner = -1.0, term[1:].strip()
        else:
            weight, inner = 1.0, term
        parsed.append((weight, _single(inner)))

    def score(smiles: list[str]) -> np.ndarray:
        return sum(w * obj(smiles) for w, obj in parsed)

    return Objective(
        spec,
        score,
        "weighted sum: " + " + ".join(f"{w:g}*{o.name}" for w, o in parsed),
        batch_size=call_size([o for _, o in parsed]),
    )


def call_size(objectives: Sequence[Objective]) -> int | None:
    """Molecules per call that suits every one of ``objectives`` (None: no limit)."""
    sizes = [o.batch_size for o in objectives if o.batch_size is not None]
    return min(sizes) if sizes else None


def parse_objectives(spec: str | Sequence[str]) -> list[Objective]:
    """Several objectives: ``"esol,qed"`` (commas inside parentheses are kept) or a list."""
    items = _split_top_level(spec, ",") if isinstance(spec, str) else list(spec)
    if not items or any(not isinstance(s, str) or not s.strip() for s in items):
        raise ObjectiveError(f"malformed objective list {spec!r}")
    objectives = [parse_objective(s) for s in items]
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ObjectiveError(f"objectives must be distinct, got {', '.join(names)}")
    # Keys name the score columns (score_<key>): two functions called alike in different
    # files get the list position added, in order, so a resumed run finds the same columns.
    keys = [o.key for o in objectives]
    for i, o in enumerate(objectives):
        if keys.count(o.key) > 1:
            objectives[i] = dataclasses.replace(o, key=f"{o.key}_{i + 1}")
    return objectives
