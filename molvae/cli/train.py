"""``molvae train``: train a VAE on MOSES or a molecule file, or resume a run."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from molvae.cli.commands import add_command
from molvae.cli.common import add_config_options
from molvae.model import ModelConfig
from molvae.training import TrainConfig, Trainer, TrainingInterrupted

# (flag, TrainConfig field, type, help); defaults come from TrainConfig so they live in one place.
_TRAIN_OPTIONS = [
    (
        "--data",
        "data",
        str,
        "'moses' (ZINC subset from the molsets wheel) or a .smi/.txt/.csv/.tsv/.sdf (optionally .gz) or .parquet file",
    ),
    (
        "--smiles-column",
        "smiles_column",
        str,
        "column holding SMILES in .csv/.tsv/.parquet (default: a column named smiles)",
    ),
    ("--representation", "representation", str, "smiles or selfies"),
    ("--limit", "limit", int, "use only the first N records (MOSES is ordered: for a subset use --sample)"),
    ("--sample", "sample", int, "use a random sample of N records (seeded by --seed): a representative subset"),
    ("--max-tokens", "max_tokens", int, "drop molecules longer than this many tokens (incl. BOS/EOS)"),
    ("--val-fraction", "val_fraction", float, "fraction held out for validation"),
    ("--epochs", "epochs", int, "number of epochs"),
    ("--batch-size", "batch_size", int, "molecules per batch"),
    ("--lr", "lr", float, "peak learning rate (AdamW)"),
    ("--lr-schedule", "lr_schedule", str, "constant or cosine (after warm-up)"),
    ("--warmup-steps", "warmup_steps", int, "steps of linear LR warm-up (at most half the run)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--grad-clip", "grad_clip", float, "gradient norm clip"),
    ("--kl-schedule", "kl_schedule", str, "linear, cyclical or constant"),
    ("--kl-weight", "kl_weight", float, "final KL weight beta"),
    ("--kl-warmup-epochs", "kl_warmup_epochs", float, "epochs of linear KL annealing (at most the whole run)"),
    ("--kl-cycles", "kl_cycles", int, "number of cycles for the cyclical schedule"),
    ("--free-bits", "free_bits", float, "minimum KL per latent dimension (nats)"),
    ("--word-dropout", "word_dropout", float, "probability of hiding a teacher-forced token"),
    ("--precision", "precision", str, "auto, bf16 or fp32 (auto: bf16 on CUDA and AMX/AVX512-BF16 CPUs)"),
    ("--device", "device", str, "auto, cpu, cuda, cuda:N"),
    ("--seed", "seed", int, "random seed (data split, init, batch order)"),
    ("--val-recon-n", "val_recon_n", int, "validation molecules decoded each epoch for exact reconstruction"),
    ("--val-sample-n", "val_sample_n", int, "prior samples drawn each epoch for validity/uniqueness"),
    ("--early-stopping", "early_stopping_patience", int, "stop after N epochs without validation improvement"),
    ("--max-steps", "max_steps", int, "stop after N optimizer steps (the LR and KL schedules span them)"),
    ("--checkpoint-minutes", "checkpoint_minutes", float, "also checkpoint mid-epoch every N minutes"),
    (
        "--init-from",
        "init_from",
        str,
        "fine-tune: start from this model's weights, architecture and vocabulary "
        "(a bundled name such as zinc-smiles, or a model directory)",
    ),
]
_MODEL_OPTIONS = [
    ("--embedding-dim", "embedding_dim", int, "size of each token's embedding"),
    ("--encoder-hidden", "encoder_hidden", int, "hidden units of each encoder GRU direction"),
    ("--encoder-layers", "encoder_layers", int, "stacked encoder GRU layers"),
    ("--latent-dim", "latent_dim", int, "dimensions of the latent space"),
    ("--decoder-hidden", "decoder_hidden", int, "hidden units of each decoder GRU layer"),
    ("--decoder-layers", "decoder_layers", int, "stacked decoder GRU layers"),
    ("--encoder-dropout", "encoder_dropout", float, "dropout between encoder layers"),
    ("--decoder-dropout", "decoder_dropout", float, "dropout between decoder layers"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", description=__doc__)
    p.add_argument("--out", "-o", required=True, help="run directory (checkpoints, config, metrics)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint with its saved "
        "settings; options may be repeated, and only --epochs, --max-steps, --early-stopping, "
        "--checkpoint-minutes, --device, --precision and --no-cuda-graphs may change",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        default=None,
        help="launch each GPU training step's kernels one by one instead of replaying CUDA graphs",
    )
    add_config_options(p, TrainConfig, _TRAIN_OPTIONS)
    add_config_options(p.add_argument_group("model architecture"), ModelConfig, _MODEL_OPTIONS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from molvae.tables import check_output_dir

    check_output_dir(args.out, create=False, model_ok=True)
    given = {f: getattr(args, f) for _, f, *_ in _TRAIN_OPTIONS if getattr(args, f) is not None}
    if args.cuda_graphs is not None:
        given["cuda_graphs"] = args.cuda_graphs
    model = {f: getattr(args, f) for _, f, *_ in _MODEL_OPTIONS if getattr(args, f) is not None}
    if args.resume:
        names = {field: flag for flag, field, *_ in _TRAIN_OPTIONS + _MODEL_OPTIONS}
        names["cuda_graphs"] = "--no-cuda-graphs"
        trainer = Trainer(
            args.out,
            model_config=model,
            resume=True,
            echo=print,
            overrides={**given, "progress": not args.no_progress},
            option_names=names,
        )
    else:
        if args.init_from is not None and args.representation is None:
            from molvae.model import MolVAE

            given["representation"] = MolVAE.load(args.init_from, device="cpu").config.representation
        cfg = dataclasses.replace(TrainConfig(), **given, progress=not args.no_progress)
        trainer = Trainer(args.out, cfg, model, echo=print)
    try:
        history = trainer.fit()
    except TrainingInterrupted as exc:
        print(f"molvae train: {exc}", file=sys.stderr)
        return 130
    finally:
        if trainer.dist.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
    if not trainer.dist.is_main:
        return 0
    last = history[-1] if history else {}
    mc = trainer.model_config
    n_params = sum(p.numel() for p in trainer.net.parameters())
    print(
        f"trained a {mc.representation.upper()} VAE ({mc.vocab_size} tokens, latent {mc.latent_dim}, "
        f"{n_params / 1e6:.2f}M parameters) -> {args.out}"
    )
    if last:
        keys = (
            "epoch",
            "train_loss",
            "val_loss",
            "val_token_acc",
            "val_exact_recon",
            "prior_validity",
            "train_mol_per_s",
        )
        print(
            "final: "
            + ", ".join(
                f"{k}={last[k]:.4g}" if isinstance(last.get(k), float) else f"{k}={last.get(k)}"
                for k in keys
                if k in last
            )
        )
    return 0
