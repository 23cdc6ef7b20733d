"""Objective parsing, built-in values, custom callables and the oracle's budget accounting (no model needed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from molvae import chemistry
from molvae.errors import MolvaeError
from molvae.optimization import Constraints, ObjectiveError, Oracle, parse_objective, parse_objectives

MOLS = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "not a smiles", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]


@pytest.mark.parametrize(
    "name,func,sign",
    [
        ("esol", chemistry.esol_logs, 1),
        ("qed", chemistry.qed, 1),
        ("logp", chemistry.logp, 1),
        ("penalized_logp", chemistry.penalized_logp, 1),
        ("sa", chemistry.sa_score, -1),
        ("tpsa", chemistry.tpsa, 1),
        ("mw", chemistry.molecular_weight, 1),
    ],
)
def test_builtins_equal_chemistry(name, func, sign) -> None:
    got = parse_objective(name)(MOLS)
    want = sign * func(MOLS)
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert np.isnan(got[3]) and np.isfinite(got[[0, 1, 2, 4]]).all()


@pytest.mark.parametrize("name", list(chemistry.PROPERTIES))
def test_every_property_is_an_objective_in_its_declared_direction(name) -> None:
    prop = chemistry.PROPERTIES[name]
    if prop.extra and not chemistry.admet.available():
        pytest.skip(f"{name} needs the {prop.extra} extra")
    objective = parse_objective(name)
    got = objective(MOLS)
    np.testing.assert_allclose(got, prop.direction * prop(MOLS), equal_nan=True)
    assert np.isnan(got[3]) and np.isfinite(got[[0, 1, 2, 4]]).all()
    assert objective.description == prop.objective_description
    assert prop.direction in (1.0, -1.0) and prop.scale > 0 and prop.label and prop.description


@pytest.mark.parametrize("name", list(chemistry.PROPERTIES))
def test_every_property_is_usable_in_target_and_range(name) -> None:
    prop = chemistry.PROPERTIES[name]
    if prop.extra and not chemistry.admet.available():
        pytest.skip(f"{name} needs the {prop.extra} extra")
    values = prop(MOLS)
    middle = float(np.nanmedian(values))
    got = parse_objective(f"target({name}={middle})")(MOLS)
    np.testing.assert_allclose(got, -np.abs(values - middle) / prop.scale, equal_nan=True)
    inside = parse_objective(f"range({name}={middle}:{middle})")(MOLS)
    np.testing.assert_allclose(inside, got, equal_nan=True)


def test_a_lower_is_better_property_is_maximized_by_the_lower_value() -> None:
    easy, hard = "CCO", "C1CC2CC3CC1C1(C2)C3(O)C#CC1=C[C@H]1N=N1"
    assert chemistry.sa_score([easy])[0] < chemistry.sa_score([hard])[0]
    scores = parse_objective("sa")([easy, hard])
    assert scores[0] > scores[1]


def test_target_is_negative_scaled_distance() -> None:
    got = parse_objective("target(logp=2.5,tpsa=70)")(MOLS)
    lp, tp = chemistry.logp(MOLS), chemistry.tpsa(MOLS)
    np.testing.assert_allclose(got, -np.sqrt((lp - 2.5) ** 2 + ((tp - 70) / 20) ** 2), equal_nan=True)
    assert np.all(got[np.isfinite(got)] <= 0)
    one = parse_objective("target(logp=2.5)")(MOLS)
    np.testing.assert_allclose(one, -np.abs(lp - 2.5), equal_nan=True)


def test_range_and_weighted_sum() -> None:
    mw = chemistry.molecular_weight(MOLS)
    got = parse_objective("range(mw=100:160)")(MOLS)
    want = -(np.maximum(100 - mw, 0) + np.maximum(mw - 160, 0)) / 100
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert got[2] == 0.0  # paracetamol (151 Da) is inside
    ws = parse_objective("0.7*qed+0.3*esol")(MOLS)
    np.testing.assert_allclose(ws, 0.7 * chemistry.qed(MOLS) + 0.3 * chemistry.esol_logs(MOLS), equal_nan=True)
    neg = parse_objective("qed-sa".replace("-", "+-"))(MOLS)
    np.testing.assert_allclose(neg, chemistry.qed(MOLS) + chemistry.sa_score(MOLS), equal_nan=True)
    # a leading minus alone, and a weight written with an exponent sign
    np.testing.assert_allclose(parse_objective("-sa")(MOLS), chemistry.sa_score(MOLS), equal_nan=True)
    np.testing.assert_allclose(
        parse_objective("1e+2*qed + 2.5E-1*logp")(MOLS),
        100 * chemistry.qed(MOLS) + 0.25 * chemistry.logp(MOLS),
        equal_nan=True,
    )


def test_several_objectives_split_outside_parentheses() -> None:
    objs = parse_objectives("esol,target(logp=2.5,tpsa=70)")
    assert [o.name for o in objs] == ["esol", "target(logp=2.5,tpsa=70)"]
    with pytest.raises(ObjectiveError, match="distinct"):
        parse_objectives("qed,qed")


def test_two_functions_of_one_name_from_different_files_are_two_objectives(tmp_path) -> None:
    for folder, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scoring.py").write_text(f"def score(smiles):\n    return [{value}] * len(smiles)\n")
    objs = parse_objectives(f"{tmp_path / 'a' / 'scoring.py'}:score,{tmp_path / 'b' / 'scoring.py'}:score")
    assert [o.key for o in objs] == ["score_1", "score_2"]
    assert [o(["CCO"])[0] for o in objs] == [1.0, 2.0]
    oracle = Oracle(objs, budget=2)
    assert oracle.score_columns == ["score_score_1", "score_score_2"]


def test_unknown_objective_suggests_names() -> None:
    with pytest.raises(ObjectiveError, match=r"unknown objective 'eso1'.*did you mean esol"):
        parse_objective("eso1")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("target(logp=)", "not a number"),
        ("target(logp)", "property=value"),
        ("target()", "at least one"),
        ("target(lgp=2)", "unknown property 'lgp'.*logp"),
        ("target(logp=2", "malformed"),
        ("range(mw=5)", "low:high"),
        ("range(mw=500:100)", "empty range"),
    ],
)
def test_malformed_target(spec, match) -> None:
    with pytest.raises(ObjectiveError, match=match):
        parse_objective(spec)


def test_missing_callable(tmp_path, monkeypatch) -> None:
    with pytest.raises(ObjectiveError, match="cannot import module 'no_such_pkg_xyz.scoring'"):
        parse_objective("no_such_pkg_xyz.scoring:score")
    (tmp_path / "myscore_a.py").write_text("def score(smiles):\n    return [1.0] * len(smiles)\nvalue = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ObjectiveError, match="has no attribute 'nope'"):
        parse_objective("myscore_a:nope")
    with pytest.raises(ObjectiveError, match="not callable"):
        parse_objective("myscore_a:value")
    assert list(parse_objective("myscore_a:score")(["CCO", "CC"])) == [1.0, 1.0]


def test_callable_from_a_python_file(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "scoring.py").write_text(
        'def score(smiles):\n    """Heavy atoms / 10."""\n    return [len(s) / 10 for s in smiles]\n'
    )
    monkeypatch.chdir(tmp_path)  # the working directory is not on the import path of the `molvae` script
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    with pytest.raises(
        ObjectiveError,
        match=r"mypkg/scoring\.py is in this directory: pass it as a file, "
        r"--objective mypkg/scoring\.py:score",
    ):
        parse_objective("mypkg.scoring:score")
    obj = parse_objective("mypkg/scoring.py:score")
    assert obj.name == f"{pkg / 'scoring.py'}:score"  # absolute: a resumed run finds it from anywhere
    assert obj.description == "Heavy atoms / 10." and list(obj(["CCO", "CCCC"])) == [0.3, 0.4]
    assert "mypkg" not in sys.modules  # loaded under a private name, sys.path untouched
    assert parse_objective(obj.name).name == obj.name
    with pytest.raises(ObjectiveError, match=r"no such file .*nothere\.py"):
        parse_objective("nothere.py:score")
    with pytest.raises(ObjectiveError, match="has no attribute 'nope'"):
        parse_objective("mypkg/scoring.py:nope")
    (tmp_path / "broken.py").write_text("import no_such_module_xyz\n")
    with pytest.raises(ObjectiveError, match=r"loading .*broken\.py failed: ModuleNotFoundError"):
        parse_objective("broken.py:score")


def test_callable_errors_name_the_objective(tmp_path, monkeypatch) -> None:
    (tmp_path / "myscore_b.py").write_text(
        "def boom(smiles):\n    raise RuntimeError('docking server down')\n"
        "def short(smiles):\n    return [1.0]\n"
        "def words(smiles):\n    return ['good'] * len(smiles)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ObjectiveError, match=r"'myscore_b:boom' raised RuntimeError: docking server down"):
        parse_objective("myscore_b:boom")(["CCO", "CCC"])
    with pytest.raises(ObjectiveError, match=r"'myscore_b:short' returned 1 value.*for 2 molecules"):
        parse_objective("myscore_b:short")(["CCO", "CCC"])
    with pytest.raises(ObjectiveError, match=r"'myscore_b:words' returned non-numbers"):
        parse_objective("myscore_b:words")(["CCO", "CCC"])
    sys.modules.pop("myscore_b", None)


def test_oracle_counts_repeats_and_invalid_and_stops_at_budget() -> None:
    seen: list[str] = []

    def score(smiles):
        seen.extend(smiles)
        return [float(len(s)) for s in smiles]

    oracle = Oracle([parse_objective(score, name="length")], budget=4)
    rows = oracle.evaluate(["OCC", "CCO", "xx(", None, "c1ccccc1", "CCO"], round=1, source="test")
    assert [r["status"] for r in rows] == ["scored", "repeat", "invalid", "invalid", "scored", "repeat"]
    assert (oracle.calls, oracle.n_repeat, oracle.n_invalid) == (2, 2, 2)
    assert seen == ["CCO", "c1ccccc1"]  # canonical, each once
    rows = oracle.evaluate(["CCN", "CCCl", "CCBr", "CCI", "CCO"], round=2, source="test")
    assert oracle.calls == 4 and oracle.remaining == 0
    assert (oracle.n_repeat, oracle.n_invalid) == (3, 2)  # the repeated CCO still counted; CCBr/CCI dropped
    assert [r["call"] for r in oracle.records if r["status"] == "scored"] == [1, 2, 3, 4]
    assert seen == ["CCO", "c1ccccc1", "CCN", "CCCl"]
    assert oracle.evaluate(["CCCC"], round=3, source="test") == [] and oracle.calls == 4
    # accounting survives a round trip through the evaluations table
    again = Oracle([parse_objective(score, name="length")], budget=4)
    again.load_records(oracle.dataframe())
    assert (again.calls, again.n_repeat, again.n_invalid) == (4, 3, 2)
    assert set(again.known) == {"CCO", "c1ccccc1", "CCN", "CCCl"}


def test_constraints_mark_infeasible_with_reason() -> None:
    ref = chemistry.canonicalize("CC(=O)Nc1ccc(O)cc1")
    oracle = Oracle(
        [parse_objective("qed")],
        budget=10,
        score_infeasible=True,
        constraints=Constraints(reference=ref, min_similarity=0.4, ranges={"mw": (100.0, 200.0)}),
    )
    rows = oracle.evaluate(["CC(=O)Nc1ccc(O)cc1", "CCO", "CC(=O)Nc1ccc(OCCCCCCCCCC)cc1"], round=0, source="t")
    assert [r["status"] for r in rows] == ["scored"] * 3 and oracle.calls == 3
    assert [r["feasible"] for r in rows] == [True, False, False]
    assert rows[0]["similarity"] == pytest.approx(1.0)
    assert "similarity" in rows[1]["reason"] and "mw" in rows[1]["reason"]
    assert "mw" in rows[2]["reason"]


def test_constraint_reference_takes_a_drug_name_or_any_smiles() -> None:
    by_name = Constraints(reference="Paracetamol", min_similarity=0.4)
    assert by_name.reference == chemistry.canonicalize("CC(=O)Nc1ccc(O)cc1") and by_name.reference_name == "paracetamol"
    by_smiles = Constraints(reference="OC1=CC=C(NC(C)=O)C=C1", min_similarity=0.4)  # Kekulé form
    assert by_smiles.reference == by_name.reference
    assert Constraints.from_dict(by_name.to_dict()) == by_name  # a saved run resumes with the same rules
    with pytest.raises(MolvaeError, match="unknown drug name 'celecoxb'.*celecoxib"):
        Constraints(reference="celecoxb", min_similarity=0.4)
    with pytest.raises(MolvaeError, match="neither a known drug name nor a valid SMILES"):
        Constraints(reference="C1CC(", min_similarity=0.4)


def test_infeasible_molecules_are_recorded_without_an_oracle_call() -> None:
    seen: list[str] = []

    def score(smiles):
        seen.extend(smiles)
        return [float(len(s)) for s in smiles]

    ref = chemistry.canonicalize("CC(=O)Nc1ccc(O)cc1")
    rules = Constraints(reference=ref, min_similarity=0.4, ranges={"mw": (100.0, 200.0)})
    oracle = Oracle([parse_objective(score, name="length")], budget=2, constraints=rules)
    batch = ["CCO", "CC(=O)Nc1ccc(O)cc1", "CC(=O)Nc1ccc(OCCCCCCCCCC)cc1", "CC(=O)Nc1ccc(OC)cc1", "CC(=O)Nc1ccc(OCC)cc1"]
    rows = oracle.evaluate(batch, round=1, source="t")
    # the objective never sees a molecule that fails a constraint, and those cost no call
    assert [r["status"] for r in rows] == ["infeasible", "scored", "infeasible", "scored"]
    assert seen == ["CC(=O)Nc1ccc(O)cc1", "COc1ccc(NC(C)=O)cc1"]
    assert (oracle.calls, oracle.n_unscored, oracle.remaining) == (2, 2, 0)  # the ethyl ether: beyond the budget
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    assert all(r["call"] is None and np.isnan(r["score"]) and not r["feasible"] for r in infeasible)
    assert "similarity" in infeasible[0]["reason"] and "mw" in infeasible[1]["reason"]
    assert infeasible[1]["mw"] > 200 and infeasible[0]["similarity"] < 0.4  # properties and similarity kept
    # known from now on: a second proposal of an infeasible molecule is a repeat, not another check
    assert [r["status"] for r in oracle.evaluate(["OCC"], round=2, source="t")] == ["repeat"]
    assert {r["smiles"] for r in oracle.known_records()} == {
        "CCO",
        ref,
        "COc1ccc(NC(C)=O)cc1",
        "CCCCCCCCCCOc1ccc(NC(C)=O)cc1",
    }
    again = Oracle([parse_objective(score, name="length")], budget=2, constraints=rules)
    again.load_records(oracle.dataframe())
    assert (again.calls, again.n_unscored, again.n_repeat) == (2, 2, 1)
    assert set(again.known) == set(oracle.known)


def test_score_journal_drops_a_torn_last_line_and_appends_after_it(tmp_path) -> None:
    from molvae.optimization.journal import ScoreJournal

    journal = ScoreJournal(tmp_path / "scores.jsonl")
    assert journal.read(2) == {}
    journal.append(["CCO", "CCN"], np.array([[1.0, 2.0], [3.0, np.nan]]))
    with open(journal.path, "a") as fh:
        fh.write('{"smiles": "CCC", "sco')  # killed mid-write
    scores = journal.read(2)
    assert sorted(scores) == ["CCN", "CCO"] and scores["CCO"].tolist() == [1.0, 2.0] and np.isnan(scores["CCN"][1])
    journal.append(["CCC"], np.array([[5.0, 6.0]]))
    assert journal.read(2)["CCC"].tolist() == [5.0, 6.0]
    with pytest.raises(ObjectiveError, match=r"line 1: unreadable score record"):
        journal.read(3)  # the objectives changed since the run began
