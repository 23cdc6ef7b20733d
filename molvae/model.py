"""The GRU sequence VAE: configuration, network, batched decoding and the user-facing :class:`MolVAE`.

Encoder: token embedding → bidirectional GRU (packed, so padding is never read)
→ μ, log σ². Decoder: GRU whose initial hidden state is a projection of z and
whose every input step is ``[embedding(token), z]`` (z at every step keeps the
decoder from ignoring the latent). Decoding is batched and drops sequences from
the batch as soon as they emit EOS.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from molvae.batching import check_batch_size, iter_batches
from molvae.checkpoint import load_weights, read_json, save_weights, write_json
from molvae.config import config_from_dict, rule, validate_config
from molvae.errors import ConfigError, InvalidMoleculeError, ModelLoadError, MolvaeError, shorten
from molvae.priors import Prior, describe_priors, load_prior
from molvae.recurrent import DecoderCells, gru_layer, native_gru_layer, run_bidirectional_gru, run_gru
from molvae.seeding import ATTEMPT_STRIDE, KeyedNoise, prior_latents, random_seed
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, get_tokenizer

log = logging.getLogger(__name__)

Strategy = Literal["greedy", "sample", "beam"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
PRETRAINED_PACKAGE_DIR = ("resources", "pretrained")


def pretrained_dir() -> Path:
    """Folder of the pretrained models shipped inside the package."""
    # A path beside this module: importlib.resources' namespace readers fail on some
    # editable installs (NotADirectoryError from MultiplexedPath).
    return Path(__file__).resolve().parent.joinpath(*PRETRAINED_PACKAGE_DIR)


def available_pretrained() -> list[str]:
    """Names of the bundled pretrained models (e.g. ``zinc-smiles``, ``zinc-selfies``)."""
    root = pretrained_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / WEIGHTS_FILE).is_file())


# ------------------------------------------------------------------------- config
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

    def validate(self) -> "ModelConfig":
        """Check types and ranges (:func:`molvae.config.validate_config`); returns ``self``."""
        validate_config(self, "model config")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelConfig":
        """Build from parsed JSON; unknown or missing fields and bad values raise :class:`ConfigError`."""
        return config_from_dict(cls, data, "model config")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    return dev


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype for ``fp32``/``bf16``/``auto`` (bf16 on CUDA and on CPUs with native bf16)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    raise ConfigError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where bf16 GEMMs beat fp32 severalfold."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


# ------------------------------------------------------------------------ network
class SequenceVAE(nn.Module):
    """Bidirectional-GRU encoder and z-conditioned GRU decoder over token ids."""

    #: Train on CPU through :mod:`molvae.recurrent` (same weights and equations as
    #: ``nn.GRU``, one weight-gradient matmul per layer instead of one per time step).
    fused_cpu_gru: bool = True
    #: ... with their time loops in the compiled kernel (:func:`molvae.recurrent.cpu_kernel`)
    #: where it builds; False keeps them in torch ops (for comparisons).
    cpu_gru_kernel: bool = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(
            c.embedding_dim, c.encoder_hidden, num_layers=c.encoder_layers, batch_first=True,
            bidirectional=True, dropout=c.encoder_dropout if c.encoder_layers > 1 else 0.0,
        )
        self.to_mu = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        self.to_logvar = nn.Linear(2 * c.encoder_hidden, c.latent_dim)
        self.z_to_hidden = nn.Linear(c.latent_dim, c.decoder_layers * c.decoder_hidden)
        self.decoder = nn.GRU(
            c.embedding_dim + c.latent_dim, c.decoder_hidden, num_layers=c.decoder_layers, batch_first=True,
            dropout=c.decoder_dropout if c.decoder_layers > 1 else 0.0,
        )
        self.output = nn.Linear(c.decoder_hidden, c.vocab_size)

    def _use_recurrent(self, x: torch.Tensor) -> bool:
        """Run the GRUs through :mod:`molvae.recurrent`: CPU training only (GPUs keep cuDNN)."""
        return self.fused_cpu_gru and x.device.type == "cpu" and torch.is_grad_enabled()

    def _cpu_layer(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gru_layer(*args, use_kernel=self.cpu_gru_kernel)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor, static_shapes: bool = False
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
        self, seq: torch.Tensor, lengths: torch.Tensor, word_dropout: float = 0.0, sample: bool = True,
        static_shapes: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, μ, log σ² for ``seq`` = ``BOS x.. EOS PAD..`` with lengths n+2 (see :meth:`encode`)."""
        mu, logvar = self.encode(seq[:, 1:], lengths - 1, static_shapes)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        inputs = seq[:, :-1]
        if word_dropout > 0 and self.training:
            # Bowman et al. 2016: hide some teacher-forced tokens so the decoder
            # has to rely on z instead of only on the previous token.
            drop = (torch.rand(inputs.shape, device=inputs.device) < word_dropout) & (inputs != PAD_ID) & (inputs != BOS_ID)
            inputs = inputs.masked_fill(drop, UNK_ID)
        return self.decode_logits(z, inputs), mu, logvar


def cast_parameters(module: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Differentiable low-precision copies of the float parameters (fp32 master weights stay)."""
    return {k: v.to(dtype) for k, v in module.named_parameters()}


def run_in_precision(module: nn.Module, dtype: torch.dtype, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``module.method`` with its weights cast to ``dtype``; gradients reach the fp32 weights.

    Autocast is not used because on CPU it leaves ``nn.GRU`` in fp32 and runs it
    about 10× slower than with bf16 weights (measured in scripts/bench_train.py).
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
    logits: torch.Tensor, targets: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float, free_bits: float = 0.0
) -> dict[str, torch.Tensor]:
    """Reconstruction (nats per molecule) + β·KL; free bits floor the KL per latent dimension."""
    batch = targets.shape[0]
    recon = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum") / batch
    mu, logvar = mu.float(), logvar.float()
    kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)  # per dimension, batch mean
    kl = kl_dims.sum()
    kl_term = torch.clamp(kl_dims, min=free_bits).sum() if free_bits > 0 else kl
    return {"loss": recon + beta * kl_term, "recon": recon, "kl": kl}


# ----------------------------------------------------------------------- decoding
class DecoderStepper:
    """Step-by-step decoder built from a :class:`SequenceVAE`'s weights, for inference.

    Equivalent to ``net.step`` but faster: the first layer's input projection is
    split into a per-token table (embedding × W_ih, computed once) and a per-latent
    term (z × W_ih, computed once per molecule), so each step costs one recurrent
    matmul per layer plus the layers above. Matmuls run in ``dtype`` (bf16 on AMX
    CPUs/GPUs) while the hidden state and gate arithmetic stay in fp32; on CPU each
    layer's gate arithmetic runs in one pass of the compiled kernel
    (:class:`molvae.recurrent.DecoderCells`) unless the step is compiled. Plain
    matmuls also keep working when the batch shrinks as sequences finish.
    """

    def __init__(self, net: SequenceVAE, dtype: torch.dtype = torch.float32, compile: bool = False):
        c = net.config
        self.dtype = dtype
        self.compile = compile
        self._temperatures: dict[float, torch.Tensor] = {}
        self.layers = c.decoder_layers
        self.hidden = c.decoder_hidden
        gru = net.decoder
        emb_dim = c.embedding_dim
        with torch.no_grad():
            w0 = gru.weight_ih_l0.float()
            self.token_table = (net.embedding.weight.float() @ w0[:, :emb_dim].T + gru.bias_ih_l0.float())
            self.w_z = w0[:, emb_dim:].T.contiguous().to(dtype)
            self.w_ih = [None] + [getattr(gru, f"weight_ih_l{k}").T.contiguous().to(dtype) for k in range(1, self.layers)]
            self.b_ih = [None] + [getattr(gru, f"bias_ih_l{k}").float() for k in range(1, self.layers)]
            self.w_hh = [getattr(gru, f"weight_hh_l{k}").T.contiguous().to(dtype) for k in range(self.layers)]
            self.b_hh = [getattr(gru, f"bias_hh_l{k}").float() for k in range(self.layers)]
            self.w_out = net.output.weight.T.contiguous().to(dtype)
            self.b_out = net.output.bias.float()
            self.w_init = net.z_to_hidden.weight.T.contiguous().float()
            self.b_init = net.z_to_hidden.bias.float()
            # Eager steps on CPU run each layer's gates through the compiled kernel.
            self.cells = DecoderCells.build(self.w_ih, self.b_ih, self.w_hh, self.b_hh)

    def start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-latent input term [B, 3H], initial hidden [L, B, H]) for latents ``z``."""
        z = z.float()
        h = torch.tanh(z @ self.w_init + self.b_init)
        h = h.view(z.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()
        return (z.to(self.dtype) @ self.w_z).float(), h

    def step(self, zterm: torch.Tensor, token: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, V] (fp32) and the new hidden state."""
        return self._run(_gru_stack_step, _compiled_stack_step, self._weights(zterm, token, hidden))

    def next_token(self, zterm: torch.Tensor, token: torch.Tensor, hidden: torch.Tensor,
                   temperature: float | None = None, noise: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next token [B] (argmax, or a draw at ``temperature``) and the new hidden state.

        A draw needs ``noise``: Exp(1) variates [B, V] (:class:`molvae.seeding.KeyedNoise`).
        It is the draw :func:`torch.multinomial` makes (an exponential race on the
        probabilities), done inside the step so that a compiled step fuses it with the
        output layer.
        """
        if temperature is not None and noise is None:
            raise ValueError("a draw at a temperature needs its Exp(1) noise")
        args = (*self._weights(zterm, token, hidden), noise if temperature is not None else None,
                self._temperature(temperature))
        return self._run(_gru_stack_next_token, _compiled_next_token, args)

    def _temperature(self, value: float | None) -> torch.Tensor:
        # A tensor, not a float: torch.compile would specialize (recompile) on each float value.
        # Made once per value, not at every step (on a GPU each would be a host-to-device copy).
        key = 1.0 if value is None else float(value)
        if key not in self._temperatures:
            self._temperatures[key] = torch.tensor(key, device=self.token_table.device)
        return self._temperatures[key]

    def _weights(self, zterm: torch.Tensor, token: torch.Tensor, hidden: torch.Tensor) -> tuple:
        return (self.token_table, token, zterm, hidden, self.w_ih, self.b_ih, self.w_hh, self.b_hh,
                self.w_out, self.b_out, self.dtype)

    def _run(self, eager, compiled, args: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        if self.compile and not _COMPILE_FAILED:
            try:
                return compiled()(*args)  # no kernel cells: the compiler fuses the gates itself
            except Exception as exc:
                # Compiling needs a C++ toolchain; decoding must not depend on one. Only
                # torch's compiler errors fall back; anything else is a real error.
                if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise
                _COMPILE_FAILED.append(exc)
                log.warning("torch.compile of the decoder step failed (%s: %s); decoding without it",
                            type(exc).__name__, shorten(str(exc), 300))
        return eager(*args, cells=self.cells)


def _gru_stack_step(token_table: torch.Tensor, token: torch.Tensor, zterm: torch.Tensor, hidden: torch.Tensor,
                    w_ih: list, b_ih: list, w_hh: list, b_hh: list, w_out: torch.Tensor, b_out: torch.Tensor,
                    dtype: torch.dtype, cells: DecoderCells | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step through the stacked GRU and the output layer (matmuls in ``dtype``, state in fp32).

    ``cells``: run the layers through :class:`molvae.recurrent.DecoderCells` (eager CPU steps).
    """
    # F.embedding (index_select) is 2x faster than advanced indexing here, and compiled it fuses with the add.
    x_gates = F.embedding(token, token_table) + zterm
    if cells is not None:
        out, hidden = cells.step(x_gates, hidden)
        return (out @ w_out).float() + b_out, hidden  # out is already in the compute dtype
    new = []
    out = hidden[0]
    for k in range(len(w_hh)):
        h = hidden[k]
        if k > 0:
            x_gates = (out.to(dtype) @ w_ih[k]).float() + b_ih[k]
        h_gates = (h.to(dtype) @ w_hh[k]).float() + b_hh[k]
        xr, xz, xn = x_gates.chunk(3, dim=1)
        hr, hz, hn = h_gates.chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        u = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        out = n + u * (h - n)
        new.append(out)
    logits = (out.to(dtype) @ w_out).float() + b_out
    return logits, torch.stack(new)


def _gru_stack_next_token(token_table: torch.Tensor, token: torch.Tensor, zterm: torch.Tensor, hidden: torch.Tensor,
                          w_ih: list, b_ih: list, w_hh: list, b_hh: list, w_out: torch.Tensor, b_out: torch.Tensor,
                          dtype: torch.dtype, noise: torch.Tensor | None, temperature: torch.Tensor,
                          cells: DecoderCells | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gru_stack_step`, then the next token: argmax without ``noise``, else argmax(p / noise)."""
    logits, hidden = _gru_stack_step(token_table, token, zterm, hidden, w_ih, b_ih, w_hh, b_hh, w_out, b_out, dtype,
                                     cells)
    if noise is None:
        return logits.argmax(-1), hidden
    # argmax(p_i / E_i) with E_i ~ Exp(1) picks i with probability p_i: torch.multinomial's own method.
    return (torch.softmax(logits / temperature, dim=-1) / noise).argmax(-1), hidden


_COMPILE_FAILED: list = []  # the error, once compiling has failed in this process


@functools.cache
def _compiled_stack_step():
    """:func:`_gru_stack_step` under ``torch.compile`` (built once per process; dynamic batch size).

    Fusing the gate arithmetic and the casts into one kernel per layer is what pays
    on CPU: the matmuls are already oneDNN's. The first call compiles (about 45 s
    on 2 cores, a few seconds once torch's on-disk cache holds the kernels).
    """
    return torch.compile(_gru_stack_step, dynamic=True)


@functools.cache
def _compiled_next_token():
    """:func:`_gru_stack_next_token` under ``torch.compile`` (the token lookup and the draw fused in too)."""
    return torch.compile(_gru_stack_next_token, dynamic=True)


#: Temperatures below this decode greedily: a draw there is the most likely token but for
#: near-ties in logit, and far below it logits / T overflows float32 into NaN probabilities.
GREEDY_BELOW = 1e-6


@torch.no_grad()
def generate(
    net: SequenceVAE,
    z: torch.Tensor,
    strategy: Strategy = "greedy",
    temperature: float = 1.0,
    max_length: int | None = None,
    beam_width: int = 5,
    seed: int | None = None,
    keys: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    compile: bool = False,
) -> np.ndarray:
    """Token ids [B, max_length] (PAD after EOS) decoded from latents ``z`` [B, D].

    A sampled decode of row ``i`` is a function of (``z[i]``, ``seed``, ``keys[i]``)
    alone (default keys: ``0..B-1``; no seed: one drawn from torch's global
    generator), whatever else is in the batch: see :mod:`molvae.seeding`.
    ``compile=True`` runs each step through ``torch.compile`` (see :func:`_compiled_stack_step`).
    """
    max_length = max_length or net.config.max_length
    stepper = DecoderStepper(net, dtype, compile=compile)
    if strategy == "beam":
        return _beam_search(stepper, z, beam_width, max_length, net.config.vocab_size)
    if strategy not in ("greedy", "sample"):
        raise ConfigError(f"unknown decoding strategy {strategy!r}; choose greedy, sample or beam")
    if strategy == "sample" and not 0 < temperature < math.inf:
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature}")
    if strategy == "sample" and temperature < GREEDY_BELOW:
        strategy = "greedy"  # the draw's limit as the temperature falls, reached before logits / T overflows
    batch = z.shape[0]
    noise = streams = None
    if strategy == "sample":
        if keys is None:
            keys = torch.arange(batch)
        elif keys.shape != (batch,):
            raise ValueError(f"keys must have shape [{batch}], got {tuple(keys.shape)}")
        noise = KeyedNoise(random_seed() if seed is None else seed)
        streams = noise.stream(keys.to(z.device))
    n_tokens = net.config.vocab_size
    out = torch.full((batch, max_length), PAD_ID, dtype=torch.long)
    rows = torch.arange(batch)  # the output row of each row still in the batch
    zterm, hidden = stepper.start(z)
    token = torch.full((batch,), BOS_ID, dtype=torch.long, device=z.device)
    running = torch.ones(batch, dtype=torch.bool, device=z.device)
    for t in range(max_length - 1):
        if noise is None:
            token, hidden = stepper.next_token(zterm, token, hidden)
        else:
            token, hidden = stepper.next_token(zterm, token, hidden, temperature,
                                               noise.exponential(streams, t, n_tokens))
        # Finished rows kept as padding write PAD, which is already there.
        token = torch.where(running, token, PAD_ID)
        out[rows, t] = token.cpu()
        running &= token != EOS_ID
        n_running = int(running.sum())
        if n_running == 0:
            break
        size = decode_rows(n_running)
        if size < len(rows):
            # Drop finished rows so later steps only compute what is still being written;
            # running rows first, then finished ones as padding up to the size.
            keep = torch.argsort((~running).to(torch.uint8), stable=True)[:size]
            rows = rows[keep.cpu()]
            hidden, zterm, token, running = hidden[:, keep], zterm[keep], token[keep], running[keep]
            if streams is not None:
                streams = streams[keep]
    return out.numpy()


def decode_rows(n_running: int) -> int:
    """The batch size a decoding step runs at while ``n_running`` rows are still being written.

    Rounded up (powers of two to 64, then multiples of 64) so that a decode meets a
    few dozen batch sizes, not one per count of running rows: oneDNN caches a
    primitive for each shape it runs, and on CPU in bf16 ``molvae decode``'s peak
    grew with the input (40,000 MOSES latents: 1.5 GB, 160,000: 2.1 GB; now 0.6 and
    0.7 GB, and 10% faster; docs/PERFORMANCE.md, session 26).
    """
    if n_running <= 64:
        return 1 << (n_running - 1).bit_length()
    return -(-n_running // 64) * 64


def _beam_search(stepper: DecoderStepper, z: torch.Tensor, width: int, max_length: int, vocab: int) -> np.ndarray:
    """Beam search; returns the highest log-probability finished sequence per latent."""
    if width < 1:
        raise ConfigError(f"beam width must be >= 1, got {width}")
    batch, device = z.shape[0], z.device
    zterm, hidden = stepper.start(z.repeat_interleave(width, 0))
    token = torch.full((batch * width,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((batch, width), -math.inf, device=device)
    scores[:, 0] = 0.0
    seqs = torch.full((batch * width, max_length), PAD_ID, dtype=torch.long, device=device)
    finished = torch.zeros(batch * width, dtype=torch.bool, device=device)
    for t in range(max_length - 1):
        logits, hidden = stepper.step(zterm, token, hidden)
        logp = torch.log_softmax(logits, -1)
        # A finished beam only extends with PAD at no cost, so it keeps its score.
        logp[finished] = -math.inf
        logp[finished, PAD_ID] = 0.0
        cand = (scores.view(-1, 1) + logp).view(batch, width * vocab)
        scores, idx = cand.topk(width, dim=-1)
        beam = (idx // vocab + torch.arange(batch, device=device).unsqueeze(1) * width).view(-1)
        token = (idx % vocab).view(-1)
        seqs, hidden, finished = seqs[beam], hidden[:, beam], finished[beam]
        seqs[:, t] = token
        finished = finished | (token == EOS_ID)
        if bool(finished.all()):
            break
    best = scores.argmax(-1) + torch.arange(batch, device=device) * width
    return seqs[best].cpu().numpy()


# ------------------------------------------------------------------- user-facing
#: Prior latents drawn at a time by :meth:`MolVAE.iter_sample` (32 MB at latent size 128).
SAMPLE_BLOCK = 65_536
#: Molecules above which :meth:`MolVAE.token_ids_many` canonicalizes in worker processes by default.
PARALLEL_CANONICALIZE = 10_000


class MolVAE:
    """A trained VAE with its vocabulary: SMILES in, latents out, SMILES back.

    >>> model = MolVAE.load("runs/zinc-smiles")
    >>> z = model.encode(["CCO", "c1ccccc1"])
    >>> model.decode(z)
    """

    def __init__(self, net: SequenceVAE, vocab: Vocabulary, device: str | torch.device | None = "auto",
                 precision: str = "fp32"):
        if len(vocab) != net.config.vocab_size:
            raise ModelLoadError(f"vocabulary has {len(vocab)} tokens but the model expects {net.config.vocab_size}")
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.vocab = vocab
        self.config = net.config
        self.tokenizer = get_tokenizer(net.config.representation)
        self.dtype = resolve_dtype(precision, self.device)
        self._infer_net: SequenceVAE | None = None
        # torch.compile the decoding step: pays off from a few thousand molecules on CPU
        # (docs/PERFORMANCE.md); the first decode then compiles for tens of seconds.
        self.compile_decoder = False
        self._has_stereo: bool | None = None
        self.source: str | None = None  # directory the model was loaded from
        self.card: dict[str, Any] | None = None  # model card of a bundled model
        self._priors: dict[str, Prior] = {}  # loaded priors by the name they were asked for

    def __repr__(self) -> str:
        # A bundled model by its name, as MolVAE.pretrained takes it, not its path inside site-packages.
        source = self.card.get("name", self.source) if self.card is not None else self.source
        where = f"{source!r}: " if source else ""
        return (f"MolVAE({where}{self.config.representation.upper()}, {self.config.vocab_size} tokens, "
                f"latent {self.config.latent_dim}, {self.n_parameters / 1e6:.2f}M parameters, {self.device}, "
                f"{str(self.dtype).removeprefix('torch.')})")

    # ---- persistence
    @classmethod
    def pretrained(cls, name: str = "zinc-smiles", device: str | torch.device | None = "auto",
                   precision: str = "fp32") -> "MolVAE":
        """Load a model bundled with the package: ``"zinc-smiles"`` or ``"zinc-selfies"``.

        Both were trained on the MOSES ZINC subset; their model cards are in ``docs/MODEL_CARD.md``
        and in each model's ``config.json`` (``card`` section).
        """
        names = available_pretrained()
        if name not in names:
            raise ModelLoadError(f"no pretrained model named {name!r} (bundled: {', '.join(names) or 'none'})")
        return cls._load_dir(pretrained_dir() / name, device, precision)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = "auto", precision: str = "fp32") -> "MolVAE":
        """Load a model directory (config.json, vocab.json, model.safetensors) or a bundled model by name.

        A string that names a bundled model (``"zinc-smiles"``) is that model, even where the
        working directory holds a file or folder of the same name (a warning says how to reach
        it: ``./zinc-smiles``); a :class:`~pathlib.Path` is always a directory.
        """
        if isinstance(path, str) and path in available_pretrained():
            if Path(path).exists():
                log.warning("model %r is the bundled model; the %s %s in this directory is not used (give ./%s "
                            "for it)", path, "folder" if Path(path).is_dir() else "file", path, path)
            return cls.pretrained(path, device=device, precision=precision)
        return cls._load_dir(Path(path), device, precision)

    @classmethod
    def _load_dir(cls, path: Path, device: str | torch.device | None, precision: str) -> "MolVAE":
        if not path.exists():
            names = available_pretrained()
            hint = f" (bundled pretrained models: {', '.join(names)})" if names else ""
            raise ModelLoadError(f"{path}: model directory not found{hint}")
        if not path.is_dir():
            raise ModelLoadError(f"{path}: expected a model directory (with {CONFIG_FILE}, {VOCAB_FILE}, {WEIGHTS_FILE})")
        raw = read_json(path / CONFIG_FILE, "model config")
        model_cfg = raw.get("model") if isinstance(raw, dict) else None
        if model_cfg is None:
            raise ModelLoadError(f"{path / CONFIG_FILE}: no 'model' section")
        try:
            config = ModelConfig.from_dict(model_cfg)
            vocab = Vocabulary.from_dict(read_json(path / VOCAB_FILE, "vocabulary"))
        except ConfigError as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
        if len(vocab) != config.vocab_size:
            raise ModelLoadError(
                f"{path}: vocabulary mismatch: {VOCAB_FILE} has {len(vocab)} tokens, {CONFIG_FILE} says vocab_size={config.vocab_size}"
            )
        net = SequenceVAE(config)
        state = load_weights(path / WEIGHTS_FILE)
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ModelLoadError(f"{path / WEIGHTS_FILE}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
        for key, tensor in state.items():
            if tensor.shape != expected[key].shape:
                raise ModelLoadError(
                    f"{path / WEIGHTS_FILE}: {key} has shape {tuple(tensor.shape)}, config implies {tuple(expected[key].shape)}"
                )
            if not torch.isfinite(tensor.float()).all():
                raise ModelLoadError(f"{path / WEIGHTS_FILE}: {key} contains NaN/Inf")
        # Bundled weights are stored in half precision; inference runs from fp32 copies.
        net.load_state_dict({k: v.float() for k, v in state.items()})
        model = cls(net, vocab, device=device, precision=precision)
        model.source = str(path)
        model.card = raw.get("card") if isinstance(raw.get("card"), dict) else None
        return model

    def save(self, path: str | Path, extra_config: dict[str, Any] | None = None,
             weights_dtype: torch.dtype = torch.float32) -> None:
        """Write weights (safetensors), config.json and vocab.json atomically.

        ``weights_dtype=torch.float16`` halves the file (used for the bundled models); the
        weights are checked to fit the format's range first.
        """
        if weights_dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise MolvaeError(f"weights can be stored as float32, float16 or bfloat16, not {weights_dtype}")
        state = self.net.state_dict()
        if weights_dtype != torch.float32:
            limit = torch.finfo(weights_dtype).max
            for key, tensor in state.items():
                if tensor.abs().max().item() >= limit:
                    raise MolvaeError(f"{key} does not fit {weights_dtype} (max |w| {tensor.abs().max().item():.3g})")
            state = {k: v.to(weights_dtype) for k, v in state.items()}
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / VOCAB_FILE, self.vocab.to_dict())
        write_json(path / CONFIG_FILE, {"model": self.config.to_dict(), **(extra_config or {})})
        save_weights(path / WEIGHTS_FILE, state)

    # ---- inference helpers
    def _inference_net(self) -> SequenceVAE:
        if self.dtype == torch.float32:
            return self.net
        if self._infer_net is None:
            import copy

            self._infer_net = copy.deepcopy(self.net).to(self.dtype).eval()
        return self._infer_net

    @property
    def has_stereo(self) -> bool:
        """Whether the vocabulary can spell stereochemistry (``@``, ``/``, ``\\``).

        A model trained on MOSES cannot: its inputs are encoded as their 2D graph
        (non-isomeric canonical SMILES), exactly like its training data.
        """
        if self._has_stereo is None:
            self._has_stereo = any("@" in t or "/" in t or "\\" in t for t in self.vocab.tokens[4:])
        return self._has_stereo

    def summary(self) -> dict[str, Any]:
        """What this model is and how it was made (JSON-serializable; what ``molvae info`` prints).

        ``model``: name (bundled models), source folder, representation, vocabulary size, whether
        it spells stereochemistry, architecture, parameters, weights digest. ``training``: the
        data, epochs done and planned, steps, hours, hardware, the parent of a fine-tuned run,
        and whether a run directory holds a checkpoint to resume from (``molvae train --resume``).
        ``metrics``: the last epoch's figures. ``priors``: the default prior and the stored ones
        (:func:`molvae.priors.describe_priors`). Read from the bundled model card or from the
        run directory's config.json, metrics.csv, data_summary.json and run_info.json.
        """
        from molvae.training import METRICS_FILE, RESUME_FILE

        cfg = self.config
        model = {"name": (self.card or {}).get("name"), "source": self.source, "bundled": self.card is not None,
                 "representation": cfg.representation, "vocab_size": cfg.vocab_size, "stereo": self.has_stereo,
                 "max_length": cfg.max_length, "architecture": cfg.to_dict(), "parameters": self.n_parameters,
                 "weights_sha256": self.weights_sha256()}
        if self.card is not None:
            card = self.card
            training = {"data": card.get("training_data"), "data_summary": card.get("data_summary"),
                        "epochs": card.get("total_epochs", card.get("epochs")),
                        "steps": card.get("steps"), "hours": card.get("total_training_hours", card.get("training_hours")),
                        "hardware": card.get("hardware"),
                        "parent": (card.get("initialized_from") or {}).get("model")}
            return {"model": model, "training": training, "metrics": card.get("final_epoch_metrics"),
                    "priors": describe_priors(self.source)}
        folder = Path(self.source) if self.source else None

        def read(name: str) -> Any:
            return read_json(folder / name, name) if folder is not None and (folder / name).is_file() else None

        config = read(CONFIG_FILE) or {}
        planned = config.get("training") if isinstance(config.get("training"), dict) else {}
        metrics = None
        if folder is not None and (folder / METRICS_FILE).is_file():
            import pandas as pd

            rows = pd.read_csv(folder / METRICS_FILE)
            # NaN (a figure the run did not compute) as None: JSON has no NaN.
            metrics = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                       for k, v in rows.iloc[-1].items()} if len(rows) else None
        info = read("run_info.json") or {}
        training = {"data": planned.get("data"), "data_summary": read("data_summary.json"),
                    "epochs": int(metrics["epoch"]) if metrics else 0,
                    "epochs_planned": planned.get("epochs"), "steps": int(metrics["step"]) if metrics else None,
                    "hours": round(float(metrics["elapsed_s"]) / 3600, 2) if metrics and "elapsed_s" in metrics else None,
                    "hardware": info.get("hardware"), "parent": (info.get("init_from") or {}).get("model"),
                    "resumable": folder is not None and (folder / RESUME_FILE).is_file()}
        return {"model": model, "training": training, "metrics": metrics, "priors": describe_priors(self.source)}

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file the model was loaded from (None for a model built in memory).

        Names the exact weights in run records: a fine-tuned run's parent, an optimization's model.
        """
        import hashlib

        weights = Path(self.source) / WEIGHTS_FILE if self.source else None
        if weights is None or not weights.is_file():
            return None
        return hashlib.sha256(weights.read_bytes()).hexdigest()

    def canonical(self, smiles: str) -> str | None:
        """``smiles`` as this model reads it: RDKit canonical, without stereochemistry unless :attr:`has_stereo`.

        Two molecules are the same to the model when these agree (None where RDKit cannot parse it).
        """
        from molvae.chemistry import canonicalize

        return canonicalize(smiles, isomeric=self.has_stereo)

    def token_ids(self, smiles: str) -> list[int]:
        """Canonicalize one SMILES and map it to token ids (raises on bad input).

        Stereochemistry is dropped when the model has no stereo tokens (see :attr:`has_stereo`).
        """
        canonical = self.canonical(smiles) if isinstance(smiles, str) else None
        return self._canonical_ids(smiles, canonical)

    def token_ids_many(self, smiles: Sequence[str], n_jobs: int | None = None) -> list[list[int] | MolvaeError]:
        """:meth:`token_ids` of each input, or the error it raises, in input order.

        RDKit canonicalization dominates encoding time (the network is 10-100x faster
        on a GPU), so it runs in ``n_jobs`` worker processes: by default all cores for
        more than :data:`PARALLEL_CANONICALIZE` molecules, below which starting the
        workers costs more than it saves.
        """
        from molvae.chemistry import canonicalize_many

        smiles = list(smiles)
        if n_jobs is None:
            n_jobs = -1 if len(smiles) > PARALLEL_CANONICALIZE else 1
        canonical = canonicalize_many(smiles, n_jobs=n_jobs, isomeric=self.has_stereo)
        out: list[list[int] | MolvaeError] = []
        for s, c in zip(smiles, canonical):
            try:
                out.append(self._canonical_ids(s, c))
            except MolvaeError as exc:
                # Without its traceback: the frames would keep this whole batch alive in a reference cycle.
                out.append(exc.with_traceback(None))
        return out

    def _canonical_ids(self, smiles: Any, canonical: str | None) -> list[int]:
        """Token ids of ``canonical``, the canonical form of the input ``smiles`` (None: invalid)."""
        if canonical is None:
            raise InvalidMoleculeError(f"invalid SMILES {shorten(str(smiles))} (RDKit cannot parse it)")
        tokens = self.tokenizer.tokenize(self.tokenizer.from_smiles(canonical))
        # +2 for BOS/EOS: the model never saw longer molecules (training drops them), so its code would be noise.
        if len(tokens) + 2 > self.config.max_length:
            raise InvalidMoleculeError(f"molecule {shorten(smiles)} has {len(tokens)} tokens; this model handles "
                                       f"at most {self.config.max_length - 2}")
        return self.vocab.encode(tokens, molecule=smiles)

    def encode(
        self, smiles: Sequence[str], sample: bool = False, batch_size: int = 512, errors: str = "raise",
        seed: int | None = None, n_jobs: int | None = None,
    ) -> np.ndarray:
        """Latent codes [N, D] (float32): the posterior mean, or a sample with ``sample=True``.

        ``errors="raise"`` stops at the first invalid molecule or unknown token with
        an error naming it; ``errors="nan"`` gives NaN rows for those instead.
        ``seed``: of the posterior samples (see :meth:`encode_ids`).
        ``n_jobs``: RDKit worker processes (see :meth:`token_ids_many`).
        """
        if isinstance(smiles, str):
            raise TypeError("encode expects a list of SMILES, not a single string")
        if errors not in ("raise", "nan"):
            raise ConfigError(f"errors must be 'raise' or 'nan', got {errors!r}")
        ids: list[list[int] | None] = []
        for item in self.token_ids_many(smiles, n_jobs=n_jobs):
            if isinstance(item, MolvaeError):
                if errors == "raise":
                    raise item
                item = None
            ids.append(item)
        return self.encode_ids(ids, sample=sample, batch_size=batch_size, seed=seed)

    @torch.no_grad()
    def encode_ids(self, ids: Sequence[list[int] | None], sample: bool = False, batch_size: int = 512,
                   seed: int | None = None, first_key: int = 0) -> np.ndarray:
        """Encode already-tokenized molecules (None → NaN row); batches sorted by length.

        With ``sample=True`` molecule ``i`` gets ``mu + sigma * eps`` where ``eps`` is row
        ``first_key + i`` of :func:`molvae.seeding.prior_latents` for ``seed`` (drawn from
        torch's global generator when None): the same sample whatever the batch size, and
        a file encoded in chunks (``first_key`` = the chunk's first row) samples as a whole.
        """
        out = np.full((len(ids), self.config.latent_dim), np.nan, dtype=np.float32)
        eps = None
        if sample:
            eps = torch.from_numpy(prior_latents(len(ids), self.config.latent_dim,
                                                 random_seed() if seed is None else seed, start=first_key))
        # One flat token array and vectorized padding: per-molecule Python work capped GPU encoding at ~50k mol/s.
        n_tokens = np.fromiter((-1 if x is None else len(x) for x in ids), dtype=np.int64, count=len(ids))
        good = np.flatnonzero(n_tokens >= 0)
        # Longest batches first: each later batch fits in the blocks the earlier ones freed. In
        # ascending order every batch needed larger blocks than any freed so far, and with
        # molvae's allocator settings (molvae.runtime), which keep freed memory, `molvae encode
        # --precision bf16` of 400,000 MOSES molecules peaked at 2.4 GB (1.0-1.5 GB longest
        # first; docs/PERFORMANCE.md, session 26). An out-of-memory batch size also shows on the first batch.
        good = good[np.argsort(-n_tokens[good], kind="stable")]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(np.maximum(n_tokens, 0), out=offsets[1:])
        # A trailing PAD: indices clamped past the last molecule land on it, even when no molecule has a token.
        tokens_then_pad = itertools.chain((t for x in ids if x is not None for t in x), (PAD_ID,))
        flat_t = torch.from_numpy(np.fromiter(tokens_then_pad, dtype=np.int32, count=int(offsets[-1]) + 1))
        net = self._inference_net()
        # bf16 on CPU: packed sequences give oneDNN a new GRU shape for nearly every batch,
        # and its primitive caches kept growing with the library (400,000 MOSES molecules:
        # 630 -> 1,405 MB; fixed shapes: flat at 0.54 GB, 6% slower; docs/PERFORMANCE.md, session 25).
        static = self.device.type == "cpu" and self.dtype != torch.float32

        def encode_batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            chunk = good[start:stop]
            n = torch.from_numpy(n_tokens[chunk])
            width = int(n.max()) + 1
            cols = torch.arange(width)
            # Gather a full rectangle (indices past a row's end clamped), then blank the padding.
            index = (torch.from_numpy(offsets[chunk])[:, None] + cols).clamp_(max=len(flat_t) - 1)
            tokens = torch.where(cols < n[:, None], flat_t[index], PAD_ID).long()
            tokens[torch.arange(len(chunk)), n] = EOS_ID
            mu, logvar = net.encode(tokens.to(self.device), n + 1, static_shapes=static)
            z = mu.float()
            if eps is not None:
                z = z + eps[torch.from_numpy(chunk)].to(self.device) * torch.exp(0.5 * logvar.float())
            return chunk, z.cpu().numpy()

        for chunk, z in iter_batches(encode_batch, len(good), batch_size, "encode"):
            out[chunk] = z
        return out

    def fit_latents(
        self, smiles: Sequence[str], max_steps: int = 400, lr: float = 0.05, check_every: int = 25,
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Latent codes [N, D] whose greedy decode is each input molecule, where one can be found.

        The encoder's posterior mean often decodes to a relative of a molecule unlike
        the training data (a drug outside MOSES's weight window, say). Starting from
        that mean, this runs Adam on z alone to lower the decoder's teacher-forced
        negative log-likelihood of the molecule's tokens (the weights stay fixed), and
        stops for each molecule as soon as its greedy decode is the input (checked every
        ``check_every`` steps). Molecules the mean already reconstructs keep the mean.

        Returns the codes and one dict per molecule: ``reconstructed`` (the greedy
        decode of the returned code is the input), ``steps`` (optimizer steps taken;
        0 = the mean), ``nll`` (teacher-forced NLL of the molecule at the returned code,
        nats) and ``distance`` (from the posterior mean). A molecule that is still not
        reconstructed after ``max_steps`` gets the last code, flagged
        ``reconstructed=False``. Fitted codes can lie far outside the prior (norms up
        to about 50 with the bundled models, against about sqrt(D) for prior draws).
        Raises like :meth:`encode` for invalid molecules and unknown tokens.
        """
        if isinstance(smiles, str):
            raise TypeError("fit_latents expects a list of SMILES, not a single string")
        for name, value in (("max_steps", max_steps), ("check_every", check_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {lr!r}")
        ids = [self.token_ids(s) for s in smiles]
        n = len(ids)
        if n == 0:
            return np.empty((0, self.config.latent_dim), dtype=np.float32), []
        targets = [self.canonical(s) for s in smiles]
        mu = self.encode_ids(ids)

        def reconstructed(z: np.ndarray) -> np.ndarray:
            decoded = self.decode(z, strategy="greedy")
            return np.array([self.canonical(d) == t if d else False
                             for d, t in zip(decoded, targets)])

        length = max(len(x) for x in ids) + 2
        seq = torch.full((n, length), PAD_ID, dtype=torch.long)
        for row, x in enumerate(ids):
            seq[row, : len(x) + 2] = torch.tensor([BOS_ID, *x, EOS_ID])
        seq = seq.to(self.device)
        inputs, target_ids = seq[:, :-1], seq[:, 1:]

        def nll(z: torch.Tensor) -> torch.Tensor:
            """Teacher-forced NLL of each molecule [N] (nats) given its code."""
            logits = self.net.decode_logits(z, inputs).float()
            return F.cross_entropy(logits.transpose(1, 2), target_ids, ignore_index=PAD_ID, reduction="none").sum(dim=1)

        best = mu.copy()
        done = reconstructed(mu)
        steps = np.zeros(n, dtype=np.int64)
        z = torch.tensor(mu, device=self.device, requires_grad=True)
        optimizer = torch.optim.Adam([z], lr=lr)
        step = 0
        # Only z is optimized: torch.autograd.grad leaves the weights' .grad untouched.
        # cuDNN's RNN backward refuses eval mode, and eval mode (no dropout) is wanted here.
        while not done.all() and step < max_steps:
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
                (z.grad,) = torch.autograd.grad(nll(z).sum(), [z])
            z.grad[torch.as_tensor(done, device=self.device)] = 0.0
            optimizer.step()
            step += 1
            if step % check_every == 0 or step == max_steps:
                current = z.detach().cpu().numpy()
                now = reconstructed(current) & ~done
                best[now] = current[now]
                steps[now] = step
                done |= now
        last = z.detach().cpu().numpy()
        best[~done] = last[~done]
        steps[~done] = step
        with torch.no_grad():
            per_mol = nll(torch.as_tensor(best, device=self.device)).cpu().numpy()
        info = [{"reconstructed": bool(done[i]), "steps": int(steps[i]), "nll": float(per_mol[i]),
                 "distance": float(np.linalg.norm(best[i] - mu[i]))} for i in range(n)]
        return best.astype(np.float32), info

    @torch.no_grad()
    def decode(
        self, z: np.ndarray | torch.Tensor, strategy: Strategy = "greedy", temperature: float = 1.0,
        beam_width: int = 5, batch_size: int = 1024, max_length: int | None = None, seed: int | None = None,
        keys: Sequence[int] | np.ndarray | None = None,
    ) -> list[str]:
        """Decode latents [N, D] to SMILES strings (empty string when nothing valid came out for SELFIES).

        Strings are returned as generated, not validated: pass them to
        :mod:`molvae.chemistry` to check validity. A sampled decode of latent ``i``
        depends only on ``z[i]``, ``seed`` and ``keys[i]`` (default ``i``), not on
        ``batch_size`` or the other latents (:mod:`molvae.seeding`).
        """
        return [s for batch in self.iter_decode(z, strategy, temperature, beam_width, batch_size, max_length, seed,
                                                keys)
                for s in batch]

    def iter_decode(
        self, z: np.ndarray | torch.Tensor, strategy: Strategy = "greedy", temperature: float = 1.0,
        beam_width: int = 5, batch_size: int = 1024, max_length: int | None = None, seed: int | None = None,
        keys: Sequence[int] | np.ndarray | None = None,
    ) -> Iterator[list[str]]:
        """:meth:`decode`, one list of strings per batch (so callers can write them out as they come)."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z).float()
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ConfigError(f"latents must have shape [N, {self.config.latent_dim}], got {tuple(z.shape)}")
        key_ids = torch.arange(z.shape[0]) if keys is None else torch.as_tensor(np.asarray(keys, dtype=np.int64))
        if key_ids.shape != (z.shape[0],):
            raise ConfigError(f"keys must hold one integer per latent ({z.shape[0]}), got shape {tuple(key_ids.shape)}")
        if strategy == "sample" and seed is None:
            seed = random_seed()  # one seed for the whole call, so that batches draw different streams

        @torch.no_grad()
        def decode_batch(start: int, stop: int) -> list[str]:
            ids = generate(self.net, z[start:stop].to(self.device), strategy, temperature, max_length, beam_width,
                           seed, key_ids[start:stop], self.dtype, compile=self.compile_decoder)
            return self.ids_to_smiles(ids)

        yield from iter_batches(decode_batch, z.shape[0], batch_size, "decode")

    def decode_valid(
        self, z: np.ndarray | torch.Tensor, attempts: int = 10, temperature: float = 0.5, seed: int | None = 0,
        batch_size: int = 1024, keys: Sequence[int] | np.ndarray | None = None,
    ) -> list[str | None]:
        """The most frequent valid molecule (canonical SMILES) over several decodes of each latent, or None.

        Decodes greedily once, then ``attempts - 1`` times by sampling at a low
        ``temperature`` (all attempts in one batch); ties go to the greedy decode.
        Attempt ``k`` of latent ``i`` draws stream ``keys[i] + k * ATTEMPT_STRIDE``, so
        the answer for a latent does not depend on the other latents or on ``batch_size``.
        """
        from collections import Counter

        from molvae.chemistry import canonicalize

        if attempts < 1:
            raise ConfigError(f"attempts must be >= 1, got {attempts}")
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z).float()
        n = z.shape[0]
        base = np.arange(n, dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
        decoded = self.decode(z, strategy="greedy", batch_size=batch_size)
        if attempts > 1:
            repeated = z.repeat(attempts - 1, 1)
            attempt_keys = np.concatenate([base + k * ATTEMPT_STRIDE for k in range(1, attempts)])
            decoded += self.decode(repeated, strategy="sample", temperature=temperature, seed=seed,
                                   batch_size=batch_size, keys=attempt_keys)
        result: list[str | None] = []
        for i in range(n):
            # Greedy decode first in each Counter, so most_common breaks ties in its favour.
            counts = Counter(c for c in (canonicalize(decoded[i + k * n]) for k in range(attempts)) if c is not None)
            result.append(counts.most_common(1)[0][0] if counts else None)
        return result

    def ids_to_smiles(self, ids: np.ndarray) -> list[str]:
        tokenizer = self.tokenizer
        return [tokenizer.to_smiles(tokenizer.detokenize(toks)) for toks in self.vocab.decode_batch(ids)]

    def sample(self, n: int, strategy: Strategy = "sample", temperature: float = 1.0, seed: int | None = None,
               batch_size: int = 1024, prior: str | Prior | None = "auto") -> list[str]:
        """Draw ``n`` latents from a prior and decode them.

        ``prior``: ``"auto"`` (the model's default prior: ``molvae info`` names it),
        ``"standard"`` (N(0, I)), the name of a prior stored with the model, or a
        :class:`molvae.priors.Prior`. For a given seed, ``sample(n)`` is the first ``n``
        molecules of ``sample(m)`` for any ``m > n``, whatever ``batch_size``.
        """
        return [s for batch in self.iter_sample(n, strategy, temperature, seed, batch_size, prior) for s in batch]

    def iter_sample(self, n: int, strategy: Strategy = "sample", temperature: float = 1.0, seed: int | None = None,
                    batch_size: int = 1024, prior: str | Prior | None = "auto") -> Iterator[list[str]]:
        """:meth:`sample`, one list of strings per batch (of ``batch_size``).

        Latents are drawn a block at a time, so memory does not grow with ``n``.
        """
        prior = self.prior(prior)
        if seed is None:
            seed = random_seed()
        # Whole batches per block (a batch halved on GPU out-of-memory is halved again in the next block).
        block = max(1, SAMPLE_BLOCK // check_batch_size(batch_size)) * batch_size
        for start in range(0, n, block):
            z = prior.sample(min(block, n - start), seed, start=start)
            yield from self.iter_decode(z, strategy=strategy, temperature=temperature, seed=seed, batch_size=batch_size,
                                        keys=np.arange(start, start + len(z)))

    def prior(self, name: str | Prior | None = "auto") -> Prior:
        """The prior ``name`` of this model (see :meth:`sample`), loaded once and kept."""
        if isinstance(name, Prior):
            return load_prior(self, name)
        key = "auto" if name is None else name
        if key not in self._priors:
            self._priors[key] = load_prior(self, key)
        return self._priors[key]

    def reconstruct(self, smiles: Sequence[str], strategy: Strategy = "greedy", errors: str = "raise") -> list[str | None]:
        """Encode (posterior mean) and decode back; None for inputs that could not be encoded."""
        z = self.encode(smiles, errors=errors)
        ok = ~np.isnan(z).any(axis=1)
        decoded = self.decode(z[ok], strategy=strategy) if ok.any() else []
        it = iter(decoded)
        return [next(it) if good else None for good in ok]

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
