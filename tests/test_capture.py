"""medscore.capture on tiny random Llama/Qwen2/Qwen3 models against the slow way."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import medscore  # noqa: E402
from medscore import fingerprint as fp  # noqa: E402
from medscore._capture import cu_seqlens_from_position_ids, select_layers  # noqa: E402

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def tiny_model(family: str, seed: int = 0):
    configs = {
        "llama": lambda: transformers.LlamaConfig(**TINY),
        "qwen2": lambda: transformers.Qwen2Config(**TINY),
        "qwen3": lambda: transformers.Qwen3Config(**TINY, head_dim=8),
    }
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(configs[family]())
    with torch.no_grad():  # random norm weights, so a missing or doubled norm shows
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model.eval()


def slow_answer_logits(model, layer_indices, positions, targets, norm=False, **inputs):
    """The MEDS reference: all hidden states, the full lm_head on each, then one column."""
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
        n_layers = len(hidden) - 1
        out = torch.full((len(positions), len(layer_indices)), float("nan"), dtype=torch.float64)
        for col, i in enumerate(layer_indices):
            h = hidden[i + 1]
            if norm and i != n_layers - 1:
                h = model.model.norm(h)
            logits = model.lm_head(h).double()
            for b, (p, t) in enumerate(zip(positions.tolist(), targets.tolist())):
                if p >= 0:
                    out[b, col] = logits[b if logits.shape[0] > 1 else 0, p, t]
    return out


def rel_err(got, want):
    got, want = got.double(), want.double()
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    return float((got - want).abs().nan_to_num().max() / want.abs().nan_to_num().max())


def padded_batch(side: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = [9, 5, 7]
    T = max(lengths)
    ids = torch.zeros(3, T, dtype=torch.int64)
    mask = torch.zeros(3, T, dtype=torch.int64)
    for b, n in enumerate(lengths):
        cols = slice(T - n, T) if side == "left" else slice(0, n)
        ids[b, cols] = torch.randint(1, 97, (n,), generator=gen)
        mask[b, cols] = 1
    return ids, mask


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("norm", [False, True])
def test_answer_capture_equals_slow_way(family, side, norm):
    model = tiny_model(family)
    ids, attention = padded_batch(side)
    real_cols = [row.nonzero().squeeze(1) for row in attention]
    positions = torch.tensor([int(c[len(c) // 2]) for c in real_cols])
    positions[2] = -1  # no \boxed{ in this response
    targets = fp.answer_targets(ids, positions)
    with medscore.capture(model, layers="last:3", norm=norm) as cap:
        cap.set_targets(positions, targets)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=attention)
    # The default reads the token before the answer, whose output predicts it (logit lens).
    want = slow_answer_logits(model, [2, 3, 4], torch.where(positions > 0, positions - 1, -1), targets,
                              norm=norm, input_ids=ids, attention_mask=attention)
    assert cap.layer_indices == [2, 3, 4]
    assert cap.fingerprints.shape == (3, 3) and cap.fingerprints.dtype == torch.float32
    assert rel_err(cap.fingerprints, want) < 1e-5


def test_capture_with_grad_enabled_and_read_before():
    model = tiny_model("llama")
    ids, attention = padded_batch("right")
    positions, targets = torch.tensor([4, 3, 6]), torch.tensor([5, 6, 7])
    with medscore.capture(model, layers=[0, -1], read_at="before", positions=positions,
                          target_ids=targets) as cap:
        out = model(input_ids=ids, attention_mask=attention)
    assert out.logits.requires_grad and not cap.fingerprints.requires_grad
    want = slow_answer_logits(model, [0, 4], positions - 1, targets,
                              input_ids=ids, attention_mask=attention)
    assert rel_err(cap.fingerprints, want) < 1e-5


def test_capture_packed_input_matches_same_forward():
    model = tiny_model("qwen2")
    lengths = [6, 4, 5]
    ids = torch.randint(1, 97, (1, sum(lengths)), generator=torch.Generator().manual_seed(1))
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    cu = cu_seqlens_from_position_ids(position_ids)
    assert cu.tolist() == [0, 6, 10, 15]
    local = torch.tensor([5, 0, 2])
    targets = torch.tensor([3, 4, 5])
    with medscore.capture(model, layers="upper_half", read_at="answer") as cap:
        cap.set_targets(local, targets, cu_seqlens=cu)
        with torch.no_grad():
            model(input_ids=ids, position_ids=position_ids)
    absolute = cu[:-1] + local
    want = slow_answer_logits(model, cap.layer_indices, absolute, targets,
                              input_ids=ids, position_ids=position_ids)
    assert cap.layer_indices == [2, 3, 4]
    assert rel_err(cap.fingerprints, want) < 1e-5


@pytest.mark.parametrize("norm", [False, True])
def test_pooled_capture_equals_sketch_of_hidden_states(norm):
    model = tiny_model("qwen3")
    ids, attention = padded_batch("left")
    response = attention.clone()
    response[:, :-3] = 0  # the last 3 tokens are the response
    projection = fp.random_projection(model.lm_head.weight, 6, seed=0)
    with torch.no_grad(), medscore.capture(model, layers="last:2", mode="pooled", mask=response,
                                           projection=projection, norm=norm) as cap:
        hidden = model(input_ids=ids, attention_mask=attention,
                       output_hidden_states=True).hidden_states
        final_norm = fp.as_final_norm(model.model.norm) if norm else None
        want = torch.cat([
            fp.pooled_sketch([hidden[4]], response, projection, final_norm),
            fp.pooled_sketch([hidden[5]], response, projection),  # already post-norm
        ], dim=1)
    assert cap.fingerprints.shape == (3, 2, 6)
    assert rel_err(cap.fingerprints, want) < 1e-5


def test_each_forward_gets_fresh_fingerprints():
    model = tiny_model("llama")
    ids, attention = padded_batch("right")
    with torch.no_grad(), medscore.capture(model, layers="last:1") as cap:
        cap.set_targets(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]))
        model(input_ids=ids, attention_mask=attention)
        first = cap.fingerprints
        cap.set_targets(torch.tensor([3, 4]), torch.tensor([1, 2]))
        model(input_ids=ids[:2], attention_mask=attention[:2])
        second = cap.fingerprints
    assert first.shape == (3, 1) and second.shape == (2, 1)
    assert not torch.equal(first[:2], second)


def test_select_layers_specs():
    assert select_layers("last:14", 28) == list(range(14, 28))
    assert select_layers("upper_half", 5) == [2, 3, 4]
    assert select_layers("all", 3) == [0, 1, 2]
    assert select_layers([-1, 0], 4) == [3, 0]
    assert select_layers(2, 4) == [2]
    for bad in ("last:0", "last:5", "first:2", [1, 1], [4], [-5], []):
        with pytest.raises((ValueError, TypeError)):
            select_layers(bad, 4)


def test_bad_input_and_unsupported_models():
    model = tiny_model("llama")
    ids, attention = padded_batch("right")
    with pytest.raises(ValueError, match="unsupported model"):
        medscore.capture(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        medscore.capture(model, "all", positions=[1, 2, 3], target_ids=[1, 2])
    with pytest.raises(ValueError, match="needs projection"):
        medscore.capture(model, "all", mode="pooled")
    with torch.no_grad(), medscore.capture(model, "all", positions=[1, 2, 9], target_ids=[1, 2, 3]):
        with pytest.raises(ValueError, match="positions out of range"):
            model(input_ids=ids, attention_mask=attention)
    with torch.no_grad(), medscore.capture(model, "all", positions=[1, 2], target_ids=[1, 2]):
        with pytest.raises(ValueError, match="batch sizes differ"):
            model(input_ids=ids, attention_mask=attention)
    cap = medscore.capture(model, "all")
    with pytest.raises(RuntimeError, match="no forward pass"):
        cap.fingerprints
    with torch.no_grad(), cap:
        with pytest.raises(RuntimeError, match="before set_targets"):
            model(input_ids=ids)
    # Leaving the context removes every hook: the model runs untouched afterwards.
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    np.testing.assert_equal(medscore.capture(model, layers=-1).layer_indices, [4])
    with pytest.raises(ValueError, match="must be <= 5"):
        medscore.capture(model)  # the default last:14 on a 5-layer model
