"""The optimization loop with a real (small) model, BoTorch GP and RDKit scoring."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.optimization import (
    ACQUISITIONS,
    Constraints,
    ObjectiveError,
    OptimizeConfig,
    Optimizer,
    TrustRegion,
    fit_gp,
    parse_objective,
    propose_latents,
)
from molvae.optimization.gp import feasible_box, trust_region_box

FAST = dict(batch=4, n_init=4, decode_attempts=2, num_restarts=2, raw_samples=32, acq_maxiter=30, patience=15)


def test_trust_region_grows_shrinks_restarts() -> None:
    tr = TrustRegion(dim=32, batch=4)
    assert tr.failure_tolerance == 8
    for _ in range(3):
        tr.update(True)
    assert tr.length == pytest.approx(1.6)
    start = tr.length
    n_fail = 0
    while tr.restarts == 0:
        tr.update(False)
        n_fail += 1
    assert tr.length == pytest.approx(0.8)
    assert n_fail == tr.failure_tolerance * (int(math.log2(start / tr.length_min)) + 1)
    box = tr.bounds(
        torch.zeros(3, dtype=torch.float64),
        torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64),
        -torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
    )
    widths = box[1] - box[0]
    assert widths[2] > widths[0] and torch.all(box[0] >= -1) and torch.all(box[1] <= 1)


def test_trust_region_failure_tolerance_comes_from_the_config(small_model, tmp_path) -> None:
    d = small_model.config.latent_dim
    default = Optimizer(
        small_model, OptimizeConfig(objectives=["qed"], method="turbo", **FAST), tmp_path / "a", progress=False
    )
    assert default.tr.failure_tolerance == math.ceil(max(4 / FAST["batch"], d / FAST["batch"]))
    cfg = OptimizeConfig(objectives=["qed"], method="turbo", tr_failure_tolerance=2, **FAST)
    tr = Optimizer(small_model, cfg, tmp_path / "b", progress=False).tr
    assert tr.failure_tolerance == 2
    start = tr.length
    tr.update(False)
    assert tr.length == start
    tr.update(False)
    assert tr.length == pytest.approx(start / 2)


def test_feasible_box_spans_the_feasible_codes_only() -> None:
    X = torch.tensor([[0.0, 0.0], [1.0, 2.0], [9.0, -9.0], [0.5, 1.0]], dtype=torch.float64)
    bounds = torch.tensor([[-10.0, -10.0], [10.0, 10.0]], dtype=torch.float64)
    feasible = torch.tensor([True, True, False, True])
    box = feasible_box(X, feasible, bounds)
    # the infeasible row at (9, -9) does not widen the box; 10% margins on each side
    torch.testing.assert_close(box, torch.tensor([[-0.1, -0.2], [1.1, 2.2]], dtype=torch.float64))
    torch.testing.assert_close(
        feasible_box(X, feasible, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)),
        torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
    )  # clipped to the bounds
    assert feasible_box(X, torch.tensor([False, True, False, False]), bounds) is bounds  # one point: no box


def test_only_a_similarity_constraint_sizes_the_trust_region_by_the_feasible_codes() -> None:
    X = torch.tensor([[0.0, 0.0], [1.0, 2.0], [9.0, -9.0], [0.5, 1.0]], dtype=torch.float64)
    bounds = torch.tensor([[-10.0, -10.0], [10.0, 10.0]], dtype=torch.float64)
    feasible = torch.tensor([True, True, False, True])
    lead = Constraints(
        reference="Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",
        min_similarity=0.4,
        ranges={"mw": (200.0, 450.0)},
    )
    torch.testing.assert_close(trust_region_box(X, feasible, bounds, lead), feasible_box(X, feasible, bounds))
    for rules in (Constraints(alerts=["PAINS"]), Constraints(ranges={"mw": (200.0, 450.0)}), Constraints()):
        assert trust_region_box(X, feasible, bounds, rules) is bounds


def test_gp_is_float64_and_fits_a_trend() -> None:
    torch.manual_seed(0)
    X = torch.rand(40, 4, dtype=torch.float64)
    Y = (X[:, :1] * 3).sin()
    gp = fit_gp(X, Y, torch.stack([torch.zeros(4), torch.ones(4)]).double())
    with torch.no_grad():
        mean = gp.posterior(X).mean
    assert mean.dtype == torch.float64
    assert torch.corrcoef(torch.stack([mean[:, 0], Y[:, 0]]))[0, 1] > 0.95


@pytest.mark.parametrize("acquisition", list(ACQUISITIONS))
def test_each_acquisition_proposes_near_the_optimum(acquisition) -> None:
    # f peaks at x = 0.7 in every dimension; 30 random observations leave room to improve
    torch.manual_seed(0)
    d, q = 3, 4
    X = torch.rand(30, d, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return -((x - 0.7) ** 2).sum(-1, keepdim=True)

    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    gp = fit_gp(X, f(X), bounds)
    config = OptimizeConfig(
        objectives=["qed"], acquisition=acquisition, num_restarts=4, raw_samples=64, ts_candidates=2000
    )
    z = propose_latents(gp, X, f(X), bounds, q, config)
    assert z.shape == (q, d) and z.dtype == torch.float64
    assert torch.all(z >= 0) and torch.all(z <= 1)
    assert len({tuple(row.tolist()) for row in z}) == q  # a batch of q distinct points
    # the best proposal beats the median observation by a wide margin
    assert f(z).max() > f(X).median() + 0.1


def test_similarity_constraint_keeps_proposals_in_the_feasible_region() -> None:
    # The objective rises along x0 without end; the "similarity" falls along x0 and must stay
    # >= 0.6, which holds for x0 <= 0.4. Without the constraint qLogEI goes to the far edge.
    torch.manual_seed(1)
    d, q = 3, 4
    X = torch.rand(40, d, dtype=torch.float64)
    score = X[:, :1] + 0.1 * X[:, 1:2]
    sim = 1.0 - X[:, :1]
    feasible = sim[:, 0] >= 0.6
    Y = torch.where(feasible[:, None], score, score[feasible].min())  # what training_data gives the objective GP
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    config = OptimizeConfig(objectives=["qed"], num_restarts=4, raw_samples=64)
    free = propose_latents(fit_gp(X, score, bounds), X, score, bounds, q, config)
    constrained = propose_latents(
        fit_gp(X, Y, bounds), X, Y, bounds, q, config, constraint=(fit_gp(X, sim, bounds), 0.6)
    )
    assert free[:, 0].max() > 0.9
    assert constrained[:, 0].max() <= 0.45  # every candidate predicted feasible (the boundary is 0.4)
    assert constrained[:, 0].max() > 0.25  # and it still pushes toward the better, feasible side


@pytest.mark.slow
def test_budget_accounting_with_repeats_and_invalid(small_model, tmp_path) -> None:
    seen: list[str] = []

    def count(smiles):
        seen.extend(smiles)
        return [s.count("C") + 0.1 * s.count("N") for s in smiles]

    cfg = OptimizeConfig(objectives=["count"], budget=12, method="bo", seed=0, **FAST)
    opt = Optimizer(
        small_model, cfg, tmp_path / "run", objectives=[parse_objective(count, name="count")], progress=False
    ).run()
    df = pd.read_csv(tmp_path / "run" / "evaluations.csv", keep_default_na=False, na_values=[""])
    scored = df[df["status"] == "scored"]
    assert len(scored) == 12 == opt.oracle.calls  # stops exactly at the budget
    assert len(seen) == 12 and len(set(seen)) == 12  # each molecule scored once
    assert scored["call"].tolist() == list(range(1, 13))
    assert opt.oracle.n_invalid == (df["status"] == "invalid").sum()
    assert opt.oracle.n_repeat == (df["status"] == "repeat").sum()
    assert df.loc[df["status"] != "scored", "call"].isna().all()
    state = opt.state()
    assert state["calls"] == 12 and state["finished"]
    for name in ("best.csv", "progress.png", "state.json", "config.json"):
        assert (tmp_path / "run" / name).is_file()
    best = pd.read_csv(tmp_path / "run" / "best.csv")
    assert best["score"].is_monotonic_decreasing and best["smiles"].is_unique
    assert best["score"].iloc[0] == pytest.approx(scored["score"].max())
    from rdkit import Chem

    records = list(Chem.ForwardSDMolSupplier(str(tmp_path / "run" / "best.sdf")))  # the same molecules
    assert [Chem.MolToSmiles(m) for m in records] == best["smiles"].tolist()
    assert [float(m.GetProp("score")) for m in records] == pytest.approx(best["score"].tolist())


@pytest.mark.slow
def test_raising_objective_keeps_evaluations(small_model, tmp_path) -> None:
    calls = {"n": 0}

    def flaky(smiles):
        calls["n"] += 1
        if calls["n"] > 1:
            raise ValueError("license server unreachable")
        return np.ones(len(smiles))

    cfg = OptimizeConfig(objectives=["flaky"], budget=20, method="bo", seed=0, **FAST)
    with pytest.raises(ObjectiveError, match=r"'flaky' raised ValueError: license server unreachable"):
        Optimizer(
            small_model, cfg, tmp_path / "run", objectives=[parse_objective(flaky, name="flaky")], progress=False
        ).run()
    df = pd.read_csv(tmp_path / "run" / "evaluations.csv")
    assert (df["status"] == "scored").sum() == 4  # the initial design, scored before the failure, is on disk


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prior", "screen"])
def test_baselines_share_the_budget_accounting(small_model, tmp_path, method) -> None:
    cfg = OptimizeConfig(objectives=["qed"], budget=6, method=method, seed=0, **{**FAST, "n_init": 0})
    opt = Optimizer(small_model, cfg, tmp_path / method, progress=False).run()
    df = opt.oracle.dataframe()
    assert (df["status"] == "scored").sum() == 6 or opt.stalled >= cfg.patience
    assert df.loc[df["status"] == "scored", "smiles"].is_unique
    assert set(df["source"]) == {method}


@pytest.mark.parametrize("method,lead", [("turbo", None), ("turbo", "c1ccccc1CCO"), ("prior", None), ("screen", None)])
def test_zero_budget_scores_nothing_and_finishes(small_model, tmp_path, method, lead) -> None:
    # --budget 0 crashed in the initial design (a range() step of 0) before any output was written
    seen: list[str] = []

    def count(smiles):
        seen.extend(smiles)
        return [s.count("C") for s in smiles]

    cons = {"reference": lead, "min_similarity": 0.4} if lead else {}
    cfg = OptimizeConfig(objectives=["count"], budget=0, method=method, seed=0, constraints=cons, **FAST)
    opt = Optimizer(
        small_model, cfg, tmp_path / "run", objectives=[parse_objective(count, name="count")], progress=False
    ).run()
    assert seen == [] and opt.oracle.calls == 0
    state = opt.state()
    assert state["finished"] and state["stop_reason"] == "budget" and state["round"] == 0


def test_a_run_resumes_with_the_accounting_it_was_saved_with(tmp_path) -> None:
    from molvae.checkpoint import write_json
    from molvae.optimization.config import saved_settings

    old = {"objectives": ["esol"], "budget": 50, "constraints": {"reference": "CCO", "min_similarity": 0.4}}
    write_json(
        tmp_path / "config.json",
        {"optimize": {**old, "score_infeasible": True, "local_after": None}, "method": "turbo", "latent_dim": 8},
    )
    resumed = OptimizeConfig.from_dict(saved_settings(tmp_path))
    assert resumed.score_infeasible is True  # infeasible ones were charged
    assert resumed.local_after is None  # and a stalled round always asked the GP
    write_json(tmp_path / "config.json", {"optimize": {**old, "score_infeasible": False, "local_after": 3}})
    resumed = OptimizeConfig.from_dict(saved_settings(tmp_path))
    assert resumed.score_infeasible is False and resumed.local_after == 3
    assert OptimizeConfig(objectives=["esol"]).local_after == 5
    assert OptimizeConfig(objectives=["esol"]).score_infeasible is False  # new runs: infeasible molecules cost nothing


def test_round_limit_is_validated_and_optional() -> None:
    from molvae.errors import ConfigError

    assert OptimizeConfig(objectives=["qed"]).max_rounds is None  # no cap unless asked
    assert OptimizeConfig.from_dict({"objectives": ["qed"], "max_rounds": 5}).max_rounds == 5
    with pytest.raises(ConfigError, match="max_rounds"):
        OptimizeConfig(objectives=["qed"], max_rounds=0).validate()


@pytest.mark.slow
def test_stalled_lead_runs_decode_around_the_best_feasible_molecules(small_model, tmp_path) -> None:
    from molvae.chemistry import canonicalize, tanimoto_similarity
    from molvae.data import moses_file, read_smiles

    # a molecule the small model was trained on, so its neighbourhood decodes to relatives
    lead = canonicalize(read_smiles(moses_file("train"), column="SMILES", limit=20)[7])
    rules = Constraints(reference=lead, min_similarity=0.2).to_dict()
    cfg = OptimizeConfig(
        objectives=["esol"], budget=60, method="bo", seed=0, constraints=rules, local_after=2, **{**FAST, "n_init": 6}
    )
    opt = Optimizer(small_model, cfg, tmp_path / "run", progress=False)
    opt.initial_design()
    local_scored = 0
    for _ in range(12):
        stalled, known = opt.stalled, {r["smiles"] for r in opt.oracle.records}
        rows = opt.step()
        local = stalled in (2, 4, 6, 8, 10, 12, 14)
        assert {r["source"] for r in rows} <= ({"local"} if local else {"bo"})
        if local:
            # only new molecules that meet the constraint reach the oracle, so each one is scored
            assert all(r["status"] == "scored" and r["smiles"] not in known for r in rows)
            assert np.all(tanimoto_similarity(lead, [r["smiles"] for r in rows]) >= 0.2)
            local_scored += len(rows)
        if local_scored and not local:
            break
    assert local_scored > 0
    # without the option a stalled run keeps asking the GP
    plain = Optimizer(
        small_model, OptimizeConfig(**{**cfg.__dict__, "local_after": None}), tmp_path / "plain", progress=False
    )
    plain.initial_design()
    plain.stalled = 4
    assert {r["source"] for r in plain.step()} <= {"bo"}


def test_python_resume_refuses_settings_that_differ_from_the_run(small_model, tmp_path) -> None:
    from molvae.errors import ConfigError
    from molvae.optimization import optimize

    lead = {"reference": "celecoxib", "min_similarity": 0.4}
    optimize(small_model, "esol", tmp_path / "run", budget=0, batch=4, constraints=lead)
    with pytest.raises(ConfigError, match=r"batch 6 \(the run has 4\)"):
        optimize(small_model, "esol", tmp_path / "run", resume=True, batch=6)
    with pytest.raises(ConfigError, match=r"objectives \['qed'\] \(the run has \['esol'\]\)"):
        optimize(small_model, "qed", tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="constraints"):
        optimize(
            small_model,
            "esol",
            tmp_path / "run",
            resume=True,
            constraints={"reference": "aspirin", "min_similarity": 0.4},
        )
    # the lead by SMILES is the same rule; the budget and round limit may change
    same = {"reference": "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1", "min_similarity": 0.4}
    opt = optimize(
        small_model, "esol", tmp_path / "run", resume=True, constraints=same, batch=4, budget=0, max_rounds=1
    )
    assert opt.config.max_rounds == 1 and opt.config.batch == 4


def test_a_state_written_by_a_newer_version_is_refused_on_resume(small_model, tmp_path) -> None:
    """state.json carries its format's version: a resume refuses one it cannot read instead of misreading it."""
    from molvae.errors import MolvaeError
    from molvae.optimization import optimize
    from molvae.optimization.store import STATE_VERSION

    optimize(small_model, "qed", tmp_path / "run", budget=4, **FAST)
    state_file = tmp_path / "run" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["version"] == STATE_VERSION
    state_file.write_text(json.dumps({**state, "version": STATE_VERSION + 1}))
    with pytest.raises(MolvaeError, match="written by a newer molvae"):
        optimize(small_model, "qed", tmp_path / "run", resume=True, budget=6, **FAST)


def test_run_info_records_the_environment_and_warns_on_a_resume_under_other_versions(
    small_model, tmp_path, caplog
) -> None:
    import botorch

    cfg = OptimizeConfig(objectives=["qed"], budget=0, seed=0, **FAST)
    Optimizer(small_model, cfg, tmp_path / "run", progress=False).run()
    file = tmp_path / "run" / "run_info.json"
    info = json.loads(file.read_text())
    assert info["versions"]["botorch"] == botorch.__version__ and info["versions"]["torch"] == torch.__version__
    assert info["resumes"] == []
    with caplog.at_level(logging.WARNING, logger="molvae.optimization.store"):
        Optimizer(small_model, cfg, tmp_path / "run", resume=True, progress=False).run()
    assert not caplog.records  # same environment: nothing to say
    info = json.loads(file.read_text())
    info["versions"]["botorch"] = "0.0.1"  # as if started under another BoTorch
    file.write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="molvae.optimization.store"):
        Optimizer(small_model, cfg, tmp_path / "run", resume=True, progress=False).run()
    assert f"botorch 0.0.1 -> {botorch.__version__}" in caplog.text and "may differ" in caplog.text
    again = json.loads(file.read_text())
    assert again["versions"]["botorch"] == "0.0.1"  # the start's record is kept
    assert [r["versions"]["botorch"] for r in again["resumes"]] == [botorch.__version__] * 2
    assert [r["round"] for r in again["resumes"]] == [0, 0]


def _half_collapsed(model_dir):
    """The small model with its even latent dimensions collapsed: their posterior mean is a constant."""
    from molvae.model import MolVAE

    model = MolVAE.load(model_dir, device="cpu")
    with torch.no_grad():
        model.net.to_mu.weight[::2] = 0.0
    return model


def test_active_subspace_searches_only_the_dimensions_the_encoder_uses(small_model_dir, tmp_path) -> None:
    from molvae.optimization.subspace import active_latent_dimensions

    model = _half_collapsed(small_model_dir)
    mask = active_latent_dimensions(model)
    d = model.config.latent_dim
    assert not mask[::2].any() and mask[1::2].sum() >= d // 2 - 2  # the small model uses nearly all of its own
    cfg = OptimizeConfig(objectives=["qed"], method="turbo", subspace="active", budget=12, seed=0, **FAST)
    opt = Optimizer(model, cfg, tmp_path / "run", progress=False)
    assert opt.search_dim == int(mask.sum()) < d
    assert opt.tr.failure_tolerance == math.ceil(max(4 / FAST["batch"], mask.sum() / FAST["batch"]))
    opt.initial_design()
    X, _ = opt.training_data()
    z = opt._propose(6, {})
    assert z.shape == (6, d)
    # The collapsed dimensions are held at the data's mean; the active ones are searched.
    torch.testing.assert_close(z[:, ~torch.as_tensor(mask)], X[:, ~torch.as_tensor(mask)].mean(0).expand(6, -1))
    assert (z[:, torch.as_tensor(mask)].std(0) > 0).any()
    opt.run()
    saved = json.loads((tmp_path / "run" / "state.json").read_text())["active_dims"]
    assert saved == np.flatnonzero(mask).tolist()
    # A resume keeps the dimensions the run started with, even under a model whose mask would differ.
    from molvae.model import MolVAE

    resumed = Optimizer(MolVAE.load(small_model_dir, device="cpu"), cfg, tmp_path / "run", resume=True, progress=False)
    assert torch.equal(resumed.active, torch.as_tensor(mask))


def test_auto_subspace_is_the_default_and_finds_the_same_dimensions(small_model_dir, tmp_path) -> None:
    from molvae.optimization.subspace import active_latent_dimensions

    model = _half_collapsed(small_model_dir)
    cfg = OptimizeConfig(objectives=["qed"], method="bo", **FAST)
    assert cfg.subspace == "auto"
    opt = Optimizer(model, cfg, tmp_path / "run", progress=False)
    assert torch.equal(opt.active, torch.as_tensor(active_latent_dimensions(model)))


def test_pareto_run_searches_the_active_dimensions(small_model_dir, tmp_path) -> None:
    model = _half_collapsed(small_model_dir)
    cfg = OptimizeConfig(objectives=["esol", "qed"], method="bo", budget=12, seed=0, **FAST)
    opt = Optimizer(model, cfg, tmp_path / "run", progress=False)
    opt.initial_design()
    X, _ = opt.training_data()
    z = opt._propose(4, {})
    collapsed = ~opt.active
    assert collapsed.any() and opt.active.any()
    torch.testing.assert_close(z[:, collapsed], X[:, collapsed].mean(0).expand(4, -1))
    opt.run()
    assert (tmp_path / "run" / "pareto.csv").is_file()
    assert (
        json.loads((tmp_path / "run" / "state.json").read_text())["active_dims"]
        == torch.nonzero(opt.active).flatten().tolist()
    )


def test_auto_subspace_falls_back_to_every_dimension_and_says_why(small_model_dir, tmp_path, caplog) -> None:
    from molvae.errors import MolvaeError
    from molvae.model import MolVAE

    model = MolVAE.load(small_model_dir, device="cpu")
    with torch.no_grad():  # every posterior mean is the same code: no dimension is active
        model.net.to_mu.weight.zero_()
    d = model.config.latent_dim
    with pytest.raises(MolvaeError, match="--subspace active: no latent dimension is active"):
        Optimizer(
            model,
            OptimizeConfig(objectives=["qed"], method="turbo", subspace="active", **FAST),
            tmp_path / "active",
            progress=False,
        )
    cfg = OptimizeConfig(objectives=["qed"], method="turbo", subspace="auto", budget=8, seed=0, **FAST)
    with caplog.at_level(logging.WARNING, logger="molvae.optimization.subspace"):
        opt = Optimizer(model, cfg, tmp_path / "auto", progress=False)
    assert opt.active is None and opt.search_dim == d and opt.tr.dim == d
    assert "no latent dimension is active" in caplog.text and f"all {d} latent dimensions" in caplog.text
    opt.run()
    assert json.loads((tmp_path / "auto" / "state.json").read_text())["active_dims"] is None
    # A resume keeps searching every dimension, though this model's active ones can now be measured.
    resumed = Optimizer(_half_collapsed(small_model_dir), cfg, tmp_path / "auto", resume=True, progress=False)
    assert resumed.active is None and resumed.search_dim == d


def test_full_subspace_and_baselines_search_every_dimension(small_model, tmp_path) -> None:
    for method, subspace in (("turbo", "full"), ("prior", "active"), ("screen", "auto")):
        cfg = OptimizeConfig(objectives=["qed"], method=method, subspace=subspace, **FAST)
        opt = Optimizer(small_model, cfg, tmp_path / f"{method}-{subspace}", progress=False)
        assert opt.active is None and opt.search_dim == small_model.config.latent_dim
    from molvae.errors import ConfigError

    with pytest.raises(ConfigError, match="subspace"):
        OptimizeConfig(objectives=["qed"], subspace="half").validate()


def test_progress_curves_count_supplied_scores_from_the_start() -> None:
    from molvae.optimization.report import progress_curves

    table = pd.DataFrame(
        {
            "call": [np.nan, np.nan, 1, 2, 3, np.nan],
            "status": ["supplied", "supplied", "scored", "scored", "scored", "invalid"],
            "feasible": [True, False, True, True, False, False],
            "score": [0.5, 9.0, 0.2, 0.7, 5.0, np.nan],
        }
    )
    curves = progress_curves(table, "score")
    assert curves["call"].tolist() == [1, 2, 3]
    # the infeasible supplied 9.0 and the infeasible scored 5.0 never count
    assert curves["best"].tolist() == [0.5, 0.7, 0.7]
    assert curves["top10_mean"].tolist() == pytest.approx([0.35, 0.4666667, 0.4666667])


def test_progress_figure_names_each_panel_by_its_objective() -> None:
    from molvae.optimization.objectives import parse_objectives
    from molvae.optimization.report import progress_figure

    table = pd.DataFrame(
        {
            "call": [1, 2, 3],
            "status": ["scored"] * 3,
            "feasible": [True, True, True],
            "score_esol": [-3.0, -1.0, -2.0],
            "score_qed": [0.5, 0.6, 0.9],
        }
    )
    objectives = parse_objectives(["esol", "qed"])
    labels = [o.description for o in objectives]
    fig = progress_figure(table, ["score_esol", "score_qed"], baselines={"prior": table.iloc[:2]}, labels=labels)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == [
        "ESOL aqueous solubility logS\n(higher = more soluble)",
        "quantitative estimate of\ndrug-likeness (0-1)",
    ]
    # this run's best-so-far line, then the baseline's; the legend names the runs, not the axis
    assert axes[0].get_lines()[0].get_ydata().tolist() == [-3.0, -1.0, -1.0]
    assert axes[0].get_lines()[2].get_ydata().tolist() == [-3.0, -1.0]
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == [
        "this run: best",
        "this run: top-10 mean",
        "prior: best",
        "prior: top-10 mean",
    ]
    assert progress_figure(table, ["score_esol"]).get_axes()[0].get_ylabel() == "score_esol"
    with pytest.raises(ValueError, match="1 labels for 2 score columns"):
        progress_figure(table, ["score_esol", "score_qed"], labels=["x"])


def test_a_flat_gp_fit_silences_only_the_warning_it_explains() -> None:
    """Constant scores (every molecule infeasible so far) make BoTorch say the outcomes are not standardized;
    that one is expected and filtered, by category and message, inside fit_gp only."""
    import warnings

    from botorch.exceptions.warnings import InputDataWarning

    X = torch.rand(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bounds = torch.stack([torch.zeros(3), torch.ones(3)]).double()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_gp(X, torch.ones(12, 1, dtype=torch.float64), bounds)
        warnings.warn("a numerical warning of the user's own", RuntimeWarning, stacklevel=1)
    assert not [w for w in caught if issubclass(w.category, InputDataWarning)]
    assert any("of the user's own" in str(w.message) for w in caught)
