"""Pictures of molecules: RDKit grids written as PNG or SVG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import Draw

from molvae.checkpoint import atomic_write, atomic_write_text
from molvae.chemistry import lookup_property, to_mol
from molvae.errors import MissingExtraError


def draw_grid(
    smiles: Sequence[str],
    path: str | Path,
    legends: Sequence[str] | None = None,
    mols_per_row: int = 5,
    size: tuple[int, int] = (260, 220),
) -> Path:
    """Draw molecules in a grid and write it to ``path`` (.png or .svg); invalid entries are drawn empty."""
    return _draw(smiles, path, legends, mols_per_row, size)


def _draw(
    smiles: Sequence[str],
    path: str | Path,
    legends: Sequence[str] | None,
    mols_per_row: int,
    size: tuple[int, int],
    legend_font_size: int = 16,
    legend_fraction: float | None = None,
) -> Path:
    path = Path(path)
    mols = [to_mol(s) or _blank() for s in smiles]
    legends = list(legends) if legends is not None else [s if len(s) <= 40 else s[:37] + "..." for s in smiles]
    if not mols:
        raise ValueError("nothing to draw: empty molecule list")
    options = Draw.MolDrawOptions()
    options.legendFontSize = legend_font_size
    if legend_fraction is not None:
        options.legendFraction = legend_fraction  # room for two-line legends at a readable size
    kwargs = dict(molsPerRow=min(mols_per_row, len(mols)), subImgSize=size, legends=legends, drawOptions=options)
    grid_image = _rdkit_grid_image()
    if path.suffix.lower() == ".svg":
        atomic_write_text(path, grid_image(mols, useSVG=True, **kwargs))
    elif path.suffix.lower() == ".png":
        image = grid_image(mols, returnPNG=True, **kwargs)
        atomic_write(path, image if isinstance(image, bytes) else _png_bytes(image))
    else:
        raise ValueError(f"{path}: choose a .png or .svg file name")
    return path


def _rdkit_grid_image():
    """RDKit's own ``Draw.MolsToGridImage``.

    Inside a Jupyter kernel ``import rdkit`` loads ``IPythonConsole``, which replaces
    ``Draw.MolsToGridImage`` with a function returning IPython display objects (and
    keeping only the first 50 molecules); it saves the original as
    ``Draw._MolsToGridImageSaved``.
    """
    return getattr(Draw, "_MolsToGridImageSaved", None) or Draw.MolsToGridImage


def _blank() -> Chem.Mol:
    # RDKit skips the legend of an empty Chem.Mol(); one dummy atom drawn with a blank
    # label gives an empty-looking cell that keeps its legend (e.g. "invalid").
    mol = Chem.MolFromSmiles("*")
    mol.GetAtomWithIdx(0).SetProp("atomLabel", " ")
    return mol


def _png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- latent-space exploration


def property_label(name: str) -> str:
    """Short human-readable name of a property of :data:`molvae.chemistry.PROPERTIES` or an ADMET-AI endpoint
    ``admet:<endpoint>`` (other names as given)."""
    try:
        prop = lookup_property(name)
    except MissingExtraError:  # an endpoint's label is in ADMET-AI's metadata: without it, the name as given
        prop = None
    return name if prop is None else prop.label


def _short(text: str, width: int = 32) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN


def _fmt_property(name: str, value: float) -> str:
    digits = 0 if name in ("mw", "tpsa") else 2
    return f"{property_label(name)} {_fmt(value, digits)}"


def draw_path_grid(
    path_table,
    path: str | Path,
    property: str = "qed",
    mols_per_row: int = 6,
    size: tuple[int, int] = (260, 230),
    rows=None,
) -> Path:
    """Grid picture (.png/.svg) of an interpolation table from :func:`molvae.latent.interpolate`.

    Each cell is labelled with its step, Tanimoto similarity to the start molecule and
    ``property``; steps that stayed invalid are empty cells labelled "invalid".
    ``rows`` (a boolean mask or index list) picks which steps to draw; all by default.
    """
    table = path_table if rows is None else path_table.loc[rows]
    if property not in table.columns:
        raise ValueError(f"the table has no {property!r} column")
    smiles, legends = [], []
    last = int(path_table["step"].max()) if len(path_table) else 0
    for row in table.itertuples(index=False):
        step = int(row.step)
        where = " (start)" if step == 0 else " (end)" if step == last else ""
        if not row.valid:
            smiles.append("")
            legends.append(f"step {step}{where}: invalid")
            continue
        smiles.append(row.smiles)
        dup = " (same)" if bool(row.duplicate_of_previous) else ""
        legends.append(
            f"step {step}{where}{dup}\nsim {_fmt(row.tanimoto_start)} | "
            f"{_fmt_property(property, getattr(row, property))}"
        )
    return _draw(smiles, path, legends, mols_per_row, size, legend_font_size=16, legend_fraction=0.25)


def draw_neighbour_grid(
    table,
    query_smiles: str,
    path: str | Path,
    property: str = "qed",
    top: int = 24,
    mols_per_row: int = 5,
    size: tuple[int, int] = (260, 230),
    query_label: str = "query",
) -> Path:
    """Grid picture of the query molecule followed by its ``top`` most similar neighbours.

    ``table`` is a :func:`molvae.latent.neighbourhood` result (already ranked). Each
    neighbour is labelled with rank, similarity, draw count, ``property`` and
    "novel" when it is not in the training set.
    """
    import pandas as pd

    from molvae.chemistry import property_table

    value = property_table([query_smiles], properties=[property], n_jobs=1)[property].iloc[0]
    smiles = [query_smiles]
    legends = [f"{query_label[:28]}\n{_fmt_property(property, value)}"]
    for rank, row in enumerate(table.head(top).itertuples(index=False), start=1):
        if bool(row.is_query):
            tag = " (query)"
        elif pd.notna(row.novel):
            tag = " (novel)" if bool(row.novel) else " (in train)"
        else:
            tag = ""
        draws = int(row.count)
        smiles.append(row.smiles)
        legends.append(
            f"#{rank}{tag} sim {_fmt(row.tanimoto)}\n"
            f"{_fmt_property(property, getattr(row, property))} | {draws} draw{'s' if draws != 1 else ''}"
        )
    return _draw(smiles, path, legends, mols_per_row, size, legend_font_size=16, legend_fraction=0.25)


def plot_path_profile(path_table, path: str | Path, property: str = "qed", title: str | None = None) -> Path:
    """Line plot (PNG) of similarity to start/end and ``property`` along an interpolation path.

    Similarities use the left axis (0-1), the property the right one; steps that stayed
    invalid are marked with grey bands and duplicates of the previous step with hollow markers.
    """
    # A Figure of its own (no pyplot, no matplotlib.use): the caller's backend stays as it was.
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: choose a .png file name")
    if property not in path_table.columns:
        raise ValueError(f"the table has no {property!r} column")
    steps = path_table["step"].to_numpy()
    valid = path_table["valid"].to_numpy(dtype=bool)
    fig = Figure(figsize=(9, 4.8), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    dense = len(steps) > 40  # long --unique grids: plain lines, markers would merge into bars
    ax.plot(steps, path_table["tanimoto_start"], "-" if dense else "o-", color="tab:blue", label="similarity to start")
    ax.plot(steps, path_table["tanimoto_end"], "-" if dense else "s-", color="tab:orange", label="similarity to end")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("step along the path (start = 0)")
    ax.set_ylabel("Tanimoto similarity (Morgan r=2)")
    ax2 = ax.twinx()
    label = property_label(property)
    ax2.plot(steps, path_table[property], "--" if dense else "^--", color="tab:green", label=label)
    dup = path_table["duplicate_of_previous"].to_numpy(dtype=bool)
    if dup.any() and not dense:
        ax2.plot(
            steps[dup],
            path_table[property].to_numpy()[dup],
            "^",
            markerfacecolor="white",
            color="tab:green",
            linestyle="none",
            label="same molecule as previous step",
        )
    ax2.set_ylabel(label, color="tab:green")
    ax2.tick_params(axis="y", colors="tab:green")
    handles = []
    for s in steps[~valid]:
        handles.append(ax.axvspan(s - 0.4, s + 0.4, color="0.85", zorder=0))
    if handles:
        handles[0].set_label("invalid step (nothing decoded)")
    if len(steps) <= 25:
        ax.set_xticks(steps)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(
        lines[0] + lines2[0],
        lines[1] + lines2[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        frameon=False,
        fontsize=9,
    )
    attrs = path_table.attrs
    if title is None and attrs.get("start_name"):
        title = (
            f"{_short(attrs['start_name'])} to {_short(attrs['end_name'])}: {attrs.get('method', '')} interpolation, "
            f"{int(valid.sum())}/{len(valid)} valid, {attrs.get('unique_found', '?')} distinct"
        )
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return path
