"""A GRU layer with a hand-written backward pass, for training on CPU (and fused cells for decoding).

PyTorch's CPU ``nn.GRU`` has no fused kernel: autograd records every time step's
matmuls and gate arithmetic, and the backward pass computes and accumulates a full
weight gradient at every step (two [3H, H] tensors per step and layer). Here the
forward loop stores the gates, the backward loop carries only the hidden-state
gradient, and the weight gradients come out of one large matmul each over all
time steps. Matmuls run in the weights' dtype (bf16 on AMX CPUs); the hidden
state, the gates and the gradient carried through time stay fp32. The states the
backward pass reads, W_hn h + b_hn and the per-step gate gradients are stored in the
weights' dtype, as the matmuls read them (a saturated gate's 1 − σ would lose its
precision in bf16, so the gates stay fp32).

Same equations and parameter layout as ``nn.GRU`` (gates r, z, n):

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

On CPU with an fp32 state the two time loops run in a compiled kernel
(``molvae/csrc/gru_cpu.cpp``, see :func:`cpu_kernel`): each step is the same matmul
followed by one fused pass over the gates, instead of about 8 (forward) and 15
(backward) torch ops with casts in between, which made CPU training markedly faster
(``docs/PERFORMANCE.md``). The torch-op loops below remain
the fallback and the fp64 path that the gradient tests check against ``nn.GRU``.
:class:`DecoderCells` runs the same fused gate pass one decoding step at a time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
from pathlib import Path
from textwrap import shorten
from types import ModuleType, SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from molvae.extensions import build_lock, extensions_root

log = logging.getLogger(__name__)

KERNEL_SOURCE = Path(__file__).with_name("csrc") / "gru_cpu.cpp"
#: Set to 0 to train on CPU with the torch-op time loops instead of the compiled kernel.
KERNEL_SWITCH = "MOLVAE_GRU_KERNEL"


def _state_dtype(compute: torch.dtype) -> torch.dtype:
    """Hidden state and gate dtype: fp32, or fp64 when the weights are fp64 (gradient checks)."""
    return torch.float64 if compute == torch.float64 else torch.float32


def _kernel_flags() -> tuple[list[str], str]:
    """Compiler flags for the kernel, and a key for the machine they target."""
    flags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    cpu = ""
    if platform.machine().lower() in ("x86_64", "amd64"):
        # -march=native targets this CPU, so the build is cached under its feature flags:
        # a home directory shared with an older CPU must not load an AVX-512 build.
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
                cpu = next((line for line in fh if line.startswith("flags")), "")
        except OSError:
            cpu = ""
        if cpu:
            flags += ["-march=native", "-mprefer-vector-width=512"]
    return flags, cpu


@functools.cache
def cpu_kernel() -> ModuleType | None:
    """The compiled CPU time loops (``molvae/csrc/gru_cpu.cpp``), or None where they are unavailable.

    Built with torch's C++ extension tooling on first use (about 25 s; cached under
    ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``). Without a working
    C++ compiler the build fails, a warning says so once, and training on CPU goes on with
    the torch-op loops of :class:`_GRULayer`, decoding with torch ops instead of
    :class:`DecoderCells` (same results, slower). ``MOLVAE_GRU_KERNEL=0``
    skips the kernel.
    """
    if os.environ.get(KERNEL_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    flags, cpu = _kernel_flags()
    source = KERNEL_SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(flags).encode(),
                cpu.encode(),
                torch.__version__.encode(),
                sys.implementation.cache_tag.encode(),
            ]
        )
    )
    name = f"molvae_gru_cpu_{key.hexdigest()[:16]}"
    try:
        from torch.utils.cpp_extension import load

        directory = extensions_root() / name
        if any((directory / f"{name}{ext}").is_file() for ext in (".so", ".pyd")):
            log.debug("loading molvae's CPU GRU kernel %s from %s", name, directory)
        else:  # said only when it is slow: every command on CPU loads the kernel
            log.info(
                "compiling molvae's CPU GRU kernel %s (once per machine, about 25 s; cached in %s)", name, directory
            )
        with build_lock(directory, "molvae's CPU GRU kernel"):
            return load(
                name=name,
                sources=[str(KERNEL_SOURCE)],
                extra_cflags=flags,
                extra_ldflags=["-fopenmp"],
                build_directory=str(directory),
                verbose=False,
            )
    except Exception as exc:  # compilers fail in too many ways to list; the fallback computes the same thing
        log.warning(
            "could not build molvae's CPU GRU kernel (%s: %s); training and decoding on CPU run with "
            "torch ops instead, which is slower",
            type(exc).__name__,
            shorten(str(exc), 300),
        )
        return None


class _GRULayer(torch.autograd.Function):
    # Gradient buffer layout per step, in the compute dtype: [n_x | r | z | n_h], so that
    # columns H: are the hidden-side gradient [r, z, n_h] and columns :3H the input side
    # [n_x, r, z], each one strided matrix for a single matmul.
    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        h0: torch.Tensor,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
        use_kernel: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        cd, sd = w_hh.dtype, _state_dtype(w_hh.dtype)
        # Input projections of all steps in one matmul; the r and z halves of b_hh go in here too.
        bias = b_ih.to(sd).clone()
        bias[: 2 * hidden] += b_hh[: 2 * hidden].to(sd)
        xp = x.reshape(steps * batch, -1).to(cd) @ w_ih.t()
        kernel = cpu_kernel() if use_kernel and x.device.type == "cpu" and sd == torch.float32 else None
        ctx.loops = kernel if kernel is not None else _TORCH_LOOPS
        last, hs, rz_all, n_all, hn_all, hs_t = ctx.loops.gru_forward(
            xp.view(steps, batch, 3 * hidden),
            bias,
            h0.to(sd),
            w_hh.contiguous(),
            b_hh[2 * hidden :].to(sd).contiguous(),
        )
        ctx.save_for_backward(x, w_ih, w_hh, hs, hs_t, rz_all, n_all, hn_all)
        # hs holds the states rounded to the compute dtype, as a cast of the fp32 ones would.
        out = hs[1:] if x.dtype == cd else hs[1:].to(x.dtype)
        return out, last.to(h0.dtype)

    @staticmethod
    def backward(ctx, d_out: torch.Tensor, d_last: torch.Tensor):
        x, w_ih, w_hh, hs, hs_t, rz_all, n_all, hn_all = ctx.saved_tensors
        steps, batch, _ = x.shape
        H = w_hh.shape[1]
        cd = w_hh.dtype
        grads, dh, sums = ctx.loops.gru_backward(d_out, d_last, w_hh, hs, rz_all, n_all, hn_all)
        flat = grads.view(steps * batch, 4 * H)
        d_x = d_w_ih = d_w_hh = d_b_ih = d_b_hh = None
        if ctx.needs_input_grad[0]:
            # One matmul over the [n_x | r | z] columns (rows of W_ih reordered to match) ran
            # twice as fast as a matmul plus an addmm over the r, z and n blocks.
            w_nrz = torch.cat([w_ih[2 * H :], w_ih[: 2 * H]])
            d_x = (flat[:, : 3 * H] @ w_nrz).view(steps, batch, -1).to(x.dtype)
        # Weight gradients as (inputᵀ)·(gate gradients): the matmul reads its left operand
        # row-major, which runs faster on AMX than reading the wide gradient
        # buffer transposed (docs/PERFORMANCE.md), and the transposed copy is of the
        # narrower input (the states' copy, hs_t, is written by the forward loop). They come
        # out transposed, and the input side in [n | r | z] order; the kernel's transpose
        # turns them back (faster than torch's transposed copy).
        if ctx.needs_input_grad[2]:
            x_t = ctx.loops.transpose(x.reshape(steps * batch, -1).to(cd))
            d_w_ih_nrz = ctx.loops.transpose(x_t @ flat[:, : 3 * H])  # [3H, I], rows n, r, z
            d_w_ih = torch.cat([d_w_ih_nrz[H:], d_w_ih_nrz[:H]]).to(w_ih.dtype)
        if ctx.needs_input_grad[3]:
            d_w_hh = ctx.loops.transpose(hs_t @ flat[:, H:]).to(w_hh.dtype)
        if ctx.needs_input_grad[4] or ctx.needs_input_grad[5]:
            d_b_ih = torch.cat([sums[H : 3 * H], sums[:H]]).to(w_ih.dtype)
            d_b_hh = sums[H:].to(w_hh.dtype)
        return d_x, dh, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None


def _transpose(a: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of matrix ``a``'s transpose, as the kernel's ``transpose``."""
    return a.t().contiguous()


def _forward_loop(
    xp: torch.Tensor, bias: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hn: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The forward time loop in torch ops; arguments and results as the kernel's ``gru_forward``."""
    steps, batch, _ = xp.shape
    H = w_hh.shape[1]
    cd, sd = w_hh.dtype, _state_dtype(w_hh.dtype)
    dev = xp.device
    xg = xp.to(sd) + bias
    w_hh_t = w_hh.t()
    # The recurrence runs in the state dtype. Saved for the backward pass, each step's slice
    # contiguous: the states in the compute dtype (as the next layer and the matmuls read
    # them), σ of the r and z gates and n in the state dtype, W_hn h + b_hn in the compute dtype.
    hs = torch.empty(steps + 1, batch, H, dtype=cd, device=dev)
    rz_all = torch.empty(steps, batch, 2 * H, dtype=sd, device=dev)
    n_all = torch.empty(steps, batch, H, dtype=sd, device=dev)
    hn_all = torch.empty(steps, batch, H, dtype=cd, device=dev)
    h = h0
    hs[0] = h
    for t in range(steps):
        hg = hs[t] @ w_hh_t  # compute dtype; mixed-dtype adds below promote to the state dtype
        rz = torch.sigmoid(torch.add(xg[t, :, : 2 * H], hg[:, : 2 * H]), out=rz_all[t])
        hn = torch.add(hg[:, 2 * H :], b_hn)
        n = torch.tanh(torch.addcmul(xg[t, :, 2 * H :], rz[:, :H], hn), out=n_all[t])
        h = torch.addcmul(n, rz[:, H:], h - n)  # h' = n + z ⊙ (h − n)
        hn_all[t] = hn
        hs[t + 1] = h
    return h, hs, rz_all, n_all, hn_all, _transpose(hs[:steps].reshape(steps * batch, H))


def _backward_loop(
    d_out: torch.Tensor | None,
    d_last: torch.Tensor | None,
    w_hh: torch.Tensor,
    hs: torch.Tensor,
    rz_all: torch.Tensor,
    n_all: torch.Tensor,
    hn_all: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward time loop in torch ops; arguments and results as the kernel's ``gru_backward``."""
    steps, batch, H = n_all.shape
    cd, sd = w_hh.dtype, _state_dtype(w_hh.dtype)
    grads = torch.empty(steps, batch, 4 * H, dtype=cd, device=hs.device)  # [n_x | r | z | n_h]
    dh = d_last.to(sd) if d_last is not None else torch.zeros(batch, H, dtype=sd, device=hs.device)
    for t in range(steps - 1, -1, -1):
        if d_out is not None:
            dh = dh + d_out[t]
        rz = rz_all[t]
        r, z = rz[:, :H], rz[:, H:]
        n = n_all[t]
        g = grads[t]
        # dn = dh ⊙ (1 − z), through tanh: ⊙ (1 − n²)
        dpre_n = (dh - dh * z) * (1.0 - n * n)
        g[:, :H] = dpre_n
        torch.mul(dpre_n, r, out=g[:, 3 * H :])
        # dr = dpre_n ⊙ hn, dz = dh ⊙ (h − n); through σ: ⊙ s(1 − s)
        drz = torch.cat([dpre_n * hn_all[t].to(sd), dh * (hs[t].to(sd) - n)], dim=1)
        torch.mul(drz, rz - rz * rz, out=g[:, H : 3 * H])
        dh = dh * z
        dh += g[:, H:] @ w_hh
    flat = grads.view(steps * batch, 4 * H)
    # Column sums as a matmul: GEMMs accumulate in fp32, and this skips a full-size cast.
    sums = (torch.ones(1, steps * batch, dtype=cd, device=hs.device) @ flat)[0].to(sd)
    return grads, dh, sums


# The torch-op loops behind the same calls as the compiled kernel.
_TORCH_LOOPS = SimpleNamespace(gru_forward=_forward_loop, gru_backward=_backward_loop, transpose=_transpose)


class DecoderCells:
    """A stack of GRU cells stepped one token at a time through the CPU kernel's ``gru_cell``.

    For decoding on CPU: each layer's gate arithmetic, bias adds and casts run as one
    pass over [B, 3H] instead of about a dozen torch ops, and in bf16 the step's matmuls
    use weights packed once for oneDNN (docs/PERFORMANCE.md). Same equations
    as ``nn.GRU``. Build with :meth:`build`, which gives None where the kernel cannot run
    the step (GPU, fp64, no kernel).
    """

    #: Rows the packed weights are laid out for: the default decoding batch. Other batch
    #: sizes run on them too, faster than a plain matmul from 1 row to 1,024.
    PACK_ROWS = 1024

    def __init__(
        self,
        kernel: ModuleType,
        w_ih: list[torch.Tensor | None],
        b_ih: list[torch.Tensor | None],
        w_hh: list[torch.Tensor],
        b_hh: list[torch.Tensor],
    ):
        self.kernel = kernel
        self.bias, self.b_hn = [], []
        for k, b in enumerate(b_hh):
            hidden = b.shape[0] // 3
            # The r, z halves of b_hh join the input-side bias; b_hn stays apart (it is
            # multiplied by r). A None b_ih: the input gates already hold it (the decoder's
            # first layer reads it from its token table).
            bias = torch.cat([b[: 2 * hidden].float(), torch.zeros(hidden, device=b.device)])
            if b_ih[k] is not None:
                bias = bias + b_ih[k].float()
            self.bias.append(bias.contiguous())
            self.b_hn.append(b[2 * hidden :].float().contiguous())
        self.w_ih = [None if w is None else self._product(w) for w in w_ih]
        self.w_hh = [self._product(w) for w in w_hh]

    def _product(self, w_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``w_t`` [in, out] as the stepper holds it, and the same weight packed (or None)."""
        return w_t, self.kernel.pack_linear(w_t.t().contiguous(), self.PACK_ROWS)

    def _mul(self, x: torch.Tensor, weight: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        w_t, packed = weight
        return x @ w_t if packed is None else self.kernel.linear(x.contiguous(), packed)

    @classmethod
    def build(
        cls,
        w_ih: list[torch.Tensor | None],
        b_ih: list[torch.Tensor | None],
        w_hh: list[torch.Tensor],
        b_hh: list[torch.Tensor],
    ) -> DecoderCells | None:
        """Cells for transposed weights ``w_ih[k]`` [I, 3H] (None for the first layer) and
        ``w_hh[k]`` [H, 3H] in the compute dtype, and fp32 biases; None where the kernel cannot
        run them (not on CPU, fp64, or no kernel)."""
        if w_hh[0].device.type != "cpu" or w_hh[0].dtype not in (torch.float32, torch.bfloat16):
            return None
        kernel = cpu_kernel()
        return None if kernel is None else cls(kernel, w_ih, b_ih, w_hh, b_hh)

    def step(self, x_gates: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top layer's output in the compute dtype and the new fp32 states [L, B, H].

        ``x_gates`` [B, 3H]: the first layer's input side of the gates, its b_ih included.
        """
        new = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)  # contiguous rows per layer
        dtype = self.w_hh[0][0].dtype
        n_layers = len(self.w_hh)
        for k in range(n_layers):
            h = hidden[k].contiguous()
            out = self.kernel.gru_cell(
                x_gates.contiguous(), self._mul(h.to(dtype), self.w_hh[k]), h, self.bias[k], self.b_hn[k], new[k]
            )
            if k + 1 < n_layers:
                x_gates = self._mul(out, self.w_ih[k + 1])  # the next layer's input side
        return out, new


def gru_layer(
    x: torch.Tensor,
    h0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    use_kernel: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GRU layer over time-major ``x`` [T, B, I] from ``h0`` [B, H]: outputs [T, B, H] and the last state.

    ``use_kernel``: run the time loops through :func:`cpu_kernel` where it is available
    (CPU, fp32 state); else, and for fp64, through torch ops.
    """
    return _GRULayer.apply(x, h0, w_ih, w_hh, b_ih, b_hh, use_kernel)


def native_gru_layer(
    x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gru_layer` through torch's own GRU kernel (cuDNN on a GPU): same arguments and results."""
    # torch._VF.gru is the call nn.GRU.forward makes; going through it directly runs one
    # direction of a bidirectional module's weights without building a second module.
    # train=True whenever gradients flow: cuDNN keeps its backward workspace only in training mode.
    out, last = torch._VF.gru(
        x, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, torch.is_grad_enabled(), False, False
    )
    return out, last[0]


def _layer_weights(gru: nn.GRU, layer: int, suffix: str = "") -> list[torch.Tensor]:
    """``weight_ih, weight_hh, bias_ih, bias_hh`` of one layer (``suffix="_reverse"``: its reverse direction)."""
    return [getattr(gru, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def run_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor, layer=gru_layer) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(x, h0)`` for a unidirectional, batch-first ``nn.GRU`` with biases, through :func:`gru_layer`.

    Every sequence runs all T steps (no packing): for a decoder with teacher forcing
    the outputs past a sequence's end are simply not scored. Dropout between layers
    follows ``gru.dropout`` in training mode, as ``nn.GRU`` does.
    """
    if gru.bidirectional or not gru.batch_first or not gru.bias or gru.proj_size:
        raise ValueError("run_gru handles unidirectional, batch-first GRUs with biases and no projection")
    out = x.transpose(0, 1)
    finals = []
    for k in range(gru.num_layers):
        if k > 0 and gru.dropout > 0 and gru.training:
            out = F.dropout(out, gru.dropout, training=True)
        out, last = layer(out, h0[k], *_layer_weights(gru, k))
        finals.append(last)
    return out.transpose(0, 1), torch.stack(finals)


def run_bidirectional_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, layer=gru_layer) -> torch.Tensor:
    """Final hidden states [2·layers, B, H] of a bidirectional, batch-first ``nn.GRU`` over padded ``x``.

    The same as packing ``x`` with ``lengths`` and calling ``gru``: each sequence's
    forward state is read at its last token, and the reverse direction runs over the
    sequence reversed within its own length, so padding never reaches a state that is
    used. Starts from zero states, as ``nn.GRU`` does without ``h0``. Unlike packing,
    every shape is fixed by ``x``, which a CUDA graph needs. ``layer`` runs one
    direction of one layer (:func:`gru_layer` or :func:`native_gru_layer`).

    ``lengths`` on the CPU are checked to lie in 1..T; on a GPU they are not, because
    the check would be a host sync (forbidden inside a CUDA graph capture).
    """
    if not gru.bidirectional or not gru.batch_first or not gru.bias or gru.proj_size:
        raise ValueError("run_bidirectional_gru handles bidirectional, batch-first GRUs with biases and no projection")
    inp = x.transpose(0, 1)
    steps, batch = inp.shape[:2]
    if lengths.device.type == "cpu" and (steps == 0 or bool((lengths < 1).any()) or bool((lengths > steps).any())):
        raise ValueError(f"lengths must lie in 1..{steps}")
    lengths = lengths.to(device=x.device, dtype=torch.long)
    t = torch.arange(steps, device=x.device)[:, None]
    # Reversal within each sequence's length; an involution, so it also un-reverses.
    rev = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    last = (lengths - 1)[None, :, None]
    h0 = torch.zeros(batch, gru.hidden_size, dtype=inp.dtype, device=x.device)

    def along_time(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return a.gather(0, index.expand(-1, -1, a.shape[2]))

    finals = []
    for k in range(gru.num_layers):
        if k > 0 and gru.dropout > 0 and gru.training:
            inp = F.dropout(inp, gru.dropout, training=True)
        fwd, _ = layer(inp, h0, *_layer_weights(gru, k))
        bwd_rev, _ = layer(along_time(inp, rev[..., None]), h0, *_layer_weights(gru, k, "_reverse"))
        finals += [along_time(fwd, last)[0], along_time(bwd_rev, last)[0]]
        if k + 1 < gru.num_layers:
            inp = torch.cat([fwd, along_time(bwd_rev, rev[..., None])], dim=2)
    return torch.stack(finals)
