"""The verdict logic of scripts/bench_bo.py (which BO method beat both baselines)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench_bo():
    spec = importlib.util.spec_from_file_location("bench_bo", REPO / "scripts" / "bench_bo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(method: str, bests: list[float], tops: list[float]) -> list[dict]:
    return [{"objective": "qed", "method": method, "seed": i, "best": b, "top10_mean": t}
            for i, (b, t) in enumerate(zip(bests, tops))]


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
