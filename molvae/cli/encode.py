"""``molvae encode``: latent codes (posterior means) of a molecule file, streamed in chunks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from molvae.cli.common import add_model_arguments, load_model
from molvae.data import read_smiles
from molvae.errors import MolvaeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode molecules to latent vectors (.npy)", description=__doc__)
    add_model_arguments(p)
    p.add_argument("--input", required=True, help="molecule file (.smi/.csv/.tsv/.txt(.gz)/.parquet)")
    p.add_argument("--smiles-column", default=None)
    p.add_argument("--out", required=True, help="output .npy of shape [N, latent_dim]; NaN rows for skipped molecules")
    p.add_argument("--sample", action="store_true", help="sample z ~ q(z|x) instead of the mean")
    p.add_argument("--on-error", choices=["skip", "raise"], default="skip",
                   help="skip (NaN row, counted) or stop at the first invalid molecule / unknown token")
    p.add_argument("--chunk-size", type=int, default=20_000, help="molecules tokenized and encoded at a time")
    p.add_argument("--batch-size", type=int, default=1024)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    smiles = read_smiles(args.input, column=args.smiles_column)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    # Memory-mapped output: rows are written chunk by chunk, so memory stays
    # bounded by one chunk of token lists whatever the library size.
    latents = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(smiles), model.config.latent_dim))
    skipped = 0
    try:
        # disable=None: no bar when stderr is not a terminal (logs, pipes, CI).
        with tqdm(total=len(smiles), unit="mol", desc="encode", dynamic_ncols=True, disable=None) as bar:
            for start in range(0, len(smiles), args.chunk_size):
                chunk = smiles[start : start + args.chunk_size]
                ids = []
                for line, s in enumerate(chunk, start=start + 1):
                    try:
                        ids.append(model.token_ids(s))
                    except MolvaeError as exc:
                        if args.on_error == "raise":
                            raise type(exc)(f"{args.input}, record {line}: {exc}") from None
                        ids.append(None)
                        skipped += 1
                latents[start : start + len(chunk)] = model.encode_ids(ids, sample=args.sample, batch_size=args.batch_size)
                bar.update(len(chunk))
        latents.flush()
        del latents
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"encoded {len(smiles) - skipped:,} of {len(smiles):,} molecules to {out} "
          f"(shape [{len(smiles)}, {model.config.latent_dim}]); skipped {skipped:,} invalid or out-of-vocabulary (NaN rows)")
    return 0
