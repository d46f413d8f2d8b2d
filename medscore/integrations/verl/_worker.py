"""Worker side of MEDS in veRL: fingerprints taken inside the actor's no-grad log-prob forward.

The hook wraps the actor engine's ``forward_step``. In forward-only micro-batches that carry
answer locations (``medscore_answer_index``/``medscore_answer_target``) and the layer
selection (``medscore_layers``, set by the MEDS trainers only around the actor's
``compute_log_prob``), the model's own forward runs inside ``medscore.capture`` and
``medscore_fingerprints`` joins the micro-batch's model output. veRL's
``postprocess_batch_func`` then concatenates micro-batches and undoes the dynamic-batch
reordering exactly as for the log-probs; the V1 trainer's TransferQueue bridge stores it
with them. No extra forward pass.
"""
from __future__ import annotations

import functools

from .._common import require, run_with_capture
from ._shaping import BF16_META, FINGERPRINT_KEY, INDEX_KEY, LAYERS_META, TARGET_KEY


def install_fingerprint_hook(engine) -> None:
    """Wrap ``engine.forward_step`` so forward-only micro-batches carrying answer locations
    also return fingerprints (``medscore_fingerprints`` float32 [b, L] in the model output).

    Works on veRL engines whose ``forward_step(micro_batch, loss_function, forward_only)``
    returns ``(loss, {"model_output": {...}, ...})`` (FSDP/FSDP2 engines of veRL 0.9).
    Micro-batches without ``medscore_layers`` (the reference model's forward when it shares
    the actor's engine, validation) run unchanged.
    """
    if getattr(engine, "_medscore_hooked", False):
        return
    original = engine.forward_step

    @functools.wraps(original)
    def forward_step(micro_batch, loss_function, forward_only):
        if not forward_only or INDEX_KEY not in micro_batch.keys() or _layers(micro_batch) is None:
            return original(micro_batch, loss_function, forward_only)
        return _forward_with_fingerprints(engine, original, micro_batch, loss_function)

    engine.forward_step = forward_step
    engine._medscore_hooked = True


def _layers(micro_batch):
    tu = require("verl.utils.tensordict_utils", "verl")
    return tu.get_non_tensor_data(data=micro_batch, key=LAYERS_META, default=None)


def _forward_with_fingerprints(engine, original, micro_batch, loss_function):
    tu = require("verl.utils.tensordict_utils", "verl")
    positions, targets = _column(micro_batch[INDEX_KEY]), _column(micro_batch[TARGET_KEY])
    bf16 = bool(tu.get_non_tensor_data(data=micro_batch, key=BF16_META, default=False))
    packed = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
    input_ids = micro_batch["input_ids"]
    cu_seqlens = input_ids.offsets().long() if packed and input_ids.is_nested else None
    (loss, output), fingerprints = run_with_capture(
        engine.module, lambda: original(micro_batch, loss_function, True),
        positions, targets, _layers(micro_batch), cu_seqlens=cu_seqlens, bf16=bf16)
    output.setdefault("model_output", {})[FINGERPRINT_KEY] = fingerprints.detach().float()
    return loss, output


def _column(value):
    """int64 [b] from a per-row scalar field: dense [b], or nested [b, 1] as the V1 trainer's
    TransferQueue hands every tensor field back."""
    if getattr(value, "is_nested", False):
        lengths = value.offsets().diff()
        if not bool((lengths == 1).all()):
            raise ValueError(f"expected one answer position per row, got rows of lengths {lengths.tolist()}")
        value = value.values()
    return value.reshape(-1).long()


def skip_trl_value_head_patch() -> bool:
    """Let veRL 0.9's FSDP engine build its model where a TRL without the value-head model is
    installed (TRL >= 1.0, as ``medscore[integrations]`` installs beside veRL).

    veRL's ``apply_monkey_patch`` (run by the FSDP engine while it builds the model) imports
    ``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo`` or ``trl`` whenever TRL
    is importable, only to replace that class's ``state_dict``; TRL 1.x has neither, so the
    import fails and the actor never starts (``ImportError: cannot import name
    'AutoModelForCausalLMWithValueHead' from 'trl'``). Where the class cannot be imported,
    that patch has nothing to patch: this makes veRL's monkey-patch module see TRL as absent,
    which skips only that step. Returns whether it did; a TRL that has the class is left alone.
    """
    import importlib

    if trl_value_head_importable() in (None, True):
        return False
    monkey_patch = importlib.import_module("verl.models.transformers.monkey_patch")
    if getattr(monkey_patch, "is_trl_available", None) is None:
        return False  # another veRL: nothing of this kind to skip
    monkey_patch.is_trl_available = lambda: False
    return True


def trl_value_head_importable():
    """Whether veRL's import of TRL's ``AutoModelForCausalLMWithValueHead`` can succeed (None:
    no TRL). ``trl.experimental.ppo`` is looked for on disk, not imported (importing
    ``trl.experimental`` warns)."""
    import importlib
    import importlib.util
    import os

    spec = importlib.util.find_spec("trl")
    if spec is None:
        return None
    folders = spec.submodule_search_locations or ()
    if any(os.path.isdir(os.path.join(folder, "experimental", "ppo")) for folder in folders):
        return True  # veRL's first choice exists: leave veRL alone
    return hasattr(importlib.import_module("trl"), "AutoModelForCausalLMWithValueHead")


def meds_worker_class(base=None):
    """A subclass of veRL's ``ActorRolloutRefWorker`` (or of ``base``) whose actor engine
    takes fingerprints in ``compute_log_prob``'s forward.

    The MEDS trainers put it in their role-worker mapping themselves; a custom TaskRunner
    uses it in place of the plain worker.
    """
    require("verl", "verl")
    from verl.single_controller.base.decorator import Dispatch, register

    if base is None:
        from verl.workers.engine_workers import ActorRolloutRefWorker as base

    class MedsActorRolloutRefWorker(base):
        @register(dispatch_mode=Dispatch.ONE_TO_ALL)
        def init_model(self):
            skip_trl_value_head_patch()
            super().init_model()
            if getattr(self, "actor", None) is not None:
                install_fingerprint_hook(self.actor.engine)

    MedsActorRolloutRefWorker.__qualname__ = f"Meds{base.__name__}"
    return MedsActorRolloutRefWorker
