"""One rank of a 2-process TRL GRPO run under ``accelerate launch`` on the CPU (gloo), each rank
with a local ``medscore.Memory``.

Started by tests/test_integration_trl_accelerate.py. Environment: MEDSCORE_MODEL (saved tiny
model), MEDSCORE_OUT (output folder), MEDSCORE_RESULT (folder for this rank's records),
MEDSCORE_FORCE_FSDP=1 to let accelerate's FSDP plugin run on the CPU (see
``force_fsdp_on_cpu``), MEDSCORE_TRAINER_ARGS (JSON: GRPOConfig options over the tests'),
MEDSCORE_MAX_STEPS (3), MEDSCORE_SAVE=1 (a checkpoint every step) and MEDSCORE_RESUME (a
checkpoint folder to resume from). Each rank writes ``rank{R}.pt``: how accelerate set up the run, the
memory's state, and per step the fingerprints that went into ``Memory.penalize`` with the
gathered completions they belong to and the full (unsharded) weights the forward used.
"""
from __future__ import annotations

import json
import os
import pickle

import torch


def force_fsdp_on_cpu():
    """Let accelerate run its FSDP plugin on a CPU-only multi-process run.

    accelerate 1.15 decides in ``AcceleratorState.__init__`` that a run is FSDP only when the
    backend's distributed type is a GPU-like one (MULTI_GPU, MULTI_NPU, MULTI_XPU, ...); a CPU
    run is MULTI_CPU, so the plugin is dropped without a word and the model is wrapped in DDP.
    This patch makes that one decision the other way (and in ``PartialState``, whose state
    ``AcceleratorState`` copies again on every construction); everything after it (the plugin,
    ``Accelerator.prepare``'s FSDP1/FSDP2 wrapping, TRL and the Trainer) is accelerate's code.
    """
    import accelerate.state as state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__

    def patched(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    state.AcceleratorState.__init__ = patched


def full_weights(wrapped, module):
    """The full (unsharded) weights of the model, as the fingerprint forward uses them; a
    collective, run by every rank. FSDP1: inside ``summon_full_params`` (its state-dict hooks
    fail in the middle of TRL's step: the root unit's flat parameter is freed there); ZeRO-3:
    inside DeepSpeed's ``GatheredParameters``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel

    if isinstance(wrapped, FullyShardedDataParallel):
        with FullyShardedDataParallel.summon_full_params(wrapped, writeback=False):
            return {k: v.detach().clone() for k, v in module.state_dict().items()}
    if any(hasattr(p, "ds_id") for p in module.parameters()):  # DeepSpeed ZeRO-3
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().clone() for k, v in module.state_dict().items()}
    weights = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().clone() for k, v in weights.items()}


def brevity(completions, **_):
    """A second reward that differs within groups (the tiny model is never right), so the
    optimiser moves the weights from the first step on."""
    return [-0.1 * len(c) for c in completions]


def main():
    if os.environ.get("MEDSCORE_FORCE_FSDP") == "1":
        force_fsdp_on_cpu()
    from accelerate.utils import gather_object
    from medscore.integrations.trl import fingerprint_model
    from test_integration_trl import make_trainer

    steps, loaded = [], []

    class Recording:
        """Records what each step's ``penalize`` received, with the weights of its forward."""

        def _meds_penalties(self, inputs, rewards):
            weights = full_weights(self.model_wrapped, self.accelerator.unwrap_model(self.model))
            prompt_ids, completion_ids = self._meds_rollouts
            steps.append({"weights": weights,
                          "prompt_ids": gather_object([list(p) for p in prompt_ids]),
                          "completion_ids": gather_object([list(c) for c in completion_ids]),
                          "forward_model": type(fingerprint_model(self)).__name__})
            return super()._meds_penalties(inputs, rewards)

        def _load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
            loaded.append(pickle.dumps(self.meds_memory.state_dict()))

        def _meds_penalize(self, fps, keys, correct):
            steps[-1].update(fingerprints=fps.clone(), keys=list(keys), correct=list(correct))
            return super()._meds_penalize(fps, keys, correct)

    trainer = make_trainer(os.environ["MEDSCORE_MODEL"], os.environ["MEDSCORE_OUT"],
                           max_steps=int(os.environ.get("MEDSCORE_MAX_STEPS", "3")),
                           save=os.environ.get("MEDSCORE_SAVE") == "1", extra_rewards=[brevity],
                           **json.loads(os.environ.get("MEDSCORE_TRAINER_ARGS", "{}")))
    trainer.__class__ = type("Recording" + type(trainer).__name__, (Recording, type(trainer)), {})
    trainer.train(resume_from_checkpoint=os.environ.get("MEDSCORE_RESUME") or None)
    accelerator = trainer.accelerator
    record = {
        "processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "fsdp_plugin": "fsdp_plugin" in accelerator.state.__dict__,
        "fsdp_version": getattr(accelerator.state.__dict__.get("fsdp_plugin"), "fsdp_version", None),
        "wrapped": type(trainer.model_wrapped).__name__,
        "env_use_fsdp": os.environ.get("ACCELERATE_USE_FSDP"),
        "memory": pickle.dumps(trainer.meds_memory.state_dict()),
        "loaded": loaded,
        "metrics": trainer.meds_memory.metrics(),
        "logged": [h["medscore/points"] for h in trainer.state.log_history if "medscore/points" in h],
        "threads": torch.get_num_threads(),
        "steps": steps if accelerator.is_main_process else [{k: v for k, v in s.items() if k != "weights"}
                                                             for s in steps],
    }
    torch.save(record, os.path.join(os.environ["MEDSCORE_RESULT"], f"rank{accelerator.process_index}.pt"))


if __name__ == "__main__":
    main()
