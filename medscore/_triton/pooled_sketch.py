"""Triton kernel: per-sequence sums of (RMS-normalised) hidden rows over masked tokens.

Programs split each sequence into chunks of ``CHUNK_T`` tokens; each program keeps an fp32
accumulator of one whole row ``[H]`` (so the RMS scale of a token is known in the same pass)
and writes a partial sum. The partials ``[B, chunks, H]`` are added in torch. Masked-out
tokens are skipped without being read. The norm's weight is applied after pooling (it is
constant over tokens), and the projection is a small matmul done by the caller.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK_T = 64


def _block_t(block_h: int) -> int:
    """Tokens per tile: about 16K elements per tile, at least 1 and at most 16."""
    return max(1, min(16, 16384 // block_h))


@triton.jit
def _pooled_sums_kernel(
    hidden_ptr, mask_ptr, batch_ptr, start_ptr, length_ptr, partial_ptr,
    H, stride_b, stride_t, stride_h, mask_stride_b, mask_stride_t, stride_pb, stride_pc, eps,
    RMS: tl.constexpr, CHUNK_T: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """partial[b, c] = sum over masked tokens t of chunk c of s_t * hidden[batch[b], start[b] + t].

    s_t = rsqrt(mean(h_t**2) + eps) when RMS, else 1. hidden: [B or 1, T, H] strided;
    mask: uint8 [B or 1, T]; batch, start, length: int64 [B]; partial: float32 [B, C, H].
    Grid (B, C). BLOCK_H >= H; tiles of BLOCK_T tokens keep several row loads in flight.
    """
    b = tl.program_id(0)
    chunk = tl.program_id(1)
    seq = tl.load(batch_ptr + b)
    start = tl.load(start_ptr + b)
    length = tl.load(length_ptr + b)
    offs = tl.arange(0, BLOCK_H)
    inside = offs < H
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    first = chunk.to(tl.int64) * CHUNK_T
    for i in range(0, CHUNK_T, BLOCK_T):
        t = first + i + tl.arange(0, BLOCK_T)
        rows = start + t
        keep = tl.load(mask_ptr + seq * mask_stride_b + rows * mask_stride_t,
                       mask=t < length, other=0) != 0
        # Masked-out tokens are not read at all (the load mask covers their whole row).
        x = tl.load(hidden_ptr + seq * stride_b + rows[:, None] * stride_t
                    + offs[None, :] * stride_h,
                    mask=keep[:, None] & inside[None, :], other=0.0).to(tl.float32)
        if RMS:
            scale = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / H + eps)
            x = x * tl.where(keep, scale, 0.0)[:, None]
        acc += tl.sum(x, axis=0)
    tl.store(partial_ptr + b * stride_pb + chunk * stride_pc + offs, acc, mask=inside)


def partial_shape(layer, index) -> tuple[int, int, int]:
    """Shape ``(B, chunks, H)`` of the kernel's partial sums for this input."""
    B, H = index.start.numel(), layer.shape[-1]
    longest = layer.shape[1] if not index.packed else int(index.length.max()) if B else 0
    return B, max(1, triton.cdiv(longest, CHUNK_T)), H


def pooled_sums(layer, index, mask, norm, partial=None):
    """Sum over each sequence's masked tokens of ``norm(h_t)``: float32 ``[B, H]``.

    ``layer``: ``[B or 1, T, H]``; ``index``: ``fingerprint.TokenIndex``; ``mask``: bool
    ``[B, T]`` (packed: ``[N]``); ``norm``: None or an ``rms`` ``FinalNorm``; ``partial``:
    optional float32 buffer of :func:`partial_shape` (every element is overwritten).
    """
    B, chunks, H = partial_shape(layer, index)
    if partial is None:
        partial = torch.empty(B, chunks, H, dtype=torch.float32, device=layer.device)
    if B == 0:
        return partial.sum(1)
    mask2d = mask.reshape(-1, layer.shape[1]).to(torch.uint8)
    block_h = triton.next_power_of_2(H)
    _pooled_sums_kernel[(B, chunks)](
        layer, mask2d, index.batch.contiguous(), index.start.contiguous(),
        index.length.contiguous(), partial,
        H, layer.stride(0), layer.stride(1), layer.stride(2),
        mask2d.stride(0), mask2d.stride(1), partial.stride(0), partial.stride(1),
        float(norm.eps) if norm is not None else 0.0,
        RMS=norm is not None, CHUNK_T=CHUNK_T, BLOCK_T=_block_t(block_h), BLOCK_H=block_h,
    )
    sums = partial.sum(1)
    if norm is not None and norm.weight is not None:
        sums = sums * norm.weight.to(sums.device).float()
    return sums
