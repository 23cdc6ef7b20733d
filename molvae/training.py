"""Training: configuration, KL/LR schedules, the training loop, checkpoints and resume.

A run directory holds ``config.json`` (model, training and data configuration),
``vocab.json``, ``model.safetensors`` (latest epoch-end weights, what
:meth:`MolVAE.load` reads), ``resume.pt`` (optimizer, RNG and position, read with
``weights_only=True``), ``metrics.csv`` (one row per epoch), ``data_summary.json``
and ``run_info.json`` (package versions, git commit). Every file is written
atomically. The batch order of an epoch is a pure function of (seed, epoch), and
LR and β are pure functions of the global step, so a resumed run continues
exactly where the checkpoint was taken.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from molvae.checkpoint import (
    RunLock,
    atomic_write_text,
    environment_info,
    load_state,
    lock_run_dir,
    read_json,
    save_state,
    write_json,
)
from molvae.config import config_from_dict, rule, validate_config
from molvae.data import (
    TokenizedData,
    collate,
    length_bucketed_batches,
    load_dataset,
    train_val_split,
)
from molvae.devices import resolve_device, resolve_dtype
from molvae.errors import ConfigError, MolvaeError
from molvae.folders import (
    CONFIG_FILE,
    DATA_SUMMARY_FILE,
    METRICS_FILE,
    RESUME_FILE,
    RUN_INFO_FILE,
    VOCAB_FILE,
)
from molvae.model import (
    ModelConfig,
    MolVAE,
    SequenceVAE,
    run_in_precision,
    vae_loss,
)
from molvae.runtime import tune_allocator
from molvae.schedules import KL_SCHEDULES, LR_SCHEDULES, kl_beta, learning_rate
from molvae.tokenizers import Vocabulary

log = logging.getLogger(__name__)

# Consecutive non-finite steps after which training stops instead of skipping.
MAX_CONSECUTIVE_BAD_STEPS = 20


class TrainingInterrupted(MolvaeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""


class TrainingDiverged(MolvaeError):
    """Loss or gradients stayed NaN/Inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything about a training run except the architecture."""

    data: str = "moses"
    smiles_column: str | None = None
    representation: str = field(default="smiles", metadata=rule(choices=("smiles", "selfies")))
    limit: int | None = field(default=None, metadata=rule(ge=1))  # the first N records
    sample: int | None = field(default=None, metadata=rule(ge=1))  # a random N records (seeded by seed)
    max_tokens: int = field(default=120, metadata=rule(ge=3))  # incl. BOS/EOS, so at least one real token
    val_fraction: float = field(default=0.05, metadata=rule(ge=0.0, lt=1.0))
    epochs: int = field(default=10, metadata=rule(ge=1))
    batch_size: int = field(default=256, metadata=rule(ge=1))
    lr: float = field(default=1e-3, metadata=rule(gt=0.0))
    lr_schedule: str = field(default="cosine", metadata=rule(choices=tuple(LR_SCHEDULES)))  # after linear warm-up
    # Linear LR warm-up; a run of fewer than twice as many steps warms up over its first half.
    warmup_steps: int = field(default=100, metadata=rule(ge=0))
    min_lr_ratio: float = field(default=0.05, metadata=rule(ge=0.0, le=1.0))
    weight_decay: float = field(default=1e-4, metadata=rule(ge=0.0))
    grad_clip: float = field(default=5.0, metadata=rule(gt=0.0))
    kl_schedule: str = field(default="linear", metadata=rule(choices=tuple(KL_SCHEDULES)))
    kl_weight: float = field(default=0.5, metadata=rule(ge=0.0))  # β at the end of annealing
    # linear: epochs to reach kl_weight (at most the whole run, so a short run still reaches it)
    kl_warmup_epochs: float = field(default=2.0, metadata=rule(ge=0.0))
    kl_cycles: int = field(default=4, metadata=rule(ge=1))  # cyclical: cycles over the run (Fu et al. 2019)
    free_bits: float = field(default=0.0, metadata=rule(ge=0.0))  # nats per latent dimension (Kingma et al. 2016)
    word_dropout: float = field(default=0.0, metadata=rule(ge=0.0, lt=1.0))
    precision: str = field(default="auto", metadata=rule(choices=("auto", "bf16", "fp32")))
    device: str = "auto"
    seed: int = 0
    val_max: int = field(default=10_000, metadata=rule(ge=0))  # molecules used for validation loss/accuracy
    val_recon_n: int = field(default=500, metadata=rule(ge=0))
    val_sample_n: int = field(default=500, metadata=rule(ge=0))
    early_stopping_patience: int | None = field(default=None, metadata=rule(ge=1))
    # stop after this many optimizer steps; the LR and KL schedules span them
    max_steps: int | None = field(default=None, metadata=rule(ge=1))
    checkpoint_minutes: float = field(default=10.0, metadata=rule(gt=0.0))
    # Replay training steps from CUDA graphs (one per batch width) on a single GPU.
    cuda_graphs: bool = True
    # Fine-tuning: start from this model's weights, architecture and vocabulary (a bundled
    # name such as "zinc-smiles" or a model directory) instead of a random initialization.
    init_from: str | None = None
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Check types and ranges (:func:`molvae.config.validate_config`); returns ``self``."""
        validate_config(self, "training config")
        if self.limit is not None and self.sample is not None:
            raise ConfigError("training config: give limit (first N records) or sample (random N records), not both")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "TrainConfig":
        """Build from parsed JSON; unknown fields and bad values raise :class:`ConfigError`."""
        return config_from_dict(cls, data, "training config")


# Settings a resumed run may change: stopping rules and where/how steps run, not what they
# compute. Everything else (data, split, architecture, optimizer, schedules) stays as saved.
RESUME_MAY_CHANGE = ("epochs", "max_steps", "early_stopping_patience", "checkpoint_minutes",
                     "device", "precision", "cuda_graphs", "progress")


def check_resume_config(out: str | Path, saved: dict[str, Any], training: dict[str, Any],
                        model: dict[str, Any] | None = None, names: dict[str, str] | None = None) -> None:
    """A one-line :class:`ConfigError` when settings given for a resume differ from the run's saved ones.

    ``saved`` is the run's ``config.json`` (``{"model": ..., "training": ...}``); ``training`` and
    ``model`` are the settings given with the resume. Values equal to the saved ones pass, so
    the original command with ``--resume`` added works; fields in :data:`RESUME_MAY_CHANGE`
    may differ. ``names`` shows a field under another name (the CLI's option) in the message.
    """
    names = names or {}
    changed = [f"{names.get(k, k)} {v!r} (the run has {saved['training'].get(k)!r})"
               for k, v in training.items() if k not in RESUME_MAY_CHANGE and saved["training"].get(k) != v]
    changed += [f"{names.get(k, k)} {v!r} (the run has {saved['model'].get(k)!r})"
                for k, v in (model or {}).items() if saved["model"].get(k) != v]
    if changed:
        may = ", ".join(names.get(k, k) for k in RESUME_MAY_CHANGE if k != "progress")
        raise ConfigError(f"{out}: a resumed run keeps the settings it was started with (only {may} may change); "
                          f"got " + "; ".join(changed))


# ----------------------------------------------------------------------- training
def _fresh_partial() -> dict[str, float]:
    """Running sums of an epoch in progress: losses weighted by molecules, molecules seen, seconds spent."""
    return {"loss": 0.0, "recon": 0.0, "kl": 0.0, "n": 0, "mol": 0, "seconds": 0.0}


class _SignalFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_SignalFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _batch_tensors(data: TokenizedData, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    seq, lengths = collate(data, index)
    return torch.from_numpy(seq).to(device, non_blocking=True), torch.from_numpy(lengths)


def _step_losses(net: SequenceVAE, dtype: torch.dtype, seq: torch.Tensor, lengths: torch.Tensor,
                 beta: float | torch.Tensor, cfg: TrainConfig, static_shapes: bool = False) -> dict[str, torch.Tensor]:
    """Forward pass in ``dtype`` and the VAE losses of one training batch (eager and CUDA-graph steps)."""
    logits, mu, logvar = run_in_precision(net, dtype, "forward", seq, lengths, cfg.word_dropout,
                                          static_shapes=static_shapes)
    return vae_loss(logits, seq[:, 1:], mu, logvar, beta, cfg.free_bits)


def train_step(
    net: SequenceVAE, optimizer: torch.optim.Optimizer, seq: torch.Tensor, lengths: torch.Tensor,
    dtype: torch.dtype, beta: float, cfg: TrainConfig, world_size: int = 1,
) -> dict[str, float] | None:
    """One optimizer step; returns the losses, or None (step skipped) if loss or gradients are NaN/Inf.

    With ``world_size > 1`` gradients are averaged over ranks first, so every rank
    sees the same gradients and takes (or skips) the same step.
    """
    losses = _step_losses(net, dtype, seq, lengths, beta, cfg)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    loss_check = losses["loss"]
    if world_size > 1:
        loss_check = _all_reduce_gradients(list(net.parameters()), world_size, losses["loss"])
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    # One device-to-host copy for every figure: on a GPU each .item() is a sync that stalls the queue.
    loss, recon, kl, check, norm = torch.stack(
        [losses["loss"], losses["recon"], losses["kl"], loss_check, grad_norm]).detach().float().tolist()
    if not (math.isfinite(check) and math.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return {"loss": loss, "recon": recon, "kl": kl}


def parent_summary(parent: MolVAE, name: str) -> dict[str, Any]:
    """What a fine-tuned run started from: name, folder, weights digest and the parent's training."""
    digest = parent.weights_sha256()
    card = parent.card or {}
    lineage = {k: card.get(k) for k in ("epochs", "steps", "training_hours", "hardware") if k in card}
    saved = read_json(Path(parent.source) / CONFIG_FILE, "model config") if parent.source else {}
    # The parent's own recipe, so that scripts/train_pretrained.py can redo both stages.
    if isinstance(saved, dict) and isinstance(saved.get("training"), dict):
        lineage["training"] = saved["training"]
    return {"model": name, "source": parent.source, "weights_sha256": digest, **lineage}


StepFn = Callable[[torch.Tensor, torch.Tensor, float], "dict[str, float] | None"]


class CudaGraphTrainStep:
    """:func:`train_step` replayed from CUDA graphs: one graph per batch width, captured at first use.

    A GPU step of this model is about a thousand small kernels (cuDNN runs the GRUs one
    time step at a time); launched one by one from Python, they leave the GPU idle about
    half of the step. A graph launches the recorded kernels in one call. Inside a graph
    every shape is fixed, so the encoder runs unpacked (``static_shapes``: the same
    states as packing) and β lives in a device tensor. The gradients are preallocated
    and zeroed in place, so all graphs write the same tensors; the optimizer steps
    outside the graphs, after the NaN/Inf check that is the step's one host sync, as
    in :func:`train_step`. The first batch of each width runs eagerly, as the warm-up a
    capture needs; batches of another size than ``batch_size`` (an epoch's last) run eagerly.
    """

    def __init__(self, net: SequenceVAE, optimizer: torch.optim.Optimizer, dtype: torch.dtype, cfg: TrainConfig):
        self.net, self.optimizer, self.dtype, self.cfg = net, optimizer, dtype, cfg
        self.device = next(net.parameters()).device
        self.params = [p for p in net.parameters() if p.requires_grad]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.grads = [p.grad for p in self.params]
        self.beta = torch.zeros((), device=self.device)
        self.graphs: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.side = torch.cuda.Stream(self.device)
        self.eager_steps = 0

    def _body(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        torch._foreach_zero_(self.grads)
        losses = _step_losses(self.net, self.dtype, seq, lengths, self.beta, self.cfg, static_shapes=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        return torch.stack([losses["loss"], losses["recon"], losses["kl"], norm]).detach().float()

    def __call__(self, seq: torch.Tensor, lengths: torch.Tensor, beta: float) -> dict[str, float] | None:
        lengths = lengths.to(self.device, non_blocking=True)
        self.beta.fill_(beta)
        entry = self.graphs.get(tuple(seq.shape))
        if entry is None:
            self.eager_steps += 1
            # Warm-up on a side stream, as capture requires; it is also this batch's real step.
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                out = self._body(seq, lengths)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            if seq.shape[0] == self.cfg.batch_size:
                static_seq, static_lengths = seq.clone(), lengths.clone()
                graph = torch.cuda.CUDAGraph()
                # Recorded, not run: the warm-up's gradients stay for this step's optimizer update.
                with torch.cuda.graph(graph, pool=self.pool):
                    static_out = self._body(static_seq, static_lengths)
                self.graphs[tuple(seq.shape)] = (graph, static_seq, static_lengths, static_out)
        else:
            graph, static_seq, static_lengths, out = entry
            static_seq.copy_(seq, non_blocking=True)
            static_lengths.copy_(lengths, non_blocking=True)
            graph.replay()
        loss, recon, kl, norm = out.tolist()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return None
        self.optimizer.step()
        return {"loss": loss, "recon": recon, "kl": kl}


def make_train_step(net: SequenceVAE, optimizer: torch.optim.Optimizer, dtype: torch.dtype, cfg: TrainConfig,
                    world_size: int = 1) -> StepFn:
    """``step(seq, lengths, beta)`` for a training loop: CUDA graphs on one GPU (``cfg.cuda_graphs``), else :func:`train_step`."""
    device = next(net.parameters()).device
    if cfg.cuda_graphs and device.type == "cuda" and world_size == 1:
        return CudaGraphTrainStep(net, optimizer, dtype, cfg)

    def step(seq: torch.Tensor, lengths: torch.Tensor, beta: float) -> dict[str, float] | None:
        return train_step(net, optimizer, seq, lengths, dtype, beta, cfg, world_size)

    return step


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``net``'s parameters, with torch's fused kernel (one pass for all tensors).

    On CPU the fused kernel needs torch 2.4; it took an AdamW step over the reference-size
    model from about 19 ms to 4 ms on the project's 2-core machine.
    """
    device = next(net.parameters()).device.type
    fused = device == "cuda" or (device == "cpu" and torch.__version__ >= "2.4")
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


# ------------------------------------------------------------------- distributed
@dataclass
class DistributedContext:
    """Rank/world of a ``torchrun`` launch; world size 1 without one."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in WORLD_SIZE/RANK/LOCAL_RANK, if any."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    ctx = DistributedContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if not dist.is_initialized():
        # The optimizer's first step imports torch._dynamo. Imported after the group exists, it
        # keeps the group alive past destroy_process_group (torch 2.13: the gloo threads stay),
        # and the group is then torn down during interpreter exit, where it can abort a finished
        # run ("terminate called without an active exception"). Imported first, it does not.
        import torch._dynamo  # noqa: F401

        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ctx


def _all_reduce_gradients(params: list[torch.nn.Parameter], world_size: int, loss: torch.Tensor) -> torch.Tensor:
    """Average gradients (and the loss) over ranks with one flat all-reduce; returns the mean loss.

    The loss rides along so every rank sees a NaN on any rank and all skip the same step.
    """
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([*(g.reshape(-1) for g in grads), loss.detach().float().reshape(1).to(grads[0].dtype)])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n
    return flat[-1]


def _all_ranks_agree(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not ctx.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


class Trainer:
    """Trains a :class:`SequenceVAE` into a run directory; ``resume=True`` continues one.

    On resume the run's ``config.json`` rules. A ``train_config``, ``model_config`` or
    ``overrides`` (training fields) given with it must match the saved settings, except the
    fields in :data:`RESUME_MAY_CHANGE` (more epochs, another device...), which are applied
    and written back to ``config.json``. ``option_names`` names fields in that error as the
    caller's options (the CLI's flags).
    """

    def __init__(
        self,
        out: str | Path,
        train_config: TrainConfig | None = None,
        model_config: dict[str, Any] | None = None,
        resume: bool = False,
        epochs_override: int | None = None,
        overrides: dict[str, Any] | None = None,
        option_names: dict[str, str] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        self.out = Path(out)
        # User-facing messages (data summary, resume point, epoch results): the CLI prints them.
        self.echo = echo or log.info
        self.resume = resume
        self.on_epoch_end = on_epoch_end
        if resume:
            if not (self.out / CONFIG_FILE).is_file():
                raise MolvaeError(f"{self.out}: nothing to resume (no {CONFIG_FILE}); start a new run without --resume")
            saved = read_json(self.out / CONFIG_FILE, "run config")
            if not (isinstance(saved, dict) and isinstance(saved.get("model"), dict) and "training" in saved):
                raise MolvaeError(f"{self.out / CONFIG_FILE}: not a molvae run config (needs 'model' and 'training')")
            try:
                self.cfg = TrainConfig.from_dict(saved.get("training"))
            except ConfigError as exc:  # name the file: the user has to edit it (or start over)
                raise ConfigError(f"{self.out / CONFIG_FILE}: {exc}") from None
            self.model_overrides = saved["model"]
            given = {k: v for k, v in (train_config.to_dict() if train_config else {}).items() if k != "progress"}
            given.update(overrides or {})
            if epochs_override is not None:
                given["epochs"] = epochs_override
            # Against the parsed config: a field missing from an older config.json has its default.
            check_resume_config(self.out, {"training": self.cfg.to_dict(), "model": saved["model"]}, given, model_config,
                                option_names)
            self._saved_cfg = dataclasses.replace(self.cfg)
            for k in RESUME_MAY_CHANGE:
                if k in given:
                    setattr(self.cfg, k, given[k])
            if train_config is not None:
                self.cfg.progress = train_config.progress
            self.cfg.validate()
        else:
            if (self.out / RESUME_FILE).exists() or (self.out / CONFIG_FILE).exists():
                raise MolvaeError(
                    f"{self.out} already holds a run; continue it with --resume or choose another --out"
                )
            self.cfg = (train_config or TrainConfig()).validate()
            self.model_overrides = dict(model_config or {})
            # Checked now with a stand-in vocabulary size, not after minutes of data preparation.
            ModelConfig.from_dict({"vocab_size": 5, "max_length": self.cfg.max_tokens, **self.model_overrides,
                                   "representation": self.cfg.representation})
        self.dist = init_distributed(self.cfg.device)
        if self.dist.enabled and torch.cuda.is_available() and self.cfg.device in ("auto", "cuda"):
            self.device = torch.device("cuda", self.dist.local_rank)
        else:
            self.device = resolve_device(self.cfg.device)
        self.dtype = resolve_dtype(self.cfg.precision, self.device)
        self._lock: RunLock | None = None  # taken in _build (rank 0)
        if not self.dist.is_main:
            self.echo = lambda message: None

    def _write_json(self, name: str, obj: Any) -> None:
        if self.dist.is_main:
            write_json(self.out / name, obj)

    # -- setup
    def _load_data(self, vocab: Vocabulary | None) -> TokenizedData:
        c = self.cfg

        def load() -> tuple[TokenizedData, Any]:
            return load_dataset(c.data, representation=c.representation, column=c.smiles_column,
                                max_tokens=c.max_tokens, limit=c.limit, vocab=vocab,
                                sample=c.sample, sample_seed=c.seed)

        # Rank 0 prepares (and caches) the data first; the other ranks then read the cache.
        if self.dist.is_main:
            data, summary = load()
        _barrier(self.dist)
        if not self.dist.is_main:
            data, summary = load()
        self.echo(summary.format())
        self._write_json(DATA_SUMMARY_FILE, summary.to_dict())
        self.summary = summary
        return data

    def _load_parent(self) -> MolVAE | None:
        """The model named by ``init_from``, checked against this run's settings (None without one)."""
        if self.cfg.init_from is None:
            return None
        parent = MolVAE.load(self.cfg.init_from, device="cpu")
        where = f"--init-from {self.cfg.init_from}"
        if parent.config.representation != self.cfg.representation:
            raise ConfigError(f"{where} is a {parent.config.representation} model; this run is set to "
                              f"{self.cfg.representation} (pass --representation {parent.config.representation})")
        if not self.resume:
            arch = parent.config.to_dict()
            differ = sorted(k for k, v in self.model_overrides.items() if arch.get(k) != v)
            if differ:
                raise ConfigError(f"{where} fixes the architecture; drop the options that change it: "
                                  + ", ".join(f"{k}={self.model_overrides[k]} (model: {arch.get(k)})" for k in differ))
        return parent

    def _build(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        # Only rank 0 writes the run; two processes checkpointing one run would lose work.
        self._lock = lock_run_dir(self.out) if self.dist.is_main else None
        # A resumed run's weights are in resume.pt: the parent is only read to start from it.
        starting = not (self.resume and (self.out / RESUME_FILE).is_file())
        parent = self._load_parent() if starting else None
        vocab = parent.vocab if parent is not None else None
        if self.resume:
            # Temp files of writes a kill interrupted; their targets are intact.
            for stale in self.out.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            vocab = Vocabulary.from_dict(read_json(self.out / VOCAB_FILE, "vocabulary"))
        # With a parent, molecules holding a token it never saw are dropped and counted.
        data = self._load_data(vocab)
        self.vocab = data.vocab
        model_dict = {**self.model_overrides, "vocab_size": len(self.vocab), "representation": self.cfg.representation}
        if parent is not None:
            model_dict = parent.config.to_dict()
            # The GRUs have no length limit: only the decoding cap follows longer training data.
            model_dict["max_length"] = max(parent.config.max_length, self.cfg.max_tokens)
        model_dict.setdefault("max_length", self.cfg.max_tokens)
        self.model_config = ModelConfig.from_dict(model_dict)
        train_idx, val_idx = train_val_split(len(data), self.cfg.val_fraction, self.cfg.seed)
        self.train_data = data.subset(train_idx)
        self.val_data = data.subset(val_idx)
        self.all_smiles = set(data.smiles)
        torch.manual_seed(self.cfg.seed)
        self.net = SequenceVAE(self.model_config)
        if parent is not None:
            self.net.load_state_dict(parent.net.state_dict())
        self.net = self.net.to(self.device)
        self.optimizer = make_optimizer(self.net, self.cfg)
        n_batches = len(length_bucketed_batches(self.train_data.lengths, self.cfg.batch_size, self.cfg.seed, 0))
        # Each rank takes every world_size-th batch of the same plan; a remainder is dropped.
        self.steps_per_epoch = n_batches // self.dist.world_size
        if len(self.train_data) == 0:
            raise MolvaeError(f"no molecule left to train on: {len(data)} kept, all in the validation split "
                              f"(--val-fraction {self.cfg.val_fraction}); use more data or a smaller --val-fraction")
        if self.steps_per_epoch == 0:
            raise MolvaeError(f"{n_batches} batches cannot be shared by {self.dist.world_size} processes; "
                              "use more data or a smaller --batch-size")
        self.total_steps = self.steps_per_epoch * self.cfg.epochs
        if self.cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, self.cfg.max_steps)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_val": math.inf, "bad_epochs": 0,
                      "skipped_steps": 0, "history": [], "elapsed": 0.0, "partial": _fresh_partial()}
        if not self.resume:
            self._write_json(VOCAB_FILE, self.vocab.to_dict())
            self._write_json(CONFIG_FILE, {"model": self.model_config.to_dict(), "training": self.cfg.to_dict()})
            info = {**environment_info(), "world_size": self.dist.world_size}
            if parent is not None:
                info["init_from"] = parent_summary(parent, self.cfg.init_from)
            self._write_json(RUN_INFO_FILE, info)
        elif (self.out / RESUME_FILE).is_file():
            self._restore(load_state(self.out / RESUME_FILE))
        else:
            self.echo(f"{self.out}: no {RESUME_FILE} yet; starting this run from the beginning")
        if self.resume and self._changed_on_resume():
            self._write_json(CONFIG_FILE, {"model": self.model_config.to_dict(), "training": self.cfg.to_dict()})

    def _changed_on_resume(self) -> bool:
        """Whether this resume changed a saved setting (more epochs, another device...)."""
        return any(getattr(self._saved_cfg, k) != getattr(self.cfg, k) for k in RESUME_MAY_CHANGE if k != "progress")

    def _restore(self, saved: dict[str, Any]) -> None:
        self._check_resume_state(saved)
        self.net.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
        self.state = saved["state"]
        # Resume states written before the epoch's sums were saved: the epoch's means cover only what follows.
        self.state.setdefault("partial", _fresh_partial())
        self.echo(f"resumed from {self.out / RESUME_FILE}: epoch {self.state['epoch'] + 1}, "
                  f"step {self.state['step_in_epoch']} of {self.steps_per_epoch}")

    def _check_resume_state(self, saved: Any) -> None:
        """A resume state must hold every part and fit the network that config.json and vocab.json describe."""
        where = self.out / RESUME_FILE
        missing = [k for k in ("model", "optimizer", "torch_rng", "state") if not isinstance(saved, dict) or k not in saved]
        if missing:
            raise MolvaeError(f"{where}: not a molvae resume state (missing {', '.join(missing)})")
        expected = self.net.state_dict()
        absent = sorted(set(expected) - set(saved["model"]))
        extra = sorted(set(saved["model"]) - set(expected))
        if absent or extra:
            raise MolvaeError(f"{where}: weights do not match {CONFIG_FILE} (missing {absent[:3]}, unexpected {extra[:3]})")
        for key, tensor in saved["model"].items():
            if tuple(tensor.shape) != tuple(expected[key].shape):
                hint = f" (vocabulary mismatch: {VOCAB_FILE} has {len(self.vocab)} tokens)" if key in (
                    "embedding.weight", "output.weight", "output.bias") else ""
                raise MolvaeError(f"{where}: {key} has shape {tuple(tensor.shape)}, but {CONFIG_FILE} and "
                                  f"{VOCAB_FILE} imply {tuple(expected[key].shape)}{hint}")

    def _checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        save_state(self.out / RESUME_FILE, {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            # The reparameterization noise and word dropout draw from the GPU's generator.
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            "state": self.state,
        })

    # -- loop
    def fit(self) -> list[dict[str, Any]]:
        """Train to the configured number of epochs (or early stop); returns the metrics history."""
        cfg = self.cfg
        # Handlers first: a signal during data preparation must also end in a clean stop.
        try:
            with _SignalFlag() as flag:
                self._build()
                self.step = make_train_step(self.net, self.optimizer, self.dtype, cfg, self.dist.world_size)
                # An epoch stopped after its last step (a signal, a kill during validation) is still
                # open (step_in_epoch > 0): it is closed (validated, saved) before the run ends.
                while self.state["epoch"] < cfg.epochs and (self.state["global_step"] < self.total_steps
                                                            or self.state["step_in_epoch"] > 0):
                    stopped = self._train_epoch(flag)
                    if stopped:
                        self._checkpoint()
                        raise TrainingInterrupted(
                            f"interrupted by signal {flag.received}; checkpoint saved in {self.out} at epoch "
                            f"{self.state['epoch'] + 1} step {self.state['step_in_epoch']}; continue with --resume"
                        )
                    row = self._end_epoch()
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(row)
                    if cfg.early_stopping_patience and self.state["bad_epochs"] >= cfg.early_stopping_patience:
                        self.echo(f"early stopping: validation loss did not improve for {self.state['bad_epochs']} epochs")
                        break
            _barrier(self.dist)
        finally:
            # Not left to garbage collection: another process may resume this run as soon as fit returns.
            if self._lock is not None:
                self._lock.release()
        return self.state["history"]

    def _train_epoch(self, flag: _SignalFlag) -> bool:
        cfg, st = self.cfg, self.state
        plan = length_bucketed_batches(self.train_data.lengths, cfg.batch_size, cfg.seed, st["epoch"])
        batches = plan[self.dist.rank :: self.dist.world_size][: self.steps_per_epoch]
        self.net.train()
        # The epoch's running sums live in the state, so that an epoch resumed mid-way reports its whole means.
        sums = st["partial"]
        # Training time is banked at every checkpoint, so a resumed run reports its whole cost.
        banked = time.perf_counter()
        last_ckpt = time.monotonic()
        bad_run = 0
        last = {"loss": math.nan, "kl": math.nan}
        bar = tqdm(total=len(batches), initial=st["step_in_epoch"], desc=f"epoch {st['epoch'] + 1}/{cfg.epochs}",
                   disable=True if not (cfg.progress and self.dist.is_main) else None, leave=False,
                   dynamic_ncols=True)
        # Without a progress bar (logs, batch jobs) a line every minute shows the run is alive.
        log_lines = bar.disable and self.dist.is_main
        last_log = time.monotonic()
        for index in batches[st["step_in_epoch"] :]:
            if st["global_step"] >= self.total_steps:  # --max-steps reached inside this epoch
                break
            seq, lengths = _batch_tensors(self.train_data, index, self.device)
            beta = kl_beta(st["global_step"], self.steps_per_epoch, self.total_steps, cfg)
            lr = learning_rate(st["global_step"], self.total_steps, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            losses = self.step(seq, lengths, beta)
            if losses is None:
                st["skipped_steps"] += 1
                bad_run += 1
                if bad_run >= MAX_CONSECUTIVE_BAD_STEPS:
                    # The weights in memory are suspect, so nothing is written: the last
                    # checkpoint on disk (if any) stays the one to go back to.
                    kept = (f"the last checkpoint ({self.out / RESUME_FILE}) is kept unchanged"
                            if (self.out / RESUME_FILE).exists() else "no checkpoint had been written yet")
                    raise TrainingDiverged(
                        f"loss/gradients were NaN or Inf for {bad_run} consecutive steps (epoch {st['epoch'] + 1}, "
                        f"step {st['step_in_epoch']}); stopped: {kept}; lower --lr or --kl-weight, or raise --grad-clip"
                    )
            else:
                bad_run = 0
                b = len(index)
                for key in ("loss", "recon", "kl"):
                    sums[key] += losses[key] * b
                sums["n"] += b
                last = losses
            sums["mol"] += len(index) * self.dist.world_size
            st["global_step"] += 1
            st["step_in_epoch"] += 1
            rate = sums["mol"] / max(1e-9, sums["seconds"] + time.perf_counter() - banked)
            bar.update(1)
            if st["global_step"] % 10 == 0:
                bar.set_postfix(loss=f"{last['loss']:.2f}", kl=f"{last['kl']:.1f}",
                                beta=f"{beta:.3f}", mol_s=f"{rate:.0f}")
            if log_lines and time.monotonic() - last_log > 60:
                last_log = time.monotonic()
                self.echo(f"epoch {st['epoch'] + 1}/{cfg.epochs} step {st['step_in_epoch']}/{len(batches)} "
                          f"loss {last['loss']:.3f} kl {last['kl']:.2f} beta {beta:.3f} lr {lr:.2e} {rate:.0f} mol/s")
            # Ranks stop together: a signal to any rank stops all at the same step.
            if _all_ranks_agree(flag.received is not None, self.dist):
                bar.close()
                self._bank_time(banked)
                return True
            if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                banked = self._bank_time(banked)
                self._checkpoint()
                last_ckpt = time.monotonic()
        bar.close()
        self._bank_time(banked)
        n = max(1, sums["n"])
        self._epoch_train = {
            "train_loss": sums["loss"] / n, "train_recon": sums["recon"] / n, "train_kl": sums["kl"] / n,
            "beta": kl_beta(st["global_step"], self.steps_per_epoch, self.total_steps, cfg),
            "lr": learning_rate(max(0, st["global_step"] - 1), self.total_steps, cfg),
            "train_mol_per_s": sums["mol"] / max(1e-9, sums["seconds"]),
        }
        return False

    def _bank_time(self, since: float) -> float:
        """Add the training time since ``since`` to the run's and the epoch's totals; returns now."""
        now = time.perf_counter()
        self.state["elapsed"] += now - since
        self.state["partial"]["seconds"] += now - since
        return now

    def _end_epoch(self) -> dict[str, Any]:
        st = self.state
        row: dict[str, Any] = {"epoch": st["epoch"] + 1, "step": st["global_step"], **self._epoch_train}
        if self.dist.is_main:
            row.update(self.validate())
        row["skipped_steps"] = st["skipped_steps"]
        row["elapsed_s"] = st["elapsed"]
        if self.dist.enabled:
            self._check_replicas_in_sync()
            import torch.distributed as dist

            # Every rank takes rank 0's validated row, so early stopping is decided alike.
            shared = [row]
            dist.broadcast_object_list(shared, src=0)
            row = shared[0]
        st["history"].append(row)
        val = row.get("val_loss", row["train_loss"])
        if val < st["best_val"] - 1e-6:
            st["best_val"] = val
            st["bad_epochs"] = 0
        else:
            st["bad_epochs"] += 1
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["partial"] = _fresh_partial()
        # Inference weights first, then the resume state: a kill in between resumes
        # from the previous epoch and rewrites both.
        if self.dist.is_main:
            MolVAE(self.net, self.vocab, device=self.device).save(self.out, {"training": self.cfg.to_dict()})
            self._write_metrics()
        self._checkpoint()
        self.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        return row

    def _check_replicas_in_sync(self) -> None:
        """All ranks must hold identical weights; a mismatch means a broken all-reduce."""
        import torch.distributed as dist

        checksum = torch.stack([p.detach().double().sum() for p in self.net.parameters()]).sum().cpu()
        low, high = checksum.clone().reshape(1), checksum.clone().reshape(1)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise MolvaeError(f"model replicas diverged across {self.dist.world_size} processes "
                              f"(parameter checksums {low.item()!r} vs {high.item()!r})")

    def _write_metrics(self) -> None:
        history = self.state["history"]
        fields: list[str] = []
        for row in history:
            fields.extend(k for k in row if k not in fields)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.out / METRICS_FILE, buf.getvalue())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss, token accuracy, active latent units, exact reconstruction and prior-sample validity/uniqueness."""
        from molvae.chemistry import canonicalize
        from molvae.metrics import active_units

        cfg = self.cfg
        self.net.eval()
        out: dict[str, float] = {}
        val = self.val_data
        if len(val):
            n = min(len(val), cfg.val_max)
            sub = val.subset(np.arange(n))
            totals = {"recon": 0.0, "kl": 0.0, "correct": 0, "tokens": 0}
            means = []
            beta = kl_beta(self.state["global_step"], self.steps_per_epoch, self.total_steps, cfg)
            # Validation must not shift the training RNG streams (the CPU's and this GPU's).
            gpus = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=gpus):
                torch.manual_seed(cfg.seed + 7919)
                for index in length_bucketed_batches(sub.lengths, cfg.batch_size, 0, 0, shuffle=False):
                    seq, lengths = _batch_tensors(sub, index, self.device)
                    logits, mu, logvar = run_in_precision(self.net, self.dtype, "forward", seq, lengths)
                    losses = vae_loss(logits, seq[:, 1:], mu, logvar, beta)
                    totals["recon"] += float(losses["recon"]) * len(index)
                    totals["kl"] += float(losses["kl"]) * len(index)
                    means.append(mu.float().cpu().numpy())
                    target = seq[:, 1:]
                    mask = target != 0
                    totals["correct"] += int(((logits.argmax(-1) == target) & mask).sum())
                    totals["tokens"] += int(mask.sum())
            out["val_recon"] = totals["recon"] / n
            out["val_kl"] = totals["kl"] / n
            out["val_loss"] = out["val_recon"] + beta * out["val_kl"]
            out["val_token_acc"] = totals["correct"] / max(1, totals["tokens"])
            if n >= 2:  # posterior collapse shows as few active units while the KL term looks healthy
                out["val_active_units"] = active_units(np.concatenate(means))
        model = MolVAE(self.net, self.vocab, device=self.device, precision="fp32")
        if len(val) and cfg.val_recon_n:
            m = min(len(val), cfg.val_recon_n)
            ids = [list(map(int, val.ids[val.offsets[i] : val.offsets[i + 1]])) for i in range(m)]
            z = model.encode_ids(ids)
            decoded = model.decode(z, strategy="greedy")
            hits = sum(canonicalize(d) == s for d, s in zip(decoded, val.smiles[:m]))
            out["val_exact_recon"] = hits / m
        if cfg.val_sample_n:
            # N(0, I), the prior training shapes the codes towards (a stored prior would be stale here)
            samples = model.sample(cfg.val_sample_n, seed=cfg.seed + self.state["epoch"], prior="standard")
            canon = [canonicalize(s) for s in samples]
            valid = [c for c in canon if c is not None]
            out["prior_validity"] = len(valid) / len(samples)
            out["prior_uniqueness"] = len(set(valid)) / len(valid) if valid else 0.0
            out["prior_novelty"] = (sum(c not in self.all_smiles for c in set(valid)) / len(set(valid))) if valid else 0.0
        self.net.train()
        return out


def train(out: str | Path, train_config: TrainConfig | None = None, model_config: dict[str, Any] | None = None,
          resume: bool = False, epochs_override: int | None = None) -> MolVAE:
    """Train (or resume) a run and return the trained model.

    On resume, a ``train_config`` or ``model_config`` given must match the saved run, except
    the fields in :data:`RESUME_MAY_CHANGE` (see :class:`Trainer`).

    Tunes the process's memory allocator first (:func:`molvae.runtime.tune_allocator`).
    """
    tune_allocator()
    trainer = Trainer(out, train_config, model_config, resume=resume, epochs_override=epochs_override)
    trainer.fit()
    return MolVAE(trainer.net.eval(), trainer.vocab, device=trainer.device)
