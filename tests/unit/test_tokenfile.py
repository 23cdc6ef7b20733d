"""Token files: prepared data that trains without RDKit; a round trip, its selection options, and refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from molvae.datasets import load_dataset, prepare_molecules, save_token_file
from molvae.errors import DataError
from molvae.tokenizers import Vocabulary

REPO = Path(__file__).resolve().parents[2]
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1", "Clc1ccccc1Br", "CC(C)(C)OC(=O)N"]


def _session_script():
    spec = importlib.util.spec_from_file_location("gpu_session", REPO / "scripts" / "gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared():
    return prepare_molecules(SMILES, "smiles", n_jobs=1)


@pytest.fixture
def token_file(prepared, tmp_path) -> Path:
    data, summary = prepared
    return save_token_file(tmp_path / "mols.npz", data, summary, "smiles")


def _one_line_error(path: Path, representation: str = "smiles") -> str:
    with pytest.raises(DataError) as info:
        load_dataset(str(path), representation=representation)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_round_trip_keeps_ids_order_smiles_and_vocabulary(prepared, token_file) -> None:
    data, summary = prepared
    back, back_summary = load_dataset(str(token_file))
    assert back.smiles == data.smiles and back.vocab == data.vocab
    assert np.array_equal(back.ids, data.ids) and back.ids.dtype == np.int16
    assert np.array_equal(back.offsets, data.offsets)
    assert back_summary.n_kept == summary.n_kept == len(SMILES)
    with np.load(token_file, allow_pickle=False) as npz:  # SMILES are the joined tokens: not stored
        assert "smiles" not in npz.files and npz["ids"].dtype == np.uint8
        assert json.loads(npz["meta"].tobytes())["smiles_stored"] is False


def test_selfies_keep_their_smiles(tmp_path) -> None:
    data, summary = prepare_molecules(SMILES[:3], "selfies", n_jobs=1)
    back, _ = load_dataset(str(save_token_file(tmp_path / "s.npz", data, summary, "selfies")), "selfies")
    assert back.smiles == data.smiles and np.array_equal(back.ids, data.ids)


def test_load_dataset_reads_it_with_limit_sample_length_cap_and_vocabulary(prepared, token_file) -> None:
    data, _ = prepared
    whole, _ = load_dataset(str(token_file))
    assert whole.smiles == data.smiles
    assert load_dataset(str(token_file), limit=2)[0].smiles == data.smiles[:2]
    sampled, _ = load_dataset(str(token_file), sample=3, sample_seed=1)
    assert len(sampled) == 3 and set(sampled.smiles) <= set(data.smiles)
    short, summary = load_dataset(str(token_file), max_tokens=8)
    assert all(len(s) + 2 <= 8 for s in short.smiles) and summary.dropped["too_long"] == len(data) - len(short)
    wider = Vocabulary([*data.vocab.tokens, "Se"])
    remapped, _ = load_dataset(str(token_file), vocab=wider)
    assert remapped.vocab == wider and remapped.smiles == data.smiles


def test_foreign_and_damaged_files_are_refused_in_one_line(prepared, token_file, tmp_path) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    assert "not a molvae token file" in _one_line_error(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "molvae-tokens"}], dtype=object), ids=np.zeros(1), lengths=np.ones(1))
    assert "not a" in _one_line_error(pickled)
    text = tmp_path / "text.npz"
    text.write_text("CCO\n")
    assert "not a molvae token file (not a .npz archive)" in _one_line_error(text)
    single = tmp_path / "single.npz"
    with open(single, "wb") as fh:
        np.save(fh, np.arange(4))
    assert "not a molvae token file" in _one_line_error(single)
    assert "pass --representation smiles" in _one_line_error(token_file, "selfies")


def _tampered(path: Path, member: str, change) -> Path:
    """A copy of the token file ``path`` with the array ``member`` passed through ``change``."""
    out = path.with_name(f"{member}-changed.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays[member] = change(arrays[member].copy())
    with zipfile.ZipFile(out, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, array)
    return out


def _bump_first(array: np.ndarray) -> np.ndarray:
    array[0] += 30
    return array


def test_inconsistent_arrays_are_refused(prepared, token_file, tmp_path) -> None:
    assert "outside its vocabulary" in _one_line_error(_tampered(token_file, "ids", _bump_first))
    assert "do not add up" in _one_line_error(_tampered(token_file, "lengths", _bump_first))
    assert "version" in _one_line_error(
        _tampered(
            token_file, "meta", lambda m: np.frombuffer(bytes(m).replace(b'"version": 1', b'"version": 9'), np.uint8)
        )
    )
    data, summary = prepared
    with pytest.raises(DataError, match="must end in .npz"):
        save_token_file(tmp_path / "mols.bin", data, summary, "smiles")


def test_a_token_file_trains_where_rdkit_and_molsets_cannot_be_imported(token_file, tmp_path) -> None:
    """What the GPU machine does, in miniature: read the file and take training steps, RDKit blocked."""
    session = _session_script()
    # Torch's time loops, as on the GPU machine's CPU side: this test is about imports and data, not the kernel.
    env = {**session.blocked_environment(tmp_path / "blocked"), session.KERNEL_SWITCH: "0"}
    code = (
        "import sys; from molvae.training import TrainConfig, Trainer; "
        f"cfg = TrainConfig(data={str(token_file)!r}, epochs=1, batch_size=2, val_fraction=0.34, "
        "val_recon_n=0, val_sample_n=0, progress=False, warmup_steps=1); "
        "h = Trainer(sys.argv[1], cfg, dict(embedding_dim=8, encoder_hidden=16, latent_dim=4, decoder_hidden=16, "
        "decoder_layers=1)).fit(); "
        "assert 'rdkit' not in sys.modules; print(h[-1]['val_loss'], h[-1]['val_active_units'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loss, units = done.stdout.split()
    assert np.isfinite(float(loss)) and int(units) >= 0
    probe = subprocess.run([sys.executable, "-c", "import rdkit"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by the rehearsal" in probe.stderr
