#!/usr/bin/env python
"""Execute the notebooks under notebooks/ in place at their normal sizes, and stamp what made their outputs.

Usage:
    python scripts/execute_notebooks.py                  # every notebooks/*.ipynb, one after the other
    python scripts/execute_notebooks.py notebooks/02_interpolate_drugs.ipynb
    python scripts/execute_notebooks.py --check          # execute nothing; exit 1 naming stale notebooks

Each notebook runs in a fresh ``python3`` kernel that imports molvae from this checkout,
with ``MOLVAE_SMOKE`` and ``MOLVAE_MODEL`` removed from its environment (the committed
outputs are those of the normal sizes and the default model) and its working directory
in a new temporary folder (``--workdir`` names one to keep), so every run starts from nothing.
Any cell that raises stops the run and leaves the notebook file untouched; the working
directory is then kept, with the partly executed notebook in it.

On success the notebook is rewritten with its outputs and:

- a first markdown cell (tagged ``execution-facts``) stating the sizes of the parameter
  cell as the kernel saw them, the wall time, the machine, the molvae version and the date;
- ``metadata["molvae"]``: a digest of the code cells' sources, the identity of every bundled
  model the kernel held at the end (weights SHA-256, as ``molvae info`` prints it, and a
  digest of its stored priors, which sampling uses), the molvae version and the facts above.

``--check`` (and tests/notebooks/test_staleness.py) compares those stamps with the
notebook's current code and the current bundled models; see notebooks/README.md.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from molvae.datasets import default_cache_dir
from molvae.model.store import pretrained_dir, weights_sha256

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
FACTS_TAG = "execution-facts"
STAMP_KEY = "molvae"
CELL_TIMEOUT_S = 3600
MAX_BYTES = 2_000_000  # a notebook larger than this is too heavy to browse on the repository page
# Environment variables the notebooks read: the committed outputs are those of their defaults.
NOTEBOOK_ENV = ("MOLVAE_SMOKE", "MOLVAE_MODEL")
# Printed by the probe cell, found again in its output.
PROBE_MARK = "MOLVAE_NOTEBOOK_PROBE "

# Run in the kernel after the last cell (and removed again): what the notebook actually used.
PROBE = """
import gc as _gc, json as _json
from pathlib import Path as _Path
import molvae as _molvae
from molvae.checkpoint import hardware_description as _hardware
from molvae.model import MolVAE as _MolVAE

def _show(value):
    return str(value) if isinstance(value, _Path) else repr(value)

print({mark!r} + _json.dumps({{
    "smoke": globals().get("SMOKE"),
    "parameters": {{name: _show(globals()[name]) for name in {names!r} if name in globals()}},
    "model_sources": sorted({{str(m.source) for m in _gc.get_objects() if isinstance(m, _MolVAE) and m.source}}),
    "molvae": _molvae.__version__,
    "molvae_file": _molvae.__file__,
    "hardware": _hardware(),
}}))
"""


# --------------------------------------------------------------------------- digests


def code_digest(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the code cells' sources, in order: what the outputs were computed from."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode("utf-8"))
            h.update(b"\0")  # so moving a line from one cell into the next changes the digest
    return h.hexdigest()


def bundled_model_identity(name: str, root: Path | None = None) -> dict[str, str] | None:
    """Weights SHA-256 and a digest of the stored priors of the bundled model ``name`` (None if not bundled)."""
    folder = (pretrained_dir() if root is None else root) / name
    weights = weights_sha256(folder)
    if weights is None:
        return None
    h = hashlib.sha256()
    priors = folder / "priors"
    for file in sorted(priors.rglob("*")) if priors.is_dir() else []:
        if file.is_file():
            h.update(file.relative_to(priors).as_posix().encode())
            h.update(b"\0")
            h.update(file.read_bytes())
            h.update(b"\0")
    return {"weights_sha256": weights, "priors_sha256": h.hexdigest()}


def parameter_names(nb: nbformat.NotebookNode) -> list[str]:
    """Upper-case names assigned at the top level of the first code cell (the notebook's sizes)."""
    first = next(cell for cell in nb.cells if cell.cell_type == "code")
    names: list[str] = []
    for node in ast.parse(first.source).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id.isupper() and leaf.id not in names:
                    names.append(leaf.id)
    return names


# --------------------------------------------------------------------------- staleness


def staleness_problems(nb: nbformat.NotebookNode, models_root: Path | None = None) -> list[str]:
    """Why the stored outputs of ``nb`` are not those of its current code and bundled models (empty: fresh).

    Checks that the notebook was executed by this script at its normal sizes, that every
    code cell ran once, in order, without an error output, that the code has not changed
    since, and that each bundled model it used is still the same (``models_root`` stands
    in for the bundled models' folder in tests).
    """
    stamp = nb.metadata.get(STAMP_KEY)
    if not stamp:
        return ["no execution stamp: never executed by scripts/execute_notebooks.py"]
    problems = []
    if stamp.get("smoke") is not False:
        problems.append(f"its outputs are not from a normal-size run (SMOKE was {stamp.get('smoke')!r})")
    if not nb.cells or FACTS_TAG not in nb.cells[0].metadata.get("tags", []):
        problems.append(f"the first cell is not the {FACTS_TAG} cell the script writes")
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"code cells not executed once each, in order: execution counts {counts}")
    if not any(cell.outputs for cell in code):
        problems.append("no outputs")
    errors = [
        i for i, cell in enumerate(nb.cells) if any(out.output_type == "error" for out in cell.get("outputs", []))
    ]
    if errors:
        problems.append(f"error outputs in cells {errors}")
    if stamp.get("code_sha256") != code_digest(nb):
        problems.append("the code cells changed since the outputs were made (code digest differs)")
    for name, identity in sorted(stamp.get("models", {}).items()):
        current = bundled_model_identity(name, models_root)
        if current is None:
            problems.append(f"made with bundled model {name!r}, which is no longer bundled")
        elif current != identity:
            changed = [key for key in identity if current.get(key) != identity[key]]
            problems.append(f"bundled model {name!r} changed since the outputs were made ({', '.join(changed)})")
    return problems


# --------------------------------------------------------------------------- execution


def _cpu_flags() -> str:
    """The CPU features that decide molvae's CPU speed (bf16 matrix units), as /proc/cpuinfo lists them."""
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "CPU flags unknown"
    shown = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return ", ".join(shown) if shown else "no bf16 matrix instructions"


def _git_state() -> str | None:
    """Short commit of the checkout, marked where files outside notebooks/ differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!notebooks"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit} + uncommitted changes" if dirty else commit


def _cache_files() -> set[str]:
    folder = default_cache_dir()
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def facts_markdown(facts: dict[str, Any]) -> str:
    """The first cell: sizes, wall time, machine, molvae version, date."""
    sizes = ", ".join(f"`{name} = {value}`" for name, value in facts["parameters"].items())
    models = [f"`{name}` (weights sha256 `{ident['weights_sha256'][:12]}…`)" for name, ident in facts["models"].items()]
    cache = (
        f"this run computed and cached {', '.join(facts['cache_written'])}"
        if facts["cache_written"]
        else "molvae's on-disk caches were already filled (a first run also computes them)"
    )
    return "\n".join(
        [
            f"> **Outputs below: executed {facts['date']}** by `python scripts/execute_notebooks.py` "
            f"(`make notebooks`) at the normal sizes of the first code cell, in "
            f"**{_format_duration(facts['wall_s'])}** of wall time.",
            ">",
            f"> Machine: {facts['hardware']}, {facts['cpus']} CPU cores ({facts['cpu_flags']}), "
            f"load average {facts['load_start']:.1f} at the start; {cache}.",
            f"> molvae {facts['molvae']}"
            + (f" (git {facts['git']})" if facts.get("git") else "")
            + f"; bundled models used: {', '.join(models) or 'none'}.",
            ">",
            f"> Sizes: {sizes}.",
            ">",
            "> `tests/notebooks/test_staleness.py` fails once the code cells or a bundled model change "
            "without the notebook being executed again (notebooks/README.md).",
        ]
    )


def _kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOTEBOOK_ENV}
    # The kernel imports molvae from this checkout, as the tests do.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return env


def execute(path: Path, workdir: Path, timeout: int = CELL_TIMEOUT_S) -> dict[str, Any]:
    """Execute the notebook at ``path`` with ``workdir`` as working directory; rewrite it in place; its facts."""
    nb = nbformat.read(path, as_version=4)
    if nb.cells and FACTS_TAG in nb.cells[0].metadata.get("tags", []):
        nb.cells.pop(0)
    probe = nbformat.v4.new_code_cell(PROBE.format(mark=PROBE_MARK, names=parameter_names(nb)))
    nb.cells.append(probe)
    cache_before = _cache_files()
    load_start = os.getloadavg()[0]
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,  # per-cell timestamps change every run and only bloat diffs
    )
    start = time.perf_counter()
    try:
        client.execute(env=_kernel_env())  # raises CellExecutionError on the first error output
    except BaseException:
        nbformat.write(nb, workdir / f"failed_{path.name}")  # what ran, for the reader of the traceback
        raise
    wall_s = time.perf_counter() - start
    nb.cells.pop()
    printed = "".join(out.get("text", "") for out in probe.outputs if out.output_type == "stream")
    seen = json.loads(next(line for line in printed.splitlines() if line.startswith(PROBE_MARK))[len(PROBE_MARK) :])
    if not Path(seen["molvae_file"]).resolve().is_relative_to(REPO):
        raise RuntimeError(f"the kernel imported molvae from {seen['molvae_file']}, not from {REPO}")

    root = pretrained_dir().resolve()
    models = {}
    for source in seen["model_sources"]:
        folder = Path(source).resolve()
        if folder.parent == root:
            models[folder.name] = bundled_model_identity(folder.name)
    facts = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(wall_s, 1),
        "hardware": seen["hardware"],
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_flags": _cpu_flags(),
        "load_start": load_start,
        "cache_written": sorted(_cache_files() - cache_before),
        "molvae": seen["molvae"],
        "git": _git_state(),
        "models": models,
        "parameters": seen["parameters"],
    }
    # A fixed id: a random one would change the file at every run.
    facts_cell = nbformat.v4.new_markdown_cell(facts_markdown(facts), id=FACTS_TAG, metadata={"tags": [FACTS_TAG]})
    nb.cells.insert(0, facts_cell)
    nb.metadata[STAMP_KEY] = {
        "code_sha256": code_digest(nb),
        "models": models,
        "molvae_version": seen["molvae"],
        "smoke": seen["smoke"],
        **{k: v for k, v in facts.items() if k not in ("models", "molvae")},
    }
    # The interpreter's exact version etc. change with every machine that runs the notebook.
    nb.metadata["language_info"] = {"name": nb.metadata.get("language_info", {}).get("name", "python")}
    nbformat.write(nb, path)
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="execute nothing; report stale notebooks (exit 1)")
    parser.add_argument("--workdir", type=Path, help="working directory to keep (default: a temporary folder)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))

    if args.check:
        stale = 0
        for path in paths:
            problems = staleness_problems(nbformat.read(path, as_version=4))
            if path.stat().st_size > MAX_BYTES:
                problems.append(f"{path.stat().st_size:,} bytes, more than {MAX_BYTES:,}")
            for problem in problems:
                print(f"{path}: {problem}")
            stale += bool(problems)
        if stale:
            print("re-make the outputs: python scripts/execute_notebooks.py (make notebooks)", file=sys.stderr)
        return 1 if stale else 0

    for path in paths:
        if args.workdir:
            workdir = args.workdir / path.stem
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="molvae-notebook-"))
        print(f"{path}: executing in {workdir}", flush=True)
        try:
            facts = execute(path, workdir, args.timeout)
        except BaseException:
            print(f"{path}: failed; {workdir} keeps what it wrote and failed_{path.name}", file=sys.stderr)
            raise
        if not args.workdir:
            shutil.rmtree(workdir)
        print(f"{path}: {_format_duration(facts['wall_s'])}, {path.stat().st_size:,} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
