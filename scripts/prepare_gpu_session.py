"""Prepare the GPU session here, on a CPU machine with RDKit and MOSES, and print the device call to make.

    python scripts/prepare_gpu_session.py --start runs/cpu-ft

fills the ignored folder ``.gpu/`` (carried to the GPU machine) with:

- ``data/train.npz``: the training data as a token file (:mod:`molvae.tokenfile`), in the order a
  run on the original source sees it, so the train/validation split is that run's;
- ``start/``: the weights to continue from (float16): the latest of a run directory (``resume.pt``
  mid-epoch included) or a model directory or bundled name;
- ``recipe.json``: the training settings of that run (or model) and the data's size;
- ``wheels/``: the Python packages molvae needs that the GPU machine lacks (selfies; RDKit is
  not needed there and would not fit beside the data and the weights).

Then it checks that what travels (tracked and untracked files, and ``.gpu/``) fits the device's
64 MiB and prints the call: command, carry and timeout. ``scripts/gpu_session.py`` is the command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

from gpu_session import DATA_FILE, RECIPE_FILE, RECIPE_FLAGS, REPO, START_DIR

from molvae.checkpoint import read_json
from molvae.datasets import load_dataset, save_token_file
from molvae.errors import MolvaeError
from molvae.folders import CONFIG_FILE
from molvae.model import MolVAE
from molvae.tokenizers import Vocabulary
from molvae.training.export import export_latest

TRAVEL_LIMIT = 64 * 2**20
# The device's ceiling per call is 600 s. The session may overrun its budget by up to 60 s at the worst (a
# training stop's 30 s grace, then the export's 45 s floor), and the wheels install before it starts.
TIMEOUT_S, BUDGET_S = 590, 530
# The GPU machine's Python: wheels are fetched for it.
DEVICE_PYTHON = "3.12"
NEEDED_WHEELS = ("selfies",)


def write_data(dest: Path, source: str, vocab: Vocabulary, representation: str, limit: int | None) -> int:
    """The token file of ``source`` in the starting model's ``vocab`` (molecules kept); rewritten only when
    the source or limit changed."""
    target = dest / DATA_FILE
    data, summary = load_dataset(source, representation=representation, limit=limit, vocab=vocab)
    before = json.loads((dest / RECIPE_FILE).read_text()) if (dest / RECIPE_FILE).is_file() else {}
    same = [before.get(k) for k in ("data", "limit", "representation", "n_molecules")] == [
        source,
        limit,
        representation,
        len(data),
    ]
    if not (target.is_file() and same):
        target.parent.mkdir(parents=True, exist_ok=True)
        save_token_file(target, data, summary, representation)
    print(f"data: {len(data):,} molecules -> {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return len(data)


def write_start(dest: Path, start: str) -> dict:
    """The starting weights in ``dest/start`` (float16); returns the training settings they came with."""
    target = dest / START_DIR
    if target.exists():
        shutil.rmtree(target)
    folder = Path(start)
    if (folder / CONFIG_FILE).is_file() and any((folder / f).is_file() for f in ("resume.pt", "model.safetensors")):
        card = export_latest(folder, target, f"gpu-session start ({folder.name})")
        print(f"start: {folder} at step {card['steps']} ({card['epochs']} epochs) -> {target}")
    else:
        model = MolVAE.load(start, device="cpu")
        shutil.copytree(model.source, target, ignore=shutil.ignore_patterns("priors"))
        print(f"start: model {start} -> {target}")
    return read_json(target / CONFIG_FILE, "start config").get("training") or {}


def fetch_wheels(dest: Path, wheels_from: Path | None) -> None:
    """Wheels of :data:`NEEDED_WHEELS` at the versions installed here, for the device's Python."""
    target = dest / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    for name in NEEDED_WHEELS:
        version = importlib.metadata.version(name)
        if list(target.glob(f"{name}-{version}-*.whl")):
            continue
        found = sorted(wheels_from.glob(f"{name}-{version}-*.whl")) if wheels_from else []
        if found:
            shutil.copy(found[0], target)
            continue
        platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "any")]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
            + ["--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms, "-d", str(target)]
            + [f"{name}=={version}"],
            check=True,
        )


def travel_size(dest: Path) -> int:
    """Bytes that travel to the device: tracked and untracked-not-ignored files, and ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = {REPO / name.decode() for name in listed if name}
    files |= {f for f in dest.rglob("*") if f.is_file()}
    return sum(f.stat().st_size for f in files if f.is_file())


def device_call(dest: Path) -> dict:
    """The device tool's ``run`` arguments for the session."""
    where = dest.relative_to(REPO).as_posix()
    command = (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
        f"{where}/wheels/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 || exit; "
        f'python3 scripts/gpu_session.py --gpu-dir {where} --out "$OUT" --budget-s {BUDGET_S}'
    )
    return {"command": command, "carry": [where], "timeout_s": TIMEOUT_S}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", default="zinc-smiles", help="a run directory, a model directory or a bundled name")
    p.add_argument("--data", default="moses", help="the training data (moses or a molecule file)")
    p.add_argument("--limit", type=int, default=None, help="only the first N records (a rehearsal's small data)")
    p.add_argument("--dest", type=Path, default=REPO / ".gpu", help="the folder to fill: ignored, inside the repo")
    p.add_argument("--wheels-from", type=Path, default=None, help="a folder of wheels already downloaded")
    args = p.parse_args()
    dest = args.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    inside = dest.is_relative_to(REPO)
    if inside and subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(dest)]).returncode != 0:
        raise SystemExit(f"{dest}: git does not ignore it; the folder is carried, never committed")
    try:
        training = write_start(dest, args.start)
        start = MolVAE.load(dest / START_DIR, device="cpu")
        representation = start.config.representation
        n = write_data(dest, args.data, start.vocab, representation, args.limit)
    except MolvaeError as exc:
        raise SystemExit(f"prepare_gpu_session: {exc}") from None
    recipe = {k: training[k] for k in RECIPE_FLAGS if k in training}
    recipe.update(representation=representation, n_molecules=n, data=args.data, limit=args.limit)
    (dest / RECIPE_FILE).write_text(json.dumps(recipe, indent=1) + "\n")
    fetch_wheels(dest, args.wheels_from)
    if not inside:  # a rehearsal's folder: the session runs here, nothing is carried
        print(f"{dest} is outside {REPO}: for a rehearsal here (scripts/gpu_session.py --rehearsal --gpu-dir {dest})")
        return 0
    size = travel_size(dest)
    print(f"travels: {size / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f} MiB (.gpu/: ", end="")
    print(f"{sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 2**20:.1f} MiB)")
    if size > TRAVEL_LIMIT:
        raise SystemExit("too much would travel: use a smaller --limit or fewer untracked files")
    call = device_call(dest)
    if len(call["command"]) > 2000:
        raise SystemExit(f"the command is {len(call['command'])} characters; the device takes 2,000")
    print("device call (the run tool's arguments):")
    print(json.dumps(call, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
