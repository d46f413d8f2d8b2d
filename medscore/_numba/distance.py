"""The bit-defined Euclidean distance of ``docs/SPEC.md`` (stage 1), as Numba kernels.

Lane ``j`` sums ``(a_k - b_k) * (a_k - b_k)`` left to right over ``k = j, j+4, ...``; the
squared distance is ``(l0 + l1) + (l2 + l3)``. Kernels are compiled without fastmath, so each
product is rounded before it is added (no fused multiply-add) and every backend gets the same
bits. ``tests/test_numba_backend.py`` checks this against numpy.
"""
import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def squared_distance(a, b):
    """Squared distance of two points with the SPEC's four-lane order.

    Parameters
    ----------
    a, b : float64 [D]

    Returns
    -------
    float64
    """
    dim = a.shape[0]
    l0 = 0.0
    l1 = 0.0
    l2 = 0.0
    l3 = 0.0
    k = 0
    while k + 4 <= dim:
        t0 = a[k] - b[k]
        t1 = a[k + 1] - b[k + 1]
        t2 = a[k + 2] - b[k + 2]
        t3 = a[k + 3] - b[k + 3]
        l0 += t0 * t0
        l1 += t1 * t1
        l2 += t2 * t2
        l3 += t3 * t3
        k += 4
    if k < dim:
        t0 = a[k] - b[k]
        l0 += t0 * t0
    if k + 1 < dim:
        t1 = a[k + 1] - b[k + 1]
        l1 += t1 * t1
    if k + 2 < dim:
        t2 = a[k + 2] - b[k + 2]
        l2 += t2 * t2
    return (l0 + l1) + (l2 + l3)


@numba.njit(cache=True, inline="always")
def row_distance(A, i, B, j):
    """Euclidean distance between rows ``A[i]`` and ``B[j]`` (float64 [*, D] each).

    The same arithmetic as ``squared_distance`` followed by ``sqrt``, indexing the matrices
    directly: the inner loops call this and Numba compiles it tighter than row slices.
    """
    dim = A.shape[1]
    l0 = 0.0
    l1 = 0.0
    l2 = 0.0
    l3 = 0.0
    k = 0
    while k + 4 <= dim:
        t0 = A[i, k] - B[j, k]
        t1 = A[i, k + 1] - B[j, k + 1]
        t2 = A[i, k + 2] - B[j, k + 2]
        t3 = A[i, k + 3] - B[j, k + 3]
        l0 += t0 * t0
        l1 += t1 * t1
        l2 += t2 * t2
        l3 += t3 * t3
        k += 4
    if k < dim:
        t0 = A[i, k] - B[j, k]
        l0 += t0 * t0
    if k + 1 < dim:
        t1 = A[i, k + 1] - B[j, k + 1]
        l1 += t1 * t1
    if k + 2 < dim:
        t2 = A[i, k + 2] - B[j, k + 2]
        l2 += t2 * t2
    return np.sqrt((l0 + l1) + (l2 + l3))


@numba.njit(cache=True, inline="always")
def distance(a, b):
    """Euclidean distance ``sqrt(squared_distance(a, b))`` (float64)."""
    return np.sqrt(squared_distance(a, b))


@numba.njit(cache=True)
def distances_between(X, rows, cols):
    """Distances ``d(X[rows[i]], X[cols[i]])`` for each ``i`` (float64 [M]); used by tests.

    Parameters
    ----------
    X : float64 [N, D]
    rows, cols : int64 [M]
    """
    out = np.empty(rows.shape[0])
    for i in range(rows.shape[0]):
        out[i] = distance(X[rows[i]], X[cols[i]])
    return out


@numba.njit(cache=True)
def row_distances_between(X, rows, cols):
    """As ``distances_between``, through ``row_distance`` (both must give the same bits)."""
    out = np.empty(rows.shape[0])
    for i in range(rows.shape[0]):
        out[i] = row_distance(X, rows[i], X, cols[i])
    return out
