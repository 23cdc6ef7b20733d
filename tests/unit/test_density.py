"""Density-guarded acquisition: differentiable prior densities, the floor, and proposals kept above it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from botorch.models import ModelListGP

from molvae.errors import ConfigError
from molvae.model import MolVAE
from molvae.optimization import OptimizeConfig, Optimizer, fit_gp, propose_latents
from molvae.optimization.density import LatentDensity, data_density
from molvae.priors import FlowConfig, FlowPrior, GaussianMixturePrior, MixtureConfig, StandardNormal

D = 3
BOUNDS = torch.stack([torch.full((D,), -3.0), torch.full((D,), 3.0)]).double()


@pytest.fixture(scope="module")
def gmm() -> GaussianMixturePrior:
    rng = np.random.default_rng(0)
    codes = np.array([[-2.0, 0.5], [2.0, -0.5]])[rng.integers(0, 2, 2000)] + 0.4 * rng.standard_normal((2000, 2))
    return GaussianMixturePrior.fit(codes, dim=5, active=np.array([1, 3]), config=MixtureConfig(components=2))


@pytest.mark.parametrize("kind", ["standard", "gmm"])
def test_tensor_log_prob_is_the_log_prob_and_keeps_batch_shape(kind, gmm) -> None:
    prior = StandardNormal(5) if kind == "standard" else gmm
    z = np.random.default_rng(1).normal(size=(24, 5)) * 2
    tensor = prior.log_prob_tensor(torch.from_numpy(z).reshape(4, 6, 5))
    assert tensor.shape == (4, 6) and tensor.dtype == torch.float64
    np.testing.assert_allclose(tensor.reshape(-1).numpy(), prior.log_prob(z), rtol=1e-12)


def test_mixture_log_prob_has_exact_gradients(gmm) -> None:
    z = torch.from_numpy(np.random.default_rng(2).normal(size=(6, 5))).requires_grad_(True)
    assert torch.autograd.gradcheck(gmm.log_prob_tensor, (z,))


def test_flow_prior_refuses_a_gradient_in_one_line() -> None:
    codes = np.random.default_rng(0).normal(size=(256, 2))
    flow = FlowPrior.fit(codes, dim=3, active=np.array([0, 2]), config=FlowConfig(hidden=8, layers=1, steps=5))
    assert not flow.differentiable
    with pytest.raises(ConfigError, match="flow.*too costly to differentiate") as err:
        flow.log_prob_tensor(torch.zeros(2, 3))
    assert "\n" not in str(err.value)


def test_latent_density_is_how_far_the_full_code_falls_below_the_floor(gmm) -> None:
    base = torch.tensor([0.3, -1.0, 0.7, 2.0, -0.2], dtype=torch.float64)
    columns = torch.tensor([1, 3])
    X = torch.from_numpy(np.random.default_rng(3).normal(size=(40, 2)) * 2)
    full = base.expand(40, -1).clone()
    full[:, columns] = X
    log_p = gmm.log_prob(full.numpy())
    floor = float(np.median(log_p))
    penalty = LatentDensity(gmm, base, floor, columns)(X).numpy()
    np.testing.assert_allclose(penalty, -np.log1p(np.exp(floor - log_p)))  # a smooth min(0, log p - floor)
    far = np.abs(log_p - floor) > 5
    np.testing.assert_allclose(penalty[far], np.minimum(0.0, log_p - floor)[far], atol=0.01)
    # the held columns are the base's, not the search point's
    moved = LatentDensity(gmm, base * 0, floor, columns)(X)
    assert not torch.allclose(LatentDensity(gmm, base, floor, columns)(X), moved)


def test_data_density_floor_is_the_quantile_of_the_held_codes(gmm) -> None:
    X = torch.from_numpy(np.random.default_rng(4).normal(size=(50, 5)))
    active = torch.tensor([False, True, False, True, True])
    density = data_density(gmm, X, 0.25, active)
    held = X.mean(0).expand(50, -1).clone()
    held[:, active] = X[:, active]
    assert density.floor == pytest.approx(np.quantile(gmm.log_prob(held.numpy()), 0.25))
    assert (density(X[:, active]) < -np.log(2)).float().mean() == pytest.approx(0.24, abs=0.03)  # a quarter below it
    assert data_density(gmm, X, 0.25).floor == pytest.approx(np.quantile(gmm.log_prob(X.numpy()), 0.25))


def _rising_along_x0() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    X = torch.rand(30, D, dtype=torch.float64) * 6 - 3
    return X, X[:, :1] + 0.2 * X[:, 1:2]


@pytest.mark.parametrize("q", [1, 3])
def test_density_weight_pulls_logei_proposals_toward_the_codes(q) -> None:
    # The score rises along x0 to the box's edge; under N(0, I) the box's corners are far below
    # the floor (the 10% quantile of the density of the 30 scored codes, uniform in the box).
    X, Y = _rising_along_x0()
    gp = fit_gp(X, Y, BOUNDS)
    density = data_density(StandardNormal(D), X, 0.1)

    def propose(weight: float) -> torch.Tensor:
        config = OptimizeConfig(objectives=["qed"], num_restarts=4, raw_samples=64, density_weight=weight)
        torch.manual_seed(5)  # the restarts' random starts
        return propose_latents(gp, X, Y, BOUNDS, q, config, density=density)

    free, weighted = propose(0.0), propose(1.0)
    assert free[:, 0].max() > 2.8  # the edge of the box
    assert weighted.norm(dim=-1).max() < free.norm(dim=-1).max() - 1.0
    assert weighted[:, 0].max() > 0.5  # still toward the better side
    # the weight scales the penalty: 0 gives exactly the unguarded proposal
    torch.testing.assert_close(propose(0.0), free)


def test_density_weight_pulls_pareto_proposals_toward_the_codes() -> None:
    X, _ = _rising_along_x0()
    Y = X[:, :2].clone()
    gp = ModelListGP(*[fit_gp(X, Y[:, i : i + 1], BOUNDS) for i in range(2)])
    density = data_density(StandardNormal(D), X, 0.1)
    norms = []
    for weight in (0.0, 2.0):
        config = OptimizeConfig(objectives=["qed", "esol"], num_restarts=4, raw_samples=64, density_weight=weight)
        z = propose_latents(gp, X, Y, BOUNDS, 4, config, ref_point=Y.min(0).values - 0.5, density=density)
        assert len({tuple(row.tolist()) for row in z}) == 4  # one at a time, each aware of the ones before
        norms.append(z.norm(dim=-1).mean())
    assert norms[1] < norms[0] - 1.0


@pytest.mark.parametrize("acquisition", ["ucb", "ts"])
def test_density_weight_needs_a_log_acquisition(acquisition) -> None:
    with pytest.raises(ConfigError, match=f"log-valued acquisition \\(logei\\), not {acquisition}"):
        OptimizeConfig(objectives=["qed"], acquisition=acquisition, density_weight=1.0).validate()
    OptimizeConfig(objectives=["qed", "esol"], acquisition=acquisition, density_weight=1.0).validate()  # qLogNEHVI
    with pytest.raises(ConfigError, match="density_weight"):
        OptimizeConfig(objectives=["qed"], density_weight=-1.0).validate()


def test_a_run_refuses_density_weight_with_a_flow_prior(tmp_path) -> None:
    model = MolVAE.load("zinc-smiles", device="cpu")
    config = OptimizeConfig(objectives=["qed"], method="bo", prior="flow", density_weight=1.0)
    with pytest.raises(ConfigError, match="'flow'.*--prior gmm or standard"):
        Optimizer(model, config, tmp_path / "run", progress=False)


@pytest.mark.slow
def test_a_weighted_run_proposes_denser_codes_and_records_the_weight(small_model_dir, tmp_path) -> None:
    from tests.unit.test_optimization import FAST, _half_collapsed

    model = _half_collapsed(small_model_dir)
    norms = {}
    for weight in (0.0, 1000.0):
        cfg = OptimizeConfig(objectives=["qed"], method="bo", budget=12, seed=0, density_weight=weight, **FAST)
        opt = Optimizer(model, cfg, tmp_path / f"w{weight}", progress=False)
        opt.initial_design()
        X, _ = opt.training_data()
        torch.manual_seed(0)
        z = opt._propose(4, {})
        held = ~opt.active
        torch.testing.assert_close(z[:, held], X[:, held].mean(0).expand(4, -1))  # the weight moves only the searched
        norms[weight] = z[:, opt.active].norm(dim=-1)
        floor = data_density(opt.prior, opt._gp_data().X, cfg.density_quantile, opt.active).floor
        opt.run()
        assert json.loads((tmp_path / f"w{weight}" / "config.json").read_text())["optimize"]["density_weight"] == weight
    # so heavy a weight keeps every candidate above the floor (the small model's prior is N(0, I))
    assert norms[1000.0].max() < norms[0.0].max()
    assert (opt.prior.log_prob(z) >= floor - 0.5).all()
