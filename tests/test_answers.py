"""medscore.answer_fingerprints and the marker rules, on a tiny random Qwen2 (no download)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import medscore  # noqa: E402
from answers_reference import reference_brace_position, reference_fingerprints  # noqa: E402
from medscore._answer_markers import (  # noqa: E402
    find_paper_marker_ends,
    locate_answers,
    paper_marker_ids,
)
from tiny_lm import tiny_qwen2, tiny_tokenizer  # noqa: E402

RESPONSES = [
    "The answer is $\\boxed{7}$.",            # " $\\" merged: the paper rule's "boxed" fallback
    "\\boxed{3} then \\boxed{4}",             # exact ids at the start; the robust rule takes the last
    "so 12",                                  # no marker
    "x \\boxed{",                             # cut right after the marker: no answer token
    "boxed {5}",                              # the fallback's "boxed" ... "{" without a backslash
    "",                                       # empty response
    "\\boxed{12}",                            # exact ids
    "\\boxed{{5}}",
]


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_qwen2(len(tokenizer), seed=0, layers=4), tokenizer


def rollouts(tokenizer, responses=RESPONSES, prefill=""):
    """Left-padded chat prompts [B, P] and right-padded responses [B, R] with their masks."""
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + 2?"}], tokenize=False,
                                             add_generation_prompt=True) + prefill for i in range(len(responses))]
    p = [tokenizer.encode(t, add_special_tokens=False) for t in prompts]
    r = [tokenizer.encode(t, add_special_tokens=False) for t in responses]
    P, R = max(map(len, p)), max(1, max(map(len, r)))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (P - len(x)) + x for x in p])
    prompt_mask = torch.tensor([[0] * (P - len(x)) + [1] * len(x) for x in p])
    response_ids = torch.tensor([x + [pad] * (R - len(x)) for x in r])
    response_mask = torch.tensor([[1] * len(x) + [0] * (R - len(x)) for x in r])
    return prompt_ids, prompt_mask, response_ids, response_mask


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_paper_preset_equals_the_reference(tiny, packed, bf16):
    model, tokenizer = tiny
    batch = rollouts(tokenizer)
    layout = "packed" if packed else "padded"
    got = medscore.answer_fingerprints(model, tokenizer, *batch, preset="paper", layers="all", layout=layout,
                                       bf16=bf16)
    want, target_is_padding = reference_fingerprints(model, tokenizer, *batch, packed=packed, bf16=bf16, n_last=4)
    assert got.dtype == torch.float32 and got.shape == (len(RESPONSES), 4)
    assert target_is_padding.tolist() == [False, False, False, True, False, False, False, False]
    found = ~torch.isnan(want[:, 0])
    assert found.tolist() == [True, True, False, False, True, False, True, True]
    assert torch.isnan(got[~found]).all()  # no marker, empty, or cut right after the marker
    if bf16:  # the same bf16 forward; each logit rounded to bf16 exactly as lm_head's
        assert torch.equal(got[found], want[found])
    else:
        torch.testing.assert_close(got[found], want[found], rtol=1e-5, atol=1e-6)


def test_default_rule_reads_before_the_answer_and_agrees_with_packing(tiny):
    model, tokenizer = tiny
    batch = rollouts(tokenizer)
    padded = medscore.answer_fingerprints(model, tokenizer, *batch, layers="last:3")
    packed = medscore.answer_fingerprints(model, tokenizer, *batch, layers="last:3", layout="packed")
    torch.testing.assert_close(padded, packed, rtol=1e-4, atol=1e-5, equal_nan=True)
    where = locate_answers(tokenizer, *batch)
    # The robust rule: the last marker in the text ("4" of row 1), none in "boxed {5}".
    answers = [tokenizer.decode([t]) if c >= 0 else None for t, c in zip(where.target.tolist(), where.column.tolist())]
    assert answers == ["7", "4", None, None, None, None, "1", "{"]
    assert where.marker.tolist() == [True, True, False, True, False, False, True, True]
    # The logit lens by hand: layer outputs at the token before the answer, lm_head column.
    ids = torch.cat(batch[::2], 1)
    mask = torch.cat(batch[1::2], 1)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                       output_hidden_states=True).hidden_states
    for b in (0, 1, 6):
        want = torch.stack([model.lm_head(hidden[i][b, where.column[b] - 1])[where.target[b]] for i in (2, 3, 4)])
        torch.testing.assert_close(padded[b], want, rtol=1e-5, atol=1e-6)


def test_prefilled_marker_counts_for_the_robust_rule_only(tiny):
    model, tokenizer = tiny
    batch = rollouts(tokenizer, ["5}", "12}$"], prefill="The answer is \\boxed{")
    robust = medscore.answer_fingerprints(model, tokenizer, *batch, layers="last:2")
    paper = medscore.answer_fingerprints(model, tokenizer, *batch, preset="paper", layers="last:2")
    assert torch.isfinite(robust).all() and torch.isnan(paper).all()  # the reference searches the response only


def test_the_model_mode_is_restored_and_nothing_to_read_needs_no_forward(tiny):
    model, tokenizer = tiny
    model.train()
    try:
        batch = rollouts(tokenizer, ["no answer", ""])
        out = medscore.answer_fingerprints(model, tokenizer, *batch, layers="last:2")
        assert out.shape == (2, 2) and torch.isnan(out).all()
        batch = rollouts(tokenizer)
        medscore.answer_fingerprints(model, tokenizer, *batch, layers="last:2")
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_bad_options_and_shapes(tiny):
    model, tokenizer = tiny
    batch = rollouts(tokenizer)
    with pytest.raises(TypeError, match="unknown options"):
        medscore.answer_fingerprints(model, tokenizer, *batch, leyers="all")
    with pytest.raises(ValueError, match="preset"):
        medscore.answer_fingerprints(model, tokenizer, *batch, preset="papers")
    with pytest.raises(ValueError, match="layout"):
        medscore.answer_fingerprints(model, tokenizer, *batch, layout="nested")
    with pytest.raises(ValueError, match="batch sizes differ"):
        medscore.answer_fingerprints(model, tokenizer, batch[0][:2], batch[1][:2], batch[2], batch[3])


def word_tokenizer():
    """A word-level tokenizer whose vocabulary has no backslash: "\\boxed{" is unknown to it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "the", "answer", "is", "5", "{", "}"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>")


@pytest.mark.parametrize("preset", [None, "paper"])
def test_a_tokenizer_without_the_marker_is_a_clear_error(preset):
    tokenizer = word_tokenizer()
    model = tiny_qwen2(8, layers=2)
    ids = torch.tensor([[2, 3, 4, 5]])
    with pytest.raises(ValueError, match="cannot represent the answer marker"):
        medscore.answer_fingerprints(model, tokenizer, ids, torch.ones_like(ids), ids, torch.ones_like(ids),
                                     preset=preset, layers="all")


class TextTokenizer:
    """Ids are indices into TOKENS (a fake tokenizer for the rule's property test)."""

    TOKENS = ["\\", "boxed", "{", "x", "Boxed", "{{", "a{", "<pad>"]

    def encode(self, text, add_special_tokens=False):
        assert text == "\\boxed{"
        return [0, 1, 2]

    def convert_ids_to_tokens(self, ids):
        return [self.TOKENS[i] for i in ids]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 6), min_size=0, max_size=24), min_size=1, max_size=6))
def test_paper_marker_rule_equals_the_reference_rule(rows):
    tokenizer = TextTokenizer()
    width = max(1, max(map(len, rows)))
    ids = torch.tensor([r + [7] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    got = find_paper_marker_ends(tokenizer, ids, mask, marker_ids=paper_marker_ids(tokenizer))
    want = [reference_brace_position(tokenizer, row.tolist()) for row in ids]
    assert got.tolist() == [-1 if w is None else w for w in want]
