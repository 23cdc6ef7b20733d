"""The user-facing model: :class:`MolVAE`, a trained network with its vocabulary.

SMILES in, latent codes out (:meth:`.MolVAE.encode`), and back (:meth:`.MolVAE.decode`,
:meth:`.MolVAE.sample` from a prior, :meth:`.MolVAE.decode_valid`).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molvae.batching import check_batch_size, iter_batches
from molvae.devices import resolve_device, resolve_dtype
from molvae.errors import ConfigError, InvalidMoleculeError, ModelLoadError, MolvaeError, shorten
from molvae.model.decoding import Strategy, generate
from molvae.model.encoding import encode_token_ids
from molvae.model.fitting import fit_latents
from molvae.model.network import SequenceVAE
from molvae.model.store import (
    available_pretrained,
    model_directory,
    pretrained_dir,
    read_model_dir,
    save_model,
    weights_sha256,
)
from molvae.model.summary import describe_model
from molvae.priors import Prior, load_prior
from molvae.seeding import ATTEMPT_STRIDE, prior_latents, random_seed
from molvae.tokenizers import Vocabulary, get_tokenizer

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

    def __init__(
        self, net: SequenceVAE, vocab: Vocabulary, device: str | torch.device | None = "auto", precision: str = "fp32"
    ):
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
        return (
            f"MolVAE({where}{self.config.representation.upper()}, {self.config.vocab_size} tokens, "
            f"latent {self.config.latent_dim}, {self.n_parameters / 1e6:.2f}M parameters, {self.device}, "
            f"{str(self.dtype).removeprefix('torch.')})"
        )

    # ---- persistence
    @classmethod
    def pretrained(
        cls, name: str = "zinc-smiles", device: str | torch.device | None = "auto", precision: str = "fp32"
    ) -> MolVAE:
        """Load a model bundled with the package: ``"zinc-smiles"`` or ``"zinc-selfies"``.

        Both were trained on the MOSES ZINC subset; their model cards are in ``docs/MODEL_CARD.md``
        and in each model's ``config.json`` (``card`` section).
        """
        names = available_pretrained()
        if name not in names:
            raise ModelLoadError(f"no pretrained model named {name!r} (bundled: {', '.join(names) or 'none'})")
        return cls.load(pretrained_dir() / name, device=device, precision=precision)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = "auto", precision: str = "fp32") -> MolVAE:
        """Load a model directory (config.json, vocab.json, model.safetensors) or a bundled model by name.

        A string that names a bundled model (``"zinc-smiles"``) is that model, even where the
        working directory holds a file or folder of the same name (a warning says how to reach
        it: ``./zinc-smiles``); a :class:`~pathlib.Path` is always a directory.
        """
        folder = model_directory(path)
        net, vocab, card = read_model_dir(folder)
        model = cls(net, vocab, device=device, precision=precision)
        model.source = str(folder)
        model.card = card
        return model

    def save(
        self, path: str | Path, extra_config: dict[str, Any] | None = None, weights_dtype: torch.dtype = torch.float32
    ) -> None:
        """Write weights (safetensors), config.json and vocab.json atomically.

        ``weights_dtype=torch.float16`` halves the file (used for the bundled models); the
        weights are checked to fit the format's range first.
        """
        save_model(self, path, extra_config, weights_dtype)

    # ---- inference helpers
    def _inference_net(self) -> SequenceVAE:
        if self.dtype == torch.float32:
            return self.net
        if self._infer_net is None:
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
        return describe_model(self)

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file the model was loaded from (None for a model built in memory).

        Names the exact weights in run records: a fine-tuned run's parent, an optimization's model.
        """
        return weights_sha256(self.source)

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

        RDKit canonicalization dominates encoding time (more so on a GPU, where the
        network is fast), so it runs in ``n_jobs`` worker processes: by default all cores for
        more than ``PARALLEL_CANONICALIZE`` molecules, below which starting the
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
            raise InvalidMoleculeError(
                f"molecule {shorten(smiles)} has {len(tokens)} tokens; this model handles "
                f"at most {self.config.max_length - 2}"
            )
        return self.vocab.encode(tokens, molecule=smiles)

    def encode(
        self,
        smiles: Sequence[str],
        sample: bool = False,
        batch_size: int = 512,
        errors: str = "raise",
        seed: int | None = None,
        n_jobs: int | None = None,
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
    def encode_ids(
        self,
        ids: Sequence[list[int] | None],
        sample: bool = False,
        batch_size: int = 512,
        seed: int | None = None,
        first_key: int = 0,
    ) -> np.ndarray:
        """Encode already-tokenized molecules (None → NaN row); batches sorted by length.

        With ``sample=True`` molecule ``i`` gets ``mu + sigma * eps`` where ``eps`` is row
        ``first_key + i`` of ``molvae.seeding.prior_latents`` for ``seed`` (drawn from
        torch's global generator when None): the same sample whatever the batch size, and
        a file encoded in chunks (``first_key`` = the chunk's first row) samples as a whole.
        """
        eps = None
        if sample:
            eps = torch.from_numpy(
                prior_latents(
                    len(ids), self.config.latent_dim, random_seed() if seed is None else seed, start=first_key
                )
            )
        # bf16 on CPU: fixed shapes, or oneDNN's primitive caches grow with the input.
        static = self.device.type == "cpu" and self.dtype != torch.float32
        return encode_token_ids(self._inference_net(), ids, self.device, batch_size, eps, static)

    def fit_latents(
        self, smiles: Sequence[str], max_steps: int = 400, lr: float = 0.05, check_every: int = 25
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Latent codes [N, D] whose greedy decode is each input molecule, where one can be found:
        ``molvae.model.fitting.fit_latents`` (the codes, and per molecule whether it worked)."""
        return fit_latents(self, smiles, max_steps=max_steps, lr=lr, check_every=check_every)

    @torch.no_grad()
    def decode(
        self,
        z: np.ndarray | torch.Tensor,
        strategy: Strategy = "greedy",
        temperature: float = 1.0,
        beam_width: int = 5,
        batch_size: int = 1024,
        max_length: int | None = None,
        seed: int | None = None,
        keys: Sequence[int] | np.ndarray | None = None,
    ) -> list[str]:
        """Decode latents [N, D] to SMILES strings (empty string when nothing valid came out for SELFIES).

        Strings are returned as generated, not validated: pass them to
        :mod:`molvae.chemistry` to check validity. A sampled decode of latent ``i``
        depends only on ``z[i]``, ``seed`` and ``keys[i]`` (default ``i``), not on
        ``batch_size`` or the other latents (``molvae.seeding``).
        """
        return [
            s
            for batch in self.iter_decode(z, strategy, temperature, beam_width, batch_size, max_length, seed, keys)
            for s in batch
        ]

    def iter_decode(
        self,
        z: np.ndarray | torch.Tensor,
        strategy: Strategy = "greedy",
        temperature: float = 1.0,
        beam_width: int = 5,
        batch_size: int = 1024,
        max_length: int | None = None,
        seed: int | None = None,
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
            ids = generate(
                self.net,
                z[start:stop].to(self.device),
                strategy,
                temperature,
                max_length,
                beam_width,
                seed,
                key_ids[start:stop],
                self.dtype,
                compile=self.compile_decoder,
            )
            return self.ids_to_smiles(ids)

        yield from iter_batches(decode_batch, z.shape[0], batch_size, "decode")

    def decode_valid(
        self,
        z: np.ndarray | torch.Tensor,
        attempts: int = 10,
        temperature: float = 0.5,
        seed: int | None = 0,
        batch_size: int = 1024,
        keys: Sequence[int] | np.ndarray | None = None,
    ) -> list[str | None]:
        """The most frequent valid molecule (canonical SMILES) over several decodes of each latent, or None.

        Decodes greedily once, then ``attempts - 1`` times by sampling at a low
        ``temperature`` (all attempts in one batch); ties go to the greedy decode.
        Attempt ``k`` of latent ``i`` draws stream ``keys[i] + k * ATTEMPT_STRIDE``, so
        the answer for a latent does not depend on the other latents or on ``batch_size``.
        """
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
            decoded += self.decode(
                repeated,
                strategy="sample",
                temperature=temperature,
                seed=seed,
                batch_size=batch_size,
                keys=attempt_keys,
            )
        result: list[str | None] = []
        for i in range(n):
            # Greedy decode first in each Counter, so most_common breaks ties in its favour.
            counts = Counter(c for c in (canonicalize(decoded[i + k * n]) for k in range(attempts)) if c is not None)
            result.append(counts.most_common(1)[0][0] if counts else None)
        return result

    def ids_to_smiles(self, ids: np.ndarray) -> list[str]:
        tokenizer = self.tokenizer
        return [tokenizer.to_smiles(tokenizer.detokenize(toks)) for toks in self.vocab.decode_batch(ids)]

    def sample(
        self,
        n: int,
        strategy: Strategy = "sample",
        temperature: float = 1.0,
        seed: int | None = None,
        batch_size: int = 1024,
        prior: str | Prior | None = "auto",
    ) -> list[str]:
        """Draw ``n`` latents from a prior and decode them.

        ``prior``: ``"auto"`` (the model's default prior: ``molvae info`` names it),
        ``"standard"`` (N(0, I)), the name of a prior stored with the model, or a
        :class:`molvae.priors.Prior`. For a given seed, ``sample(n)`` is the first ``n``
        molecules of ``sample(m)`` for any ``m > n``, whatever ``batch_size``.
        """
        return [s for batch in self.iter_sample(n, strategy, temperature, seed, batch_size, prior) for s in batch]

    def iter_sample(
        self,
        n: int,
        strategy: Strategy = "sample",
        temperature: float = 1.0,
        seed: int | None = None,
        batch_size: int = 1024,
        prior: str | Prior | None = "auto",
    ) -> Iterator[list[str]]:
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
            yield from self.iter_decode(
                z,
                strategy=strategy,
                temperature=temperature,
                seed=seed,
                batch_size=batch_size,
                keys=np.arange(start, start + len(z)),
            )

    def prior(self, name: str | Prior | None = "auto") -> Prior:
        """The prior ``name`` of this model (see :meth:`sample`), loaded once and kept."""
        if isinstance(name, Prior):
            return load_prior(self, name)
        key = "auto" if name is None else name
        if key not in self._priors:
            self._priors[key] = load_prior(self, key)
        return self._priors[key]

    def reconstruct(
        self, smiles: Sequence[str], strategy: Strategy = "greedy", errors: str = "raise"
    ) -> list[str | None]:
        """Encode (posterior mean) and decode back; None for inputs that could not be encoded."""
        z = self.encode(smiles, errors=errors)
        ok = ~np.isnan(z).any(axis=1)
        decoded = self.decode(z[ok], strategy=strategy) if ok.any() else []
        it = iter(decoded)
        return [next(it) if good else None for good in ok]

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
