"""MEDS in veRL: penalties on veRL's real DataProto and GRPO advantage (CPU)."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl", reason="veRL not installed: pip install 'medscore[verl]'")

from verl import DataProto  # noqa: E402
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding  # noqa: E402

from medscore.integrations._common import MedsConfig  # noqa: E402
from medscore.integrations.verl import (  # noqa: E402
    FINGERPRINT_KEY,
    RAW_REWARDS_KEY,
    answer_locations,
    apply_penalties,
    last_response_token,
    prompt_keys,
)
from medscore.memory import Memory  # noqa: E402

MARKER = (7, 8)  # token ids of the answer marker in these synthetic batches
PAD = 0
# Keyed by extra_info's index and shaped in place: what the tests below read back.
IN_PLACE = MedsConfig(key="index", placement="scores")


def make_batch(correct, fingerprints, prompt_lens, response_lens, *, groups=2, with_index=True):
    """Left-padded prompts [B, 6], right-padded responses [B, 8]; response = ... 7 8 answer ..."""
    n = len(correct)
    P, R = 6, 8
    prompts = torch.full((n, P), PAD, dtype=torch.long)
    responses = torch.full((n, R), PAD, dtype=torch.long)
    attention = torch.zeros(n, P + R, dtype=torch.long)
    for i in range(n):
        g = i * groups // n
        prompts[i, P - prompt_lens[i]:] = torch.arange(prompt_lens[i]) + 20 + 10 * g
        body = [30, 31, 7, 8, 40 + i, 9, 10, 11][:response_lens[i]]
        responses[i, :len(body)] = torch.tensor(body)
        attention[i, P - prompt_lens[i]:P] = 1
        attention[i, P:P + response_lens[i]] = 1
    response_mask = attention[:, P:].clone()
    scores = torch.zeros(n, R)
    last = last_response_token(response_mask)
    scores[torch.arange(n), last] = torch.tensor(correct, dtype=torch.float32)
    position_ids = (attention.cumsum(1) - 1).clamp(min=0)
    tensors = {
        "prompts": prompts, "responses": responses, "attention_mask": attention,
        "input_ids": torch.cat([prompts, responses], 1), "position_ids": position_ids,
        "response_mask": response_mask, "token_level_scores": scores,
        FINGERPRINT_KEY: torch.as_tensor(fingerprints, dtype=torch.float32),
    }
    uid = np.array([f"uid-{i * groups // n}" for i in range(n)], dtype=object)
    non_tensors = {"uid": uid}
    if with_index:
        non_tensors["extra_info"] = np.array([{"index": 100 + i * groups // n} for i in range(n)], dtype=object)
    data = DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)
    data.batch["token_level_rewards"] = data.batch["token_level_scores"]
    return data


def modes(rng, n, centres):
    """Fingerprints near a few recurring 14-d modes (rows cycle through ``centres``)."""
    return np.stack([centres[i % len(centres)] + 1e-3 * rng.normal(size=14) for i in range(n)])


def test_answer_locations_index_the_unpadded_sequence():
    n = 4
    data = make_batch([0] * n, np.ones((n, 14)), prompt_lens=[2, 6, 4, 3], response_lens=[8, 5, 3, 8])
    index, target = answer_locations(data, [MARKER])
    assert target.tolist() == [40, 41, 0, 43] and index[2].item() == -1  # row 2 cut before its answer
    nested = left_right_2_no_padding(data.to_tensordict())["input_ids"]
    for row, seq in enumerate(nested.unbind()):
        if index[row] >= 0:
            assert seq[index[row]].item() == target[row].item()
            assert seq[index[row] - 2:index[row]].tolist() == list(MARKER)


def test_prompt_keys_use_extra_info_index_else_hash_of_real_tokens():
    data = make_batch([0] * 4, np.ones((4, 14)), prompt_lens=[3, 3, 3, 3], response_lens=[8] * 4)
    assert prompt_keys(data) == [100, 100, 101, 101]
    plain = make_batch([0] * 4, np.ones((4, 14)), prompt_lens=[3, 5, 3, 3], response_lens=[8] * 4,
                       with_index=False)
    keys = prompt_keys(plain)
    assert keys[0] != keys[1]  # different prompts (5 tokens vs 3)
    assert keys[2] == keys[3] and keys[2].startswith("h:")
    # The hash ignores padding: the same prompt with a different pad width has the same key.
    again = make_batch([0] * 4, np.ones((4, 14)), prompt_lens=[3, 5, 3, 3], response_lens=[4] * 4,
                       with_index=False)
    assert prompt_keys(again) == keys


def test_batch_without_any_prompt_id_is_refused():
    data = make_batch([0] * 2, np.ones((2, 14)), prompt_lens=[3, 3], response_lens=[8, 8], with_index=False)
    data.batch.pop("prompts")
    with pytest.raises(ValueError, match="no stable prompt id"):
        prompt_keys(data)


def _history(rng, centres, steps, preset="paper"):
    """A memory that saw ``steps`` steps of wrong rollouts in recurring modes."""
    memory = Memory(preset=preset)
    for step in range(steps):
        data = make_batch([0] * 8, modes(rng, 8, centres), [4] * 8, [8] * 8)
        apply_penalties(data, memory, step, IN_PLACE)
    return memory


def test_penalties_change_grpo_advantages_as_the_formula_says():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 14))
    # Group 0: two right, two wrong; group 1: all wrong (plain GRPO: zero advantage), three
    # rollouts in one error mode and one in another, at every step.
    correct = [1, 1, 0, 0, 0, 0, 0, 0]

    def step_fingerprints():
        fps = modes(rng, 8, centres)
        fps[4:7] = modes(rng, 3, centres[:1])
        return fps

    memory = Memory(preset="paper")
    for step in range(2):
        apply_penalties(make_batch(correct, step_fingerprints(), [4] * 8, [8] * 8), memory, step, IN_PLACE)
    twin = Memory(preset="paper")
    twin.load_state_dict(memory.state_dict())
    fps = step_fingerprints()
    data = make_batch(correct, fps, [4] * 8, [8] * 8)
    plain = data.batch["token_level_scores"].sum(-1).clone()
    penalties = apply_penalties(data, memory, step=2, config=IN_PLACE)

    from medscore.memory import Batch
    keys = [100] * 4 + [101] * 4
    expected = twin.penalize(Batch(fps.astype(np.float32), keys, np.array(correct, bool), step=2))
    np.testing.assert_array_equal(penalties, expected)
    assert (penalties[:2] == 0).all() and (penalties[2:6] > 0).all()
    assert penalties[7] < penalties[6]  # the frequent error mode is pushed down harder
    # Subtracted at the last valid response token only.
    shaped = data.batch["token_level_scores"]
    assert torch.equal(shaped.sum(-1), (plain - torch.as_tensor(penalties)).float())
    assert torch.count_nonzero(shaped[:, :-1]) == 0

    adv, _ = compute_grpo_outcome_advantage(data.batch["token_level_rewards"], data.batch["response_mask"],
                                            data.non_tensor_batch["uid"])
    rewards = (plain.double() - torch.as_tensor(penalties)).view(2, 4)
    want = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    np.testing.assert_allclose(adv[:, 0].double().view(2, 4).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # The all-wrong group now has advantages: the normalised penalty differences.
    assert adv[4:, 0].abs().max() > 0.5 and adv[7, 0] > 0
    # Dr. GRPO (no std scaling) keeps the raw penalty differences.
    raw, _ = compute_grpo_outcome_advantage(data.batch["token_level_rewards"], data.batch["response_mask"],
                                            data.non_tensor_batch["uid"], norm_adv_by_std_in_grpo=False)
    np.testing.assert_allclose(raw[:, 0].double().view(2, 4).numpy(),
                               (rewards - rewards.mean(1, keepdim=True)).numpy(), rtol=1e-5, atol=1e-6)


def test_all_wrong_group_with_equal_penalties_keeps_zero_advantage_by_the_std_guard():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=(1, 14))
    memory = _history(rng, centre, steps=2)
    data = make_batch([0] * 8, modes(rng, 8, centre), [4] * 8, [8] * 8)
    penalties = apply_penalties(data, memory, step=2, config=IN_PLACE)
    assert np.ptp(penalties[4:]) == 0 and penalties[4] > 0
    adv, _ = compute_grpo_outcome_advantage(data.batch["token_level_rewards"], data.batch["response_mask"],
                                            data.non_tensor_batch["uid"])
    assert torch.count_nonzero(adv[4:]) == 0  # std 0: (p - p) / (0 + 1e-6) = 0, never NaN


def test_kl_rewards_tensor_is_shaped_too():
    rng = np.random.default_rng(2)
    data = make_batch([0] * 8, modes(rng, 8, rng.normal(size=(2, 14))), [4] * 8, [8] * 8)
    data.batch["token_level_rewards"] = data.batch["token_level_scores"] - 0.01
    before = data.batch["token_level_rewards"].clone()
    memory = _history(rng, rng.normal(size=(2, 14)), steps=1)
    penalties = apply_penalties(data, memory, step=1, config=IN_PLACE)
    delta = before.sum(-1) - data.batch["token_level_rewards"].sum(-1)
    np.testing.assert_allclose(delta.numpy(), penalties, rtol=1e-6, atol=1e-7)


def test_no_answer_in_the_whole_step_is_never_a_silent_zero():
    data = make_batch([0] * 4, np.full((4, 14), np.nan), [3] * 4, [8] * 4)
    with pytest.warns(RuntimeWarning, match="no rollout of this step has an answer marker"):
        penalties = apply_penalties(data, Memory(preset="paper"), step=0, config=IN_PLACE)
    assert (penalties == 0).all()
    strict = MedsConfig(on_no_answer="error", key="index")
    with pytest.raises(ValueError, match="answer marker"):
        apply_penalties(data, Memory(preset="paper"), step=0, config=strict)


def test_missing_fingerprints_name_the_worker_class():
    data = make_batch([0] * 2, np.ones((2, 14)), [3, 3], [8, 8])
    data.batch.pop(FINGERPRINT_KEY)
    with pytest.raises(ValueError, match="meds_worker_class"):
        apply_penalties(data, Memory(preset="paper"), step=0)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown medscore option"):
        MedsConfig.from_mapping({"alpah": 0.1})
    assert MedsConfig.from_mapping({"layers": "last:4"}).layers == "last:4"


class PackedEngine:
    """The part of a veRL engine the hook touches: ``module`` and ``forward_step``, which runs
    the model on the micro-batch's packed tokens (use_remove_padding) or padded rows."""

    def __init__(self, module):
        self.module = module

    def forward_step(self, micro_batch, loss_function, forward_only):
        from verl.utils import tensordict_utils as tu

        ids, pos = micro_batch["input_ids"], micro_batch["position_ids"]
        if tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
            # veRL's flash-attention varlen keeps packed sequences apart; on the CPU a
            # block-diagonal causal mask does the same.
            owner = torch.repeat_interleave(torch.arange(ids.size(0)), ids.offsets().diff())
            column = torch.arange(len(owner))
            allowed = (owner[:, None] == owner[None, :]) & (column[None, :] <= column[:, None])
            out = self.module(input_ids=ids.values()[None], position_ids=pos.values()[None],
                              attention_mask=allowed[None, None])
        else:
            width = int(ids.offsets().diff().max())
            padded = torch.nested.to_padded_tensor(ids, 0, output_size=(ids.size(0), width))
            mask = torch.nested.to_padded_tensor(torch.ones_like(ids), 0, output_size=(ids.size(0), width))
            out = self.module(input_ids=padded, attention_mask=mask)
        return torch.tensor(0.0), {"model_output": {"logits_sum": out.logits.sum(-1).flatten()[:ids.size(0), None]}}


@pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning")
@pytest.mark.parametrize("packed", [True, False])
def test_worker_hook_fingerprints_survive_micro_batching_and_reordering(packed):
    """veRL's own micro-batching (dynamic batch sizes: rows reordered) and output assembly."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches

    from medscore.integrations.verl import (INDEX_KEY, LAYERS_META, TARGET_KEY, install_fingerprint_hook,
                                            read_fingerprints)
    from tiny_lm import tiny_qwen2

    model = tiny_qwen2(64, seed=3)
    n = 8
    data = make_batch([0] * n, np.ones((n, 14)), prompt_lens=[2, 6, 4, 3, 5, 1, 6, 2],
                      response_lens=[8, 5, 6, 8, 7, 5, 8, 6], groups=2)
    data.batch.pop(FINGERPRINT_KEY)
    index, target = answer_locations(data, [MARKER])
    data.batch[INDEX_KEY], data.batch[TARGET_KEY] = index, target
    data.meta_info.update({LAYERS_META: "last:2", "use_dynamic_bsz": True, "max_token_len_per_gpu": 24,
                           "use_remove_padding": packed})
    td = left_right_2_no_padding(data.to_tensordict())
    engine = PackedEngine(model)
    install_fingerprint_hook(engine)
    micro_batches, indices = prepare_micro_batches(td, dp_group=None)
    assert len(micro_batches) > 1 and indices is not None
    assert [i for mb in indices for i in mb] != list(range(n))  # rows really were reordered
    outputs = [engine.forward_step(mb, None, True)[1] for mb in micro_batches]
    fps = read_fingerprints(postprocess_batch_func(outputs, indices, td)["model_output"])
    # The slow way, row by row: hidden states of the unpadded sequence, lm_head column.
    unembed = model.get_output_embeddings().weight
    for row, seq in enumerate(td["input_ids"].unbind()):
        with torch.no_grad():
            hidden = model(input_ids=seq[None], output_hidden_states=True).hidden_states
        # Read one token before the answer (the marker's last token), where it is predicted.
        want = torch.stack([hidden[i][0, index[row] - 1] @ unembed[target[row]] for i in (3, 4)])  # last 2 of 4
        torch.testing.assert_close(fps[row], want, rtol=1e-4, atol=1e-5)
    # Training micro-batches are untouched.
    assert "medscore_fingerprints" not in engine.forward_step(micro_batches[0], None, False)[1]["model_output"]


def compute_advantage(data, **kwargs):
    """Stand-in for veRL's module-level compute_advantage (the fit() below looks it up here)."""
    return compute_advantage


class FitOwner:
    def fit(self):
        return compute_advantage  # what fit() sees under this module's name during the run


class LoggingEngine(PackedEngine):
    """Also returns per-token log-probs and entropies as veRL's engine does (nested)."""

    def forward_step(self, micro_batch, loss_function, forward_only):
        loss, output = super().forward_step(micro_batch, loss_function, forward_only)
        ids = micro_batch["input_ids"]
        zeros = torch.nested.nested_tensor_from_jagged(torch.zeros(ids.values().shape), offsets=ids.offsets())
        output["model_output"] = {**output["model_output"], "log_probs": zeros, "entropy": zeros}
        output["model_output"].pop("logits_sum")
        return loss, output


class StubWorkerGroup:
    """The actor worker group, in process: veRL's micro-batching around a hooked engine."""

    def __init__(self, engine):
        self.engine = engine

    def compute_log_prob(self, td):
        from verl.utils import tensordict_utils as tu
        from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches

        tu.assign_non_tensor(td, use_dynamic_bsz=True, max_token_len_per_gpu=24, use_remove_padding=True)
        micro_batches, indices = prepare_micro_batches(td, dp_group=None)
        outputs = [self.engine.forward_step(mb, None, True)[1] for mb in micro_batches]
        model_output = postprocess_batch_func(outputs, indices, td)["model_output"]
        return tu.get_tensordict(tensor_dict=model_output, non_tensor_dict={"metrics": {"mfu": 0.0}})

    def save_checkpoint(self, *args, **kwargs):
        pass

    def load_checkpoint(self, *args, **kwargs):
        pass


class StubLoader:
    def __len__(self):
        return 100

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning")
@pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning")
def test_trainer_mixin_on_veRLs_own_driver_code(tmp_path):
    """RayPPOTrainer's real _compute_old_log_prob, compute_advantage and checkpoint code with
    an in-process worker group (a full Ray/FSDP run needs GPUs)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from medscore.integrations.verl import (INDEX_KEY, MEMORY_FILE, install_fingerprint_hook, meds_trainer_class,
                                            meds_worker_class)
    from tiny_lm import tiny_qwen2

    Trainer = meds_trainer_class()
    assert issubclass(Trainer, RayPPOTrainer) and Trainer.__name__ == "MedsRayPPOTrainer"
    assert "init_model" in vars(meds_worker_class())
    trainer = Trainer.__new__(Trainer)
    trainer.config = OmegaConf.create({
        "medscore": {"layers": "last:2"},
        "actor_rollout_ref": {"actor": {"checkpoint": {}}},
        "trainer": {"default_local_dir": str(tmp_path), "default_hdfs_dir": None, "resume_mode": "auto",
                    "del_local_ckpt_after_load": False},
    })
    from tiny_lm import tiny_tokenizer

    trainer.tokenizer = tiny_tokenizer()
    trainer._meds_setup()
    trainer.meds_marker_ids = [MARKER]
    engine = LoggingEngine(tiny_qwen2(64, seed=4))
    install_fingerprint_hook(engine)
    trainer.actor_rollout_wg = StubWorkerGroup(engine)
    trainer.use_critic, trainer.train_dataloader = False, StubLoader()

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(2, 14))
    for step in range(2):
        trainer.global_steps = step + 1
        data = make_batch([1, 0, 0, 0, 0, 0, 0, 0], modes(rng, 8, centres), [3] * 8, [8] * 8)
        data.batch.pop(FINGERPRINT_KEY)
        old_log_prob, _ = trainer._compute_old_log_prob(data)
        assert INDEX_KEY not in data.batch.keys() and old_log_prob.batch[FINGERPRINT_KEY].shape == (8, 2)
        data = data.union(old_log_prob)
        raw_scores = data.batch["token_level_scores"].clone()
        out = trainer._meds_compute_advantage(ray_trainer.compute_advantage, data, adv_estimator="grpo",
                                              num_repeat=4)
        assert FINGERPRINT_KEY not in out.batch.keys() and "advantages" in out.batch.keys()
        # The default placement ("advantage"): the scores and rewards veRL logs stay raw.
        assert torch.equal(out.batch["token_level_scores"], raw_scores)
        assert torch.equal(out.batch["token_level_rewards"], raw_scores) and RAW_REWARDS_KEY not in out.batch.keys()
    assert (trainer.meds_last_penalties[1:] > 0).all()  # step 2: the same answers recur
    points = trainer.meds_memory.metrics()["points"]
    assert points == 16  # the paper preset stores every rollout, by key and correctness

    # fit() wraps compute_advantage of the module defining fit, and restores it after.
    Wrapped = meds_trainer_class(FitOwner)
    fitter = Wrapped.__new__(Wrapped)
    fitter.meds_memory = object()
    seen = fitter.fit()
    assert seen.func == fitter._meds_compute_advantage and compute_advantage is globals()["compute_advantage"]

    # The memory goes with veRL's checkpoint and comes back on resume.
    trainer._save_checkpoint()
    assert (tmp_path / "global_step_2" / MEMORY_FILE).exists()
    trainer._meds_setup()
    trainer.global_steps = 0
    trainer._load_checkpoint()
    assert trainer.global_steps == 2 and trainer.meds_memory.metrics()["points"] == points


@pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning")
@pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning")
def test_legacy_trainer_with_the_meds_grpo_estimator_and_save_order(tmp_path):
    """The legacy trainer hands its penalties to the registered estimator through veRL's own
    compute_advantage; the memory is written before veRL's checkpoint files."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo import ray_trainer

    from medscore.integrations.verl import MEMORY_FILE, meds_trainer_class
    from tiny_lm import tiny_tokenizer

    Trainer = meds_trainer_class()
    trainer = Trainer.__new__(Trainer)
    trainer.config = OmegaConf.create({
        "medscore": {"layers": "last:2", "key": "index"}, "algorithm": {"adv_estimator": "meds_grpo"},
        "actor_rollout_ref": {"actor": {"checkpoint": {}}},
        "trainer": {"default_local_dir": str(tmp_path), "default_hdfs_dir": None, "resume_mode": "auto"},
    })
    trainer.tokenizer = tiny_tokenizer()
    trainer._meds_setup()
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(2, 14))
    correct = [1, 0, 0, 0, 0, 0, 0, 0]
    for step in range(2):
        trainer.global_steps = step + 1
        data = make_batch(correct, modes(rng, 8, centres), [3] * 8, [8] * 8)
        raw = data.batch["token_level_scores"].clone()
        out = trainer._meds_compute_advantage(ray_trainer.compute_advantage, data, adv_estimator="meds_grpo",
                                              num_repeat=4, config=OmegaConf.create({"norm_adv_by_std_in_grpo": True}))
    p = trainer.meds_last_penalties
    assert (p[1:] > 0).all() and p[0] == 0
    rewards = (raw.sum(-1).double() - torch.as_tensor(p)).view(2, 4)
    want = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    np.testing.assert_allclose(out.batch["advantages"][:, -1].double().view(2, 4).numpy(), want.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(out.batch["token_level_rewards"], raw) and torch.equal(out.batch["token_level_scores"], raw)

    seen = []

    class Probe(StubWorkerGroup):
        def save_checkpoint(self, local_path, *args, **kwargs):
            seen.append(os.path.exists(os.path.join(os.path.dirname(local_path), MEMORY_FILE)))

    trainer.actor_rollout_wg, trainer.use_critic, trainer.train_dataloader = Probe(None), False, StubLoader()
    trainer._save_checkpoint()
    assert seen == [True] and (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "2"
