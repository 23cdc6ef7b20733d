"""Decoding latents into token ids: a fast step-by-step decoder, greedy and sampled generation, beam search.

Decoding is batched and drops sequences from the batch as soon as they emit EOS.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from molvae.errors import ConfigError, shorten
from molvae.model.network import SequenceVAE
from molvae.recurrent import DecoderCells
from molvae.seeding import KeyedNoise, random_seed
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)

Strategy = Literal["greedy", "sample", "beam"]


class DecoderStepper:
    """Step-by-step decoder built from a :class:`SequenceVAE`'s weights, for inference.

    Equivalent to ``net.step`` but faster: the first layer's input projection is
    split into a per-token table (embedding × W_ih, computed once) and a per-latent
    term (z × W_ih, computed once per molecule), so each step costs one recurrent
    matmul per layer plus the layers above. Matmuls run in ``dtype`` (bf16 on AMX
    CPUs/GPUs) while the hidden state and gate arithmetic stay in fp32; on CPU each
    layer's gate arithmetic runs in one pass of the compiled kernel
    (``molvae.recurrent.DecoderCells``) unless the step is compiled. Plain
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
            self.token_table = net.embedding.weight.float() @ w0[:, :emb_dim].T + gru.bias_ih_l0.float()
            self.w_z = w0[:, emb_dim:].T.contiguous().to(dtype)
            self.w_ih = [None] + [
                getattr(gru, f"weight_ih_l{k}").T.contiguous().to(dtype) for k in range(1, self.layers)
            ]
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

    def next_token(
        self,
        zterm: torch.Tensor,
        token: torch.Tensor,
        hidden: torch.Tensor,
        temperature: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next token [B] (argmax, or a draw at ``temperature``) and the new hidden state.

        A draw needs ``noise``: Exp(1) variates [B, V] (``molvae.seeding.KeyedNoise``).
        It is the draw :func:`torch.multinomial` makes (an exponential race on the
        probabilities), done inside the step so that a compiled step fuses it with the
        output layer.
        """
        if temperature is not None and noise is None:
            raise ValueError("a draw at a temperature needs its Exp(1) noise")
        args = (
            *self._weights(zterm, token, hidden),
            noise if temperature is not None else None,
            self._temperature(temperature),
        )
        return self._run(_gru_stack_next_token, _compiled_next_token, args)

    def _temperature(self, value: float | None) -> torch.Tensor:
        # A tensor, not a float: torch.compile would specialize (recompile) on each float value.
        # Made once per value, not at every step (on a GPU each would be a host-to-device copy).
        key = 1.0 if value is None else float(value)
        if key not in self._temperatures:
            self._temperatures[key] = torch.tensor(key, device=self.token_table.device)
        return self._temperatures[key]

    def _weights(self, zterm: torch.Tensor, token: torch.Tensor, hidden: torch.Tensor) -> tuple:
        return (
            self.token_table,
            token,
            zterm,
            hidden,
            self.w_ih,
            self.b_ih,
            self.w_hh,
            self.b_hh,
            self.w_out,
            self.b_out,
            self.dtype,
        )

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
                log.warning(
                    "torch.compile of the decoder step failed (%s: %s); decoding without it",
                    type(exc).__name__,
                    shorten(str(exc), 300),
                )
        return eager(*args, cells=self.cells)


def _gru_stack_step(
    token_table: torch.Tensor,
    token: torch.Tensor,
    zterm: torch.Tensor,
    hidden: torch.Tensor,
    w_ih: list,
    b_ih: list,
    w_hh: list,
    b_hh: list,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    dtype: torch.dtype,
    cells: DecoderCells | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step through the stacked GRU and the output layer (matmuls in ``dtype``, state in fp32).

    ``cells``: run the layers through ``molvae.recurrent.DecoderCells`` (eager CPU steps).
    """
    # F.embedding (index_select) is faster than advanced indexing here, and compiled it fuses with the add.
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


def _gru_stack_next_token(
    token_table: torch.Tensor,
    token: torch.Tensor,
    zterm: torch.Tensor,
    hidden: torch.Tensor,
    w_ih: list,
    b_ih: list,
    w_hh: list,
    b_hh: list,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    dtype: torch.dtype,
    noise: torch.Tensor | None,
    temperature: torch.Tensor,
    cells: DecoderCells | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gru_stack_step`, then the next token: argmax without ``noise``, else argmax(p / noise)."""
    logits, hidden = _gru_stack_step(
        token_table, token, zterm, hidden, w_ih, b_ih, w_hh, b_hh, w_out, b_out, dtype, cells
    )
    if noise is None:
        return logits.argmax(-1), hidden
    # argmax(p_i / E_i) with E_i ~ Exp(1) picks i with probability p_i: torch.multinomial's own method.
    return (torch.softmax(logits / temperature, dim=-1) / noise).argmax(-1), hidden


_COMPILE_FAILED: list = []  # the error, once compiling has failed in this process


@functools.cache
def _compiled_stack_step():
    """:func:`_gru_stack_step` under ``torch.compile`` (built once per process; dynamic batch size).

    Fusing the gate arithmetic and the casts into one kernel per layer is what pays
    on CPU: the matmuls are already oneDNN's. The first call compiles (tens of seconds
    on a small machine, a few seconds once torch's on-disk cache holds the kernels).
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
    generator), whatever else is in the batch: see ``molvae.seeding``.
    ``compile=True`` runs each step through ``torch.compile`` (see ``_compiled_stack_step``).
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
            token, hidden = stepper.next_token(
                zterm, token, hidden, temperature, noise.exponential(streams, t, n_tokens)
            )
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
    primitive for each shape it runs, and on CPU in bf16 ``molvae decode``'s peak memory
    would otherwise grow with the input (docs/PERFORMANCE.md, "Streaming encode and decode").
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
