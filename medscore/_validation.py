"""Input checks, done once at the Python boundary, with messages naming what came."""
from __future__ import annotations

import numbers

import numpy as np


#: The largest value of the native code's integers (int64_t) and thread counts (int).
INT64_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
#: The largest step a memory takes, so that "the last step + 1" never overflows int64.
MAX_STEP = INT64_MAX - 1


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``ValueError``/``TypeError`` saying why not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_float(name: str, value, low: float | None = None) -> float:
    """Return ``value`` as a finite float, raising ``ValueError`` when it is not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def as_points(X, name: str = "X", n_features: int | None = None,
              allow_non_finite: bool = False) -> np.ndarray:
    """Validate a point matrix and return it as C-contiguous float64 ``[N, D]``.

    Accepts any array-like of real numbers (float16/32/64, ints, any memory layout, torch
    tensors on any device). Raises ``ValueError`` for the wrong rank, an empty matrix, a
    dimension other than ``n_features``, or NaN/Inf (naming the first bad row) unless
    ``allow_non_finite`` (the caller then deals with those rows).
    """
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # torch.Tensor, without importing torch
        X = X.detach().cpu()
        if str(X.dtype) == "torch.bfloat16":
            X = X.float()
        X = X.numpy()
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional [n_samples, n_features], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got shape {arr.shape}, need at least one sample")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features: got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, expected {n_features}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if allow_non_finite:
        return arr
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name} contains NaN or Inf: first bad row is {row} ({int((~finite).sum())} bad rows in all)"
        )
    return arr
