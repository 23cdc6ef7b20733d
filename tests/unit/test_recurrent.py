"""molvae.recurrent against torch's own nn.GRU: same outputs and gradients, no less accurate in bf16."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from molvae.model import ModelConfig, SequenceVAE
from molvae.recurrent import DecoderCells, cpu_kernel, gru_layer, native_gru_layer, run_bidirectional_gru, run_gru


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


def test_gru_layer_passes_gradcheck() -> None:
    torch.manual_seed(0)
    d = dict(dtype=torch.float64, requires_grad=True)
    args = (
        torch.randn(4, 2, 3, **d),
        torch.randn(2, 4, **d),
        torch.randn(12, 3, **d),
        torch.randn(12, 4, **d),
        torch.randn(12, **d),
        torch.randn(12, **d),
    )
    assert torch.autograd.gradcheck(gru_layer, args)


@pytest.mark.parametrize("layers", [1, 3])
def test_run_gru_matches_nn_gru(layers: int) -> None:
    torch.manual_seed(1)
    gru = nn.GRU(6, 5, num_layers=layers, batch_first=True).double()
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers, 3, 5, dtype=torch.float64, requires_grad=True)
    ref, ref_last = gru(x, h0)
    out, last = run_gru(gru, x, h0)
    assert torch.allclose(out, ref, atol=1e-12) and torch.allclose(last, ref_last, atol=1e-12)
    w, w_last = torch.randn_like(ref), torch.randn_like(ref_last)
    tensors = [x, h0, *gru.parameters()]
    expected = _grads((ref * w).sum() + (ref_last * w_last).sum(), tensors)
    got = _grads((out * w).sum() + (last * w_last).sum(), tensors)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-11)


@pytest.mark.parametrize("layer", [gru_layer, native_gru_layer], ids=["fused", "native"])
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_matches_packed_nn_gru(layers: int, layer) -> None:
    """Padding must not leak into either direction's final state, nor into the gradients."""
    torch.manual_seed(2)
    gru = nn.GRU(4, 3, num_layers=layers, batch_first=True, bidirectional=True).double()
    x = torch.randn(5, 6, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4, 1, 5])
    _, ref = gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    got = run_bidirectional_gru(gru, x, lengths, layer=layer)
    assert torch.allclose(got, ref, atol=1e-12)
    w = torch.randn_like(ref)
    tensors = [x, *gru.parameters()]
    for a, b in zip(_grads((got * w).sum(), tensors), _grads((ref * w).sum(), tensors)):
        assert torch.allclose(a, b, atol=1e-11)
    # Changing padding changes nothing.
    x2 = x.detach().clone()
    x2[1, 2:] = 99.0
    assert torch.allclose(run_bidirectional_gru(gru, x2, lengths, layer=layer), got.detach(), atol=1e-12)


def test_bidirectional_rejects_bad_lengths() -> None:
    gru = nn.GRU(4, 3, batch_first=True, bidirectional=True)
    with pytest.raises(ValueError, match="lengths"):
        run_bidirectional_gru(gru, torch.randn(2, 3, 4), torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="unidirectional"):
        run_gru(gru, torch.randn(2, 3, 4), torch.zeros(2, 2, 3))


def test_bf16_is_at_least_as_accurate_as_nn_gru_in_bf16() -> None:
    """Both against an fp64 reference: the fp32 state and one big weight-gradient matmul should not lose accuracy."""
    torch.manual_seed(0)
    gru = nn.GRU(96, 128, num_layers=2, batch_first=True)
    x, h0, w = torch.randn(16, 25, 96), 0.5 * torch.randn(2, 16, 128), torch.randn(16, 25, 128)

    class Fused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = gru

        def forward(self, a, b):
            return run_gru(self.gru, a, b)

    def grads(dtype: torch.dtype, fused: bool) -> list[torch.Tensor]:
        params = {k: v.detach().to(dtype).requires_grad_() for k, v in gru.named_parameters()}
        inputs = (x.to(dtype), h0.to(dtype))
        if fused:
            out, _ = functional_call(Fused(), {f"gru.{k}": v for k, v in params.items()}, inputs)
        else:
            out, _ = functional_call(gru, params, inputs)
        (out.double() * w.double()).sum().backward()
        return [params[k].grad.double() for k in params]

    exact = grads(torch.float64, False)
    for ours, torchs, ref in zip(grads(torch.bfloat16, True), grads(torch.bfloat16, False), exact):
        err_ours, err_torch = (ours - ref).norm() / ref.norm(), (torchs - ref).norm() / ref.norm()
        assert err_ours < 0.02 and err_ours <= 1.1 * err_torch, (err_ours, err_torch)


def test_sequence_vae_training_step_is_unchanged_by_the_fused_path() -> None:
    """The model's loss and every parameter gradient equal those of the nn.GRU path (fp64)."""
    torch.manual_seed(3)
    net = (
        SequenceVAE(
            ModelConfig(
                vocab_size=12, embedding_dim=8, encoder_hidden=6, latent_dim=4, decoder_hidden=7, decoder_layers=2
            )
        )
        .double()
        .train()
    )
    seq = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0], [1, 5, 5, 5, 5, 2]])
    lengths = torch.tensor([5, 4, 6])
    results = []
    for fused in (False, True):
        net.fused_cpu_gru = fused
        torch.manual_seed(4)  # same reparameterization noise
        logits, mu, logvar = net(seq, lengths)
        loss = logits.logsumexp(-1).sum() + mu.sum() + logvar.sum()
        results.append((loss.detach(), _grads(loss, list(net.parameters()))))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-10)
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-10)


def test_static_shape_encoder_equals_packing() -> None:
    """The CUDA-graph encoder path (whole padded width, torch's GRU kernel) gives the packed path's μ, log σ²,
    gradients."""
    torch.manual_seed(5)
    net = (
        SequenceVAE(
            ModelConfig(
                vocab_size=12, embedding_dim=8, encoder_hidden=6, latent_dim=4, decoder_hidden=7, decoder_layers=2
            )
        )
        .double()
        .train()
    )
    net.fused_cpu_gru = False  # so both calls leave molvae.recurrent's CPU kernel aside
    tokens = torch.tensor([[5, 6, 7, 2, 0, 0], [8, 9, 2, 0, 0, 0], [5, 5, 5, 5, 5, 2]])
    lengths = torch.tensor([4, 3, 6])
    params = [
        p for name, p in net.named_parameters() if name.split(".")[0] in ("embedding", "encoder", "to_mu", "to_logvar")
    ]
    results = []
    for static in (False, True):
        mu, logvar = net.encode(tokens, lengths, static_shapes=static)
        loss = (mu * torch.arange(1.0, 5.0, dtype=torch.float64)).sum() + logvar.pow(2).sum()
        results.append((mu.detach(), logvar.detach(), _grads(loss, params)))
    (mu_a, lv_a, g_a), (mu_b, lv_b, g_b) = results
    assert torch.allclose(mu_a, mu_b, atol=1e-12) and torch.allclose(lv_a, lv_b, atol=1e-12)
    for a, b in zip(g_a, g_b):
        assert torch.allclose(a, b, atol=1e-11)


# ------------------------------------------------------------------ compiled CPU kernel
needs_kernel = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler to build the kernel with"
)


@needs_kernel
def test_cpu_kernel_builds_where_a_compiler_exists() -> None:
    assert cpu_kernel() is not None


LOAD = "from molvae.recurrent import cpu_kernel; print(cpu_kernel() is not None)"


def _kernel_directory() -> Path:
    assert cpu_kernel() is not None  # built (or loaded from the cache) before the test meddles with its directory
    return Path(cpu_kernel().__file__).parent


@needs_kernel
def test_a_lock_left_by_a_killed_build_does_not_hang_the_next_process() -> None:
    """torch waits forever on its ``lock`` file; one left behind by a killed build must be cleared, with a word."""
    (_kernel_directory() / "lock").touch()
    done = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["True"], done.stderr
    assert "left by an interrupted build of molvae's CPU GRU kernel" in done.stderr
    assert not (_kernel_directory() / "lock").exists()


@needs_kernel
def test_a_second_process_waits_for_a_build_in_progress() -> None:
    """While a live process holds the build lock, another waits (and says so) instead of clearing its files."""
    fcntl = pytest.importorskip("fcntl")
    directory = _kernel_directory()
    with open(directory / "molvae.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        (directory / "lock").touch()  # torch's marker of the build this process stands for
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        waiting = subprocess.Popen(
            [sys.executable, "-c", f"import logging; logging.basicConfig(level=logging.INFO); {LOAD}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiting.wait(timeout=8)
            assert (directory / "lock").exists()
        finally:
            (directory / "lock").unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and out.split() == ["True"], err
    assert "another process is building" in err


def _layer_args(dtype: torch.dtype, steps: int = 7, batch: int = 5, inp: int = 11, hidden: int = 37, seed: int = 6):
    # Odd sizes, so that the vectorized gate loops run their remainder iterations too.
    g = torch.Generator().manual_seed(seed)
    tensors = [
        torch.randn(steps, batch, inp, generator=g),
        0.5 * torch.randn(batch, hidden, generator=g),
        0.3 * torch.randn(3 * hidden, inp, generator=g),
        0.3 * torch.randn(3 * hidden, hidden, generator=g),
        0.2 * torch.randn(3 * hidden, generator=g),
        0.2 * torch.randn(3 * hidden, generator=g),
    ]
    w_out = torch.randn(steps, batch, hidden, generator=g)
    w_last = torch.randn(batch, hidden, generator=g)
    return tensors, w_out, w_last


def _layer_run(tensors, w_out, w_last, dtype: torch.dtype, use_kernel: bool):
    """Outputs, last state and every input's gradient (fp64), with x and the weights in ``dtype``."""
    state_dtype = torch.float32 if dtype == torch.bfloat16 else dtype  # h0, as the model passes it
    leaves = [t.to(state_dtype if i == 1 else dtype).requires_grad_() for i, t in enumerate(tensors)]
    out, last = gru_layer(*leaves, use_kernel=use_kernel)
    loss = (out.double() * w_out.double()).sum() + (last.double() * w_last.double()).sum()
    return [out.detach().double(), last.detach().double()] + [g.double() for g in _grads(loss, leaves)]


@needs_kernel
def test_kernel_gives_the_torch_op_loops_results_in_fp32() -> None:
    args = _layer_args(torch.float32)
    for a, b in zip(_layer_run(*args, torch.float32, True), _layer_run(*args, torch.float32, False)):
        assert (a - b).norm() <= 1e-5 * b.norm(), ((a - b).norm() / b.norm()).item()


@needs_kernel
def test_kernel_matches_the_torch_op_loops_on_a_batch_it_may_split() -> None:
    """From 128 rows the backward step's recurrent matmul may run in two halves (timed at first use)."""
    args = _layer_args(torch.float32, steps=4, batch=131, inp=9, hidden=24, seed=7)
    for a, b in zip(_layer_run(*args, torch.float32, True), _layer_run(*args, torch.float32, False)):
        assert (a - b).norm() <= 1e-5 * b.norm(), ((a - b).norm() / b.norm()).item()


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_kernel_transpose_copies_strided_matrices(dtype: torch.dtype) -> None:
    """Sizes off its 32×32 tiles and 8×8 blocks, partial tiles, and a column slice with a row stride."""
    wide = torch.randn(70, 101).to(dtype)
    for a in (wide, wide[:, 3:48], wide[:1, :1], torch.randn(45, 83).to(dtype), torch.randn(8, 8).to(dtype)):
        got = cpu_kernel().transpose(a)
        assert got.is_contiguous() and torch.equal(got, a.t())
    with pytest.raises(RuntimeError, match="unit column stride"):
        cpu_kernel().transpose(wide.t())


@needs_kernel
def test_kernel_in_bf16_is_as_accurate_as_the_torch_op_loops() -> None:
    """Both against fp64: the kernel's exp and its bf16 rounding must not add error."""
    args = _layer_args(torch.bfloat16, steps=12, batch=9, inp=40, hidden=67)
    exact = _layer_run(*args, torch.float64, False)
    kernel, loops = _layer_run(*args, torch.bfloat16, True), _layer_run(*args, torch.bfloat16, False)
    for ours, theirs, ref in zip(kernel, loops, exact):
        err_ours, err_loops = ((ours - ref).norm() / ref.norm()).item(), ((theirs - ref).norm() / ref.norm()).item()
        assert err_ours < 0.03 and err_ours <= 1.2 * err_loops + 1e-4, (err_ours, err_loops)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_passes_a_nan_on(dtype: torch.dtype) -> None:
    """A NaN input must reach the outputs and gradients, so that training sees a bad step and skips it."""
    tensors, w_out, w_last = _layer_args(dtype)
    tensors[0][2, 1, 0] = float("nan")
    out, last, dx, dh0, *dweights = _layer_run(tensors, w_out, w_last, dtype, True)
    assert not out[:2].isnan().any() and out[2:, 1].isnan().all() and last[1].isnan().all()
    assert not out[:, [0, 2, 3, 4]].isnan().any()
    assert dh0[1].isnan().all() and all(g.isnan().any() for g in dweights)


@needs_kernel
def test_training_step_with_the_kernel_matches_the_torch_op_loops() -> None:
    """The whole model in fp32: loss and every parameter gradient, kernel against torch ops."""
    torch.manual_seed(3)
    net = SequenceVAE(
        ModelConfig(vocab_size=12, embedding_dim=8, encoder_hidden=6, latent_dim=4, decoder_hidden=19, decoder_layers=2)
    ).train()
    seq = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0], [1, 5, 5, 5, 5, 2]])
    lengths = torch.tensor([5, 4, 6])
    results = []
    for kernel in (False, True):
        net.cpu_gru_kernel = kernel
        torch.manual_seed(4)
        logits, mu, logvar = net(seq, lengths)
        loss = logits.logsumexp(-1).sum() + mu.sum() + logvar.sum()
        results.append((loss.detach(), _grads(loss, list(net.parameters()))))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-7


FALLBACK = """
import logging, torch
from molvae.recurrent import cpu_kernel, gru_layer
shapes = [(4, 3, 5), (3, 6), (18, 5), (18, 6), (18,), (18,)]
args = [torch.randn(*shape) for shape in shapes]
out, last = gru_layer(*args)
ref, ref_last = gru_layer(*args, use_kernel=False)
print(cpu_kernel() is None, torch.equal(out, ref) and torch.equal(last, ref_last))
"""


@pytest.mark.parametrize(
    "env", [{"CXX": "/nonexistent/c++"}, {"MOLVAE_GRU_KERNEL": "0"}], ids=["no-compiler", "switched-off"]
)
def test_without_the_kernel_training_falls_back_to_torch_ops(tmp_path, env: dict) -> None:
    """No compiler: one warning that names the failure, and the same results as the torch-op loops."""
    full = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    full.pop("MOLVAE_GRU_KERNEL", None)
    full.update(env)
    done = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, env=full, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
    warned = "could not build molvae's CPU GRU kernel" in done.stderr
    assert warned == ("CXX" in env), done.stderr


FIRST_CALL = """
import torch
from molvae.recurrent import gru_layer
torch.manual_seed(0)
expected = torch.rand(3)
torch.manual_seed(0)
shapes = [(4, 3, 5), (3, 6), (18, 5), (18, 6), (18,), (18,)]
args = [torch.randn(*shape) for shape in shapes]
torch.manual_seed(0)
gru_layer(*[a.to(torch.bfloat16) if i != 1 else a for i, a in enumerate(args)])
print(torch.equal(torch.rand(3), expected))
"""


@needs_kernel
def test_the_kernels_first_call_leaves_the_random_generator_alone() -> None:
    """Its one-time probes (the packed matmul) must not draw numbers: resumed runs replay the same noise."""
    done = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decoder_cells_step_as_nn_gru_does(dtype: torch.dtype) -> None:
    """Two layers, a width off the vector length, a first layer whose gates hold its b_ih (as the token table does)."""
    torch.manual_seed(5)
    batch, inp, hidden = 9, 13, 67
    gru = nn.GRU(inp, hidden, num_layers=2).double()
    x, h0 = torch.randn(1, batch, inp, dtype=torch.float64), torch.randn(2, batch, hidden, dtype=torch.float64)
    ref_out, ref_h = gru(x, h0)
    w = {name: p.detach() for name, p in gru.named_parameters()}
    x_gates = (x[0] @ w["weight_ih_l0"].T + w["bias_ih_l0"]).float()
    cells = DecoderCells.build(
        [None, w["weight_ih_l1"].T.contiguous().to(dtype)],
        [None, w["bias_ih_l1"]],
        [w[f"weight_hh_l{k}"].T.contiguous().to(dtype) for k in (0, 1)],
        [w["bias_hh_l0"], w["bias_hh_l1"]],
    )
    assert cells is not None
    # bf16 weights are packed where this torch has the ops; fp32 ones never are.
    assert (cells.w_hh[0][1] is None) == (
        dtype == torch.float32 or cpu_kernel().pack_linear(w["weight_hh_l0"].to(dtype), 8) is None
    )
    out, new = cells.step(x_gates, h0.float())
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert out.dtype == dtype and new.dtype == torch.float32 and new.shape == ref_h.shape
    assert torch.allclose(new.double(), ref_h, atol=tol), (new.double() - ref_h).abs().max()
    assert torch.allclose(out.double(), ref_out[0], atol=tol)
    if dtype == torch.bfloat16:
        # Input gates in bf16 (as a layer above the first gets them from its matmul): the same state.
        h_cd = cells.kernel.gru_cell(
            x_gates.to(dtype),
            h0[0].to(dtype) @ w["weight_hh_l0"].T.to(dtype),
            h0[0].float(),
            cells.bias[0],
            cells.b_hn[0],
            torch.empty(batch, hidden),
        )
        assert torch.allclose(h_cd.double(), ref_h[0], atol=tol)


@needs_kernel
def test_kernel_cell_names_bad_shapes() -> None:
    h = torch.zeros(4, 5)
    gates = torch.zeros(4, 15)
    with pytest.raises(RuntimeError, match=r"h and h_out must be contiguous fp32 \[B, H\]"):
        cpu_kernel().gru_cell(gates, gates, torch.zeros(4, 6), torch.zeros(15), torch.zeros(5), h)
    with pytest.raises(RuntimeError, match=r"xg and hg must be contiguous \[B, 3H\]"):
        cpu_kernel().gru_cell(gates.t(), gates, h, torch.zeros(15), torch.zeros(5), h.clone())


KERNEL_LOG = (
    "import logging; logging.basicConfig(level=logging.INFO); from molvae.recurrent import cpu_kernel; cpu_kernel()"
)


@needs_kernel
def test_the_kernel_build_is_announced_only_when_it_compiles(tmp_path) -> None:
    """Every CPU command loads the kernel: the 25-s notice belongs to the build, not to each load from the cache."""
    cached = {**os.environ, "TORCH_EXTENSIONS_DIR": str(_kernel_directory().parent)}
    cached.pop("MOLVAE_GRU_KERNEL", None)
    done = subprocess.run([sys.executable, "-c", KERNEL_LOG], capture_output=True, text=True, env=cached, timeout=120)
    assert done.returncode == 0 and "molvae's CPU GRU kernel" not in done.stderr, done.stderr
    # An empty cache (the compiler is missing here, so the build fails fast after the notice)
    empty = {**cached, "TORCH_EXTENSIONS_DIR": str(tmp_path), "CXX": "/nonexistent/c++"}
    done = subprocess.run([sys.executable, "-c", KERNEL_LOG], capture_output=True, text=True, env=empty, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "compiling molvae's CPU GRU kernel" in done.stderr and str(tmp_path) in done.stderr, done.stderr
