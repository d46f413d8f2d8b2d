"""Exact repair of the mutual-reachability MST after inserts and removals.

Insert (old points P, new points B; core distances only shrink):

1. ``T'``: the old MST with its weights recomputed under the new core distances.
2. Dropped edges: an edge of P whose weight fell must have had its weight set by the old
   core distance of an endpoint u whose core shrank, with the other endpoint strictly
   inside u's old core ball, i.e. among u's old neighbours. Every other edge of P kept its
   weight, so it was and still is the heaviest edge of a cycle of ``T'`` (cycle property).
   ``T* = MST(T' + dropped)`` is therefore an MST of P under the new weights.
3. ``MST(B)``: the complete graph on the new points, by Prim (replacing a subgraph by its
   MST keeps the connectivity of every threshold graph).
4. Edges between B and P, pruned exactly with the single-linkage tree of ``T*``
   (``_numba.incremental.star_edges``).
5. Kruskal over the union gives the new MST.

Removal (core distances only grow): an old MST edge between survivors whose weight did not
change is still lightest across its fundamental cut, whose crossing edges all kept or raised
their weights, so together these edges lie in an MST of the survivors. The backend completes
that forest (``minimum_spanning_tree(..., initial_forest=...)``).
"""
from __future__ import annotations

import numpy as np

from . import incremental as kernels

from .._dtypes import MST_EDGE
from .incremental_knn import float_slack_factor


def edges_of(u, v, w) -> np.ndarray:
    """MST_EDGE array with ``u < v`` in each edge, sorted by (weight, u, v)."""
    u = np.asarray(u, np.int64)
    v = np.asarray(v, np.int64)
    edges = np.empty(u.shape[0], dtype=MST_EDGE)
    edges["u"] = np.minimum(u, v)
    edges["v"] = np.maximum(u, v)
    edges["weight"] = w
    return edges[np.lexsort((edges["v"], edges["u"], edges["weight"]))]


def spanning_forest(edges: np.ndarray, n_points: int) -> np.ndarray:
    """Minimum spanning forest (Kruskal) of an MST_EDGE list, sorted by (weight, u, v)."""
    edges = edges_of(edges["u"], edges["v"], edges["weight"])
    keep = kernels.kruskal_select(edges["u"], edges["v"], n_points)
    return edges[keep]


def reweighted(X, edges, core, changed) -> np.ndarray:
    """``edges`` with weights recomputed where an endpoint's core distance ``changed``."""
    out = edges.copy()
    touch = changed[out["u"]] | changed[out["v"]]
    if touch.any():
        u, v = out["u"][touch], out["v"][touch]
        d = kernels.edge_distances(X, u, v)
        out["weight"][touch] = np.maximum(np.maximum(core[u], core[v]), d)
    return out


def _dropped_edges(X, n_old, core_old, core_new, knn_index_old, knn_dist_old):
    """Edges of the old points whose mutual-reachability weight fell (see module doc)."""
    shrunk = np.flatnonzero(core_new[:n_old] < core_old)
    dist = knn_dist_old[shrunk]
    cols = knn_index_old[shrunk]
    inside = (dist < core_old[shrunk][:, None]) & (cols >= 0)
    u = np.repeat(shrunk, inside.sum(axis=1))
    v = cols[inside]
    w = np.maximum(np.maximum(core_new[u], core_new[v]), dist[inside])
    return edges_of(u, v, w)


def _tree_of_old_points(X, n_old, core_old, core_new, knn_index_old, knn_dist_old, mst_old):
    """``T*``: an MST of the old points under the new core distances."""
    changed = np.zeros(X.shape[0], bool)
    changed[:n_old] = core_new[:n_old] != core_old
    if not changed.any():
        return mst_old
    tree = reweighted(X, mst_old, core_new, changed)
    dropped = _dropped_edges(X, n_old, core_old, core_new, knn_index_old, knn_dist_old)
    return spanning_forest(np.concatenate([tree, dropped]), n_old)


#: New points whose float32 dot products with the old points are held at once (memory).
_BRIDGE_CHUNK = 256


def _bridge_edges(X, n_old, core_new, tree, shift):
    """Pruned candidate edges between the new points and the old ones (step 4)."""
    n = X.shape[0]
    left, right = kernels.linkage_children(tree["u"], tree["v"], n_old)
    height = np.ascontiguousarray(tree["weight"])
    centred = X - shift
    norm2 = np.einsum("ij,ij->i", centred, centred)
    old32 = np.ascontiguousarray(centred[:n_old], dtype=np.float32)
    slack = float_slack_factor(X.shape[1])
    pieces = []
    for start in range(n_old, n, _BRIDGE_CHUNK):
        rows = np.arange(start, min(start + _BRIDGE_CHUNK, n), dtype=np.int64)
        gram = centred[rows].astype(np.float32) @ old32.T
        args = (core_new, n_old, left, right, height)
        q, w, count = kernels.star_edges(X, rows, *args, gram, norm2[rows], norm2[:n_old], slack, 32)
        over = np.flatnonzero(count > q.shape[1])
        if over.size:
            q, w, _ = kernels.star_edges(X, rows, *args, gram, norm2[rows], norm2[:n_old], slack,
                                      int(count.max()))
        valid = q >= 0
        pieces.append(edges_of(np.repeat(rows, valid.sum(axis=1)), q[valid], w[valid]))
    return np.concatenate(pieces)


def insert_mst(X, n_old, core_old, core_new, knn_index_old, knn_dist_old, mst_old,
               shift) -> np.ndarray:
    """Exact MST of all rows of ``X`` after appending rows ``n_old..`` (n_old >= 1).

    Parameters
    ----------
    X : float64 [N, D], old points first
    n_old : int
    core_old : float64 [n_old]; core_new : float64 [N]
    knn_index_old : int64 [n_old, k]; knn_dist_old : float64 [n_old, k] (before the insert)
    mst_old : MST_EDGE [n_old - 1]
    shift : float64 [D], subtracted before float32 bounds are computed (precision)

    Returns
    -------
    MST_EDGE [N - 1], sorted by (weight, u, v)
    """
    n = X.shape[0]
    tree = _tree_of_old_points(X, n_old, core_old, core_new, knn_index_old, knn_dist_old, mst_old)
    new_rows = np.arange(n_old, n, dtype=np.int64)
    bu, bv, bw = kernels.prim_of_rows(X, new_rows, core_new)
    among_new = edges_of(bu, bv, bw)
    bridges = _bridge_edges(X, n_old, core_new, tree, shift)
    mst = spanning_forest(np.concatenate([tree, among_new, bridges]), n)
    if mst.shape[0] != n - 1:
        raise RuntimeError(f"incremental MST has {mst.shape[0]} edges, expected {n - 1}")
    return mst


def kept_after_removal(X_live, mst_old, keep, core_old, core_new) -> np.ndarray:
    """Old MST edges between survivors whose weight is unchanged, in survivor positions.

    Parameters
    ----------
    X_live : float64 [M, D] survivors; mst_old : MST_EDGE [N - 1] in old positions
    keep : bool [N]; core_old : float64 [N]; core_new : float64 [M]
    """
    position = np.cumsum(keep) - 1
    both = keep[mst_old["u"]] & keep[mst_old["v"]]
    edges = mst_old[both].copy()
    edges["u"], edges["v"] = position[edges["u"]], position[edges["v"]]
    changed = core_new != core_old[keep]
    updated = reweighted(X_live, edges, core_new, changed)
    return updated[updated["weight"] == edges["weight"]]
