"""A space-partitioning tree over the points, shared by the exact neighbour search and Borůvka.

Each node is halved at the median of its points' projections on the line through two far-apart
points (a cheap principal direction), and keeps both a bounding box and a bounding ball: boxes
prune well in few dimensions, balls around separated clusters in many.

Nodes are numbered in creation order, so a child's id is larger than its parent's and a
reverse sweep over ids visits children before parents. Each node owns the contiguous range
``[start, end)`` of ``order`` (the permutation putting points in tree order) and the bounding
box ``[lo, hi]`` of its points.
"""
from typing import NamedTuple

import numba
import numpy as np

from .distance import row_distance

#: Points per leaf: small enough to prune well, large enough to amortise the traversal.
LEAF_SIZE = 32

#: Box bounds are shrunk by this relative margin before they prune: the bound is computed in a
#: different order than the distances it bounds, so it may round up by about D ulps.
BOUND_SHRINK = 1.0 - 1e-9

#: Ball radii are grown by this relative margin, for the same reason.
RADIUS_GROWTH = 1.0 + 1e-9


class KDTree(NamedTuple):
    """Arrays of a kd-tree over ``points`` (N points in tree order, float64 [N, D])."""

    points: np.ndarray  #: float64 [N, D], the input rows permuted into tree order
    order: np.ndarray  #: int64 [N], original index of each tree-order row
    start: np.ndarray  #: int64 [M], first tree-order row of each node
    end: np.ndarray  #: int64 [M], one past the last row
    left: np.ndarray  #: int64 [M], left child id, -1 for a leaf
    right: np.ndarray  #: int64 [M], right child id, -1 for a leaf
    lo: np.ndarray  #: float64 [M, D], lower corner of the node's bounding box
    hi: np.ndarray  #: float64 [M, D], upper corner
    center: np.ndarray  #: float64 [M, D], mean of the node's points
    radius: np.ndarray  #: float64 [M], at least the largest distance from ``center`` to a point
    depth: int  #: number of levels


@numba.njit(cache=True)
def _count_nodes(n_points, leaf_size):
    """Number of nodes and levels of the tree that halves ranges until they fit a leaf."""
    sizes = [n_points]
    levels = [1]
    n_nodes = 0
    depth = 0
    while len(sizes) > 0:
        size = sizes.pop()
        level = levels.pop()
        n_nodes += 1
        depth = max(depth, level)
        if size > leaf_size:
            sizes.append(size // 2)
            levels.append(level + 1)
            sizes.append(size - size // 2)
            levels.append(level + 1)
    return n_nodes, depth


@numba.njit(cache=True)
def _sort_range_along_spread(X, order, start, end, center, node):
    """Sort ``order[start:end]`` along the line through two far-apart points of the range.

    The line from the point farthest from the centre to the point farthest from that one
    follows the main spread of the points, so the halves separate clusters far better than an
    axis-aligned cut in many dimensions. Stable, so the build is deterministic.
    """
    far_a = order[start]
    best = -1.0
    for i in range(start, end):
        d = row_distance(center, node, X, order[i])
        if d > best:
            best, far_a = d, order[i]
    far_b = far_a
    best = -1.0
    for i in range(start, end):
        d = row_distance(X, far_a, X, order[i])
        if d > best:
            best, far_b = d, order[i]
    direction = X[far_b] - X[far_a]
    values = np.empty(end - start)
    for i in range(start, end):
        values[i - start] = np.dot(X[order[i]] - X[far_a], direction)
    perm = np.argsort(values, kind="mergesort")
    segment = order[start:end].copy()
    for i in range(end - start):
        order[start + i] = segment[perm[i]]


@numba.njit(cache=True)
def _fill_box(X, order, start, end, lo, hi):
    """Set ``lo``/``hi`` (float64 [D]) to the bounding box of ``X[order[start:end]]``."""
    lo[:] = X[order[start]]
    hi[:] = X[order[start]]
    for i in range(start + 1, end):
        row = X[order[i]]
        for k in range(row.shape[0]):
            lo[k] = min(lo[k], row[k])
            hi[k] = max(hi[k], row[k])


@numba.njit(cache=True)
def _fill_ball(X, order, start, end, center, node):
    """Set ``center[node]`` to the mean of ``X[order[start:end]]``; return a covering radius."""
    center[node] = 0.0
    for i in range(start, end):
        center[node] += X[order[i]]
    center[node] /= end - start
    radius = 0.0
    for i in range(start, end):
        radius = max(radius, row_distance(center, node, X, order[i]))
    return radius * RADIUS_GROWTH


@numba.njit(cache=True)
def _build(X, leaf_size):
    """Build the tree arrays; splits each node at the median along its main spread."""
    n_points, dim = X.shape
    n_nodes, depth = _count_nodes(n_points, leaf_size)
    order = np.arange(n_points)
    start = np.empty(n_nodes, np.int64)
    end = np.empty(n_nodes, np.int64)
    left = np.full(n_nodes, -1, np.int64)
    right = np.full(n_nodes, -1, np.int64)
    lo = np.empty((n_nodes, dim))
    hi = np.empty((n_nodes, dim))
    center = np.empty((n_nodes, dim))
    radius = np.empty(n_nodes)
    start[0] = 0
    end[0] = n_points
    next_id = 1
    pending = [0]
    while len(pending) > 0:
        node = pending.pop()
        s, e = start[node], end[node]
        _fill_box(X, order, s, e, lo[node], hi[node])
        radius[node] = _fill_ball(X, order, s, e, center, node)
        if e - s <= leaf_size:
            continue
        _sort_range_along_spread(X, order, s, e, center, node)
        mid = s + (e - s) // 2
        left[node], right[node] = next_id, next_id + 1
        start[next_id], end[next_id] = s, mid
        start[next_id + 1], end[next_id + 1] = mid, e
        pending.append(next_id + 1)
        pending.append(next_id)
        next_id += 2
    points = np.empty_like(X)
    for i in range(n_points):
        points[i] = X[order[i]]
    return points, order, start, end, left, right, lo, hi, center, radius, depth


def build_kdtree(X: np.ndarray, leaf_size: int = LEAF_SIZE) -> KDTree:
    """Build a kd-tree over ``X`` (float64 [N, D], C-contiguous, N >= 1)."""
    return KDTree(*_build(np.ascontiguousarray(X, dtype=np.float64), leaf_size))


@numba.njit(cache=True, inline="always")
def node_lower_bound(X, q, lo, hi, center, radius, node):
    """A lower bound (float64) on the SPEC distance from row ``X[q]`` to any point of ``node``.

    The larger of the box bound (tight in few dimensions) and the ball bound
    ``d(q, center) - radius`` (tight for separated clusters in many dimensions), shrunk so
    that rounding can never make it exceed a computed distance. Where a squared sum overflows
    (finite points ~1e154 apart), the box bound falls back to its largest term and the ball
    bound is dropped, so the bound stays below the distance and is infinite only when the
    distance is.
    """
    total = 0.0
    widest = 0.0
    for k in range(X.shape[1]):
        gap = max(lo[node, k] - X[q, k], X[q, k] - hi[node, k], 0.0)
        total += gap * gap
        widest = max(widest, gap * gap)
    if total == np.inf:
        # The sum overflowed, though the distance's own sum (another order) may not: keep
        # one term, which never exceeds that sum (nonnegative terms, monotone rounding).
        total = widest
    box = np.sqrt(total)
    to_center = row_distance(X, q, center, node)
    if to_center == np.inf or radius[node] == np.inf:
        return box * BOUND_SHRINK  # the ball bound would be inf - x or x - inf: no bound
    ball = to_center * BOUND_SHRINK - radius[node]
    return max(box, ball) * BOUND_SHRINK
