"""Latent-space exploration: lerp/slerp maths, interpolation and neighbourhood tables, pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from molvae import latent
from molvae.chemistry import canonicalize
from molvae.errors import ConfigError, UnknownTokenError
from tests.conftest import moses_smiles

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
vectors = arrays(np.float64, 8, elements=finite)


# --------------------------------------------------------------------------- maths


def test_t_grid() -> None:
    t = latent.t_grid(12)
    assert len(t) == 12 and t[0] == 0.0 and t[-1] == 1.0
    assert np.allclose(np.diff(t), 1 / 11)
    for bad in (1, 0, -3, 2.5, True):
        with pytest.raises(ConfigError):
            latent.t_grid(bad)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors)
def test_endpoints_exact(a, b) -> None:
    for fn in (latent.lerp, latent.slerp):
        out = fn(a, b, latent.t_grid(5))
        assert out.shape == (5, 8)
        assert np.array_equal(out[0], a) and np.array_equal(out[-1], b)
        assert np.array_equal(fn(a, b, 0.0), a) and np.array_equal(fn(a, b, 1.0), b)
        assert fn(a, b, 0.3).shape == (8,)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors, st.floats(0.1, 5))
def test_slerp_keeps_norm_of_equal_norm_endpoints(a, b, r) -> None:
    if np.linalg.norm(a) < 1e-3 or np.linalg.norm(b) < 1e-3:
        return
    a = a / np.linalg.norm(a) * r
    b = b / np.linalg.norm(b) * r
    norms = np.linalg.norm(latent.slerp(a, b, np.linspace(0, 1, 9)), axis=1)
    cos = np.dot(a, b) / r**2
    if cos > -0.999:  # anti-parallel falls back to lerp (no unique great circle)
        assert np.allclose(norms, r, rtol=1e-6)


def test_slerp_known_value_and_lerp_differs() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(latent.slerp(a, b, 0.5), [np.sqrt(0.5), np.sqrt(0.5)])
    assert np.allclose(latent.lerp(a, b, 0.5), [0.5, 0.5])
    assert np.allclose(latent.slerp(a, b, 1 / 3), [np.cos(np.pi / 6), np.sin(np.pi / 6)])


def test_slerp_parallel_and_zero_fall_back_to_lerp() -> None:
    a = np.array([1.0, 2.0, 3.0])
    t = np.linspace(0, 1, 7)
    for b in (2.5 * a, a * (1 + 1e-12), -a, np.zeros(3)):
        out = latent.slerp(a, b, t)
        assert np.all(np.isfinite(out))
        assert np.allclose(out, latent.lerp(a, b, t))


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        latent.lerp(np.zeros(3), np.zeros(4), 0.5)
    with pytest.raises(ValueError):
        latent.slerp(np.zeros((2, 3)), np.zeros((2, 3)), 0.5)


# --------------------------------------------------------------------------- with the trained fixture


@pytest.fixture(scope="module")
def endpoints(small_model) -> list[str]:
    """Molecules the fixture decodes back to themselves (greedy and with decode_valid).

    Training molecules first; the small fixture rarely reconstructs those, so its own
    reconstructions (which lie where the decoder is confident) are tried next.
    """
    train = moses_smiles(100)
    found = []
    rec = [canonicalize(r or "") for r in small_model.reconstruct(train)]
    candidates = [s for s, r in zip(train, rec) if r == s]
    candidates += sorted({r for r in rec if r} - set(candidates))
    rec2 = [canonicalize(r or "") for r in small_model.reconstruct(candidates)]
    fixed = [c for c, r in zip(candidates, rec2) if c == r]
    if fixed:
        again = small_model.decode_valid(small_model.encode(fixed), attempts=10, temperature=0.5, seed=0)
        found = [c for c, d in zip(fixed, again) if c == d]
    if len(found) < 2:
        pytest.skip(f"the fixture model reconstructs only {len(found)} of the candidate molecules exactly")
    # two endpoints that are different enough to give a path with some change along it
    from molvae.chemistry import tanimoto_similarity

    sims = tanimoto_similarity(found[0], found)
    return [found[0], found[int(np.argmin(sims))]]


@pytest.mark.slow
def test_interpolation_endpoints_and_columns(small_model, endpoints) -> None:
    start, end = endpoints
    for method in ("linear", "slerp"):
        df = latent.interpolate(small_model, start, end, steps=7, method=method, attempts=10)
        assert list(df.columns) == [
            "step",
            "t",
            "smiles",
            "valid",
            "tanimoto_start",
            "tanimoto_end",
            "logp",
            "qed",
            "sa",
            "esol",
            "mw",
            "duplicate_of_previous",
        ]
        assert df["step"].tolist() == list(range(7))
        assert np.allclose(df["t"], np.linspace(0, 1, 7))
        assert df["smiles"].iloc[0] == start and df["smiles"].iloc[-1] == end
        assert df["tanimoto_start"].iloc[0] == pytest.approx(1.0)
        assert df["tanimoto_end"].iloc[-1] == pytest.approx(1.0)
        assert df.attrs["method"] == method
        valid = df[df["valid"]]
        assert all(canonicalize(s) == s for s in valid["smiles"])
        assert valid[["qed", "mw", "tanimoto_start"]].notna().all().all()


def _check_table(df: pd.DataFrame) -> None:
    assert (df["valid"] == (df["smiles"] != "")).all()
    invalid = df[~df["valid"]]
    assert invalid[["tanimoto_start", "tanimoto_end", "qed", "mw"]].isna().all().all()
    assert not invalid["duplicate_of_previous"].any()
    previous = None
    for s, valid, dup in zip(df["smiles"], df["valid"], df["duplicate_of_previous"]):
        if valid:
            assert dup == (s == previous)
            previous = s


@pytest.mark.slow
def test_invalid_steps_reported_and_duplicates_flagged(small_model) -> None:
    # A path from a real molecule to a point far outside the prior, decoded once per
    # point, ends in steps that stay invalid: they must be in the table, not dropped.
    start = "CC(=O)Nc1ccc(NC(=O)c2ccccc2)cc1"
    z0 = small_model.encode([start])[0]
    far = np.random.default_rng(0).standard_normal(z0.shape[0])
    far *= 40 / np.linalg.norm(far)
    df = latent.decode_path(small_model, z0, far, steps=10, attempts=1, start_smiles=start)
    assert len(df) == 10
    assert (~df["valid"]).sum() >= 1, df
    _check_table(df)
    # the path stays put for a while near the start: consecutive repeats are flagged
    near = latent.decode_path(small_model, z0, z0 + 0.05, steps=5, attempts=1)
    _check_table(near)
    assert near["valid"].all() and near["duplicate_of_previous"].iloc[1:].all()
    assert not near["duplicate_of_previous"].iloc[0]


@pytest.mark.slow
def test_seeded_runs_reproducible_and_unique_refinement(small_model, endpoints) -> None:
    start, end = endpoints
    a = latent.interpolate(small_model, start, end, steps=5, attempts=4, temperature=1.0, seed=3)
    b = latent.interpolate(small_model, start, end, steps=5, attempts=4, temperature=1.0, seed=3)
    pd.testing.assert_frame_equal(a, b)
    _check_table(a)

    # Asking for more molecules than max_points allows: stops at the largest grid, says so.
    big = latent.interpolate(small_model, start, end, steps=5, attempts=1, unique=1000, max_points=20)
    assert len(big) == 17  # 5 -> 9 -> 17 (33 would exceed 20)
    assert big.attrs["unique_reached"] is False
    assert big.attrs["unique_found"] == big.loc[big["valid"], "smiles"].nunique()
    _check_table(big)
    # Two distinct molecules exist already on the coarse grid: no refinement.
    small = latent.interpolate(small_model, start, end, steps=5, attempts=1, unique=2, max_points=20)
    assert len(small) == 5 and small.attrs["unique_reached"] is True


@pytest.mark.slow
def test_bad_inputs_raise(small_model) -> None:
    from molvae.drugs import UnknownDrugError
    from molvae.errors import InvalidMoleculeError

    with pytest.raises(UnknownTokenError, match=r"\[Se\]"):
        latent.interpolate(small_model, "C[Se]C", "CCO")
    with pytest.raises(UnknownDrugError, match="aspirin"):
        latent.neighbourhood(small_model, "asprin")
    with pytest.raises(InvalidMoleculeError):
        latent.interpolate(small_model, "CCO", "C1CC(")
    with pytest.raises(ConfigError):
        latent.interpolate(small_model, "CCO", "CCN", method="cubic")
    with pytest.raises(ConfigError):
        latent.neighbourhood(small_model, "CCO", radius=-1)


@pytest.mark.slow
def test_neighbourhood(small_model, endpoints) -> None:
    query = endpoints[0]
    df = latent.neighbourhood(small_model, query, n=60, radius=0.5, seed=1)
    assert len(df) >= 1
    assert df["smiles"].is_unique
    assert all(canonicalize(s) == s for s in df["smiles"])
    assert (np.diff(df["tanimoto"].to_numpy()) <= 0).all()
    assert df["count"].sum() == df.attrs["n_valid_draws"] <= 60
    assert df["novel"].isna().all()  # no training set given
    assert df["is_query"].sum() <= 1 and (df["is_query"] == (df["smiles"] == query)).all()
    assert {"qed", "logp", "mw", "sa", "esol"} <= set(df.columns)

    # radius 0: every draw is the posterior mean, which the fixture decodes to the query
    zero = latent.neighbourhood(small_model, query, n=5, radius=0.0)
    assert zero["smiles"].tolist() == [query] and zero["count"].tolist() == [5]

    again = latent.neighbourhood(small_model, query, n=60, radius=0.5, seed=1)
    pd.testing.assert_frame_equal(df, again)

    train = set(df["smiles"].iloc[::2])
    flagged = latent.neighbourhood(small_model, query, n=60, radius=0.5, seed=1, train=train)
    assert flagged["novel"].tolist() == [s not in train for s in flagged["smiles"]]
    assert (~flagged["novel"]).sum() == len(train)


@pytest.mark.slow
def test_pictures(small_model, endpoints, tmp_path) -> None:
    from PIL import Image

    from molvae.visualize import draw_neighbour_grid, draw_path_grid, plot_path_profile

    start = endpoints[0]
    z0 = small_model.encode([start])[0]
    far = np.random.default_rng(0).standard_normal(z0.shape[0]) * 10
    df = latent.decode_path(small_model, z0, far, steps=8, attempts=1, start_smiles=start)
    for name in ("path.png", "path.svg"):
        out = draw_path_grid(df, tmp_path / name, property="qed")
        assert out.stat().st_size > 1000
    assert "<svg" in (tmp_path / "path.svg").read_text()
    with Image.open(tmp_path / "path.png") as img:
        assert img.size == (6 * 260, 2 * 230)  # 8 cells, 6 per row, invalid ones included
    plot_path_profile(df, tmp_path / "profile.png", property="qed")
    with Image.open(tmp_path / "profile.png") as img:
        assert img.format == "PNG" and img.size[0] > 500
    nb = latent.neighbourhood(small_model, start, n=30, radius=0.5)
    draw_neighbour_grid(nb, start, tmp_path / "nb.png", top=4)
    assert (tmp_path / "nb.png").stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_path_profile(df, tmp_path / "profile.svg")


# --------------------------------------------------------------------------- fitted endpoints (bundled model)
# The small fixture inverts too few molecules to test on; the bundled model is real,
# ships with the package, and maps these drugs to relatives (aspirin -> an ester).

FIT_DRUGS = ("aspirin", "lidocaine", "fluoxetine")


@pytest.fixture(scope="module")
def bundled():
    from molvae.model import MolVAE

    return MolVAE.pretrained("zinc-smiles", device="cpu")


def _drug_smiles(name: str) -> str:
    from molvae.drugs import resolve_molecule

    return canonicalize(resolve_molecule(name)[1], isomeric=False)


@pytest.mark.slow
def test_fit_latents_decode_back_drugs_the_encoder_misses(bundled) -> None:
    import torch

    smiles = [_drug_smiles(n) for n in FIT_DRUGS]
    mean = bundled.encode(smiles)
    mean_decodes = [canonicalize(s) for s in bundled.decode(mean)]
    assert mean_decodes != smiles  # otherwise this test checks nothing
    before = {k: v.clone() for k, v in bundled.net.state_dict().items()}

    z, info = bundled.fit_latents(smiles, max_steps=300)

    assert z.shape == (3, bundled.config.latent_dim) and z.dtype == np.float32
    assert [canonicalize(s) for s in bundled.decode(z)] == smiles  # checked independently of `info`
    for s, m, row, zi, mi in zip(smiles, mean_decodes, info, z, mean):
        assert row["reconstructed"] is True
        assert (row["steps"] > 0) == (m != s)
        assert row["distance"] == pytest.approx(float(np.linalg.norm(zi - mi)), rel=1e-4, abs=1e-6)
        assert np.isfinite(row["nll"]) and row["nll"] >= 0
    # only z moved: the weights and their gradients are untouched
    after = bundled.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in bundled.net.parameters())


@pytest.mark.slow
def test_fit_latents_keeps_the_mean_when_it_already_decodes_back(bundled) -> None:
    test = moses_smiles(30, split="test")
    hits = [s for s, r in zip(test, bundled.reconstruct(test)) if canonicalize(r or "") == s][:2]
    assert hits, "the bundled model reconstructs none of 30 MOSES test molecules"
    z, info = bundled.fit_latents(hits)
    np.testing.assert_array_equal(z, bundled.encode(hits))
    assert all(row["steps"] == 0 and row["distance"] == 0 and row["reconstructed"] for row in info)


@pytest.mark.slow
def test_fit_latents_reports_a_molecule_it_cannot_reach(small_model) -> None:
    # Three optimizer steps from the mean cannot reach a molecule the fixture misses:
    # the code comes back flagged, not dropped.
    train = moses_smiles(20)
    miss = next(s for s, r in zip(train, small_model.reconstruct(train)) if canonicalize(r or "") != s)
    z, info = small_model.fit_latents([miss], max_steps=3, check_every=1)
    assert info[0]["reconstructed"] is False and info[0]["steps"] == 3
    assert canonicalize(small_model.decode(z)[0] or "") != miss
    assert info[0]["distance"] > 0


def test_fit_latents_bad_arguments(small_model) -> None:
    with pytest.raises(TypeError):
        small_model.fit_latents("CCO")
    for kwargs in ({"max_steps": 0}, {"check_every": 0}, {"lr": -1.0}, {"lr": float("nan")}):
        with pytest.raises(ConfigError):
            small_model.fit_latents(["CCO"], **kwargs)
    with pytest.raises(UnknownTokenError, match=r"\[Se\]"):
        small_model.fit_latents(["C[Se]C"])
    with pytest.raises(ConfigError, match="endpoints"):
        latent.interpolate(small_model, "CCO", "CCN", endpoints="nearest")
    z, info = small_model.fit_latents([])
    assert z.shape == (0, small_model.config.latent_dim) and info == []


@pytest.mark.slow
def test_interpolation_with_fitted_endpoints_starts_and_ends_at_the_drugs(bundled) -> None:
    start, end = _drug_smiles("aspirin"), _drug_smiles("lidocaine")
    mean = latent.interpolate(bundled, "aspirin", "lidocaine", steps=5, attempts=3)
    assert mean["smiles"].iloc[0] != start  # the encoder alone misses aspirin
    assert mean.attrs["endpoints"] == "mean" and mean.attrs["start_fit"] is None

    fit = latent.interpolate(bundled, "aspirin", "lidocaine", steps=5, attempts=3, endpoints="fit")
    assert fit["smiles"].iloc[0] == start and fit["smiles"].iloc[-1] == end
    assert fit["tanimoto_start"].iloc[0] == pytest.approx(1.0) and fit["tanimoto_end"].iloc[-1] == pytest.approx(1.0)
    assert fit.attrs["endpoints"] == "fit"
    assert fit.attrs["start_fit"]["reconstructed"] and fit.attrs["start_fit"]["steps"] > 0
    _check_table(fit)


def test_a_long_path_is_decoded_in_chunks_with_the_same_molecules(small_model, monkeypatch) -> None:
    """`interpolate --steps 10000` shows progress chunk by chunk; each point keeps the draws of its place."""
    rng = np.random.default_rng(4)
    z0, z1 = rng.standard_normal((2, small_model.config.latent_dim))
    whole = latent.decode_path(small_model, z0, z1, steps=11, attempts=3, temperature=1.0, seed=5)
    monkeypatch.setattr(latent, "PATH_CHUNK", 4)
    chunked = latent.decode_path(small_model, z0, z1, steps=11, attempts=3, temperature=1.0, seed=5)
    assert chunked["smiles"].tolist() == whole["smiles"].tolist()
