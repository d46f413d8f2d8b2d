"""A slow, obviously correct float64 reference of ``docs/SPEC.md``.

Written from the definitions, not from the binary encoding the backends use: distances by
brute force with the SPEC's lane order, core distances by sorting, the MST by Prim on the
dense mutual-reachability matrix, and the hierarchy by thresholds (for each distinct weight
``w``, the components of the graph of edges with weight ``<= w``), built directly as an
n-ary tree. Every backend must reproduce these arrays exactly (``np.array_equal``).

Memory is O(N^2): meant for N up to a few thousand.
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from medscore._dtypes import CONDENSED, LINKAGE, MST_EDGE


class Result(NamedTuple):
    """Everything the reference computes, in the order of the backends' ``fit``."""

    core: np.ndarray
    mst: np.ndarray
    linkage: np.ndarray
    condensed: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    persistence: np.ndarray


class Tree(NamedTuple):
    """The n-ary threshold hierarchy. Nodes ``0..N-1`` are the points."""

    height: list  #: merge weight of each node (0.0 for points, unused)
    children: list  #: child node ids of each node, ordered by min_point
    size: list  #: number of points under each node
    min_point: list  #: smallest point index under each node
    root: int


# -- stage 1 -------------------------------------------------------------------------


def pairwise_distances(X: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[N, N]`` with the SPEC's bit-defined summation order.

    Lane ``k % 4`` accumulates ``(a_k - b_k) * (a_k - b_k)`` left to right over ``k``; the
    square is ``sqrt((l0 + l1) + (l2 + l3))``. Vectorised over pairs, sequential over ``k``.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, dim = X.shape
    lanes = np.zeros((4, n, n), dtype=np.float64)
    for k in range(dim):
        diff = X[:, None, k] - X[None, :, k]
        lanes[k % 4] += diff * diff
    return np.sqrt((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))


def clipped_k(n: int, min_samples: int) -> int:
    """Neighbour rank of the core distance, clipped as the ``hdbscan`` library clips it."""
    return max(min(min_samples, n - 1), 1)


def core_distances(X: np.ndarray, min_samples: int) -> np.ndarray:
    """``core[i]`` = k-th smallest distance from ``i`` to another point (float64 [N])."""
    n = X.shape[0]
    if n == 1:
        return np.zeros(1)
    dist = pairwise_distances(X)
    np.fill_diagonal(dist, np.inf)
    k = clipped_k(n, min_samples)
    return np.sort(dist, axis=1)[:, k - 1].copy()


def nearest_neighbors(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other points of each point, ordered by ``(distance, index)``."""
    n = X.shape[0]
    dist = pairwise_distances(X)
    np.fill_diagonal(dist, np.inf)
    index = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        order = np.lexsort((np.arange(n), dist[i]))[:k]
        index[i] = order
    return index, np.take_along_axis(dist, index, axis=1)


# -- stage 2 -------------------------------------------------------------------------


def mutual_reachability(X: np.ndarray, core: np.ndarray) -> np.ndarray:
    """``w(a, b) = max(core[a], core[b], d(a, b))`` as a dense ``[N, N]`` matrix."""
    return np.maximum(np.maximum(core[:, None], core[None, :]), pairwise_distances(X))


def minimum_spanning_tree(X: np.ndarray, core: np.ndarray) -> np.ndarray:
    """An exact MST of the mutual-reachability graph by Prim (MST_EDGE [N-1], sorted)."""
    n = X.shape[0]
    weights = mutual_reachability(X, core)
    in_tree = np.zeros(n, dtype=bool)
    best = np.full(n, np.inf)
    best_from = np.zeros(n, dtype=np.int64)
    edges = []
    current = 0
    for _ in range(n - 1):
        in_tree[current] = True
        closer = ~in_tree & (weights[current] < best)
        best[closer] = weights[current][closer]
        best_from[closer] = current
        candidates = np.flatnonzero(~in_tree)
        nxt = int(candidates[np.argmin(best[candidates])])
        u, v = sorted((int(best_from[nxt]), nxt))
        edges.append((u, v, weights[u, v]))
        current = nxt
    mst = np.array(edges, dtype=MST_EDGE)
    return mst[np.lexsort((mst["v"], mst["u"], mst["weight"]))]


def is_minimum_spanning_tree(mst: np.ndarray, X: np.ndarray, core: np.ndarray) -> bool:
    """Whether ``mst`` is a sorted MST of the mutual-reachability graph (any tie-break)."""
    n = X.shape[0]
    if mst.dtype != MST_EDGE or mst.shape != (n - 1,):
        return False
    weights = mutual_reachability(X, core)
    u, v, w = mst["u"], mst["v"], mst["weight"]
    if np.any(u >= v) or np.any(u < 0) or np.any(v >= n):
        return False
    if not np.array_equal(w, weights[u, v]):
        return False
    if not np.array_equal(np.lexsort((v, u, w)), np.arange(n - 1)):
        return False
    if _count_components(n, u, v) != 1:
        return False
    # A spanning tree whose sorted weights equal those of an MST is an MST.
    return np.array_equal(w, minimum_spanning_tree(X, core)["weight"])


def _count_components(n: int, u: np.ndarray, v: np.ndarray) -> int:
    parent = list(range(n))
    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
    return sum(1 for i in range(n) if _find(parent, i) == i)


def _find(parent: list, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


# -- stage 3 -------------------------------------------------------------------------


def single_linkage(mst: np.ndarray, n: int) -> np.ndarray:
    """Kruskal over the sorted MST: edge ``i`` creates node ``N + i`` (LINKAGE [N-1])."""
    if len(mst) != max(n - 1, 0):
        raise ValueError(f"a spanning tree of {n} points has {max(n - 1, 0)} edges, got {len(mst)}")
    parent = list(range(n))
    node_of = list(range(n))  # union-find root -> tree node of that component
    size_of = [1] * n
    out = np.empty(n - 1 if n > 0 else 0, dtype=LINKAGE)
    for i, (u, v, w) in enumerate(mst.tolist()):
        ru, rv = _find(parent, int(u)), _find(parent, int(v))
        if ru == rv:
            raise ValueError(f"edge {i} closes a cycle: not a spanning tree")
        out[i] = (node_of[ru], node_of[rv], w, size_of[ru] + size_of[rv])
        parent[ru] = rv
        node_of[rv] = n + i
        size_of[rv] += size_of[ru]
    return out


def threshold_tree(mst: np.ndarray, n: int) -> Tree:
    """The n-ary hierarchy: at each distinct weight, components joined at once merge."""
    height, children = [0.0] * n, [[] for _ in range(n)]
    size, min_point = [1] * n, list(range(n))
    parent = list(range(n))
    node_of = list(range(n))
    weights = mst["weight"]
    for w in np.unique(weights).tolist():
        level = mst[weights == w]
        before = {}  # old union-find root -> its tree node, for roots touched at this level
        for u, v in zip(level["u"].tolist(), level["v"].tolist()):
            for x in (u, v):
                r = _find(parent, x)
                before.setdefault(r, node_of[r])
        for u, v in zip(level["u"].tolist(), level["v"].tolist()):
            ru, rv = _find(parent, u), _find(parent, v)
            if ru != rv:
                parent[ru] = rv
        groups: dict[int, list] = {}
        for old_root, node in before.items():
            groups.setdefault(_find(parent, old_root), []).append(node)
        for new_root, members in groups.items():
            members.sort(key=lambda m: min_point[m])
            height.append(w)
            children.append(members)
            size.append(sum(size[m] for m in members))
            min_point.append(min_point[members[0]])
            node_of[new_root] = len(height) - 1
    return Tree(height, children, size, min_point, len(height) - 1)


# -- stage 4 -------------------------------------------------------------------------


def lambda_of(w: float) -> float:
    return 1.0 / w if w > 0 else np.inf


def points_under(tree: Tree, node: int) -> list:
    """Point indices under ``node``, ascending."""
    out, stack = [], [node]
    while stack:
        x = stack.pop()
        if tree.children[x]:
            stack.extend(tree.children[x])
        else:
            out.append(x)
    return sorted(out)


def condense(tree: Tree, n: int, min_cluster_size: int) -> np.ndarray:
    """Condensed tree per SPEC stage 4 (CONDENSED), FIFO numbering from label ``N``."""
    rows = []
    if n == 1:
        return np.empty(0, dtype=CONDENSED)
    queue = deque([(tree.root, n)])
    next_label = n + 1
    while queue:
        x, c = queue.popleft()
        while True:
            lam = lambda_of(tree.height[x])
            ch = tree.children[x]
            big = [y for y in ch if tree.size[y] >= min_cluster_size]
            if len(big) >= 2:
                for y in ch:
                    if tree.size[y] >= min_cluster_size:
                        rows.append((c, next_label, lam, tree.size[y]))
                        queue.append((y, next_label))
                        next_label += 1
                    else:
                        rows.extend((c, p, lam, 1) for p in points_under(tree, y))
                break
            for y in ch:
                if tree.size[y] < min_cluster_size:
                    rows.extend((c, p, lam, 1) for p in points_under(tree, y))
            if not big:
                break
            x = big[0]
    return np.array(rows, dtype=CONDENSED)


# -- stage 5 -------------------------------------------------------------------------


def ordered_sum(values) -> float:
    """Float64 sum in ascending order of the values (order-free by construction)."""
    total = 0.0
    for value in sorted(float(v) for v in values):
        total += value
    return total


class ClusterTree(NamedTuple):
    root: int
    parent: dict  #: cluster -> parent cluster
    birth: dict  #: cluster -> lambda at which it appears (0 for the root)
    kids: dict  #: cluster -> child clusters, ascending id
    stability: dict


def cluster_tree(condensed: np.ndarray, n: int) -> ClusterTree:
    """Births, parents, children and stabilities of the clusters of a condensed tree."""
    root = n
    parent, birth, kids = {}, {root: 0.0}, {root: []}
    terms: dict[int, list] = {root: []}
    for p, c, lam, s in condensed.tolist():
        if c >= n:
            parent[c], birth[c] = p, lam
            kids.setdefault(p, []).append(c)
            kids.setdefault(c, [])
            terms.setdefault(c, [])
    for p, c, lam, s in condensed.tolist():
        terms.setdefault(p, []).append((lam - birth[p]) * s)
    stability = {c: ordered_sum(t) for c, t in terms.items()}
    kids = {c: sorted(k) for c, k in kids.items()}
    return ClusterTree(root, parent, birth, kids, stability)


def _descendants(ct: ClusterTree, c: int) -> list:
    out, stack = [], list(ct.kids[c])
    while stack:
        x = stack.pop()
        out.append(x)
        stack.extend(ct.kids[x])
    return out


def select_eom(ct: ClusterTree, allow_single_cluster: bool, epsilon: float, condensed=None,
               max_cluster_size: int = 0, epsilon_max: float = np.inf) -> set:
    """Excess-of-mass selection, then the epsilon search (SPEC stage 5, ``eom``); with
    ``condensed``, the ``max_cluster_size`` and ``epsilon_max`` limits too."""
    stability = dict(ct.stability)
    candidates = sorted(ct.kids, reverse=True)
    if not allow_single_cluster:
        candidates.remove(ct.root)
    size, node_eps = {}, {}
    if condensed is not None and len(condensed):
        rows = condensed.tolist()
        size = {c: s for _, c, _, s in rows if c in ct.parent}
        size[ct.root] = sum(size[k] for k in ct.kids[ct.root])
        node_eps = {c: _eps_of(ct, c) for c in ct.parent}
        node_eps[ct.root] = max(1.0 / lam if lam != 0 else np.inf for _, _, lam, _ in rows)
    n_points = ct.root
    limit = max_cluster_size if max_cluster_size > 0 else n_points + 1
    selected = set(candidates)
    for c in candidates:
        sub = ordered_sum(stability[k] for k in ct.kids[c])
        too_big = size.get(c, 0) > limit or node_eps.get(c, 0.0) > epsilon_max
        if sub > stability[c] or too_big:
            selected.discard(c)
            stability[c] = sub
        else:
            selected.difference_update(_descendants(ct, c))
    ct.stability.update(stability)  # persistence uses the modified values
    if epsilon != 0 and len(ct.kids) > 1:
        if selected == {ct.root}:
            return selected if allow_single_cluster else set()
        return epsilon_search(ct, selected, allow_single_cluster, epsilon)
    return selected


def select_leaf(ct: ClusterTree, allow_single_cluster: bool, epsilon: float) -> set:
    """Leaf selection, then the epsilon search (SPEC stage 5, ``leaf``)."""
    leaves = {c for c, k in ct.kids.items() if not k and c != ct.root}
    if epsilon != 0 and leaves:
        return epsilon_search(ct, leaves, allow_single_cluster, epsilon)
    return leaves


def _eps_of(ct: ClusterTree, c: int) -> float:
    return 1.0 / ct.birth[c] if ct.birth[c] != 0 else np.inf


def epsilon_search(ct: ClusterTree, clusters: set, allow_single_cluster: bool, epsilon: float) -> set:
    """The order-free epsilon search of SPEC stage 5."""
    kept = {s for s in clusters if _eps_of(ct, s) >= epsilon}
    walked = set()
    for s in clusters - kept:
        while True:
            p = ct.parent[s]
            if p == ct.root:
                walked.add(p if allow_single_cluster else s)
                break
            if _eps_of(ct, p) > epsilon:
                walked.add(p)
                break
            s = p
    ancestors_of = {w: _ancestors(ct, w) for w in walked}
    top = {w for w in walked if not (ancestors_of[w] & (walked - {w}))}
    return kept | top


def _ancestors(ct: ClusterTree, c: int) -> set:
    out = set()
    while c in ct.parent:
        c = ct.parent[c]
        out.add(c)
    return out


def simplify_hierarchy(condensed: np.ndarray, n: int, persistence: float) -> np.ndarray:
    """``cluster_selection_persistence`` (SPEC stage 5): the condensed tree with the splits
    whose least persistent child is below ``persistence`` dissolved, in float32 arithmetic."""
    if persistence == 0 or len(condensed) == 0:
        return condensed.copy()
    rows = condensed.tolist()
    ct = cluster_tree(condensed, n)
    death = {}
    for p, _, lam, _ in rows:
        death[p] = max(death.get(p, -np.inf), lam)
    mb = {c: np.float32(death[c]) for c in ct.kids}
    has_kids = {c: bool(k) for c, k in ct.kids.items()}
    up, new_lambda = {}, {}
    for p in sorted(ct.kids, reverse=True):
        kids = ct.kids[p]
        if not kids:
            continue
        split = np.float32(ct.birth[kids[0]])
        values = [mb[k] for k in kids]
        mb[p] = max(mb[p], max(values))
        if float(np.float32(min(values) - split)) >= persistence:
            continue
        keep = max(k for k in kids if mb[k] == max(values))  # larger id on a tie
        if not has_kids[keep]:
            has_kids[p] = False
        else:
            new_lambda.update({k: float(split) for k in kids if k != keep})
        up.update({k: p for k in kids})

    def survivor(c):
        while c in up:
            c = up[c]
        return c

    new_id = {c: n + i for i, c in enumerate(sorted(c for c in ct.kids if c not in up))}
    out = [(new_id[survivor(p)], new_id[c] if c >= n else c,
            new_lambda[p] if p in new_lambda else float(np.float32(lam)), s)
           for p, c, lam, s in rows if not (c >= n and c in up)]
    return np.array(out, dtype=condensed.dtype)


def select(condensed: np.ndarray, n: int, method: str, allow_single_cluster: bool,
           epsilon: float, max_cluster_size: int = 0,
           epsilon_max: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels int64 [N], probabilities float64 [N], persistence float64 [K] (SPEC stage 5)."""
    if n == 1:
        return np.full(1, -1, np.int64), np.zeros(1), np.zeros(0)
    ct = cluster_tree(condensed, n)
    if method == "eom":
        selected = select_eom(ct, allow_single_cluster, epsilon, condensed, max_cluster_size, epsilon_max)
    elif method == "leaf":
        selected = select_leaf(ct, allow_single_cluster, epsilon)
    else:
        raise ValueError(f"unknown method {method!r}")
    clusters = sorted(selected)
    labels, cluster_of_point, row_lambda = _label_points(condensed, n, ct, clusters, allow_single_cluster, epsilon)
    death = {}
    for p, _, lam, _ in condensed.tolist():
        death[p] = max(death.get(p, -np.inf), lam)
    probabilities = np.zeros(n)
    for i in np.flatnonzero(labels >= 0).tolist():
        s, lam = clusters[labels[i]], row_lambda[i]
        if death[s] == 0 or not np.isfinite(lam):
            probabilities[i] = 1.0
        else:
            probabilities[i] = min(lam, death[s]) / death[s]
    max_lambda = float(condensed["lambda_val"].max())
    persistence = np.empty(len(clusters))
    for label, s in enumerate(clusters):
        m = int((labels == label).sum())
        if np.isinf(max_lambda) or max_lambda == 0 or m == 0:
            persistence[label] = 1.0
        else:
            persistence[label] = ct.stability[s] / (m * max_lambda)
    return labels, probabilities, persistence


def _label_points(condensed, n, ct, clusters, allow_single_cluster, epsilon):
    label_of = {c: i for i, c in enumerate(clusters)}
    row_parent, row_lambda = np.empty(n, np.int64), np.empty(n)
    for p, c, lam, _ in condensed.tolist():
        if c < n:
            row_parent[c], row_lambda[c] = p, lam
    labels = np.full(n, -1, np.int64)
    only_root = clusters == [ct.root]
    root_max = max(lam for p, _, lam, _ in condensed.tolist() if p == ct.root)
    for i in range(n):
        c = int(row_parent[i])
        while c not in label_of and c in ct.parent:
            c = ct.parent[c]
        if c not in label_of:
            continue
        if c != ct.root:
            labels[i] = label_of[c]
        elif only_root and allow_single_cluster:
            threshold = 1.0 / epsilon if epsilon != 0 else root_max
            labels[i] = 0 if row_lambda[i] >= threshold else -1
    return labels, clusters, row_lambda


# -- everything ----------------------------------------------------------------------


def fit(X, min_cluster_size: int, min_samples: int, method: str = "eom",
        allow_single_cluster: bool = False, epsilon: float = 0.0) -> Result:
    """The whole pipeline, returning what the backends' ``fit`` returns."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    core = core_distances(X, min_samples)
    mst = minimum_spanning_tree(X, core) if n > 1 else np.empty(0, dtype=MST_EDGE)
    linkage = single_linkage(mst, n)
    condensed = condense(threshold_tree(mst, n), n, min_cluster_size)
    labels, probabilities, persistence = select(condensed, n, method, allow_single_cluster, epsilon)
    return Result(core, mst, linkage, condensed, labels, probabilities, persistence)


# -- comparison helpers --------------------------------------------------------------


def canonical_condensed(condensed: np.ndarray, n: int) -> np.ndarray:
    """``condensed`` with clusters renamed by the SPEC's rule and rows sorted.

    Clusters are renumbered breadth-first from the root ``N``, the children of a cluster
    ordered by the smallest point they contain; rows are sorted by ``(parent, child)``.
    Two condensed trees describe the same hierarchy iff their canonical forms are equal,
    whatever numbering and row order produced them (e.g. the ``hdbscan`` library's).
    """
    condensed = np.asarray(condensed)
    kids: dict[int, list] = {}
    min_point: dict[int, int] = {}
    for p, c, _, _ in condensed.tolist():
        kids.setdefault(int(p), []).append(int(c))
    for c in sorted(kids, reverse=True):  # children have larger ids than parents
        min_point[c] = min(k if k < n else min_point[k] for k in kids[c])
    rename = {n: n} if kids else {}
    queue, next_label = deque([n] if kids else []), n + 1
    while queue:
        x = queue.popleft()
        for k in sorted((k for k in kids[x] if k >= n), key=min_point.__getitem__):
            rename[k] = next_label
            next_label += 1
            queue.append(k)
    out = np.empty(len(condensed), dtype=CONDENSED)
    for i, (p, c, lam, s) in enumerate(condensed.tolist()):
        out[i] = (rename[int(p)], rename[int(c)] if c >= n else int(c), lam, s)
    return out[np.lexsort((out["child"], out["parent"]))]


def binary_order_irrelevant(tree: Tree, min_cluster_size: int) -> bool:
    """Whether condensing any binary encoding of ``tree`` gives the SPEC's condensed tree.

    True when every n-ary merge that condensing walks is harmless: two children; or one big
    child whose small siblings add up to fewer than ``min_cluster_size`` points; or no big
    child and fewer than ``2 * min_cluster_size`` points. Then the ``hdbscan`` library's
    condensed tree (which condenses its own binary tree) must equal the reference's after
    canonical renaming, even though mutual-reachability weights are tied.
    """
    stack = [tree.root] if tree.children[tree.root] else []
    while stack:
        x = stack.pop()
        ch = tree.children[x]
        big = [y for y in ch if tree.size[y] >= min_cluster_size]
        small_total = sum(tree.size[y] for y in ch if tree.size[y] < min_cluster_size)
        safe = (len(ch) == 2 or (len(big) == 1 and small_total < min_cluster_size)
                or (not big and tree.size[x] < 2 * min_cluster_size))
        if not safe:
            return False
        stack.extend(big)
    return True


def eom_margin(condensed: np.ndarray, n: int) -> float:
    """Smallest relative gap between a cluster's stability and its children's sum.

    The ``hdbscan`` library sums children's stabilities in a C ``float`` (float32), so EOM
    decisions closer than about 1e-6 relative may go the other way there.
    """
    if len(condensed) == 0:
        return np.inf
    ct = cluster_tree(condensed, n)
    stability = dict(ct.stability)
    margin = np.inf
    for c in sorted(ct.kids, reverse=True):
        if not ct.kids[c]:
            continue
        sub = ordered_sum(stability[k] for k in ct.kids[c])
        scale = max(abs(sub), abs(stability[c]))
        if np.isfinite(scale) and scale > 0:  # inf against inf compares the same in float32
            margin = min(margin, abs(sub - stability[c]) / scale)
        stability[c] = max(sub, stability[c])
    return margin


def edges_of_linkage(linkage: np.ndarray, n: int) -> np.ndarray:
    """MST_EDGE rows joining one point of each side of every linkage row.

    The threshold components of these edges are those of the linkage tree, so
    ``threshold_tree(edges_of_linkage(L, n), n)`` is the hierarchy ``L`` encodes.
    """
    min_point = list(range(n)) + [0] * max(n - 1, 0)
    edges = np.empty(len(linkage), dtype=MST_EDGE)
    for i, (left, right, dist, _) in enumerate(linkage.tolist()):
        a, b = min_point[int(left)], min_point[int(right)]
        min_point[n + i] = min(a, b)
        edges[i] = (min(a, b), max(a, b), dist)
    return edges


class ReferenceBackend:
    """The reference behind the backend interface, to check the suite itself.

    Selected by ``MEDSCORE_TEST_REFERENCE_BACKEND=1`` (see ``conftest.py``).
    """

    __name__ = "tests.reference"

    @staticmethod
    def core_distances(X, min_samples, n_threads=0):
        return core_distances(X, min_samples)

    @staticmethod
    def nearest_neighbors(X, k, n_threads=0):
        return nearest_neighbors(X, k)

    @staticmethod
    def minimum_spanning_tree(X, core, n_threads=0, initial_forest=None):
        if len(X) == 1:
            return np.empty(0, MST_EDGE)
        if initial_forest is None:
            return minimum_spanning_tree(X, core)
        return _kruskal_with_forest(mutual_reachability(X, core), initial_forest)

    @staticmethod
    def single_linkage(mst, n):
        return single_linkage(mst, n)

    @staticmethod
    def condense_tree(linkage, n, min_cluster_size):
        return condense(threshold_tree(edges_of_linkage(linkage, n), n), n, min_cluster_size)

    @staticmethod
    def select_clusters(condensed, n, method, allow_single_cluster, epsilon):
        return select(condensed, n, method, allow_single_cluster, epsilon)

    @staticmethod
    def fit(X, min_cluster_size, min_samples, method, allow_single_cluster, epsilon, n_threads=0):
        return tuple(fit(X, min_cluster_size, min_samples, method, allow_single_cluster, epsilon))


def _kruskal_with_forest(weights: np.ndarray, forest: np.ndarray) -> np.ndarray:
    """Kruskal that takes ``forest`` (part of some MST) first: an MST containing it."""
    n = len(weights)
    u, v = np.triu_indices(n, 1)
    order = np.lexsort((v, u, weights[u, v]))
    parent, edges = list(range(n)), []
    candidates = list(zip(forest["u"].tolist(), forest["v"].tolist()))
    candidates += list(zip(u[order].tolist(), v[order].tolist()))
    for a, b in candidates:
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
            edges.append((a, b, weights[a, b]))
    mst = np.array(edges, dtype=MST_EDGE)
    return mst[np.lexsort((mst["v"], mst["u"], mst["weight"]))]
