"""Exact k nearest fitted points of new points (``approximate_predict``'s neighbour search).

For each query row the ``k`` nearest fitted points ordered by ``(distance, index)``
ascending, distances the SPEC's bit-defined float64 (docs/SPEC.md, stage 1), so the answer
is the brute-force answer bit for bit, ties included. Two trees, by dimension:

- D <= ``AXIS_TREE_MAX_DIM``: an axis-aligned kd-tree (median split on the widest
  coordinate, leaves of ``AXIS_LEAF_SIZE`` points) pruned by box bounds. Its boxes are
  tight in few dimensions: on 5,000 x 8 Gaussian points it computes about half the
  distances of the fit's tree.
- above: the fit's tree of :mod:`medscore._numba.kdtree` (principal-direction splits, box
  and ball bounds), which prunes better between separated clusters in many dimensions.
"""
from typing import NamedTuple

import numba
import numpy as np

from .core_distance import _insert_sorted, search_tree
from .distance import row_distance
from .kdtree import BOUND_SHRINK, KDTree, build_kdtree

_CHUNK = 64
AXIS_TREE_MAX_DIM = 16
AXIS_LEAF_SIZE = 8


class AxisTree(NamedTuple):
    """An axis-aligned kd-tree: the fields of :class:`KDTree` without the balls."""

    points: np.ndarray  #: float64 [N, D] in tree order
    order: np.ndarray  #: int64 [N], original index of each tree-order row
    start: np.ndarray  #: int64 [M]
    end: np.ndarray  #: int64 [M]
    left: np.ndarray  #: int64 [M], -1 for a leaf
    right: np.ndarray  #: int64 [M]
    lo: np.ndarray  #: float64 [M, D], the node's bounding box
    hi: np.ndarray  #: float64 [M, D]
    depth: int


@numba.njit(cache=True)
def _build_axis(X, leaf_size):
    n, dim = X.shape
    max_nodes = 4 * (n // leaf_size + 1) + 1
    order = np.arange(n)
    start = np.empty(max_nodes, np.int64)
    end = np.empty(max_nodes, np.int64)
    left = np.full(max_nodes, -1, np.int64)
    right = np.full(max_nodes, -1, np.int64)
    lo = np.empty((max_nodes, dim))
    hi = np.empty((max_nodes, dim))
    level = np.zeros(max_nodes, np.int64)
    start[0], end[0], level[0] = 0, n, 1
    count, node, depth = 1, 0, 1
    while node < count:  # breadth first: a child's id is larger than its parent's
        s, e = start[node], end[node]
        for k in range(dim):
            a, b = np.inf, -np.inf
            for i in range(s, e):
                v = X[order[i], k]
                a = min(a, v)
                b = max(b, v)
            lo[node, k], hi[node, k] = a, b
        if e - s > leaf_size:
            widest, width = 0, -1.0
            for k in range(dim):
                if hi[node, k] - lo[node, k] > width:
                    width, widest = hi[node, k] - lo[node, k], k
            values = np.empty(e - s)
            for i in range(s, e):
                values[i - s] = X[order[i], widest]
            order[s:e] = order[s:e][np.argsort(values, kind="mergesort")]
            mid = s + (e - s) // 2
            for child, a, b in ((count, s, mid), (count + 1, mid, e)):
                start[child], end[child], level[child] = a, b, level[node] + 1
            left[node], right[node] = count, count + 1
            depth = max(depth, level[node] + 1)
            count += 2
        node += 1
    points = np.empty((n, dim))
    for i in range(n):
        points[i] = X[order[i]]
    return (points, order, start[:count].copy(), end[:count].copy(), left[:count].copy(),
            right[:count].copy(), lo[:count].copy(), hi[:count].copy(), depth)


def build_query_tree(X: np.ndarray):
    """The tree :func:`knn_outside` searches over ``X`` (float64 [N, D], N >= 1)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.shape[1] <= AXIS_TREE_MAX_DIM:
        return AxisTree(*_build_axis(X, AXIS_LEAF_SIZE))
    return build_kdtree(X)


@numba.njit(cache=True, inline="always")
def _box_lower_bound(Q, q, lo, hi, node):
    """A lower bound on the SPEC distance from ``Q[q]`` to any point in the box of ``node``
    (shrunk against rounding; one term where the sum overflows, as ``node_lower_bound``)."""
    total = 0.0
    widest = 0.0
    for k in range(Q.shape[1]):
        gap = max(lo[node, k] - Q[q, k], Q[q, k] - hi[node, k], 0.0)
        total += gap * gap
        widest = max(widest, gap * gap)
    if total == np.inf:
        total = widest
    return np.sqrt(total) * BOUND_SHRINK


@numba.njit(cache=True)
def _query_axis(Q, q, points, order, start, end, left, right, lo, hi, best_dist, best_index,
                stack, stack_lb):
    k = best_dist.shape[0]
    best_dist[:] = np.inf
    best_index[:] = np.iinfo(np.int64).max
    top = 0
    stack[0] = 0
    stack_lb[0] = 0.0
    while top >= 0:
        node = stack[top]
        lb = stack_lb[top]
        top -= 1
        if lb > best_dist[k - 1]:
            continue
        if left[node] < 0:
            for p in range(start[node], end[node]):
                _insert_sorted(best_dist, best_index, row_distance(Q, q, points, p), order[p])
            continue
        lb_left = _box_lower_bound(Q, q, lo, hi, left[node])
        lb_right = _box_lower_bound(Q, q, lo, hi, right[node])
        near, far, lb_near, lb_far = left[node], right[node], lb_left, lb_right
        if lb_right < lb_left:
            near, far, lb_near, lb_far = right[node], left[node], lb_right, lb_left
        stack[top + 1] = far
        stack_lb[top + 1] = lb_far
        stack[top + 2] = near
        stack_lb[top + 2] = lb_near
        top += 2


@numba.njit(cache=True, parallel=True)
def _knn_axis(Q, points, order, start, end, left, right, lo, hi, depth, k):
    m = Q.shape[0]
    indices = np.empty((m, k), np.int64)
    dists = np.empty((m, k))
    n_chunks = (m + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(n_chunks):
        best_dist = np.empty(k)
        best_index = np.empty(k, np.int64)
        stack = np.empty(2 * depth + 2, np.int64)
        stack_lb = np.empty(2 * depth + 2)
        for q in range(chunk * _CHUNK, min(m, (chunk + 1) * _CHUNK)):
            _query_axis(Q, q, points, order, start, end, left, right, lo, hi, best_dist,
                        best_index, stack, stack_lb)
            indices[q] = best_index
            dists[q] = best_dist
    return indices, dists


@numba.njit(cache=True)
def _query_outside(Q, q, points, order, start, end, left, right, lo, hi, center, radius,
                   best_dist, best_index, stack, stack_lb):
    search_tree(Q, q, -1, points, order, start, end, left, right, lo, hi, center, radius,
                best_dist, best_index, stack, stack_lb)


@numba.njit(cache=True, parallel=True)
def _knn_outside(Q, points, order, start, end, left, right, lo, hi, center, radius, depth, k):
    m = Q.shape[0]
    indices = np.empty((m, k), np.int64)
    dists = np.empty((m, k))
    n_chunks = (m + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(n_chunks):
        best_dist = np.empty(k)
        best_index = np.empty(k, np.int64)
        stack = np.empty(2 * depth + 2, np.int64)
        stack_lb = np.empty(2 * depth + 2)
        for q in range(chunk * _CHUNK, min(m, (chunk + 1) * _CHUNK)):
            _query_outside(Q, q, points, order, start, end, left, right, lo, hi, center, radius,
                           best_dist, best_index, stack, stack_lb)
            indices[q] = best_index
            dists[q] = best_dist
    return indices, dists


def knn_outside(tree, Q: np.ndarray, k: int, n_threads: int = 0):
    """The ``k`` nearest tree points of each row of ``Q``.

    Parameters
    ----------
    tree : AxisTree or KDTree over the fitted points (:func:`build_query_tree`)
    Q : float64 [M, D], C-contiguous
    k : int, 1 <= k <= number of tree points

    Returns
    -------
    indices : int64 [M, k], original indices, by (distance, index) ascending
    distances : float64 [M, k]
    """
    from .threads import thread_limit

    if not 1 <= k <= tree.points.shape[0]:
        raise ValueError(f"k must be in [1, {tree.points.shape[0]}], got {k}")
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    with thread_limit(n_threads):
        if isinstance(tree, AxisTree):
            return _knn_axis(Q, tree.points, tree.order, tree.start, tree.end, tree.left,
                             tree.right, tree.lo, tree.hi, tree.depth, int(k))
        return _knn_outside(Q, tree.points, tree.order, tree.start, tree.end, tree.left,
                            tree.right, tree.lo, tree.hi, tree.center, tree.radius, tree.depth,
                            int(k))
