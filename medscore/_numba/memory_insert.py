"""Exact Euclidean minimum spanning trees for the keyed memory (``csrc/memory_insert.cpp``):
appending points to a tree, and Prim's algorithm for small sets.

Edges are ordered strictly by ``(weight, u, v)`` (``edge_less`` of ``mst.py``), under which
the MST is unique. Appending rows to a set whose MST is known: each new row keeps the edges
that one walk over the old tree leaves it (the cycle rule), and Kruskal (``kruskal_merge``
of ``mst.py``) joins those, the old tree and the new rows' own MST (see the top of
``csrc/memory_insert.cpp`` for why that candidate set holds the MST).
"""
import numba
import numpy as np

from .distance import squared_distance
from .mst import edge_less, kruskal_merge, sort_edges


@numba.njit(cache=True)
def prim_mst(X, core, use_core):
    """Prim's algorithm under the strict order (weight, u, v): the one MST that is minimal
    under it (``euclidean_mst`` of ``csrc/include/medscore/memory.hpp``), O(N^2 D).

    Parameters
    ----------
    X : float64 [N, D], N >= 2
    core : float64 [N] core distances (read only with ``use_core``)
    use_core : bool; weights are mutual reachabilities max(core[a], core[b], d(a, b)) with
        it, Euclidean distances d(a, b) without

    Returns
    -------
    (int64 [N-1], int64 [N-1], float64 [N-1]): u < v, weight, sorted by (weight, u, v).
    """
    n = X.shape[0]
    u = np.empty(n - 1, np.int64)
    v = np.empty(n - 1, np.int64)
    w = np.empty(n - 1)
    best = np.full(n, np.inf)
    best_from = np.full(n, -1, np.int64)
    in_tree = np.zeros(n, np.bool_)
    in_tree[0] = True
    last = 0
    for added in range(n - 1):
        nxt, nu, nv, nw = -1, 0, 0, np.inf
        for x in range(n):
            if in_tree[x]:
                continue
            d = np.sqrt(squared_distance(X[last], X[x]))
            if use_core:
                d = max(core[last], core[x], d)
            if best_from[x] < 0 or edge_less(d, min(last, x), max(last, x),
                                             best[x], min(best_from[x], x), max(best_from[x], x)):
                best[x], best_from[x] = d, last
            cu, cv = min(best_from[x], x), max(best_from[x], x)
            if nxt < 0 or edge_less(best[x], cu, cv, nw, nu, nv):
                nxt, nu, nv, nw = x, cu, cv, best[x]
        in_tree[nxt] = True
        u[added], v[added], w[added] = nu, nv, nw
        last = nxt
    return sort_edges(u, v, w)


@numba.njit(cache=True)
def _rooted(mu, mv, n):
    """The tree rooted at 0: (child, parent, edge) of each non-root vertex, children first."""
    start = np.zeros(n + 1, np.int64)
    for e in range(mu.shape[0]):
        start[mu[e] + 1] += 1
        start[mv[e] + 1] += 1
    for x in range(n):
        start[x + 1] += start[x]
    fill = start[:n].copy()
    adj = np.empty(2 * mu.shape[0], np.int64)
    adj_edge = np.empty(2 * mu.shape[0], np.int64)
    for e in range(mu.shape[0]):
        adj[fill[mu[e]]], adj_edge[fill[mu[e]]] = mv[e], e
        fill[mu[e]] += 1
        adj[fill[mv[e]]], adj_edge[fill[mv[e]]] = mu[e], e
        fill[mv[e]] += 1
    parent = np.full(n, -1, np.int64)
    parent_edge = np.full(n, -1, np.int64)
    order = np.empty(n, np.int64)
    stack = np.empty(n, np.int64)
    stack[0], top, count = 0, 1, 0
    parent[0] = 0
    while top > 0:
        top -= 1
        x = stack[top]
        order[count] = x
        count += 1
        for a in range(start[x], start[x + 1]):
            y = adj[a]
            if parent[y] < 0:
                parent[y], parent_edge[y] = x, adj_edge[a]
                stack[top] = y
                top += 1
    if count != n:
        raise ValueError("insert_into_mst: the MST is not connected")
    parent[0] = -1
    return order[::-1][:n - 1].copy(), parent, parent_edge


@numba.njit(cache=True)
def _kept_edges(to_q, q, walk, parent, parent_edge, mu, mv, mw):
    """Old vertices a whose edge (a, q) is in the MST of (old tree + every edge of q)."""
    n = to_q.shape[0]
    # Heaviest edge on each vertex's path to q: (weight, u, v, old end of a q-edge or -1).
    pw, pu, pv, pq = to_q.copy(), np.arange(n), np.full(n, q), np.arange(n)
    kept = np.ones(n, np.bool_)
    for x in walk:
        p = parent[x]
        e = parent_edge[x]
        tw, tu, tv = mw[e], mu[e], mv[e]
        child_above_tree = edge_less(tw, tu, tv, pw[x], pu[x], pv[x])
        parent_above_tree = edge_less(tw, tu, tv, pw[p], pu[p], pv[p])
        if not child_above_tree and not parent_above_tree:
            continue  # the tree edge leaves; every old tree edge goes to Kruskal anyway
        if edge_less(pw[p], pu[p], pv[p], pw[x], pu[x], pv[x]):
            if pq[x] >= 0:
                kept[pq[x]] = False
        else:
            if pq[p] >= 0:
                kept[pq[p]] = False
            if child_above_tree:
                pw[p], pu[p], pv[p], pq[p] = pw[x], pu[x], pv[x], pq[x]
            else:
                pw[p], pu[p], pv[p], pq[p] = tw, tu, tv, -1
    return np.flatnonzero(kept)


@numba.njit(cache=True)
def insert_into_mst(X, n_old, mu, mv, mw):
    """MST of X after appending rows n_old.. to rows whose MST is (mu, mv, mw).

    Parameters
    ----------
    X : float64 [N, D], the n_old old rows then the new ones
    n_old : int >= 1
    mu, mv, mw : int64, int64, float64 [n_old - 1], the old rows' MST sorted by (weight, u, v)

    Returns
    -------
    (int64 [N-1], int64 [N-1], float64 [N-1]): the MST of all rows, sorted the same way.
    """
    n = X.shape[0]
    walk, parent, parent_edge = _rooted(mu, mv, n_old)
    cu, cv, cw = [np.int64(0)][:0], [np.int64(0)][:0], [0.0][:0]
    to_q = np.empty(n_old)
    for q in range(n_old, n):
        for a in range(n_old):
            to_q[a] = np.sqrt(squared_distance(X[a], X[q]))
        for a in _kept_edges(to_q, q, walk, parent, parent_edge, mu, mv, mw):
            cu.append(a)
            cv.append(q)
            cw.append(to_q[a])
    if n - n_old >= 2:
        bu, bv, bw = prim_mst(X[n_old:], np.zeros(0), False)
        for i in range(bu.shape[0]):
            cu.append(bu[i] + n_old)
            cv.append(bv[i] + n_old)
            cw.append(bw[i])
    au, av, aw = sort_edges(np.array(cu, np.int64), np.array(cv, np.int64), np.array(cw, np.float64))
    return kruskal_merge(mu, mv, mw, au, av, aw, n)
