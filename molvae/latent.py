"""Latent-space exploration: walk between two molecules, look around one.

>>> from molvae.model import MolVAE
>>> from molvae import latent
>>> model = MolVAE.load("runs/x")
>>> path = latent.interpolate(model, "aspirin", "ibuprofen", steps=12, method="slerp")
>>> around = latent.neighbourhood(model, "celecoxib", n=200, radius=0.5)

Both functions take drug names (see ``molvae.drugs``) or SMILES, encode them to
the posterior mean and return :class:`pandas.DataFrame` tables. Their settings and
summary numbers are kept in ``DataFrame.attrs``.

Decoding
    :func:`interpolate` decodes every point with :meth:`.MolVAE.decode_valid`
    (greedy first, then ``attempts - 1`` low-temperature samples; the most frequent
    valid molecule wins). Points where nothing valid came out stay in the table with
    ``valid=False`` and an empty ``smiles``.

    :func:`neighbourhood` draws ``n`` latents ``z = mu + radius * eps``,
    ``eps ~ N(0, I)`` (``radius`` is in units of the prior's standard deviation, which
    is 1) and by default decodes each draw *once, greedily* (``attempts=1``). Greedy
    decoding is a deterministic map z -> molecule, so the distance from the query is
    set by ``radius`` alone rather than by decoder noise, and ``count`` (how many
    draws gave a molecule) measures how much of the ball that molecule occupies.
    Pass ``attempts > 1`` to use :meth:`.MolVAE.decode_valid` per draw instead
    (more valid draws, ``attempts`` times the cost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from molvae.chemistry import PROPERTIES, canonicalize_many, property_table, tanimoto_similarity
from molvae.errors import ConfigError
from molvae.priors import Prior

__all__ = [
    "DEFAULT_PROPERTIES",
    "ENDPOINTS",
    "canonical_set",
    "decode_path",
    "interpolate",
    "lerp",
    "neighbourhood",
    "resolve_input",
    "slerp",
    "t_grid",
]

#: How :func:`interpolate` places the endpoints: the encoder's posterior mean, or a
#: code fitted so that it decodes to the input (:meth:`.MolVAE.fit_latents`).
ENDPOINTS: tuple[str, ...] = ("mean", "fit")

#: Property columns of the tables (keys of :data:`~molvae.chemistry.properties.PROPERTIES`).
DEFAULT_PROPERTIES: tuple[str, ...] = ("logp", "qed", "sa", "esol", "mw")

# Below this sin(angle) the two directions count as parallel (or anti-parallel)
# and slerp is numerically meaningless: fall back to linear interpolation.
_PARALLEL_EPS = 1e-6


# --------------------------------------------------------------------------- pure maths


def t_grid(steps: int) -> np.ndarray:
    """``steps`` evenly spaced interpolation weights from 0 to 1 inclusive (``steps >= 2``)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ConfigError(f"steps must be an integer >= 2 (both endpoints are included), got {steps!r}")
    return np.linspace(0.0, 1.0, int(steps))


def _prepare(a: np.ndarray, b: np.ndarray, t: float | Sequence[float] | np.ndarray):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D vectors of the same length, got shapes {a.shape} and {b.shape}")
    t_arr = np.asarray(t, dtype=np.float64)
    if t_arr.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D array, got shape {t_arr.shape}")
    return a, b, t_arr


def lerp(a: np.ndarray, b: np.ndarray, t: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Linear interpolation ``(1 - t) a + t b``.

    A scalar ``t`` gives one vector shaped like ``a``; an array of ``k`` weights gives
    ``[k, D]``. ``t = 0`` and ``t = 1`` return ``a`` and ``b`` exactly.
    """
    a, b, t_arr = _prepare(a, b, t)
    tt = t_arr[:, None] if t_arr.ndim == 1 else t_arr
    # (1 - t) a + t b is exact at the ends in exact arithmetic only; pin them.
    return _pin_ends((1.0 - tt) * a + tt * b, a, b, t_arr)


def _pin_ends(out: np.ndarray, a: np.ndarray, b: np.ndarray, t_arr: np.ndarray) -> np.ndarray:
    """Make the points at t = 0 and t = 1 exactly ``a`` and ``b`` (rounding would move them)."""
    if t_arr.ndim == 1:
        out[t_arr == 0.0] = a
        out[t_arr == 1.0] = b
    elif t_arr == 0.0:
        out = a.copy()
    elif t_arr == 1.0:
        out = b.copy()
    return out


def slerp(
    a: np.ndarray, b: np.ndarray, t: float | Sequence[float] | np.ndarray, eps: float = _PARALLEL_EPS
) -> np.ndarray:
    """Spherical linear interpolation along the great circle from ``a`` to ``b``.

    ``sin((1 - t) W) / sin W * a + sin(t W) / sin W * b`` with ``W`` the angle between
    ``a`` and ``b``: for equal-norm endpoints every point keeps that norm (a Gaussian
    prior puts its mass on such a shell, and the straight line cuts inside it). When
    the vectors are (nearly) parallel or anti-parallel (``sin W < eps``) or one is zero,
    the angle is undefined and this falls back to :func:`lerp`. Shapes as in :func:`lerp`.
    """
    a, b, t_arr = _prepare(a, b, t)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return lerp(a, b, t_arr)
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    omega = np.arccos(cos)
    sin = np.sin(omega)
    if sin < eps:
        return lerp(a, b, t_arr)
    tt = t_arr[:, None] if t_arr.ndim == 1 else t_arr
    return _pin_ends((np.sin((1.0 - tt) * omega) / sin) * a + (np.sin(tt * omega) / sin) * b, a, b, t_arr)


_METHODS = {"linear": lerp, "lerp": lerp, "slerp": slerp, "spherical": slerp}


# --------------------------------------------------------------------------- helpers


def resolve_input(molecule: str) -> tuple[str, str]:
    from molvae.drugs import resolve_molecule

    if not isinstance(molecule, str):
        raise ConfigError(f"expected a drug name or SMILES string, got {type(molecule).__name__}")
    return resolve_molecule(molecule)


def _check_properties(properties: Sequence[str]) -> tuple[str, ...]:
    names = tuple(properties)
    unknown = [p for p in names if p not in PROPERTIES]
    if unknown:
        raise ConfigError(f"unknown properties {unknown}; choose from {', '.join(sorted(PROPERTIES))}")
    return names


def _property_columns(smiles: Sequence[str], properties: Sequence[str]) -> pd.DataFrame:
    """Property values for each SMILES ('' -> NaN), single process (the lists are small)."""
    table = property_table(list(smiles), properties=list(properties), n_jobs=1)
    return table[list(properties)].reset_index(drop=True)


def _similarity(reference: str, smiles: Sequence[str]) -> np.ndarray:
    return tanimoto_similarity(reference, list(smiles)) if len(smiles) else np.empty(0)


def _encode_one(model, smiles: str) -> np.ndarray:
    # errors="raise": an unknown token raises UnknownTokenError naming it.
    return np.asarray(model.encode([smiles]), dtype=np.float64)[0]


# --------------------------------------------------------------------------- interpolation


#: Path points decoded per call: the progress bar moves this often (the molecules do not depend on it).
PATH_CHUNK = 256


def _decode_path(
    model, z_start, z_end, ts, interp, prior: Prior, attempts, temperature, seed, progress: bool | None = False
) -> list[str | None]:
    from tqdm.auto import tqdm

    points = prior.path(z_start, z_end, ts, interp).astype(np.float32)
    decoded: list[str | None] = []
    with tqdm(
        total=len(points), unit="point", desc="interpolate", disable=None if progress is None else not progress
    ) as bar:
        for start in range(0, len(points), PATH_CHUNK):
            chunk = points[start : start + PATH_CHUNK]
            # keys: each point's draws are those of its place on the whole path, however it is chunked
            decoded += model.decode_valid(
                chunk, attempts=attempts, temperature=temperature, seed=seed, keys=np.arange(start, start + len(chunk))
            )
            bar.update(len(chunk))
    return decoded


def interpolate(
    model,
    start: str,
    end: str,
    steps: int = 12,
    method: str = "linear",
    attempts: int = 10,
    temperature: float = 0.5,
    seed: int | None = 0,
    unique: int | None = None,
    max_points: int = 200,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    endpoints: str = "mean",
    fit_steps: int = 400,
    prior: str | Prior | None = "standard",
    progress: bool | None = False,
) -> pd.DataFrame:
    """Walk the latent space from ``start`` to ``end`` (drug names or SMILES) and decode the path.

    Both endpoints are encoded to their posterior means and joined by ``method``
    (``"linear"`` or ``"slerp"``) at ``steps`` evenly spaced weights ``t`` (endpoints
    included); each point is decoded with :meth:`.MolVAE.decode_valid` (``attempts``,
    ``temperature``, ``seed``). ``prior``: the latent space's straight line or great
    circle with ``"standard"``; with a flow prior (a name of the model's) the join is
    drawn in that prior's noise and carried back, so the path follows the density of the
    training codes (:meth:`molvae.priors.Prior.path`).

    ``endpoints="fit"`` moves each endpoint from its posterior mean to a code whose
    greedy decode is the input molecule (:meth:`.MolVAE.fit_latents`, at most
    ``fit_steps`` optimizer steps), so the path starts and ends at the inputs even
    where the encoder alone misses them. ``attrs["start_fit"]`` / ``attrs["end_fit"]``
    then say whether that worked (``reconstructed``) and how far the code moved.
    With either choice ``attrs["start_reached"]`` / ``attrs["end_reached"]`` say whether
    the first / last step decodes to the input molecule (its 2D graph for a model
    without stereo tokens).

    With ``unique=N`` the grid is refined (``steps -> 2 * steps - 1``, so earlier
    points stay on it) until at least ``N`` distinct valid molecules lie on the path
    or the next grid would exceed ``max_points`` points; the table holds the final
    grid and ``attrs["unique_found"]`` says how many distinct molecules were found
    (``attrs["unique_reached"]`` is False when fewer than ``N``). A seeded run is
    reproducible. ``progress``: a bar over the decoded points (None: on a terminal only).

    Columns: ``step, t, smiles, valid, tanimoto_start, tanimoto_end``, one column per
    entry of ``properties`` (default ``logp, qed, sa, esol, mw``) and
    ``duplicate_of_previous``. ``smiles`` is canonical, ``""`` where the point stayed
    invalid (similarities and properties are NaN there). Similarities are Morgan
    (r=2, 2048 bits) Tanimoto to the *input* molecules. ``duplicate_of_previous`` is
    True when a valid step repeats the molecule of the nearest earlier valid step
    (invalid steps in between do not break a run of duplicates).

    Raises :class:`~molvae.drugs.UnknownDrugError` / :class:`~molvae.errors.InvalidMoleculeError`
    for inputs that are neither a known drug nor a valid SMILES and
    :class:`~molvae.errors.UnknownTokenError` for molecules outside the model's vocabulary.
    """
    if method not in _METHODS:  # check the cheap arguments before encoding anything
        raise ConfigError(f"method must be 'linear' or 'slerp', got {method!r}")
    if endpoints not in ENDPOINTS:
        raise ConfigError(f"endpoints must be one of {', '.join(ENDPOINTS)}, got {endpoints!r}")
    t_grid(steps)
    start_name, start_smiles = resolve_input(start)
    end_name, end_smiles = resolve_input(end)
    fits: list[dict | None] = [None, None]
    if endpoints == "fit":
        codes, fits = model.fit_latents([start_smiles, end_smiles], max_steps=fit_steps)
        z_start, z_end = (np.asarray(c, dtype=np.float64) for c in codes)
    else:
        z_start = _encode_one(model, start_smiles)
        z_end = _encode_one(model, end_smiles)
    df = decode_path(
        model,
        z_start,
        z_end,
        steps=steps,
        method=method,
        attempts=attempts,
        temperature=temperature,
        seed=seed,
        unique=unique,
        max_points=max_points,
        properties=properties,
        start_smiles=start_smiles,
        end_smiles=end_smiles,
        prior=prior,
        progress=progress,
    )
    df.attrs.update(
        {
            "start_name": start_name,
            "end_name": end_name,
            "endpoints": endpoints,
            "start_fit": fits[0],
            "end_fit": fits[1],
            "start_reached": _decodes_to(model, df["smiles"].iloc[0], start_smiles),
            "end_reached": _decodes_to(model, df["smiles"].iloc[-1], end_smiles),
        }
    )
    return df


def _decodes_to(model, decoded: str, smiles: str) -> bool:
    """Whether ``decoded`` is the molecule ``smiles`` as the model can spell it (:meth:`MolVAE.canonical`)."""
    return bool(decoded) and model.canonical(decoded) == model.canonical(smiles)


def decode_path(
    model,
    z_start: np.ndarray,
    z_end: np.ndarray,
    steps: int = 12,
    method: str = "linear",
    attempts: int = 10,
    temperature: float = 0.5,
    seed: int | None = 0,
    unique: int | None = None,
    max_points: int = 200,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    start_smiles: str | None = None,
    end_smiles: str | None = None,
    prior: str | Prior | None = "standard",
    progress: bool | None = False,
) -> pd.DataFrame:
    """Decode the path between two latent vectors; the table of :func:`interpolate`.

    ``start_smiles`` / ``end_smiles`` are the references for ``tanimoto_start`` /
    ``tanimoto_end`` (NaN columns when not given); ``prior`` as in :func:`interpolate`.
    """
    if method not in _METHODS:
        raise ConfigError(f"method must be 'linear' or 'slerp', got {method!r}")
    ts = t_grid(steps)
    if unique is not None and (isinstance(unique, bool) or not isinstance(unique, (int, np.integer)) or unique < 1):
        raise ConfigError(f"unique must be a positive integer or None, got {unique!r}")
    if unique is not None and max_points < len(ts):
        raise ConfigError(f"max_points ({max_points}) must be at least steps ({steps})")
    if attempts < 1:
        raise ConfigError(f"attempts must be >= 1, got {attempts}")
    names = _check_properties(properties)
    interp = _METHODS[method]
    z_start = np.asarray(z_start, dtype=np.float64)
    z_end = np.asarray(z_end, dtype=np.float64)
    if z_start.shape != (model.config.latent_dim,) or z_end.shape != z_start.shape:
        raise ConfigError(
            f"latents must be vectors of length {model.config.latent_dim}, got shapes {z_start.shape} and {z_end.shape}"
        )

    chosen = model.prior(prior)
    decoded = _decode_path(model, z_start, z_end, ts, interp, chosen, attempts, temperature, seed, progress)
    if unique is not None:
        while len({s for s in decoded if s}) < unique and 2 * len(ts) - 1 <= max_points:
            ts = t_grid(2 * len(ts) - 1)
            decoded = _decode_path(model, z_start, z_end, ts, interp, chosen, attempts, temperature, seed, progress)

    smiles = [s or "" for s in decoded]
    valid = np.array([bool(s) for s in smiles], dtype=bool)
    valid_smiles = [s for s in smiles if s]
    sim_start = np.full(len(ts), np.nan)
    sim_end = np.full(len(ts), np.nan)
    if start_smiles is not None:
        sim_start[valid] = _similarity(start_smiles, valid_smiles)
    if end_smiles is not None:
        sim_end[valid] = _similarity(end_smiles, valid_smiles)
    duplicate = np.zeros(len(ts), dtype=bool)
    previous: str | None = None
    for i, s in enumerate(smiles):
        if s:
            duplicate[i] = s == previous
            previous = s

    df = pd.DataFrame(
        {
            "step": np.arange(len(ts)),
            "t": ts,
            "smiles": pd.Series(smiles, dtype=object),
            "valid": valid,
            "tanimoto_start": sim_start,
            "tanimoto_end": sim_end,
        }
    )
    props = _property_columns(smiles, names)
    for name in names:
        df[name] = props[name].to_numpy()
    df["duplicate_of_previous"] = duplicate

    n_unique = len(set(valid_smiles))
    df.attrs.update(
        {
            "start_name": start_smiles or "start",
            "start_smiles": start_smiles,
            "end_name": end_smiles or "end",
            "end_smiles": end_smiles,
            "method": "slerp" if interp is slerp else "linear",
            "prior": chosen.name,
            "attempts": attempts,
            "temperature": temperature,
            "seed": seed,
            "points": len(ts),
            "n_valid": int(valid.sum()),
            "unique_found": n_unique,
            "unique_requested": unique,
            "unique_reached": None if unique is None else n_unique >= unique,
            "latent_distance": float(np.linalg.norm(z_end - z_start)),
        }
    )
    return df


# --------------------------------------------------------------------------- neighbourhood


def neighbourhood(
    model,
    molecule: str,
    n: int = 200,
    radius: float = 0.5,
    train: Collection[str] | None = None,
    seed: int | None = 0,
    attempts: int = 1,
    temperature: float = 0.5,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    prior: str | Prior | None = "standard",
) -> pd.DataFrame:
    """Decode ``n`` latents around ``molecule`` and rank the distinct valid results by similarity.

    Draws ``z = mu + radius * eps`` with ``mu`` the posterior mean of ``molecule`` and
    ``eps ~ N(0, I)`` (seeded by ``seed``); ``radius`` is in units of the prior's
    standard deviation. With a learned ``prior`` (a name of the model's, or ``"auto"``)
    the steps are taken in that prior's noise instead (:meth:`molvae.priors.Prior.around`),
    so the draws follow the shape of the codes around ``mu``. Each draw is decoded greedily
    once (``attempts=1``) or with :meth:`.MolVAE.decode_valid` (``attempts > 1``); see the
    module docstring.

    Returns one row per distinct valid canonical SMILES, sorted by ``tanimoto`` to the
    query (descending; ties by ``count`` descending, then SMILES). Columns: ``smiles,
    tanimoto, novel, count, is_query`` and the ``properties``. ``count`` is how many of
    the ``n`` draws decoded to that molecule; ``is_query`` marks the query itself.
    ``novel`` is True when the molecule is not in ``train`` (a collection of canonical
    SMILES, e.g. the MOSES training set, whose SMILES are RDKit-canonical already) and
    missing (``pd.NA``) when no ``train`` is given. ``attrs`` holds ``n_draws``,
    ``n_valid_draws`` and ``validity``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ConfigError(f"radius must be a finite number >= 0, got {radius!r}")
    if attempts < 1:
        raise ConfigError(f"attempts must be >= 1, got {attempts}")
    names = _check_properties(properties)
    name, query = resolve_input(molecule)
    mu = _encode_one(model, query)

    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((int(n), mu.shape[0]))
    chosen = model.prior(prior)
    z = chosen.around(mu, eps, radius)
    decoded = model.decode_valid(z, attempts=attempts, temperature=temperature, seed=seed)
    counts = Counter(s for s in decoded if s)

    smiles = list(counts)
    sims = _similarity(query, smiles)
    df = pd.DataFrame(
        {
            "smiles": pd.Series(smiles, dtype=object),
            "tanimoto": sims,
            "novel": pd.array([pd.NA] * len(smiles), dtype="boolean")
            if train is None
            else pd.array([s not in train for s in smiles], dtype="boolean"),
            "count": np.array([counts[s] for s in smiles], dtype=np.int64),
            "is_query": np.array([s == query for s in smiles], dtype=bool),
        }
    )
    props = _property_columns(smiles, names)
    for prop in names:
        df[prop] = props[prop].to_numpy()
    df = df.sort_values(["tanimoto", "count", "smiles"], ascending=[False, False, True], kind="mergesort")
    df = df.reset_index(drop=True)
    n_valid = sum(counts.values())
    df.attrs.update(
        {
            "query_name": name,
            "query_smiles": query,
            "radius": radius,
            "seed": seed,
            "attempts": attempts,
            "prior": chosen.name,
            "n_draws": int(n),
            "n_valid_draws": int(n_valid),
            "validity": n_valid / int(n),
            "novelty_checked": train is not None,
        }
    )
    return df


def canonical_set(smiles: Sequence[str]) -> set[str]:
    """Canonical forms of ``smiles`` (invalid entries dropped), for ``neighbourhood(train=...)``."""
    return {c for c in canonicalize_many(list(smiles)) if c is not None}
