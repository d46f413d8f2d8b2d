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
3. subtracts the penalty from the column of the correctness reward function
   (``reward_index``; divided by its weight, so the weighted sum drops by exactly the
   penalty), before TRL's per-group mean/std normalisation;
4. logs ``medscore/*`` metrics with TRL's own, and saves/loads the memory with the
   Trainer checkpoints (``checkpoint-N/medscore_memory.bin``).

Evaluation batches are neither penalised nor stored.
"""
from __future__ import annotations

import os

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


def completion_fingerprints(model, prompt_ids: list, completion_ids: list, marker_ids, layers="last:14",
                            chunk: int = 8, pad_id: int = 0):
    """Answer-token fingerprints of completions, in no-grad forwards of ``chunk`` rows.

    Parameters
    ----------
    model : a Hugging Face causal LM
    prompt_ids, completion_ids : lists [N] of lists of int (unpadded)
    marker_ids : answer marker token ids (``answer_marker_ids``)
    layers : layer selection of ``medscore.capture``
    chunk : rows per forward
    pad_id : padding token id (right padding; masked out)

    Returns
    -------
    float32 Tensor [N, L]; NaN rows for completions without an answer. The answer is the
    token after the last marker in the completion, or the completion's first token when the
    prompt ends with the marker (a prefilled ``\\boxed{``); a marker elsewhere in the prompt
    (instructions) is ignored.
    """
    torch = require("torch", "torch")
    from medscore._answer_markers import find_answer_positions

    device = next(model.parameters()).device
    longest = max(len(m) for m in ([marker_ids] if isinstance(marker_ids[0], int) else marker_ids))
    parts = []
    for start in range(0, len(prompt_ids), chunk):
        rows = range(start, min(start + chunk, len(prompt_ids)))
        seqs = [list(prompt_ids[i]) + list(completion_ids[i]) for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        searched = torch.zeros_like(ids)
        starts = torch.tensor([len(prompt_ids[i]) for i in rows])
        for r, (i, seq) in enumerate(zip(rows, seqs)):
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            # The completion, plus the prompt's tail: a prompt prefilled up to the marker.
            searched[r, max(0, len(prompt_ids[i]) - longest):len(seq)] = 1
        positions = find_answer_positions(ids, marker_ids, attention_mask=searched)
        positions = torch.where(positions >= starts, positions, -1)  # answers live in the completion
        targets = ids.gather(1, positions.clamp(min=0)[:, None])[:, 0]
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            _, fps = run_with_capture(model, lambda: model(input_ids=ids, attention_mask=mask, use_cache=False),
                                      positions.to(device), targets.to(device), layers)
        parts.append(fps.float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0)


class MedsGRPOMixin:
    """The MEDS additions to a ``GRPOTrainer``; see the module docstring."""

    def _meds_setup(self, config, memory):
        from medscore._answer_markers import answer_marker_ids

        self.meds_config = MedsConfig.from_mapping(config)
        self.meds_memory = memory if memory is not None else (
            self.meds_config.build_memory() if self.meds_config.enable else None)
        self.meds_marker_ids = answer_marker_ids(self.processing_class, self.meds_config.marker)
        self._meds_rollouts = None

    def _generate(self, prompts):
        result = super()._generate(prompts)
        self._meds_rollouts = (result[0], result[1])  # prompt_ids, completion_ids (unpadded lists)
        return result

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.meds_memory is None or not self.model.training:
            return rewards
        penalties = self._meds_penalties(inputs, rewards)
        column = self.meds_config.reward_index
        weight = float(self.reward_weights[column])
        if weight == 0:
            raise ValueError(f"reward function {column} has weight 0: MEDS cannot subtract its penalty there")
        rewards[:, column] -= torch_like(penalties, rewards) / weight
        return rewards

    def _meds_penalties(self, inputs, rewards):
        from accelerate.utils import gather_object

        prompt_ids, completion_ids = self._meds_rollouts
        model = self.accelerator.unwrap_model(self.model)
        pad_id = self.processing_class.pad_token_id or 0
        fps = completion_fingerprints(model, prompt_ids, completion_ids, self.meds_marker_ids,
                                      self.meds_config.layers, self.args.per_device_train_batch_size, pad_id)
        fps = self.accelerator.gather(fps.to(self.accelerator.device)).cpu()
        field = self.meds_config.key_field
        keys = gather_object([sample_key(x, field, p) for x, p in zip(inputs, prompt_ids)])
        score = rewards[:, self.meds_config.reward_index]
        correct = (score.nan_to_num(0.0) > self.meds_config.correct_threshold).cpu().numpy()
        penalties = penalize_rollouts(self.meds_memory, fps, keys, correct, int(self.state.global_step),
                                      self.meds_config.on_no_answer, "medscore TRL")
        for name, value in memory_metrics(self.meds_memory).items():
            self._metrics["train"][name].append(value)
        return penalties

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.meds_memory is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            self.meds_memory.save(os.path.join(folder, MEMORY_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.meds_memory is not None and checkpoint is not None:
            path = os.path.join(checkpoint, MEMORY_FILE)
            if not os.path.exists(path):
                raise FileNotFoundError(f"resuming from {checkpoint}, which holds no MEDS memory ({MEMORY_FILE})")
            from medscore.memory import Memory

            self.meds_memory.load_state_dict(Memory.load(path).state_dict())


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
