"""The paper configuration of the veRL integration: placement, correctness, target, key, marker rule."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl", reason="veRL not installed: pip install 'medscore[verl]'")

from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage  # noqa: E402

from medscore.integrations._common import MedsConfig, question_key  # noqa: E402
from medscore.integrations.verl import (  # noqa: E402
    RAW_REWARDS_KEY,
    answer_locations,
    apply_penalties,
    prompt_keys,
    restore_raw_rewards,
)
from medscore.memory import Batch, Memory  # noqa: E402
from test_integration_verl import make_batch, modes  # noqa: E402
from tiny_lm import tiny_tokenizer  # noqa: E402

INDEX = dict(key="index")


def history(correct, centres, steps, rng, **config):
    """A paper memory (target from ``config``) after ``steps`` steps of recurring modes, and its twin."""
    cfg = MedsConfig(**INDEX, **config)
    memory = cfg.build_memory()
    for step in range(steps):
        apply_penalties(make_batch(correct, modes(rng, 8, centres), [4] * 8, [8] * 8), memory, step, cfg)
    twin = cfg.build_memory()
    twin.load_state_dict(memory.state_dict())
    return memory, twin, cfg


def test_advantage_placement_shapes_what_grpo_reads_and_keeps_the_scores_raw():
    rng = np.random.default_rng(0)
    correct = [1, 1, 0, 0, 0, 0, 0, 0]
    centres = rng.normal(size=(2, 14))

    def step_fingerprints():  # the all-wrong group: three in one error mode, one in another
        fps = modes(rng, 8, centres)
        fps[4:7] = modes(rng, 3, centres[:1])
        return fps

    cfg = MedsConfig(**INDEX)
    memory = cfg.build_memory()
    for step in range(2):
        apply_penalties(make_batch(correct, step_fingerprints(), [4] * 8, [8] * 8), memory, step, cfg)
    data = make_batch(correct, step_fingerprints(), [4] * 8, [8] * 8)
    raw = data.batch["token_level_scores"].clone()
    penalties = apply_penalties(data, memory, 2, cfg)
    assert (penalties[2:] > 0).all()
    assert torch.equal(data.batch["token_level_scores"], raw)  # the logged scores
    shaped = data.batch["token_level_rewards"]
    np.testing.assert_allclose(shaped.sum(-1).double().numpy(), raw.sum(-1).double().numpy() - penalties, rtol=1e-6)
    adv, _ = compute_grpo_outcome_advantage(shaped, data.batch["response_mask"], data.non_tensor_batch["uid"])
    assert adv[4:, 0].abs().max() > 0  # the all-wrong group learns from the penalties
    restore_raw_rewards(data)
    assert torch.equal(data.batch["token_level_rewards"], raw) and RAW_REWARDS_KEY not in data.batch.keys()


def test_correctness_comes_from_acc_where_the_reward_has_it():
    """DAPO's overlong penalty makes a correct answer's score negative; its acc stays 1."""
    rng = np.random.default_rng(1)
    data = make_batch([0] * 8, modes(rng, 8, rng.normal(size=(2, 14))), [4] * 8, [8] * 8)
    acc = np.array([1.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0])
    data.non_tensor_batch["acc"] = acc
    memory = Memory(preset="paper")
    apply_penalties(data, memory, 0, MedsConfig(**INDEX))
    # store="all" groups by key and correctness; acc >= 0.5 is correct: both prompts have both.
    assert memory.metrics()["groups"] == 4
    by_score = Memory(preset="paper")
    apply_penalties(data, by_score, 0, MedsConfig(**INDEX, correct_field=None))
    assert by_score.metrics()["groups"] == 2  # every score is 0: all wrong


def test_right_target_scales_correct_scores_by_one_plus_p():
    rng = np.random.default_rng(2)
    correct = [1, 1, 1, 0, 1, 1, 0, 0]
    centres = rng.normal(size=(1, 14))
    memory, twin, cfg = history(correct, centres, 2, rng, penalty_target="both", placement="scores")
    fps = modes(rng, 8, centres)
    data = make_batch(correct, fps, [4] * 8, [8] * 8)
    penalties = apply_penalties(data, memory, 2, cfg)
    want = twin.penalize(Batch(fps.astype(np.float32), [100] * 4 + [101] * 4, np.array(correct, bool), step=2))
    np.testing.assert_array_equal(penalties, want)
    assert (penalties > 0).all()
    totals = data.batch["token_level_scores"].sum(-1).double().numpy()
    c = np.array(correct, bool)
    np.testing.assert_allclose(totals[c], 1.0 / (1.0 + penalties[c]), rtol=1e-6)
    np.testing.assert_allclose(totals[~c], -penalties[~c], rtol=1e-6)


def test_key_rules():
    tokenizer = tiny_tokenizer()
    data = make_batch([0] * 4, np.ones((4, 14)), prompt_lens=[3, 5, 3, 3], response_lens=[8] * 4)
    assert prompt_keys(data) == [100, 100, 101, 101]  # the index field
    hashed = prompt_keys(data, rule="prompt_tokens")
    assert hashed[0] != hashed[1] and hashed[2] == hashed[3] and hashed[0].startswith("h:")
    questions = prompt_keys(data, rule="question", tokenizer=tokenizer)
    prompts = data.batch["prompts"]
    text = tokenizer.decode(prompts[2][data.batch["attention_mask"][2, :6].bool()].tolist(), skip_special_tokens=True)
    assert questions[2] == questions[3] == question_key(text) and questions[0] != questions[1]
    with pytest.raises(ValueError, match="needs the tokenizer"):
        prompt_keys(data, rule="question")


def test_question_key_follows_the_reference_templates():
    a = "Solve the following math problem step by step. Be brief.\n\nWhat is  1 +\n1?\n\nRemember to put your answer in \\boxed{}"
    b = "<|User|>What is 1 + 1?<|Assistant|>"
    assert question_key(a) == question_key(b)  # the same question, whitespace normalised
    assert question_key("[INST] What is 2 + 2? [/INST]") != question_key(b)
    assert question_key("<s>hi</s>") == question_key("<s>hi</s>")  # short: the prompt itself


def test_paper_marker_rule_in_veRLs_layout():
    tokenizer = tiny_tokenizer()
    P, R = 4, 14
    texts = ["so \\boxed{5}", "\\boxed{1} and \\boxed{2}"]
    prompts = torch.full((2, P), tokenizer.pad_token_id)
    prompts[:, 2:] = torch.tensor(tokenizer.encode("Q:", add_special_tokens=False)[:1] * 2)
    responses = torch.full((2, R), tokenizer.pad_token_id)
    attention = torch.zeros(2, P + R, dtype=torch.long)
    attention[:, 2:P] = 1
    for i, t in enumerate(texts):
        ids = tokenizer.encode(t, add_special_tokens=False)
        responses[i, :len(ids)] = torch.tensor(ids)
        attention[i, P:P + len(ids)] = 1

    class Data:
        batch = {"prompts": prompts, "responses": responses, "attention_mask": attention}

    ids = tokenizer.encode("\\boxed{", add_special_tokens=False)
    index, target = answer_locations(Data, tuple(ids), tokenizer, rule="paper")
    assert [tokenizer.decode([t]) for t in target.tolist()] == ["5", "1"]  # the last exact ids: "\\boxed{1"
    assert index.tolist()[1] == 2 + 3  # two prompt tokens, then "\\", "boxed", "{"


@pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning")
@pytest.mark.parametrize("bf16", [False, True])
def test_worker_hook_reads_before_the_answer_and_passes_the_bf16_option(bf16):
    from verl.workers.utils.padding import left_right_2_no_padding

    from medscore.integrations.verl import (BF16_META, FINGERPRINT_KEY, INDEX_KEY, LAYERS_META, TARGET_KEY,
                                            install_fingerprint_hook)
    from test_integration_verl import MARKER, PackedEngine
    from tiny_lm import tiny_qwen2

    model = tiny_qwen2(64, seed=3)
    data = make_batch([0] * 4, np.ones((4, 14)), prompt_lens=[2, 6, 4, 3], response_lens=[8, 5, 6, 8])
    data.batch.pop(FINGERPRINT_KEY)
    index, target = answer_locations(data, [MARKER])
    data.batch[INDEX_KEY], data.batch[TARGET_KEY] = index, target
    data.meta_info.update({LAYERS_META: "last:2", BF16_META: bf16, "use_remove_padding": True})
    td = left_right_2_no_padding(data.to_tensordict())
    engine = PackedEngine(model)
    install_fingerprint_hook(engine)
    fps = engine.forward_step(td, None, True)[1]["model_output"][FINGERPRINT_KEY]
    unembed = model.get_output_embeddings().weight
    for row, seq in enumerate(td["input_ids"].unbind()):
        with torch.no_grad():
            hidden = model(input_ids=seq[None], output_hidden_states=True).hidden_states
        want = torch.stack([hidden[i][0, index[row] - 1] @ unembed[target[row]] for i in (3, 4)])
        # bf16 rounds both vectors first: small logits move by a few bf16 steps of the products.
        tolerance = dict(rtol=2 ** -6, atol=1e-3) if bf16 else dict(rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(fps[row], want, **tolerance)
    # bf16: every value is a bf16 number, as lm_head's under bf16 autocast; float32: not all are.
    assert torch.equal(fps, fps.bfloat16().float()) == bf16
