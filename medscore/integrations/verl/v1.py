"""MEDS on veRL 0.9's V1 trainer (``trainer.use_v1=true``, the default), without forking veRL.

The V1 trainer keeps a step's data in the TransferQueue, one entry per rollout (key
``{uid}_{session}_{output}``, unpadded fields), and hands the workers ``KVBatchMeta``
handles. The MEDS subclass of the configured trainer (``trainer.v1.trainer_mode``: ``sync``,
``colocate_async``, ``separate_async``; :func:`meds_v1_trainer_class`) changes four steps:

1. ``_compute_old_log_prob``: the answer token of each rollout is located in its
   ``prompts``/``responses`` fields and ``medscore_answer_index``/``medscore_answer_target``
   are put into the queue; the layer selection rides in the batch's ``extra_info`` for this
   call only. The actor worker (:func:`~medscore.integrations.verl.meds_worker_class`, put in
   the role-worker mapping by ``_init_resource_pool_mgr``) reads the fingerprints in its
   log-prob forward and veRL's bridge stores ``medscore_fingerprints`` with the log-probs.
2. ``_compute_advantage``: the fingerprints, keys, correctness and scores are read back,
   ``Memory.penalize`` runs, and ``medscore/*`` metrics join the step's. With
   ``placement: advantage`` veRL's own ``_compute_advantage`` then runs under
   :func:`~medscore.integrations.verl.estimator.pending_penalties` and the registered
   ``meds_grpo`` estimator shapes a copy of the rewards before GRPO's normalisation (logged
   scores stay raw); with ``placement: scores`` the ``rm_scores`` in the queue are shaped.
3. ``_save_checkpoint`` writes the memory into ``global_step_N`` before veRL writes its
   tracker file; ``_load_checkpoint`` loads it back (``on_missing_memory`` decides when absent).

The trainer registry's entry for the configured mode is replaced by its MEDS subclass while
medscore's TaskRunner runs (:func:`meds_trainer_registered`): the mode name itself must stay
(veRL picks the replay buffer and the per-mode options by it).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .._common import (
    MedsConfig,
    memory_metrics,
    penalize_rollouts,
    require,
    rollout_correctness,
    rollout_keys,
    shaped_totals,
)
from ._checks import check_config
from ._legacy import MemoryCheckpointMixin
from ._shaping import (
    BF16_META,
    FINGERPRINT_KEY,
    INDEX_KEY,
    LAYERS_META,
    TARGET_KEY,
    answer_locations_in_rows,
    unbind_rows,
)
from ._worker import meds_worker_class
from .estimator import pending_penalties, register_estimator

_CLASSES: dict = {}


def _tq():
    return require("transfer_queue", "verl")


class MedsV1TrainerMixin(MemoryCheckpointMixin):
    """Mixin for a V1 ``PPOTrainer`` subclass (``verl.trainer.ppo.v1``); keeps ``self.meds_memory``."""

    def __init__(self, config):
        self.meds_config = MedsConfig.from_mapping(config.get("medscore", None))
        check_config(config, self.meds_config, v1=True)
        register_estimator()
        self.meds_memory = self.meds_config.build_memory() if self.meds_config.enable else None
        self.meds_last_penalties = np.zeros(0)
        super().__init__(config)

    def _init_tokenizer(self):
        super()._init_tokenizer()
        from medscore._answer_markers import marker_ids_for

        self.meds_marker_ids = marker_ids_for(self.tokenizer, self.meds_config.marker_rule, self.meds_config.marker)

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        if self.meds_memory is not None:
            use_meds_worker(self.role_worker_mapping)

    # -- fingerprints ----------------------------------------------------------------------

    def _compute_old_log_prob(self, batch, metrics):
        if self.meds_memory is None:
            return super()._compute_old_log_prob(batch, metrics)
        self._meds_put_answer_locations(batch)
        c = self.meds_config
        added = {LAYERS_META: c.layers, BF16_META: c.bf16}
        batch.extra_info.update(added)
        result = None
        try:
            result = super()._compute_old_log_prob(batch, metrics)
        finally:
            # extra_info outlives this call (the reference model's forward reads the same
            # batch): without the layers, the hook leaves any later forward alone.
            for meta in (batch, result):
                for name in added:
                    (getattr(meta, "extra_info", None) or {}).pop(name, None)
        return result

    def _meds_put_answer_locations(self, batch) -> None:
        tq = _tq()
        from tensordict import TensorDict

        c = self.meds_config
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["prompts", "responses"])
        index, target = answer_locations_in_rows(unbind_rows(data["prompts"]), unbind_rows(data["responses"]),
                                                 self.meds_marker_ids, self.tokenizer, c.marker_rule, c.marker)
        padding = _padding_rows(batch)
        index[padding], target[padding] = -1, 0  # veRL's synthetic rows for divisibility
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                        fields=TensorDict({INDEX_KEY: index, TARGET_KEY: target}, batch_size=[len(index)]))
        if batch.fields is not None:  # a batch that names its fields hands the worker those only
            batch.fields = [*batch.fields, *(f for f in (INDEX_KEY, TARGET_KEY) if f not in batch.fields)]

    # -- penalties -------------------------------------------------------------------------

    def _compute_advantage(self, batch, metrics):
        if self.meds_memory is None:
            return super()._compute_advantage(batch, metrics)
        rows = read_rows(batch, self.meds_config)
        self.meds_last_penalties, correct = penalize_rows(rows, self.meds_memory, self.global_steps,
                                                          self.meds_config, self.tokenizer)
        metrics.update(memory_metrics(self.meds_memory))
        if (self.meds_config.placement or "advantage") == "scores":
            shape_queued_scores(batch, rows["rm_scores"], self.meds_last_penalties, correct)
            return super()._compute_advantage(batch, metrics)
        with pending_penalties(rows["uid"], self.meds_last_penalties, correct):
            return super()._compute_advantage(batch, metrics)


def _padding_rows(batch) -> np.ndarray:
    return np.array([bool(tag.get("is_padding", False)) for tag in batch.tags], dtype=bool)


def check_single_output_sessions(keys) -> None:
    """Refuse agent loops that return several outputs per session (keys ``{uid}_{session}_{i}``, i > 0).

    veRL's GRPO path normalises such sessions by their final output only; a registered
    estimator sees every output as its own rollout, so MEDS would change the grouping.
    """
    for key in keys:
        parts = str(key).rsplit("_", 2)
        if len(parts) == 3 and parts[2] != "0":
            raise ValueError(f"medscore veRL: rollout {key!r} is a second output of its session (multi-output "
                             "agent loop); MEDS supports one output per session")


def read_rows(batch, config: MedsConfig) -> dict:
    """The fields of a V1 batch that MEDS needs, read from the TransferQueue.

    Returns
    -------
    dict with ``uid`` (list [B]), ``prompts`` (list [B] of 1-d Tensors), ``rm_scores`` (list
    [B] of 1-d float Tensors), ``fingerprints`` (float32 Tensor [B, L], NaN rows: no answer or
    a padding row), ``infos`` (list [B] of ``extra_info`` dicts or None) and ``acc`` (float
    ndarray [B] of the reward's ``correct_field``, or None where the reward has none).
    """
    tq = _tq()
    torch = require("torch", "torch")
    check_single_output_sessions(batch.keys)
    available = set(tq.get_client().kv_retrieve_meta(keys=batch.keys, partition_id=batch.partition_id).field_names)
    if FINGERPRINT_KEY not in available:
        raise ValueError(f"the batch has no '{FINGERPRINT_KEY}': the actor worker must be built with "
                         "medscore.integrations.verl.meds_worker_class (see docs/integrations.md)")
    wanted = ["uid", "prompts", "rm_scores", FINGERPRINT_KEY]
    optional = ["extra_info", "extra_fields", config.correct_field]
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                           select_fields=wanted + [f for f in optional if f and f in available])
    fingerprints = data[FINGERPRINT_KEY]
    fingerprints = torch.stack(unbind_rows(fingerprints)).float() if fingerprints.is_nested else fingerprints.float()
    fingerprints[torch.as_tensor(_padding_rows(batch))] = float("nan")
    n = len(batch.keys)
    infos = unbind_rows(data["extra_info"]) if "extra_info" in data.keys() else [None] * n
    return {"uid": unbind_rows(data["uid"]), "prompts": unbind_rows(data["prompts"]),
            "rm_scores": unbind_rows(data["rm_scores"]), "fingerprints": fingerprints, "infos": infos,
            "acc": _correct_field(data, config.correct_field, n)}


def _correct_field(data, field, n: int):
    """The reward's correctness field: a queue field of its own (a colocated reward model
    writes its extra keys so), else ``extra_fields["reward_extra_info"][field]`` of every row."""
    if not field:
        return None
    if field in data.keys():
        return np.asarray([float(np.asarray(v).reshape(-1)[0]) for v in unbind_rows(data[field])], dtype=np.float64)
    if "extra_fields" not in data.keys():
        return None
    extras = [e.get("reward_extra_info", {}) if isinstance(e, dict) else {} for e in unbind_rows(data["extra_fields"])]
    if len(extras) != n or not all(field in e for e in extras):
        return None
    return np.asarray([e[field] for e in extras], dtype=np.float64)


def penalize_rows(rows: dict, memory, step: int, config: MedsConfig, tokenizer=None):
    """``Memory.penalize`` on the rows of :func:`read_rows`; returns (penalties [B], correct [B])."""
    totals = np.array([float(r.sum()) for r in rows["rm_scores"]])
    correct = rollout_correctness(totals, rows["acc"], config.correct_threshold)
    keys = rollout_keys(config.key_rule, [p.cpu().numpy() for p in rows["prompts"]], rows["infos"],
                        field=config.key_field, tokenizer=tokenizer)
    penalties = penalize_rollouts(memory, rows["fingerprints"], keys, correct, step, config.on_no_answer,
                                  "medscore veRL")
    return penalties, correct


def shape_queued_scores(batch, rm_scores: list, penalties, correct) -> None:
    """``placement="scores"``: shape each row's ``rm_scores`` at its last token (where veRL puts
    the sequence reward) and write them back to the queue."""
    tq = _tq()
    torch = require("torch", "torch")
    from tensordict import TensorDict

    totals = np.array([float(r.sum()) for r in rm_scores])
    delta = shaped_totals(totals, penalties, correct) - totals
    shaped = []
    for row, d in zip(rm_scores, delta):
        row = row.clone()
        if len(row):
            row[-1] += torch.as_tensor(d, dtype=row.dtype)
        shaped.append(row)
    nested = torch.nested.as_nested_tensor(shaped, layout=torch.jagged)
    tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                    fields=TensorDict({"rm_scores": nested}, batch_size=[len(shaped)]))


def use_meds_worker(role_worker_mapping: dict) -> None:
    """Replace the actor's worker class in a role-worker mapping by its MEDS subclass (in place)."""
    ray = require("ray", "verl")
    from verl.trainer.ppo.utils import Role

    for role in (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef):
        remote = role_worker_mapping.get(role)
        if remote is not None:
            base = getattr(remote, "__ray_actor_class__", remote)
            if not getattr(base, "__qualname__", "").startswith("Meds"):
                role_worker_mapping[role] = ray.remote(meds_worker_class(base))


def meds_v1_trainer_class(base=None):
    """The MEDS subclass of a V1 trainer class (default: the ``sync`` one); one class per base."""
    require("verl", "verl")
    if base is None:
        from verl.trainer.ppo.v1 import PPOTrainerSync as base
    if base not in _CLASSES:
        cls = type(f"Meds{base.__name__}", (MedsV1TrainerMixin, base), {"__module__": __name__})
        _CLASSES[base] = cls
    return _CLASSES[base]


@contextlib.contextmanager
def meds_trainer_registered(mode: str):
    """Within the block, veRL's trainer registry gives the MEDS subclass for ``mode``.

    ``register_trainer`` refuses a second class for a name, and the mode name must stay what
    it is (veRL chooses the replay buffer by it), so the entry is swapped and put back.
    """
    from verl.trainer.ppo.v1 import trainer_base

    registry = trainer_base.TRAINER_REGISTRY
    original = trainer_base.get_trainer_cls(mode)
    registry[mode] = original if issubclass(original, MedsV1TrainerMixin) else meds_v1_trainer_class(original)
    try:
        yield registry[mode]
    finally:
        registry[mode] = original
