"""The conda environment (environment.yml) asks for what pyproject.toml asks for (its extras included), so
conda users do not get a different set of packages or older versions than pip users."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge package name -> PyPI name
CONDA_ONLY = {"python", "pip", "cxx-compiler"}


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name.lower(): Requirement(r).specifier for r in requirements}


def _environment_requirements() -> dict[str, SpecifierSet]:
    found = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:") :].splitlines():  # not the channels list
        m = re.match(r"\s+- ([A-Za-z0-9_.-]+)\s*(=?[<>=!~][^#]*)?\s*(#.*)?$", line)
        if not m or m.group(1) in CONDA_ONLY:
            continue
        name = CONDA_NAMES.get(m.group(1), m.group(1)).lower()
        spec = (m.group(2) or "").strip()
        # conda's "=3.11" pins a series; the other operators read as pip's.
        found[name] = SpecifierSet(f"=={spec[1:]}.*" if re.match(r"=[^=]", spec) else spec)
    return found


def test_environment_lists_every_pyproject_requirement() -> None:
    pip, conda = _pyproject_requirements(), _environment_requirements()
    assert len(pip) >= 15
    assert sorted(set(pip) - set(conda)) == []
    assert sorted(set(conda) - set(pip)) == []


def test_environment_lower_bounds_match_pyproject() -> None:
    pip, conda = _pyproject_requirements(), _environment_requirements()
    for name, spec in pip.items():
        floor = {str(s.version) for s in spec if s.operator == ">="}
        conda_floor = {str(s.version) for s in conda[name] if s.operator == ">="}
        # Version() so that conda's "2023.09" equals pip's "2023.9".
        assert {Version(v) for v in conda_floor} == {Version(v) for v in floor}, name
        upper = {str(s) for s in spec if s.operator == "<"}
        assert upper == {str(s) for s in conda[name] if s.operator == "<"}, name


def test_environment_python_is_supported() -> None:
    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    line = next(s for s in (ROOT / "environment.yml").read_text().splitlines() if s.strip().startswith("- python="))
    assert Version(line.split("=", 1)[1].strip()) in requires
