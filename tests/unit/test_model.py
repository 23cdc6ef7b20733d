from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from molvae.data import collate, prepare_molecules
from molvae.errors import ConfigError, InvalidMoleculeError, ModelLoadError, MolvaeError, UnknownTokenError
from molvae.model import (
    ModelConfig,
    MolVAE,
    SequenceVAE,
    available_pretrained,
    decode_rows,
    encode_to_npy,
    generate,
    run_in_precision,
    vae_loss,
)
from molvae.tokenizers import EOS_ID, PAD_ID

SMALL = dict(embedding_dim=16, encoder_hidden=32, latent_dim=8, decoder_hidden=32, decoder_layers=2, max_length=60)


@pytest.fixture(scope="module")
def data(moses_train_1k):
    tokenized, _ = prepare_molecules(moses_train_1k[:64], n_jobs=1)
    return tokenized


@pytest.fixture(scope="module")
def model(data) -> MolVAE:
    torch.manual_seed(0)
    net = SequenceVAE(ModelConfig(vocab_size=len(data.vocab), **SMALL))
    return MolVAE(net, data.vocab, device="cpu")


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="latent_dim"):
        ModelConfig(vocab_size=30, latent_dim=0).validate()
    with pytest.raises(ConfigError, match="decoder_dropout"):
        ModelConfig(vocab_size=30, decoder_dropout=1.5).validate()
    with pytest.raises(ConfigError, match="unknown fields"):
        ModelConfig.from_dict({"vocab_size": 30, "hidden": 3})
    with pytest.raises(ConfigError, match="positive integer"):
        ModelConfig.from_dict({"vocab_size": 30, "latent_dim": "128"})
    assert ModelConfig.from_dict(ModelConfig(vocab_size=30).to_dict()) == ModelConfig(vocab_size=30)


def test_forward_shapes_and_loss(model, data) -> None:
    seq, lengths = collate(data, np.arange(8))
    seq_t, len_t = torch.from_numpy(seq), torch.from_numpy(lengths)
    logits, mu, logvar = model.net(seq_t, len_t)
    assert logits.shape == (8, seq.shape[1] - 1, len(data.vocab))
    assert mu.shape == logvar.shape == (8, SMALL["latent_dim"])
    losses = vae_loss(logits, seq_t[:, 1:], mu, logvar, beta=0.5)
    # Untrained: recon ≈ log(V) per real token.
    per_token = losses["recon"].item() * 8 / int((seq_t[:, 1:] != PAD_ID).sum())
    assert abs(per_token - np.log(len(data.vocab))) < 0.5
    assert losses["kl"].item() >= 0
    assert torch.isclose(losses["loss"], losses["recon"] + 0.5 * losses["kl"])


def test_free_bits_floor_kl() -> None:
    mu = torch.zeros(4, 3)
    logvar = torch.zeros(4, 3)
    logits = torch.zeros(4, 2, 6)
    targets = torch.full((4, 2), 5)
    plain = vae_loss(logits, targets, mu, logvar, beta=1.0)
    floored = vae_loss(logits, targets, mu, logvar, beta=1.0, free_bits=0.25)
    assert plain["kl"].item() == 0.0
    assert floored["loss"].item() == pytest.approx(plain["loss"].item() + 0.75)


def test_padding_does_not_change_encoding(model, data) -> None:
    seq, lengths = collate(data, np.array([0]))
    seq_t, len_t = torch.from_numpy(seq), torch.from_numpy(lengths)
    padded = torch.cat([seq_t, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    mu1, _ = model.net.encode(seq_t[:, 1:], len_t - 1)
    mu2, _ = model.net.encode(padded[:, 1:], len_t - 1)
    assert torch.allclose(mu1, mu2, atol=1e-6)


def test_bf16_forward_backward_matches_fp32(model, data) -> None:
    seq, lengths = collate(data, np.arange(16))
    seq_t, len_t = torch.from_numpy(seq), torch.from_numpy(lengths)
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.net.zero_grad()
        torch.manual_seed(1)
        logits, mu, logvar = run_in_precision(model.net, dtype, "forward", seq_t, len_t)
        vae_loss(logits, seq_t[:, 1:], mu, logvar, 0.5)["loss"].backward()
        grads[dtype] = torch.cat([p.grad.flatten() for p in model.net.parameters()])
        assert all(p.dtype == torch.float32 for p in model.net.parameters())
    cos = torch.nn.functional.cosine_similarity(grads[torch.float32], grads[torch.bfloat16], dim=0)
    assert cos > 0.99


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_generate_strategies(model, strategy) -> None:
    z = torch.randn(5, SMALL["latent_dim"])
    ids = generate(model.net, z, strategy=strategy, max_length=20, beam_width=3)
    assert ids.shape == (5, 20)
    for row in ids:
        if (row == EOS_ID).any():
            end = int(np.argmax(row == EOS_ID))
            assert (row[end + 1 :] == PAD_ID).all()


def test_greedy_decoding_is_deterministic_and_batch_independent(model) -> None:
    z = torch.randn(6, SMALL["latent_dim"])
    full = generate(model.net, z, "greedy", max_length=30)
    single = np.stack([generate(model.net, z[i : i + 1], "greedy", max_length=30)[0] for i in range(6)])
    assert np.array_equal(full, single)


def test_decode_rows_are_few_and_hold_every_running_row() -> None:
    sizes = [decode_rows(n) for n in range(1, 1025)]
    assert all(size >= n for n, size in zip(range(1, 1025), sizes))
    assert all(size - n < 64 for n, size in zip(range(1, 1025), sizes))
    assert sizes[:9] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    assert len(set(sizes)) == 7 + 15  # 1..64 in powers of two, then 128..1024 in steps of 64


def test_dropping_finished_rows_keeps_each_decode() -> None:
    """Rows that end at many different steps (the trained model) decode as they do alone,
    so the finished rows carried as padding never reach the output."""
    trained = MolVAE.pretrained("zinc-smiles", device="cpu")
    z = torch.randn(120, trained.config.latent_dim, generator=torch.Generator().manual_seed(0))
    together = generate(trained.net, z, "greedy")
    lengths = (together == EOS_ID).argmax(1)
    assert len(set(lengths.tolist())) >= 15  # so batches shrank many times, with padding rows
    alone = np.stack([generate(trained.net, z[i : i + 1], "greedy")[0] for i in range(len(z))])
    assert np.array_equal(together, alone)


def test_beam_width_one_equals_greedy(model) -> None:
    z = torch.randn(4, SMALL["latent_dim"])
    greedy = generate(model.net, z, "greedy", max_length=25)
    beam = generate(model.net, z, "beam", max_length=25, beam_width=1)
    assert np.array_equal(greedy, beam)


def test_seeded_sampling_is_reproducible(model) -> None:
    assert model.sample(20, seed=3) == model.sample(20, seed=3)
    assert model.sample(20, seed=3) != model.sample(20, seed=4)


def test_a_seed_means_the_same_molecules_however_they_are_batched(model, monkeypatch) -> None:
    """Draws are keyed by (seed, row), not by batch (molvae.seeding): sample(n) is the start of
    sample(m); a subset decoded with its keys is that subset of the whole; a batch halved after
    running out of GPU memory decodes what the whole batch would have."""
    import molvae.model.vae as model_module
    from molvae.batching import OUT_OF_MEMORY

    big = model.sample(60, seed=3, batch_size=16)
    assert len(set(big)) > 30  # random weights: varied draws, so equality below means something
    assert model.sample(25, seed=3, batch_size=7) == big[:25]
    assert model.sample(25, seed=3, batch_size=7) != model.sample(25, seed=4, batch_size=7)

    z = torch.randn(40, SMALL["latent_dim"], generator=torch.Generator().manual_seed(2))
    full = model.decode(z, "sample", seed=1, batch_size=64)
    assert model.decode(z[10:30], "sample", seed=1, keys=np.arange(10, 30), batch_size=4) == full[10:30]
    assert model.decode(z[10:30], "sample", seed=1, batch_size=4) != full[10:30]  # other keys, other draws
    valid = model.decode_valid(z, attempts=4, seed=1)
    assert model.decode_valid(z[5:9], attempts=4, seed=1, keys=np.arange(5, 9), batch_size=3) == valid[5:9]

    real_generate = model_module.generate

    def small_gpu(net, z, *args, **kwargs):
        if z.shape[0] > 8:
            raise OUT_OF_MEMORY("CUDA out of memory. Tried to allocate 1 GiB.")
        return real_generate(net, z, *args, **kwargs)

    monkeypatch.setattr(model_module, "generate", small_gpu)
    assert model.decode(z, "sample", seed=1, batch_size=64) == full
    with pytest.raises(ConfigError, match="one integer per latent"):
        model.decode(z, "sample", seed=1, keys=[1, 2])


def test_sampling_draws_latents_a_block_at_a_time(model, monkeypatch) -> None:
    """The first batch of ten million samples needs no more memory than a small sample: the
    latents are drawn per block (10**7 latents at this size would take 320 MB)."""
    import tracemalloc

    from molvae.model.vae import SAMPLE_BLOCK

    tracemalloc.start()
    try:
        first = next(model.iter_sample(10**7, seed=5, batch_size=16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * SAMPLE_BLOCK * SMALL["latent_dim"] * 4 + 10_000_000, peak
    assert first == model.sample(16, seed=5, batch_size=16)
    # Across block boundaries (small blocks here, for speed) the molecules are those of one long draw.
    import molvae.model.vae as model_module
    from molvae.seeding import prior_latents

    whole = model.decode(prior_latents(70, SMALL["latent_dim"], 5), "sample", seed=5)
    monkeypatch.setattr(model_module, "SAMPLE_BLOCK", 32)
    assert model.sample(70, seed=5, batch_size=8) == whole
    assert model.sample(70, seed=5, batch_size=50) == whole  # a block of one batch, larger than SAMPLE_BLOCK
    with pytest.raises(ConfigError, match="batch size must be a positive integer, got 0"):
        model.sample(3, batch_size=0)


def test_encode_errors(model) -> None:
    with pytest.raises(InvalidMoleculeError, match="C1CC"):
        model.encode(["CCO", "C1CC"])
    with pytest.raises(UnknownTokenError, match=r"\[Xe\]"):
        model.encode(["CC[Xe]"])
    z = model.encode(["CCO", "C1CC", "CC[Xe]"], errors="nan")
    assert not np.isnan(z[0]).any() and np.isnan(z[1]).all() and np.isnan(z[2]).all()
    with pytest.raises(TypeError):
        model.encode("CCO")


def test_encode_mean_is_order_independent_and_sample_differs(model, data) -> None:
    smiles = data.smiles[:10]
    z = model.encode(smiles)
    z_rev = model.encode(smiles[::-1])
    assert np.allclose(z, z_rev[::-1], atol=1e-5)
    zs = model.encode(smiles, sample=True, seed=0)
    assert not np.allclose(z, zs)
    # A posterior sample is keyed by (seed, position): the same whatever the batch size or
    # the order molecules are batched in (up to the encoder's rounding, as for the means above),
    # and another for another seed.
    assert np.allclose(model.encode(smiles, sample=True, seed=0, batch_size=2), zs, atol=1e-5)
    assert not np.allclose(model.encode(smiles, sample=True, seed=1), zs, atol=1e-2)
    ids = [model.token_ids(s) for s in smiles]
    assert np.allclose(model.encode_ids(ids[2:], sample=True, seed=0, first_key=2), zs[2:], atol=1e-5)


def test_encode_ids_matches_one_molecule_at_a_time(model, data) -> None:
    """Batched padding (mixed lengths, None rows, any batch size) gives each molecule its own code."""
    ids: list = [data.ids[data.offsets[i] : data.offsets[i + 1]].tolist() for i in range(12)]
    ids[3] = None
    ids[7] = []  # an empty molecule is just EOS
    one_by_one = np.stack([model.encode_ids([x])[0] for x in ids])
    for batch_size in (1, 5, 512):
        z = model.encode_ids(ids, batch_size=batch_size)
        assert np.isnan(z[3]).all() and not np.isnan(np.delete(z, 3, axis=0)).any()
        assert np.allclose(z, one_by_one, atol=1e-5, equal_nan=True)
    assert model.encode_ids([]).shape == (0, SMALL["latent_dim"])
    assert np.allclose(model.encode_ids([[], None])[0], one_by_one[7], atol=1e-5)  # no token at all in the batch


def test_encode_to_npy_equals_encode_and_a_failed_write_leaves_no_partial_file(model, data, tmp_path) -> None:
    """The streamed .npy holds model.encode's rows (NaN where it skips); a failed write keeps the old file."""
    smiles = list(data.smiles[:11]) + ["C1CC", "CC[Xe]"] + list(data.smiles[11:20])
    expected = model.encode(smiles, errors="nan")
    bad_rows = np.flatnonzero(np.isnan(expected).all(axis=1))
    assert {11, 12} <= set(bad_rows.tolist())
    out = tmp_path / "z.npy"
    assert encode_to_npy(model, smiles, out) == len(bad_rows)
    z = np.load(out)
    assert z.dtype == np.float32 and z.shape == (len(smiles), SMALL["latent_dim"])
    assert np.array_equal(z, expected, equal_nan=True)  # one chunk, one batch: the same numbers
    # A generator in chunks (n given: the header holds the row count). Other batches round differently.
    chunked = tmp_path / "chunked.npy"
    assert encode_to_npy(model, iter(smiles), chunked, n=len(smiles), chunk_size=4, batch_size=3) == len(bad_rows)
    assert np.allclose(np.load(chunked), expected, atol=1e-5, equal_nan=True)
    # Posterior draws are keyed by row: chunking the stream draws as model.encode does.
    encode_to_npy(model, smiles, chunked, chunk_size=5, sample=True, seed=3)
    assert np.allclose(
        np.load(chunked), model.encode(smiles, sample=True, seed=3, errors="nan"), atol=1e-5, equal_nan=True
    )

    out.write_bytes(b"previous result")
    # Fails in a later chunk, after earlier chunks were written to the temporary file.
    with pytest.raises(MolvaeError, match=f"^record {bad_rows[0] + 1}: .*C1CC"):
        encode_to_npy(model, smiles, out, chunk_size=4, errors="raise")
    assert out.read_bytes() == b"previous result"

    def interrupted():
        yield from smiles[:9]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_to_npy(model, interrupted(), out, n=len(smiles), chunk_size=4)
    assert out.read_bytes() == b"previous result"
    with pytest.raises(ConfigError, match=f"holds {len(smiles)} molecules, not n=30"):
        encode_to_npy(model, iter(smiles), tmp_path / "short.npy", n=30)
    with pytest.raises(ConfigError, match="give n"):
        encode_to_npy(model, iter(smiles), tmp_path / "short.npy")
    assert not (tmp_path / "short.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.npy", "z.npy"]  # no temporary file left


def test_token_ids_many_in_workers_matches_one_at_a_time(model, data) -> None:
    smiles = list(data.smiles[:30]) + ["C1CC", "CC[Xe]", None, "OCC"]
    serial = [_ids_or_error(model, s) for s in smiles]
    for n_jobs in (1, 2):
        got = model.token_ids_many(smiles, n_jobs=n_jobs)
        assert [g if isinstance(g, list) else (type(g), str(g)) for g in got] == serial
    assert isinstance(serial[-3], tuple) and "C1CC" in serial[-4][1] and "[Xe]" in serial[-3][1]


def _ids_or_error(model, smiles):
    try:
        return model.token_ids(smiles)
    except MolvaeError as exc:
        return (type(exc), str(exc))


def test_save_load_round_trip(model, tmp_path) -> None:
    model.save(tmp_path / "m")
    loaded = MolVAE.load(tmp_path / "m", device="cpu")
    assert loaded.vocab == model.vocab and loaded.config == model.config
    z = np.random.default_rng(0).normal(size=(4, SMALL["latent_dim"])).astype(np.float32)
    assert loaded.decode(z) == model.decode(z)


def test_summary_of_a_model_in_memory_and_of_its_saved_copy(model, tmp_path) -> None:
    """A model built in memory has no file or training record; saved by MolVAE.save it has weights only."""
    summary = model.summary()
    assert summary["model"]["weights_sha256"] is None and summary["model"]["source"] is None
    assert summary["model"]["parameters"] == model.n_parameters
    assert summary["model"]["architecture"] == model.config.to_dict()
    assert summary["training"]["epochs"] == 0 and summary["metrics"] is None
    model.save(tmp_path / "m")
    saved = MolVAE.load(tmp_path / "m", device="cpu").summary()
    assert (
        saved["model"]["weights_sha256"]
        == hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()
    )
    assert saved["training"]["resumable"] is False and saved["training"]["epochs_planned"] is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_round_trip(model, tmp_path, dtype) -> None:
    model.save(tmp_path / "full")
    model.save(tmp_path / "half", weights_dtype=dtype)
    full, half = (
        (tmp_path / "full" / "model.safetensors").stat().st_size,
        (tmp_path / "half" / "model.safetensors").stat().st_size,
    )
    assert half < 0.6 * full
    loaded = MolVAE.load(tmp_path / "half", device="cpu")
    eps = torch.finfo(dtype).eps
    for key, value in model.net.state_dict().items():
        restored = loaded.net.state_dict()[key]
        assert restored.dtype == torch.float32
        assert torch.allclose(restored, value, rtol=eps, atol=1e-7), key


def test_half_precision_save_refuses_overflow(model, tmp_path) -> None:
    big = MolVAE(SequenceVAE(model.config), model.vocab, device="cpu")
    with torch.no_grad():
        big.net.output.bias.fill_(1e6)
    with pytest.raises(MolvaeError, match="does not fit"):
        big.save(tmp_path / "m", weights_dtype=torch.float16)
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_unknown_pretrained_name_lists_bundled_models() -> None:
    with pytest.raises(ModelLoadError, match="no pretrained model named 'zinc-foo'") as info:
        MolVAE.pretrained("zinc-foo")
    for name in available_pretrained():
        assert name in str(info.value)


def test_a_local_directory_named_like_a_bundled_model_is_reached_by_its_path(model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model.save(tmp_path / "zinc-smiles")
    for spelled in ("./zinc-smiles", Path("zinc-smiles")):  # a path, not the bundled name
        loaded = MolVAE.load(spelled, device="cpu")
        assert loaded.source == "zinc-smiles" and loaded.card is None
    n_params = sum(p.numel() for p in model.net.parameters())
    assert repr(loaded) == (
        f"MolVAE('zinc-smiles': SMILES, {len(model.vocab)} tokens, latent 8, "
        f"{n_params / 1e6:.2f}M parameters, cpu, float32)"
    )
    assert repr(model).startswith("MolVAE(SMILES, ")  # built in memory: no source


def test_load_errors(model, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        MolVAE.load(tmp_path / "missing")
    d = tmp_path / "m"
    model.save(d)
    (d / "vocab.json").write_text(json.dumps({"tokens": model.vocab.tokens[:-1]}))
    with pytest.raises(ModelLoadError, match="vocabulary mismatch"):
        MolVAE.load(d)
    model.save(d)
    (d / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        MolVAE.load(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="weights file missing"):
        MolVAE.load(d)


class _Exploit:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_are_refused_without_executing(model, tmp_path) -> None:
    d = tmp_path / "m"
    model.save(d)
    marker = tmp_path / "pwned"
    (d / "model.safetensors").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelLoadError, match="pickle"):
        MolVAE.load(d)
    assert not marker.exists()


@pytest.mark.parametrize("cells", [True, False], ids=["kernel-cells", "torch-ops"])
def test_decoder_stepper_matches_gru_step(model, cells: bool) -> None:
    """Both eager step paths: the CPU kernel's cells (where it builds) and the torch ops (GPUs, no kernel)."""
    from molvae.model import DecoderStepper
    from molvae.recurrent import cpu_kernel

    torch.manual_seed(0)
    z = torch.randn(7, SMALL["latent_dim"])
    tokens = torch.randint(4, len(model.vocab), (7,))
    with torch.no_grad():
        ref_logits, ref_hidden = model.net.step(z, tokens, model.net.initial_hidden(z))
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
            stepper = DecoderStepper(model.net, dtype)
            if cells and cpu_kernel() is None:
                pytest.skip("the CPU kernel did not build here")
            if cells:
                assert stepper.cells is not None
            else:
                stepper.cells = None
            zterm, hidden = stepper.start(z)
            assert torch.allclose(hidden, model.net.initial_hidden(z), atol=1e-6)
            logits, new_hidden = stepper.step(zterm, tokens, hidden)
            assert torch.allclose(logits, ref_logits, atol=tol), dtype
            assert torch.allclose(new_hidden, ref_hidden, atol=tol), dtype


def test_a_temperature_too_small_for_float32_decodes_greedily(model) -> None:
    """logits / 1e-300 overflows: such a draw is the greedy decode (its limit), not NaN probabilities and empty
    strings."""
    z = torch.randn(16, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    greedy = model.decode(z, strategy="greedy")
    for temperature in (1e-300, 1e-45, 1e-7):
        assert model.decode(z, strategy="sample", temperature=temperature, seed=0) == greedy, temperature
    assert any(greedy)


def test_next_token_draws_what_multinomial_draws(model) -> None:
    """The in-step draw from Exp(1) noise is torch.multinomial's draw for that noise (the same
    generator state), and greedy is the argmax."""
    from molvae.model import DecoderStepper

    torch.manual_seed(0)
    z = torch.randn(64, SMALL["latent_dim"])
    tokens = torch.randint(4, len(model.vocab), (64,))
    stepper = DecoderStepper(model.net)
    with torch.no_grad():
        zterm, hidden = stepper.start(z)
        logits, ref_hidden = stepper.step(zterm, tokens, hidden)
        for temperature in (0.5, 1.0, 2.0):
            expected = torch.multinomial(
                torch.softmax(logits / temperature, -1), 1, generator=torch.Generator().manual_seed(7)
            ).squeeze(1)
            noise = torch.empty(64, len(model.vocab)).exponential_(generator=torch.Generator().manual_seed(7))
            drawn, new_hidden = stepper.next_token(zterm, tokens, hidden, temperature, noise)
            assert torch.equal(drawn, expected), temperature
            assert torch.equal(new_hidden, ref_hidden)
        greedy, _ = stepper.next_token(zterm, tokens, hidden)
        assert torch.equal(greedy, logits.argmax(-1))
        # A draw at a high temperature is not the argmax everywhere (the test above is not vacuous).
        hot, _ = stepper.next_token(zterm, tokens, hidden, 5.0, noise)
        assert not torch.equal(hot, greedy)


def test_decode_valid_returns_canonical_valid_or_none(model) -> None:
    from molvae.chemistry import canonicalize

    z = np.random.default_rng(1).normal(size=(12, SMALL["latent_dim"])).astype(np.float32)
    result = model.decode_valid(z, attempts=6, temperature=0.7, seed=2)
    assert len(result) == 12
    for r in result:
        assert r is None or canonicalize(r) == r
    # The same seed gives the same answer; attempts=1 is the greedy decode, canonicalized when valid.
    assert model.decode_valid(z, attempts=6, temperature=0.7, seed=2) == result
    greedy = [canonicalize(s) for s in model.decode(z)]
    assert model.decode_valid(z, attempts=1) == greedy


def test_stereo_is_dropped_for_a_model_without_stereo_tokens(model) -> None:
    # MOSES has no stereochemistry, so drugs like (S)-naproxen are encoded as their 2D graph.
    assert not model.has_stereo
    flat, chiral = "COc1ccc2cc(C(C)C(=O)O)ccc2c1", "COc1ccc2cc([C@H](C)C(=O)O)ccc2c1"
    assert model.token_ids(chiral) == model.token_ids(flat)
    assert np.array_equal(model.encode([chiral]), model.encode([flat]))


@pytest.mark.slow
def test_compiled_decoder_step_matches_eager(model) -> None:
    """torch.compile fuses the step; the decoded molecules must not change (shrinking batches included).

    Two compiled graphs, to keep compile time down: fp32 sampling (the draw from the same
    seeded noise) and bf16 greedy decoding.
    """
    z = torch.from_numpy(np.random.default_rng(3).normal(size=(40, SMALL["latent_dim"])).astype(np.float32))
    eager, compiled = (generate(model.net, z, "sample", seed=5, compile=c) for c in (False, True))
    agree = (eager == compiled).all(axis=1).mean()
    assert agree == 1.0, agree
    eager = generate(model.net, z, "greedy", dtype=torch.bfloat16)
    compiled = generate(model.net, z, "greedy", dtype=torch.bfloat16, compile=True)
    # bf16 matmuls may round differently once fused; allow a rare flipped argmax there.
    agree = (eager == compiled).all(axis=1).mean()
    assert agree >= 0.9, agree
    from molvae.model.decoding import _COMPILE_FAILED

    assert not _COMPILE_FAILED, _COMPILE_FAILED  # the comparison above must have run compiled


def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path) -> None:
    """Without a working C++ compiler, decoding still works and says why it is not compiled."""
    import subprocess
    import sys

    script = tmp_path / "nocompiler.py"
    script.write_text(
        "import logging, torch\n"
        "import torch._inductor.config as ic\n"
        "ic.cpp.cxx = ('/nonexistent/c++',)\n"
        "ic.force_disable_caches = True\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from molvae.model import ModelConfig, SequenceVAE, generate\n"
        "torch.manual_seed(0)\n"
        "net = SequenceVAE(ModelConfig(vocab_size=12, embedding_dim=8, encoder_hidden=8, latent_dim=4,"
        " decoder_hidden=8, decoder_layers=2, max_length=10))\n"
        "z = torch.randn(5, 4)\n"
        "a = generate(net, z, 'greedy', compile=True)\n"
        "b = generate(net, z, 'greedy')\n"
        "assert (a == b).all()\n"
        "print('OK')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK" in done.stdout
    assert "torch.compile of the decoder step failed" in done.stderr
