"""The GRU sequence VAE.

:mod:`~molvae.model.network` (configuration, encoder and decoder, loss),
:mod:`~molvae.model.decoding` (step-by-step decoding, sampling, beam search),
:mod:`~molvae.model.encoding` (batched encoding, ``.npy`` files of codes),
:mod:`~molvae.model.fitting` (codes fitted to decode to given molecules),
:mod:`~molvae.model.store` (model directories and the bundled models) and
:mod:`~molvae.model.vae`, the user-facing :class:`~molvae.MolVAE`.
"""

from molvae.devices import resolve_device, resolve_dtype
from molvae.folders import CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE
from molvae.model.decoding import DecoderStepper, Strategy, decode_rows, generate
from molvae.model.encoding import encode_to_npy
from molvae.model.network import ModelConfig, SequenceVAE, run_in_precision, vae_loss
from molvae.model.store import available_pretrained, pretrained_dir
from molvae.model.vae import MolVAE

__all__ = [
    "CONFIG_FILE",
    "VOCAB_FILE",
    "WEIGHTS_FILE",
    "DecoderStepper",
    "ModelConfig",
    "MolVAE",
    "SequenceVAE",
    "Strategy",
    "available_pretrained",
    "decode_rows",
    "encode_to_npy",
    "generate",
    "pretrained_dir",
    "resolve_device",
    "resolve_dtype",
    "run_in_precision",
    "vae_loss",
]
