"""One rank of veRL 0.9.1's real FSDP actor engine on the CPU (torchrun, gloo), computing
log-probs with the MEDS fingerprint hook (tests/test_integration_verl_engine.py).

veRL 0.9.1 has no CPU platform (CUDA, NPU and ROCm only; without one it assumes CUDA and
``get_device_id()`` calls ``torch.cuda.current_device()``) and registers its FSDP engines for
the devices cuda and npu only. Two of veRL's own extension points make it run here:
``set_platform`` with the minimal CPU platform below, and ``VERL_ENGINE_DEVICE=cuda`` so its
registry hands out the FSDP engine. The engine itself (``FSDPEngineWithLMHead``: model build,
``apply_monkey_patch``, FSDP wrapping, ``eval_mode``, ``infer_batch``, micro-batching,
``forward_step``, output assembly) is veRL's, built from veRL's composed ``ppo_trainer`` config.

argv: model folder, strategy (fsdp or fsdp2), param dtype (fp32 or bf16), result folder.
Writes ``rank{R}.pt``: the engine's fingerprints and log-probs and the reference fingerprints
of the unsharded model (the tests' in-process engine on the same micro-batches); or, when the
engine cannot be built, the error.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys

os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from verl.plugin.platform import platform_manager  # noqa: E402
from verl.plugin.platform.platform_base import PlatformBase  # noqa: E402


class CPUPlatform(PlatformBase):
    """What veRL's engine asks of a platform, answered for the CPU."""

    device_name = "cpu"
    vendor_name = "cpu"
    device_module = torch.cpu

    def is_available(self):
        return True

    def current_device(self):
        return "cpu"

    def device_count(self):
        return 1

    def set_device(self, device_index):
        pass

    def synchronize(self, device_index=None):
        pass

    def manual_seed(self, seed):
        torch.manual_seed(seed)

    def manual_seed_all(self, seed):
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings):
        pass

    def empty_cache(self):
        pass

    def get_device_capability(self, device_index=0):
        return (None, None)

    def communication_backend_name(self):
        return "gloo"

    def visible_devices_envvar(self):
        return "CUDA_VISIBLE_DEVICES"

    def nvtx_range(self, msg):
        return contextlib.nullcontext()

    def profiler_start(self):
        pass

    def profiler_stop(self):
        pass

    def ray_resource_name(self):
        return "CPU"

    def ray_noset_envvars(self):
        return []

    def is_ipc_supported(self):
        return False

    def cudart(self):
        return None


def build_engine(model_dir: str, strategy: str, dtype: str):
    from hydra import compose, initialize_config_module
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine import EngineRegistry

    precision = f"{{param_dtype:{dtype},reduce_dtype:fp32,buffer_dtype:fp32}}"
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}", "trainer.device=cpu",
            f"actor_rollout_ref.actor.strategy={strategy}", "actor_rollout_ref.model.use_remove_padding=false",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.n=1", "data.train_batch_size=4",
            "actor_rollout_ref.actor.use_torch_compile=false",
            # flash-attention (veRL's default) does not exist on the CPU
            "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
            f"+actor_rollout_ref.actor.fsdp_config.mixed_precision={precision}"])
    # What veRL's ActorRolloutRefWorker.init_model and TrainingWorker do before EngineRegistry.new.
    model_config = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    model_config.model_type = "language_model"
    engine_config = actor.engine
    engine_config.use_remove_padding = False
    engine_config.use_dynamic_bsz = False
    engine_config.infer_micro_batch_size_per_gpu = 2
    return EngineRegistry.new(model_type="language_model", backend=engine_config.strategy, model_config=model_config,
                              engine_config=engine_config, optimizer_config=actor.optim,
                              checkpoint_config=actor.checkpoint)


def rollouts(rank: int):
    """A batch in veRL's no-padding layout with answer locations and the MEDS meta keys."""
    from verl.workers.utils.padding import left_right_2_no_padding

    from medscore.integrations.verl import FINGERPRINT_KEY, INDEX_KEY, LAYERS_META, TARGET_KEY, answer_locations
    from test_integration_verl import MARKER, make_batch

    n = 8
    prompt_lens = [2, 6, 4, 3, 5, 1, 6, 2]
    data = make_batch([0] * n, np.ones((n, 14)), prompt_lens=prompt_lens[rank:] + prompt_lens[:rank],
                      response_lens=[8, 5, 6, 8, 7, 5, 8, 6], groups=2)
    data.batch.pop(FINGERPRINT_KEY)
    index, target = answer_locations(data, [MARKER])
    data.batch[INDEX_KEY], data.batch[TARGET_KEY] = index, target
    data.meta_info.update({LAYERS_META: "last:2", "use_dynamic_bsz": False, "micro_batch_size_per_gpu": 2,
                           "use_remove_padding": False, "calculate_entropy": False, "temperature": 1.0})
    return left_right_2_no_padding(data.to_tensordict())


def reference_fingerprints(model_dir: str, td):
    """The unsharded model's fingerprints on the same micro-batches (the in-process engine of
    tests/test_integration_verl.py, hooked the same way)."""
    from transformers import AutoModelForCausalLM
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches

    from medscore.integrations.verl import install_fingerprint_hook, read_fingerprints
    from test_integration_verl import PackedEngine

    engine = PackedEngine(AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval())
    install_fingerprint_hook(engine)
    tu.assign_non_tensor(td, use_dynamic_bsz=False, micro_batch_size_per_gpu=2)
    micro_batches, indices = prepare_micro_batches(td, dp_group=None)
    with torch.no_grad():
        outputs = [engine.forward_step(mb, None, True)[1] for mb in micro_batches]
    return read_fingerprints(postprocess_batch_func(outputs, indices, td)["model_output"])


def main(model_dir: str, strategy: str, dtype: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank = dist.get_rank()
    platform_manager.set_platform(CPUPlatform())
    from medscore.integrations.verl import install_fingerprint_hook, read_fingerprints, skip_trl_value_head_patch

    result = {"skipped_trl_patch": skip_trl_value_head_patch()}  # what MedsActorRolloutRefWorker.init_model does
    try:
        engine = build_engine(model_dir, strategy, dtype)
        result["engine"] = type(engine).__name__
        engine.initialize()
    except Exception as exc:  # the refusal is the result
        result["error"] = f"{type(exc).__name__}: {exc}"
        torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
        return
    result["module"] = type(engine.module).__name__
    install_fingerprint_hook(engine)
    td = rollouts(rank)
    with engine.eval_mode():
        output = engine.infer_batch(td.clone(), loss_function=None)
    model_output = output["model_output"]
    result["keys"] = sorted(model_output.keys())
    result["fingerprints"] = read_fingerprints(model_output)
    result["log_probs"] = model_output["log_probs"]
    result["reference"] = reference_fingerprints(model_dir, td)
    torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
