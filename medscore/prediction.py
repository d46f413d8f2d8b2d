"""Prediction, soft clustering and GLOSH outlier scores, under the ``hdbscan`` library's names.

``approximate_predict``, ``approximate_predict_scores``, ``membership_vector`` and
``all_points_membership_vectors`` take a fitted ``medscore.HDBSCAN(prediction_data=True)``
and give what ``hdbscan.prediction`` gives for ``hdbscan.HDBSCAN(prediction_data=True)`` on
the same data (tested with the library as the oracle, ``tests/test_prediction.py``). The
formulas are the library's, stated in each docstring, including the parts that look
arbitrary, because code moving over expects the same numbers:

- A new point's neighbours are its ``2 * min_samples`` nearest fitted points; its own core
  distance is the distance to the ``min_samples + 1``-th of them, while the fitted points'
  prediction core distances count the point itself (the ``min_samples - 1``-th other
  point), one fewer than the core distances of the fit.
- It joins the neighbour with the smallest mutual reachability ``max(core_new, core_nb,
  d)`` (ties: the nearer neighbour), at ``lambda = 1 / that`` (DBL_MAX for 0).
- ``membership_vector`` combines a distance vector (inverse distance to each cluster's
  exemplars) and an outlier vector (a softmax of ``m / (m - merge lambda)``) as
  ``dist ** 0.5 * outlier ** 2``, the lambda going through float32 on the way as in the
  library; ``all_points_membership_vectors`` combines them as ``dist * outlier`` with
  ``exp(-(m + 1e-8) / merge lambda)`` per-cluster scores.

Where the library is not well defined medscore differs, on purpose: the selected clusters
are the fit's (the library rebuilds them from labels and can pick a sub-cluster of a
selected cluster that sheds no point of its own); a fit whose only cluster is the root
predicts into it (the library predicts noise); fewer than ``2 * min_samples`` fitted points
are allowed (the library's neighbour query raises); a fit without clusters gives
membership vectors of shape ``[N, 0]`` (the library: zeros of shape ``[N]``); labels are
int64 (the library: int32).

All of it is NumPy on the fit's results; the fitted points' neighbour lists come from the
fit's backend. A new point's neighbours come from an exact tree search over the fitted
points (``medscore/_numba/query.py``, built on first use and kept in ``prediction_data_``)
when numba is installed, else from brute force; both give the same neighbours, ordered by
(distance, index). Distances use medscore's bit-defined sum (docs/SPEC.md, stage 1).
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

from ._validation import as_points
from .trees import ClusterInfo, cluster_info

DBL_MAX = np.finfo(np.float64).max


@dataclass(frozen=True)
class PredictionData:
    """What prediction needs from a fit, computed once (``HDBSCAN.prediction_data_``).

    Attributes
    ----------
    raw_data : float64 [N, D], the fitted points
    core_distances : float64 [N], distance to the ``min_samples - 1``-th other point (0 for
        ``min_samples = 1``), the library's prediction core distance
    min_samples : int, as given to the estimator (``min_cluster_size`` when None)
    selected : int64 [K], condensed-tree id of the cluster labelled k
    exemplars : list of K float64 arrays [E_k, D], the points of largest lambda in each leaf
        below cluster k
    point_parent : int64 [N], the cluster each point falls out of
    point_lambda : float64 [N], the lambda at which it does
    info : :class:`medscore.trees.ClusterInfo` of the condensed tree
    cluster_label : int64 [C], label of the selected cluster at or above each cluster, -1 if none
    label_max_lambda : float64 [C], death of that selected cluster
    subtree_max_lambda : float64 [C], largest lambda of any row below each cluster (GLOSH)
    """

    raw_data: np.ndarray
    core_distances: np.ndarray
    min_samples: int
    selected: np.ndarray
    exemplars: list
    point_parent: np.ndarray
    point_lambda: np.ndarray
    info: ClusterInfo
    cluster_label: np.ndarray
    label_max_lambda: np.ndarray
    subtree_max_lambda: np.ndarray
    #: kd-tree over ``raw_data`` for the neighbour search, built on first use (a cache)
    search_tree: object = field(default=None, repr=False, compare=False)


def make_prediction_data(X, condensed, selected, min_samples, nearest_neighbors,
                         label_names=None) -> PredictionData:
    """Build :class:`PredictionData` of a fit.

    Parameters
    ----------
    X : float64 [N, D], the fitted points (N >= 2)
    condensed : CONDENSED [R], the fit's condensed tree
    selected : int64 [K], the fit's selected clusters in label order
    min_samples : int, the estimator's ``min_samples`` (or ``min_cluster_size``)
    nearest_neighbors : the backend's ``nearest_neighbors(X, k)``
    label_names : int64 [K] or None, the label ``approximate_predict`` gives to selected
        cluster k (``IncrementalHDBSCAN``'s stable labels); None for ``0 .. K-1``
    """
    n = X.shape[0]
    k_other = min(min_samples - 1, n - 1)
    core = (nearest_neighbors(X, k_other)[1][:, -1].copy() if k_other >= 1 else np.zeros(n))
    info = cluster_info(condensed, n)
    points = condensed["child"] < n
    point_parent = np.full(n, n, np.int64)  # a single point has no row; it is in the root
    point_parent[condensed["child"][points]] = condensed["parent"][points]
    point_lambda = np.zeros(n)
    point_lambda[condensed["child"][points]] = condensed["lambda_val"][points]
    cluster_label = np.full(info.n_clusters, -1, np.int64)
    label_max = np.zeros(info.n_clusters)
    for label, s in enumerate(selected.tolist()):
        below = _descendants(info, s)
        cluster_label[below - n] = label if label_names is None else label_names[label]
        label_max[below - n] = info.death[s - n]
    exemplars = [X[_exemplar_points(condensed, info, s)] for s in selected.tolist()]
    return PredictionData(X, core, int(min_samples), np.asarray(selected, np.int64), exemplars,
                          point_parent, point_lambda, info, cluster_label, label_max,
                          subtree_max_lambda(info))


def subtree_max_lambda(info: ClusterInfo) -> np.ndarray:
    """float64 [C]: the largest lambda of any row in each cluster's subtree (GLOSH's lambda_max)."""
    deaths = info.death.copy()
    for c in range(info.n_clusters - 1, 0, -1):  # children have larger ids than parents
        p = int(info.parent[c]) - info.root
        deaths[p] = max(deaths[p], deaths[c])
    return deaths


def outlier_scores(condensed: np.ndarray, n: int) -> np.ndarray:
    """GLOSH outlier scores (Campello et al. 2015) of the ``n`` points of a condensed tree.

    A point leaving cluster ``C`` at ``lambda_p`` scores ``(m - lambda_p) / m``, with ``m``
    the largest lambda of any row in ``C``'s subtree: 0 for the cluster's densest points,
    towards 1 for points that leave it early. As in the ``hdbscan`` library the score is 0
    where ``m`` is 0 or ``lambda_p`` is infinite. Where ``m`` is infinite (a cluster holding
    duplicate points) and ``lambda_p`` finite, the score is 1, the limit of
    ``1 - lambda_p / m`` (the library's formula gives NaN there).

    Parameters
    ----------
    condensed : CONDENSED [R]
    n : int, number of points

    Returns
    -------
    float64 ndarray [n]; zeros for n == 1
    """
    scores = np.zeros(n)
    if condensed.size == 0:
        return scores
    info = cluster_info(condensed, n)
    deaths = subtree_max_lambda(info)
    points = condensed["child"] < n
    lam = condensed["lambda_val"][points]
    m = deaths[condensed["parent"][points] - n]
    with np.errstate(invalid="ignore"):
        value = np.where(np.isinf(m), 1.0, (m - lam) / np.where(m > 0, m, 1.0))
    value[(m == 0) | ~np.isfinite(lam)] = 0.0
    scores[condensed["child"][points]] = value
    return scores


def _descendants(info: ClusterInfo, s: int) -> np.ndarray:
    """int64 ids of cluster ``s`` and every cluster below it."""
    inside = np.zeros(info.n_clusters, bool)
    inside[s - info.root] = True
    for c in range(s - info.root + 1, info.n_clusters):
        inside[c] = inside[info.parent[c] - info.root]
    return np.flatnonzero(inside) + info.root


def _exemplar_points(condensed, info: ClusterInfo, s: int) -> np.ndarray:
    """Points of the leaves below ``s`` (or of ``s`` if it is a leaf) at their leaf's death."""
    below = _descendants(info, s)
    has_child = np.zeros(info.n_clusters, bool)
    has_child[info.parent[1:] - info.root] = True
    leaves = below[~has_child[below - info.root]]
    rows = np.isin(condensed["parent"], leaves) & (condensed["child"] < info.root)
    rows &= condensed["lambda_val"] == info.death[np.maximum(condensed["parent"], info.root) - info.root]
    return np.sort(condensed["child"][rows])


#: Prediction data of live ``IncrementalHDBSCAN`` clusterings: model -> (ids_, labels_ it was
#: built for, PredictionData). Ids are never reused, so equal ids and labels mean that no
#: update happened since (the clustering is a function of the live points).
_LIVE_CACHE = weakref.WeakKeyDictionary()


def live_prediction_data(model) -> PredictionData:
    """:class:`PredictionData` of an ``IncrementalHDBSCAN``'s live clustering.

    Read from its public attributes only: the live points (``minimum_spanning_tree_.data``,
    in ``ids_`` order), ``condensed_tree_``, ``labels_`` and ``probabilities_``; ``min_samples``
    as the estimator's. It is what ``HDBSCAN(prediction_data=True)`` would build on the live
    points, except that predicted labels are the stream's stable labels and membership
    columns follow the stable labels in increasing order (``np.unique(labels_[labels_ >= 0])``).
    Cached until the next update (kept while the model lives).
    """
    from ._backends import get_backend
    from .trees import selected_clusters

    if not len(model):
        raise ValueError("the IncrementalHDBSCAN holds no points: insert some before predicting")
    labels, ids = model.labels_, model.ids_
    entry = _LIVE_CACHE.get(model)
    if entry is not None and np.array_equal(entry[0], ids) and np.array_equal(entry[1], labels):
        return entry[2]
    points = model.minimum_spanning_tree_.data
    n = points.shape[0]
    names, raw = np.unique(labels, return_inverse=True)
    raw = raw.reshape(-1).astype(np.int64)
    if names.size and names[0] < 0:
        raw -= 1  # noise keeps -1, the stable labels become 0 .. K-1 in increasing order
        names = names[1:]
    condensed = model.condensed_tree_.to_numpy()
    selected = selected_clusters(condensed, n, raw, model.probabilities_)
    min_samples = model.min_cluster_size if model.min_samples is None else int(model.min_samples)
    backend = get_backend(getattr(model, "backend", "cpp"))
    data = make_prediction_data(points, condensed, selected, min_samples,
                                lambda X, k: backend.nearest_neighbors(X, k),
                                label_names=names.astype(np.int64))
    _LIVE_CACHE[model] = (np.array(ids), np.array(labels), data)
    return data


def _prediction_data(model) -> PredictionData:
    if hasattr(model, "ids_") and hasattr(model, "insert"):  # IncrementalHDBSCAN
        return live_prediction_data(model)
    data = getattr(model, "prediction_data_", None)
    if data is None:
        raise ValueError("Clusterer does not have prediction data! Fit it with "
                         "prediction_data=True, or call generate_prediction_data().")
    return data


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """float64 [len(A), len(B)] squared Euclidean distances, summed as docs/SPEC.md says.

    Lane ``j`` sums the terms of features ``j, j + 4, ...`` left to right and the total is
    ``(l0 + l1) + (l2 + l3)``, so a new point equal to a fitted one sees the distances of
    the fit bit for bit.
    """
    lanes = np.zeros((4, A.shape[0], B.shape[0]))
    with np.errstate(over="ignore"):  # points ~1e154 apart: the distance is inf, as in the fit
        for k in range(A.shape[1]):
            diff = A[:, k, None] - B[None, :, k]
            lanes[k % 4] += diff * diff
        return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def _distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """float64 [len(A), len(B)] Euclidean distances, in row chunks to bound memory."""
    out = np.empty((A.shape[0], B.shape[0]))
    step = max(1, (1 << 20) // max(1, B.shape[0]))
    for start in range(0, A.shape[0], step):
        out[start:start + step] = np.sqrt(_squared_distances(A[start:start + step], B))
    return out


@dataclass(frozen=True)
class _Joined:
    """Where new points attach: nearest fitted point by mutual reachability, and lambda."""

    neighbor: np.ndarray  #: int64 [M]
    lam: np.ndarray  #: float64 [M]
    nearest_distance: np.ndarray  #: float64 [M], distance to the nearest fitted point


def _brute_neighbors(raw_data: np.ndarray, Q: np.ndarray, k: int):
    """The ``k`` nearest fitted points of each row of ``Q`` by brute force: (int64 [M, k],
    float64 [M, k]) ordered by (distance, index), the kd-tree's answer."""
    n = raw_data.shape[0]
    d = _distances(Q, raw_data)
    if k < n:
        # Everything strictly below the k-th smallest distance, then the ties at it by index.
        kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
        d = np.where(d <= kth, d, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(n), d.shape), d), axis=1)[:, :k]
    return order.astype(np.int64), np.take_along_axis(d, order, axis=1)


def _numba_query():
    """``medscore._numba.query`` when numba imports, else None (brute force is used)."""
    try:
        from ._numba import query
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return query


def _neighbors(data: PredictionData, Q: np.ndarray, k: int, n_threads: int = 0):
    """The ``k`` nearest fitted points of each row of ``Q``, ordered by (distance, index):
    a kd-tree search (exact, bit-defined distances) with the Numba kernels, else brute force."""
    kernels = _numba_query()
    n = data.raw_data.shape[0]
    if kernels is None or n < 64:
        step = max(1, (1 << 20) // n)
        parts = [_brute_neighbors(data.raw_data, Q[s:s + step], k) for s in range(0, Q.shape[0], step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    tree = data.search_tree
    if tree is None:
        tree = kernels.build_query_tree(data.raw_data)
        object.__setattr__(data, "search_tree", tree)  # a cache, built once
    return kernels.knn_outside(tree, Q, k, n_threads)


def _join(data: PredictionData, Q: np.ndarray, n_threads: int = 0) -> _Joined:
    """Attach each row of ``Q`` to the fit, as the library's ``_find_neighbor_and_lambda``."""
    n = data.raw_data.shape[0]
    k = min(2 * data.min_samples, n)
    own = min(data.min_samples, k - 1)
    neighbor = np.empty(Q.shape[0], np.int64)
    lam = np.empty(Q.shape[0])
    nearest = np.empty(Q.shape[0])
    all_idx, all_dk = _neighbors(data, Q, k, n_threads)
    step = max(1, (1 << 22) // k)
    for start in range(0, Q.shape[0], step):
        idx, dk = all_idx[start:start + step], all_dk[start:start + step]
        mr = np.maximum(np.maximum(data.core_distances[idx], dk[:, own, None]), dk)
        best = np.lexsort((dk, mr), axis=1)[:, 0]  # smallest reachability, then nearer
        rows = np.arange(len(idx))
        m = mr[rows, best]
        neighbor[start:start + step] = idx[rows, best]
        with np.errstate(divide="ignore"):
            lam[start:start + step] = np.where(m > 0, 1.0 / np.where(m > 0, m, 1.0), DBL_MAX)
        nearest[start:start + step] = dk[:, 0]
    return _Joined(neighbor, lam, nearest)


def _threads(clusterer) -> int:
    """The clusterer's ``n_threads`` (0: every core) for the neighbour search."""
    n_threads = getattr(clusterer, "n_threads", 0)
    return int(n_threads) if isinstance(n_threads, (int, np.integer)) and n_threads >= 0 else 0


def _points_to_predict(data: PredictionData, X) -> np.ndarray:
    if np.ndim(X) == 2 and np.shape(X)[1] != data.raw_data.shape[1]:
        raise ValueError(f"New points dimension does not match fit data: got {np.shape(X)[1]} "
                         f"features, the fit had {data.raw_data.shape[1]}")
    return as_points(X, name="points_to_predict", n_features=data.raw_data.shape[1])


def approximate_predict(clusterer, points_to_predict, return_connecting_points=False):
    """Labels and probabilities of new points in an existing clustering (``hdbscan``'s).

    Each new point attaches to its neighbour of smallest mutual reachability at lambda
    ``lam`` (see the module docstring). If the neighbour leaves its cluster at a lambda
    above ``lam``, the point goes up the cluster tree while the cluster was born at a
    lambda ``>= lam``. It takes the label of the selected cluster at or above where it
    ends (else -1), with probability ``min(lam, m) / m``, ``m`` that cluster's death (1 if
    ``m`` is 0). The clustering is not refitted: use ``IncrementalHDBSCAN`` for that.

    Parameters
    ----------
    clusterer : medscore.HDBSCAN fitted with ``prediction_data=True``
    points_to_predict : array-like [M, D]
    return_connecting_points : bool, default False
        Also return the index of the fitted point each new point attached to.

    Returns
    -------
    labels : int64 ndarray [M]
    probabilities : float64 ndarray [M]
    neighbors : int64 ndarray [M], only with ``return_connecting_points``
    """
    data = _prediction_data(clusterer)
    Q = _points_to_predict(data, points_to_predict)
    m = Q.shape[0]
    if data.selected.size == 0:
        warnings.warn("Clusterer does not have any defined clusters, new data will be "
                      "automatically predicted as noise.", UserWarning, stacklevel=2)
        out = (np.full(m, -1, np.int64), np.zeros(m))
        return out + (np.full(m, -1, np.int64),) if return_connecting_points else out
    joined = _join(data, Q, _threads(clusterer))
    info, root = data.info, data.info.root
    cluster = data.point_parent[joined.neighbor].copy()
    climbing = data.point_lambda[joined.neighbor] > joined.lam
    while climbing.any():
        climbing &= cluster > root
        climbing[climbing] = info.birth[cluster[climbing] - root] >= joined.lam[climbing]
        cluster[climbing] = info.parent[cluster[climbing] - root]
    labels = data.cluster_label[cluster - root]
    top = data.label_max_lambda[cluster - root]
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = np.where(top > 0, np.minimum(top, joined.lam) / np.where(top > 0, top, 1.0), 1.0)
    prob = np.where(labels >= 0, prob, 0.0)
    if return_connecting_points:
        return labels, prob, joined.neighbor
    return labels, prob


def approximate_predict_scores(clusterer, points_to_predict) -> np.ndarray:
    """GLOSH outlier scores of new points against an existing clustering (``hdbscan``'s).

    A new point attaches as in :func:`approximate_predict` (a point at distance 0 from a
    fitted point takes that point's lambda) and scores ``(m - lam) / m`` with ``m`` the
    largest lambda below the cluster its neighbour falls out of (0 where ``m`` is 0).

    Returns
    -------
    float64 ndarray [M]; ones, with a warning, when the fit has no clusters
    """
    data = _prediction_data(clusterer)
    Q = _points_to_predict(data, points_to_predict)
    if data.selected.size == 0 or data.info.n_clusters < 2:
        warnings.warn("Clusterer does not have any defined clusters, new data will be "
                      "automatically predicted as outliers.", UserWarning, stacklevel=2)
        return np.ones(Q.shape[0])
    joined = _join(data, Q, _threads(clusterer))
    lam = np.where(joined.nearest_distance == 0, data.point_lambda[joined.neighbor], joined.lam)
    m = data.subtree_max_lambda[data.point_parent[joined.neighbor] - data.info.root]
    with np.errstate(invalid="ignore"):
        return np.where(m > 0, (m - lam) / np.where(m > 0, m, 1.0), 0.0)


def _merge_heights(data: PredictionData, clusters: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """float64 [M, K]: lambda at which each point meets each selected cluster.

    A point in cluster ``c`` (``clusters[i]``) at lambda ``lam[i]`` meets selected cluster
    ``s`` at the split where their branches part (the birth lambda of the children of their
    lowest common ancestor), or at ``lam[i]`` itself when ``c`` and ``s`` lie on one branch.
    """
    info, root = data.info, data.info.root
    out = np.empty((clusters.size, data.selected.size))
    for j, s in enumerate(data.selected.tolist()):
        height = np.full(clusters.size, np.nan)
        a = s
        while True:
            # Up s's ancestors: those not holding c form a prefix of the chain, and the
            # highest of them is a child of the lowest common ancestor, born at the split.
            holds = _holds(info, a, clusters)
            height = np.where(holds, height, info.birth[a - root])
            if a == root:
                break
            a = int(info.parent[a - root])
        on_branch = _holds(info, s, clusters) | _is_ancestor(info, clusters, s)
        out[:, j] = np.where(on_branch, lam, height)
    return out


def _holds(info: ClusterInfo, a: int, clusters: np.ndarray) -> np.ndarray:
    """bool [M]: whether cluster ``a`` is ``clusters[i]`` or one of its ancestors."""
    root = info.root
    c = clusters.copy()
    out = c == a
    while True:
        deeper = (c > a) & ~out
        if not deeper.any():
            return out
        c[deeper] = info.parent[c[deeper] - root]
        out |= c == a


def _is_ancestor(info: ClusterInfo, clusters: np.ndarray, s: int) -> np.ndarray:
    """bool [M]: whether ``clusters[i]`` is an ancestor of (or is) cluster ``s``."""
    chain = [s]
    while chain[-1] != info.root:
        chain.append(int(info.parent[chain[-1] - info.root]))
    return np.isin(clusters, chain)


def _distance_vectors(data: PredictionData, Q: np.ndarray) -> np.ndarray:
    """float64 [M, K]: inverse distance to each cluster's nearest exemplar, rows summing to 1.

    A distance of 0 counts as ``DBL_MAX / K``, as in the library.
    """
    k = data.selected.size
    nearest = np.column_stack([_distances(Q, ex).min(axis=1) for ex in data.exemplars])
    with np.errstate(divide="ignore"):
        inverse = np.where(nearest != 0, 1.0 / np.where(nearest != 0, nearest, 1.0), DBL_MAX / k)
    return inverse / inverse.sum(axis=1, keepdims=True)


def membership_vector(clusterer, points_to_predict) -> np.ndarray:
    """Soft membership of new points in each selected cluster (``hdbscan``'s).

    For a new point attached to fitted point ``nb`` at ``lam`` (clipped to ``nb``'s own
    lambda when above it), in cluster ``c`` (the one ``nb`` falls out of) with death
    ``m``: the distance vector ``dist`` (:func:`_distance_vectors`), the outlier vector
    ``softmax(m / (m - h_k))`` with ``h_k`` the merge heights of ``c`` at ``float32(lam)``
    (a non-positive denominator counts as 1e-8), combined as ``dist ** 0.5 * outlier ** 2``
    normalised, times the probability of being in some cluster, ``max_k h_k / (max(lam,
    death of the best k) + 1e-8)`` at ``lam``.

    Returns
    -------
    float64 ndarray [M, K], K the number of clusters; row ``i`` column ``k`` for label ``k``
    """
    data = _prediction_data(clusterer)
    Q = _points_to_predict(data, points_to_predict)
    if data.selected.size == 0:
        return np.zeros((Q.shape[0], 0))
    joined = _join(data, Q, _threads(clusterer))
    own = data.point_lambda[joined.neighbor]
    lam = np.where(own <= joined.lam, own, joined.lam)
    cluster = data.point_parent[joined.neighbor]
    m = data.info.death[cluster - data.info.root][:, None]
    with np.errstate(over="ignore"):
        lam32 = lam.astype(np.float32).astype(np.float64)  # the library's float32 parameter
    denominator = m - _merge_heights(data, cluster, lam32)
    scores = m / np.where(denominator <= 0, 1e-8, denominator)
    outlier = np.exp(scores - np.nanmax(scores, axis=1, keepdims=True))
    outlier /= outlier.sum(axis=1, keepdims=True)
    result = _distance_vectors(data, Q) ** 0.5 * outlier ** 2.0
    result /= result.sum(axis=1, keepdims=True)
    return result * _prob_in_some_cluster(data, cluster, lam, 1e-8)[:, None]


def _prob_in_some_cluster(data, cluster, lam, epsilon) -> np.ndarray:
    """float64 [M]: highest merge height over ``max(lam, death of that cluster) + epsilon``.

    Sibling clusters always tie for the highest merge. The library then takes the one it
    numbered first, which depends on its internal numbering (and so on the row order);
    medscore takes the tied cluster of largest death, so the value depends on the hierarchy
    alone and is never the larger of the candidates.
    """
    heights = _merge_heights(data, cluster, lam)
    death = data.info.death[data.selected - data.info.root]
    highest = heights == heights.max(axis=1, keepdims=True)
    top = np.maximum(lam, np.where(highest, death, -np.inf).max(axis=1)) + epsilon
    with np.errstate(invalid="ignore"):
        return heights.max(axis=1) / top


def all_points_membership_vectors(clusterer) -> np.ndarray:
    """Soft membership of every fitted point in each selected cluster (``hdbscan``'s).

    For point ``p`` leaving cluster ``c`` at ``lam`` (``m`` = death of ``c`` + 1e-8, ``h_k``
    the merge heights at ``lam``): per-cluster scores ``exp(-m / h_k)``, turned into
    ``exp(score - max over all points and clusters)`` and normalised per row; times the
    distance vector, normalised; times ``max_k h_k / max(death of the best k, lam)``.

    Returns
    -------
    float64 ndarray [N, K]
    """
    data = _prediction_data(clusterer)
    n = data.raw_data.shape[0]
    if data.selected.size == 0:
        return np.zeros((n, 0))
    cluster, lam = data.point_parent, data.point_lambda
    heights = _merge_heights(data, cluster, lam)
    m = data.info.death[cluster - data.info.root][:, None] + 1e-8
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.exp(-(m / heights))
        outlier = np.exp(scores - np.nanmax(scores))
        outlier /= outlier.sum(axis=1, keepdims=True)
    result = _distance_vectors(data, data.raw_data) * outlier
    result /= result.sum(axis=1, keepdims=True)
    return result * _prob_in_some_cluster(data, cluster, lam, 0.0)[:, None]
