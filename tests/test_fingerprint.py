"""medscore.fingerprint, torch path: exact against a float64 full-logits reference."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medscore import fingerprint as fp  # noqa: E402


def make_norm(H, seed=0, kind="rms"):
    gen = torch.Generator().manual_seed(seed)
    weight = 1.0 + 0.5 * torch.randn(H, generator=gen)
    bias = 0.1 * torch.randn(H, generator=gen) if kind == "layer" else None
    return fp.FinalNorm(kind, 1e-5, weight, bias)


def norm_f64(x, norm):
    """The final norm written out in float64, straight from its definition."""
    if norm is None:
        return x
    if norm.kind == "layer":
        x = x - x.mean(-1, keepdim=True)
    x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + norm.eps)
    x = x * norm.weight.double()
    return x + norm.bias.double() if norm.bias is not None else x


def reference_answer_logits(layers, positions, targets, unembed, norm=None):
    """The slow way: the full logit vector per layer in float64, then one column."""
    out = np.full((len(positions), len(layers)), np.nan)
    for l, h in enumerate(layers):
        for b, (p, t) in enumerate(zip(positions, targets)):
            if p >= 0:
                logits = unembed.double() @ norm_f64(h[b, p].double(), norm)
                out[b, l] = float(logits[t])
    return out


def reference_pooled(layers, mask, unembed, projection_rows, norm=None):
    """Mean full logit vector over masked tokens (float64), then ``R^T`` of it."""
    B, L = mask.shape[0], len(layers)
    out = np.full((B, L, projection_rows.shape[1]), np.nan)
    for l, h in enumerate(layers):
        for b in range(B):
            keep = mask[b].nonzero().squeeze(1)
            if keep.numel():
                logits = norm_f64(h[b, keep].double(), norm) @ unembed.double().T
                out[b, l] = (logits.mean(0) @ projection_rows).numpy()
    return out


def rel_err(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    scale = np.nanmax(np.abs(want))
    return float(np.nanmax(np.abs(got - want)) / scale)


def random_case(B=3, T=7, H=16, V=50, L=4, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    layers = [torch.randn(B, T, H, generator=gen).to(dtype) for _ in range(L)]
    unembed = torch.randn(V, H, generator=gen).to(dtype)
    positions = torch.randint(0, T, (B,), generator=gen)
    targets = torch.randint(0, V, (B,), generator=gen)
    return layers, unembed, positions, targets


@pytest.mark.parametrize("norm_kind", [None, "rms", "layer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_answer_logits_matches_full_logits(norm_kind, dtype):
    layers, unembed, pos, tgt = random_case(dtype=dtype)
    pos[1] = -1  # this sequence has no answer
    norm = None if norm_kind is None else make_norm(16, kind=norm_kind)
    got = fp.answer_logits(layers, pos, tgt, unembed, norm, backend="torch")
    assert got.dtype == torch.float32 and got.shape == (3, 4)
    want = reference_answer_logits(layers, pos.tolist(), tgt.tolist(), unembed, norm)
    assert rel_err(got, want) < 1e-5


def test_answer_logits_layouts_agree():
    layers, unembed, pos, tgt = random_case(B=3, T=5)
    want = fp.answer_logits(layers, pos, tgt, unembed, backend="torch")
    stacked = fp.answer_logits(torch.stack(layers), pos, tgt, unembed, backend="torch")
    assert torch.equal(stacked, want)
    # Packed: drop a different amount of trailing padding from each sequence.
    lengths = [int(p) + 1 + extra for p, extra in zip(pos, [0, 1, 2])]
    lengths = [min(n, 5) for n in lengths]
    packed = [torch.cat([h[b, :n] for b, n in enumerate(lengths)]) for h in layers]
    cu = torch.tensor(np.cumsum([0, *lengths]))
    got = fp.answer_logits(packed, pos, tgt, unembed, cu_seqlens=cu, backend="torch")
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    got3 = fp.answer_logits([p.unsqueeze(0) for p in packed], pos, tgt, unembed, cu_seqlens=cu)
    assert torch.allclose(got3, want, rtol=1e-6, atol=1e-6)


def test_answer_logits_edge_shapes():
    layers, unembed, pos, tgt = random_case(B=1, T=1, L=1)
    got = fp.answer_logits(layers, [0], tgt, unembed)
    want = reference_answer_logits(layers, [0], tgt.tolist(), unembed)
    assert rel_err(got, want) < 1e-6
    assert torch.isnan(fp.answer_logits(layers, [-1], tgt, unembed)).all()


@pytest.mark.parametrize("norm_kind", [None, "rms", "layer"])
def test_pooled_sketch_is_projection_of_mean_logits(norm_kind):
    layers, unembed, _, _ = random_case(B=3, T=6, H=12, V=40, L=2, seed=3)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    norm = None if norm_kind is None else make_norm(12, kind=norm_kind)
    k, seed = 5, 11
    projection = fp.random_projection(unembed, k, seed)
    # R as random_projection documents it: float64 N(0, 1/k) rows from a seeded CPU generator.
    R = torch.randn(40, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    R = R / k ** 0.5
    got = fp.pooled_sketch(layers, mask, projection, norm, backend="torch")
    assert got.shape == (3, 2, k) and got.dtype == torch.float32
    want = reference_pooled(layers, mask, unembed, R, norm)
    assert rel_err(got, want) < 1e-5
    assert torch.isnan(got[2]).all()


def test_pooled_sketch_packed_matches_padded():
    layers, unembed, _, _ = random_case(B=3, T=6, H=8, L=2, seed=5)
    lengths = [6, 2, 4]
    mask = torch.tensor([[1, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0]])
    projection = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    want = fp.pooled_sketch(layers, mask, projection, make_norm(8))
    packed = [torch.cat([h[b, :n] for b, n in enumerate(lengths)]) for h in layers]
    packed = [torch.cat([p, torch.randn(3, 8)]) for p in packed]  # trailing buffer rows
    packed_mask = torch.cat([torch.cat([mask[b, :n] for b, n in enumerate(lengths)]),
                             torch.ones(3, dtype=torch.int64)])
    cu = torch.tensor([0, 6, 8, 12])
    got = fp.pooled_sketch(packed, packed_mask, projection, make_norm(8), cu_seqlens=cu)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_logit_isometry_preserves_logit_distances():
    gen = torch.Generator().manual_seed(1)
    unembed = torch.randn(60, 10, generator=gen, dtype=torch.float64).float()
    P = fp.logit_isometry(unembed).double()
    x = torch.randn(20, 10, generator=gen, dtype=torch.float64)
    logits = x @ unembed.double().T
    want = torch.cdist(logits, logits)
    got = torch.cdist(x @ P, x @ P)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_logit_isometry_rejects_rank_deficient_unembed():
    unembed = torch.ones(10, 4)
    with pytest.raises(ValueError, match="rank deficient"):
        fp.logit_isometry(unembed)


def test_bad_input_has_clear_errors():
    layers, unembed, pos, tgt = random_case(B=3, T=5)
    with pytest.raises(ValueError, match="positions out of range"):
        fp.answer_logits(layers, torch.tensor([0, 5, 1]), tgt, unembed)
    with pytest.raises(ValueError, match="positions out of range"):
        fp.answer_logits(layers, torch.tensor([0, -2, 1]), tgt, unembed)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fp.answer_logits(layers, torch.tensor([0, 1]), tgt, unembed)
    with pytest.raises(ValueError, match="batch sizes differ"):
        fp.answer_logits(layers, pos, tgt[:2], unembed)
    with pytest.raises(ValueError, match=r"target_ids must lie in \[0, 50\)"):
        fp.answer_logits(layers, pos, torch.tensor([0, 50, 1]), unembed)
    with pytest.raises(ValueError, match="unembed must be"):
        fp.answer_logits(layers, pos, tgt, unembed[:, :3])
    with pytest.raises(ValueError, match="every layer must"):
        fp.answer_logits([layers[0], layers[1][:, :4]], pos, tgt, unembed)
    with pytest.raises(ValueError, match="backend must be one of"):
        fp.answer_logits(layers, pos, tgt, unembed, backend="cuda")
    with pytest.raises(ValueError, match="batch sizes differ"):
        fp.pooled_sketch(layers, torch.ones(2, 5), torch.ones(16, 2))
    with pytest.raises(ValueError, match="projection must be"):
        fp.pooled_sketch(layers, torch.ones(3, 5), torch.ones(15, 2))
    with pytest.raises(TypeError, match="norm must be"):
        fp.answer_logits(layers, pos, tgt, unembed, norm=torch.nn.Linear(2, 2))


def test_norm_modules_convert_exactly():
    H = 8
    x = torch.randn(4, H, generator=torch.Generator().manual_seed(2))
    ln = torch.nn.LayerNorm(H)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    rms = torch.nn.RMSNorm(H, eps=1e-6)
    for module in (ln, rms):
        got = fp.apply_final_norm(x, fp.as_final_norm(module))
        assert torch.allclose(got, module(x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- answer markers


def test_find_answer_positions_last_marker_either_padding():
    marker = [7, 8, 9]
    ids = torch.tensor([
        [1, 7, 8, 9, 4, 7, 8, 9, 5, 0],   # two markers: answer after the last one, at 8
        [0, 0, 0, 2, 7, 8, 9, 6, 3, 3],   # left padded
        [7, 8, 9, 1, 2, 3, 7, 8, 9, 0],   # the last marker ends at padding: answer at 3
        [1, 2, 3, 4, 5, 6, 0, 7, 8, 9],   # marker at the very end (no answer token): none
    ])
    attention = torch.tensor([
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ])
    assert fp.find_answer_positions(ids, marker, attention).tolist() == [8, 7, 3, -1]
    assert fp.find_answer_positions(ids, marker).tolist() == [8, 7, 9, -1]
    as_numpy = fp.find_answer_positions(ids.numpy(), marker, attention.numpy())
    assert isinstance(as_numpy, np.ndarray) and as_numpy.tolist() == [8, 7, 3, -1]


def test_find_answer_positions_any_of_several_markers():
    ids = torch.tensor([[5, 1, 2, 3, 6, 4, 2, 3, 9], [5, 4, 2, 3, 7, 1, 1, 1, 1]])
    markers = [(1, 2, 3), (4, 2, 3)]
    assert fp.find_answer_positions(ids, markers).tolist() == [8, 4]
    assert fp.find_answer_positions(ids[:, :1], markers).tolist() == [-1, -1]  # T = 1


def test_find_answer_positions_matches_brute_force():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, size=(40, 12))
    marker = [1, 2]
    got = fp.find_answer_positions(ids, marker)
    for row, pos in zip(ids, got):
        hits = [t + 2 for t in range(10) if row[t] == 1 and row[t + 1] == 2 and t + 2 < 12]
        assert pos == (max(hits) if hits else -1)


def test_answer_targets_reads_token_at_position():
    ids = torch.tensor([[3, 4, 5], [6, 7, 8]])
    assert fp.answer_targets(ids, torch.tensor([2, -1])).tolist() == [5, 0]


class CharTokenizer:
    """A slow tokenizer (no offsets) that merges a backslash with the preceding char."""

    is_fast = False

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        pieces, i = [], 0
        while i < len(text):
            if i + 1 < len(text) and text[i + 1] == "\\" and text[i] in " $(":
                pieces.append(text[i:i + 2])
                i += 2
            else:
                pieces.append(text[i])
                i += 1
        return {"input_ids": [self.vocab(p) for p in pieces]}

    def vocab(self, piece):
        return sum(ord(c) * 256 ** j for j, c in enumerate(piece))

    def decode(self, ids):
        out = ""
        for token in ids:
            while token:
                out += chr(token % 256)
                token //= 256
        return out


def test_answer_marker_ids_covers_merged_backslash():
    tok = CharTokenizer()
    seqs = fp.answer_marker_ids(tok, "\\ab{")
    plain = tuple(tok.vocab(c) for c in "\\ab{")
    merged = (tok.vocab(" \\"), *plain[1:])
    assert plain in seqs and merged in seqs
    text = tok("x $\\ab{5} and (\\ab{6}")["input_ids"]
    pos = fp.find_answer_positions(np.array([text]), seqs)
    assert tok.decode([text[pos[0]]]) == "6"
