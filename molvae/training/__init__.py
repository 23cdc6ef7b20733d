"""Training: configuration, the training loop, checkpoints and resume.

A run directory holds ``config.json`` (model, training and data configuration),
``vocab.json``, ``model.safetensors`` (latest epoch-end weights, what
:meth:`.MolVAE.load` reads), ``resume.pt`` (optimizer, RNG and position, read with
``weights_only=True``), ``metrics.csv`` (one row per epoch), ``data_summary.json``
and ``run_info.json`` (package versions, git commit). Every file is written
atomically. The batch order of an epoch is a pure function of (seed, epoch), and
LR and β are pure functions of the global step, so a resumed run continues
exactly where the checkpoint was taken.

:mod:`~molvae.training.config` (:class:`~molvae.TrainConfig`, what a resume may change, the errors
that end a run), :mod:`~molvae.training.steps` (one eager optimizer step, the optimizer),
:mod:`~molvae.training.cudagraphs` (steps replayed from CUDA graphs; which kind a run takes),
:mod:`~molvae.training.distributed` (``torchrun`` ranks), :mod:`~molvae.training.signals`
(SIGINT/SIGTERM as a flag), :mod:`~molvae.training.preparation` (data, parent model, network),
:mod:`~molvae.training.rundir` (settings on resume, ``resume.pt``, ``metrics.csv``),
:mod:`~molvae.training.epochs` (the epoch loop's bookkeeping), :mod:`~molvae.training.validation`
(an epoch's validation figures) and :mod:`~molvae.training.trainer` (:class:`Trainer`,
:func:`~molvae.train`). The KL and learning-rate schedules are ``molvae.schedules``.
"""

from molvae.schedules import kl_beta, learning_rate
from molvae.training.config import (
    RESUME_MAY_CHANGE,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    check_resume_config,
)
from molvae.training.cudagraphs import CudaGraphTrainStep, make_train_step
from molvae.training.distributed import DistributedContext, init_distributed
from molvae.training.epochs import MAX_CONSECUTIVE_BAD_STEPS
from molvae.training.preparation import parent_summary
from molvae.training.steps import StepFn, make_optimizer, train_step
from molvae.training.trainer import Trainer, train

__all__ = [
    "MAX_CONSECUTIVE_BAD_STEPS",
    "RESUME_MAY_CHANGE",
    "CudaGraphTrainStep",
    "DistributedContext",
    "StepFn",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "check_resume_config",
    "init_distributed",
    "kl_beta",
    "learning_rate",
    "make_optimizer",
    "make_train_step",
    "parent_summary",
    "train",
    "train_step",
]
