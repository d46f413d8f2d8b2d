"""``python -m medscore.integrations.verl.main``: veRL's ``main_ppo`` with MEDS.

A drop-in for ``python -m verl.trainer.main_ppo``: the same Hydra config (veRL's
``ppo_trainer``), the same overrides, plus the ``medscore`` section::

    python -m medscore.integrations.verl.main algorithm.adv_estimator=grpo ... \\
        +medscore.preset=paper +medscore.marker_rule=paper +medscore.bf16=true

``medscore.X=...`` without the ``+`` is accepted too (passed on as ``++medscore.X=...``, which
also overrides a ``medscore:`` block of your own config file). Before anything starts, the
configuration is checked (:func:`~medscore.integrations.verl.check_config`); with the default
``placement: advantage``, ``algorithm.adv_estimator=grpo`` runs as ``meds_grpo``. Then veRL's
own main runs, with its TaskRunners replaced by :mod:`medscore.integrations.verl._runners`'s.
"""
from __future__ import annotations

import sys

from .._common import MedsConfig, require
from ._checks import check_config
from ._legacy import _replaced
from .estimator import MEDS_GRPO


def medscore_overrides(args) -> list:
    """Command-line arguments with bare ``medscore.X=...`` overrides made ``++medscore.X=...``.

    veRL's config is a struct without a ``medscore`` section, so Hydra needs ``+`` to add one;
    ``++`` adds or overrides, so a ``medscore:`` block in the user's own config file still works.
    """
    return [f"++{arg}" if arg.startswith("medscore.") or arg.startswith("medscore=") else arg for arg in args]


def prepare_config(config) -> MedsConfig:
    """Check ``config`` for MEDS and pick the estimator; returns the ``medscore`` section.

    With ``placement`` advantage (the default) ``algorithm.adv_estimator=grpo`` becomes
    ``meds_grpo`` (GRPO on the MEDS-shaped rewards); every refusal of
    :func:`~medscore.integrations.verl.config_problems` raises ``ValueError`` here, before Ray
    starts, and a V1 run without TransferQueue an ``ImportError`` naming the extra.
    """
    from omegaconf import open_dict

    meds = MedsConfig.from_mapping(config.get("medscore", None))
    estimator = str(config.algorithm.adv_estimator)
    if meds.enable and (meds.placement or "advantage") == "advantage" and estimator == "grpo":
        with open_dict(config):
            config.algorithm.adv_estimator = MEDS_GRPO
        print(f"medscore: algorithm.adv_estimator=grpo runs as {MEDS_GRPO} (GRPO on the MEDS-shaped rewards)")
    v1 = bool(config.trainer.get("use_v1", True))
    check_config(config, meds, v1=v1)
    if v1:  # veRL's V1 runner imports it only inside its Ray actor, where a miss is hard to read
        require("transfer_queue", "verl")
    return meds


def run(config) -> None:
    """veRL's ``main_ppo.main`` body on ``config``, with the MEDS TaskRunners."""
    from verl.trainer import main_ppo, main_ppo_v0

    from ._runners import MedsTaskRunner, MedsTaskRunnerV1

    ray = require("ray", "verl")
    prepare_config(config)
    with _replaced(main_ppo, "TaskRunnerV1", ray.remote(MedsTaskRunnerV1)), \
            _replaced(main_ppo_v0, "TaskRunner", ray.remote(MedsTaskRunner)):
        main_ppo.main.__wrapped__(config)


def main(argv=None) -> None:
    """Parse veRL's Hydra command line (``argv``, default ``sys.argv[1:]``) and train with MEDS."""
    hydra = require("hydra", "verl")
    args = sys.argv[1:] if argv is None else list(argv)
    sys.argv = [sys.argv[0], *medscore_overrides(args)]
    hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)(run)()


if __name__ == "__main__":
    main()
