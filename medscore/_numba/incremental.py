"""Numba kernels of the exact incremental HDBSCAN engine (``medscore/incremental.py``).

Every distance that decides a result is the SPEC's bit-defined float64 distance
(``distance.distance``). Bounds used only to prune a search come from float32 dot products
(BLAS) lowered by a proven error bound, so a pruned subtree never holds an answer.

Neighbour lists are ordered by ``(distance, index)`` ascending; padding entries have index -1
and distance +inf. The parallel kernels are exported behind ``threads.serialised``.
"""
import numba
import numpy as np
from numba import prange

from .disjoint_set import find_root
from .distance import distance
from .threads import serialised

_NO_INDEX = np.iinfo(np.int64).max


@numba.njit(cache=True, inline="always")
def _before(d1, i1, d2, i2):
    """Whether ``(d1, i1)`` comes strictly before ``(d2, i2)`` in (distance, index) order."""
    return d1 < d2 or (d1 == d2 and i1 < i2)


@numba.njit(cache=True, inline="always")
def _push_sorted(best_dist, best_index, d, index):
    """Insert ``(d, index)`` into ascending ``best_*`` (length k) if it beats the last entry."""
    k = best_dist.shape[0]
    if not _before(d, index, best_dist[k - 1], best_index[k - 1]):
        return
    pos = k - 1
    while pos > 0 and _before(d, index, best_dist[pos - 1], best_index[pos - 1]):
        best_dist[pos] = best_dist[pos - 1]
        best_index[pos] = best_index[pos - 1]
        pos -= 1
    best_dist[pos] = d
    best_index[pos] = index


@numba.njit(cache=True, inline="always")
def _finish_row(best_dist, best_index, out_dist, out_index):
    """Copy a top-k buffer out, turning unfilled slots into (inf, -1)."""
    for j in range(best_dist.shape[0]):
        out_dist[j] = best_dist[j]
        out_index[j] = -1 if best_index[j] == _NO_INDEX else best_index[j]


def knn_of_rows(X, rows, k, lo, hi):
    """Exact k nearest points of ``X[rows[i]]`` among rows ``lo..hi-1`` of X (itself excluded).

    Parameters
    ----------
    X : float64 [N, D]
    rows : int64 [M] query rows of X
    k : int, >= 1
    lo, hi : int, the searched row range

    Returns
    -------
    (int64 [M, k], float64 [M, k]) ordered by (distance, index); (-1, inf) where fewer exist.
    """
    # Every finite distance is strictly below an infinite bound: the plain k nearest.
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return closer_rows_in_range(X, rows, np.full(rows.shape[0], np.inf), k, lo, hi)


@numba.njit(cache=True, parallel=True)
def _closer_rows_in_range(X, rows, bound, k, lo, hi):
    """For each query row, its k nearest rows in ``lo..hi-1`` strictly closer than ``bound[i]``.

    Used for reverse neighbours: an old point's list changes only through new points strictly
    closer than its old core distance, and at most k of them can enter it.

    Parameters
    ----------
    X : float64 [N, D]; rows : int64 [M]; bound : float64 [M]; k : int; lo, hi : int

    Returns
    -------
    (int64 [M, k], float64 [M, k]) ordered by (distance, index), padded with (-1, inf).
    """
    m = rows.shape[0]
    out_index = np.empty((m, k), np.int64)
    out_dist = np.empty((m, k), np.float64)
    for i in prange(m):
        best_dist = np.full(k, np.inf)
        best_index = np.full(k, _NO_INDEX, np.int64)
        r = rows[i]
        for j in range(lo, hi):
            if j != r:
                d = distance(X[r], X[j])
                if d < bound[i]:
                    _push_sorted(best_dist, best_index, d, j)
        _finish_row(best_dist, best_index, out_dist[i], out_index[i])
    return out_index, out_dist


@numba.njit(cache=True, parallel=True)
def _rank_candidates(X, rows, candidates, k):
    """Exact re-check of neighbour candidates (e.g. from FAISS in float32).

    Parameters
    ----------
    X : float64 [N, D]
    rows : int64 [M] query rows
    candidates : int64 [M, C] candidate rows; -1 (padding) and the query row itself are skipped
    k : int

    Returns
    -------
    (int64 [M, k], float64 [M, k]): the k best candidates by exact (distance, index),
    padded with (-1, inf).
    """
    m = rows.shape[0]
    out_index = np.empty((m, k), np.int64)
    out_dist = np.empty((m, k), np.float64)
    for i in prange(m):
        best_dist = np.full(k, np.inf)
        best_index = np.full(k, _NO_INDEX, np.int64)
        r = rows[i]
        for c in range(candidates.shape[1]):
            j = candidates[i, c]
            if j >= 0 and j != r:
                # Skip repeats (a candidate may come from two searches).
                seen = False
                for t in range(k):
                    if best_index[t] == j:
                        seen = True
                if not seen:
                    _push_sorted(best_dist, best_index, distance(X[r], X[j]), j)
        _finish_row(best_dist, best_index, out_dist[i], out_index[i])
    return out_index, out_dist


@numba.njit(cache=True, parallel=True)
def _merge_neighbor_lists(index_a, dist_a, index_b, dist_b):
    """Row-wise k best of two sorted neighbour lists (same k; (-1, inf) padding allowed).

    Returns
    -------
    (int64 [M, k], float64 [M, k])
    """
    m, k = index_a.shape
    out_index = np.empty((m, k), np.int64)
    out_dist = np.empty((m, k), np.float64)
    for i in prange(m):
        a = 0
        b = 0
        for j in range(k):
            ia = index_a[i, a] if a < k else -1
            ib = index_b[i, b] if b < index_b.shape[1] else -1
            da = dist_a[i, a] if ia >= 0 else np.inf
            db = dist_b[i, b] if ib >= 0 else np.inf
            take_a = ib < 0 or (ia >= 0 and _before(da, ia, db, ib))
            if take_a:
                out_index[i, j] = ia
                out_dist[i, j] = da
                a += 1
            else:
                out_index[i, j] = ib
                out_dist[i, j] = db
                b += 1
    return out_index, out_dist


@numba.njit(cache=True)
def edge_distances(X, u, v):
    """Bit-defined distances ``d(X[u[i]], X[v[i]])`` (float64 [M])."""
    out = np.empty(u.shape[0])
    for i in range(u.shape[0]):
        out[i] = distance(X[u[i]], X[v[i]])
    return out


@numba.njit(cache=True)
def kruskal_select(u, v, n_points):
    """Kruskal over edges already sorted by (weight, u, v): which ones the forest keeps.

    Parameters
    ----------
    u, v : int64 [M] endpoints, in processing order
    n_points : int

    Returns
    -------
    bool [M]: True for the edges of the minimum spanning forest.
    """
    parent = np.arange(n_points)
    keep = np.zeros(u.shape[0], np.bool_)
    for i in range(u.shape[0]):
        ru = find_root(parent, u[i])
        rv = find_root(parent, v[i])
        if ru != rv:
            parent[ru] = rv
            keep[i] = True
    return keep


@numba.njit(cache=True)
def prim_of_rows(X, rows, core):
    """Exact MST of the complete mutual-reachability graph on ``rows`` (Prim, O(M^2 D)).

    Parameters
    ----------
    X : float64 [N, D]; rows : int64 [M]; core : float64 [N] core distances of all rows

    Returns
    -------
    (int64 [M-1], int64 [M-1], float64 [M-1]): edges as rows of X and their weights.
    """
    m = rows.shape[0]
    out_u = np.empty(max(m - 1, 0), np.int64)
    out_v = np.empty(max(m - 1, 0), np.int64)
    out_w = np.empty(max(m - 1, 0), np.float64)
    in_tree = np.zeros(m, np.bool_)
    best = np.full(m, np.inf)
    best_from = np.zeros(m, np.int64)
    current = 0
    for e in range(m - 1):
        in_tree[current] = True
        a = rows[current]
        nxt = -1
        for j in range(m):
            if not in_tree[j]:
                b = rows[j]
                w = max(core[a], core[b], distance(X[a], X[b]))
                if w < best[j]:
                    best[j] = w
                    best_from[j] = current
                if nxt < 0 or best[j] < best[nxt]:
                    nxt = j
        out_u[e] = rows[best_from[nxt]]
        out_v[e] = rows[nxt]
        out_w[e] = best[nxt]
        current = nxt
    return out_u, out_v, out_w


# -- pruning new points' edges with the old single-linkage tree ---------------------------
#
# T* is the MST of the old points under the new core distances, and its single-linkage tree
# has node n + i for edge i. For a new point p, an edge (p, q) of weight W is not needed when
# some q' in A_q(W) (the largest tree node holding q whose height is < W) has a
# lexicographically smaller (weight, index): q and q' are joined by T* edges lighter than W,
# so (p, q) closes a cycle it is the heaviest edge of, at every threshold. The search below
# emits exactly the edges that survive this test: q is emitted at node A when q is the
# (weight, index)-smallest point of A and height(A) < W <= height(parent(A)).


@numba.njit(cache=True)
def _emit(out_q, out_w, count, p, q, w):
    """Record edge (p, q) of weight w; counts past the buffer's end signal an overflow."""
    c = count[p]
    if c < out_q.shape[1]:
        out_q[p, c] = q
        out_w[p, c] = w
    count[p] = c + 1


@numba.njit(cache=True)
def _star_edges_of(p, x, root, n, X, core_p, core, left_node, right_node, height, bounds,
                   out_q, out_w, count, f_node, f_emit, f_search, f_phase, f_w, f_q, f_far):
    """Emit the needed edges from new point ``p`` (at ``x``) to the old points (see above).

    Depth-first over the tree. A frame's ``search`` bound S asks for the (weight, index)-
    smallest point under the node among those with weight <= S; its ``emit`` bound E is the
    parent's height (the point found is emitted here when height < weight <= E). The far
    child is searched only up to max(height, best weight of the near child), so each node
    is visited at most once.
    """
    sp = 1
    f_node[0], f_emit[0], f_search[0], f_phase[0] = root, np.inf, np.inf, 0
    ret_w, ret_q = np.inf, -1
    while sp > 0:
        top = sp - 1
        node, emit_bound, search_bound = f_node[top], f_emit[top], f_search[top]
        if node < n:
            sp -= 1
            ret_w, ret_q = np.inf, -1
            if bounds[node] <= search_bound:
                w = max(core_p, core[node], distance(x, X[node]))
                if w <= search_bound:
                    ret_w, ret_q = w, node
                    if w <= emit_bound:
                        _emit(out_q, out_w, count, p, node, w)
            continue
        i = node - n
        h = height[i]
        phase = f_phase[top]
        if phase == 0:
            if bounds[node] > search_bound:
                sp -= 1
                ret_w, ret_q = np.inf, -1
                continue
            near, far = left_node[i], right_node[i]
            if bounds[far] < bounds[near]:
                near, far = far, near
            f_phase[top], f_far[top] = 1, far
            f_node[sp], f_emit[sp], f_search[sp], f_phase[sp] = near, h, search_bound, 0
            sp += 1
        elif phase == 1:
            f_w[top], f_q[top] = ret_w, ret_q
            f_phase[top] = 2
            bound = max(min(search_bound, ret_w), h)
            f_node[sp], f_emit[sp], f_search[sp], f_phase[sp] = f_far[top], h, bound, 0
            sp += 1
        else:
            w1, q1 = f_w[top], f_q[top]
            if q1 >= 0 and (ret_q < 0 or w1 < ret_w or (w1 == ret_w and q1 < ret_q)):
                ret_w, ret_q = w1, q1
            if ret_q >= 0 and h < ret_w <= emit_bound:
                _emit(out_q, out_w, count, p, ret_q, ret_w)
            sp -= 1


#: Absolute error unit of a float32 operation near zero: 4 * 2**-126, four times the spacing
#: of float32 below its smallest normal number, enough even where flush-to-zero is on.
_FLOAT32_TINY = 2.0**-124


@numba.njit(cache=True)
def _subtree_lower_bounds(core_p, gram_row, p_norm2, q_norm2, slack_factor, dim, core, left_node,
                          right_node, n, out):
    """Lower bound of the weight from a new point to each leaf and subtree (``out`` [2n-1]).

    The float32 squared distance ``|p|^2 + |q|^2 - 2 p.q`` is lowered by its proven error
    bound before the square root, so it never exceeds the bit-defined distance; a subtree's
    bound is the smaller of its children's. The bound is ``slack_factor * (|p|^2 + |q|^2)``
    (relative rounding) plus ``_FLOAT32_TINY * (|p|_1 + |q|_1 + 2 D)`` (float32 underflow:
    each rounded coordinate, product and sum may be off by a subnormal step, which no relative
    bound covers for points near the shift). A non-finite dot product or norm (float32 or
    float64 overflow) bounds nothing: the bound is then ``max(core_p, core_q)``.
    """
    root_d = np.sqrt(np.float64(dim))
    p_norm1 = root_d * np.sqrt(p_norm2)  # >= |p|_1
    for q in range(n):
        g = np.float64(gram_row[q])
        d = 0.0
        if np.isfinite(g) and np.isfinite(p_norm2) and np.isfinite(q_norm2[q]):
            f = p_norm2 + q_norm2[q] - 2.0 * g
            f -= slack_factor * (p_norm2 + q_norm2[q])
            f -= _FLOAT32_TINY * (p_norm1 + root_d * np.sqrt(q_norm2[q]) + 2.0 * dim)
            if f > 0.0:
                d = np.sqrt(f)
        out[q] = max(core_p, core[q], d)
    for i in range(n - 1):
        out[n + i] = min(out[left_node[i]], out[right_node[i]])


@numba.njit(cache=True, parallel=True)
def _star_edges(X, new_rows, core, n, left_node, right_node, height, gram, p_norm2, q_norm2,
               slack_factor, capacity):
    """Candidate edges from new points to the old points 0..n-1, pruned exactly by T*'s tree.

    Parameters
    ----------
    X : float64 [N, D] (rows 0..n-1 are the old points); new_rows : int64 [B]
    core : float64 [N] new core distances
    n : int, number of old points (>= 1); the tree's root is node 2n - 2
    left_node, right_node : int64 [n-1]; height : float64 [n-1] (linkage of T*)
    gram : float32 [B, n], dot products of the shifted new and old points (float32)
    p_norm2 : float64 [B], q_norm2 : float64 [n], squared norms of the shifted points
    slack_factor : float, error bound of float32 squared distances relative to the norms
    capacity : int, edges stored per new point

    Returns
    -------
    (int64 [B, capacity] old rows, float64 [B, capacity] weights, int64 [B] counts).
    A count above ``capacity`` means the row overflowed and must be recomputed larger.
    """
    b = new_rows.shape[0]
    out_q = np.full((b, capacity), -1, np.int64)
    out_w = np.full((b, capacity), np.inf)
    count = np.zeros(b, np.int64)
    depth_room = n + 2  # a root-to-leaf path plus one
    for p in prange(b):
        bounds = np.empty(2 * n - 1)
        f_node = np.empty(depth_room, np.int64)
        f_emit = np.empty(depth_room)
        f_search = np.empty(depth_room)
        f_phase = np.empty(depth_room, np.int8)
        f_w = np.empty(depth_room)
        f_q = np.empty(depth_room, np.int64)
        f_far = np.empty(depth_room, np.int64)
        r = new_rows[p]
        _subtree_lower_bounds(core[r], gram[p], p_norm2[p], q_norm2, slack_factor, X.shape[1], core,
                              left_node, right_node, n, bounds)
        _star_edges_of(p, X[r], 2 * n - 2, n, X, core[r], core, left_node, right_node, height,
                       bounds, out_q, out_w, count, f_node, f_emit, f_search, f_phase, f_w,
                       f_q, f_far)
    return out_q, out_w, count


@numba.njit(cache=True)
def linkage_children(u, v, n):
    """Children of the internal nodes of the single-linkage tree of a sorted spanning tree.

    Parameters
    ----------
    u, v : int64 [n-1], edges sorted by (weight, u, v); n : int

    Returns
    -------
    (int64 [n-1], int64 [n-1]): the two nodes joined into node n + i by edge i.
    """
    parent = np.arange(n)
    node_of = np.arange(n)
    left_node = np.empty(max(n - 1, 0), np.int64)
    right_node = np.empty(max(n - 1, 0), np.int64)
    for i in range(u.shape[0]):
        ru = find_root(parent, u[i])
        rv = find_root(parent, v[i])
        if ru == rv:
            raise ValueError("linkage_children: the edges close a cycle")
        left_node[i] = node_of[ru]
        right_node[i] = node_of[rv]
        parent[ru] = rv
        node_of[rv] = n + i
    return left_node, right_node


# The parallel kernels behind the kernel lock (needed where the threading layer is workqueue:
# see threads.py); the module's callers are Python code.
closer_rows_in_range = serialised(_closer_rows_in_range)
rank_candidates = serialised(_rank_candidates)
merge_neighbor_lists = serialised(_merge_neighbor_lists)
star_edges = serialised(_star_edges)
