"""MEDS on veRL's V1 trainer: its real step functions on a real TransferQueue (CPU).

What is real here: veRL's composed ``ppo_trainer`` config, the V1 ``PPOTrainerSync`` built by
its own ``__init__`` (tokenizer from a saved tiny model), its ``_balance_batch`` (with the
synthetic padding rows it adds), ``_compute_old_log_prob``, ``_compute_advantage`` (veRL's
``compute_advantage`` reaching the registered ``meds_grpo`` estimator), ``_save_checkpoint``
and ``_load_checkpoint``, the TransferQueue (Ray actors) holding rollouts laid out as veRL's
agent loop writes them, veRL's TransferQueue bridge (``tqbridge``), micro-batching and output
assembly around the hooked engine. What is replaced: the Ray worker group and the FSDP
engine's ``forward_step`` (an in-process object running the tiny model on the packed
sequences), generation and the reward loop (rollouts and scores are written directly).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl", reason="veRL not installed: pip install 'medscore[verl]'")
tq = pytest.importorskip("transfer_queue", reason="TransferQueue not installed: pip install 'medscore[verl]'")
ray = pytest.importorskip("ray")

from omegaconf import OmegaConf  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from medscore.integrations.verl import (  # noqa: E402
    FINGERPRINT_KEY,
    INDEX_KEY,
    MEMORY_FILE,
    TARGET_KEY,
    compute_meds_grpo_advantage,
    meds_trainer_registered,
    meds_v1_trainer_class,
    pending_penalties,
)
from test_integration_verl import PackedEngine, StubLoader  # noqa: E402
from tiny_lm import save_tiny  # noqa: E402

pytestmark = [
    # veRL's engine registry warns about the engines it cannot import (Megatron, ...) on this machine.
    pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning"),
    # veRL's single_controller imports Ray's state API from its old place.
    pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning"),
]

PROMPTS = {100: ("What is 3 + 4? Put the answer in \\boxed{}.", "7"),
           101: ("What is 5 + 9? Put the answer in \\boxed{}.", "14")}
# Per prompt: one right answer and three wrong ones, two of them the same mistake.
ANSWERS = ["{right}", "8", "8", "9"]


@pytest.fixture(scope="module")
def queue():
    # The controller and the storage unit are Ray actors asking for one CPU each.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(str(tmp_path_factory.mktemp("tiny")), seed=4)


def v1_config(model_dir, out, *overrides):
    """veRL's own ppo_trainer config, composed by Hydra as ``main_ppo`` composes it."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}", "algorithm.adv_estimator=meds_grpo",
            "actor_rollout_ref.rollout.n=4", "data.train_batch_size=2", "actor_rollout_ref.actor.ppo_mini_batch_size=3",
            f"trainer.default_local_dir={out}", "trainer.device=cpu", "critic.enable=false",
            "+medscore.layers=last:2", "+medscore.key=index",
            *overrides])


class LogProbEngine(PackedEngine):
    """The engine's ``forward_step`` on packed sequences: per-token log-probs and entropies
    (nested over prompt + response, as veRL's engines return them)."""

    def forward_step(self, micro_batch, loss_function, forward_only):
        ids = micro_batch["input_ids"]
        owner = torch.repeat_interleave(torch.arange(ids.size(0)), ids.offsets().diff())
        column = torch.arange(len(owner))
        allowed = (owner[:, None] == owner[None, :]) & (column[None, :] <= column[:, None])
        logits = self.module(input_ids=ids.values()[None], position_ids=micro_batch["position_ids"].values()[None],
                             attention_mask=allowed[None, None]).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        nxt = torch.roll(ids.values(), -1)  # the token each position predicts (garbage at a row's end)
        log_probs = logp.gather(1, nxt[:, None])[:, 0]
        entropy = -(logp.exp() * logp).sum(-1)
        nested = [torch.nested.nested_tensor_from_jagged(v.detach(), offsets=ids.offsets()) for v in (log_probs, entropy)]
        return torch.tensor(0.0), {"model_output": {"log_probs": nested[0], "entropy": nested[1]}}


class InProcessActor:
    """The actor worker group, in process: veRL's TransferQueue bridge around veRL's
    micro-batching and output assembly and a hooked engine (what ``RayWorkerGroup``,
    ``TrainingWorker`` and FSDP add is not here)."""

    def __init__(self, engine, checkpoint_probe=None):
        from verl.utils.transferqueue_utils import tqbridge

        from medscore.integrations.verl import install_fingerprint_hook

        install_fingerprint_hook(engine)
        self.engine, self.checkpoint_probe = engine, checkpoint_probe
        self._dispatch_info = {"actor": [0]}  # one data-parallel rank
        self.compute_log_prob = tqbridge()(self._infer)
        self.calls = 0

    def _infer(self, td):
        from verl.utils import tensordict_utils as tu
        from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches

        tu.assign_non_tensor(td, use_dynamic_bsz=True, max_token_len_per_gpu=160, use_remove_padding=True)
        micro_batches, indices = prepare_micro_batches(td, dp_group=None)
        with torch.no_grad():
            outputs = [self.engine.forward_step(mb, None, True)[1] for mb in micro_batches]
        self.calls += 1
        model_output = postprocess_batch_func(outputs, indices, td)["model_output"]
        return tu.get_tensordict(tensor_dict=model_output, non_tensor_dict={"metrics": {}})

    def save_checkpoint(self, local_path, *args, **kwargs):
        if self.checkpoint_probe is not None:
            self.checkpoint_probe(local_path)

    def load_checkpoint(self, *args, **kwargs):
        pass


def put_rollouts(tokenizer, step: int):
    """Write one step's rollouts to the queue as veRL's agent loop does; returns the batch handle."""
    from transfer_queue import KVBatchMeta
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    keys, fields, tags = [], [], []
    for index, (question, right) in PROMPTS.items():
        uid = f"s{step}p{index}"
        prompt = torch.tensor(tokenizer.encode(question, add_special_tokens=False))
        for session, answer in enumerate(ANSWERS):
            value = answer.format(right=right)
            response = torch.tensor(tokenizer.encode(f" The answer is $\\boxed{{{value}}}$.", add_special_tokens=False))
            acc = float(value == right)
            scores = torch.zeros(len(response))
            scores[-1] = acc
            ids = torch.cat([prompt, response])
            keys.append(f"{uid}_{session}_0")
            fields.append({"prompts": prompt, "responses": response, "input_ids": ids, "position_ids": torch.arange(len(ids)),
                           "response_mask": torch.ones(len(response), dtype=torch.long), "rm_scores": scores,
                           "rollout_log_probs": torch.zeros(len(response)),
                           "uid": uid, "extra_info": {"index": index}, "num_turns": 2,
                           "extra_fields": {"reward_extra_info": {"acc": acc}}})
            tags.append({"status": "success", "prompt_len": len(prompt), "response_len": len(response),
                         "seq_len": len(ids), "global_steps": step, "min_global_steps": step, "max_global_steps": step})
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    return KVBatchMeta(keys=keys, tags=tags, partition_id="train")


def build_trainer(model_dir, out, *overrides, probe=None):
    from transformers import AutoModelForCausalLM

    Trainer = meds_v1_trainer_class()
    trainer = Trainer(v1_config(model_dir, out, *overrides))  # veRL's own __init__
    trainer._init_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    trainer.actor_rollout_wg = InProcessActor(LogProbEngine(model), probe)
    trainer.train_dataloader = StubLoader()
    return trainer, model


def run_step(trainer, step: int):
    """veRL's own step functions in _step_once's order, from the balanced batch to the advantages."""
    trainer.global_steps = step
    metrics = {}
    batch = trainer._balance_batch(put_rollouts(trainer.tokenizer, step), metrics=metrics)
    batch = trainer._compute_old_log_prob(batch, metrics)
    batch = trainer._compute_advantage(batch, metrics)
    return batch, metrics


def queued(batch, *fields):
    return tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=list(fields))


def expected_grpo(totals, uids):
    """GRPO advantages of sequence rewards, written out (unbiased std, epsilon 1e-6)."""
    out = np.zeros(len(totals))
    for uid in set(uids):
        rows = [i for i, u in enumerate(uids) if u == uid]
        group = totals[rows]
        out[rows] = (group - group.mean()) / (group.std(ddof=1) + 1e-6) if len(rows) > 1 else group
    return out


def test_v1_step_fingerprints_penalties_and_advantages(queue, model_dir, tmp_path):
    trainer, model = build_trainer(model_dir, tmp_path)
    for step in (1, 2):
        batch, metrics = run_step(trainer, step)
        padding = np.array([t.get("is_padding", False) for t in batch.tags])
        assert padding.sum() == 4  # 8 rollouts padded to a multiple of ppo_mini_batch_size * n = 12
        data = queued(batch, "uid", "input_ids", "rm_scores", "advantages", INDEX_KEY, TARGET_KEY, FINGERPRINT_KEY)
        fps = torch.stack(list(data[FINGERPRINT_KEY].unbind()))
        assert torch.isnan(fps[padding]).all() and torch.isfinite(fps[~padding]).all()
        index, target = (v.values() if v.is_nested else v for v in (data[INDEX_KEY], data[TARGET_KEY]))
        unembed = model.get_output_embeddings().weight
        for row in np.flatnonzero(~padding)[:3]:  # the slow way: hidden states of the lone sequence
            seq = data["input_ids"][row]
            with torch.no_grad():
                hidden = model(input_ids=seq[None], output_hidden_states=True).hidden_states
            want = torch.stack([hidden[i][0, index[row] - 1] @ unembed[target[row]] for i in (3, 4)])
            torch.testing.assert_close(fps[row], want, rtol=1e-4, atol=1e-5)
        raw = np.array([float(r.sum()) for r in data["rm_scores"].unbind()])
        penalties = np.zeros(len(raw))
        penalties[~padding] = trainer.meds_last_penalties[~padding]
        assert (trainer.meds_last_penalties[padding] == 0).all()
        advantages = np.array([float(r[0]) for r in data["advantages"].unbind()])
        uids = list(data["uid"])
        np.testing.assert_allclose(advantages, expected_grpo(raw - penalties, uids), rtol=1e-5, atol=1e-6)
        assert metrics["medscore/points"] == 8 * step and "actor/entropy" in metrics
    # Step 2: the repeated mistake ("8", twice per prompt) sits in a cluster of the memory.
    real = ~padding
    wrong_twice = np.array([key.split("_")[1] in ("1", "2") and not key.startswith("pad") for key in batch.keys])
    right = np.array([key.split("_")[1] == "0" and not key.startswith("pad") for key in batch.keys])
    assert (trainer.meds_last_penalties[wrong_twice] > 0).all() and (trainer.meds_last_penalties[right] == 0).all()
    # The scores veRL logs stay raw (the estimator shaped a copy).
    assert sorted(raw[real].tolist()) == [0.0] * 6 + [1.0] * 2
    assert trainer.actor_rollout_wg.calls == 2  # one log-prob forward per step, fingerprints included


def test_v1_scores_placement_shapes_the_queued_scores(queue, model_dir, tmp_path):
    first, _ = build_trainer(model_dir, tmp_path)
    run_step(first, 1)
    trainer, _ = build_trainer(model_dir, tmp_path, "algorithm.adv_estimator=grpo", "+medscore.placement=scores")
    trainer.meds_memory.load_state_dict(first.meds_memory.state_dict())
    batch, _ = run_step(trainer, 2)
    data = queued(batch, "uid", "rm_scores", "advantages")
    shaped = np.array([float(r.sum()) for r in data["rm_scores"].unbind()])
    padding = np.array([t.get("is_padding", False) for t in batch.tags])
    right = np.array([k.split("_")[1] == "0" and not k.startswith("pad") for k in batch.keys])
    raw = np.where(right, 1.0, 0.0)
    p = trainer.meds_last_penalties
    assert (p[~padding & ~right] > 0).any()
    np.testing.assert_allclose(shaped, raw - np.where(right, 0.0, p), rtol=1e-6, atol=1e-7)
    advantages = np.array([float(r[0]) for r in data["advantages"].unbind()])
    np.testing.assert_allclose(advantages, expected_grpo(shaped, list(data["uid"])), rtol=1e-5, atol=1e-6)


def test_v1_checkpoint_memory_before_tracker_and_resume(queue, model_dir, tmp_path):
    seen = []

    def probe(actor_path):  # veRL saves the actor first: the memory must already be there
        seen.append(os.path.exists(os.path.join(os.path.dirname(actor_path), MEMORY_FILE)))

    trainer, _ = build_trainer(model_dir, tmp_path, probe=probe)
    run_step(trainer, 1)
    trainer._save_checkpoint()
    assert seen == [True]
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "1"
    points = trainer.meds_memory.metrics()["points"]

    fresh, _ = build_trainer(model_dir, tmp_path)
    assert fresh.meds_memory.metrics()["points"] == 0
    fresh._load_checkpoint()  # veRL's resume_mode=auto finds global_step_1
    assert fresh.global_steps == 1 and fresh.meds_memory.metrics()["points"] == points

    os.remove(tmp_path / "global_step_1" / MEMORY_FILE)
    with pytest.raises(FileNotFoundError, match="on_missing_memory"):
        build_trainer(model_dir, tmp_path)[0]._load_checkpoint()
    lenient, _ = build_trainer(model_dir, tmp_path, "+medscore.on_missing_memory=empty")
    with pytest.warns(RuntimeWarning, match="starting from an empty memory"):
        lenient._load_checkpoint()
    assert lenient.global_steps == 1 and lenient.meds_memory.metrics()["points"] == 0


def test_v1_worker_class_and_registry(model_dir, tmp_path):
    from verl.trainer.ppo.utils import Role
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
    from verl.workers.engine_workers import ActorRolloutRefWorker

    trainer = meds_v1_trainer_class()(v1_config(model_dir, tmp_path))
    trainer._init_resource_pool_mgr()  # veRL's own role mapping, then the MEDS worker swapped in
    worker = trainer.role_worker_mapping[Role.ActorRollout].__ray_actor_class__
    assert issubclass(worker, ActorRolloutRefWorker) and "init_model" in vars(worker)
    with meds_trainer_registered("sync") as cls:
        assert get_trainer_cls("sync") is cls and issubclass(cls, PPOTrainerSync) and cls is not PPOTrainerSync
    assert get_trainer_cls("sync") is PPOTrainerSync


@pytest.mark.parametrize("override, match", [
    ("algorithm.rollout_correction.bypass_mode=true", "bypass_mode"),
    ("actor_rollout_ref.actor.strategy=megatron", "Megatron"),
    ("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2", "Ulysses"),
    ("algorithm.adv_estimator=grpo", "meds_grpo"),
])
def test_v1_refuses_what_cannot_work_at_construction(model_dir, tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        meds_v1_trainer_class()(v1_config(model_dir, tmp_path, override))


def test_estimator_needs_its_batch():
    rewards = torch.zeros(4, 3)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    mask = torch.ones(4, 3)
    uid = np.array(["a", "a", "a", "a"], dtype=object)
    with pytest.raises(RuntimeError, match="needs the MEDS trainer"):
        compute_meds_grpo_advantage(rewards, mask, uid)
    with pending_penalties(["a", "a", "b", "b"], [0, 0, 0.1, 0.2], [True, False, False, False]):
        with pytest.raises(RuntimeError, match="not the rows that were penalised"):
            compute_meds_grpo_advantage(rewards, mask, uid)
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": False})
    with pending_penalties(uid, [0.0, 0.05, 0.1, 0.2], [True, False, False, False]):
        adv, _ = compute_meds_grpo_advantage(rewards, mask, uid, config=config)
    shaped = np.array([1.0, -0.05, -0.1, -0.2])
    np.testing.assert_allclose(adv[:, 0].numpy(), shaped - shaped.mean(), rtol=1e-6)  # Dr. GRPO: no std
    assert torch.count_nonzero(rewards[:, :-1]) == 0 and rewards[1, -1] == 0  # the input is not shaped
