"""Triton kernels for :mod:`medscore.fingerprint` (CUDA tensors; imported only on demand).

Importing this package imports triton and raises ``ImportError`` when it is missing.
Under ``TRITON_INTERPRET=1`` the kernels also run on CPU tensors (how the tests check them).
"""
from __future__ import annotations

import os

import triton  # noqa: F401  (the ImportError tells the caller triton is missing)

from .answer_logits import answer_logits
from .pooled_sketch import pooled_sums


def interpreting() -> bool:
    """Whether triton runs in interpreter mode (kernels accept CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


__all__ = ["answer_logits", "interpreting", "pooled_sums"]
