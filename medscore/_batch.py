"""What a step of rollouts is and how its fields are read (``medscore.Batch``).

Fingerprints, keys and flags may come as NumPy arrays, torch tensors on any device or
sequences; these helpers turn them into the arrays the memory engines take, with precise
errors, and give penalties back in the kind of array the fingerprints came in.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Batch:
    """One step of rollouts.

    Attributes
    ----------
    fingerprints : array [N, D] (numpy or torch on any device; float16/bfloat16/float32/float64)
    keys : sequence [N] of int, str or bytes (numpy or torch integer arrays too): the stable
        id of each rollout's prompt.
    correct : bool [N]: whether each rollout is correct.
    step : int or None: the training step; None counts the calls of ``penalize``.
    valid : bool [N] or None: rows with False have no fingerprint (no penalty, nothing stored).
    """

    fingerprints: Any
    keys: Any
    correct: Any
    step: int | None = None
    valid: Any = None


def batch_fields(batch) -> dict:
    if isinstance(batch, Batch):
        return dict(fingerprints=batch.fingerprints, keys=batch.keys, correct=batch.correct,
                    step=batch.step, valid=batch.valid)
    if isinstance(batch, Mapping):
        missing = [f for f in ("fingerprints", "keys", "correct") if f not in batch]
        if missing:
            raise ValueError(f"batch is missing fields {missing}")
        extra = sorted(set(batch) - {"fingerprints", "keys", "correct", "step", "valid"})
        if extra:
            raise ValueError(f"batch has unknown fields {extra}")
        return dict(batch)
    raise TypeError(f"batch must be a medscore.Batch or a mapping, got {type(batch).__name__}")


def to_numpy(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return x


def as_float_rows(fingerprints):
    arr = np.asarray(to_numpy(fingerprints))
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"fingerprints must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"fingerprints must be a non-empty [N, D] array, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64), arr.shape[0]


def as_bool_vector(values, n: int, name: str) -> np.ndarray:
    arr = np.asarray(to_numpy(values))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like the fingerprints, got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.integer) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def canonical_key(key):
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"keys must be ints, strings or bytes, got the bool {key!r}")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        return str(key)
    if isinstance(key, (bytes, np.bytes_)):
        return bytes(key)
    raise TypeError(f"keys must be ints, strings or bytes, got {type(key).__name__}")


def unique_keys(keys, n: int):
    """(unique canonical keys, inverse int64 [n]) without a Python loop for numeric/str arrays."""
    raw = to_numpy(keys)
    if isinstance(raw, (list, tuple)):
        types = set(map(type, raw))
        homogeneous = types <= {int} or types <= {str}
        try:
            arr = np.asarray(raw) if homogeneous and raw else np.asarray(raw, dtype=object)
        except OverflowError:  # ints beyond int64
            arr = np.asarray(raw, dtype=object)
    else:
        arr = np.asarray(raw)
        if arr.dtype.kind == "b":
            raise TypeError("keys must be ints, strings or bytes, got booleans")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"keys must have shape ({n},) like the fingerprints, got {arr.shape}")
    if arr.dtype.kind in "iu" and n and (arr.dtype.kind == "i" or int(arr.max()) < 2**63):
        unique, inverse = _unique_int64(arr.astype(np.int64, copy=False))
        return unique.tolist(), inverse
    if arr.dtype.kind in "iuU":
        unique, inverse = np.unique(arr, return_inverse=True)
        convert = int if arr.dtype.kind in "iu" else str
        return [convert(k) for k in unique.tolist()], inverse.reshape(-1)
    if arr.dtype.kind in "OS":
        canon = [canonical_key(k) for k in (raw if arr.dtype.kind == "O" else arr.tolist())]
        first = {k: None for k in canon}
        index = {k: i for i, k in enumerate(first)}
        return list(first), np.fromiter((index[k] for k in canon), dtype=np.int64, count=n)
    raise TypeError(f"keys must be ints, strings or bytes, got an array of dtype {arr.dtype}")


def _unique_int64(arr: np.ndarray):
    """np.unique(arr, return_inverse=True) of int64 [n]: natively (O(n) over a dense range of
    values) when the compiled extension is there, else by NumPy with the same result."""
    native = _native_unique()
    if native is not None:
        return native(arr)
    unique, inverse = np.unique(arr, return_inverse=True)
    return unique, inverse.reshape(-1)


@functools.cache
def _native_unique():
    try:
        from ._core import unique_int64
    except ImportError:  # pragma: no cover - a build without the extension
        return None
    return unique_int64


def like_input(penalties: np.ndarray, fingerprints):
    if hasattr(fingerprints, "detach") and hasattr(fingerprints, "device"):
        import torch

        return torch.from_numpy(penalties.astype(np.float32)).to(fingerprints.device)
    return penalties
