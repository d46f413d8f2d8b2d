"""Seeded synthetic data sets shared by the benchmark suites.

Every generator is deterministic for a given seed, so results from different runs and
machines time the same points.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SEED = 0


def blobs(n: int, d: int, *, centers: int = 10, cluster_std: float = 1.0,
          seed: int = DEFAULT_SEED) -> np.ndarray:
    """Isotropic Gaussian blobs (``sklearn.datasets.make_blobs``).

    Parameters
    ----------
    n, d : int
        Number of points and dimensions.
    centers : int, default 10
    cluster_std : float, default 1.0
    seed : int, default 0

    Returns
    -------
    float64 ndarray [n, d], C-contiguous.
    """
    from sklearn.datasets import make_blobs

    points, _ = make_blobs(n_samples=n, n_features=d, centers=centers,
                           cluster_std=cluster_std, random_state=seed)
    return np.ascontiguousarray(points, dtype=np.float64)
