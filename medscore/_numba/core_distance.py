"""Stage 1 of ``docs/SPEC.md``: exact k nearest neighbours and core distances (kd-tree)."""
import numba
import numpy as np

from .distance import row_distance, squared_distance
from .kdtree import KDTree, node_lower_bound, build_kdtree

#: Queries handled by one parallel task (scratch buffers are allocated once per chunk).
_CHUNK = 256


def effective_min_samples(min_samples: int, n_points: int) -> int:
    """Neighbour rank of the core distance: ``min(min_samples, N - 1)``, at least 1."""
    return max(min(int(min_samples), int(n_points) - 1), 1)


@numba.njit(cache=True, inline="always")
def _insert_sorted(best_dist, best_index, d, index):
    """Insert ``(d, index)`` into the ascending lists if it beats the last entry."""
    k = best_dist.shape[0]
    if d > best_dist[k - 1] or (d == best_dist[k - 1] and index >= best_index[k - 1]):
        return
    pos = k - 1
    while pos > 0 and (d < best_dist[pos - 1] or (d == best_dist[pos - 1] and index < best_index[pos - 1])):
        best_dist[pos] = best_dist[pos - 1]
        best_index[pos] = best_index[pos - 1]
        pos -= 1
    best_dist[pos] = d
    best_index[pos] = index


@numba.njit(cache=True)
def _query(q, points, order, start, end, left, right, lo, hi, center, radius, best_dist, best_index, stack, stack_lb):
    """k nearest other points of tree-order row ``q``, ordered by (distance, original index).

    ``best_dist``/``best_index`` (float64/int64 [k]) receive the answer; ``stack``/``stack_lb``
    are scratch of at least 2 * depth entries.
    """
    search_tree(points, q, q, points, order, start, end, left, right, lo, hi, center, radius,
                best_dist, best_index, stack, stack_lb)


@numba.njit(cache=True)
def search_tree(Q, q, skip, points, order, start, end, left, right, lo, hi, center, radius,
                best_dist, best_index, stack, stack_lb):
    """k nearest tree points of row ``q`` of ``Q`` (tree-order position ``skip`` left out; -1:
    none), ordered by (distance, original index), into ``best_dist``/``best_index``."""
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
                if p != skip:
                    _insert_sorted(best_dist, best_index, row_distance(Q, q, points, p), order[p])
            continue
        lb_left = node_lower_bound(Q, q, lo, hi, center, radius, left[node])
        lb_right = node_lower_bound(Q, q, lo, hi, center, radius, right[node])
        near, far, lb_near, lb_far = left[node], right[node], lb_left, lb_right
        if lb_right < lb_left:
            near, far, lb_near, lb_far = right[node], left[node], lb_right, lb_left
        stack[top + 1] = far
        stack_lb[top + 1] = lb_far
        stack[top + 2] = near
        stack_lb[top + 2] = lb_near
        top += 2


@numba.njit(cache=True, parallel=True)
def _all_neighbors(points, order, start, end, left, right, lo, hi, center, radius, depth, k):
    """Neighbours of every point, rows in original order: (int64 [N, k], float64 [N, k])."""
    n_points = points.shape[0]
    indices = np.empty((n_points, k), np.int64)
    dists = np.empty((n_points, k))
    n_chunks = (n_points + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(n_chunks):
        best_dist = np.empty(k)
        best_index = np.empty(k, np.int64)
        stack = np.empty(2 * depth + 2, np.int64)
        stack_lb = np.empty(2 * depth + 2)
        for q in range(chunk * _CHUNK, min(n_points, (chunk + 1) * _CHUNK)):
            _query(q, points, order, start, end, left, right, lo, hi, center, radius, best_dist, best_index, stack, stack_lb)
            indices[order[q]] = best_index
            dists[order[q]] = best_dist
    return indices, dists


def neighbors_in_tree(tree: KDTree, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest other points of every point of a built tree (see ``nearest_neighbors``)."""
    return _all_neighbors(tree.points, tree.order, tree.start, tree.end, tree.left, tree.right,
                          tree.lo, tree.hi, tree.center, tree.radius, tree.depth, k)


def _as_points(X) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty [N, D] matrix, got shape {X.shape}")
    return X


def nearest_neighbors(X, k: int, n_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest other points of each point.

    Parameters
    ----------
    X : float64 [N, D]
    k : int, 1 <= k <= N - 1
    n_threads : int, 0 for every thread

    Returns
    -------
    indices : int64 [N, k]
        Row ``i`` ordered by ``(distance, index)`` ascending; ``i`` itself is excluded.
    distances : float64 [N, k]
        The SPEC's bit-defined distances.
    """
    from .threads import thread_limit

    X = _as_points(X)
    if not 1 <= k <= X.shape[0] - 1:
        raise ValueError(f"k must be in [1, N - 1] = [1, {X.shape[0] - 1}], got {k}")
    with thread_limit(n_threads):
        return neighbors_in_tree(build_kdtree(X), int(k))


@numba.njit(cache=True)
def dense_core_distances(X, min_samples):
    """Core distances by every pairwise distance, O(N^2 D), for small sets (the keyed memory's
    keys): the values ``core_distances`` gives, without building a tree.

    Parameters
    ----------
    X : float64 [N, D], N >= 2
    min_samples : int >= 1; the neighbour rank is ``effective_min_samples(min_samples, N)``

    Returns
    -------
    float64 [N]
    """
    n = X.shape[0]
    k = max(1, min(min_samples, n - 1))
    core = np.zeros(n)
    d = np.empty(n - 1)
    for i in range(n):
        c = 0
        for j in range(n):
            if j != i:
                d[c] = np.sqrt(squared_distance(X[i], X[j]))
                c += 1
        core[i] = np.sort(d)[k - 1]
    return core


def core_distances_in_tree(tree: KDTree, min_samples: int) -> np.ndarray:
    """Core distances (float64 [N]) of the points of a built tree."""
    n_points = tree.points.shape[0]
    if n_points == 1:
        return np.zeros(1)
    _, dists = neighbors_in_tree(tree, effective_min_samples(min_samples, n_points))
    return np.ascontiguousarray(dists[:, -1])


def core_distances(X, min_samples: int, n_threads: int = 0) -> np.ndarray:
    """Core distance of each point: its distance to the k-th nearest other point.

    Parameters
    ----------
    X : float64 [N, D]
    min_samples : int >= 1
        ``k = min(min_samples, N - 1)``, at least 1 (the ``hdbscan`` library's clipping).
    n_threads : int, 0 for every thread

    Returns
    -------
    float64 [N]; ``[0.0]`` when N == 1.
    """
    from .threads import thread_limit

    X = _as_points(X)
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    with thread_limit(n_threads):
        return core_distances_in_tree(build_kdtree(X), min_samples)
