"""Driver side of MEDS in veRL: answer locations, prompt keys and reward shaping on a batch.

These functions work on veRL's padded ``DataProto`` (the legacy trainer, and the V1 trainer
after it pads what it reads from the TransferQueue): prompts left padded, responses right
padded. The trainers of :mod:`medscore.integrations.verl` call them; they are public so that
a custom trainer can do the same.
"""
from __future__ import annotations

import numpy as np

from .._common import (
    MedsConfig,
    penalize_rollouts,
    require,
    rollout_correctness,
    rollout_keys,
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


def answer_locations_in_rows(prompt_rows, response_rows, marker_ids, tokenizer=None, rule: str = "robust",
                             marker: str = "\\boxed{"):
    """:func:`answer_locations` for unpadded rows (the V1 trainer's TransferQueue fields).

    Parameters
    ----------
    prompt_rows, response_rows : lists [B] of 1-d int Tensors, each row's real tokens
    marker_ids, tokenizer, rule, marker : see :func:`answer_locations`

    Returns
    -------
    (index int64 Tensor [B], target int64 Tensor [B]), as :func:`answer_locations`: the index
    is inside the row's ``prompt + response`` tokens, the layout of veRL's ``input_ids``.
    """
    from medscore._answer_markers import locate_answers

    pad = getattr(tokenizer, "pad_token_id", None) or 0
    prompts, prompt_mask = pad_rows(prompt_rows, pad, left=True)
    responses, response_mask = pad_rows(response_rows, pad, left=False)
    where = locate_answers(tokenizer, prompts, prompt_mask, responses, response_mask,
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


def penalize_batch(data, memory, step: int, config: MedsConfig | None = None, tokenizer=None):
    """Penalties of the rollouts of ``data`` from ``memory``, without shaping anything.

    Parameters
    ----------
    data : verl.DataProto with ``medscore_fingerprints`` float [B, L] (NaN rows: no answer),
        ``token_level_scores`` [B, R] and the keys of :func:`prompt_keys`.
    memory : medscore.Memory or RemoteMemory
    step : int, the global step
    config : MedsConfig
    tokenizer : the tokenizer (for ``key="question"``)

    Returns
    -------
    (penalties float64 ndarray [B], correct bool ndarray [B]). A rollout is correct when
    ``non_tensor_batch[config.correct_field] >= correct_threshold`` (DAPO's ``acc``), or, where
    the reward has no such field, when its summed ``token_level_scores`` exceed the threshold.

    Raises
    ------
    ValueError
        When the batch carries no fingerprints (the actor worker was not MEDS's).
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
    return penalties, correct


def apply_penalties(data, memory, step: int, config: MedsConfig | None = None, tokenizer=None):
    """Penalise the rollouts of ``data`` and shape its rewards before ``compute_advantage``.

    Parameters
    ----------
    data, memory, step, config, tokenizer : see :func:`penalize_batch`

    Returns
    -------
    float64 ndarray [B]: the memory's penalties ``p``.
    ``placement="scores"``: ``token_level_scores`` (and ``token_level_rewards`` when it is
    another tensor) are shaped in place. ``placement="advantage"`` (or None): ``token_level_rewards``
    is replaced by a shaped copy and the raw tensor kept under ``RAW_REWARDS_KEY`` until
    :func:`restore_raw_rewards`.
    """
    config = config or MedsConfig()
    penalties, correct = penalize_batch(data, memory, step, config, tokenizer)
    scores = data.batch["token_level_scores"]
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


def read_fingerprints(output):
    """Dense float32 [B, L] fingerprints from a worker's ``compute_log_prob`` TensorDict (None if absent)."""
    torch = _torch()
    value = output.get(FINGERPRINT_KEY, None)
    if value is None:
        return None
    if getattr(value, "is_nested", False):
        value = torch.stack(list(value.unbind()))
    return value.float()


def pad_rows(rows, pad: int, left: bool):
    """Pad a list of 1-d int Tensors into ([N, W] Tensor, [N, W] int64 mask), W the longest row.

    ``left=True`` pads on the left (veRL's prompts), else on the right (its responses).
    """
    torch = _torch()
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        if n:
            cols = slice(width - n, width) if left else slice(0, n)
            out[i, cols], mask[i, cols] = row.long(), 1
    return out, mask


def unbind_rows(value) -> list:
    """Rows of a nested (jagged) or dense [N, ...] Tensor as a list of Tensors; the values of
    any other per-row container (tensordict's ``LinkedList``, a ``NonTensorStack``) as a list."""
    return list(value.unbind()) if getattr(value, "is_nested", False) else list(value)
