"""MEDS in TRL's GRPOTrainer: end to end on the CPU with a tiny random Qwen2 (no download)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl", reason="TRL not installed: pip install 'medscore[trl]'")
datasets = pytest.importorskip("datasets")

from medscore.integrations._common import MEMORY_FILE, boxed_answer  # noqa: E402
from medscore.integrations.trl import completion_fingerprints, meds_grpo_trainer_class  # noqa: E402
from tiny_lm import save_tiny, tiny_qwen2, tiny_tokenizer  # noqa: E402


def correctness(prompts, completions, answer, **_):
    """1 when the boxed answer (prefilled marker + completion) is right."""
    return [float(boxed_answer("\\boxed{" + c, a)) for c, a in zip(completions, answer)]


def toy_dataset():
    rows = [{"prompt": f"What is {a} + {b}? The answer is \\boxed{{", "answer": str(a + b), "index": i}
            for i, (a, b) in enumerate([(2, 3), (4, 1), (7, 5), (6, 6)])]
    return datasets.Dataset.from_list(rows)


def make_trainer(folder, out, max_steps, meds_config=None, save=False, extra_rewards=(), **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    options = dict(output_dir=str(out), per_device_train_batch_size=8, num_generations=4,
                   max_completion_length=4, max_steps=max_steps, learning_rate=1e-3, beta=0.0,
                   logging_steps=1, report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                   save_strategy="steps" if save else "no", save_steps=1, bf16=False, fp16=False,
                   temperature=1.0)
    args = GRPOConfig(**{**options, **overrides})
    trainer_cls = meds_grpo_trainer_class()
    return trainer_cls(model=AutoModelForCausalLM.from_pretrained(folder),
                       processing_class=AutoTokenizer.from_pretrained(folder),
                       reward_funcs=[correctness, *extra_rewards],
                       args=args, train_dataset=toy_dataset(),
                       meds_config={"layers": "last:2", **(meds_config or {})})


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny(str(tmp_path_factory.mktemp("tiny-qwen2")))


def test_completion_fingerprints_find_prefilled_and_generated_answers():
    tokenizer = tiny_tokenizer()
    model = tiny_qwen2(len(tokenizer))
    from medscore._answer_markers import answer_marker_ids

    markers = answer_marker_ids(tokenizer)
    prompt = tokenizer("What is 2 + 3? Put it in \\boxed{}.", add_special_tokens=False)["input_ids"]
    prefilled = tokenizer("What is 2 + 3? The answer is \\boxed{", add_special_tokens=False)["input_ids"]
    answered = tokenizer(" so \\boxed{5}", add_special_tokens=False)["input_ids"]
    plain = tokenizer(" five", add_special_tokens=False)["input_ids"]
    fps = completion_fingerprints(model, [prompt, prefilled, prompt], [answered, plain, plain], markers,
                                  layers="last:2", chunk=2)
    assert fps.shape == (3, 2)
    assert torch.isfinite(fps[:2]).all()
    assert torch.isnan(fps[2]).all()  # the instruction's \boxed{} is not an answer


def test_grpo_steps_apply_and_log_penalties_and_the_memory_grows(tiny_folder, tmp_path):
    trainer = make_trainer(tiny_folder, tmp_path / "run", max_steps=3)
    trainer.train()
    memory = trainer.meds_memory
    logs = [h for h in trainer.state.log_history if "medscore/points" in h]
    assert len(logs) == 3
    points = [h["medscore/points"] for h in logs]
    assert points[0] > 0 and points == sorted(points) and points[-1] > points[0]  # the memory grows
    assert memory.metrics()["keys"] == 4 or memory.metrics()["keys"] >= 2
    # Penalties were subtracted from the rewards TRL normalises: the logged mean reward is
    # the accuracy minus the mean penalty.
    assert any(h["medscore/penalty_max"] > 0 for h in logs)
    rewarded = [h for h in trainer.state.log_history if "reward" in h]
    assert min(h["reward"] for h in rewarded) < 0


def test_memory_is_saved_in_checkpoints_and_restored(tiny_folder, tmp_path):
    trainer = make_trainer(tiny_folder, tmp_path / "run", max_steps=2, save=True)
    trainer.train()
    saved = tmp_path / "run" / "checkpoint-2" / MEMORY_FILE
    assert saved.exists()
    resumed = make_trainer(tiny_folder, tmp_path / "run", max_steps=3, save=False)
    before = resumed.meds_memory.metrics()["points"]
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert before == 0 and resumed.meds_memory.metrics()["points"] > trainer.meds_memory.metrics()["points"]
    np.testing.assert_array_equal(resumed.meds_memory.state_dict()["keys"][:1],
                                  trainer.meds_memory.state_dict()["keys"][:1])


def test_advantage_placement_is_refused_and_paper_rule_is_used(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="placement='scores'"):
        make_trainer(tiny_folder, tmp_path / "run", max_steps=1, meds_config={"placement": "advantage"})
    trainer = make_trainer(tiny_folder, tmp_path / "run", max_steps=1, meds_config={"marker_rule": "paper"})
    tokenizer = trainer.processing_class
    assert trainer.meds_marker_ids == tuple(tokenizer.encode("\\boxed{", add_special_tokens=False))
    # One memory per rank: its clustering threads are the node's cores over the local ranks.
    from medscore.integrations._common import threads_per_rank

    assert trainer.meds_memory._options["n_threads"] == threads_per_rank() >= 1
    cores = threads_per_rank({})
    assert threads_per_rank({"LOCAL_WORLD_SIZE": "2"}) == max(1, cores // 2)
    assert threads_per_rank({"LOCAL_WORLD_SIZE": str(4 * cores)}) == 1
    model = trainer.model
    prompt = tokenizer("What is 2 + 3?", add_special_tokens=False)["input_ids"]
    prefilled = tokenizer("What is 2 + 3? The answer is \\boxed{", add_special_tokens=False)["input_ids"]
    answered = tokenizer(" so \\boxed{5}", add_special_tokens=False)["input_ids"]
    plain = tokenizer(" 5}", add_special_tokens=False)["input_ids"]
    fps = completion_fingerprints(model, [prompt, prefilled], [answered, plain], trainer.meds_marker_ids,
                                  layers="last:2", tokenizer=tokenizer, rule="paper")
    # The paper rule finds " \\boxed{" through its "boxed" fallback, and never looks into the prompt.
    assert torch.isfinite(fps[0]).all() and torch.isnan(fps[1]).all()


FSDP1_SCRIPT = """
import os, sys, types
import torch, torch.distributed as dist, torch.multiprocessing as mp
from torch.distributed.fsdp import FullyShardedDataParallel
sys.path.insert(0, {tests!r})
from tiny_lm import tiny_qwen2, tiny_tokenizer
from medscore.integrations.trl import completion_fingerprints, fingerprint_model

def rank_main(rank, port, pick):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    model = tiny_qwen2(len(tokenizer))
    prompt = tokenizer("What is 2 + 3? The answer is \\\\boxed{{", add_special_tokens=False)["input_ids"]
    answer = tokenizer("5}}", add_special_tokens=False)["input_ids"]
    want = completion_fingerprints(model, [prompt] * 2, [answer] * 2, layers="last:2", tokenizer=tokenizer)
    wrapped = FullyShardedDataParallel(model, use_orig_params=False, device_id=torch.device("cpu"))
    trainer = types.SimpleNamespace(model=wrapped, model_wrapped=wrapped,
                                    accelerator=types.SimpleNamespace(unwrap_model=lambda m: m.module))
    chosen = fingerprint_model(trainer) if pick == "integration" else wrapped.module
    got = completion_fingerprints(chosen, [prompt] * 2, [answer] * 2, layers="last:2", tokenizer=tokenizer)
    assert torch.equal(got, want), (got, want)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(rank_main, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
    print("ok")
"""


def _run_fsdp1(tmp_path, pick: str):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "fsdp1_case.py"
    path.write_text(FSDP1_SCRIPT.format(tests=str(Path(__file__).parent)))
    return subprocess.run([sys.executable, str(path), str(port), pick], capture_output=True, text=True, timeout=240)


def test_fsdp1_fingerprints_run_through_the_wrapper(tmp_path):
    # 2 gloo ranks, FSDP1 (veRL's and accelerate's default wrapper): the unwrapped module holds
    # empty shards of its root unit, the unembedding among them; the integration hands the
    # wrapper to the fingerprint forward, which gives the unsharded model's fingerprints.
    done = _run_fsdp1(tmp_path, "integration")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
    unwrapped = _run_fsdp1(tmp_path, "unwrapped")  # what the integration did before
    assert unwrapped.returncode != 0
