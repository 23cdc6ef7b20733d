"""ADMET-AI's endpoints with the real package: values as ADMET-AI gives them, directions, invalid rows, the
missing extra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from molvae import chemistry
from molvae.chemistry import admet
from molvae.optimization import Constraints, ObjectiveError, parse_objective, parse_objectives

admet_ai = pytest.importorskip("admet_ai", reason="the admet extra is not installed")

# ADMET-AI's own predict (the reference here; molvae does not call it) runs Lightning, which builds a
# torch LeafSpec that torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CELECOXIB = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
CAFFEINE = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"
TERFENADINE = "CC(C)(C)c1ccc(C(O)CCCN2CCC(C(O)(c3ccccc3)c3ccccc3)CC2)cc1"  # a known hERG blocker
MOLECULES = [ASPIRIN, CELECOXIB, CAFFEINE, TERFENADINE, "CCO", "C"]


@pytest.fixture(scope="module")
def direct() -> pd.DataFrame:
    """What ADMET-AI's own ADMETModel.predict returns for MOLECULES (its progress bars go to captured output)."""
    return admet_ai.ADMETModel(include_physchem=False, drugbank_path=None, num_workers=0).predict(smiles=MOLECULES)


@pytest.fixture(scope="module")
def ours() -> dict[str, np.ndarray]:
    return admet.predict(MOLECULES, list(admet.DIRECTIONS))


def test_every_endpoint_of_the_table_is_one_admet_ai_predicts(direct) -> None:
    assert set(admet.DIRECTIONS) == set(direct.columns)
    assert set(admet.endpoints()) == set(admet.DIRECTIONS)
    for e in admet.endpoints().values():
        assert e.direction in (-1.0, 0.0, 1.0) and e.scale > 0 and e.name and e.units
        assert (e.units == "probability") == (e.task_type == "classification")
    assert admet.endpoint("herg").id == "hERG" and admet.endpoint(admet.SOLUBILITY).units == "log(mol/L)"


def test_predictions_equal_admet_ai_directly(direct, ours) -> None:
    for key, e in admet.endpoints().items():
        want = direct[key].to_numpy()
        if e.task_type == "regression":  # molvae clips to the endpoint's physical range (a clearance >= 0)
            want = np.clip(want, e.minimum, e.maximum)
        np.testing.assert_allclose(ours[key], want, rtol=1e-5, atol=1e-5, err_msg=key)
    assert ours[admet.SOLUBILITY][0] == pytest.approx(-1.62, abs=0.05)  # aspirin: measured logS -1.72


def test_nothing_is_printed_and_invalid_rows_are_nan_in_input_order(ours, capfd) -> None:
    batch = ["not a smiles", ASPIRIN, "C1CC", CELECOXIB, "", None]
    got = admet.predict(batch, [admet.SOLUBILITY, "hERG"])
    assert capfd.readouterr() == ("", "")
    for key in (admet.SOLUBILITY, "hERG"):
        assert np.isnan(got[key][[0, 2, 4, 5]]).all()
        np.testing.assert_allclose(got[key][[1, 3]], ours[key][:2], rtol=1e-5, atol=1e-6)


def test_an_empty_or_all_invalid_batch_is_all_nan() -> None:
    assert admet.predict([], ["hERG"])["hERG"].shape == (0,)
    assert np.isnan(admet.predict(["xx(", "C1CC"], ["hERG", admet.SOLUBILITY])["hERG"]).all()
    assert parse_objective("solubility")([]).shape == (0,)
    assert np.isnan(parse_objective("solubility")(["xx("])).all()


def test_solubility_is_the_aqsoldb_endpoint_beside_esol(ours) -> None:
    np.testing.assert_allclose(chemistry.solubility(MOLECULES), ours[admet.SOLUBILITY])
    table = chemistry.property_table(MOLECULES + ["xx("], ["esol", "solubility", "admet:hERG", "qed"])
    assert list(table.columns[3:]) == ["esol", "solubility", "admet:hERG", "qed"]
    np.testing.assert_allclose(table["solubility"].to_numpy()[:-1], ours[admet.SOLUBILITY])
    np.testing.assert_allclose(table["admet:hERG"].to_numpy()[:-1], ours["hERG"])
    assert table.iloc[-1, 3:].isna().all()


def test_a_lower_is_better_endpoint_is_maximized_negated(ours) -> None:
    herg = parse_objective("admet:hERG")
    scores = herg(MOLECULES)
    np.testing.assert_allclose(scores, -ours["hERG"], rtol=1e-6)
    # terfenadine blocks hERG and aspirin does not: the objective prefers aspirin
    assert ours["hERG"][3] > 0.5 > ours["hERG"][0] and scores[0] > scores[3]
    assert "lower is better" in herg.description and herg.key == "admet_herg"
    up = parse_objective("admet:hia_hou")  # higher is better: as predicted
    np.testing.assert_allclose(up(MOLECULES), ours["HIA_Hou"], rtol=1e-6)


def test_endpoints_in_sums_pareto_lists_target_and_range(ours) -> None:
    total = parse_objective("solubility+0.5*admet:hERG")(MOLECULES)
    np.testing.assert_allclose(total, ours[admet.SOLUBILITY] - 0.5 * ours["hERG"], rtol=1e-6)
    assert [o.name for o in parse_objectives("solubility,qed,admet:hERG")] == ["solubility", "qed", "admet:hERG"]
    target = parse_objective("target(admet:hERG=0.1)")(MOLECULES)
    np.testing.assert_allclose(target, -np.abs(ours["hERG"] - 0.1) / 0.1, rtol=1e-6)
    inside = parse_objective("range(solubility=-3:-1)")(MOLECULES)
    sol = ours[admet.SOLUBILITY]
    np.testing.assert_allclose(inside, -(np.maximum(-3 - sol, 0) + np.maximum(sol + 1, 0)), rtol=1e-6, atol=1e-12)


def test_an_endpoint_without_a_direction_asks_for_a_goal_and_a_typo_gets_a_suggestion() -> None:
    with pytest.raises(ObjectiveError, match=r"target\(admet:BBB_Martins=VALUE\)"):
        parse_objective("admet:BBB_Martins")
    with pytest.raises(ObjectiveError, match="did you mean admet:hERG"):
        parse_objective("admet:hERGG")


def test_an_endpoint_range_is_a_constraint(ours) -> None:
    feasible, reasons, _ = Constraints(ranges={"admet:hERG": (0.0, 0.3)}).check(MOLECULES)
    np.testing.assert_array_equal(feasible, ours["hERG"] <= 0.3)
    assert "admet:hERG" in reasons[3]  # terfenadine


def test_plot_labels_come_from_the_tables() -> None:
    from molvae.visualize import property_label

    assert property_label("solubility") == chemistry.PROPERTIES["solubility"].label
    assert property_label("admet:hERG") == "hERG Blocking, probability"
    assert property_label(f"admet:{admet.SOLUBILITY}") == "Aqueous Solubility, log(mol/L)"


def test_an_init_file_column_named_like_an_endpoint_is_oriented_like_it() -> None:
    from molvae.optimization.designs import column_sign

    # `molvae properties --admet` writes the probability; the objective admet:hERG is minus it
    assert column_sign("admet:hERG") == -1.0 and column_sign("admet:HIA_Hou") == 1.0
    assert column_sign("solubility") == 1.0 and column_sign("sa") == -1.0 and column_sign("my.py:score") == 1.0
