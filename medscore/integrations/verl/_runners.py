"""veRL's TaskRunners (the Ray actor that builds and runs the trainer) with MEDS plugged in.

Each subclasses veRL's own runner and changes only what names the trainer and the actor
worker, so everything else ``main_ppo`` does (TransferQueue, agent loop manager, datasets,
reward loop) stays veRL's. With ``medscore.enable=false`` they are veRL's runners.
"""
from __future__ import annotations

from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.main_ppo_v0 import TaskRunner

from .._common import MedsConfig
from ._legacy import _replaced, meds_trainer_class
from .estimator import register_estimator
from .v1 import meds_trainer_registered, use_meds_worker


def _enabled(config) -> bool:
    return MedsConfig.from_mapping(config.get("medscore", None)).enable


class MedsTaskRunnerV1(TaskRunnerV1.__ray_actor_class__):
    """veRL's V1 runner; the configured ``trainer.v1.trainer_mode`` resolves to its MEDS subclass."""

    def run(self, config):
        if not _enabled(config):
            return super().run(config)
        register_estimator()  # this actor's process runs compute_advantage
        with meds_trainer_registered(config.trainer.v1.trainer_mode):
            return super().run(config)


class MedsTaskRunner(TaskRunner.__ray_actor_class__):
    """veRL's legacy runner (``main_ppo_v0``) building ``MedsRayPPOTrainer`` and the MEDS worker."""

    def add_actor_rollout_worker(self, config):
        result = super().add_actor_rollout_worker(config)
        if _enabled(config):
            use_meds_worker(self.role_worker_mapping)
        return result

    def run(self, config):
        if not _enabled(config):
            return super().run(config)
        from verl.trainer import main_ppo_v0

        register_estimator()
        with _replaced(main_ppo_v0, "RayPPOTrainer", meds_trainer_class()):
            return super().run(config)
