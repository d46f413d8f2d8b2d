"""The keyed memory's clustering of one key (``csrc/memory_cluster.cpp``): a key's MST by a
refit, the stages after the MST (``linkage.py``, ``condense.py``, ``select.py``), and the
numbering of its clusters by earliest member."""
import numba
import numpy as np

from .condense import _condense
from .core_distance import dense_core_distances
from .linkage import _link
from .memory_insert import prim_mst
from .select import _select


@numba.njit(cache=True)
def lex_earlier(X, steps, a, b):
    """(step, vector) of point a < that of point b."""
    if steps[a] != steps[b]:
        return steps[a] < steps[b]
    for j in range(X.shape[1]):
        if X[a, j] != X[b, j]:
            return X[a, j] < X[b, j]
    return False


@numba.njit(cache=True)
def number_clusters(labels, X, steps):
    """Renumber clusters by earliest member (see number_clusters in memory.hpp); sizes, noise."""
    n_clusters = labels.max() + 1 if labels.shape[0] > 0 else 0
    earliest = np.full(max(n_clusters, 0), -1, np.int64)
    noise = 0
    for i in range(labels.shape[0]):
        c = labels[i]
        if c < 0:
            noise += 1
        elif earliest[c] < 0 or lex_earlier(X, steps, i, earliest[c]):
            earliest[c] = i
    order = np.arange(n_clusters)
    for a in range(1, n_clusters):  # insertion sort by earliest member; ties by member index
        x = order[a]
        b = a - 1
        while b >= 0 and (lex_earlier(X, steps, earliest[x], earliest[order[b]]) or (
                not lex_earlier(X, steps, earliest[order[b]], earliest[x]) and earliest[x] < earliest[order[b]])):
            order[b + 1] = order[b]
            b -= 1
        order[b + 1] = x
    renamed = np.empty(n_clusters, np.int64)
    for r in range(n_clusters):
        renamed[order[r]] = r
    out = np.full(labels.shape[0], -1, np.int64)
    sizes = np.zeros(n_clusters, np.int64)
    for i in range(labels.shape[0]):
        if labels[i] >= 0:
            out[i] = renamed[labels[i]]
            sizes[out[i]] += 1
    return out, sizes, noise


@numba.njit(cache=True)
def cluster_from_mst(X, steps, mu, mv, mw, mcs, leaf, allow_single, epsilon):
    """Labels (numbered by earliest member), sizes and noise count from a sorted MST."""
    n = X.shape[0]
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    if n == 1:
        return np.full(1, -1, np.int64), np.empty(0, np.int64), 1
    left, right, merged = _link(mu, mv, n)
    parent, child, lam, size = _condense(left, right, mw, merged, n, mcs)
    labels = _select(parent, child, lam, size, n, leaf, allow_single, epsilon, 0, np.inf)[0]  # no size / eps max
    return number_clusters(labels, X, steps)


@numba.njit(cache=True)
def refit(X, min_samples):
    """Sorted MST of the mutual-reachability graph of X (empty for n < 2)."""
    n = X.shape[0]
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    if min_samples == 1:
        return prim_mst(X, np.zeros(0), False)
    return prim_mst(X, dense_core_distances(X, min_samples), True)


@numba.njit(cache=True)
def label_sizes(labels):
    """Cluster sizes by label and the noise count of labels numbered 0..K-1 (-1 noise)."""
    n_clusters = labels.max() + 1 if labels.shape[0] > 0 else 0
    sizes = np.zeros(max(n_clusters, 0), np.int64)
    noise = 0
    for c in labels:
        if c < 0:
            noise += 1
        else:
            sizes[c] += 1
    return sizes, noise
