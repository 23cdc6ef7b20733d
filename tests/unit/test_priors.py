"""Latent priors: fitting, keyed draws, log densities, storage and its refusals."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from molvae.checkpoint import save_weights
from molvae.errors import ConfigError, ModelLoadError
from molvae.latent import lerp, slerp, t_grid
from molvae.priors import (
    FlowConfig,
    FlowPrior,
    GaussianMixturePrior,
    MixtureConfig,
    StandardNormal,
    load_prior,
    prior_names,
    read_prior,
    save_prior,
)
from molvae.priors.fit import fit_prior
from molvae.seeding import PRIOR_BLOCK, prior_latents
from tests.conftest import moses_smiles


def _two_clusters(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, 0.5], [2.0, -0.5]])
    return centres[rng.integers(0, 2, n)] + 0.4 * rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def gmm() -> GaussianMixturePrior:
    return GaussianMixturePrior.fit(_two_clusters(), dim=5, active=np.array([1, 3]), config=MixtureConfig(components=2))


@pytest.fixture(scope="module")
def flow() -> FlowPrior:
    config = FlowConfig(hidden=64, layers=2, steps=1500, batch_size=256, lr=3e-3, ode_steps=16)
    return FlowPrior.fit(_two_clusters(), dim=4, active=np.array([0, 2]), config=config)


@pytest.fixture
def model_copy(small_model_dir, tmp_path):
    """A writable copy of the small trained model (priors are written into the model directory)."""
    from molvae.model import MolVAE

    shutil.copytree(small_model_dir, tmp_path / "model")
    return MolVAE.load(tmp_path / "model", device="cpu")


def test_standard_prior_draws_what_prior_latents_draws() -> None:
    assert np.array_equal(StandardNormal(7).sample(2500, seed=3, start=10), prior_latents(2500, 7, 3, start=10))
    z = np.random.default_rng(0).standard_normal((4, 7))
    assert np.allclose(StandardNormal(7).log_prob(z), multivariate_normal(np.zeros(7)).logpdf(z))


@pytest.mark.parametrize("which", ["gmm", "flow"])
def test_learned_draws_are_the_same_rows_whatever_is_asked_for(which, request) -> None:
    prior = request.getfixturevalue(which)
    whole = prior.sample(2 * PRIOR_BLOCK + 30, seed=4)
    assert np.array_equal(prior.sample(7, seed=4), whole[:7])
    assert np.array_equal(
        prior.sample(PRIOR_BLOCK + 5, seed=4, start=PRIOR_BLOCK - 2), whole[PRIOR_BLOCK - 2 : 2 * PRIOR_BLOCK + 3]
    )
    assert not np.array_equal(prior.sample(7, seed=5), whole[:7])
    # the unmodelled dimensions are the standard prior's very draws
    rest = np.setdiff1d(np.arange(prior.dim), prior.active)
    assert np.array_equal(whole[:, rest], prior_latents(len(whole), prior.dim, 4)[:, rest])


@pytest.mark.parametrize("which", ["gmm", "flow"])
def test_learned_draws_follow_the_codes(which, request) -> None:
    prior = request.getfixturevalue(which)
    draws = prior.sample(6000, seed=0)[:, prior.active]
    data = _two_clusters(6000, seed=1)
    assert np.allclose(draws.mean(0), data.mean(0), atol=0.15)
    assert np.allclose(np.cov(draws.T), np.cov(data.T), atol=0.3)
    # two clusters, nearly nothing in the gap between them (N(0, I) would put a quarter there)
    assert np.mean(np.abs(draws[:, 0]) < 0.5) < 0.05


def test_mixture_log_prob_is_the_mixture_density(gmm) -> None:
    z = prior_latents(50, 5, seed=1) * 2
    expected = np.log(
        sum(
            w * multivariate_normal(m, c @ c.T).pdf(z[:, gmm.active])
            for w, m, c in zip(gmm.weights, gmm.means, gmm.cholesky)
        )
    )
    rest = [0, 2, 4]
    expected += multivariate_normal(np.zeros(3)).logpdf(z[:, rest])
    assert np.allclose(gmm.log_prob(z), expected, rtol=1e-9)


def test_flow_log_prob_is_a_normalized_density(flow) -> None:
    # integrate exp(log p) of the modelled plane on a grid: a density integrates to one
    grid = np.linspace(-5, 5, 121)
    xx, yy = np.meshgrid(grid, grid)
    z = np.zeros((xx.size, 4))
    z[:, 0], z[:, 2] = xx.ravel(), yy.ravel()
    density = np.exp(flow.log_prob(z) - StandardNormal(2).log_prob(np.zeros((1, 2)))[0])
    mass = density.sum() * (grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.05)
    # and it is higher on a cluster than in the gap between them
    on, gap = np.zeros((1, 4)), np.zeros((1, 4))
    on[0, 0] = 2.0
    assert flow.log_prob(on)[0] > flow.log_prob(gap)[0] + 1.0


@pytest.mark.parametrize("which", ["gmm", "flow"])
def test_store_round_trip(which, request, tmp_path) -> None:
    prior = request.getfixturevalue(which)
    save_prior(prior, tmp_path, "mine", "abc", {"molecules": 4000}, make_default=True)
    back = read_prior(tmp_path, "mine", prior.dim, "abc")
    assert type(back) is type(prior) and back.name == "mine"
    assert np.array_equal(back.sample(1100, seed=9), prior.sample(1100, seed=9))
    z = prior.sample(20, seed=1)
    assert np.allclose(back.log_prob(z), prior.log_prob(z))
    assert json.loads((tmp_path / "priors" / "default.json").read_text()) == {"prior": "mine"}


def test_stored_pickle_and_bad_shapes_are_refused(gmm, tmp_path) -> None:
    save_prior(gmm, tmp_path, "mine", None, {})
    tensors = tmp_path / "priors" / "mine.safetensors"
    good = tensors.read_bytes()
    tensors.write_bytes(pickle.dumps({"means": np.zeros((2, 2))}))
    with pytest.raises(ModelLoadError, match="pickle"):
        read_prior(tmp_path, "mine", 5, None)
    save_weights(tensors, {k: (v[:1] if k == "means" else v) for k, v in gmm.tensors().items()})
    with pytest.raises(ModelLoadError, match="means has shape"):
        read_prior(tmp_path, "mine", 5, None)
    save_weights(tensors, {k: (v * np.nan if k == "means" else v) for k, v in gmm.tensors().items()})
    with pytest.raises(ModelLoadError, match="NaN"):
        read_prior(tmp_path, "mine", 5, None)
    tensors.write_bytes(good)
    with pytest.raises(ModelLoadError, match="over 5 latent dimensions, the model has 6"):
        read_prior(tmp_path, "mine", 6, None)
    meta = json.loads((tmp_path / "priors" / "mine.json").read_text())
    (tmp_path / "priors" / "mine.json").write_text(json.dumps({**meta, "kind": "unpickle"}))
    with pytest.raises(ModelLoadError, match="unknown prior kind 'unpickle'"):
        read_prior(tmp_path, "mine", 5, None)
    (tmp_path / "priors" / "mine.json").write_text(json.dumps({**meta, "active": [1, 9]}))
    with pytest.raises(ModelLoadError, match="distinct dimensions"):
        read_prior(tmp_path, "mine", 5, None)


def test_a_prior_of_other_weights_is_refused(gmm, tmp_path) -> None:
    save_prior(gmm, tmp_path, "mine", "fitted-to-these", {})
    with pytest.raises(ModelLoadError, match="other weights"):
        read_prior(tmp_path, "mine", 5, "other")


def test_a_stale_default_prior_falls_back_to_the_standard_one(model_copy, gmm, caplog) -> None:
    from molvae.priors import GaussianMixturePrior as Mixture

    codes = np.random.default_rng(0).standard_normal((200, 2))
    stale = Mixture.fit(codes, model_copy.config.latent_dim, np.array([0, 1]), MixtureConfig(components=2))
    save_prior(stale, model_copy.source, "old", "weights-before-more-training", {}, make_default=True)
    with pytest.raises(ModelLoadError, match="other weights than this model's; fit it again"):
        model_copy.prior("old")
    with caplog.at_level("WARNING"):
        assert load_prior(model_copy, "auto").name == "standard"
    assert "sampling from N(0, I) instead" in caplog.text


def test_fit_sample_with_a_model_is_batch_and_n_invariant(model_copy) -> None:
    prior, info = fit_prior(model_copy, moses_smiles(600), "gmm", MixtureConfig(components=3))
    assert info["molecules"] == 600 and info["active_dimensions"] == len(prior.active) > 0
    save_prior(prior, model_copy.source, "gmm", model_copy.weights_sha256(), info)
    assert prior_names(model_copy) == ["standard", "gmm"]
    loaded = model_copy.prior("gmm")
    whole = model_copy.sample(300, seed=2, batch_size=128, prior=loaded)
    assert model_copy.sample(40, seed=2, batch_size=7, prior="gmm") == whole[:40]
    assert whole != model_copy.sample(300, seed=2, batch_size=128, prior="standard")
    # without a default the model samples from N(0, I); --default makes the learned one "auto"
    assert load_prior(model_copy, "auto").name == "standard"
    save_prior(prior, model_copy.source, "gmm", model_copy.weights_sha256(), info, make_default=True)
    assert load_prior(model_copy, "auto").name == "gmm"


def test_unknown_prior_names_what_is_stored(model_copy) -> None:
    with pytest.raises(ModelLoadError, match=r"no prior named 'flow'.*stored: none"):
        model_copy.prior("flow")
    with pytest.raises(ConfigError, match="over 3 dimensions"):
        model_copy.prior(StandardNormal(3))


def test_configs_are_validated() -> None:
    with pytest.raises(ConfigError):
        FlowConfig(steps=0).validate()
    with pytest.raises(ConfigError):
        MixtureConfig(components=0).validate()
    with pytest.raises(ConfigError, match="at least 20"):
        GaussianMixturePrior.fit(np.zeros((10, 2)), 4, np.array([0, 1]), MixtureConfig(components=10))


def test_flow_draws_do_not_depend_on_threads(flow) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = flow.sample(PRIOR_BLOCK, seed=0)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, flow.sample(PRIOR_BLOCK, seed=0))


def test_optimizer_prior_rounds_draw_from_the_named_prior(model_copy, tmp_path) -> None:
    import json as json_

    from molvae.optimization import OptimizeConfig, Optimizer

    prior, info = fit_prior(model_copy, moses_smiles(600), "gmm", MixtureConfig(components=3))
    save_prior(prior, model_copy.source, "gmm", model_copy.weights_sha256(), info, make_default=True)
    drawn = []
    decode_valid = model_copy.decode_valid

    def spy(z, **kwargs):
        drawn.append(np.asarray(z))
        return decode_valid(z, **kwargs)

    model_copy.decode_valid = spy
    cfg = OptimizeConfig(objectives=["qed"], budget=4, batch=4, method="prior", n_init=0, max_rounds=1, seed=3)
    opt = Optimizer(model_copy, cfg, tmp_path / "run", progress=False).run()
    saved = json_.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["optimize"]["prior"] == "auto" and saved["prior"] == "gmm"  # resolved when the run started
    from molvae.optimization.proposers import round_seed

    assert np.array_equal(drawn[0], prior.sample(4, seed=round_seed(3, 1)))
    assert opt.prior.name == "gmm"
    # a resumed run keeps the prior it started with, whatever the model's default is now
    save_prior(prior, model_copy.source, "other", model_copy.weights_sha256(), info, make_default=True)
    resumed = Optimizer(
        model_copy, dataclasses.replace(cfg, budget=8, max_rounds=2), tmp_path / "run", resume=True, progress=False
    )
    assert resumed.prior.name == "gmm"


@pytest.mark.parametrize("which,tolerance", [("gmm", 1e-9), ("flow", 0.05)])
def test_a_step_of_zero_in_the_charts_noise_stays_at_the_code(which, tolerance, request) -> None:
    prior = request.getfixturevalue(which)
    center = prior.sample(3, seed=8)[2].astype(np.float64)
    noise = np.random.default_rng(0).standard_normal((50, prior.dim))
    assert np.allclose(prior.around(center, np.zeros((1, prior.dim)), 1.0)[0], center, atol=tolerance)
    near, far = prior.around(center, noise, 0.1), prior.around(center, noise, 1.0)
    spread = [np.linalg.norm(z[:, prior.active] - center[prior.active], axis=1).mean() for z in (near, far)]
    assert spread[0] < spread[1] / 3
    rest = np.setdiff1d(np.arange(prior.dim), prior.active)
    assert np.allclose(far[:, rest], (center[rest] + noise[:, rest]).astype(np.float32))
    assert np.array_equal(
        StandardNormal(prior.dim).around(center, noise, 0.5), (center[None, :] + 0.5 * noise).astype(np.float32)
    )


def test_a_path_in_the_flows_noise_keeps_to_the_codes(flow) -> None:
    """Joined in the flow's noise, the path crosses the gap between the two clusters quickly instead of evenly."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(flow.dim), rng.standard_normal(flow.dim)
    a[flow.active], b[flow.active] = [-2.0, 0.5], [2.0, -0.5]  # the two cluster centres
    t = t_grid(15)
    straight, path = lerp(a, b, t), flow.path(a, b, t, lerp)
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    rest = np.setdiff1d(np.arange(flow.dim), flow.active)
    assert np.allclose(path[:, rest], straight[:, rest])
    in_gap = [int((np.abs(z[:, flow.active[0]]) < 1.0).sum()) for z in (straight, path)]
    assert in_gap[0] == 7 and in_gap[1] <= 3, in_gap
    assert flow.log_prob(path[1:-1]).mean() > flow.log_prob(straight[1:-1]).mean()
    assert np.array_equal(StandardNormal(flow.dim).path(a, b, t, slerp), slerp(a, b, t))


def test_a_mixture_has_no_single_map_to_draw_a_path_in(gmm) -> None:
    a, b = gmm.sample(2, seed=0).astype(np.float64)
    with pytest.raises(ConfigError, match="no single map from codes to noise"):
        gmm.path(a, b, t_grid(5), lerp)
