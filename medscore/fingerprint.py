"""Fingerprints of a rollout, read from a model's hidden states with a few dot products.

MEDS fingerprints a rollout by the logit-lens logit of its answer token at each of the
last decoder layers. The reference recipe runs the full-vocabulary ``lm_head`` on every
layer to read one column of it; these functions compute the same numbers exactly from
the hidden states, using three exact identities:

- one logit is one dot product: ``(W_U n(h))[t] = dot(W_U[t], n(h))``;
- an RMS norm folds into the unembedding row: ``dot(u, w * h * s) = s * dot(u * w, h)``
  with ``s = rsqrt(mean(h**2) + eps)``;
- pooling and projections commute with the unembedding:
  ``R^T (W_U mean_t n(h_t)) = (W_U^T R)^T mean_t n(h_t)``.

Layouts accepted for ``hidden`` (every layer has the same layout):

- a list of per-layer tensors ``[B, T, H]``, or a stacked tensor ``[L, B, T, H]``;
- packed (``cu_seqlens`` given, as veRL's ``use_remove_padding`` produces): a list of
  ``[N, H]`` (or ``[1, N, H]``) tensors or a stacked ``[L, N, H]`` tensor, where sequence
  ``b`` occupies rows ``cu_seqlens[b]:cu_seqlens[b + 1]``.

Positions are token indices inside each sequence (for padded input: the column in the
padded row, so left padding needs no correction). A position of ``-1`` marks a sequence
without an answer: its fingerprint is NaN. These functions read the hidden state at the
positions they are given. MEDS (the reference and medscore alike) reads the position that
*predicts* the answer token, the marker's last token, with the answer token as target (the
classic logit lens): pass ``positions - 1`` of what :func:`find_answer_positions` returns
(``capture``'s default ``read_at="before"`` does this).

Backends: ``"torch"`` (any device, the reference), ``"triton"`` (CUDA tensors, needs the
``triton`` extra), ``"auto"`` (triton on CUDA tensors when it imports, torch otherwise).
All inputs may be fp32, fp16 or bf16; every output is fp32, accumulated in fp32.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Sequence

from ._validation import check_choice, check_int

BACKENDS = ("auto", "torch", "triton")
NORM_KINDS = ("rms", "layer")


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("medscore.fingerprint needs torch: pip install 'medscore[torch]'") from exc


# --------------------------------------------------------------------------- final norm


@dataclass(frozen=True)
class FinalNorm:
    """The model's final norm as data, so kernels can fold it instead of calling a module.

    ``rms``: ``y = weight * h * rsqrt(mean(h**2) + eps)`` (Llama, Qwen2, Qwen3, SmolLM;
    Gemma's ``1 + weight`` is stored already added). ``layer``:
    ``y = weight * (h - mean(h)) * rsqrt(var(h) + eps) + bias``. ``weight``/``bias`` are
    ``[H]`` tensors or None (no affine part).
    """

    kind: str
    eps: float
    weight: Any = None
    bias: Any = None


def final_norm_kind(norm) -> str:
    """``"layer"`` or ``"rms"`` for a supported norm module (see :func:`as_final_norm`).

    Reads only the module's class, never its weight, so it also works on a sharded model
    whose weight is a freed buffer outside the forward. Anything else raises ``TypeError``.
    """
    torch = _torch()
    if isinstance(norm, torch.nn.LayerNorm):
        return "layer"
    if "RMSNorm" in type(norm).__name__:
        return "rms"
    raise TypeError(
        f"norm must be None, a FinalNorm, torch.nn.LayerNorm or an RMSNorm module, got {type(norm).__name__}"
    )


def as_final_norm(norm) -> FinalNorm | None:
    """Return ``norm`` as a :class:`FinalNorm` (None, a FinalNorm, or a norm module).

    Supported modules: ``torch.nn.LayerNorm``, ``torch.nn.RMSNorm`` and the Hugging Face
    ``*RMSNorm`` classes (attribute ``variance_epsilon`` or ``eps``; Gemma's ``1 + weight``
    convention detected by class name). Anything else raises ``TypeError``.
    """
    if norm is None or isinstance(norm, FinalNorm):
        return norm
    torch = _torch()
    kind = final_norm_kind(norm)
    weight = getattr(norm, "weight", None)
    weight = None if weight is None else weight.detach()
    if kind == "layer":
        bias = None if norm.bias is None else norm.bias.detach()
        return FinalNorm("layer", float(norm.eps), weight, bias)
    eps = getattr(norm, "variance_epsilon", None)
    eps = getattr(norm, "eps", None) if eps is None else eps
    if eps is None:
        eps = torch.finfo(torch.float32).eps  # torch.nn.RMSNorm's default for eps=None
    if weight is not None and "Gemma" in type(norm).__name__:
        weight = 1.0 + weight.float()
    return FinalNorm("rms", float(eps), weight)


def apply_final_norm(x, norm: FinalNorm | None):
    """Apply ``norm`` to the last axis of ``x`` in fp32 (the unfolded reference)."""
    x = x.float()
    if norm is None:
        return x
    torch = _torch()
    if norm.kind == "layer":
        x = x - x.mean(-1, keepdim=True)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    if norm.weight is not None:
        x = x * norm.weight.float()
    if norm.bias is not None:
        x = x + norm.bias.float()
    return x


# --------------------------------------------------------------------------- layouts


def _layers(hidden, packed: bool) -> list:
    """Split ``hidden`` into per-layer tensors ``[B, T, H]`` (packed: ``[1, N, H]``)."""
    torch = _torch()
    per_layer_ndim = 2 if packed else 3
    if isinstance(hidden, torch.Tensor):
        if hidden.ndim == per_layer_ndim + 1:
            layers = list(hidden.unbind(0))
        elif hidden.ndim == per_layer_ndim:
            layers = [hidden]
        else:
            want = "[L, N, H] or [N, H]" if packed else "[L, B, T, H] or [B, T, H]"
            raise ValueError(f"hidden must be {want}, got shape {tuple(hidden.shape)}")
    elif isinstance(hidden, Sequence) and len(hidden) > 0:
        layers = list(hidden)
    else:
        raise ValueError("hidden must be a tensor or a non-empty list of per-layer tensors")
    if packed:
        layers = [h[0] if h.ndim == 3 and h.shape[0] == 1 else h for h in layers]
    first = layers[0]
    for i, h in enumerate(layers):
        if not isinstance(h, torch.Tensor) or h.ndim != per_layer_ndim or h.shape != first.shape:
            raise ValueError(
                f"hidden layer {i} has shape {tuple(getattr(h, 'shape', ()))}; every layer must "
                f"be a {per_layer_ndim}-d tensor of shape {tuple(first.shape)}"
            )
        if not h.dtype.is_floating_point:
            raise ValueError(f"hidden must be floating point, got {h.dtype}")
    return [h.unsqueeze(0) for h in layers] if packed else layers


@dataclass(frozen=True)
class TokenIndex:
    """Where each sequence's tokens live in a per-layer tensor ``[B or 1, T, H]``.

    ``batch[b]`` is the first index (``b``; ``0`` when packed) and ``start[b]``/``length[b]``
    the sequence's span along the token axis. int64 ``[B]`` tensors on the hidden's device.
    """

    batch: Any
    start: Any
    length: Any
    packed: bool


def token_index(layer, cu_seqlens=None, batch_size: int | None = None) -> TokenIndex:
    """Describe the sequences of ``layer`` (``[B, T, H]``, or ``[1, N, H]`` with cu_seqlens)."""
    torch = _torch()
    device = layer.device
    if cu_seqlens is None:
        B, T = layer.shape[0], layer.shape[1]
        if batch_size is not None and batch_size != B:
            raise ValueError(f"batch sizes differ: hidden has {B} sequences, got {batch_size}")
        arange = torch.arange(B, device=device)
        full = torch.full((B,), T, dtype=torch.int64, device=device)
        return TokenIndex(arange, torch.zeros_like(arange), full, False)
    cu = torch.as_tensor(cu_seqlens, device=device).long()
    if cu.ndim != 1 or cu.numel() < 2 or bool((cu[1:] < cu[:-1]).any()) or int(cu[0]) != 0:
        raise ValueError("cu_seqlens must be a non-decreasing 1-d [B + 1] tensor starting at 0")
    if int(cu[-1]) > layer.shape[1]:
        raise ValueError(f"cu_seqlens ends at {int(cu[-1])} but hidden has {layer.shape[1]} tokens")
    B = cu.numel() - 1
    if batch_size is not None and batch_size != B:
        raise ValueError(f"batch sizes differ: cu_seqlens has {B} sequences, got {batch_size}")
    return TokenIndex(torch.zeros(B, dtype=torch.int64, device=device), cu[:-1], cu[1:] - cu[:-1], True)


def check_positions(positions, index: TokenIndex):
    """Validate answer positions (``-1`` = absent) against the sequence lengths; int64 [B]."""
    torch = _torch()
    pos = torch.as_tensor(positions, device=index.start.device)
    if pos.dtype.is_floating_point or pos.dtype == torch.bool:
        raise ValueError(f"positions must be integers, got {pos.dtype}")
    pos = pos.long()
    if pos.shape != index.start.shape:
        raise ValueError(
            f"batch sizes differ: positions has shape {tuple(pos.shape)}, expected "
            f"({index.start.numel()},)"
        )
    bad = (pos < -1) | (pos >= index.length)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"positions out of range: positions[{b}] = {int(pos[b])}, sequence {b} has "
            f"{int(index.length[b])} tokens (use -1 for 'no answer')"
        )
    return pos


def check_targets(target_ids, batch_size: int, vocab_size: int, device):
    """Validate target token ids (int, ``[B]``, in ``[0, V)``) and return them as int64."""
    torch = _torch()
    tgt = torch.as_tensor(target_ids, device=device)
    if tgt.dtype.is_floating_point or tgt.dtype == torch.bool:
        raise ValueError(f"target_ids must be integers, got {tgt.dtype}")
    if tgt.shape != (batch_size,):
        raise ValueError(
            f"batch sizes differ: target_ids has shape {tuple(tgt.shape)}, expected ({batch_size},)"
        )
    tgt = tgt.long()
    if bool(((tgt < 0) | (tgt >= vocab_size)).any()):
        raise ValueError(f"target_ids must lie in [0, {vocab_size}), got {tgt.tolist()}")
    return tgt


def _pick_backend(backend: str, tensor, norm: FinalNorm | None):
    """Kernel module for ``backend`` on ``tensor``'s device; None means the torch path.

    ``"auto"`` falls back to torch silently (CPU tensors, triton missing, LayerNorm);
    an explicit ``"triton"`` raises instead.
    """
    check_choice("backend", backend, BACKENDS)
    if backend == "torch" or (backend == "auto" and tensor.device.type != "cuda"):
        return None
    if norm is not None and norm.kind != "rms":
        if backend == "auto":
            return None
        raise ValueError("backend='triton' supports RMS norms only; use backend='torch'")
    try:
        module = importlib.import_module("medscore._triton")
    except ImportError as exc:
        if backend == "auto":
            return None
        raise ImportError("backend='triton' needs triton: pip install 'medscore[triton]'") from exc
    if tensor.device.type != "cuda" and not module.interpreting():
        raise ValueError(f"backend='triton' needs CUDA tensors, got device {tensor.device}")
    return module


# --------------------------------------------------------------------------- answer logits


def read_rows(layer, index: TokenIndex, positions):
    """The hidden rows at ``positions`` (``-1`` reads row 0, masked later): ``[B, H]``, a copy.

    ``layer`` ``[B or 1, T, H]``; ``positions`` int64 ``[B]``. The copy is what ``capture``
    keeps of a layer in a sharded model until the unembedding is whole.
    """
    return layer[index.batch, index.start + positions.clamp(min=0)]


def dot_rows(x, unembed_rows, present, bf16: bool = False):
    """fp32 ``dot(unembed_rows[b], x[b])``, NaN where ``present[b]`` is False; float32 ``[B]``.

    ``x`` ``[B, H]`` (already normed, any float dtype), ``unembed_rows`` ``[B, H]``,
    ``present`` bool ``[B]``. ``bf16``: see :func:`answer_logits_layer_torch`.
    """
    torch = _torch()
    x, u = x.float(), unembed_rows.float()
    if bf16:
        x, u = x.bfloat16().float(), u.bfloat16().float()
    value = (x * u).sum(-1)
    if bf16:
        value = value.bfloat16().float()
    return torch.where(present, value, torch.full_like(value, float("nan")))


def answer_logits_layer_torch(layer, index: TokenIndex, positions, unembed_rows, norm, bf16: bool = False):
    """Reference for one layer: fp32 ``dot(unembed_rows[b], norm(layer[b, pos_b]))``, NaN if absent.

    ``layer`` ``[B or 1, T, H]``; ``positions`` int64 ``[B]``; ``unembed_rows`` ``[B, H]``.
    ``bf16``: the value ``lm_head`` gives under ``torch.autocast(dtype=torch.bfloat16)``:
    both vectors rounded to bf16 (their products are then exact in fp32), summed in fp32,
    the sum rounded to bf16. Returns float32 ``[B]``.
    """
    x = apply_final_norm(read_rows(layer, index, positions), norm)
    return dot_rows(x, unembed_rows, positions >= 0, bf16)


def answer_logits(hidden, positions, target_ids, unembed, norm=None, *, cu_seqlens=None,
                  backend: str = "auto"):
    """Logit-lens logit of ``target_ids[b]`` at ``positions[b]`` in every layer of ``hidden``.

    ``out[b, l] = dot(unembed[target_ids[b]], norm(hidden[l][b, positions[b]]))``, the value
    the full ``lm_head`` would give in column ``target_ids[b]``, for a few dot products.

    Parameters
    ----------
    hidden : list of Tensor [B, T, H], Tensor [L, B, T, H], or packed (see module docstring)
        Per-layer hidden states, fp32/fp16/bf16.
    positions : int Tensor or array [B]
        Token index inside each sequence; ``-1`` where the sequence has no answer.
    target_ids : int Tensor or array [B]
        Token whose logit is read, in ``[0, V)``.
    unembed : Tensor [V, H]
        The unembedding (``lm_head.weight``).
    norm : None, FinalNorm or norm module
        Final norm applied to the hidden state first (None: the raw hidden state).
    cu_seqlens : int Tensor [B + 1], optional
        Sequence boundaries of packed input.
    backend : {"auto", "torch", "triton"}

    Returns
    -------
    Tensor float32 [B, L]; rows with ``positions == -1`` are NaN.
    """
    torch = _torch()
    layers = _layers(hidden, packed=cu_seqlens is not None)
    index = token_index(layers[0], cu_seqlens)
    pos = check_positions(positions, index)
    _check_unembed(unembed, layers[0].shape[-1])
    tgt = check_targets(target_ids, pos.numel(), unembed.shape[0], unembed.device)
    norm = as_final_norm(norm)
    kernels = _pick_backend(backend, layers[0], norm)
    out = torch.empty(pos.numel(), len(layers), dtype=torch.float32, device=layers[0].device)
    if kernels is not None:
        return kernels.answer_logits(layers, index, pos, tgt, unembed, norm, out)
    rows = unembed[tgt.to(unembed.device)].to(layers[0].device)
    for i, layer in enumerate(layers):
        out[:, i] = answer_logits_layer_torch(layer, index, pos, rows, norm)
    return out


def _check_unembed(unembed, hidden_size: int) -> None:
    if unembed.ndim != 2 or unembed.shape[1] != hidden_size:
        raise ValueError(
            f"unembed must be [V, H] with H = {hidden_size}, got shape {tuple(unembed.shape)}"
        )


# --------------------------------------------------------------------------- pooled sketch


def check_mask(mask, layer, index: TokenIndex):
    """Validate a response mask (``[B, T]``, packed ``[N]``) and return it as bool."""
    torch = _torch()
    m = torch.as_tensor(mask, device=layer.device)
    want = (layer.shape[1],) if index.packed else tuple(layer.shape[:2])
    if index.packed and m.ndim == 2 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != want:
        raise ValueError(f"mask must have shape {want} (batch sizes differ), got {tuple(m.shape)}")
    return m != 0


def pooled_sums_layer_torch(layer, index: TokenIndex, mask, norm, chunk: int = 1024):
    """Reference for one layer: per-sequence sum over masked tokens of ``norm(h_t)``, fp32 [B, H].

    Tokens are processed ``chunk`` rows at a time, so the fp32 temporaries stay small
    next to the layer itself (this runs inside the model's forward in ``capture``).
    """
    torch = _torch()
    B, H = index.start.numel(), layer.shape[-1]
    rows = layer.reshape(-1, H)
    owner = _row_owner(layer, index)
    flat_mask = mask.reshape(-1) & (owner < B)  # packed rows past cu_seqlens[-1] belong to none
    sums = torch.zeros(B, H, dtype=torch.float32, device=layer.device)
    for lo in range(0, rows.shape[0], chunk):
        keep = flat_mask[lo:lo + chunk].nonzero().squeeze(1) + lo
        if keep.numel():
            sums.index_add_(0, owner[keep], apply_final_norm(rows[keep], norm))
    return sums


def _row_owner(layer, index: TokenIndex):
    """Sequence of each row of ``layer`` flattened to ``[B*T or N, H]`` (``B``: none)."""
    torch = _torch()
    T = layer.shape[1]
    if not index.packed:
        return torch.arange(index.start.numel(), device=layer.device).repeat_interleave(T)
    ends = index.start + index.length
    return torch.searchsorted(ends, torch.arange(T, device=layer.device), right=True)


def pooled_sketch(hidden, mask, projection, norm=None, *, cu_seqlens=None, backend: str = "auto"):
    """Masked mean of ``norm(h_t)`` over each sequence's response tokens, then a projection.

    ``out[b, l] = (mean_{t: mask[b, t]} norm(hidden[l][b, t])) @ projection``. With
    ``projection = random_projection(unembed, k)`` this is exactly a K-column random
    projection of the mean logit vector; with ``logit_isometry(unembed)`` the Euclidean
    distances between sketches equal the distances between mean logit vectors.

    Parameters
    ----------
    hidden : list of Tensor [B, T, H], Tensor [L, B, T, H], or packed (module docstring)
    mask : bool/int Tensor [B, T] (packed: [N])
        Non-zero on the tokens to pool (the response).
    projection : Tensor [H, K]
    norm : None, FinalNorm or norm module
        Applied to every token before pooling (pooling commutes with the unembedding, not
        with the norm).
    cu_seqlens : int Tensor [B + 1], optional
    backend : {"auto", "torch", "triton"}

    Returns
    -------
    Tensor float32 [B, L, K]; sequences with no masked token are NaN.
    """
    torch = _torch()
    layers = _layers(hidden, packed=cu_seqlens is not None)
    index = token_index(layers[0], cu_seqlens)
    m = check_mask(mask, layers[0], index)
    H = layers[0].shape[-1]
    if projection.ndim != 2 or projection.shape[0] != H:
        raise ValueError(f"projection must be [H, K] with H = {H}, got {tuple(projection.shape)}")
    norm = as_final_norm(norm)
    kernels = _pick_backend(backend, layers[0], norm)
    counts = _masked_counts(m, index)
    sums = torch.empty(len(layers), counts.numel(), H, dtype=torch.float32, device=layers[0].device)
    for i, layer in enumerate(layers):
        if kernels is not None:
            sums[i] = kernels.pooled_sums(layer, index, m, norm)
        else:
            sums[i] = pooled_sums_layer_torch(layer, index, m, norm)
    means = sums / counts.to(sums.dtype).reshape(1, -1, 1)  # 0/0 = NaN: no response tokens
    return (means @ projection.to(means.device).float()).transpose(0, 1).contiguous()


def _masked_counts(mask, index: TokenIndex):
    torch = _torch()
    if not index.packed:
        return mask.sum(1)
    sums = torch.cumsum(torch.nn.functional.pad(mask.long(), (1, 0)), 0)
    return sums[index.start + index.length] - sums[index.start]


def random_projection(unembed, k: int, seed: int = 0):
    """``unembed^T R`` for a seeded Gaussian ``R`` ``[V, K]`` with entries ``N(0, 1/K)``.

    Compute it once per weight update; ``h @ P`` is then exactly ``R^T (unembed @ h)``,
    a Johnson-Lindenstrauss projection of the logit vector.

    Parameters
    ----------
    unembed : Tensor [V, H]
    k : int, number of columns K (>= 1)
    seed : int, seed of the CPU generator that draws ``R`` (device independent)

    Returns
    -------
    Tensor float32 [H, K] on ``unembed``'s device.
    """
    torch = _torch()
    k = check_int("k", k, low=1)
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    V, H = unembed.shape
    out = torch.zeros(H, k, dtype=torch.float64)
    chunk = 8192  # bounds the temporary R block; the result does not depend on it
    for lo in range(0, V, chunk):
        hi = min(V, lo + chunk)
        r = torch.randn(hi - lo, k, generator=gen, dtype=torch.float64) / k ** 0.5
        out += unembed[lo:hi].detach().to("cpu", torch.float64).T @ r
    return out.float().to(unembed.device)


def logit_isometry(unembed):
    """``P`` ``[H, H]`` with ``||x @ P|| == ||unembed @ x||`` for every ``x``.

    ``P`` is the lower Cholesky factor of the Gram matrix ``unembed^T unembed`` (computed
    in float64), so sketches ``x @ P`` keep the Euclidean geometry of the full logit space
    in ``H`` dimensions. Needs ``unembed`` of full column rank.

    Returns
    -------
    Tensor float32 [H, H] on ``unembed``'s device.
    """
    torch = _torch()
    u = unembed.detach().to("cpu", torch.float64)
    chol, info = torch.linalg.cholesky_ex(u.T @ u)
    if int(info) != 0:
        raise ValueError("unembed is rank deficient: its logit space has no H-dim isometry")
    return chol.float().to(unembed.device)


# --------------------------------------------------------------------------- answer markers

from ._answer_markers import (  # noqa: E402
    AnswerLocations,
    answer_marker_ids,
    answer_targets,
    find_answer_positions,
    find_paper_marker_ends,
    locate_answers,
    paper_marker_ids,
)

__all__ = [
    "AnswerLocations",
    "FinalNorm",
    "answer_logits",
    "answer_marker_ids",
    "answer_targets",
    "as_final_norm",
    "find_answer_positions",
    "find_paper_marker_ends",
    "locate_answers",
    "logit_isometry",
    "paper_marker_ids",
    "pooled_sketch",
    "random_projection",
]
