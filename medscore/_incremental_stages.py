"""The batch stages ``IncrementalHDBSCAN`` borrows from a backend, with exact fallbacks.

The backends (``docs/SPEC.md``, backend table) may not export every function yet, or may not
take ``initial_forest``; the fallbacks here are exact but quadratic, so results never depend
on which path ran.
"""
from __future__ import annotations

import numpy as np

from ._dtypes import MST_EDGE


def effective_k(min_samples: int, n_points: int) -> int:
    """Neighbour rank of the core distance (SPEC stage 1): min(min_samples, N - 1), >= 1."""
    return max(min(int(min_samples), int(n_points) - 1), 1)


def _kernels():
    from ._numba import incremental

    return incremental


class Stages:
    """Backend stage functions under fixed names, falling back to exact kernels."""

    def __init__(self, module):
        self.module = module

    def nearest_neighbors(self, X: np.ndarray, k: int):
        """Exact k nearest neighbours of every row (int64 [N, k], float64 [N, k])."""
        fn = getattr(self.module, "nearest_neighbors", None)
        if fn is not None:
            index, dist = fn(X, k)
            return np.asarray(index, np.int64), np.asarray(dist, np.float64)
        return _kernels().knn_of_rows(X, np.arange(X.shape[0]), k, 0, X.shape[0])

    def minimum_spanning_tree(self, X: np.ndarray, core: np.ndarray, forest=None) -> np.ndarray:
        """Exact MST (MST_EDGE [N-1], sorted); contains ``forest`` when given."""
        fn = getattr(self.module, "minimum_spanning_tree", None)
        if fn is None:
            from ._incremental_mst import edges_of

            u, v, w = _kernels().prim_of_rows(X, np.arange(X.shape[0]), core)
            return edges_of(u, v, w)
        if forest is not None:
            try:
                return fn(X, core, initial_forest=forest)
            except TypeError:  # backend without initial_forest: the full MST is as exact
                pass
        return fn(X, core)

    def single_linkage(self, mst, n):
        return self.module.single_linkage(mst, n)

    def condense_tree(self, linkage, n, min_cluster_size):
        return self.module.condense_tree(linkage, n, min_cluster_size)

    def select_clusters(self, condensed, n, method, allow_single_cluster, epsilon):
        return self.module.select_clusters(condensed, n, method, allow_single_cluster, epsilon)


def stages_of(module) -> Stages:
    """Wrap a backend module (``medscore._core`` or ``medscore._numba``)."""
    return Stages(module)


def full_graph(stages: Stages, X: np.ndarray, k: int):
    """Neighbour lists, core distances and MST of X from scratch.

    Returns
    -------
    (int64 [N, k], float64 [N, k], float64 [N], MST_EDGE [N-1])
    """
    n = X.shape[0]
    if n == 1:
        return (np.full((1, 1), -1, np.int64), np.full((1, 1), np.inf), np.zeros(1),
                np.empty(0, MST_EDGE))
    index, dist = stages.nearest_neighbors(X, k)
    core = np.ascontiguousarray(dist[:, -1])
    return index, dist, core, stages.minimum_spanning_tree(X, core)
