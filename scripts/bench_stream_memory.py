"""Peak memory of ``molvae encode`` and ``molvae decode`` as the library grows.

    python scripts/bench_stream_memory.py --sizes 100000,400000,1584663 --precision bf16

Runs ``molvae encode`` on the first N molecules of MOSES train (a .smi written to a
temporary folder), then ``molvae decode`` on the latents it wrote, each in its own
process, and prints each run's wall time and peak resident size (of the molvae process,
and of it or any RDKit worker it forked, whichever was larger). Streaming means the
peak does not grow with N: ``growth`` in the last line is the largest N's peak over the
smallest N's, for each command (1.0 = flat). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import emit

from molvae.data import moses_file, read_smiles


def sizes_arg(text: str) -> list[int]:
    """argparse ``type``: comma-separated molecule counts, each >= 1, in increasing order."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1 or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(f"expected increasing counts >= 1, got {text!r}")
    return sizes


def write_first_molecules(path: Path, n: int) -> int:
    """The first ``n`` SMILES of MOSES train as a .smi file; returns how many were written."""
    smiles = read_smiles(moses_file("train"), column="SMILES", limit=n)
    path.write_text("".join(f"{s}\n" for s in smiles))
    return len(smiles)


# The command as the molvae entry point runs it, then its own peak on stderr: ru_maxrss
# from wait4 would be the largest of the process and its forked RDKit workers, and a
# fork's resident size counts every page it shares with its parent at the time.
RUNNER = """
import resource, sys
from molvae.cli.main import main
code = main(sys.argv[1:])
print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def peak_run(args: list[str], log: Path) -> tuple[float, float, float]:
    """Wall seconds, and peak resident sizes (MB) of the molvae process and of it or any worker it ran."""
    cmd = [sys.executable, "-c", RUNNER, *args]
    start = time.perf_counter()
    with open(log, "w") as out:  # a file, not a pipe: nothing to drain while waiting for the child
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: KB on Linux
    seconds = time.perf_counter() - start
    lines = log.read_text().strip().splitlines()
    if os.waitstatus_to_exitcode(status) != 0 or not lines[-1].startswith("peak_kb "):
        raise SystemExit(f"molvae {' '.join(args)} failed:\n" + "\n".join(lines[-20:]))
    return seconds, int(lines[-1].split()[1]) / 1024, usage.ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes",
        type=sizes_arg,
        default=sizes_arg("100000,400000"),
        help="molecule counts, increasing (default 100000,400000; all of MOSES train: 1584663)",
    )
    p.add_argument("--model", default="zinc-smiles")
    p.add_argument("--precision", default="bf16", choices=["auto", "bf16", "fp32"])
    p.add_argument(
        "--commands", default="encode,decode", help="encode, or encode,decode (decode reads encode's output)"
    )
    args = p.parse_args()
    commands = args.commands.split(",")
    if commands not in (["encode"], ["encode", "decode"]):
        p.error(f"--commands: encode or encode,decode, got {args.commands!r}")

    figures: dict = {"model": args.model, "precision": args.precision}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            smi, latents, table = Path(tmp, f"{n}.smi"), Path(tmp, f"{n}.npy"), Path(tmp, f"{n}.csv")
            written = write_first_molecules(smi, n)
            if written < n:
                raise SystemExit(f"--sizes: MOSES train has {written:,} molecules, fewer than {n:,}")
            runs = {
                "encode": ["encode", "--input", str(smi), "--out", str(latents)],
                "decode": ["decode", "--input", str(latents), "--out", str(table)],
            }
            for command in commands:
                seconds, peak, with_workers = peak_run(
                    [*runs[command], "--model", args.model, "--precision", args.precision], Path(tmp, "log.txt")
                )
                figures[f"{command}_{n}_s"] = seconds
                figures[f"{command}_{n}_peak_mb"] = peak
                figures[f"{command}_{n}_peak_with_workers_mb"] = with_workers
            os.remove(smi)
    for command in commands:
        first, last = (figures[f"{command}_{n}_peak_mb"] for n in (args.sizes[0], args.sizes[-1]))
        figures[f"{command}_peak_growth"] = last / first
    emit(figures)


if __name__ == "__main__":
    main()
