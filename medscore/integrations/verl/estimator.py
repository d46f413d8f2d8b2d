"""The MEDS advantage estimator of veRL: GRPO on rewards shaped by the memory's penalties.

The reference plugs MEDS into veRL as an advantage estimator: the penalties shape the
sequence rewards inside the estimator, before GRPO's per-group normalisation, so the scores
veRL logs stay raw. ``meds_grpo`` is that estimator, registered with veRL's
``core_algos.register_adv_est``. veRL calls an estimator with the rewards, the response
mask, the group ids and the algorithm config only; the penalties of those rows come from the
MEDS trainer, which computes them right before ``compute_advantage`` and hands them over
with :func:`pending_penalties` (checked against the group ids, so rows cannot be mismatched).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import numpy as np

from .._common import require

#: Name of the estimator in ``algorithm.adv_estimator``.
MEDS_GRPO = "meds_grpo"

_PENDING: contextvars.ContextVar = contextvars.ContextVar("medscore_pending_penalties", default=None)


@dataclasses.dataclass(frozen=True)
class PendingPenalties:
    """Penalties of one batch, waiting for the estimator.

    Attributes
    ----------
    uid : object ndarray [B], veRL's group id of each row (``non_tensor_batch["uid"]``)
    penalties : float64 ndarray [B]
    correct : bool ndarray [B]
    """

    uid: np.ndarray
    penalties: np.ndarray
    correct: np.ndarray


@contextlib.contextmanager
def pending_penalties(uid, penalties, correct):
    """Make ``penalties`` the ones :func:`compute_meds_grpo_advantage` applies, for this block.

    Parameters
    ----------
    uid : sequence [B] of group ids, in the row order ``compute_advantage`` will see
    penalties : float array [B]
    correct : bool array [B]
    """
    pending = PendingPenalties(np.asarray(list(uid), dtype=object),
                               np.asarray(penalties, dtype=np.float64).reshape(-1),
                               np.asarray(correct, dtype=bool).reshape(-1))
    if not len(pending.uid) == len(pending.penalties) == len(pending.correct):
        raise ValueError(f"uid, penalties and correct differ in length: {len(pending.uid)}, "
                         f"{len(pending.penalties)}, {len(pending.correct)}")
    token = _PENDING.set(pending)
    try:
        yield pending
    finally:
        _PENDING.reset(token)


def compute_meds_grpo_advantage(token_level_rewards, response_mask, index, config=None, epsilon: float = 1e-6,
                                norm_adv_by_std_in_grpo: bool | None = None):
    """GRPO advantages of the MEDS-shaped rewards (veRL estimator ``meds_grpo``).

    Parameters
    ----------
    token_level_rewards : float Tensor [B, R], left untouched (a shaped copy is normalised)
    response_mask : Tensor [B, R]
    index : object ndarray [B], group ids
    config : veRL's algorithm config; ``norm_adv_by_std_in_grpo`` is read from it (default True)
    epsilon : float, GRPO's std guard
    norm_adv_by_std_in_grpo : bool or None, overrides the config (False: Dr. GRPO)

    Returns
    -------
    (advantages, returns): float Tensors [B, R], as ``compute_grpo_outcome_advantage``.

    Raises
    ------
    RuntimeError
        Outside a MEDS trainer's step (no pending penalties), or when the rows differ from the
        ones the penalties were computed for.
    """
    pending = _PENDING.get()
    if pending is None:
        raise RuntimeError(
            f"algorithm.adv_estimator={MEDS_GRPO} needs the MEDS trainer, which computes the penalties "
            "before compute_advantage: start training with python -m medscore.integrations.verl.main")
    ids = np.asarray(list(index), dtype=object)
    if len(ids) != len(pending.uid) or not (ids == pending.uid).all():
        raise RuntimeError(f"{MEDS_GRPO}: the batch's rows are not the rows that were penalised "
                           f"({len(ids)} rows, {len(pending.uid)} penalties); was the batch reordered?")
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from ._shaping import shape_rewards

    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(getattr(config, "norm_adv_by_std_in_grpo", True)) if config is not None else True
    shaped = shape_rewards(token_level_rewards.clone(), response_mask, pending.penalties, pending.correct)
    return compute_grpo_outcome_advantage(shaped, response_mask, index, epsilon=epsilon,
                                          norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config)


def register_estimator() -> None:
    """Register ``meds_grpo`` with veRL's advantage-estimator registry (idempotent)."""
    core_algos = require("verl.trainer.ppo.core_algos", "verl")
    if core_algos.ADV_ESTIMATOR_REGISTRY.get(MEDS_GRPO) is not compute_meds_grpo_advantage:
        core_algos.register_adv_est(MEDS_GRPO)(compute_meds_grpo_advantage)


def is_meds_estimator(name) -> bool:
    """Whether ``name`` (a str or an ``AdvantageEstimator``) is the MEDS estimator."""
    return str(getattr(name, "value", name)) == MEDS_GRPO
