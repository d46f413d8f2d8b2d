"""Stage 3 of ``docs/SPEC.md``: the binary single-linkage tree of a sorted MST (Kruskal)."""
import numba
import numpy as np

from .._dtypes import LINKAGE, MST_EDGE
from .disjoint_set import find_root, make_disjoint_set, union_roots


@numba.njit(cache=True)
def _link(u, v, n):
    """Left and right node (int64 [N-1]) and size (int64 [N-1]) of each merge."""
    parent, size = make_disjoint_set(n)
    node_of = np.arange(n)  # union-find root -> tree node of its component
    left = np.empty(u.shape[0], np.int64)
    right = np.empty(u.shape[0], np.int64)
    merged = np.empty(u.shape[0], np.int64)
    for i in range(u.shape[0]):
        ru, rv = find_root(parent, u[i]), find_root(parent, v[i])
        if ru == rv:
            raise ValueError("mst is not a spanning tree: an edge closes a cycle")
        left[i], right[i] = node_of[ru], node_of[rv]
        merged[i] = size[ru] + size[rv]
        node_of[union_roots(parent, size, ru, rv)] = n + i
    return left, right, merged


def single_linkage(mst, n: int) -> np.ndarray:
    """Single-linkage tree of a sorted MST.

    Parameters
    ----------
    mst : MST_EDGE [N-1], sorted by ``(weight, u, v)``
    n : int, number of points N

    Returns
    -------
    LINKAGE [N-1]: row ``i`` merges nodes ``left`` (u's component) and ``right`` (v's) into
    node ``N + i`` at ``distance`` = edge weight; ``size`` counts its points.
    """
    mst = np.asarray(mst)
    if mst.dtype != MST_EDGE or mst.shape != (max(n - 1, 0),):
        raise ValueError(f"mst must be MST_EDGE [{max(n - 1, 0)}], got dtype {mst.dtype} shape {mst.shape}")
    u, v = mst["u"].astype(np.int64), mst["v"].astype(np.int64)
    if n > 1 and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise ValueError(f"mst has an endpoint outside [0, {n})")
    weight = mst["weight"]
    if np.any(weight[1:] < weight[:-1]):  # not np.diff: inf - inf warns
        raise ValueError("mst must be sorted by weight")
    left, right, size = _link(u, v, int(n))
    out = np.empty(left.shape[0], dtype=LINKAGE)
    out["left"], out["right"], out["size"] = left, right, size
    out["distance"] = mst["weight"]
    return out
