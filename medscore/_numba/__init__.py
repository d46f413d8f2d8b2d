"""The Numba backend of exact HDBSCAN*: every stage of ``docs/SPEC.md`` as Numba kernels.

Exports the backend interface shared with ``medscore._core``. Kernels are compiled on first
use (and cached on disk), so the first call of a session is slow.
"""
from __future__ import annotations

import numpy as np

from .._dtypes import CONDENSED, LINKAGE, MST_EDGE
from .condense import condense_tree
from .core_distance import _as_points, core_distances, effective_min_samples, nearest_neighbors, neighbors_in_tree
from .kdtree import build_kdtree
from .linkage import single_linkage
from .mst import minimum_spanning_tree, spanning_forest_of_edges, spanning_tree_in_tree
from .select import select_clusters, simplify_hierarchy
from .threads import thread_limit

#: Neighbours listed per point to seed Borůvka: enough that most early-round edges are found
#: without a tree search, which prunes poorly in high dimension.
SEED_NEIGHBORS = 16


def fit(X, min_cluster_size: int, min_samples: int, method: str = "eom",
        allow_single_cluster: bool = False, epsilon: float = 0.0, n_threads: int = 0):
    """Run every stage of the SPEC on ``X``.

    Parameters
    ----------
    X : float64 [N, D], N >= 1
    min_cluster_size : int >= 2
    min_samples : int >= 1 (clipped to N - 1, at least 1)
    method : {"eom", "leaf"}
    allow_single_cluster : bool
    epsilon : float >= 0
    n_threads : int, 0 for every thread Numba has

    Returns
    -------
    tuple of core (float64 [N]), mst (MST_EDGE [N-1]), linkage (LINKAGE [N-1]),
    condensed (CONDENSED [R]), labels (int64 [N]), probabilities (float64 [N]) and
    persistence (float64 [K]).
    """
    X = _as_points(X)
    n = X.shape[0]
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    with thread_limit(n_threads):
        tree = build_kdtree(X)
        if n == 1:
            core, mst = np.zeros(1), np.empty(0, dtype=MST_EDGE)
        else:
            # One neighbour search gives the core distances and the MST's seed edges.
            k = effective_min_samples(min_samples, n)
            neighbors = neighbors_in_tree(tree, min(n - 1, max(k, SEED_NEIGHBORS)))
            core = np.ascontiguousarray(neighbors[1][:, k - 1])
            mst = spanning_tree_in_tree(tree, core, neighbors=neighbors)
    linkage = single_linkage(mst, n)
    condensed = condense_tree(linkage, n, min_cluster_size)
    labels, probabilities, persistence = select_clusters(condensed, n, method, allow_single_cluster, epsilon)
    return core, mst, linkage, condensed, labels, probabilities, persistence


__all__ = [
    "core_distances", "nearest_neighbors", "minimum_spanning_tree", "spanning_forest_of_edges",
    "single_linkage", "condense_tree", "select_clusters", "simplify_hierarchy", "fit", "MST_EDGE", "LINKAGE", "CONDENSED",
]
