"""Objectives: what a molecule is optimized for, and the budgeted, cached oracle that scores them.

An *objective* maps a batch of SMILES to floats, higher is better, NaN where a
molecule is invalid. Specifications a user can write::

    esol                       estimated aqueous solubility logS (ESOL)
    qed, logp, tpsa, mw, ...   any property of molvae.chemistry.PROPERTIES
    penalized_logp             JT-VAE normalized penalized logP
    sa                         synthetic accessibility, negated (easier = higher)
    target(logp=2.5,tpsa=70)   minus the scaled distance to target values
    range(mw=250:450)          0 inside the range, minus the scaled distance outside
    0.7*qed+0.3*esol           weighted sum of any of the above
    mypkg.scoring:score        any importable callable list[str] -> sequence of floats
    path/to/scoring.py:score   the same from a Python file (no install, nothing added to sys.path)

:class:`Oracle` wraps the objectives with the run's accounting: scores are
cached by canonical SMILES, every new valid molecule scored costs one oracle
call out of the budget, and invalid decodes and repeats cost nothing but are
counted. The constraints (similarity, alerts, property ranges) are RDKit
computations, cheap next to an oracle worth budgeting: a molecule that fails
one is recorded as infeasible, with the reason, before the oracle sees it, and
costs no call (``score_infeasible=True`` scores and charges it as well).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molvae import chemistry
from molvae.errors import MolvaeError

__all__ = [
    "BUILTIN_OBJECTIVES",
    "PROPERTY_COLUMNS",
    "TARGET_SCALES",
    "Constraints",
    "Objective",
    "ObjectiveError",
    "Oracle",
    "parse_objective",
    "parse_objectives",
    "parse_range",
]


class ObjectiveError(MolvaeError):
    """An objective cannot be parsed, imported, or returned something unusable."""


class ObjectiveFailure(ObjectiveError):
    """An objective failed while scoring molecules: it raised, ended the process, or returned unusable values."""

    resumable = True  # the scores paid for so far are in the run's journal


# name -> (property name in chemistry.PROPERTIES, sign, description): every property is an objective,
# maximized in its declared direction.
BUILTIN_OBJECTIVES: dict[str, tuple[str, float, str]] = {
    name: (name, prop.direction, prop.objective_description) for name, prop in chemistry.PROPERTIES.items()
}

# Typical spread of each property: target(...) and range(...) divide distances by these.
TARGET_SCALES: dict[str, float] = {name: prop.scale for name, prop in chemistry.PROPERTIES.items()}

# Properties recorded for every scored molecule.
PROPERTY_COLUMNS: tuple[str, ...] = ("mw", "logp", "tpsa", "qed", "sa", "esol")

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
            raise ObjectiveFailure(f"objective {self.name!r} called sys.exit({exc.code!r}) while scoring "
                                   f"{len(smiles)} molecules; an objective returns scores (NaN for a molecule it "
                                   "cannot score) and cannot end the run") from None
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
    return sorted(BUILTIN_OBJECTIVES) + ["target(...)", "range(...)", "module:function"]


def _unknown(spec: str) -> ObjectiveError:
    close = difflib.get_close_matches(spec.lower(), list(BUILTIN_OBJECTIVES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ObjectiveError(f"unknown objective {spec!r}{hint} (known: {', '.join(_known_names())})")


def _builtin(name: str) -> Objective:
    prop, sign, desc = BUILTIN_OBJECTIVES[name]
    func = chemistry.PROPERTIES[prop]
    if sign == 1.0:
        return Objective(name, func, desc)
    return Objective(name, lambda smiles, f=func, s=sign: s * f(smiles), desc)


def _parse_assignments(kind: str, body: str, spec: str) -> list[tuple[str, str]]:
    if not body.strip():
        raise ObjectiveError(f"malformed objective {spec!r}: {kind}(...) needs at least one property=value")
    out = []
    for item in body.split(","):
        if "=" not in item:
            raise ObjectiveError(f"malformed objective {spec!r}: expected property=value in {kind}(...), got {item.strip()!r}")
        prop, value = (x.strip() for x in item.split("=", 1))
        if prop not in chemistry.PROPERTIES:
            close = difflib.get_close_matches(prop, list(chemistry.PROPERTIES), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ObjectiveError(
                f"malformed objective {spec!r}: unknown property {prop!r}{hint} (known: {', '.join(sorted(chemistry.PROPERTIES))})"
            )
        out.append((prop, value))
    return out


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
        sq = sum(((table[p].to_numpy() - t) / TARGET_SCALES[p]) ** 2 for p, t in targets)
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
            sq = sq + (np.maximum(lo - v, 0.0) / TARGET_SCALES[p]) ** 2 + (np.maximum(v - hi, 0.0) / TARGET_SCALES[p]) ** 2
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
        hint = (f"; {here} is in this directory: pass it as a file, --objective {here}:{attr}" if here.is_file()
                else "; install it, add its folder to PYTHONPATH, or pass a file: path/to/file.py:function")
        raise ObjectiveError(f"objective {spec!r}: cannot import module {module_name!r} ({exc}){hint}") from None
    except Exception as exc:
        raise ObjectiveError(f"objective {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
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
        raise ObjectiveError(f"malformed objective {spec!r}: expected e.g. target(logp=2.5,tpsa=70) or range(mw=250:450)")
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

    return Objective(spec, score, "weighted sum: " + " + ".join(f"{w:g}*{o.name}" for w, o in parsed),
                     batch_size=call_size([o for _, o in parsed]))


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


# --------------------------------------------------------------------------- constraints


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    """``"mw=200:450"`` -> ``("mw", (200.0, 450.0))``: one property range constraint (finite bounds)."""
    try:
        prop, value = text.split("=", 1)
        lo, hi = value.split(":", 1)
        bounds = (float(lo), float(hi))
    except ValueError:
        raise ObjectiveError(f"expected PROPERTY=LOW:HIGH (e.g. mw=200:500), got {text!r}") from None
    if not all(math.isfinite(b) for b in bounds):
        raise ObjectiveError(f"{text!r}: the bounds must be finite numbers (for an open end, a bound beyond any "
                             "molecule, such as mw=0:100000)")
    return prop.strip(), bounds


def range_table(ranges: Sequence[tuple[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Parsed ranges by property; a property given twice is an error (which one was meant is not known)."""
    table: dict[str, tuple[float, float]] = {}
    for prop, bounds in ranges:
        if prop in table:
            raise ObjectiveError(f"--range {prop} given twice ({_span(table[prop])} and {_span(bounds)}); give one "
                                 "range per property")
        table[prop] = bounds
    return table


def _span(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}:{bounds[1]:g}"


@dataclass
class Constraints:
    """Feasibility rules: similarity to a reference molecule, structural alerts, property ranges."""

    reference: str | None = None  # a drug name or SMILES; stored as canonical SMILES
    reference_name: str | None = None
    min_similarity: float | None = None
    alerts: Sequence[str] | None = None  # RDKit catalogs, e.g. ("PAINS", "BRENK"); None = no filter
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reference is not None:
            from molvae.drugs import resolve_molecule

            # Python callers pass "celecoxib" as the CLI's --similar-to does; the search compares
            # canonical SMILES, so a name left as it was failed deep in the initial design.
            name, self.reference = resolve_molecule(self.reference)
            if self.reference_name is None:
                self.reference_name = name
        if self.min_similarity is not None:
            if self.reference is None:
                raise ObjectiveError("a minimum similarity needs a reference molecule (--similar-to)")
            if not 0.0 <= self.min_similarity <= 1.0:
                raise ObjectiveError(f"min similarity must be in [0, 1], got {self.min_similarity}")
        for prop, (lo, hi) in self.ranges.items():
            if prop not in chemistry.PROPERTIES:
                raise ObjectiveError(f"unknown property {prop!r} in range; known: {', '.join(sorted(chemistry.PROPERTIES))}")
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ObjectiveError(f"range for {prop}: the bounds must be finite numbers, got [{lo}, {hi}]")
            if lo > hi:
                raise ObjectiveError(f"empty range for {prop}: [{lo}, {hi}]")
        if self.alerts:
            # Build the catalogs now: a typo must stop the run before the model loads, not at the first score.
            try:
                chemistry.passes_alerts([], tuple(self.alerts))
            except ValueError as exc:
                raise ObjectiveError(f"--alerts: {exc}") from None

    @property
    def active(self) -> bool:
        return self.min_similarity is not None or bool(self.alerts) or bool(self.ranges)

    def check(self, smiles: Sequence[str], properties: dict[str, np.ndarray] | None = None
              ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(feasible, reason, similarity) for valid canonical SMILES."""
        smiles = list(smiles)
        n = len(smiles)
        reasons: list[list[str]] = [[] for _ in range(n)]
        similarity = np.full(n, np.nan)
        if self.reference is not None and n:
            similarity = chemistry.tanimoto_similarity(self.reference, smiles)
            if self.min_similarity is not None:
                for i, s in enumerate(similarity):
                    if not s >= self.min_similarity:
                        reasons[i].append(f"similarity {s:.2f} < {self.min_similarity:g}")
        if self.alerts and n:
            ok = chemistry.passes_alerts(smiles, tuple(self.alerts))
            for i in np.flatnonzero(~ok):
                reasons[i].append("structural alert")
        for prop, (lo, hi) in self.ranges.items():
            values = (properties or {}).get(prop)
            if values is None:
                values = chemistry.PROPERTIES[prop](smiles)
            for i, v in enumerate(values):
                if not lo <= v <= hi:
                    reasons[i].append(f"{prop} {v:.4g} outside [{lo:g}, {hi:g}]")
        feasible = np.array([not r for r in reasons], dtype=bool)
        return feasible, ["; ".join(r) for r in reasons], similarity

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "reference_name": self.reference_name,
                "min_similarity": self.min_similarity, "alerts": list(self.alerts) if self.alerts else None,
                "ranges": {k: list(v) for k, v in self.ranges.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Constraints":
        return cls(reference=data.get("reference"), reference_name=data.get("reference_name"),
                   min_similarity=data.get("min_similarity"), alerts=data.get("alerts"),
                   ranges={k: (float(v[0]), float(v[1])) for k, v in (data.get("ranges") or {}).items()})


# --------------------------------------------------------------------------- the oracle


class Oracle:
    """Budgeted, cached scoring of molecules with one or more objectives.

    Every molecule passed to :meth:`evaluate` becomes one record (a dict, in
    order): ``status`` is ``scored`` (a new valid molecule: costs one call and
    gets the next ``call`` index), ``supplied`` (score given, e.g. by an
    ``--init`` file: no call), ``repeat`` (already known, or twice in the
    batch: not scored, no call) or ``invalid`` (no valid molecule: no call).
    New molecules beyond the remaining budget are dropped without a record.

    With a ``journal`` file, every score is appended to it (and fsynced) as soon as
    the objective returns, before any other bookkeeping. A run killed after scoring
    but before its records reached the disk reuses those scores on resume
    (:meth:`load_journal`) instead of calling the objective again.
    """

    STATUSES = ("scored", "supplied", "repeat", "invalid", "infeasible")
    KNOWN = ("scored", "supplied", "infeasible")  # a distinct valid molecule the run has seen
    SCORED = ("scored", "supplied")  # a molecule with scores (paid for, or from an --init file)

    def __init__(self, objectives: Sequence[Objective], budget: int, constraints: Constraints | None = None,
                 journal: str | Path | None = None, score_infeasible: bool = False):
        if budget < 0:
            raise ObjectiveError(f"budget must be >= 0, got {budget}")
        self.objectives = list(objectives)
        if not self.objectives:
            raise ObjectiveError("at least one objective is needed")
        self.budget = int(budget)
        self.constraints = constraints or Constraints()
        self.records: list[dict[str, Any]] = []
        self.known: dict[str, int] = {}  # canonical SMILES -> record index
        self.calls = 0
        self.n_invalid = 0
        self.n_repeat = 0
        self.n_unscored = 0  # infeasible molecules recorded without an oracle call
        self.score_infeasible = bool(score_infeasible)
        self.journal = Path(journal) if journal is not None else None
        self.score_cache: dict[str, np.ndarray] = {}  # canonical SMILES -> scores already paid for (this process or the journal)

    # ---- columns
    @property
    def score_columns(self) -> list[str]:
        if len(self.objectives) == 1:
            return ["score"]
        return [f"score_{o.key}" for o in self.objectives]

    @property
    def columns(self) -> list[str]:
        return (["call", "round", "source", "status", "smiles", *self.score_columns, "valid", "feasible", "reason",
                 "similarity", *PROPERTY_COLUMNS])

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    # ---- scoring
    def evaluate(self, smiles: Sequence[str | None], round: int, source: str) -> list[dict[str, Any]]:
        """Score the new valid feasible molecules among ``smiles`` (within the budget); return the new records."""
        rows: list[dict[str, Any] | str] = []
        seen_now: set[str] = set()
        for s in smiles:
            canonical = self._classify(s, round, source, seen_now, rows)
            if canonical is not None:
                seen_now.add(canonical)
                rows.append(canonical)  # placeholder, resolved below in order
        candidates = [r for r in rows if isinstance(r, str)]
        checks = dict(zip(candidates, zip(*self._assess(candidates)))) if candidates else {}
        kept: list[dict[str, Any] | None] = []
        new: list[str] = []
        for row in rows:
            if isinstance(row, str):
                feasible, reason, similarity, props = checks[row]
                if not feasible and not self.score_infeasible:
                    self.n_unscored += 1
                    row = self._row(None, round, source, "infeasible", smiles=row, reason=reason,
                                    similarity=similarity, props=props)
                elif len(new) < self.remaining:
                    new.append(row)
                    row = None  # filled with its score below
                else:
                    continue  # beyond the budget: no record, so a resume with a larger budget can score it
            kept.append(row)
        scores = self._score(new)
        return self._fill(kept, new, scores, round, source, "scored", checks)

    def add_supplied(self, smiles: Sequence[str], scores: np.ndarray, round: int = 0, source: str = "init-file"
                     ) -> list[dict[str, Any]]:
        """Record molecules whose scores are given (no oracle call); invalid and repeated ones are counted."""
        scores = np.asarray(scores, dtype=np.float64).reshape(len(smiles), len(self.objectives))
        rows: list[dict[str, Any] | None] = []
        new, new_scores, seen_now = [], [], set()
        for s, sc in zip(smiles, scores):
            canonical = self._classify(s, round, source, seen_now, rows)
            if canonical is not None:
                seen_now.add(canonical)
                new.append(canonical)
                new_scores.append(sc)
                rows.append(None)
        return self._fill(rows, new, np.asarray(new_scores).reshape(len(new), len(self.objectives)), round, source,
                          "supplied")

    def _classify(self, s: str | None, round: int, source: str, seen_now: set[str], rows: list) -> str | None:
        """Canonical SMILES of a new molecule; invalid ones and repeats are counted and recorded in ``rows``."""
        canonical = chemistry.canonicalize(s) if isinstance(s, str) and s else None
        if canonical is None:
            self.n_invalid += 1
            rows.append(self._row(None, round, source, "invalid", smiles=s or ""))
            return None
        if canonical in self.known or canonical in seen_now:
            self.n_repeat += 1
            rows.append(self._row(None, round, source, "repeat", smiles=canonical))
            return None
        return canonical

    def _score(self, smiles: list[str]) -> np.ndarray:
        if not smiles:
            return np.empty((0, len(self.objectives)))
        todo = [s for s in smiles if s not in self.score_cache]
        step = call_size(self.objectives) or max(len(todo), 1)
        for start in range(0, len(todo), step):  # journaled call by call: a kill loses at most one call's scores
            part = todo[start : start + step]
            fresh = np.stack([obj(part) for obj in self.objectives], axis=1)
            self._append_journal(part, fresh)
            self.score_cache.update(zip(part, fresh))
        return np.stack([self.score_cache[s] for s in smiles])

    # ---- score journal
    def _append_journal(self, smiles: list[str], scores: np.ndarray) -> None:
        if self.journal is None:
            return
        lines = "".join(json.dumps({"smiles": s, "scores": [float(v) for v in row]}) + "\n"
                        for s, row in zip(smiles, scores))
        # One write plus fsync per batch: a kill leaves at most a torn last line, which load_journal drops.
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def load_journal(self) -> int:
        """Read the scores a previous (killed) process already paid for; returns how many were read.

        A torn last line (the process was killed mid-write) is cut off the file so
        later appends start on a fresh line.
        """
        if self.journal is None or not self.journal.is_file():
            return 0
        data = self.journal.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.journal, "r+b") as fh:
                fh.truncate(end)
        n = len(self.objectives)
        for lineno, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
            try:
                entry = json.loads(line)
                scores = np.asarray(entry["scores"], dtype=np.float64).reshape(n)
                smiles = str(entry["smiles"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ObjectiveError(f"{self.journal}, line {lineno}: unreadable score record ({exc}); "
                                     "the objectives may have changed since the run began") from None
            self.score_cache[smiles] = scores
        return len(self.score_cache)

    def _assess(self, smiles: list[str]) -> tuple[list[bool], list[str], list[float], list[dict[str, float]]]:
        """Per molecule: feasible, reason, similarity to the reference, and the report's properties."""
        table = chemistry.property_table(smiles, list(PROPERTY_COLUMNS), n_jobs=1)
        props = {p: table[p].to_numpy() for p in PROPERTY_COLUMNS}
        feasible, reasons, similarity = self.constraints.check(smiles, props)
        per_row = [{p: props[p][i] for p in props} for i in range(len(smiles))]
        return [bool(f) for f in feasible], list(reasons), [float(v) for v in similarity], per_row

    def _fill(self, rows: list, new: list[str], scores: np.ndarray, round: int, source: str, status: str,
              checks: dict[str, tuple] | None = None) -> list[dict[str, Any]]:
        if new and checks is None:
            checks = dict(zip(new, zip(*self._assess(new))))
        it = iter(range(len(new)))
        out = []
        for row in rows:
            if row is None:
                i = next(it)
                call = None
                if status == "scored":
                    self.calls += 1
                    call = self.calls
                ok, reason, similarity, props = checks[new[i]]
                if not np.all(np.isfinite(scores[i])):
                    ok = False
                    nan = np.isnan(scores[i]).any()
                    if status == "supplied":
                        why = "no score given in the --init file" if nan else "the --init file gives an infinite score"
                    else:
                        why = f"objective returned {'NaN' if nan else 'an infinite value'}"
                    reason = "; ".join(r for r in (reason, why) if r)
                row = self._row(call, round, source, status, smiles=new[i], scores=scores[i], feasible=ok,
                                reason=reason, similarity=similarity, props=props)
            if row["status"] in self.KNOWN:
                self.known[row["smiles"]] = len(self.records)
            self.records.append(row)
            out.append(row)
        return out

    def _row(self, call, round, source, status, smiles, scores=None, feasible=False, reason="", similarity=np.nan,
             props=None) -> dict[str, Any]:
        row: dict[str, Any] = {"call": call, "round": round, "source": source, "status": status, "smiles": smiles}
        for j, col in enumerate(self.score_columns):
            row[col] = float(scores[j]) if scores is not None else np.nan
        if status == "repeat" and smiles in self.known:
            # Report the cached score so a repeat can be read on its own (it cost nothing).
            known = self.records[self.known[smiles]]
            for col in self.score_columns:
                row[col] = known[col]
        row.update({"valid": status != "invalid", "feasible": bool(feasible) if status in self.SCORED else False,
                    "reason": reason if status in self.KNOWN else status,
                    "similarity": float(similarity)})
        for p in PROPERTY_COLUMNS:
            row[p] = float((props or {}).get(p, np.nan))
        return row

    # ---- persistence
    def dataframe(self):
        import pandas as pd

        df = pd.DataFrame(self.records, columns=self.columns)
        df["call"] = df["call"].astype("Int64")
        return df

    def load_records(self, df) -> None:
        """Restore the accounting from an ``evaluations.csv`` table (for resuming)."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise ObjectiveError(f"evaluations table lacks columns {missing} (objectives changed since the run began?)")
        self.records, self.known = [], {}
        self.calls = self.n_invalid = self.n_repeat = self.n_unscored = 0
        for rec in df[self.columns].to_dict("records"):
            rec = {k: (None if k == "call" and (v is None or (isinstance(v, float) and math.isnan(v))) else v)
                   for k, v in rec.items()}
            if rec["call"] is not None:
                rec["call"] = int(rec["call"])
            rec["reason"] = "" if not isinstance(rec["reason"], str) else rec["reason"]
            status = rec["status"]
            if status in self.KNOWN:
                self.known[rec["smiles"]] = len(self.records)
            if status == "scored":
                self.calls += 1
            elif status == "invalid":
                self.n_invalid += 1
            elif status == "repeat":
                self.n_repeat += 1
            elif status == "infeasible":
                self.n_unscored += 1
            self.records.append(rec)

    def scored_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] in self.SCORED]

    def known_records(self) -> list[dict[str, Any]]:
        """Every distinct valid molecule of the run: scored, supplied, and infeasible ones not scored."""
        return [r for r in self.records if r["status"] in self.KNOWN]
