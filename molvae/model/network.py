"""The network: its configuration, the GRU encoder and decoder, running it in low precision, and the loss.

Encoder: token embedding → bidirectional GRU (packed, so padding is never read)
→ μ, log σ². Decoder: GRU whose initial hidden state is a projection of z and
whose every input step is ``[embedding(token), z]`` (z at every step keeps the
decoder from ignoring the latent).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from molvae.config import config_from_dict, rule, validate_config
from molvae.recurrent import gru_layer, native_gru_layer, run_bidirectional_gru, run_gru
from molvae.tokenizers import BOS_ID, PAD_ID, UNK_ID


@dataclass
class ModelConfig:
    """Architecture of the VAE; saved as JSON beside every set of weights."""

    vocab_size: int = field(metadata=rule(ge=5))  # the 4 special tokens and at least one real one
    representation: str = field(default="smiles", metadata=rule(choices=("smiles", "selfies")))
    embedding_dim: int = field(default=64, metadata=rule(ge=1))
    encoder_hidden: int = field(default=256, metadata=rule(ge=1))
    encoder_layers: int = field(default=1, metadata=rule(ge=1))
    latent_dim: int = field(default=128, metadata=rule(ge=1))
    decoder_hidden: int = field(default=512, metadata=rule(ge=1))
    decoder_layers: int = field(default=3, metadata=rule(ge=1))
    encoder_dropout: float = field(default=0.0, metadata=rule(ge=0.0, lt=1.0))
    decoder_dropout: float = field(default=0.0, metadata=rule(ge=0.0, lt=1.0))
    max_length: int = field(default=120, metadata=rule(ge=3))  # tokens including BOS/EOS; bounds decoding

    def validate(self) -> ModelConfig:
        """Check types and ranges (``molvae.config.validate_config``); returns ``self``."""
        validate_config(self, "model config")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Build from parsed JSON; unknown or missing fields and bad values raise :class:`.ConfigError`."""
        return config_from_dict(cls, data, "model config")


class SequenceVAE(nn.Module):
    """Bidirectional-GRU encoder and z-conditioned GRU decoder over token ids."""

    #: Train on CPU through ``molvae.recurrent`` (same weights and equations as
    #: ``nn.GRU``, one weight-gradient matmul per layer instead of one per time step).
    fused_cpu_gru: bool = True
    #: ... with their time loops in the compiled kernel (``molvae.recurrent.cpu_kernel``)
    #: where it builds; False keeps them in torch ops (for comparisons).
    cpu_gru_kernel: bool = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(
            c.embedding_dim,
            c.encoder_hidden,
            num_layers=c.encoder_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.encoder_dropout if c.encoder_layers > 1 else 0.0,
        )
        self.to_mu = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        self.to_logvar = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        self.z_to_hidden = nn.Linear(c.latent_dim, c.decoder_layers * c.decoder_hidden)
        self.decoder = nn.GRU(
            c.embedding_dim + c.latent_dim,
            c.decoder_hidden,
            num_layers=c.decoder_layers,
            batch_first=True,
            dropout=c.decoder_dropout if c.decoder_layers > 1 else 0.0,
        )
        self.output = nn.Linear(c.decoder_hidden, c.vocab_size)

    def _use_recurrent(self, x: torch.Tensor) -> bool:
        """Run the GRUs through ``molvae.recurrent``: CPU training only (GPUs keep cuDNN)."""
        return self.fused_cpu_gru and x.device.type == "cpu" and torch.is_grad_enabled()

    def _cpu_layer(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gru_layer(*args, use_kernel=self.cpu_gru_kernel)

    def encode(
        self, tokens: torch.Tensor, lengths: torch.Tensor, static_shapes: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² of q(z|x) for padded ``tokens`` [B, L] with true ``lengths`` [B].

        ``static_shapes``: run the encoder over the whole padded width with torch's GRU kernel
        instead of packing (same states; no shape depends on ``lengths``, as CUDA graphs need).
        """
        emb = self.embedding(tokens)
        if self._use_recurrent(emb):
            h = run_bidirectional_gru(self.encoder, emb[:, : int(lengths.max())], lengths, layer=self._cpu_layer)
        elif static_shapes:
            h = run_bidirectional_gru(self.encoder, emb, lengths, layer=native_gru_layer)
        else:
            packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.encoder(packed)
        h = torch.cat([h[-2], h[-1]], dim=-1)  # last layer, both directions
        return self.to_mu(h), self.to_logvar(h)

    def initial_hidden(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config
        h = torch.tanh(self.z_to_hidden(z.to(self.z_to_hidden.weight.dtype)))
        return h.view(z.shape[0], c.decoder_layers, c.decoder_hidden).transpose(0, 1).contiguous()

    def decode_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, L, V] for decoder ``inputs`` [B, L] (BOS-prefixed)."""
        emb = self.embedding(inputs)
        zs = z.to(emb.dtype).unsqueeze(1).expand(-1, inputs.shape[1], -1)
        x, h0 = torch.cat([emb, zs], dim=-1), self.initial_hidden(z)
        if self._use_recurrent(x):
            out, _ = run_gru(self.decoder, x, h0, layer=self._cpu_layer)
        else:
            out, _ = self.decoder(x, h0)
        return self.output(out)

    def step(self, z: torch.Tensor, token: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: logits [B, V] and the new hidden state."""
        emb = self.embedding(token)
        x = torch.cat([emb, z.to(emb.dtype)], dim=-1).unsqueeze(1)
        out, hidden = self.decoder(x, hidden)
        return self.output(out[:, 0]), hidden

    def forward(
        self,
        seq: torch.Tensor,
        lengths: torch.Tensor,
        word_dropout: float = 0.0,
        sample: bool = True,
        static_shapes: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, μ, log σ² for ``seq`` = ``BOS x.. EOS PAD..`` with lengths n+2 (see :meth:`encode`)."""
        mu, logvar = self.encode(seq[:, 1:], lengths - 1, static_shapes)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        inputs = seq[:, :-1]
        if word_dropout > 0 and self.training:
            # Bowman et al. 2016: hide some teacher-forced tokens so the decoder
            # has to rely on z instead of only on the previous token.
            drop = (
                (torch.rand(inputs.shape, device=inputs.device) < word_dropout)
                & (inputs != PAD_ID)
                & (inputs != BOS_ID)
            )
            inputs = inputs.masked_fill(drop, UNK_ID)
        return self.decode_logits(z, inputs), mu, logvar


def cast_parameters(module: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Differentiable low-precision copies of the float parameters (fp32 master weights stay)."""
    return {k: v.to(dtype) for k, v in module.named_parameters()}


def run_in_precision(module: nn.Module, dtype: torch.dtype, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``module.method`` with its weights cast to ``dtype``; gradients reach the fp32 weights.

    Autocast is not used because on CPU it leaves ``nn.GRU`` in fp32, which runs far
    slower than with bf16 weights (``scripts/bench_train.py`` measures it).
    """
    if dtype == torch.float32:
        return getattr(module, method)(*args, **kwargs)
    params = cast_parameters(module, dtype)
    bound = _MethodCaller(module, method)
    return functional_call(bound, {f"module.{k}": v for k, v in params.items()}, args, kwargs)


class _MethodCaller(nn.Module):
    """Lets :func:`torch.func.functional_call` call a method other than ``forward``."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.method)(*args, **kwargs)


def vae_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    free_bits: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Reconstruction (nats per molecule) + β·KL; free bits floor the KL per latent dimension."""
    batch = targets.shape[0]
    recon = (
        F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum"
        )
        / batch
    )
    mu, logvar = mu.float(), logvar.float()
    kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)  # per dimension, batch mean
    kl = kl_dims.sum()
    kl_term = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
    return {"loss": recon + beta * kl_term, "recon": recon, "kl": kl}
