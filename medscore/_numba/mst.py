"""Stage 2 of ``docs/SPEC.md``: exact MST of the mutual-reachability graph (Borůvka on a kd-tree).

Each round, every component finds its lightest edge to another component under the strict
total order ``(w, min(a, b), max(a, b))`` on tree-order indices, so the chosen edges always form
a forest (they all belong to the MST that this order makes unique).

A component first takes the edges it already knows: each point's lightest outgoing edge from an
earlier round (still exact while its far end is outside), and the edges to its listed nearest
neighbours. It then searches the tree for the remaining points in ascending order of a lower
bound, stopping once the bound exceeds the best edge. A search prunes a node when all its points
are in the component, or when ``max(core_q, min core in node, node distance bound)`` exceeds the
best weight found so far.

Infinite weights (a squared distance that overflows, between finite points far apart) never
win: the search keeps only finite edges, and a component with none left reports ``(inf, -1,
-1)``. Once every component is in that state, the remaining components are joined by
infinite edges in any order; under those tied weights every such tree is an MST (docs/SPEC.md).
"""
import numba
import numpy as np

from .._dtypes import MST_EDGE
from .disjoint_set import find_root, make_disjoint_set, union_roots
from .distance import row_distance
from .kdtree import KDTree, build_kdtree, node_lower_bound

#: Depth of the cheap first bound that orders a large component's searches, and the
#: component size from which it pays.
_SHALLOW_DEPTH = 6
_SHALLOW_MIN_MEMBERS = 32


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
def edge_less(w, a, b, best_w, best_a, best_b):
    """Whether edge (w, a, b) comes before (best_w, best_a, best_b) in the strict total order
    (weight, u, v) under which the MST is unique (``edge_less`` of csrc/private/medscore/kruskal.hpp)."""
    return w < best_w or (w == best_w and (a < best_a or (a == best_a and b < best_b)))


@numba.njit(cache=True)
def sort_edges(u, v, w):
    """Edges sorted by (weight, u, v): successive stable sorts, last key first.

    Parameters
    ----------
    u, v : int64 [M], w : float64 [M]

    Returns
    -------
    (int64 [M], int64 [M], float64 [M]): new arrays, the edges in that order.
    """
    order = np.argsort(v, kind="mergesort")
    order = order[np.argsort(u[order], kind="mergesort")]
    order = order[np.argsort(w[order], kind="mergesort")]
    return u[order].copy(), v[order].copy(), w[order].copy()


@numba.njit(cache=True)
def kruskal_merge(au, av, aw, bu, bv, bw, n):
    """Kruskal over two edge lists, each sorted by (weight, u, v), merged on the fly.

    ``kruskal_merge`` of csrc/private/medscore/kruskal.hpp: on n >= 1 vertices, the minimum
    spanning tree of the union of the edges ``(au, av, aw)`` and ``(bu, bv, bw)`` (int64,
    int64, float64 [M] each), sorted by (weight, u, v): (int64 [n-1], int64 [n-1], float64
    [n-1]). ValueError if the edges do not span the vertices.
    """
    out_u = np.empty(n - 1, np.int64)
    out_v = np.empty(n - 1, np.int64)
    out_w = np.empty(n - 1)
    sets, sizes = make_disjoint_set(n)
    i = j = count = 0
    while count < n - 1 and (i < au.shape[0] or j < bu.shape[0]):
        # On a tie the two edges are the same edge: the second one closes a cycle.
        take_a = j == bu.shape[0] or (i < au.shape[0] and edge_less(aw[i], au[i], av[i], bw[j], bu[j], bv[j]))
        if take_a:
            eu, ev, ew = au[i], av[i], aw[i]
            i += 1
        else:
            eu, ev, ew = bu[j], bv[j], bw[j]
            j += 1
        ru, rv = find_root(sets, eu), find_root(sets, ev)
        if ru != rv:
            union_roots(sets, sizes, ru, rv)
            out_u[count], out_v[count], out_w[count] = eu, ev, ew
            count += 1
    if count != n - 1:
        raise ValueError("insert_into_mst: the edges do not span")
    return out_u, out_v, out_w


@numba.njit(cache=True)
def _scan_leaf(q, c, node, points, cores, comp, start, end, best):
    """Update ``best`` with the points of leaf ``node`` outside component ``c``.

    ``best`` is float64 [3]: weight and the two tree-order endpoints (exact below 2**53).
    """
    core_q = cores[q]
    for p in range(start[node], end[node]):
        if comp[p] == c or cores[p] > best[0]:
            continue
        w = max(core_q, cores[p], row_distance(points, q, points, p))
        a, b = min(q, p), max(q, p)
        if edge_less(w, a, b, best[0], best[1], best[2]):
            best[0], best[1], best[2] = w, a, b


@numba.njit(cache=True)
def _search_point(q, c, points, cores, comp, tree_arrays, node_min_core, node_comp, best, stack, stack_lb):
    """Improve ``best`` with the edges from tree-order point ``q`` (component ``c``) leaving ``c``.

    On return ``best`` is the lighter of its old value and ``q``'s lightest finite outgoing
    edge (subtrees whose bound is infinite are skipped).
    """
    start, end, left, right, lo, hi, center, radius = tree_arrays
    core_q = cores[q]
    top = 0
    stack[0] = 0
    stack_lb[0] = core_q
    while top >= 0:
        node = stack[top]
        lb = stack_lb[top]
        top -= 1
        if lb > best[0] or lb == np.inf:  # an infinite edge never wins
            continue
        if left[node] < 0:
            _scan_leaf(q, c, node, points, cores, comp, start, end, best)
            continue
        near, far = left[node], right[node]
        lb_near = max(core_q, node_min_core[near], node_lower_bound(points, q, lo, hi, center, radius, near))
        lb_far = max(core_q, node_min_core[far], node_lower_bound(points, q, lo, hi, center, radius, far))
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


@numba.njit(cache=True)
def _seed_edge(q, c, cores, comp, seed_to, seed_dist, best):
    """Lightest edge from ``q`` to a listed neighbour outside ``c``, and whether it is ``q``'s lightest.

    ``seed_to[q]`` lists q's K nearest points by distance (tree order), ``seed_dist[q]`` their
    distances. An unlisted point p has ``w(q, p) >= max(core_q, seed_dist[q, K-1])`` (its
    distance is at least the K-th one), so a listed edge strictly lighter than that is exact.
    Returns the bound ``max(core_q, seed_dist[q, K-1])`` on q's unlisted edges (inf if the
    list holds every other point).
    """
    k = seed_to.shape[1]
    core_q = cores[q]
    for j in range(k):
        p = seed_to[q, j]
        if comp[p] != c:
            w = max(core_q, cores[p], seed_dist[q, j])
            a, b = min(q, p), max(q, p)
            if edge_less(w, a, b, best[0], best[1], best[2]):
                best[0], best[1], best[2] = w, a, b
    if k == cores.shape[0] - 1:
        return np.inf
    return max(core_q, seed_dist[q, k - 1])


@numba.njit(cache=True)
def _known_edges(c, members, cores, comp, seed_to, seed_dist, cached_to, cached_w, lower):
    """Lightest edge leaving ``c`` among the cached and listed edges of its points (float64 [3])."""
    best = np.array([np.inf, -1.0, -1.0])
    own = np.empty(3)
    for q in members:
        p = cached_to[q]
        if p >= 0 and comp[p] != c:
            if edge_less(cached_w[q], min(q, p), max(q, p), best[0], best[1], best[2]):
                best[0], best[1], best[2] = cached_w[q], min(q, p), max(q, p)
            continue
        if seed_to.shape[1] == 0:
            continue
        own[0], own[1], own[2] = np.inf, -1.0, -1.0
        unlisted = _seed_edge(q, c, cores, comp, seed_to, seed_dist, own)
        if own[0] < unlisted:
            cached_to[q] = np.int64(own[2]) if own[1] == q else np.int64(own[1])
            cached_w[q] = own[0]
            lower[q] = max(lower[q], own[0])
        else:
            lower[q] = max(lower[q], min(own[0], unlisted))
        if edge_less(own[0], own[1], own[2], best[0], best[1], best[2]):
            best[:] = own
    return best


@numba.njit(cache=True)
def _shallow_lower_bound(q, c, points, cores, tree_arrays, node_min_core, node_comp, stack, stack_lb):
    """A lower bound on every weight from ``q`` to a point outside component ``c``.

    The minimum of the node bounds over a frontier of nodes not entirely inside ``c``: nodes
    of a single other component at depth ``_SHALLOW_DEPTH``, and leaves. Nodes mixing
    components are always opened (their bounding ball spans the gap between clusters, and
    there are few of them). Cheap, and good enough to order a large component's points so
    that its tightest edges are found first.
    """
    start, end, left, right, lo, hi, center, radius = tree_arrays
    out = np.inf
    top = 0
    stack[0] = 0
    stack_lb[0] = 0.0  # the depth of the node, reusing the float stack
    while top >= 0:
        node = stack[top]
        depth = stack_lb[top]
        top -= 1
        if node_comp[node] == c:
            continue
        if left[node] < 0 or (depth >= _SHALLOW_DEPTH and node_comp[node] >= 0):
            lb = max(cores[q], node_min_core[node], node_lower_bound(points, q, lo, hi, center, radius, node))
            out = min(out, lb)
            continue
        stack[top + 1], stack_lb[top + 1] = left[node], depth + 1
        stack[top + 2], stack_lb[top + 2] = right[node], depth + 1
        top += 2
    return out


@numba.njit(cache=True)
def _search_order(c, members, points, cores, comp, tree_arrays, node_min_core, node_comp,
                  cached_to, lower, stack, stack_lb):
    """Points of ``c`` still to search, by ascending lower bound (tightens ``lower`` first)."""
    pending = np.empty(members.shape[0], np.int64)
    m = 0
    for q in members:
        p = cached_to[q]
        if not (p >= 0 and comp[p] != c):
            pending[m] = q
            m += 1
    pending = pending[:m]
    if m >= _SHALLOW_MIN_MEMBERS:
        for q in pending:
            lower[q] = max(lower[q], _shallow_lower_bound(q, c, points, cores, tree_arrays, node_min_core,
                                                          node_comp, stack, stack_lb))
        return pending[np.argsort(lower[pending], kind="mergesort")]
    return pending


@numba.njit(cache=True)
def _component_edge(c, members, points, cores, comp, tree_arrays, node_min_core, node_comp,
                    seed_to, seed_dist, cached_to, cached_w, lower, stack, stack_lb):
    """Lightest edge (float64 [3]: w, a, b) leaving component ``c``; refreshes its points' caches.

    ``(inf, -1, -1)`` when every edge leaving ``c`` is infinite.

    ``cached_to[q]``/``cached_w[q]`` hold ``q``'s lightest outgoing edge from an earlier round
    (-1 if unknown); it stays exact while its far end is outside ``q``'s component, because
    components only grow. ``lower[q]`` is a lower bound on the weight of that edge.
    """
    best = _known_edges(c, members, cores, comp, seed_to, seed_dist, cached_to, cached_w, lower)
    pending = _search_order(c, members, points, cores, comp, tree_arrays, node_min_core, node_comp,
                            cached_to, lower, stack, stack_lb)
    for q in pending:
        if lower[q] > best[0] or lower[q] == np.inf:
            if pending.shape[0] >= _SHALLOW_MIN_MEMBERS:
                break  # sorted by lower bound: no later point can beat best either
            continue
        found = best.copy()
        _search_point(q, c, points, cores, comp, tree_arrays, node_min_core, node_comp, found,
                      stack, stack_lb)
        if found[1] != best[1] or found[2] != best[2]:
            # Lighter than every edge known before, hence q's own lightest outgoing edge.
            cached_to[q] = np.int64(found[2]) if found[1] == q else np.int64(found[1])
            cached_w[q] = found[0]
            lower[q] = max(lower[q], found[0])
            best[:] = found
        else:
            cached_to[q] = -1
            lower[q] = max(lower[q], best[0])
    return best


@numba.njit(cache=True, parallel=True)
def _lightest_outgoing_edges(points, cores, comp, members, member_start, tree_arrays, depth,
                             node_min_core, node_comp, seed_to, seed_dist, cached_to, cached_w, lower):
    """Lightest outgoing edge of each component: (a int64 [C], b int64 [C], w float64 [C]).

    ``members[member_start[c]:member_start[c + 1]]`` are the tree-order points of component
    ``c`` by ascending core distance. Components are independent (each writes only its own
    points' caches), so the result does not depend on the thread schedule.
    """
    n_comps = member_start.shape[0] - 1
    out_a = np.empty(n_comps, np.int64)
    out_b = np.empty(n_comps, np.int64)
    out_w = np.empty(n_comps)
    for c in numba.prange(n_comps):
        stack = np.empty(2 * depth + 2, np.int64)
        stack_lb = np.empty(2 * depth + 2)
        best = _component_edge(c, members[member_start[c]:member_start[c + 1]], points, cores, comp,
                               tree_arrays, node_min_core, node_comp, seed_to, seed_dist,
                               cached_to, cached_w, lower, stack, stack_lb)
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
    return max(cores[a], cores[b], row_distance(points, a, points, b))


@numba.njit(cache=True)
def _boruvka(points, cores, tree_arrays, depth, forest_a, forest_b, seed_to, seed_dist):
    """MST edges (a, b int64 [N-1], w float64 [N-1]) in tree-order indices, containing the forest."""
    n = points.shape[0]
    start, end, left, right, lo, hi, center, radius = tree_arrays
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
    cached_to = np.full(n, -1, np.int64)
    cached_w = np.full(n, np.inf)
    lower = cores.copy()
    while m < n - 1:
        comp, members, member_start = _components(parent, core_order)
        node_comp = _node_components(start, left, right, end, comp)
        best_a, best_b, best_w = _lightest_outgoing_edges(points, cores, comp, members, member_start,
                                                          tree_arrays, depth, node_min_core, node_comp,
                                                          seed_to, seed_dist, cached_to, cached_w, lower)
        added = 0
        for c in range(best_a.shape[0]):
            if best_a[c] < 0:
                continue  # every edge leaving c is infinite
            ra, rb = find_root(parent, best_a[c]), find_root(parent, best_b[c])
            if ra != rb:
                union_roots(parent, size, ra, rb)
                edge_a[m], edge_b[m], edge_w[m] = best_a[c], best_b[c], best_w[c]
                m += 1
                added += 1
        if added == 0:
            m = _join_by_infinite_edges(points, cores, parent, size, edge_a, edge_b, edge_w, m)
    return edge_a, edge_b, edge_w


@numba.njit(cache=True)
def _join_by_infinite_edges(points, cores, parent, size, edge_a, edge_b, edge_w, m):
    """Join every component to the one of point 0 when no finite edge leaves any of them.

    Each added edge links point 0 to the first point of another component; its weight must be
    infinite (else a search missed a finite edge: a broken invariant). Returns the new edge
    count, ``N - 1``.
    """
    for p in range(1, points.shape[0]):
        r0, rp = find_root(parent, 0), find_root(parent, p)
        if r0 == rp:
            continue
        w = _edge_weight(points, cores, 0, p)
        if w != np.inf:
            raise RuntimeError("Boruvka round added no edge but a finite edge is left (broken invariant)")
        union_roots(parent, size, r0, rp)
        edge_a[m], edge_b[m], edge_w[m] = 0, p, w
        m += 1
    return m


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


def spanning_tree_in_tree(tree: KDTree, core: np.ndarray, initial_forest=None, neighbors=None) -> np.ndarray:
    """Sorted MST (MST_EDGE [N-1]) of the points of a built tree; ``core`` in original order.

    ``neighbors``, optional, is ``neighbors_in_tree(tree, K)`` for some K: the listed edges
    seed each round's search (exact, so any K works; larger K prunes more in high dimension).
    """
    n = tree.points.shape[0]
    if n == 1:
        return np.empty(0, dtype=MST_EDGE)
    cores = np.ascontiguousarray(core, dtype=np.float64)[tree.order]
    forest_a, forest_b = _forest_in_tree_order(initial_forest, tree, n)
    tree_arrays = (tree.start, tree.end, tree.left, tree.right, tree.lo, tree.hi, tree.center, tree.radius)
    if neighbors is None:
        seed_to, seed_dist = np.empty((n, 0), np.int64), np.empty((n, 0))
    else:
        rank = np.empty(n, np.int64)
        rank[tree.order] = np.arange(n)
        seed_to = np.ascontiguousarray(rank[neighbors[0][tree.order]])
        seed_dist = np.ascontiguousarray(neighbors[1][tree.order])
    a, b, w = _boruvka(tree.points, cores, tree_arrays, tree.depth, forest_a, forest_b, seed_to, seed_dist)
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
