"""Stage 4 of ``docs/SPEC.md``: the condensed tree, with equal-height chains as n-ary merges.

A node's children are found by walking down through internal nodes of the same height and are
ordered by the smallest point they contain, so the output depends only on the threshold
hierarchy, not on which MST was chosen under tied weights.
"""
import numba
import numpy as np

from .._dtypes import CONDENSED, LINKAGE


@numba.njit(cache=True)
def _min_points(left, right, n):
    """Smallest point index under each node 0..2N-2 (int64 [2N-1])."""
    out = np.empty(2 * n - 1, np.int64)
    out[:n] = np.arange(n)
    for i in range(n - 1):
        out[n + i] = min(out[left[i]], out[right[i]])
    return out


@numba.njit(cache=True)
def _frontier(root, left, right, height, n, scratch, tied_only):
    """Nodes met below ``root`` when descending through internal nodes (only those at root's
    height when ``tied_only``), unsorted; a view of the end of ``scratch``."""
    h = height[root - n]
    count = 0
    top = 0
    scratch[0] = root
    while top >= 0:  # scratch[:top + 1] is the stack, found nodes fill it from the end
        y = scratch[top]
        top -= 1
        if y >= n and (not tied_only or height[y - n] == h):
            scratch[top + 1] = left[y - n]
            scratch[top + 2] = right[y - n]
            top += 2
        else:
            count += 1
            scratch[scratch.shape[0] - count] = y
    return scratch[scratch.shape[0] - count:]


@numba.njit(cache=True)
def _children(x, left, right, height, n, min_point, scratch):
    """Children of internal node ``x`` in the threshold hierarchy, by ascending min point."""
    found = _frontier(x, left, right, height, n, scratch, True).copy()
    return found[np.argsort(min_point[found], kind="mergesort")]


@numba.njit(cache=True)
def _points_under(y, left, right, height, n, scratch):
    """Points under node ``y``, ascending (int64)."""
    if y < n:
        return np.array([y], np.int64)
    return np.sort(_frontier(y, left, right, height, n, scratch, False))


@numba.njit(cache=True)
def _condense(left, right, height, size, n, min_cluster_size):
    """Rows (parent, child, lambda_val, child_size) of the condensed tree as four arrays."""
    min_point = _min_points(left, right, n)
    rows_parent = np.empty(2 * n, np.int64)
    rows_child = np.empty(2 * n, np.int64)
    rows_lambda = np.empty(2 * n)
    rows_size = np.empty(2 * n, np.int64)
    n_rows = 0
    queue_node = np.empty(n, np.int64)
    queue_label = np.empty(n, np.int64)
    queue_node[0], queue_label[0] = 2 * n - 2, n
    head, tail, next_label = 0, 1, n + 1
    scratch = np.empty(2 * n + 1, np.int64)
    while head < tail:
        x, c = queue_node[head], queue_label[head]
        head += 1
        while True:
            h = height[x - n]
            lam = 1.0 / h if h > 0 else np.inf
            ch = _children(x, left, right, height, n, min_point, scratch)
            n_big = 0
            big = -1
            for y in ch:
                if y >= n and size[y - n] >= min_cluster_size:
                    n_big += 1
                    big = y if big < 0 else big
            for y in ch:
                if n_big >= 2 and y >= n and size[y - n] >= min_cluster_size:
                    rows_parent[n_rows], rows_child[n_rows] = c, next_label
                    rows_lambda[n_rows], rows_size[n_rows] = lam, size[y - n]
                    n_rows += 1
                    queue_node[tail], queue_label[tail] = y, next_label
                    tail += 1
                    next_label += 1
                elif y != big:
                    for p in _points_under(y, left, right, height, n, scratch):
                        rows_parent[n_rows], rows_child[n_rows] = c, p
                        rows_lambda[n_rows], rows_size[n_rows] = lam, 1
                        n_rows += 1
            if n_big != 1:
                break
            x = big
    return rows_parent[:n_rows], rows_child[:n_rows], rows_lambda[:n_rows], rows_size[:n_rows]


def condense_tree(linkage, n: int, min_cluster_size: int) -> np.ndarray:
    """Condensed tree of a single-linkage tree (SPEC stage 4).

    Parameters
    ----------
    linkage : LINKAGE [N-1]
    n : int, number of points N
    min_cluster_size : int >= 2

    Returns
    -------
    CONDENSED [R]: clusters are numbered from N (the root) in breadth-first order; each point
    appears once as a child. Empty when N == 1.
    """
    linkage = np.asarray(linkage)
    if linkage.dtype != LINKAGE or linkage.shape != (max(n - 1, 0),):
        raise ValueError(f"linkage must be LINKAGE [{max(n - 1, 0)}], got dtype {linkage.dtype} shape {linkage.shape}")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    if n <= 1:
        return np.empty(0, dtype=CONDENSED)
    parent, child, lam, size = _condense(
        linkage["left"].astype(np.int64), linkage["right"].astype(np.int64),
        linkage["distance"].astype(np.float64), linkage["size"].astype(np.int64), int(n), int(min_cluster_size))
    out = np.empty(parent.shape[0], dtype=CONDENSED)
    out["parent"], out["child"], out["lambda_val"], out["child_size"] = parent, child, lam, size
    return out
