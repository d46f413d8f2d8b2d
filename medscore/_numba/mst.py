"""Stage 2 of ``docs/SPEC.md``: exact MST of the mutual-reachability graph (Borůvka on a kd-tree).

Each round, every component finds its lightest edge to another component under the strict
total order ``(w, min(a, b), max(a, b))`` on tree-order indices, so the chosen edges always form
a forest (they all belong to the MST that this order makes unique). A component's search visits
its points by ascending core distance and prunes a tree node when every point in it is in the
same component, or when ``max(core_q, min core in node, box distance)`` exceeds the best weight
found so far.
"""
import numba
import numpy as np

from .._dtypes import MST_EDGE
from .disjoint_set import find_root, make_disjoint_set, union_roots
from .distance import distance
from .kdtree import KDTree, box_lower_bound, build_kdtree


@numba.njit(cache=True)
def _node_min_core(start, left, right, end, cores):
    """Smallest core distance under each node (float64 [M]); children have larger ids."""
    out = np.empty(start.shape[0])
    for node in range(start.shape[0] - 1, -1, -1):
        if left[node] < 0:
            out[node] = cores[start[node]:end[node]].min()
        else:
            out[node] = min(out[left[node]], out[right[node]])
    return out


@numba.njit(cache=True)
def _node_components(start, left, right, end, comp):
    """Component shared by all points under each node, or -1 if they differ (int64 [M])."""
    out = np.empty(start.shape[0], np.int64)
    for node in range(start.shape[0] - 1, -1, -1):
        if left[node] < 0:
            c = comp[start[node]]
            for p in range(start[node] + 1, end[node]):
                if comp[p] != c:
                    c = -1
                    break
            out[node] = c
        else:
            a, b = out[left[node]], out[right[node]]
            out[node] = a if a == b else -1
    return out


@numba.njit(cache=True, inline="always")
def _lighter(w, a, b, best_w, best_a, best_b):
    """Whether edge (w, a, b) comes before (best_w, best_a, best_b) in the total order."""
    return w < best_w or (w == best_w and (a < best_a or (a == best_a and b < best_b)))


@numba.njit(cache=True)
def _scan_leaf(q, c, node, points, cores, comp, start, end, best):
    """Update ``best`` (float64 [3]: w, a, b) with the points of leaf ``node`` outside component ``c``."""
    x = points[q]
    core_q = cores[q]
    for p in range(start[node], end[node]):
        if comp[p] == c or cores[p] > best[0]:
            continue
        w = max(core_q, cores[p], distance(x, points[p]))
        a, b = min(q, p), max(q, p)
        if _lighter(w, a, b, best[0], best[1], best[2]):
            best[0], best[1], best[2] = w, a, b


@numba.njit(cache=True)
def _search_point(q, c, points, cores, comp, tree_arrays, node_min_core, node_comp, best, stack, stack_lb):
    """Lightest edge from tree-order point ``q`` (component ``c``) to another component."""
    start, end, left, right, lo, hi = tree_arrays
    x = points[q]
    core_q = cores[q]
    top = 0
    stack[0] = 0
    stack_lb[0] = core_q
    while top >= 0:
        node = stack[top]
        lb = stack_lb[top]
        top -= 1
        if lb > best[0]:
            continue
        if left[node] < 0:
            _scan_leaf(q, c, node, points, cores, comp, start, end, best)
            continue
        near, far = left[node], right[node]
        lb_near = max(core_q, node_min_core[near], box_lower_bound(x, lo[near], hi[near]))
        lb_far = max(core_q, node_min_core[far], box_lower_bound(x, lo[far], hi[far]))
        if lb_far < lb_near:
            near, far, lb_near, lb_far = far, near, lb_far, lb_near
        if node_comp[far] != c and lb_far <= best[0]:
            top += 1
            stack[top] = far
            stack_lb[top] = lb_far
        if node_comp[near] != c and lb_near <= best[0]:
            top += 1
            stack[top] = near
            stack_lb[top] = lb_near


@numba.njit(cache=True, parallel=True)
def _lightest_outgoing_edges(points, cores, comp, members, member_start, tree_arrays, depth,
                             node_min_core, node_comp):
    """Lightest outgoing edge of each component: (a int64 [C], b int64 [C], w float64 [C]).

    ``members[member_start[c]:member_start[c + 1]]`` are the tree-order points of component
    ``c`` by ascending core distance. Components are independent, so the result does not depend
    on the thread schedule.
    """
    n_comps = member_start.shape[0] - 1
    out_a = np.empty(n_comps, np.int64)
    out_b = np.empty(n_comps, np.int64)
    out_w = np.empty(n_comps)
    for c in numba.prange(n_comps):
        best = np.array([np.inf, -1.0, -1.0])
        stack = np.empty(2 * depth + 2, np.int64)
        stack_lb = np.empty(2 * depth + 2)
        for i in range(member_start[c], member_start[c + 1]):
            q = members[i]
            if cores[q] > best[0]:
                break  # members are sorted by core, and every weight from q is >= cores[q]
            _search_point(q, c, points, cores, comp, tree_arrays, node_min_core, node_comp, best,
                          stack, stack_lb)
        out_w[c], out_a[c], out_b[c] = best[0], np.int64(best[1]), np.int64(best[2])
    return out_a, out_b, out_w


@numba.njit(cache=True)
def _components(parent, core_order):
    """Dense component ids (int64 [N]) and members by ascending core, grouped by component."""
    n = parent.shape[0]
    comp = np.empty(n, np.int64)
    dense = np.full(n, -1, np.int64)
    n_comps = 0
    for i in range(n):
        r = find_root(parent, i)
        if dense[r] < 0:
            dense[r] = n_comps
            n_comps += 1
        comp[i] = dense[r]
    member_start = np.zeros(n_comps + 1, np.int64)
    for i in range(n):
        member_start[comp[i] + 1] += 1
    member_start = np.cumsum(member_start)
    fill = member_start[:-1].copy()
    members = np.empty(n, np.int64)
    for q in core_order:
        members[fill[comp[q]]] = q
        fill[comp[q]] += 1
    return comp, members, member_start


@numba.njit(cache=True)
def _edge_weight(points, cores, a, b):
    return max(cores[a], cores[b], distance(points[a], points[b]))


@numba.njit(cache=True)
def _boruvka(points, cores, tree_arrays, depth, forest_a, forest_b):
    """MST edges (a, b int64 [N-1], w float64 [N-1]) in tree-order indices, containing the forest."""
    n = points.shape[0]
    start, end, left, right, lo, hi = tree_arrays
    parent, size = make_disjoint_set(n)
    edge_a = np.empty(n - 1, np.int64)
    edge_b = np.empty(n - 1, np.int64)
    edge_w = np.empty(n - 1)
    m = 0
    for i in range(forest_a.shape[0]):
        ra, rb = find_root(parent, forest_a[i]), find_root(parent, forest_b[i])
        if ra == rb:
            raise ValueError("initial_forest is not a forest: an edge closes a cycle")
        union_roots(parent, size, ra, rb)
        edge_a[m], edge_b[m] = forest_a[i], forest_b[i]
        edge_w[m] = _edge_weight(points, cores, forest_a[i], forest_b[i])
        m += 1
    core_order = np.argsort(cores, kind="mergesort")
    node_min_core = _node_min_core(start, left, right, end, cores)
    while m < n - 1:
        comp, members, member_start = _components(parent, core_order)
        node_comp = _node_components(start, left, right, end, comp)
        best_a, best_b, best_w = _lightest_outgoing_edges(points, cores, comp, members, member_start,
                                                          tree_arrays, depth, node_min_core, node_comp)
        added = 0
        for c in range(best_a.shape[0]):
            ra, rb = find_root(parent, best_a[c]), find_root(parent, best_b[c])
            if ra != rb:
                union_roots(parent, size, ra, rb)
                edge_a[m], edge_b[m], edge_w[m] = best_a[c], best_b[c], best_w[c]
                m += 1
                added += 1
        if added == 0:
            raise RuntimeError("Boruvka round added no edge (broken invariant)")
    return edge_a, edge_b, edge_w


def sorted_edges(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MST_EDGE array with ``u < v`` in each edge, sorted by ``(weight, u, v)``."""
    out = np.empty(u.shape[0], dtype=MST_EDGE)
    out["u"] = np.minimum(u, v)
    out["v"] = np.maximum(u, v)
    out["weight"] = w
    return out[np.lexsort((out["v"], out["u"], out["weight"]))]


def _forest_in_tree_order(initial_forest, tree: KDTree, n: int) -> tuple[np.ndarray, np.ndarray]:
    if initial_forest is None or len(initial_forest) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    forest = np.asarray(initial_forest)
    if forest.dtype != MST_EDGE or forest.ndim != 1:
        raise ValueError(f"initial_forest must be a 1-d MST_EDGE array, got dtype {forest.dtype}")
    u, v = forest["u"].astype(np.int64), forest["v"].astype(np.int64)
    if u.min() < 0 or v.min() < 0 or max(u.max(), v.max()) >= n or np.any(u == v):
        raise ValueError(f"initial_forest has an endpoint outside [0, {n}) or a self loop")
    rank = np.empty(n, np.int64)
    rank[tree.order] = np.arange(n)
    return rank[u], rank[v]


def spanning_tree_in_tree(tree: KDTree, core: np.ndarray, initial_forest=None) -> np.ndarray:
    """Sorted MST (MST_EDGE [N-1]) of the points of a built tree; ``core`` in original order."""
    n = tree.points.shape[0]
    if n == 1:
        return np.empty(0, dtype=MST_EDGE)
    cores = np.ascontiguousarray(core, dtype=np.float64)[tree.order]
    forest_a, forest_b = _forest_in_tree_order(initial_forest, tree, n)
    tree_arrays = (tree.start, tree.end, tree.left, tree.right, tree.lo, tree.hi)
    a, b, w = _boruvka(tree.points, cores, tree_arrays, tree.depth, forest_a, forest_b)
    return sorted_edges(tree.order[a], tree.order[b], w)


def minimum_spanning_tree(X, core, n_threads: int = 0, initial_forest=None) -> np.ndarray:
    """Exact MST of the complete graph under ``w(a, b) = max(core[a], core[b], d(a, b))``.

    Parameters
    ----------
    X : float64 [N, D]
    core : float64 [N], core distances
    n_threads : int, 0 for every thread
    initial_forest : MST_EDGE [F] or None
        Edges known to lie in an MST (they must form a forest); the result contains them.
        Their weights are recomputed from ``X`` and ``core``.

    Returns
    -------
    MST_EDGE [N-1], ``u < v``, sorted by ``(weight, u, v)``; empty when N == 1.
    """
    from .core_distance import _as_points
    from .threads import thread_limit

    X = _as_points(X)
    core = np.ascontiguousarray(core, dtype=np.float64)
    if core.shape != (X.shape[0],):
        raise ValueError(f"core must have shape ({X.shape[0]},), got {core.shape}")
    with thread_limit(n_threads):
        return spanning_tree_in_tree(build_kdtree(X), core, initial_forest)


@numba.njit(cache=True)
def _kruskal(u, v, n):
    """Indices of the edges (in the given, sorted order) that Kruskal keeps."""
    parent, size = make_disjoint_set(n)
    keep = np.empty(u.shape[0], np.int64)
    m = 0
    for i in range(u.shape[0]):
        ra, rb = find_root(parent, u[i]), find_root(parent, v[i])
        if ra != rb:
            union_roots(parent, size, ra, rb)
            keep[m] = i
            m += 1
    return keep[:m]


def spanning_forest_of_edges(edges, n: int) -> np.ndarray:
    """Minimum spanning forest of an explicit edge list over ``n`` vertices (Kruskal).

    Parameters
    ----------
    edges : MST_EDGE [E], any order, either orientation
    n : int, number of vertices

    Returns
    -------
    MST_EDGE [F], ``u < v``, sorted by ``(weight, u, v)``; ties are broken by ``(u, v)``.
    """
    edges = np.asarray(edges)
    if edges.dtype != MST_EDGE or edges.ndim != 1:
        raise ValueError(f"edges must be a 1-d MST_EDGE array, got dtype {edges.dtype}")
    if edges.shape[0] == 0:
        return np.empty(0, dtype=MST_EDGE)
    u, v = edges["u"].astype(np.int64), edges["v"].astype(np.int64)
    if min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n:
        raise ValueError(f"edges have an endpoint outside [0, {n})")
    ordered = sorted_edges(u, v, edges["weight"].astype(np.float64))
    return ordered[_kruskal(ordered["u"], ordered["v"], int(n))]
