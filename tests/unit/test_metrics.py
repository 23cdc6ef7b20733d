"""MOSES metrics on small slices of real MOSES data: hand-checkable cases."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from rdkit import DataStructs

from molvae import chemistry, metrics
from molvae.data import default_cache_dir
from molvae.metrics import similarity
from tests.conftest import moses_smiles

GARBAGE = [f"C1CC(=O{i}" for i in range(30)]  # unclosed ring/branch: never valid


@pytest.fixture(scope="module")
def ref300() -> list[str]:
    return moses_smiles(200, "test")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    # Module-scoped fixtures run before conftest's function-scoped cache isolation:
    # point MOLVAE_CACHE at the same session directory ourselves.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOLVAE_CACHE", str(tmp_path_factory.getbasetemp() / "molvae-cache"))
        yield


@pytest.fixture(scope="module")
def identical_results(ref300, module_cache):
    # Generated == reference: every similarity is exact 1, distances 0.
    return metrics.evaluate(ref300, reference=ref300, train=None, n_jobs=1)


def test_identical_sets_give_perfect_similarity(identical_results):
    r = identical_results
    assert r["valid"] == 1.0
    assert r["SNN/Test"] == pytest.approx(1.0, abs=1e-12)
    assert r["Frag/Test"] == pytest.approx(1.0, abs=1e-12)
    assert r["Scaf/Test"] == pytest.approx(1.0, abs=1e-12)
    assert abs(r["FCD/Test"]) < 1e-3
    for key in ("logP_W", "SA_W", "QED_W", "MW_W"):
        assert r[key] == pytest.approx(0.0, abs=1e-12)
    assert "Novelty" not in r  # train=None skips it


def test_different_sets_are_not_perfect(ref300, identical_results):
    gen = moses_smiles(100, "test", offset=5000)
    r = metrics.evaluate(gen, reference=ref300, train=None, n_jobs=1)
    assert 0.3 < r["SNN/Test"] < 0.9
    assert r["FCD/Test"] > 0.1
    assert r["MW_W"] > 0.0


def test_validity_with_30_percent_garbage(ref300):
    gen = moses_smiles(70, "test", offset=1000) + GARBAGE
    r = metrics.evaluate(gen, reference=ref300, train=ref300[:50], n_jobs=1)
    assert r["valid"] == 0.70
    for key in ("FCD/Test", "SNN/Test", "Frag/Test", "IntDiv", "IntDiv2", "Filters", "Novelty", "QED_W"):
        assert math.isfinite(r[key]), key
    assert r["unique@1000"] == 1.0  # computed over the 70 valid ones


def test_unique_at_k_counts_first_k_valid():
    a, b, c = "CCO", "c1ccccc1", "CC(=O)O"
    # canonical forms; "OCC" is a duplicate of "CCO" after canonicalization
    gen = [a, "xx", "OCC", b, "yy", a, c, c]
    canonical = [s for s in chemistry.canonicalize_many(gen, n_jobs=1) if s is not None]
    assert len(canonical) == 6
    assert metrics.fraction_unique(canonical, 3) == pytest.approx(2 / 3)  # CCO, CCO, benzene
    assert metrics.fraction_unique(canonical, 6) == pytest.approx(3 / 6)
    assert metrics.fraction_unique(canonical, 1000) == pytest.approx(3 / 6)  # fewer than k: all valid


def test_unique_at_k_in_evaluate():
    ref = moses_smiles(50, "test")
    gen = ref[:10] * 3 + ["not a smiles"]
    r = metrics.evaluate(gen, reference=ref, train=None, k=(10, 20), n_jobs=1)
    assert r["unique@10"] == 1.0
    assert r["unique@20"] == 0.5


def test_novelty_subset_and_disjoint():
    train = moses_smiles(200, "train")
    inside = train[:50]
    disjoint = moses_smiles(50, "test")
    ref = moses_smiles(50, "test", offset=100)
    assert metrics.evaluate(inside, reference=ref, train=train, n_jobs=1)["Novelty"] == 0.0
    assert metrics.evaluate(disjoint, reference=ref, train=train, n_jobs=1)["Novelty"] == 1.0
    # non-canonical spelling of a training molecule is not novel
    assert metrics.novelty([chemistry.canonicalize("OCC")], {chemistry.canonicalize("CCO")}) == 0.0


def test_internal_diversity_formula():
    same = similarity.pack_fps([chemistry.to_mol("CCOc1ccccc1")] * 5)
    assert metrics.internal_diversity(same) == pytest.approx(0.0, abs=1e-12)
    assert metrics.internal_diversity(same, p=2) == pytest.approx(0.0, abs=1e-12)
    # two distinct molecules: MOSES includes the diagonal -> 1 - (2*1 + 2*t)/4
    mols = [chemistry.to_mol(s) for s in ("CCOc1ccccc1", "CC(=O)Nc1ccc(O)cc1")]
    fps = similarity.pack_fps(mols)
    rd = chemistry.morgan_fingerprints(mols, radius=2, n_bits=1024)
    t = DataStructs.TanimotoSimilarity(rd[0], rd[1])
    assert 0 < t < 1
    assert metrics.internal_diversity(fps) == pytest.approx(1 - (2 + 2 * t) / 4, abs=1e-7)
    assert metrics.internal_diversity(fps, p=2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-7)


def test_bf16_tanimoto_equals_rdkit():
    a_smiles, b_smiles = moses_smiles(200, "test"), moses_smiles(300, "train")
    a_mols = [chemistry.to_mol(s) for s in a_smiles]
    b_mols = [chemistry.to_mol(s) for s in b_smiles]
    ours = metrics.tanimoto_bf16(similarity.pack_fps(a_mols), similarity.pack_fps(b_mols))
    a_rd = chemistry.morgan_fingerprints(a_mols, radius=2, n_bits=1024)
    b_rd = chemistry.morgan_fingerprints(b_mols, radius=2, n_bits=1024)
    expected = np.array([DataStructs.BulkTanimotoSimilarity(fp, b_rd) for fp in a_rd])
    assert ours.shape == (200, 300)
    # intersection counts are exact integers, so only the final fp32 division rounds
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert ours.max() < 1.0 and ours.min() >= 0.0


def test_snn_is_mean_of_row_max():
    gen = similarity.pack_fps([chemistry.to_mol(s) for s in moses_smiles(40, "test")])
    ref = similarity.pack_fps([chemistry.to_mol(s) for s in moses_smiles(60, "train")])
    full = metrics.tanimoto_bf16(gen, ref)
    assert metrics.snn(gen, ref) == pytest.approx(full.max(1).mean(), abs=1e-6)


def test_filters_charged_fails_clean_passes():
    charged = "C[N+](C)(C)CCc1ccccc1"
    clean = "CC(=O)Nc1ccc(O)cc1"  # paracetamol
    big_ring = "C1CCCCCCC1"  # 8-membered ring
    silicon = "C[Si](C)(C)c1ccccc1"
    out = metrics.filters_pass([charged, clean, big_ring, silicon, "not smiles"])
    assert out.tolist() == [False, True, False, False, False]


def test_wasserstein_identical_is_zero():
    x = chemistry.logp(moses_smiles(100, "test"))
    assert metrics._wasserstein(x, x.copy()) == 0.0
    assert metrics._wasserstein(x, x + 1.0) == pytest.approx(1.0)


def test_reference_stats_are_cached(ref300, identical_results):
    file = metrics.reference_cache_file(ref300)
    assert file.is_file() and file.parent == default_cache_dir()
    with np.load(file, allow_pickle=False) as z:  # loads without pickle
        assert json.loads(z["fragments"].tobytes().decode())
    before = metrics.COMPUTE_CALLS["reference"]
    gen = moses_smiles(30, "test", offset=2000)
    metrics.evaluate(gen, reference=ref300, train=None, n_jobs=1)
    assert metrics.COMPUTE_CALLS["reference"] == before  # read from cache
    other = ref300[:150]
    metrics.reference_stats(other, n_jobs=1)
    assert metrics.COMPUTE_CALLS["reference"] == before + 1  # a different list is a new key


def test_slow_first_computations_are_announced_and_cached_reads_are_quiet(tmp_path, caplog):
    mols = moses_smiles(40, "test", offset=3000)
    with caplog.at_level(logging.INFO, logger="molvae.metrics.references"):
        metrics.reference_stats(mols, n_jobs=1, cache_dir=tmp_path)
        metrics.train_set(mols, n_jobs=1, cache_dir=tmp_path)
    said = [r.getMessage() for r in caplog.records]
    assert any("reference set's statistics for the metrics (40 molecules" in m and str(tmp_path) in m for m in said), (
        said
    )
    assert any("training set for novelty (40 molecules" in m for m in said), said
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="molvae.metrics.references"):
        metrics.reference_stats(mols, n_jobs=1, cache_dir=tmp_path)
        metrics.train_set(mols, n_jobs=1, cache_dir=tmp_path)
    assert not caplog.records


def test_train_set_is_cached():
    train = moses_smiles(100, "train", offset=300)
    before = metrics.COMPUTE_CALLS["train"]
    first = metrics.train_set(train, n_jobs=1)
    second = metrics.train_set(train, n_jobs=1)
    assert metrics.COMPUTE_CALLS["train"] == before + 1
    assert first == second and len(first) == 100


def test_all_invalid_does_not_crash(ref300):
    r = metrics.evaluate(["xx", "", "C1CC"], reference=ref300, train=ref300[:10], n_jobs=1)
    assert r["valid"] == 0.0
    assert math.isnan(r["SNN/Test"]) and math.isnan(r["FCD/Test"]) and math.isnan(r["Novelty"])


def test_scaffold_split_names():
    # Only the key naming is checked; the scaffold test file itself is not loaded here.
    assert metrics._suffix("moses-test_scaffolds") == "TestSF"
    assert metrics._suffix("moses-test") == "Test"


def test_baselines_and_comparison():
    table = metrics.baselines()
    assert list(table["model"]) == ["MOSES VAE", "CharRNN", "JTN-VAE", "AAE"]
    assert table.loc[table["model"] == "MOSES VAE", "FCD/Test"].item() == 0.099
    assert "source" in table.columns
    text = metrics.format_comparison({"valid": 0.5, "FCD/Test": 1.234, "IntDiv2": 0.8}, name="mine")
    lines = text.splitlines()
    assert any(line.startswith("mine") and "0.500" in line and "1.234" in line for line in lines)
    assert any(line.startswith("CharRNN") for line in lines)
    assert "IntDiv2=0.800" in text


def test_shipped_moses_test_fcd_statistics_match_chemnet_on_a_sample() -> None:
    from molvae.metrics import chemnet_activations, fcd_resource_file, load_smiles_source

    smiles, _ = load_smiles_source("moses-test")
    file = fcd_resource_file(smiles)
    assert file.is_file(), "package ships ChemNet statistics for the MOSES test split"
    with np.load(file) as z:
        mu, sigma, n = z["fcd_mu"], z["fcd_sigma"], int(z["n"][0])
    assert n == len(smiles) and mu.shape == (512,) and sigma.shape == (512, 512)
    assert np.allclose(sigma, sigma.T) and np.all(np.diag(sigma) >= 0)
    rng = np.random.default_rng(0)
    sample = [smiles[i] for i in rng.choice(len(smiles), 400, replace=False)]
    act = chemnet_activations(sample)
    # 400 molecules estimate the mean closely in every one of the 512 dimensions
    assert np.corrcoef(act.mean(0), mu)[0, 1] > 0.99
    assert np.abs(act.mean(0) - mu).max() < 6 * np.sqrt(np.diag(sigma)).max() / np.sqrt(400)


def test_active_units_counts_dimensions_that_vary_across_molecules():
    rng = np.random.default_rng(0)
    z = np.zeros((500, 6))
    z[:, 0] = rng.normal(0, 1.0, 500)  # in use
    z[:, 1] = rng.normal(0, 0.3, 500)  # variance 0.09: in use
    z[:, 2] = rng.normal(0, 0.05, 500)  # variance 0.0025: collapsed
    z[:, 3] = 5.0  # constant offset: collapsed
    z[:, 5] = rng.normal(0, 0.3, 500)
    assert metrics.active_units(z) == 3
    assert metrics.active_units(z, threshold=0.001) == 4
    z[::7] = np.nan  # skipped molecules are left out, not propagated
    assert metrics.active_units(z) == 3
    with pytest.raises(ValueError, match="at least 2"):
        metrics.active_units(z[:1])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        metrics.active_units(z[0])


def test_active_units_of_a_collapsed_encoder_is_zero(small_model_dir):
    import torch

    from molvae.model import MolVAE

    model = MolVAE.load(small_model_dir, device="cpu")  # its own copy: the weights are changed below
    mols = moses_smiles(50, split="test")
    assert metrics.active_units(model.encode(mols)) > 0
    with torch.no_grad():
        model.net.to_mu.weight.zero_()  # mu = bias for every molecule: the posterior ignores x
    assert metrics.active_units(model.encode(mols)) == 0
