"""`molvae demo` checks every option before it removes or writes anything, and removes only its own files."""

from __future__ import annotations

from pathlib import Path

from molvae.cli.demo import DEMO_FILES, _remove_demo_files
from molvae.cli.main import main


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_with_a_bad_option_removes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    (out / "interpolation").mkdir(parents=True)
    (out / "SUMMARY.txt").write_text("an earlier demo")
    (out / "interpolation" / "path.csv").write_text("step,smiles\n")
    (out / "interpolation" / "notes.txt").write_text("mine")
    before = _tree(out)
    assert main(["demo", "--out", str(out), "--overwrite", "--start", "notadrug"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown drug name 'notadrug'" in err
    assert _tree(out) == before


def test_an_interrupted_demo_that_other_options_cannot_continue_is_refused_before_writing(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    # the optimization an interrupted `molvae demo --seed 1` leaves (nothing scored yet)
    assert (
        main(
            [
                "optimize",
                "--objective",
                "esol",
                "--budget",
                "0",
                "--range",
                "mw=200:450",
                "--batch",
                "10",
                "--n-init",
                "20",
                "--seed",
                "1",
                "--out",
                str(out / "solubility"),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--budget", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds an interrupted demo optimization that these options cannot continue" in err
    assert "add --overwrite to start the demo again" in err and len(err.splitlines()) == 1
    assert not (out / "interpolation").exists()


def test_overwrite_removes_the_demo_files_and_nothing_else(tmp_path) -> None:
    out = tmp_path / "demo"
    for pattern in DEMO_FILES:
        path = out / pattern.replace("*", "prior")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("demo")
    (out / "solubility" / "mine.csv").write_text("user")
    (out / "keep.txt").write_text("user")
    _remove_demo_files(out)
    assert _tree(out) == {"solubility/mine.csv": "user", "keep.txt": "user"}
    assert not (out / "interpolation").exists() and not (out / "solubility" / "baselines").exists()
