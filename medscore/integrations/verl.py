"""MEDS in veRL's PPO/GRPO trainer (veRL 0.9, engine workers), without forking veRL.

Data flow of one step (``RayPPOTrainer.fit``):

1. Driver, before the actor's no-grad ``compute_log_prob``: :func:`answer_locations` finds
   each response's answer token (after the last ``\\boxed{``) in the padded batch and adds
   ``medscore_answer_index`` (index inside the unpadded prompt+response sequence, which is
   what veRL's no-padding/packed layout uses, whatever the left padding) and
   ``medscore_answer_target`` to the batch.
2. Worker: the hook installed by the worker class wraps the engine's ``forward_step``; in
   forward-only micro-batches carrying those keys it runs the model's own forward inside
   ``medscore.capture`` (packed ``cu_seqlens`` with ``use_remove_padding``, padded rows
   otherwise) and adds ``medscore_fingerprints`` to the micro-batch's model output. veRL's
   ``postprocess_batch_func`` concatenates micro-batches and undoes the dynamic-batch row
   reordering, exactly as for the log-probs.
3. Driver: the fingerprints come back with the log-probs into the batch's ``DataProto``;
   right before ``compute_advantage``, :func:`apply_penalties` keys each rollout by a stable
   prompt id, calls ``Memory.penalize`` and subtracts the penalties from
   ``token_level_scores`` (and ``token_level_rewards``) at the last valid response token.
4. The memory's metrics join the step's metrics (``medscore/...``) and the memory is saved
   in and loaded from veRL's ``global_step_N`` checkpoint folders.

Configuration: a ``medscore`` section of the trainer config (see ``docs/integrations.md``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys

import numpy as np

from ._common import (
    MEMORY_FILE,
    MedsConfig,
    memory_metrics,
    penalize_rollouts,
    require,
    run_with_capture,
    sample_key,
)

INDEX_KEY = "medscore_answer_index"
TARGET_KEY = "medscore_answer_target"
FINGERPRINT_KEY = "medscore_fingerprints"
LAYERS_META = "medscore_layers"


def _torch():
    return require("torch", "torch")


def answer_locations(data, marker_ids):
    """Answer token of each rollout, located in veRL's layouts.

    Parameters
    ----------
    data : verl.DataProto with ``prompts`` [B, P], ``responses`` [B, R] and
        ``attention_mask`` [B, P + R] (prompts left padded, responses right padded).
    marker_ids : marker token ids (``medscore.fingerprint.answer_marker_ids``)

    Returns
    -------
    (index int64 Tensor [B], target int64 Tensor [B]): index of the answer token inside the
    row's unpadded ``prompt + response`` tokens (-1 where the response has no marker) and
    its token id (0 where none). Only the response is searched: a ``\\boxed{}`` in the
    prompt's instructions is not an answer.
    """
    torch = _torch()
    from medscore._answer_markers import find_answer_positions

    prompts, responses = data.batch["prompts"], data.batch["responses"]
    attention = data.batch["attention_mask"]
    n_prompt = prompts.shape[1]
    in_response = find_answer_positions(responses, marker_ids, attention_mask=attention[:, n_prompt:])
    found = in_response >= 0
    column = (n_prompt + in_response.clamp(min=0)).unsqueeze(1)
    index = attention.long().cumsum(1).gather(1, column).squeeze(1) - 1
    target = responses.gather(1, in_response.clamp(min=0).unsqueeze(1)).squeeze(1).long()
    return torch.where(found, index, -1), torch.where(found, target, 0)


def prompt_keys(data, key_field: str = "index") -> list:
    """Stable prompt id of each rollout (veRL's ``uid`` changes every step).

    ``non_tensor_batch["extra_info"][i][key_field]`` where present, else a hash of the
    prompt's real token ids (``prompts`` without padding).

    Raises
    ------
    ValueError
        When the batch has neither ``extra_info`` ids nor ``prompts`` to hash.
    """
    n = len(data)
    infos = data.non_tensor_batch.get("extra_info")
    infos = [None] * n if infos is None else list(infos)
    if "prompts" not in data.batch.keys():
        if all(isinstance(i, dict) and i.get(key_field) is not None for i in infos):
            return [sample_key(i, key_field, ()) for i in infos]
        raise ValueError(
            f"the batch has no stable prompt id: neither extra_info['{key_field}'] on every row nor "
            "'prompts' token ids to hash; MEDS needs one key per prompt that is the same at every step")
    prompts = data.batch["prompts"].cpu().numpy()
    n_prompt = prompts.shape[1]
    real = data.batch["attention_mask"][:, :n_prompt].bool().cpu().numpy()
    return [sample_key(infos[i], key_field, prompts[i][real[i]]) for i in range(n)]


def last_response_token(response_mask):
    """int64 Tensor [B]: column of each row's last valid response token (0 if none)."""
    torch = _torch()
    columns = torch.arange(response_mask.shape[1], device=response_mask.device)
    return torch.where(response_mask.bool(), columns, -1).max(dim=1).values.clamp(min=0)


def apply_penalties(data, memory, step: int, config: MedsConfig | None = None):
    """Penalise the rollouts of ``data`` in place, before ``compute_advantage``.

    Parameters
    ----------
    data : verl.DataProto with ``medscore_fingerprints`` float [B, L], ``token_level_scores``
        [B, R], ``response_mask`` [B, R], and the keys of :func:`prompt_keys`.
    memory : medscore.Memory or RemoteMemory
    step : int, the global step
    config : MedsConfig

    Returns
    -------
    float64 ndarray [B]: the penalties subtracted. A rollout is correct when its summed
    ``token_level_scores`` exceed ``config.correct_threshold``.
    """
    torch = _torch()
    config = config or MedsConfig()
    if FINGERPRINT_KEY not in data.batch.keys():
        raise ValueError(f"the batch has no '{FINGERPRINT_KEY}': the actor worker must be built with "
                         "medscore.integrations.verl.meds_worker_class (see docs/integrations.md)")
    scores = data.batch["token_level_scores"]
    correct = (scores.sum(-1) > config.correct_threshold).cpu().numpy()
    keys = prompt_keys(data, config.key_field)
    penalties = penalize_rollouts(memory, data.batch[FINGERPRINT_KEY], keys, correct, step,
                                  config.on_no_answer, "medscore veRL")
    rows = torch.arange(len(scores), device=scores.device)
    last = last_response_token(data.batch["response_mask"]).to(scores.device)
    delta = torch.as_tensor(penalties, dtype=scores.dtype, device=scores.device)
    rewards = data.batch.get("token_level_rewards")
    scores[rows, last] -= delta
    # With use_kl_in_reward=False the rewards are the scores tensor itself.
    if rewards is not None and rewards.data_ptr() != scores.data_ptr():
        rewards[rows, last] -= delta
    return penalties


# -- worker side ---------------------------------------------------------------------------

def install_fingerprint_hook(engine) -> None:
    """Wrap ``engine.forward_step`` so forward-only micro-batches carrying answer locations
    also return fingerprints (``medscore_fingerprints`` float32 [b, L] in the model output).

    Works on veRL engines whose ``forward_step(micro_batch, loss_function, forward_only)``
    returns ``(loss, {"model_output": {...}, ...})`` (FSDP/FSDP2 engines of veRL 0.9).
    """
    if getattr(engine, "_medscore_hooked", False):
        return
    original = engine.forward_step

    @functools.wraps(original)
    def forward_step(micro_batch, loss_function, forward_only):
        if not forward_only or INDEX_KEY not in micro_batch.keys():
            return original(micro_batch, loss_function, forward_only)
        return _forward_with_fingerprints(engine, original, micro_batch, loss_function)

    engine.forward_step = forward_step
    engine._medscore_hooked = True


def _forward_with_fingerprints(engine, original, micro_batch, loss_function):
    tu = require("verl.utils.tensordict_utils", "verl")
    positions = micro_batch[INDEX_KEY].long()
    targets = micro_batch[TARGET_KEY].long()
    layers = tu.get_non_tensor_data(data=micro_batch, key=LAYERS_META, default="last:14")
    packed = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
    input_ids = micro_batch["input_ids"]
    cu_seqlens = input_ids.offsets().long() if packed and input_ids.is_nested else None
    (loss, output), fingerprints = run_with_capture(
        engine.module, lambda: original(micro_batch, loss_function, True),
        positions, targets, layers, cu_seqlens=cu_seqlens)
    output.setdefault("model_output", {})[FINGERPRINT_KEY] = fingerprints.detach().float()
    return loss, output


def meds_worker_class(base=None):
    """A subclass of veRL's ``ActorRolloutRefWorker`` (or of ``base``) whose actor engine
    takes fingerprints in ``compute_log_prob``'s forward. Use it in the role-worker mapping of
    ``main_ppo`` in place of the plain worker."""
    require("verl", "verl")
    from verl.single_controller.base.decorator import Dispatch, register

    if base is None:
        from verl.workers.engine_workers import ActorRolloutRefWorker as base

    class MedsActorRolloutRefWorker(base):
        @register(dispatch_mode=Dispatch.ONE_TO_ALL)
        def init_model(self):
            super().init_model()
            if getattr(self, "actor", None) is not None:
                install_fingerprint_hook(self.actor.engine)

    MedsActorRolloutRefWorker.__qualname__ = f"Meds{base.__name__}"
    return MedsActorRolloutRefWorker


# -- driver side ---------------------------------------------------------------------------

def read_fingerprints(output):
    """Dense float32 [B, L] fingerprints from a worker's ``compute_log_prob`` TensorDict."""
    torch = _torch()
    value = output.get(FINGERPRINT_KEY, None)
    if value is None:
        return None
    if getattr(value, "is_nested", False):
        value = torch.stack(list(value.unbind()))
    return value.float()


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


class MedsTrainerMixin:
    """Mixin for veRL's ``RayPPOTrainer`` (and subclasses such as a DAPO trainer).

    Reads the ``medscore`` section of the trainer config; keeps ``self.meds_memory``.
    """

    def _meds_setup(self):
        config = self.config.get("medscore", None) if hasattr(self.config, "get") else None
        self.meds_config = MedsConfig.from_mapping(config)
        self.meds_memory = self.meds_config.build_memory() if self.meds_config.enable else None
        from medscore._answer_markers import answer_marker_ids

        self.meds_marker_ids = answer_marker_ids(self.tokenizer, self.meds_config.marker)
        self.meds_last_penalties = np.zeros(0)

    def _compute_old_log_prob(self, batch):
        if self.meds_memory is None:
            return super()._compute_old_log_prob(batch)
        index, target = answer_locations(batch, self.meds_marker_ids)
        batch.batch[INDEX_KEY], batch.batch[TARGET_KEY] = index, target
        batch.meta_info[LAYERS_META] = self.meds_config.layers
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
        if captured.get("fingerprints") is None:
            raise RuntimeError("the actor returned no fingerprints: build the actor worker with "
                               "medscore.integrations.verl.meds_worker_class")
        old_log_prob = result[0] if isinstance(result, tuple) else result
        old_log_prob.batch[FINGERPRINT_KEY] = captured["fingerprints"]
        return result

    def _meds_compute_advantage(self, original, data, *args, **kwargs):
        if self.meds_memory is not None and FINGERPRINT_KEY in data.batch.keys():
            self.meds_last_penalties = apply_penalties(data, self.meds_memory, self.global_steps,
                                                       self.meds_config)
            data.batch.pop(FINGERPRINT_KEY)
        return original(data, *args, **kwargs)

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

    def _save_checkpoint(self):
        super()._save_checkpoint()
        if self.meds_memory is not None:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            os.makedirs(folder, exist_ok=True)
            self.meds_memory.save(os.path.join(folder, MEMORY_FILE))

    def _load_checkpoint(self):
        result = super()._load_checkpoint()
        if self.meds_memory is not None and self.global_steps:
            folder = _resolve_step_folder(self.config.trainer, self.global_steps)
            path = os.path.join(folder, MEMORY_FILE)
            if os.path.exists(path):
                from medscore.memory import Memory

                self.meds_memory.load_state_dict(Memory.load(path).state_dict())
            else:
                raise FileNotFoundError(f"resuming from {folder} but it holds no MEDS memory ({MEMORY_FILE}); "
                                        "set medscore.enable=false or resume from a medscore checkpoint")
        return result


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
    """A subclass of veRL's ``RayPPOTrainer`` (or of ``base``, e.g. a DAPO trainer) with MEDS."""
    require("verl", "verl")
    if base is None:
        from verl.trainer.ppo.ray_trainer import RayPPOTrainer as base

    class MedsTrainer(MedsTrainerMixin, base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._meds_setup()

    MedsTrainer.__qualname__ = MedsTrainer.__name__ = f"Meds{base.__name__}"
    return MedsTrainer
