"""When an optimization run stops, and what it says when it stops before its budget is spent."""

from __future__ import annotations

import logging

from molvae.optimization.config import OptimizeConfig

log = logging.getLogger(__name__)

__all__ = ["log_early_stop", "stop_reason"]


def stop_reason(config: OptimizeConfig, remaining: int, stalled: int, round: int) -> str | None:
    """Why a run stops (``"budget"``, ``"patience"`` or ``"max_rounds"``), or None while it goes on.

    ``remaining``: oracle calls left; ``stalled``: rounds in a row that scored nothing; ``round``: the last round.
    """
    if remaining <= 0:
        return "budget"
    if stalled >= config.patience:
        return "patience"
    if config.max_rounds is not None and round >= config.max_rounds:
        return "max_rounds"
    return None


def log_early_stop(reason: str | None, stalled: int, round: int, calls: int, budget: int) -> None:
    """Warn when a run stopped by patience or by its round limit, with the oracle calls it used."""
    if reason == "patience":
        log.warning(
            "stopped after %d rounds without a new molecule to score (%d of %d oracle calls used)",
            stalled,
            calls,
            budget,
        )
    elif reason == "max_rounds":
        log.warning("stopped at the round limit (%d rounds) with %d of %d oracle calls used", round, calls, budget)
