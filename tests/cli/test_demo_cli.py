"""`molvae demo`, the README's main job, on the bundled model."""

from __future__ import annotations

import pandas as pd
import pytest

from molvae.cli.demo import DEMO_FILES
from molvae.cli.main import main

pytestmark = pytest.mark.slow


def test_demo_writes_every_promised_output(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", "30"]) == 0
    printed = capsys.readouterr().out
    summary = (out / "SUMMARY.txt").read_text()
    for rel in [
        "interpolation/path.csv",
        "interpolation/path.png",
        "interpolation/profile.png",
        "solubility/evaluations.csv",
        "solubility/best.csv",
        "solubility/progress.png",
    ]:
        assert (out / rel).stat().st_size > 0, rel
        assert str(out / rel) in summary, rel
    assert (out / "interpolation" / "path.svg").stat().st_size > 0
    path = pd.read_csv(out / "interpolation" / "path.csv")
    assert len(path) == 12 and path.loc[0, "valid"]
    # the path starts and ends at the two drugs themselves (fitted endpoints)
    assert path["smiles"].iloc[0] == "CC(=O)Oc1ccccc1C(=O)O" and path["smiles"].iloc[-1] == "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
    assert "endpoint" not in printed
    evaluations = pd.read_csv(out / "solubility" / "evaluations.csv")
    # 20 random training molecules first, then 10 from the BO loop
    assert (evaluations["status"] == "scored").sum() == 30
    assert (evaluations.loc[evaluations["status"] == "scored", "round"] > 0).sum() == 10
    assert "molvae demo finished" in printed
    # every file the demo wrote is one that --overwrite removes
    written = {p for p in out.rglob("*") if p.is_file()}
    assert written == {p for pattern in DEMO_FILES for p in out.glob(pattern)}, sorted(map(str, written))
    # a second run into the same folder refuses instead of mixing outputs
    assert main(["demo", "--out", str(out), "--budget", "30"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    # a demo stopped before its summary resumes the optimization it left: the first 30 calls are kept
    (out / "SUMMARY.txt").unlink()
    assert main(["demo", "--out", str(out), "--budget", "40"]) == 0
    assert "resuming the interrupted run" in capsys.readouterr().out
    resumed = pd.read_csv(out / "solubility" / "evaluations.csv")
    assert (resumed["status"] == "scored").sum() == 40
    pd.testing.assert_frame_equal(resumed.head(len(evaluations)), evaluations)

    # --overwrite starts again from nothing, and leaves other files in the folder alone
    (out / "mine.txt").write_text("keep me")
    (out / "interpolation" / "notes.txt").write_text("mine too")
    assert main(["demo", "--out", str(out), "--budget", "20", "--overwrite"]) == 0
    assert "resuming" not in capsys.readouterr().out
    fresh = pd.read_csv(out / "solubility" / "evaluations.csv")
    assert (fresh["status"] == "scored").sum() == 20 and (fresh["round"] > 0).sum() == 0
    assert (out / "mine.txt").read_text() == "keep me" and (out / "SUMMARY.txt").exists()
    assert (out / "interpolation" / "notes.txt").read_text() == "mine too"
