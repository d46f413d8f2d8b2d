"""``python -m medscore.integrations.verl.main``: veRL's command line, config and TaskRunners with MEDS."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("verl", reason="veRL not installed: pip install 'medscore[verl]'")
pytest.importorskip("transfer_queue", reason="TransferQueue not installed: pip install 'medscore[verl]'")

from medscore.integrations.verl.main import medscore_overrides, prepare_config  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning"),
    pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning"),
    # Importing veRL's legacy runner module (main_ppo_v0) imports its deprecated RayPPOTrainer.
    pytest.mark.filterwarnings("ignore:Legacy trainer is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Disabled critic as algorithm.adv_estimator != gae:UserWarning"),
]

GRPO = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=4", "critic.enable=false",
        "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2"]


def compose(*overrides, config_dir=None, name="ppo_trainer"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    init = (initialize_config_dir(config_dir, version_base=None) if config_dir
            else initialize_config_module("verl.trainer.config", version_base=None))
    with init:
        return hydra_compose(name, overrides=list(overrides))


def test_bare_medscore_overrides_are_added_to_veRLs_struct_config():
    args = ["data.train_batch_size=8", "medscore.preset=paper", "+medscore.bf16=true", "++medscore.key=index"]
    assert medscore_overrides(args) == ["data.train_batch_size=8", "++medscore.preset=paper", "+medscore.bf16=true",
                                        "++medscore.key=index"]
    config = compose(*medscore_overrides([*GRPO, "medscore.marker_rule=paper", "medscore.memory_kwargs.alpha=0.02"]))
    assert config.medscore.marker_rule == "paper" and config.medscore.memory_kwargs.alpha == 0.02
    meds = prepare_config(config)
    assert config.algorithm.adv_estimator == "meds_grpo" and meds.memory_kwargs == {"alpha": 0.02}


def test_a_medscore_block_in_the_users_own_config_file(tmp_path):
    (tmp_path / "my_run.yaml").write_text(textwrap.dedent("""\
        hydra:
          searchpath: [pkg://verl.trainer.config]
        defaults:
          - ppo_trainer
          - _self_
        algorithm:
          adv_estimator: grpo
        medscore:
          preset: paper
          marker_rule: paper
          bf16: true
          memory_kwargs: {alpha: 0.1}
        """))
    config = compose("critic.enable=false", *medscore_overrides(["medscore.layers=last:7"]),
                     config_dir=str(tmp_path), name="my_run")
    meds = prepare_config(config)
    assert (meds.preset, meds.marker_rule, meds.bf16, meds.layers) == ("paper", "paper", True, "last:7")
    assert config.algorithm.adv_estimator == "meds_grpo"


def test_placement_scores_keeps_the_estimator_and_refuses_meds_grpo():
    config = compose(*GRPO, "+medscore.placement=scores")
    prepare_config(config)
    assert config.algorithm.adv_estimator == "grpo"
    with pytest.raises(ValueError, match="applies the penalties itself"):
        prepare_config(compose(*GRPO[1:], "algorithm.adv_estimator=meds_grpo", "+medscore.placement=scores"))
    off = compose(*GRPO, "+medscore.enable=false")
    prepare_config(off)
    assert off.algorithm.adv_estimator == "grpo"


def test_the_command_refuses_before_ray_starts(monkeypatch, tmp_path, capsys):
    from verl.trainer import main_ppo

    from medscore.integrations.verl.main import main

    monkeypatch.chdir(tmp_path)  # Hydra (veRL's version_base=None) moves into outputs/...
    monkeypatch.setattr(sys, "argv", ["medscore-verl"])  # main() rewrites it for Hydra
    monkeypatch.setattr(main_ppo, "run_ppo", lambda *a, **k: pytest.fail("Ray would start"))
    with pytest.raises(SystemExit):
        main([*GRPO, "algorithm.rollout_correction.bypass_mode=true", "actor_rollout_ref.actor.strategy=megatron",
              "medscore.preset=paper"])
    err = capsys.readouterr().err
    assert "bypass_mode=true" in err and "Megatron" in err


def test_the_command_hands_veRL_the_meds_task_runners(monkeypatch, tmp_path):
    from verl.trainer import main_ppo, main_ppo_v0

    from medscore.integrations.verl._runners import MedsTaskRunner, MedsTaskRunnerV1
    from medscore.integrations.verl.main import main

    seen = {}

    def fake_run_ppo(config, task_runner_class):  # what would start Ray and the runner actor
        seen["runner"] = task_runner_class.__ray_actor_class__
        seen["config"] = (config.algorithm.adv_estimator, config.medscore.preset, config.medscore.layers)
        seen["legacy"] = main_ppo_v0.TaskRunner.__ray_actor_class__

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["medscore-verl"])
    monkeypatch.setattr(main_ppo, "run_ppo", fake_run_ppo)
    main([*GRPO, "medscore.preset=paper", "+medscore.layers=last:3"])  # bare and "+" forms
    assert seen == {"runner": MedsTaskRunnerV1, "config": ("meds_grpo", "paper", "last:3"), "legacy": MedsTaskRunner}
    assert main_ppo.TaskRunnerV1.__ray_actor_class__ is not MedsTaskRunnerV1  # put back after the run


def test_v1_runner_builds_the_meds_trainer(monkeypatch, tmp_path):
    import transfer_queue
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls

    from medscore.integrations.verl import MedsV1TrainerMixin
    from medscore.integrations.verl._runners import MedsTaskRunnerV1
    from tiny_lm import save_tiny

    built = []

    class Stop(Exception):
        pass

    def init(self):  # the trainer's init() starts the workers: stop there
        built.append(type(self))
        raise Stop

    monkeypatch.setattr(transfer_queue, "init", lambda *a, **k: None)
    monkeypatch.setattr(transfer_queue, "close", lambda *a, **k: None)
    monkeypatch.setattr(PPOTrainerSync, "init", init)
    config = compose(*GRPO, "algorithm.adv_estimator=meds_grpo", f"actor_rollout_ref.model.path={save_tiny(str(tmp_path))}",
                     "+medscore.preset=paper")
    with pytest.raises(Stop):
        MedsTaskRunnerV1().run(config)
    assert issubclass(built[0], MedsV1TrainerMixin) and issubclass(built[0], PPOTrainerSync)
    assert get_trainer_cls("sync") is PPOTrainerSync


def test_legacy_runner_swaps_worker_and_trainer(monkeypatch, tmp_path):
    from verl.trainer import main_ppo_v0
    from verl.trainer.ppo.utils import Role

    from medscore.integrations.verl._runners import MedsTaskRunner
    from tiny_lm import save_tiny

    config = compose(*GRPO, "algorithm.adv_estimator=meds_grpo", "trainer.use_v1=false",
                     f"actor_rollout_ref.model.path={save_tiny(str(tmp_path))}", "+medscore.preset=paper")
    runner = MedsTaskRunner()
    runner.add_actor_rollout_worker(config)
    assert runner.role_worker_mapping[Role.ActorRollout].__ray_actor_class__.__qualname__.startswith("Meds")

    class Stop(Exception):
        pass

    def datasets(*args, **kwargs):  # reached once the runner has its trainer class: stop there
        raise Stop(main_ppo_v0.RayPPOTrainer.__name__)

    monkeypatch.setattr(main_ppo_v0, "create_rl_dataset", datasets)
    with pytest.raises(Stop, match="MedsRayPPOTrainer"):
        MedsTaskRunner().run(config)
    assert main_ppo_v0.RayPPOTrainer.__name__ == "RayPPOTrainer"


def test_the_grpo_example_composes_and_passes_veRLs_and_medscores_checks():
    import shlex

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "verl_grpo_meds.sh")
    printed = subprocess.run(["bash", example, "trainer.total_epochs=1"], env={**os.environ, "PYTHON": "echo"},
                             capture_output=True, text=True, check=True, timeout=60).stdout
    args = shlex.split(printed)
    assert args[:2] == ["-m", "medscore.integrations.verl.main"] and args[-1] == "trainer.total_epochs=1"
    config = compose(*medscore_overrides(args[2:]))
    meds = prepare_config(config)
    assert config.algorithm.adv_estimator == "meds_grpo" and config.trainer.use_v1
    assert (meds.preset, meds.marker_rule, meds.bf16, meds.memory_kwargs) == ("paper", "paper", True, {"alpha": 0.1})
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_a_v1_run_without_transfer_queue_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transfer_queue", None)  # as if not installed
    with pytest.raises(ImportError, match=r"medscore\[verl\]"):
        prepare_config(compose(*GRPO))
    prepare_config(compose(*GRPO, "trainer.use_v1=false"))  # the legacy trainer does not need it
