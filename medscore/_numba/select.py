"""Stage 5 of ``docs/SPEC.md``: stability, EOM/leaf selection, epsilon, labels, probabilities.

Clusters are handled by offset from the root: cluster ``N + c`` of the condensed tree is ``c``
here, so the root is 0 and every parent has a smaller offset than its children.
"""
import numba
import numpy as np

from .._dtypes import CONDENSED


@numba.njit(cache=True)
def _ordered_sum(values):
    """Float64 sum of ``values`` in ascending order (independent of the input order)."""
    total = 0.0
    for value in np.sort(values):
        total += value
    return total


@numba.njit(cache=True)
def _cluster_tree(parent, child, lam, child_size, n):
    """Per cluster: parent offset (-1 for the root), birth, stability and death (max child lambda).

    Per point: the offset of the cluster of its row and that row's lambda.
    """
    n_clusters = max(parent.max(), child.max(), n) - n + 1
    cluster_parent = np.full(n_clusters, -1, np.int64)
    birth = np.zeros(n_clusters)
    death = np.full(n_clusters, -np.inf)
    point_cluster = np.full(n, -1, np.int64)
    point_lambda = np.zeros(n)
    for r in range(parent.shape[0]):
        p = parent[r] - n
        death[p] = max(death[p], lam[r])
        if child[r] >= n:
            cluster_parent[child[r] - n] = p
            birth[child[r] - n] = lam[r]
        else:
            point_cluster[child[r]] = p
            point_lambda[child[r]] = lam[r]
    stability = np.zeros(n_clusters)
    rows = np.argsort(parent, kind="mergesort")
    first = 0
    while first < rows.shape[0]:
        p = parent[rows[first]]
        last = first
        while last < rows.shape[0] and parent[rows[last]] == p:
            last += 1
        terms = np.empty(last - first)
        for i in range(first, last):
            terms[i - first] = (lam[rows[i]] - birth[p - n]) * child_size[rows[i]]
        stability[p - n] = _ordered_sum(terms)
        first = last
    return cluster_parent, birth, stability, death, point_cluster, point_lambda


@numba.njit(cache=True)
def _kids(cluster_parent):
    """Child clusters of each cluster as CSR: ``kids[kid_start[c]:kid_start[c + 1]]``, ascending."""
    n_clusters = cluster_parent.shape[0]
    kid_start = np.zeros(n_clusters + 1, np.int64)
    for c in range(1, n_clusters):
        kid_start[cluster_parent[c] + 1] += 1
    kid_start = np.cumsum(kid_start)
    fill = kid_start[:-1].copy()
    kids = np.empty(max(n_clusters - 1, 0), np.int64)
    for c in range(1, n_clusters):
        kids[fill[cluster_parent[c]]] = c
        fill[cluster_parent[c]] += 1
    return kid_start, kids


@numba.njit(cache=True)
def _drop_below_selected(cluster_parent, tentative):
    """Clusters that are tentative and have no tentative strict ancestor (bool [K])."""
    selected = tentative.copy()
    blocked = np.zeros(tentative.shape[0], np.bool_)
    for c in range(1, tentative.shape[0]):  # parents come first
        p = cluster_parent[c]
        blocked[c] = blocked[p] or tentative[p]
        selected[c] = tentative[c] and not blocked[c]
    return selected


@numba.njit(cache=True)
def _select_eom(cluster_parent, stability, allow_single_cluster, size, node_eps, max_size, epsilon_max):
    """Excess of mass: selected clusters (bool [K]); updates ``stability`` in place as the SPEC says.

    Deselecting the descendants of each selected cluster, visited by decreasing id, leaves
    exactly the tentatively selected clusters without a tentatively selected ancestor. A
    candidate with ``size > max_size`` or ``node_eps > epsilon_max`` is not selected either,
    its stability replaced by its children's (``hdbscan``'s ``get_clusters``).
    """
    kid_start, kids = _kids(cluster_parent)
    tentative = np.zeros(cluster_parent.shape[0], np.bool_)
    for c in range(cluster_parent.shape[0] - 1, -1, -1):
        if c == 0 and not allow_single_cluster:
            continue
        sub = _ordered_sum(stability[kids[kid_start[c]:kid_start[c + 1]]])
        if sub > stability[c] or size[c] > max_size or node_eps[c] > epsilon_max:
            stability[c] = sub
        else:
            tentative[c] = True
    return _drop_below_selected(cluster_parent, tentative)


@numba.njit(cache=True)
def _eps_of(birth, c):
    return 1.0 / birth[c] if birth[c] != 0 else np.inf


@numba.njit(cache=True)
def _epsilon_search(chosen, cluster_parent, birth, allow_single_cluster, epsilon):
    """The SPEC's order-free epsilon search over the clusters marked in ``chosen`` (bool [K])."""
    n_clusters = chosen.shape[0]
    kept = np.zeros(n_clusters, np.bool_)
    walked = np.zeros(n_clusters, np.bool_)
    for s in range(n_clusters):
        if not chosen[s]:
            continue
        if _eps_of(birth, s) >= epsilon:
            kept[s] = True
            continue
        x = s
        while True:
            p = cluster_parent[x]
            if p == 0:
                walked[0 if allow_single_cluster else x] = True
                break
            if _eps_of(birth, p) > epsilon:
                walked[p] = True
                break
            x = p
    has_walked_ancestor = np.zeros(n_clusters, np.bool_)
    for c in range(1, n_clusters):  # parents come first
        p = cluster_parent[c]
        has_walked_ancestor[c] = has_walked_ancestor[p] or walked[p]
    return kept | (walked & ~has_walked_ancestor)


@numba.njit(cache=True)
def _select_leaf(cluster_parent, birth, allow_single_cluster, epsilon):
    """Leaf selection (bool [K]): clusters without child clusters, never the root (may be none)."""
    n_clusters = cluster_parent.shape[0]
    leaves = np.ones(n_clusters, np.bool_)
    leaves[0] = False
    for c in range(1, n_clusters):
        leaves[cluster_parent[c]] = False
    if epsilon != 0 and leaves.any():
        return _epsilon_search(leaves, cluster_parent, birth, allow_single_cluster, epsilon)
    return leaves


@numba.njit(cache=True)
def _label_points(selected, cluster_parent, point_cluster, point_lambda, death, allow_single_cluster, epsilon):
    """Label (int64 [N]) and probability (float64 [N]) of each point; labels follow cluster ids."""
    n_clusters = selected.shape[0]
    label_of = np.full(n_clusters, -1, np.int64)
    n_selected = 0
    for c in range(n_clusters):
        if selected[c]:
            label_of[c] = n_selected
            n_selected += 1
    # Nearest selected cluster at or above each cluster (-1 if none); parents come first.
    owner = np.full(n_clusters, -1, np.int64)
    owner[0] = 0 if selected[0] else -1
    for c in range(1, n_clusters):
        owner[c] = c if selected[c] else owner[cluster_parent[c]]
    only_root = n_selected == 1 and selected[0]
    threshold = 1.0 / epsilon if epsilon != 0 else death[0]
    n = point_cluster.shape[0]
    labels = np.full(n, -1, np.int64)
    probabilities = np.zeros(n)
    for i in range(n):
        s = owner[point_cluster[i]]
        if s < 0 or (s == 0 and not (only_root and allow_single_cluster and point_lambda[i] >= threshold)):
            continue
        labels[i] = label_of[s]
        lam = point_lambda[i]
        if death[s] == 0 or not np.isfinite(lam):
            probabilities[i] = 1.0
        else:
            probabilities[i] = min(lam, death[s]) / death[s]
    return labels, probabilities, label_of


@numba.njit(cache=True)
def _sizes_and_eps(parent, child, lam, child_size, n, n_clusters):
    """``hdbscan``'s ``cluster_sizes`` and ``node_eps`` per cluster: a cluster's row size and
    ``1 / birth``; for the root the summed sizes of its child clusters and the largest
    ``1 / lambda`` of all rows."""
    size = np.zeros(n_clusters, np.int64)
    node_eps = np.zeros(n_clusters)
    root_eps = -np.inf
    for r in range(parent.shape[0]):
        root_eps = max(root_eps, 1.0 / lam[r] if lam[r] != 0 else np.inf)
        if child[r] >= n:
            size[child[r] - n] = child_size[r]
            node_eps[child[r] - n] = 1.0 / lam[r] if lam[r] != 0 else np.inf
            if parent[r] == n:
                size[0] += child_size[r]
    node_eps[0] = root_eps
    return size, node_eps


@numba.njit(cache=True)
def _select(parent, child, lam, child_size, n, leaf, allow_single_cluster, epsilon, max_cluster_size, epsilon_max):
    """Labels, probabilities and persistence of a non-empty condensed tree."""
    cluster_parent, birth, stability, death, point_cluster, point_lambda = _cluster_tree(
        parent, child, lam, child_size, n)
    if leaf:
        selected = _select_leaf(cluster_parent, birth, allow_single_cluster, epsilon)
    else:
        size, node_eps = _sizes_and_eps(parent, child, lam, child_size, n, cluster_parent.shape[0])
        max_size = max_cluster_size if max_cluster_size > 0 else n + 1
        selected = _select_eom(cluster_parent, stability, allow_single_cluster, size, node_eps, max_size,
                               epsilon_max)
        if epsilon != 0 and cluster_parent.shape[0] > 1:
            if selected[0]:  # eom selected the root, hence nothing else
                selected[0] = allow_single_cluster
            else:
                selected = _epsilon_search(selected, cluster_parent, birth, allow_single_cluster, epsilon)
    labels, probabilities, label_of = _label_points(
        selected, cluster_parent, point_cluster, point_lambda, death, allow_single_cluster, epsilon)
    max_lambda = lam.max()
    clusters = np.flatnonzero(selected)
    counts = np.zeros(clusters.shape[0], np.int64)
    for i in range(n):
        if labels[i] >= 0:
            counts[labels[i]] += 1
    persistence = np.ones(clusters.shape[0])
    for j in range(clusters.shape[0]):
        if not (np.isinf(max_lambda) or max_lambda == 0 or counts[j] == 0):
            persistence[j] = stability[clusters[j]] / (counts[j] * max_lambda)
    return labels, probabilities, persistence


def select_clusters(condensed, n: int, method: str, allow_single_cluster: bool, epsilon: float,
                    max_cluster_size: int = 0, epsilon_max: float = np.inf):
    """Flat clustering from a condensed tree (SPEC stage 5).

    Parameters
    ----------
    condensed : CONDENSED [R]
    n : int, number of points N
    method : {"eom", "leaf"}
    allow_single_cluster : bool
    epsilon : float >= 0, ``cluster_selection_epsilon``
    max_cluster_size : int >= 0, default 0 (no limit); ``eom`` only
    epsilon_max : float >= 0, default inf (no limit), ``cluster_selection_epsilon_max``; ``eom`` only

    Returns
    -------
    labels : int64 [N], -1 for noise; selected clusters labelled 0, 1, ... by id
    probabilities : float64 [N], 0 for noise
    persistence : float64 [K], one per selected cluster
    """
    if method not in ("eom", "leaf"):
        raise ValueError(f"method must be 'eom' or 'leaf', got {method!r}")
    epsilon = float(epsilon)
    if not epsilon >= 0 or not np.isfinite(epsilon):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon}")
    max_cluster_size = int(max_cluster_size)
    if max_cluster_size < 0:
        raise ValueError(f"max_cluster_size must be >= 0 (0: no limit), got {max_cluster_size}")
    epsilon_max = float(epsilon_max)
    if not epsilon_max >= 0:
        raise ValueError(f"epsilon_max must be >= 0 (inf: no limit), got {epsilon_max}")
    condensed = np.asarray(condensed)
    if condensed.dtype != CONDENSED or condensed.ndim != 1:
        raise ValueError(f"condensed must be a 1-d CONDENSED array, got dtype {condensed.dtype}")
    if condensed.shape[0] == 0:
        if n != 1:
            raise ValueError(f"an empty condensed tree needs n == 1, got n = {n}")
        return np.full(1, -1, np.int64), np.zeros(1), np.zeros(0)
    return _select(condensed["parent"].astype(np.int64), condensed["child"].astype(np.int64),
                   condensed["lambda_val"].astype(np.float64), condensed["child_size"].astype(np.int64),
                   int(n), method == "leaf", bool(allow_single_cluster), epsilon, max_cluster_size, epsilon_max)


@numba.njit(cache=True)
def _simplify(parent, child, lam, n, persistence):
    """Rows kept (bool [R]) and their new parent, child and lambda (``simplify_hierarchy``)."""
    n_clusters = max(parent.max(), child.max(), n) - n + 1
    cluster_parent = np.full(n_clusters, -1, np.int64)
    birth = np.zeros(n_clusters)
    death = np.full(n_clusters, -np.inf)
    for r in range(parent.shape[0]):
        p = parent[r] - n
        death[p] = max(death[p], lam[r])
        if child[r] >= n:
            cluster_parent[child[r] - n] = p
            birth[child[r] - n] = lam[r]
    kid_start, kids = _kids(cluster_parent)
    # float32 as the peers: max_births (largest lambda in the subtree), the split, their gap.
    max_births = death.astype(np.float32)
    leaf = np.empty(n_clusters, np.bool_)
    for c in range(n_clusters):
        leaf[c] = kid_start[c] == kid_start[c + 1]
    parent_map = np.arange(n_clusters)
    has_lambda = np.zeros(n_clusters, np.bool_)
    lambda_map = np.zeros(n_clusters)
    for p in range(n_clusters - 1, -1, -1):  # children (larger ids) before their parents
        if kid_start[p] == kid_start[p + 1]:
            continue
        first = kids[kid_start[p]]
        split = np.float32(birth[first])
        lo = np.float32(np.inf)
        hi = np.float32(-np.inf)
        sibling = first  # the most persistent child; the later one on a tie (the peers' rule)
        for i in range(kid_start[p], kid_start[p + 1]):  # ascending ids
            kid = kids[i]
            lo = min(lo, max_births[kid])
            if max_births[kid] >= hi:
                hi = max_births[kid]
                sibling = kid
        max_births[p] = max(max_births[p], hi)
        gap = np.float32(lo - split)
        if np.float64(gap) >= persistence:
            continue
        if leaf[sibling]:
            leaf[p] = True
        else:
            for i in range(kid_start[p], kid_start[p + 1]):
                if kids[i] != sibling:
                    has_lambda[kids[i]] = True
                    lambda_map[kids[i]] = np.float64(split)
        for i in range(kid_start[p], kid_start[p + 1]):
            parent_map[kids[i]] = p
    new_id = np.zeros(n_clusters, np.int64)
    skipped = 0
    for c in range(n_clusters):
        parent_map[c] = parent_map[parent_map[c]]
        if parent_map[c] != c:
            skipped += 1
        else:
            new_id[c] = c - skipped
    rows = parent.shape[0]
    keep = np.ones(rows, np.bool_)
    new_parent = parent.copy()
    new_child = child.copy()
    new_lam = lam.copy()
    for r in range(rows):
        if child[r] >= n and parent_map[child[r] - n] != child[r] - n:
            keep[r] = False
            continue
        p = parent[r] - n
        # Every lambda of the rewritten tree is a float32 value, as in both libraries.
        new_lam[r] = lambda_map[p] if has_lambda[p] else np.float64(np.float32(lam[r]))
        new_parent[r] = n + new_id[parent_map[p]]
        if child[r] >= n:
            new_child[r] = n + new_id[child[r] - n]
    return keep, new_parent, new_child, new_lam


def simplify_hierarchy(condensed, n: int, persistence: float):
    """``cluster_selection_persistence`` (fast_hdbscan's and hdbscan's ``simplify_hierarchy``):
    the condensed tree with each split whose less persistent child (largest lambda in its
    subtree minus the split's lambda, in float32) is below ``persistence`` dissolved into its
    parent, clusters renumbered consecutively, every lambda rounded to float32 as both
    libraries leave it (SPEC stage 5). Unchanged for 0 or an empty tree.
    """
    persistence = float(persistence)
    if not persistence >= 0 or not np.isfinite(persistence):
        raise ValueError(f"persistence must be finite and >= 0, got {persistence}")
    condensed = np.asarray(condensed)
    if condensed.dtype != CONDENSED or condensed.ndim != 1:
        raise ValueError(f"condensed must be a 1-d CONDENSED array, got dtype {condensed.dtype}")
    if persistence == 0 or condensed.shape[0] == 0:
        return condensed.copy()
    keep, parent, child, lam = _simplify(
        condensed["parent"].astype(np.int64), condensed["child"].astype(np.int64),
        condensed["lambda_val"].astype(np.float64), int(n), persistence)
    out = np.empty(int(keep.sum()), CONDENSED)
    out["parent"], out["child"], out["lambda_val"] = parent[keep], child[keep], lam[keep]
    out["child_size"] = condensed["child_size"][keep]
    return out
