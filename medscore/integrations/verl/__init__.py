"""MEDS in veRL's PPO/GRPO trainers (veRL 0.9, engine workers), without forking veRL.

Start a run with ``python -m medscore.integrations.verl.main`` and veRL's usual overrides
plus ``+medscore.*`` (see :mod:`medscore.integrations.verl.main` and
``docs/integrations.md``). It runs veRL's V1 trainer (``trainer.use_v1=true``, veRL's
default; :mod:`medscore.integrations.verl.v1`) or the legacy ``RayPPOTrainer``
(:mod:`medscore.integrations.verl._legacy`) with MEDS.

Data flow of one step:

1. Driver, before the actor's no-grad log-prob forward: each response's answer token (after
   the last ``\\boxed{``, by the configured marker rule) is located and its index inside the
   unpadded prompt+response sequence (veRL's no-padding layout) goes with the batch.
2. Worker (:func:`meds_worker_class`): the engine's ``forward_step`` runs the model's own
   forward inside ``medscore.capture`` and ``medscore_fingerprints`` joins its output.
3. Driver, right before ``compute_advantage``: each rollout is keyed by a stable prompt id,
   its correctness read from the reward (``acc`` where present), ``Memory.penalize`` runs and
   the sequence reward is shaped (``score - p`` wrong, ``score / (1 + p)`` correct when
   targeted) by the registered ``meds_grpo`` estimator (:mod:`.estimator`; logged scores stay
   raw) or in place (``placement: scores``).
4. ``medscore/*`` metrics join the step's; the memory is saved in every ``global_step_N``
   folder before veRL's tracker file and loaded on resume.
"""
from __future__ import annotations

from .._common import (
    MEMORY_FILE,
    MedsConfig,
    memory_metrics,
    penalize_rollouts,
    require,
    rollout_correctness,
    rollout_keys,
    run_with_capture,
    shaped_totals,
)
from ._checks import check_config, config_problems
from ._legacy import MedsTrainerMixin, _fit_owner, _replaced, _resolve_step_folder, meds_trainer_class
from ._shaping import (
    BF16_META,
    FINGERPRINT_KEY,
    INDEX_KEY,
    LAYERS_META,
    RAW_REWARDS_KEY,
    TARGET_KEY,
    _torch,
    answer_locations,
    answer_locations_in_rows,
    apply_penalties,
    last_response_token,
    penalize_batch,
    prompt_keys,
    read_fingerprints,
    restore_raw_rewards,
    shape_rewards,
)
from ._worker import _forward_with_fingerprints, install_fingerprint_hook, meds_worker_class, skip_trl_value_head_patch
from .estimator import MEDS_GRPO, compute_meds_grpo_advantage, pending_penalties, register_estimator
from .v1 import MedsV1TrainerMixin, meds_trainer_registered, meds_v1_trainer_class

__all__ = [
    "BF16_META", "FINGERPRINT_KEY", "INDEX_KEY", "LAYERS_META", "MEDS_GRPO", "MEMORY_FILE", "RAW_REWARDS_KEY",
    "TARGET_KEY", "MedsConfig", "MedsTrainerMixin", "MedsV1TrainerMixin", "answer_locations",
    "answer_locations_in_rows", "apply_penalties", "check_config", "compute_meds_grpo_advantage",
    "config_problems", "install_fingerprint_hook", "last_response_token", "meds_trainer_class",
    "meds_trainer_registered", "meds_v1_trainer_class", "meds_worker_class", "memory_metrics",
    "penalize_batch", "penalize_rollouts", "pending_penalties", "prompt_keys", "read_fingerprints",
    "register_estimator", "require", "restore_raw_rewards", "rollout_correctness", "rollout_keys",
    "run_with_capture", "shape_rewards", "shaped_totals", "skip_trl_value_head_patch",
]
