"""Density-Based Clustering Validation (DBCV, Moulavi et al. 2014), under ``hdbscan``'s names.

Two functions, each giving what the ``hdbscan`` library gives:

- :func:`validity_index` (``hdbscan.validity.validity_index``): the full DBCV of a labelling
  of ``X``, from the all-points core distances and each cluster's own minimum spanning tree
  of mutual reachability, O(n_k^2) memory per cluster.
- :func:`relative_validity` (``hdbscan.HDBSCAN.relative_validity_``): the library's fast
  approximation from the fit's minimum spanning tree, for comparing fits of one data set.

The library's steps are followed as it takes them, including the parts that look
arbitrary, so that the numbers move over: the internal tree of a cluster is Prim's from its
first point (ties to the lower index) and then relinks each edge to the first earlier vertex
whose distance is ``numpy.isclose`` to the edge weight; its internal vertices are those of
degree > 1. Distances are medscore's bit-defined Euclidean distance (docs/SPEC.md, stage 1),
where the library uses scikit-learn's ``pairwise_distances`` (dot-product form) and scipy's
``cdist``: values agree to rounding.
"""
from __future__ import annotations

import numpy as np

from ._validation import as_points


def _cluster_distances(X, members, metric):
    if metric == "precomputed":
        return X[np.ix_(members, members)]
    from .prediction import _distances

    return _distances(X[members], X[members])


def _all_points_core_distance(distances: np.ndarray, d: float) -> np.ndarray:
    """float64 [n]: ``(mean over the others of (1 / dist) ** d) ** (-1 / d)``, zero distances
    left out of the sum (the library's ``all_points_core_distance``)."""
    inverse = distances.copy()
    nonzero = inverse != 0
    with np.errstate(divide="ignore", over="ignore"):
        inverse[nonzero] = (1.0 / inverse[nonzero]) ** d
        result = inverse.sum(axis=1)
        result /= distances.shape[0] - 1 if distances.shape[0] > 1 else np.nan
        if result.sum() == 0 or distances.shape[0] == 1:
            return np.zeros(distances.shape[0])
        return result ** (-1.0 / d)


def _prim(weights: np.ndarray) -> np.ndarray:
    """float64 [n-1, 3] (source, target, weight): the library's ``mst_linkage_core``, Prim's
    from vertex 0 with strict comparisons (ties to the lower index)."""
    n = weights.shape[0]
    out = np.zeros((max(n - 1, 0), 3))
    in_tree = np.zeros(n, bool)
    current = np.full(n, np.finfo(np.float64).max)
    source = np.zeros(n, np.int64)
    node = 0
    for i in range(1, n):
        in_tree[node] = True
        better = ~in_tree & (weights[node] < current)
        current[better] = weights[node][better]
        source[better] = node
        masked = np.where(in_tree, np.inf, current)
        new = int(np.argmin(masked))
        out[i - 1] = (source[new], new, current[new])
        node = new
    return out


def _internal_tree(weights: np.ndarray):
    """(internal vertices int64, internal edges float64 [E, 3]), the library's
    ``internal_minimum_spanning_tree``."""
    linkage = _prim(weights)
    tree = linkage.copy()
    for index in range(1, tree.shape[0]):
        row = tree[index]
        target = int(row[1])
        candidates = np.flatnonzero(np.isclose(weights[target], row[2]))
        candidates = np.intersect1d(candidates, linkage[:index, :2].astype(np.int64))
        candidates = candidates[candidates != target]
        if candidates.size:
            row[0] = candidates[0]
    ends = tree[:, :2].ravel().astype(np.int64)
    degree = np.bincount(ends, minlength=weights.shape[0]) if ends.size else np.zeros(0, np.int64)
    vertices = np.flatnonzero(degree > 1)
    if vertices.size == 0:
        vertices = np.zeros(1, np.int64)
    selection = np.isin(tree[:, 0], vertices) & np.isin(tree[:, 1], vertices)
    return vertices, (tree[selection] if selection.any() else tree)


def validity_index(X, labels, metric="euclidean", d=None, per_cluster_scores=False,
                   mst_raw_dist=False, verbose=False):
    """DBCV of ``labels`` on ``X`` (``hdbscan.validity.validity_index``), in [-1, 1].

    For each cluster: its all-points core distances, its minimum spanning tree under the
    mutual reachability of those (raw distances with ``mst_raw_dist``), the tree's internal
    vertices and its density sparseness (largest internal edge). The density separation of
    two clusters is the smallest mutual reachability between their internal vertices. A
    cluster scores ``(sep - sparseness) / max(sep, sparseness)`` with ``sep`` its smallest
    separation; the index is the average weighted by cluster size over all N points (noise
    counts in N and scores nothing). With a single cluster the separation is infinite and
    the score NaN, as in the library.

    Parameters
    ----------
    X : array-like [N, D], or [N, N] distances with ``metric="precomputed"``
    labels : int array-like [N], -1 for noise
    metric : {"euclidean", "precomputed"}
    d : int, the dimension for the core distances; required with "precomputed", else D
    per_cluster_scores : bool, also return the per-cluster scores
    mst_raw_dist : bool, trees and separations on raw distances (no core distances)
    verbose : bool, print each cluster's separation and sparseness

    Returns
    -------
    float, and float64 [K] per cluster with ``per_cluster_scores`` (entries of labels
    without points are left undefined, as in the library)
    """
    if metric not in ("euclidean", "precomputed"):
        raise ValueError(f"metric must be 'euclidean' or 'precomputed', got {metric!r}")
    if metric == "precomputed":
        if d is None:
            raise ValueError("If metric is precomputed a d value must be provided!")
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[0] != X.shape[1]:
            raise ValueError(f"a precomputed X must be a square distance matrix, got shape {X.shape}")
    else:
        X = as_points(X)
        d = X.shape[1]
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {X.shape[0]} points")
    labels = labels.astype(np.int64)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    members = [np.flatnonzero(labels == k) for k in range(n_clusters)]
    core, nodes, sparseness = {}, {}, {}
    for k, idx in enumerate(members):
        if idx.size == 0:
            continue
        dist = _cluster_distances(X, idx, metric)
        if mst_raw_dist:
            core[k], weights = None, dist
        else:
            core[k] = _all_points_core_distance(dist, float(d))
            weights = np.maximum(dist, np.maximum(core[k][:, None], core[k][None, :]))
        nodes[k], edges = _internal_tree(weights)
        sparseness[k] = edges[:, 2].max() if edges.size else 0.0
    separation = np.full((n_clusters, n_clusters), np.inf)
    for i in range(n_clusters):
        for j in range(i + 1, n_clusters):
            if members[i].size == 0 or members[j].size == 0:
                continue
            a, b = members[i][nodes[i]], members[j][nodes[j]]
            if metric == "precomputed":
                dist = X[np.ix_(a, b)]
            else:
                from .prediction import _distances

                dist = _distances(X[a], X[b])
            if not mst_raw_dist:
                dist = np.maximum(dist, np.maximum(core[i][nodes[i]][:, None], core[j][nodes[j]][None, :]))
            separation[i, j] = separation[j, i] = dist.min()
    scores = np.empty(n_clusters)
    result = 0.0
    for k in range(n_clusters):
        if members[k].size == 0:
            continue
        sep = separation[k].min()
        with np.errstate(invalid="ignore"):
            scores[k] = (sep - sparseness[k]) / max(sep, sparseness[k])
        if verbose:
            print(f"Minimum density separation: {sep}")
            print(f"Density sparseness: {sparseness[k]}")
        result += (members[k].size / float(X.shape[0])) * scores[k]
    return (result, scores) if per_cluster_scores else result


def relative_validity(minimum_spanning_tree, labels) -> float:
    """The library's DBCV approximation (``relative_validity_``) from a fit's MST.

    Per cluster: ``DSC`` the largest MST edge inside it, ``DSPC`` the smallest MST edge to
    another cluster (noise edges excluded). An infinite ``DSPC`` (no MST edge to another
    cluster) becomes twice the largest MST weight, or with one cluster twice the smallest
    edge between a cluster and noise (the largest weight when there is none). The score is
    ``sum_k size_k * (DSPC_k - DSC_k) / max(DSPC_k, DSC_k) / N``. Only comparable between
    fits of the same data.

    Parameters
    ----------
    minimum_spanning_tree : float64 [N-1, 3] (u, v, weight)
    labels : int64 [N]
    """
    labels = np.asarray(labels, np.int64)
    mst = np.asarray(minimum_spanning_tree, np.float64).reshape(-1, 3)
    sizes = np.bincount(labels + 1, minlength=1)
    cluster_size = sizes[1:]
    total = sizes[0] + np.sum(cluster_size)
    k = len(cluster_size)
    dsc = np.zeros(k)
    dspc = np.full(k, np.inf)
    u, v, w = mst[:, 0].astype(np.intp), mst[:, 1].astype(np.intp), mst[:, 2]
    a, b = labels[u], labels[v]
    max_distance = w.max() if w.size else 0.0
    both_noise = (a == -1) & (b == -1)
    one_noise = (a == -1) ^ (b == -1)
    neither = ~both_noise & ~one_noise
    min_outlier_sep = w[one_noise].min() if one_noise.any() else np.inf
    same = neither & (a == b)
    diff = neither & (a != b)
    np.maximum.at(dsc, a[same], w[same])
    np.minimum.at(dspc, a[diff], w[diff])
    np.minimum.at(dspc, b[diff], w[diff])
    if min_outlier_sep == np.inf:
        min_outlier_sep = max_distance
    dspc[dspc == np.inf] = 2 * (max_distance if k > 1 else min_outlier_sep)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = (dspc - dsc) / np.maximum(dspc, dsc)
    return float(np.sum(cluster_size * index / total))
