"""Stages 1 and 2 of docs/SPEC.md on a dense distance matrix: other metrics and precomputed.

For ``HDBSCAN(metric=...)`` other than Euclidean: the full [N, N] distance matrix (given, or
computed here for cosine, Manhattan and Minkowski), core distances as the ``k``-th smallest
distance to another point, and an exact minimum spanning tree of mutual reachability by
Prim's algorithm in O(N^2) time (the ``hdbscan`` library's generic algorithm). The result
feeds the backends' ``single_linkage``, ``condense_tree`` and ``select_clusters`` unchanged.

The matrix is read through its upper triangle only (``D[min(i, j), max(i, j)]``), so the
answer is symmetric by construction and the diagonal is ignored.

Distances (float64, each sum left to right in feature order, as scipy and scikit-learn's
``DistanceMetric`` sum them):

- ``manhattan``: ``sum |a_k - b_k|``
- ``minkowski`` with ``p``: ``(sum |a_k - b_k| ** p) ** (1 / p)``
- ``cosine``: ``1 - (a . b) / (|a| |b|)``, clipped at 0 and with 0 between a point and
  itself (as scikit-learn's ``pairwise_distances``); a zero vector's distance to anything
  is 1 (scikit-learn: its normalised form is 0). The rounding differs from scikit-learn's
  (which normalises first), by a few ulps of 1.
"""
import numba
import numpy as np

METRICS = {"manhattan": 0, "minkowski": 1, "cosine": 2}


@numba.njit(cache=True, parallel=True)
def _pairwise(X, code, p):
    n, dim = X.shape
    out = np.zeros((n, n))
    norms = np.zeros(n)
    if code == 2:
        for i in range(n):
            s = 0.0
            for k in range(dim):
                s += X[i, k] * X[i, k]
            norms[i] = np.sqrt(s)
    for i in numba.prange(n):
        for j in range(i + 1, n):
            s = 0.0
            if code == 0:
                for k in range(dim):
                    s += abs(X[i, k] - X[j, k])
            elif code == 1:
                for k in range(dim):
                    s += abs(X[i, k] - X[j, k]) ** p
                s = s ** (1.0 / p)
            else:
                for k in range(dim):
                    s += X[i, k] * X[j, k]
                denominator = norms[i] * norms[j]
                s = 1.0 - s / denominator if denominator > 0 else 1.0
                s = max(s, 0.0)
            out[i, j] = s
            out[j, i] = s
    return out


def pairwise_distances(X: np.ndarray, metric: str, p: float = 2.0) -> np.ndarray:
    """float64 [N, N] distances between the rows of ``X`` (float64 [N, D]) under ``metric``
    (``"manhattan"``, ``"minkowski"`` with ``p``, ``"cosine"``)."""
    return _pairwise(np.ascontiguousarray(X, dtype=np.float64), METRICS[metric], float(p))


@numba.njit(cache=True, parallel=True)
def _core_distances(D, k):
    n = D.shape[0]
    core = np.zeros(n)
    for i in numba.prange(n):
        row = np.empty(n - 1)
        m = 0
        for j in range(n):
            if j < i:
                row[m] = D[j, i]
                m += 1
            elif j > i:
                row[m] = D[i, j]
                m += 1
        core[i] = np.partition(row, k - 1)[k - 1]
    return core


def core_distances_from_matrix(D: np.ndarray, min_samples: int) -> np.ndarray:
    """float64 [N]: the ``k``-th smallest distance to another point, ``k = min(min_samples,
    N - 1)`` (at least 1); ``[0.0]`` for N == 1 (docs/SPEC.md, stage 1)."""
    n = D.shape[0]
    if n == 1:
        return np.zeros(1)
    k = max(min(int(min_samples), n - 1), 1)
    return _core_distances(np.ascontiguousarray(D, dtype=np.float64), k)


@numba.njit(cache=True)
def _prim(D, core):
    """Prim's algorithm on the mutual-reachability graph ``max(D_ij, core_i, core_j)``."""
    n = D.shape[0]
    in_tree = np.zeros(n, np.bool_)
    best = np.full(n, np.inf)
    source = np.zeros(n, np.int64)
    reached = np.zeros(n, np.bool_)  # whether best[j] is set (it may be inf)
    u = np.empty(n - 1, np.int64)
    v = np.empty(n - 1, np.int64)
    w = np.empty(n - 1)
    current = 0
    for step in range(n - 1):
        in_tree[current] = True
        chosen = -1
        chosen_w = np.inf
        for j in range(n):
            if in_tree[j]:
                continue
            d = D[current, j] if current < j else D[j, current]
            m = max(d, core[current], core[j])
            if not reached[j] or m < best[j]:
                best[j] = m
                source[j] = current
                reached[j] = True
            if chosen < 0 or best[j] < chosen_w:
                chosen = j
                chosen_w = best[j]
        u[step] = source[chosen]
        v[step] = chosen
        w[step] = chosen_w
        current = chosen
    return u, v, w


def minimum_spanning_tree_from_matrix(D: np.ndarray, core: np.ndarray) -> np.ndarray:
    """MST_EDGE [N-1]: an exact MST of mutual reachability, ``u < v``, sorted by
    ``(weight, u, v)`` (docs/SPEC.md, stage 2)."""
    from .mst import sorted_edges

    n = D.shape[0]
    if n == 1:
        return sorted_edges(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    u, v, w = _prim(np.ascontiguousarray(D, dtype=np.float64), np.ascontiguousarray(core))
    return sorted_edges(u, v, w)
