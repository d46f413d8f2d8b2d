"""MEDS on veRL's legacy trainer (``RayPPOTrainer``, ``trainer.use_v1=false``).

The trainer mixin adds the answer locations before the actor's ``compute_log_prob``, takes
the fingerprints out of its output, and penalises right before ``compute_advantage`` (the
module-level function of the module defining ``fit``, wrapped for the duration of ``fit``).
With ``algorithm.adv_estimator=meds_grpo`` the penalties go to that estimator; with another
estimator and ``placement="advantage"`` the rewards ``compute_advantage`` reads are a shaped
copy and the raw ones are put back after it; ``placement="scores"`` shapes in place.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys

import numpy as np

from .._common import MedsConfig, load_checkpoint_memory, memory_metrics, require, save_checkpoint_memory
from ._checks import check_config
from ._shaping import (
    BF16_META,
    FINGERPRINT_KEY,
    INDEX_KEY,
    LAYERS_META,
    TARGET_KEY,
    answer_locations,
    apply_penalties,
    penalize_batch,
    read_fingerprints,
    restore_raw_rewards,
)
from .estimator import is_meds_estimator, pending_penalties, register_estimator


@contextlib.contextmanager
def _replaced(owner, name: str, value):
    had = name in vars(owner)
    old = vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


class MemoryCheckpointMixin:
    """Saves and loads the MEDS memory with veRL's checkpoints (both trainers)."""

    def _save_checkpoint(self):
        # The memory goes first: veRL's tracker file (latest_checkpointed_iteration.txt),
        # written last by super(), then never points at a step folder without its memory.
        if self.meds_memory is not None:
            save_checkpoint_memory(self.meds_memory, os.path.join(self.config.trainer.default_local_dir,
                                                                  f"global_step_{self.global_steps}"))
        super()._save_checkpoint()

    def _load_checkpoint(self):
        result = super()._load_checkpoint()
        if self.meds_memory is not None and self.global_steps:
            load_checkpoint_memory(self.meds_memory, _resolve_step_folder(self.config.trainer, self.global_steps),
                                   self.meds_config.on_missing_memory, "medscore veRL")
        return result


class MedsTrainerMixin(MemoryCheckpointMixin):
    """Mixin for veRL's ``RayPPOTrainer`` (and subclasses such as a DAPO trainer).

    Reads the ``medscore`` section of the trainer config; keeps ``self.meds_memory``.
    """

    def _meds_setup(self):
        config = self.config.get("medscore", None) if hasattr(self.config, "get") else None
        self.meds_config = MedsConfig.from_mapping(config)
        check_config(self.config, self.meds_config, v1=False)
        register_estimator()
        self.meds_memory = self.meds_config.build_memory() if self.meds_config.enable else None
        from medscore._answer_markers import marker_ids_for

        self.meds_marker_ids = marker_ids_for(self.tokenizer, self.meds_config.marker_rule, self.meds_config.marker)
        self.meds_last_penalties = np.zeros(0)

    def _compute_old_log_prob(self, batch):
        if self.meds_memory is None:
            return super()._compute_old_log_prob(batch)
        c = self.meds_config
        index, target = answer_locations(batch, self.meds_marker_ids, self.tokenizer, c.marker_rule, c.marker)
        batch.batch[INDEX_KEY], batch.batch[TARGET_KEY] = index, target
        batch.meta_info[LAYERS_META], batch.meta_info[BF16_META] = c.layers, c.bf16
        captured = {}
        group = self.actor_rollout_wg
        call = group.compute_log_prob

        def compute_log_prob(data, *args, **kwargs):
            output = call(data, *args, **kwargs)
            captured["fingerprints"] = read_fingerprints(output)
            return output

        try:
            with _replaced(group, "compute_log_prob", compute_log_prob):
                result = super()._compute_old_log_prob(batch)
        finally:
            batch.batch.pop(INDEX_KEY)
            batch.batch.pop(TARGET_KEY)
            batch.meta_info.pop(LAYERS_META, None)
            batch.meta_info.pop(BF16_META, None)
        if captured.get("fingerprints") is None:
            raise RuntimeError("the actor returned no fingerprints: build the actor worker with "
                               "medscore.integrations.verl.meds_worker_class")
        old_log_prob = result[0] if isinstance(result, tuple) else result
        old_log_prob.batch[FINGERPRINT_KEY] = captured["fingerprints"]
        return result

    def _meds_compute_advantage(self, original, data, *args, **kwargs):
        if self.meds_memory is None or FINGERPRINT_KEY not in data.batch.keys():
            return original(data, *args, **kwargs)
        estimator = kwargs.get("adv_estimator", args[0] if args else None)
        if is_meds_estimator(estimator):
            # The registered estimator shapes a copy of the rewards it is given: the reference's way.
            self.meds_last_penalties, correct = penalize_batch(data, self.meds_memory, self.global_steps,
                                                               self.meds_config, self.tokenizer)
            data.batch.pop(FINGERPRINT_KEY)
            with pending_penalties(data.non_tensor_batch["uid"], self.meds_last_penalties, correct):
                return original(data, *args, **kwargs)
        self.meds_last_penalties = apply_penalties(data, self.meds_memory, self.global_steps,
                                                   self.meds_config, self.tokenizer)
        data.batch.pop(FINGERPRINT_KEY)
        try:
            return original(data, *args, **kwargs)
        finally:
            restore_raw_rewards(data)  # the logged scores and rewards stay raw

    def fit(self):
        if self.meds_memory is None:
            return super().fit()
        # compute_advantage is a module-level function of the module that defines fit(); it
        # is wrapped for the duration of the run so the penalty lands right before it.
        module = sys.modules[_fit_owner(type(self)).__module__]
        original = module.compute_advantage
        wrapped = functools.partial(self._meds_compute_advantage, original)
        with _replaced(module, "compute_advantage", wrapped):
            return super().fit()

    def _update_actor(self, batch):
        output = super()._update_actor(batch)
        if self.meds_memory is not None:
            output.meta_info.setdefault("metrics", {}).update(memory_metrics(self.meds_memory))
        return output



def _fit_owner(cls):
    for klass in cls.__mro__:
        if "fit" in vars(klass) and klass is not MedsTrainerMixin and not klass.__name__.startswith("Meds"):
            return klass
    raise TypeError(f"{cls.__name__} has no fit() to wrap")


def _resolve_step_folder(trainer_config, step: int) -> str:
    if trainer_config.get("resume_mode") == "resume_path" and trainer_config.get("resume_from_path"):
        folder = trainer_config.resume_from_path
    else:
        folder = os.path.join(trainer_config.default_local_dir, f"global_step_{step}")
    return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


def meds_trainer_class(base=None):
    """A subclass of veRL's legacy ``RayPPOTrainer`` (or of ``base``, e.g. a DAPO trainer) with MEDS."""
    require("verl", "verl")
    if base is None:
        from verl.trainer.ppo.ray_trainer import RayPPOTrainer as base

    class MedsTrainer(MedsTrainerMixin, base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._meds_setup()

    MedsTrainer.__qualname__ = MedsTrainer.__name__ = f"Meds{base.__name__}"
    return MedsTrainer
