"""The verdict logic of scripts/bench_bo.py (which BO method beat both baselines)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from molvae import chemistry

REPO = Path(__file__).resolve().parents[2]


def _bench_bo():
    spec = importlib.util.spec_from_file_location("bench_bo", REPO / "scripts" / "bench_bo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(method: str, bests: list[float], tops: list[float]) -> list[dict]:
    return [
        {"objective": "qed", "method": method, "seed": i, "best": b, "top10_mean": t}
        for i, (b, t) in enumerate(zip(bests, tops))
    ]


def test_verdict_compares_unrounded_means():
    bench = _bench_bo()
    base = _cells("screen", [0.9478, 0.9478], [0.9440, 0.9440]) + _cells("prior", [0.9470] * 2, [0.9410] * 2)
    # 0.94795 rounds to 0.948 in the table, yet beats the screen's 0.9478
    rows = {r["method"]: r for r in bench.summarize(_cells("turbo", [0.9479, 0.9480], [0.9450, 0.9452]) + base)}
    assert rows["turbo"]["beats_baselines"] is True
    # 0.94775 also rounds to 0.948 but is below 0.9478: no win on rounding
    rows = {r["method"]: r for r in bench.summarize(_cells("turbo", [0.9477, 0.9478], [0.9450, 0.9452]) + base)}
    assert rows["turbo"]["best_mean"] == 0.948 and rows["turbo"]["beats_baselines"] is False
    # a better best is not enough: the top-10 mean must beat both baselines too
    rows = {r["method"]: r for r in bench.summarize(_cells("bo", [0.9484] * 2, [0.9430] * 2) + base)}
    assert rows["bo"]["beats_baselines"] is False
    assert "beats_baselines" not in rows["screen"]


def _run(bench, capsys, *argv: str) -> dict:
    assert bench.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_constraints_apply_to_every_cell_and_reuse_checks_the_settings(tmp_path, capsys):
    bench = _bench_bo()
    keep = tmp_path / "cells"
    common = ["--budget", "12", "--objectives", "esol", "--methods", "screen", "--skip-timing", "--keep", str(keep)]
    figures = _run(bench, capsys, *common, "--range", "mw=250:300")
    assert figures["constraints"]["ranges"] == {"mw": [250.0, 300.0]}
    evals = pd.read_csv(keep / "esol-screen-0" / "evaluations.csv")
    feasible = evals[evals["feasible"].astype(bool)]
    # MOSES spans 250-350 Da, so the range must have rejected some screened molecules
    assert len(feasible) and (~evals["feasible"].astype(bool)).any()
    assert chemistry.molecular_weight(feasible["smiles"].tolist()).min() >= 250
    assert chemistry.molecular_weight(feasible["smiles"].tolist()).max() <= 300
    cell = figures["cells"][0]
    assert cell["best"] == pytest.approx(feasible["score"].max())
    # Resuming the cell without the range would mix two experiments: refused, naming the setting.
    with pytest.raises(SystemExit, match="constraints"):
        bench.main(common + ["--reuse"])
    # Under the same settings it resumes (and a larger budget is allowed).
    again = _run(bench, capsys, *common[:1], "20", *common[2:], "--range", "mw=250:300", "--reuse")
    assert again["cells"][0]["reused"] is True and again["cells"][0]["calls"] == 20


def test_a_failing_cell_is_named_and_stops_the_benchmark(tmp_path, capsys):
    bench = _bench_bo()
    keep = tmp_path / "cells"
    common = ["--budget", "12", "--objectives", "esol", "--methods", "screen", "--skip-timing", "--keep", str(keep)]
    _run(bench, capsys, *common, "--seeds", "1")
    # Seed 1's folder already holds a run and --reuse is not given: that cell must fail, in this
    # process and in a worker process, with a message that names it, and no summary.
    keep2 = tmp_path / "cells2"
    shutil.copytree(keep, keep2)  # the first run below leaves seed 0 finished in its folder
    assert bench.main(common + ["--seeds", "0,1,2"]) == 1
    out, err = capsys.readouterr()
    # worker processes need the script run as a script (spawn re-imports it)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_bo.py"),
            *common[:-1],
            str(keep2),
            "--seeds",
            "0,1,2",
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    for code, stdout, stderr in ((1, out, err), (proc.returncode, proc.stdout, proc.stderr)):
        assert code == 1
        assert "cell esol/screen/seed 1 failed" in stderr and "already holds an optimization run" in stderr
        assert "--reuse" in stderr and "Traceback" not in stderr
        assert not any(line.startswith("{") for line in stdout.splitlines())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_workers_stop_when_the_benchmark_is_killed(tmp_path):
    # Cells far longer than the test: only the parent's death can end these workers.
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "bench_bo.py"),
        "--budget",
        "100000",
        "--objectives",
        "qed",
        "--methods",
        "prior",
        "--seeds",
        "0,1",
        "--jobs",
        "2",
        "--skip-timing",
        "--keep",
        str(tmp_path / "cells"),
    ]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> list[int]:
        path = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z"

    try:
        deadline = time.monotonic() + 120
        # the two cell workers (spawn also starts a resource tracker) and their first scored molecules
        while not list((tmp_path / "cells").glob("*/evaluations.csv")) and time.monotonic() < deadline:
            time.sleep(0.5)
        workers = children()
        assert len(workers) >= 2, "the benchmark never started its workers"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if running(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} kept running after the benchmark was killed"


def test_seed_lists_take_ranges_and_say_what_is_wrong():
    bench = _bench_bo()
    assert bench.parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert bench.parse_seeds("3, 1,3") == [3, 1]  # in the order given, each once
    for bad, says in (("0,one", "integers"), ("5-2", "5-2 is empty"), ("-1", "integers"), ("", "integers")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            bench.parse_seeds(bad)


def test_cells_default_to_the_settings_of_molvae_optimize():
    from molvae.optimization import OptimizeConfig

    bench = _bench_bo()
    args = bench.build_parser().parse_args([])
    config = OptimizeConfig(objectives=["qed"])
    pairs = {
        "n_init": "n_init",
        "batch": "batch",
        "decode_attempts": "decode_attempts",
        "restarts": "num_restarts",
        "raw_samples": "raw_samples",
        "gp_window": "gp_window",
        "gp_maxiter": "gp_maxiter",
        "tr_failure_tolerance": "tr_failure_tolerance",
        "subspace": "subspace",
    }
    assert {a: getattr(args, a) for a in pairs} == {a: getattr(config, c) for a, c in pairs.items()}
    assert args.n_init == 100  # the initial design the session-25 tables were measured with


def test_baselines_run_on_their_own_seeds(tmp_path, capsys):
    # The baselines are cheap: --baseline-seeds gives them more seeds than the BO methods get,
    # and the verdict compares the BO method's mean with their means over all of those seeds.
    bench = _bench_bo()
    figures = _run(
        bench,
        capsys,
        "--budget",
        "8",
        "--n-init",
        "4",
        "--batch",
        "4",
        "--objectives",
        "qed",
        "--methods",
        "bo,screen",
        "--seeds",
        "3",
        "--baseline-seeds",
        "0-2,5",
        "--skip-timing",
    )
    assert sorted((c["method"], c["seed"]) for c in figures["cells"]) == [
        ("bo", 3),
        ("screen", 0),
        ("screen", 1),
        ("screen", 2),
        ("screen", 5),
    ]
    rows = {r["method"]: r for r in figures["summary"]}
    assert rows["bo"]["seeds"] == 1 and rows["screen"]["seeds"] == 4
    screen_bests = [c["best"] for c in figures["cells"] if c["method"] == "screen"]
    assert rows["screen"]["best_mean"] == round(sum(screen_bests) / 4, 3)
    assert "beats_baselines" in rows["bo"]
