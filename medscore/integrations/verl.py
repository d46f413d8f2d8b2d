"""MEDS in veRL's PPO/GRPO trainer (veRL 0.9, engine workers), without forking veRL.

Data flow of one step (``RayPPOTrainer.fit``):

1. Driver, before the actor's no-grad ``compute_log_prob``: :func:`answer_locations` finds
   each response's answer token (after the last ``\\boxed{``, by the configured marker rule
   of ``medscore._answer_markers.locate_answers``) in the padded batch and adds
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
   prompt id, decides correctness (the reward's ``acc`` where present), calls
   ``Memory.penalize`` and shapes the sequence reward at the last valid response token
   (``score - p`` wrong, ``score / (1 + p)`` correct when targeted). With the default
   ``placement="advantage"`` (the reference's estimator) only the rewards that
   ``compute_advantage`` reads are shaped, and the raw ones are put back after it, so the
   logged scores stay raw; ``placement="scores"`` shapes ``token_level_scores`` in place.
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
    rollout_correctness,
    rollout_keys,
    run_with_capture,
    shaped_totals,
)

INDEX_KEY = "medscore_answer_index"
TARGET_KEY = "medscore_answer_target"
FINGERPRINT_KEY = "medscore_fingerprints"
LAYERS_META = "medscore_layers"
BF16_META = "medscore_bf16"
RAW_REWARDS_KEY = "medscore_raw_token_level_rewards"


def _torch():
    return require("torch", "torch")


def answer_locations(data, marker_ids, tokenizer=None, rule: str = "robust", marker: str = "\\boxed{"):
    """Answer token of each rollout, located in veRL's layouts.

    Parameters
    ----------
    data : verl.DataProto with ``prompts`` [B, P], ``responses`` [B, R] and
        ``attention_mask`` [B, P + R] (prompts left padded, responses right padded).
    marker_ids : the rule's marker ids (``medscore._answer_markers.marker_ids_for``)
    tokenizer : the tokenizer (needed by ``rule="paper"``; lets the robust rule tell a
        response cut right after the marker)
    rule, marker : see ``medscore._answer_markers.locate_answers``

    Returns
    -------
    (index int64 Tensor [B], target int64 Tensor [B]): index of the answer token inside the
    row's unpadded ``prompt + response`` tokens (-1 where the response has no answer) and
    its token id (0 where none). The fingerprint is read one token earlier. A marker in the
    prompt's instructions is not an answer.
    """
    from medscore._answer_markers import locate_answers

    prompts, responses = data.batch["prompts"], data.batch["responses"]
    attention = data.batch["attention_mask"]
    n_prompt = prompts.shape[1]
    where = locate_answers(tokenizer, prompts, attention[:, :n_prompt], responses, attention[:, n_prompt:],
                           rule=rule, marker=marker, marker_ids=marker_ids)
    return where.index, where.target


def prompt_keys(data, key_field: str = "index", rule: str = "index", tokenizer=None) -> list:
    """Stable prompt id of each rollout (veRL's ``uid`` changes every step).

    ``rule="index"``: ``non_tensor_batch["extra_info"][i][key_field]`` where present, else a
    hash of the prompt's real token ids (``prompts`` without padding); ``"prompt_tokens"``:
    that hash; ``"question"``: the reference's md5 of the decoded prompt's question (needs
    ``tokenizer``). See ``medscore.integrations._common.rollout_keys``.

    Raises
    ------
    ValueError
        When the batch has neither ``extra_info`` ids nor ``prompts`` to hash or decode.
    """
    n = len(data)
    infos = data.non_tensor_batch.get("extra_info")
    infos = [None] * n if infos is None else list(infos)
    if "prompts" not in data.batch.keys():
        if rule == "index" and all(isinstance(i, dict) and i.get(key_field) is not None for i in infos):
            return rollout_keys("index", [()] * n, infos, field=key_field)
        raise ValueError(
            f"the batch has no stable prompt id: neither extra_info['{key_field}'] on every row nor "
            "'prompts' token ids to hash; MEDS needs one key per prompt that is the same at every step")
    prompts = data.batch["prompts"].cpu().numpy()
    n_prompt = prompts.shape[1]
    real = data.batch["attention_mask"][:, :n_prompt].bool().cpu().numpy()
    return rollout_keys(rule, [prompts[i][real[i]] for i in range(n)], infos, field=key_field, tokenizer=tokenizer)


def last_response_token(response_mask):
    """int64 Tensor [B]: column of each row's last valid response token (0 if none)."""
    torch = _torch()
    columns = torch.arange(response_mask.shape[1], device=response_mask.device)
    return torch.where(response_mask.bool(), columns, -1).max(dim=1).values.clamp(min=0)


def apply_penalties(data, memory, step: int, config: MedsConfig | None = None, tokenizer=None):
    """Penalise the rollouts of ``data`` before ``compute_advantage``.

    Parameters
    ----------
    data : verl.DataProto with ``medscore_fingerprints`` float [B, L], ``token_level_scores``
        [B, R], ``response_mask`` [B, R], and the keys of :func:`prompt_keys`.
    memory : medscore.Memory or RemoteMemory
    step : int, the global step
    config : MedsConfig
    tokenizer : the tokenizer (for ``key="question"``)

    Returns
    -------
    float64 ndarray [B]: the memory's penalties ``p``. A rollout is correct when
    ``non_tensor_batch[config.correct_field] >= correct_threshold`` (DAPO's ``acc``), or, where
    the reward has no such field, when its summed ``token_level_scores`` exceed the threshold.
    ``placement="scores"``: ``token_level_scores`` (and ``token_level_rewards`` when it is
    another tensor) are shaped in place. ``placement="advantage"``: ``token_level_rewards``
    is replaced by a shaped copy and the raw tensor kept under ``RAW_REWARDS_KEY`` until
    :func:`restore_raw_rewards`.
    """
    config = config or MedsConfig()
    if FINGERPRINT_KEY not in data.batch.keys():
        raise ValueError(f"the batch has no '{FINGERPRINT_KEY}': the actor worker must be built with "
                         "medscore.integrations.verl.meds_worker_class (see docs/integrations.md)")
    scores = data.batch["token_level_scores"]
    field = data.non_tensor_batch.get(config.correct_field) if config.correct_field else None
    correct = rollout_correctness(scores.sum(-1).cpu().numpy(), field, config.correct_threshold)
    keys = prompt_keys(data, config.key_field, config.key_rule, tokenizer)
    penalties = penalize_rollouts(memory, data.batch[FINGERPRINT_KEY], keys, correct, step,
                                  config.on_no_answer, "medscore veRL")
    mask = data.batch["response_mask"]
    rewards = data.batch.get("token_level_rewards")
    if config.placement == "scores":
        shape_rewards(scores, mask, penalties, correct)
        # With use_kl_in_reward=False the rewards are the scores tensor itself.
        if rewards is not None and rewards.data_ptr() != scores.data_ptr():
            shape_rewards(rewards, mask, penalties, correct)
    else:
        raw = scores if rewards is None else rewards
        data.batch[RAW_REWARDS_KEY] = raw
        data.batch["token_level_rewards"] = shape_rewards(raw.clone(), mask, penalties, correct)
    return penalties


def shape_rewards(rewards, response_mask, penalties, correct):
    """Shape each row's sequence reward in place at its last valid token; returns ``rewards``.

    ``rewards`` float Tensor [B, R]; ``penalties`` float64 [B]; ``correct`` bool [B]. The row
    sum becomes :func:`~medscore.integrations._common.shaped_totals` of it.
    """
    torch = _torch()
    totals = rewards.sum(-1).double().cpu().numpy()
    delta = shaped_totals(totals, penalties, correct) - totals
    rows = torch.arange(len(rewards), device=rewards.device)
    last = last_response_token(response_mask).to(rewards.device)
    rewards[rows, last] += torch.as_tensor(delta, device=rewards.device).to(rewards.dtype)
    return rewards


def restore_raw_rewards(data) -> None:
    """Put back the raw ``token_level_rewards`` that ``placement="advantage"`` set aside."""
    if RAW_REWARDS_KEY in data.batch.keys():
        data.batch["token_level_rewards"] = data.batch.pop(RAW_REWARDS_KEY)


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
    bf16 = bool(tu.get_non_tensor_data(data=micro_batch, key=BF16_META, default=False))
    packed = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
    input_ids = micro_batch["input_ids"]
    cu_seqlens = input_ids.offsets().long() if packed and input_ids.is_nested else None
    (loss, output), fingerprints = run_with_capture(
        engine.module, lambda: original(micro_batch, loss_function, True),
        positions, targets, layers, cu_seqlens=cu_seqlens, bf16=bf16)
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
