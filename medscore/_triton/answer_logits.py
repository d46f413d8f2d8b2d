"""Triton kernel: one logit-lens logit per (sequence, layer), with an RMS norm folded in.

Each program reads one hidden row ``h`` ``[H]`` and one unembedding row ``u`` ``[H]`` and
computes ``dot(u * w, h)`` and ``sum(h * h)`` in one pass, both accumulated in fp32; with
an RMS norm the result is ``dot(u * w, h) * rsqrt(sum(h * h) / H + eps)``, which equals
``dot(u, w * h * rsqrt(mean(h**2) + eps))`` exactly in real arithmetic.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _answer_logits_kernel(
    hidden_ptr, batch_ptr, row_ptr, target_ptr, unembed_ptr, weight_ptr, out_ptr,
    H, stride_b, stride_t, stride_h, stride_v, stride_uh, stride_ob, eps,
    HAS_WEIGHT: tl.constexpr, RMS: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """out[b] = dot(unembed[target[b]] (* w), hidden[batch[b], row[b]]) (* rms scale); NaN if row < 0.

    hidden: [B or 1, T, H] any float dtype, strided; batch, row, target: int64 [B];
    unembed: [V, H]; weight: [H] (when HAS_WEIGHT); out: float32 [B], strided. Grid (B,).
    """
    b = tl.program_id(0)
    row = tl.load(row_ptr + b)
    present = row >= 0
    row = tl.maximum(row, 0)
    seq = tl.load(batch_ptr + b)
    target = tl.load(target_ptr + b)
    h_base = hidden_ptr + seq * stride_b + row * stride_t
    u_base = unembed_ptr + target * stride_v
    dot = tl.zeros([BLOCK_H], dtype=tl.float32)
    sq = tl.zeros([BLOCK_H], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs = h0 + tl.arange(0, BLOCK_H)
        inside = offs < H
        x = tl.load(h_base + offs * stride_h, mask=inside, other=0.0).to(tl.float32)
        u = tl.load(u_base + offs * stride_uh, mask=inside, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            u = u * tl.load(weight_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        dot += x * u
        sq += x * x
    value = tl.sum(dot, axis=0)
    if RMS:
        value = value * (1.0 / tl.sqrt(tl.sum(sq, axis=0) / H + eps))
    value = tl.where(present, value, float("nan"))
    tl.store(out_ptr + b * stride_ob, value)


def answer_logits(layers, index, positions, targets, unembed, norm, out):
    """Fill ``out`` (float32 ``[B, L]``) with each layer's answer logits; returns ``out``.

    ``layers``: per-layer ``[B or 1, T, H]`` tensors; ``index``: ``fingerprint.TokenIndex``;
    ``positions``, ``targets``: validated int64 ``[B]``; ``norm``: None or an ``rms``
    ``FinalNorm`` (callers route ``layer`` norms to the torch path).
    """
    B = positions.numel()
    if B == 0:
        return out
    rows = (index.start + positions).where(positions >= 0, positions.new_full((), -1)).contiguous()
    weight = None if norm is None else norm.weight
    has_weight = weight is not None
    weight_arg = weight.contiguous() if has_weight else unembed  # placeholder, never read
    H = layers[0].shape[-1]
    block = min(triton.next_power_of_2(H), 1024)
    batch = index.batch.contiguous()
    targets = targets.to(unembed.device).contiguous()
    for i, layer in enumerate(layers):
        column = out[:, i]
        _answer_logits_kernel[(B,)](
            layer, batch, rows, targets, unembed, weight_arg, column,
            H, layer.stride(0), layer.stride(1), layer.stride(2),
            unembed.stride(0), unembed.stride(1), column.stride(0),
            float(norm.eps) if norm is not None else 0.0,
            HAS_WEIGHT=has_weight, RMS=norm is not None, BLOCK_H=block,
        )
    return out
