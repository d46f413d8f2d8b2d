"""MEDS in TRL's ``GRPOTrainer`` (TRL 1.x): penalties on the rewards before the group
normalisation.

``MedsGRPOTrainer`` (built by :func:`meds_grpo_trainer_class`, or the module attribute
``MedsGRPOTrainer`` on first access) records the prompt and completion ids of each
generation batch, and right after TRL computes the rewards (``_calculate_rewards``, whose
result is already gathered over processes so that groups are whole) it

1. takes the answer-token fingerprints of the process's own completions with
   ``medscore.capture`` in one no-grad forward (TRL 1.x runs its own old-log-prob forward
   only in some configurations, and not at a point where the rewards are known);
2. gathers fingerprints and prompt keys over processes, calls ``Memory.penalize`` on the
   whole generation batch (every process holds the same memory and sees the same batch,
   so the memories stay identical without communication);
3. shapes the weighted reward sum (``- p`` for a wrong rollout, ``/ (1 + p)`` for a correct
   one when ``penalty_target`` covers it) through the column of ``reward_index`` (divided by
   its weight), before TRL's per-group mean/std normalisation; TRL logs that column as
   shaped (it normalises and logs in one method);
4. logs ``medscore/*`` metrics with TRL's own, and saves/loads the memory with the
   Trainer checkpoints (``checkpoint-N/medscore_memory.bin``).

Evaluation batches are neither penalised nor stored.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ._common import (  # noqa: F401 (MEMORY_FILE: importable from here as before)
    MEMORY_FILE,
    MedsConfig,
    load_checkpoint_memory,
    memory_metrics,
    penalize_rollouts,
    require,
    rollout_correctness,
    rollout_keys,
    save_checkpoint_memory,
    shaped_totals,
    threads_per_rank,
)


def completion_fingerprints(model, prompt_ids: list, completion_ids: list, marker_ids=None, layers="last:14",
                            chunk: int = 8, pad_id: int = 0, *, tokenizer=None, rule: str = "robust",
                            marker: str = "\\boxed{", bf16: bool = False):
    """Fingerprints of completions, in no-grad forwards of ``chunk`` rows (``answer_fingerprints``).

    Parameters
    ----------
    model : a Hugging Face causal LM
    prompt_ids, completion_ids : lists [N] of lists of int (unpadded)
    marker_ids : the rule's marker ids (``marker_ids_for``); built from ``tokenizer`` if None
    layers : layer selection of ``medscore.capture``
    chunk : rows per forward
    pad_id : padding token id (prompts left padded, completions right padded; masked out)
    tokenizer, rule, marker, bf16 : see :func:`medscore.answer_fingerprints`

    Returns
    -------
    float32 Tensor [N, L] on the CPU; NaN rows for completions without an answer. The answer
    is the token after the last marker in the completion, or (robust rule) the completion's
    first token when the prompt ends with the marker (a prefilled ``\\boxed{``); a marker
    elsewhere in the prompt (instructions) is ignored.
    """
    torch = require("torch", "torch")
    from medscore._answers import answer_fingerprints

    parts = []
    for start in range(0, len(prompt_ids), chunk):
        rows = range(start, min(start + chunk, len(prompt_ids)))
        prompts, p_mask = _padded([prompt_ids[i] for i in rows], pad_id, left=True)
        completions, c_mask = _padded([completion_ids[i] for i in rows], pad_id, left=False)
        fps = answer_fingerprints(model, tokenizer, prompts, p_mask, completions, c_mask, rule=rule,
                                  marker=marker, marker_ids=marker_ids, layers=layers, bf16=bf16)
        parts.append(fps.float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def _padded(seqs: list, pad_id: int, left: bool):
    """(ids, mask) int64 Tensors [n, max length], padded on the left or the right."""
    torch = require("torch", "torch")
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, seq in enumerate(seqs):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[r, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[r, cols] = 1
    return ids, mask


class MedsGRPOMixin:
    """The MEDS additions to a ``GRPOTrainer``; see the module docstring."""

    def _meds_setup(self, config, memory):
        from medscore._answer_markers import marker_ids_for

        self.meds_config = MedsConfig.from_mapping(config)
        if self.meds_config.placement == "advantage":
            raise ValueError("TRL normalises and logs the rewards in one method: MEDS can only shape them "
                             "(placement='scores', the default for TRL)")
        if memory is None and self.meds_config.enable:
            options = self.meds_config.memory_kwargs
            if "n_threads" not in options:  # one memory per rank: share the node's cores
                self.meds_config = dataclasses.replace(self.meds_config,
                                                       memory_kwargs={**options, "n_threads": threads_per_rank()})
            memory = self.meds_config.build_memory()
        self.meds_memory = memory
        self.meds_marker_ids = marker_ids_for(self.processing_class, self.meds_config.marker_rule,
                                              self.meds_config.marker)
        self._meds_rollouts = None

    def _generate(self, prompts):
        result = super()._generate(prompts)
        self._meds_rollouts = (result[0], result[1])  # prompt_ids, completion_ids (unpadded lists)
        return result

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.meds_memory is None or not self.model.training:
            return rewards
        penalties, correct = self._meds_penalties(inputs, rewards)
        column = self.meds_config.reward_index
        weight = float(self.reward_weights[column])
        if weight == 0:
            raise ValueError(f"reward function {column} has weight 0: MEDS cannot shape the reward there")
        # TRL sums the weighted columns: shape that sum (wrong: - p; correct: / (1 + p)) through
        # the penalised column.
        totals = (rewards * self.reward_weights.to(rewards.device)).nansum(dim=1).double().cpu().numpy()
        delta = shaped_totals(totals, penalties, correct) - totals
        rewards[:, column] += torch_like(delta, rewards) / weight
        return rewards

    def _meds_penalties(self, inputs, rewards):
        """(penalties float64 [N], correct bool [N]) of the gathered generation batch."""
        from accelerate.utils import gather_object

        c = self.meds_config
        prompt_ids, completion_ids = self._meds_rollouts
        model = fingerprint_model(self)
        pad_id = self.processing_class.pad_token_id or 0
        fps = completion_fingerprints(model, prompt_ids, completion_ids, self.meds_marker_ids, c.layers,
                                      self.args.per_device_train_batch_size, pad_id, tokenizer=self.processing_class,
                                      rule=c.marker_rule, marker=c.marker, bf16=c.bf16)
        fps = self.accelerator.gather(fps.to(self.accelerator.device)).cpu()
        keys = gather_object(rollout_keys(c.key_rule, prompt_ids, inputs, field=c.key_field,
                                          tokenizer=self.processing_class))
        names = list(getattr(self, "reward_func_names", []))
        if c.correct_field in names:  # a correctness reward function named like the reward's field
            correct = rollout_correctness(None, rewards[:, names.index(c.correct_field)].nan_to_num(0.0).cpu(),
                                          c.correct_threshold)
        else:
            correct = rollout_correctness(rewards[:, c.reward_index].nan_to_num(0.0).cpu(), None,
                                          c.correct_threshold)
        penalties = self._meds_penalize(fps, keys, correct)
        for name, value in memory_metrics(self.meds_memory).items():
            self._metrics["train"][name].append(value)
        return penalties, correct

    def _meds_penalize(self, fps, keys, correct):
        """Penalties of the gathered batch. Every process holds the whole batch: a memory of
        its own is updated in every process alike; a shared one (``RemoteMemory``) by the main
        process only, the others receive its penalties, so each step is inserted once."""
        c, step = self.meds_config, int(self.state.global_step)
        if not getattr(self.meds_memory, "shared", False) or self.accelerator.num_processes == 1:
            return penalize_rollouts(self.meds_memory, fps, keys, correct, step, c.on_no_answer, "medscore TRL")
        from accelerate.utils import broadcast_object_list

        box = [None]
        if self.accelerator.is_main_process:
            box[0] = penalize_rollouts(self.meds_memory, fps, keys, correct, step, c.on_no_answer, "medscore TRL")
        return np.asarray(broadcast_object_list(box, from_process=0)[0], dtype=np.float64)

    def _save_checkpoint(self, model, trial):
        # The memory goes first (atomically), so a checkpoint folder that a resume can find
        # always holds it.
        if self.meds_memory is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            save_checkpoint_memory(self.meds_memory, folder)
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.meds_memory is None or checkpoint is None:
            return
        shared = getattr(self.meds_memory, "shared", False)
        if not shared or self.accelerator.is_main_process:  # a shared memory is loaded once
            load_checkpoint_memory(self.meds_memory, checkpoint, self.meds_config.on_missing_memory, "medscore TRL")
        if shared:
            self.accelerator.wait_for_everyone()


def fingerprint_model(trainer):
    """The module whose forward gives a trainer's fingerprints.

    Under FSDP1 it is the wrapper (``trainer.model_wrapped``): the root unit's parameters,
    the unembedding among them, are gathered only by the wrapper's own forward, so the
    unwrapped module would run on empty shards. Under FSDP2, ZeRO-3, DDP or a single
    process the unwrapped model gathers what it needs itself (``medscore.capture`` reads
    the unembedding where it is whole).
    """
    import sys

    fsdp1 = getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)
    wrapped = getattr(trainer, "model_wrapped", None)
    if fsdp1 is not None and isinstance(wrapped, fsdp1):
        return wrapped
    return trainer.accelerator.unwrap_model(trainer.model)


def torch_like(values, like):
    """``values`` as a tensor of ``like``'s dtype and device."""
    torch = require("torch", "torch")
    return torch.as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)


def meds_grpo_trainer_class(base=None):
    """A subclass of ``trl.GRPOTrainer`` (or of ``base``) with MEDS.

    The class takes two extra keyword arguments: ``meds_config`` (dict or MedsConfig, see
    ``docs/integrations.md``) and ``meds_memory`` (an existing Memory or RemoteMemory).
    """
    if base is None:
        base = require("trl", "trl").GRPOTrainer

    class MedsGRPOTrainer(MedsGRPOMixin, base):
        def __init__(self, *args, meds_config=None, meds_memory=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._meds_setup(meds_config, meds_memory)

    MedsGRPOTrainer.__qualname__ = MedsGRPOTrainer.__name__ = f"Meds{base.__name__}"
    return MedsGRPOTrainer


def __getattr__(name: str):
    if name == "MedsGRPOTrainer":
        cls = meds_grpo_trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
