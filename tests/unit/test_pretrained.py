"""The pretrained models bundled with the package: present, small, loadable, sane."""

from __future__ import annotations

import pytest

from molvae.chemistry import canonicalize
from molvae.model import MolVAE, available_pretrained, pretrained_dir

BUNDLED = ["zinc-smiles", "zinc-selfies"]


def test_both_models_are_bundled() -> None:
    assert set(BUNDLED) <= set(available_pretrained())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_small_half_precision_and_has_a_card(name) -> None:
    from molvae.checkpoint import load_weights

    folder = pretrained_dir() / name
    assert (folder / "model.safetensors").stat().st_size < 25e6
    assert {str(t.dtype) for t in load_weights(folder / "model.safetensors").values()} == {"torch.float16"}
    model = MolVAE.pretrained(name, device="cpu")
    assert model.card is not None and model.card["name"] == name
    assert model.card["training_hours"] > 0 and model.card["hardware"]
    assert model.config.representation == name.split("-")[1]
    assert repr(model).startswith(
        f"MolVAE('{name}': {name.split('-')[1].upper()}, {len(model.vocab)} tokens, latent 128,"
    )


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_decodes_mostly_valid_molecules(name) -> None:
    model = MolVAE.load(name, device="cpu")  # a name works wherever a directory does
    samples = model.sample(200, seed=0)
    valid = [canonicalize(s) for s in samples if s]
    valid = [s for s in valid if s is not None]
    # Far below the model card's 30k-sample figure: this only catches broken weights.
    assert len(valid) >= 100
    assert len(set(valid)) >= 0.9 * len(valid)


def test_bundled_smiles_model_reconstructs_moses_test_molecules() -> None:
    from molvae.metrics import reconstruction_rate
    from tests.conftest import moses_smiles

    model = MolVAE.pretrained("zinc-smiles", device="cpu")
    # docs/MODEL_CARD.md reports the rate on 1,000 test molecules; 60 only catch broken weights
    assert reconstruction_rate(model, moses_smiles(60, "test")) >= 0.3


@pytest.mark.parametrize("name", BUNDLED)
def test_recipe_of_each_bundled_model_can_be_rerun(name) -> None:
    """scripts/train_pretrained.py's stages: a fine-tuned model's card must hold its parent's from-scratch recipe."""
    import importlib.util
    from pathlib import Path

    from molvae.training import TrainConfig

    script_path = Path(__file__).resolve().parents[2] / "scripts" / "train_pretrained.py"
    spec = importlib.util.spec_from_file_location("train_pretrained", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    plan = script.stages(name)
    configs = [TrainConfig.from_dict(stage) for stage in plan]  # every stage is a valid training config
    assert configs[0].init_from is None  # the first stage starts from scratch
    card = MolVAE.pretrained(name, device="cpu").card
    if len(plan) == 2:
        parent = card["initialized_from"]
        assert len(parent["weights_sha256"]) == 64
        assert card["total_epochs"] == card["epochs"] + parent["epochs"]
    else:
        assert "initialized_from" not in card


def test_a_stereo_input_counts_as_reconstructed_when_its_2d_graph_comes_back() -> None:
    """The bundled models have no stereo tokens: they read a stereo molecule as its 2D graph, and so do
    reconstruction_rate and MolVAE.canonical."""
    from rdkit import Chem

    from molvae.metrics import reconstruction_rate
    from tests.conftest import moses_smiles

    model = MolVAE.pretrained("zinc-smiles", device="cpu")
    assert not model.has_stereo
    pairs = []
    for flat in moses_smiles(40, "test"):
        mol = Chem.MolFromSmiles(flat)
        centres = Chem.FindMolChiralCenters(mol, includeUnassigned=True, useLegacyImplementation=False)
        if centres:
            mol.GetAtomWithIdx(centres[0][0]).SetChiralTag(Chem.ChiralType.CHI_TETRAHEDRAL_CW)
            pairs.append((flat, Chem.MolToSmiles(mol)))
    assert len(pairs) >= 5 and all("@" in stereo for _, stereo in pairs)
    flat, stereo = map(list, zip(*pairs))
    assert [model.canonical(s) for s in stereo] == [model.canonical(s) for s in flat]
    rate = reconstruction_rate(model, flat)
    assert rate > 0 and reconstruction_rate(model, stereo) == rate


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_priors_belong_to_their_weights(name) -> None:
    import numpy as np

    from molvae.priors import default_prior_name, prior_names

    model = MolVAE.pretrained(name, device="cpu")
    names = prior_names(model)
    assert {"gmm", "flow"} <= set(names)
    assert default_prior_name(model.source) in names
    assert model.prior("auto").name == default_prior_name(model.source) != "standard"
    for prior in names:  # each was fitted to these very weights (else it would not load)
        z = model.prior(prior).sample(64, seed=0)
        assert z.shape == (64, 128) and np.isfinite(z).all()
        assert np.isfinite(model.prior(prior).log_prob(z[:4])).all()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_local_path_named_like_a_bundled_model_does_not_replace_it_silently(
    kind, tmp_path, monkeypatch, caplog
) -> None:
    """`--model zinc-smiles` in a folder that holds `zinc-smiles/` (a run of the README's own command) or a file of
    that name: the bundled model, with a warning naming the way to the local one (`./zinc-smiles`)."""
    from molvae.errors import ModelLoadError

    monkeypatch.chdir(tmp_path)
    local = tmp_path / "zinc-smiles"
    local.mkdir() if kind == "folder" else local.write_text("not a model")
    with caplog.at_level("WARNING", logger="molvae.model"):
        model = MolVAE.load("zinc-smiles", device="cpu")
    assert model.card["name"] == "zinc-smiles"
    assert f"the {kind} zinc-smiles in this directory is not used (give ./zinc-smiles for it)" in caplog.text
    with pytest.raises(ModelLoadError, match="zinc-smiles"):
        MolVAE.load("./zinc-smiles", device="cpu")
