"""The prepared GPU session: check the CUDA path, then continue training, inside one device call.

Run on the GPU machine from the repository root, after ``scripts/prepare_gpu_session.py``
has filled ``.gpu/`` here (it prints the whole device call)::

    python3 scripts/gpu_session.py --gpu-dir .gpu --out "$OUT" --budget-s 530

In order, each step under its own time limit so that a hang cannot eat the training:

1. the machine: ``nvidia-smi``, Python, torch, CUDA and package versions;
2. the CUDA-only tests (``tests/integration/test_cuda_graphs.py``, molecules from the token file);
3. the GPU benchmarks: ``bench_train.py`` (its training molecules/s sets the step budget) and
   ``bench_decode.py`` (sampling on the device from the bundled model with each of its priors);
4. ``molvae train --init-from`` the starting weights on the token file for the time left, with
   RDKit-free validation and a checkpoint a minute; stopped with SIGTERM (it then checkpoints)
   if it runs past its share;
5. export: the latest weights (float16), config, vocabulary, metrics and run info to
   ``OUT/model``, a sampling check to ``OUT/samples.smi``, the whole log to ``OUT/session.log``
   and the figures to ``OUT/summary.json``: at most 8 files, each well under 16 MiB.

The GPU machine has neither RDKit nor the MOSES wheel, and nothing here needs them.
``--rehearsal`` runs the same flow here on the CPU with tiny budgets and RDKit and molsets
made unimportable, which is what ``tests/integration/test_gpu_session.py`` does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from molvae.folders import CONFIG_FILE, METRICS_FILE, RUN_INFO_FILE
from molvae.model import MolVAE, pretrained_dir
from molvae.recurrent import KERNEL_SWITCH
from molvae.training.export import export_latest

REPO = Path(__file__).resolve().parent.parent
BLOCKED = ("rdkit", "molsets", "moses")
BLOCK_ENV = "MOLVAE_BLOCKED_PACKAGES"
TOKEN_ENV = "MOLVAE_TEST_TOKEN_FILE"
# Mirrors scripts/prepare_gpu_session.py: what .gpu/ holds.
DATA_FILE, START_DIR, RECIPE_FILE = "data/train.npz", "start", "recipe.json"
# The training options a recipe may set (TrainConfig field -> molvae train flag).
RECIPE_FLAGS = {
    "representation": "--representation",
    "max_tokens": "--max-tokens",
    "val_fraction": "--val-fraction",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "lr_schedule": "--lr-schedule",
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
    "grad_clip": "--grad-clip",
    "kl_schedule": "--kl-schedule",
    "kl_weight": "--kl-weight",
    "kl_warmup_epochs": "--kl-warmup-epochs",
    "kl_cycles": "--kl-cycles",
    "free_bits": "--free-bits",
    "word_dropout": "--word-dropout",
    "precision": "--precision",
    "seed": "--seed",
}
# Training molecules/s assumed when the benchmark gave none: a third of what an H100 measured for this size.
FALLBACK_RATE = 20_000.0
# Seconds of a training process that are not steps: start-up, data, CUDA-graph captures, validations.
STARTUP_S = 30.0


class Session:
    """The session's clock, log and figures."""

    def __init__(self, out: Path, budget_s: float):
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.out = out
        self.log_file = open(out / "session.log", "a", encoding="utf-8")
        self.summary: dict = {"steps": {}}
        self.plan: tuple[int, int, float] = (0, 0, 0.0)  # max steps, epochs, seconds of the training step

    def left(self) -> float:
        """Seconds until the session's deadline."""
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        """Print ``text`` and append it to the log, with the session's elapsed seconds."""
        line = f"[{time.monotonic() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def run(
        self, name: str, argv: list[str], limit_s: float, env: dict[str, str], floor_s: float = 1.0
    ) -> tuple[int, str]:
        """Run ``argv`` for at most ``limit_s`` seconds, cut to the time left but not below ``floor_s``
        (then SIGTERM, and SIGKILL 30 s later); log its output; returns (exit status, output)."""
        limit_s = max(floor_s, min(limit_s, self.left()))
        self.say(f"== {name} (limit {limit_s:.0f} s): {' '.join(argv)}")
        began = time.monotonic()
        # A process group of its own, so that a stop also reaches what it started (a compiler, workers).
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            # SIGTERM first: molvae train checkpoints on it.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
            output += f"\n(stopped after {limit_s:.0f} s)"
        seconds = time.monotonic() - began
        self.log_file.write(output if output.endswith("\n") else output + "\n")
        self.say(f"== {name}: exit {proc.returncode} after {seconds:.1f} s")
        self.summary["steps"][name] = {"rc": proc.returncode, "seconds": round(seconds, 1)}
        return proc.returncode, output


def blocked_environment(folder: Path) -> dict[str, str]:
    """The environment with packages named in :data:`BLOCKED` made unimportable (stand-ins that raise).

    The rehearsal's stand-in for the GPU machine, which has none of them.
    """
    for name in BLOCKED:
        package = folder / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed on the GPU machine (blocked by the rehearsal)')\n"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env[BLOCK_ENV] = ",".join(BLOCKED)
    return env


def last_json(output: str) -> dict:
    """The last line of ``output`` that is a JSON object (the benchmarks' figures), or {}."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


def describe_machine(s: Session, python: str, env: dict[str, str]) -> None:
    """Log nvidia-smi and the versions that matter."""
    if shutil.which("nvidia-smi"):
        s.run("nvidia-smi", ["nvidia-smi"], 20, env)
    probe = (
        # lzma: token files are LZMA-compressed; a Python built without it could not read them.
        "import importlib.metadata as m, platform, torch, lzma; "
        "print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda, "
        "'| gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None); "
        "[print(p, m.version(p)) for p in ('numpy', 'selfies', 'safetensors', 'botorch', 'pytest') "
        "if __import__('importlib.util').util.find_spec(p)]"
    )
    _, output = s.run("versions", [python, "-c", probe], 60, env)
    s.summary["versions"] = output.strip().splitlines()[:8]


def run_checks(s: Session, python: str, env: dict[str, str], gpu: Path, device: str, rehearsal: bool) -> float | None:
    """The CUDA-only tests and the benchmarks; returns the measured training molecules/s (None if none)."""
    data, start = gpu / DATA_FILE, gpu / START_DIR
    rc, output = s.run(
        "cuda-tests",
        [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/integration/test_cuda_graphs.py"],
        150,
        {**env, TOKEN_ENV: str(data)},
    )
    s.summary["cuda_tests"] = {"rc": rc, "result": output.strip().splitlines()[-1] if output.strip() else ""}
    # A rehearsal times a small network on a few batches: it shows the step runs, not a speed.
    small = ["--preset", "default", "--molecules", "300", "--steps", "1", "--warmup", "1", "--batch-size", "16"]
    full = ["--preset", "moses-reference", "--molecules", "30000", "--steps", "40", "--warmup", "5"]
    rc, output = s.run(
        "bench-train",
        [python, "scripts/bench_train.py", "--device", device, "--data", str(data), "--sample-n", "0"]
        + (small if rehearsal else full),
        120,
        env,
    )
    s.summary["bench_train"] = last_json(output)
    # The bundled model of the run's representation: it travels with the repository, priors included.
    bundled = f"zinc-{MolVAE.load(start, device='cpu').config.representation}"
    priors = ["standard"] + sorted(p.stem for p in (pretrained_dir() / bundled / "priors").glob("*.safetensors"))
    rc, out_decode = s.run(
        "bench-decode",
        [python, "scripts/bench_decode.py", "--model", bundled, "--device", device, "--no-validate"]
        + ["--priors", ",".join(priors[:2] if rehearsal else priors)]
        + (["--n", "8", "--repeats", "1", "--batch-size", "8"] if rehearsal else ["--n", "10000", "--repeats", "2"]),
        90,
        env,
    )
    s.summary["bench_decode"] = last_json(out_decode)
    rate = s.summary["bench_train"].get("train_mol_per_s")
    return float(rate) if rate else None


def read_recipe(gpu: Path, rehearsal: bool) -> dict:
    """The run's training settings; a rehearsal's small batches and warm-up, so a CPU takes steps in seconds."""
    recipe = json.loads((gpu / RECIPE_FILE).read_text())
    if rehearsal:
        recipe.update(batch_size=32, warmup_steps=2)
    return recipe


def plan_training(
    s: Session, recipe: dict, rate: float | None, reserve_s: float, fixed_steps: int | None = None
) -> tuple[int, int, float]:
    """(max steps, epochs, seconds) for the training step: what the measured rate fits in the time left
    (or ``fixed_steps``, a rehearsal's few)."""
    batch = int(recipe.get("batch_size", 512))
    seconds = max(10.0, s.left() - reserve_s)
    # A real epoch runs at about three quarters of bench_train's rate (batch assembly, which the benchmark
    # does ahead); start-up, graph captures and each epoch's validation take about STARTUP_S more.
    steps = fixed_steps or max(1, int((rate or FALLBACK_RATE) * 0.7 * max(0.0, seconds - STARTUP_S) / batch))
    n_train = int(recipe["n_molecules"] * (1 - recipe.get("val_fraction", 0.01)))
    epochs = max(1, math.ceil(steps / max(1, n_train // batch)))
    s.say(f"plan: {steps} steps of {batch} ({epochs} epoch(s) of {n_train:,}) at {rate or FALLBACK_RATE:,.0f} mol/s")
    s.summary["plan"] = {"max_steps": steps, "epochs": epochs, "seconds": round(seconds), "rate": rate}
    s.plan = (steps, epochs, seconds)
    return s.plan


def train(
    s: Session, python: str, env: dict[str, str], gpu: Path, recipe: dict, run: Path, device: str, floor_s: float
) -> int:
    """``molvae train --init-from`` the starting weights for the planned steps (at least ``floor_s`` seconds
    to take them); returns its exit status."""
    steps, epochs, seconds = s.plan
    flags = [str(part) for field, flag in RECIPE_FLAGS.items() if field in recipe for part in (flag, recipe[field])]
    argv = [
        python,
        "-m",
        "molvae.cli.main",
        "train",
        "--data",
        str(gpu / DATA_FILE),
        "--init-from",
        str(gpu / START_DIR),
    ]
    argv += ["--out", str(run), *flags, "--max-steps", str(steps), "--epochs", str(epochs), "--device", device]
    # RDKit-free validation: losses, token accuracy and active units; validity and reconstruction
    # are measured on the returned model with molvae evaluate.
    argv += ["--val-recon-n", "0", "--val-sample-n", "0", "--checkpoint-minutes", "1", "--no-progress"]
    rc, _ = s.run("train", argv, seconds, env, floor_s=floor_s)
    return rc


def export_and_sample(run: Path, out: Path, device: str, n: int) -> dict:
    """The run's latest weights (float16) with its metrics and run info to ``out/model``; ``n`` molecules
    sampled from them on ``device`` (seed 0) to ``out/samples.smi``, for validation where RDKit is."""
    dest = out / "model"
    card = export_latest(run, dest, "gpu-session")
    for name in (METRICS_FILE, RUN_INFO_FILE):
        if (run / name).is_file():
            shutil.copy(run / name, dest / name)
    model = MolVAE.load(dest, device=device)
    model.sample(64, seed=0)  # warm-up
    began = time.perf_counter()
    smiles = model.sample(n, seed=0)
    seconds = time.perf_counter() - began
    (out / "samples.smi").write_text("\n".join(smiles) + "\n")
    keys = ("steps", "epochs", "training_hours")
    return {**{k: card[k] for k in keys}, "samples": n, "sample_mol_per_s": round(n / seconds, 1)}


def export(s: Session, python: str, env: dict[str, str], run: Path, device: str, n_samples: int) -> None:
    """:func:`export_and_sample` in a process of its own, under a time limit."""
    if not (run / CONFIG_FILE).is_file():
        s.say("export: the training step left no run to export")
        return
    argv = [python, __file__, "--out", str(s.out), "--export-run", str(run), "--device", device]
    # The export may run past the budget: the device's timeout leaves room for it, and it is what the session is for.
    _, output = s.run("export", argv + ["--samples", str(n_samples)], 120, env, floor_s=45)
    s.summary["export"] = last_json(output)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu-dir", default=".gpu", help="the folder prepare_gpu_session.py filled (carried)")
    p.add_argument("--out", default=os.environ.get("OUT"), help="where the files to bring back go (default: $OUT)")
    p.add_argument("--budget-s", type=float, default=530, help="seconds for the whole session, export included")
    p.add_argument("--rehearsal", action="store_true", help="on this CPU, tiny budgets, RDKit and molsets blocked")
    p.add_argument("--export-run", type=Path, help="(the export step) export this run to OUT/model and sample it")
    p.add_argument("--device", default="cuda", help="(the export step) where to sample")
    p.add_argument("--samples", type=int, default=2000, help="(the export step) molecules to sample")
    args = p.parse_args()
    if not args.out:
        p.error("give --out (or set OUT)")
    if args.export_run:
        print(json.dumps(export_and_sample(args.export_run, Path(args.out), args.device, args.samples)))
        return 0
    if args.rehearsal and BLOCK_ENV not in os.environ:
        # Re-run under the blocking environment, so that this process too runs without RDKit.
        env = blocked_environment(Path(tempfile.mkdtemp(prefix="molvae-blocked-")))
        return subprocess.run([sys.executable, *sys.argv], env=env).returncode
    out, gpu = Path(args.out), Path(args.gpu_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, args.budget_s)
    # No compiled CPU GRU kernel: the GPU does the work, and a first build would cost minutes of the budget.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", KERNEL_SWITCH: "0"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    device = "cpu" if args.rehearsal else "cuda"
    python = sys.executable
    s.say(f"GPU session{' rehearsal' if args.rehearsal else ''}: device {device}, budget {args.budget_s:.0f} s")
    describe_machine(s, python, env)
    rate = run_checks(s, python, env, gpu, device, args.rehearsal)
    # Left for the export and sampling check after training (the model loads, samples, writes).
    reserve = 20.0 if args.rehearsal else 60.0
    run = Path(tempfile.mkdtemp(prefix="molvae-gpu-run-")) / "run"
    recipe = read_recipe(gpu, args.rehearsal)
    # A rehearsal takes three steps whatever its time: enough to close the epoch, validate and save.
    plan_training(s, recipe, rate, reserve, fixed_steps=3 if args.rehearsal else None)
    s.summary["train_rc"] = train(s, python, env, gpu, recipe, run, device, 90 if args.rehearsal else 30)
    export(s, python, env, run, device, 50 if args.rehearsal else 2000)
    s.summary["seconds"] = round(time.monotonic() - s.start, 1)
    (out / "summary.json").write_text(json.dumps(s.summary, indent=1) + "\n")
    files = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    s.say(f"done in {s.summary['seconds']} s; files back: {', '.join(files)}")
    exported = (out / "model" / "model.safetensors").is_file()
    return 0 if exported else 1


if __name__ == "__main__":
    sys.exit(main())
