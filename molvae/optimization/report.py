"""Run outputs: best molecules, Pareto front, progress plot."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from molvae.checkpoint import atomic_write, atomic_write_text
from molvae.folders import BEST_FILE, BEST_PLOT, BEST_SDF, PARETO_FILE, PROGRESS_PLOT
from molvae.optimization.oracle import Oracle
from molvae.tables import write_rows
from molvae.visualize import draw_grid

log = logging.getLogger(__name__)

__all__ = [
    "best_table",
    "feasible_rows",
    "pareto_mask",
    "pareto_table",
    "progress_curves",
    "progress_figure",
    "plot_progress",
    "write_reports",
]


def feasible_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of an evaluations table that have scores and meet the constraints."""
    keep = df["status"].isin(Oracle.SCORED) & df["feasible"].astype(bool)
    return df[keep]


def best_table(df: pd.DataFrame, score_columns: Sequence[str], k: int = 20) -> pd.DataFrame:
    """Top-k unique feasible molecules (by the first score, or the Pareto front first with several)."""
    feas = feasible_rows(df).drop_duplicates("smiles")
    if len(score_columns) > 1:
        front = pareto_mask(feas[list(score_columns)].to_numpy())
        feas = feas.assign(pareto=front).sort_values(["pareto", *score_columns], ascending=False, kind="stable")
    else:
        feas = feas.sort_values(score_columns[0], ascending=False, kind="stable")
    return feas.head(k).reset_index(drop=True)


def pareto_mask(Y: np.ndarray) -> np.ndarray:
    """True for rows of Y (maximized) that no other row dominates (duplicates of a front point are kept once)."""
    if len(Y) == 0:
        return np.zeros(0, dtype=bool)
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    return is_non_dominated(torch.tensor(np.array(Y, dtype=np.float64)), deduplicate=True).numpy()


def pareto_table(df: pd.DataFrame, score_columns: Sequence[str]) -> pd.DataFrame:
    feas = feasible_rows(df).drop_duplicates("smiles")
    front = feas[pareto_mask(feas[list(score_columns)].to_numpy())]
    return front.sort_values(score_columns[0], ascending=False, kind="stable").reset_index(drop=True)


def progress_curves(df: pd.DataFrame, score_column: str) -> pd.DataFrame:
    """Best-so-far and top-10 mean of feasible scores after each oracle call.

    Molecules supplied with their scores (``--init`` with a score column) cost no call:
    they count from the start, as they do in best.csv.
    """
    scored = df[df["status"] == "scored"].sort_values("call")
    supplied = df[df["status"] == "supplied"]
    best, top10 = [], []
    values = sorted(
        (float(v) for v, ok in zip(supplied[score_column], supplied["feasible"]) if bool(ok) and np.isfinite(v)),
        reverse=True,
    )[:10]
    for _, row in scored.iterrows():
        if bool(row["feasible"]) and np.isfinite(row[score_column]):
            values.append(float(row[score_column]))
            values.sort(reverse=True)
            del values[10:]
        best.append(values[0] if values else np.nan)
        top10.append(float(np.mean(values)) if values else np.nan)
    return pd.DataFrame({"call": scored["call"].to_numpy(dtype=int), "best": best, "top10_mean": top10})


def progress_figure(
    df: pd.DataFrame,
    score_columns: Sequence[str],
    baselines: dict[str, pd.DataFrame] | None = None,
    labels: Sequence[str] | None = None,
):
    """The figure of :func:`plot_progress` (a matplotlib ``Figure``, not attached to pyplot)."""
    if labels is not None and len(labels) != len(score_columns):
        raise ValueError(f"{len(labels)} labels for {len(score_columns)} score columns")
    # A Figure of its own (no pyplot, no matplotlib.use): the caller's backend, e.g. a
    # notebook's inline one, stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(score_columns), 4))
    axes = fig.subplots(1, len(score_columns), squeeze=False)
    runs = {"this run": df, **(baselines or {})}
    for ax, col, axis_label in zip(axes[0], score_columns, labels or score_columns):
        for i, (run_label, table) in enumerate(runs.items()):
            if col not in table.columns:
                continue
            curves = progress_curves(table, col)
            color = f"C{i}"
            ax.plot(curves["call"], curves["best"], color=color, label=f"{run_label}: best")
            ax.plot(
                curves["call"], curves["top10_mean"], color=color, linestyle="--", label=f"{run_label}: top-10 mean"
            )
        ax.set_xlabel("oracle calls")
        ax.set_ylabel(
            textwrap.fill(axis_label, 32, break_on_hyphens=False)
        )  # a long description on two lines, not cut off
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_progress(
    path: str | Path,
    df: pd.DataFrame,
    score_columns: Sequence[str],
    baselines: dict[str, pd.DataFrame] | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Best-so-far (solid) and top-10 mean (dashed) vs oracle calls, one panel per objective, as a PNG.

    ``labels`` name each panel's axis (the objectives' descriptions); the score column names otherwise.
    """
    import io

    fig = progress_figure(df, score_columns, baselines, labels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(path, buf.getvalue())
    return Path(path)


def write_reports(
    out: Path,
    df: pd.DataFrame,
    score_columns: Sequence[str],
    top_k: int,
    labels: Sequence[str],
    baselines: dict[str, pd.DataFrame] | None = None,
) -> None:
    """A run's reports from its evaluations table ``df``: best.csv and best.sdf, pareto.csv (several
    objectives), progress.png (``labels``: its axes; ``baselines``: their evaluations, drawn beside) and best.png."""
    best = best_table(df, score_columns, top_k)
    atomic_write_text(out / BEST_FILE, best.to_csv(index=False))
    write_rows(out / BEST_SDF, [best])  # for molecule viewers and docking tools
    if len(score_columns) > 1:
        atomic_write_text(out / PARETO_FILE, pareto_table(df, score_columns).to_csv(index=False))
    plot_progress(out / PROGRESS_PLOT, df, score_columns, baselines=baselines, labels=labels)
    if len(best):
        legends = [" ".join(f"{row[c]:.3g}" for c in score_columns) for _, row in best.head(20).iterrows()]
        try:
            draw_grid(best["smiles"].head(20).tolist(), out / BEST_PLOT, legends)
        except Exception as exc:  # a picture must never lose a run
            log.warning("could not draw best.png: %s", exc)
