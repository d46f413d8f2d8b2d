"""The keyed error memory of MEDS as Numba kernels: the second backend of ``medscore.Memory``.

``KeyedMemory`` mirrors ``medscore._core.KeyedMemory`` (``csrc/include/medscore/memory.hpp``)
call for call and gives the same labels and sizes bit for bit. Its state is the C++ class's
plain arrays (keys in id order, each key's points in insertion order, each key's MST sorted
by ``(weight, u, v)``); one ``penalize_step`` runs every key of a batch in one compiled call,
in parallel across keys.

Per key and step (as in C++): drop points older than ``max_age`` (and refit), the MEDS vote
against the labels before the step, insertion of the new points, the capacity, and the
re-clustering: with ``min_samples == 1`` and few new points, the new points are inserted into
the MST (each keeps the edges one walk over the old tree leaves it, Kruskal joins them with
the old tree and the new points' own MST); otherwise the key is refitted. Refits here use
Prim's O(n^2) algorithm on the mutual-reachability graph for every key size (C++ switches to
its kd-tree pipeline above 256 points): exact, but slow on very large keys. Where MSTs tie,
the stored tree may then differ from C++'s; the clustering does not (docs/SPEC.md).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .condense import _condense
from .disjoint_set import find_root, make_disjoint_set, union_roots
from .distance import squared_distance
from .linkage import _link
from .select import _select
from .threads import thread_limit

#: A key grows its MST by insertion while m <= max(64, n_prior / 16) new rows, else it is
#: refitted. Only the speed depends on it (both are exact); the C++ engine decides with its
#: own measured thresholds (csrc/memory.cpp, kRefitPairsPerPoint and the kd-tree insert).
_SMALL_ADDITION = 64


# -- MSTs under the strict order (weight, u, v) ----------------------------------------------

@numba.njit(cache=True, inline="always")
def _edge_less(wa, ua, va, wb, ub, vb):
    return wa < wb or (wa == wb and (ua < ub or (ua == ub and va < vb)))


@numba.njit(cache=True)
def _sort_edges(u, v, w):
    """Edges sorted by (weight, u, v): successive stable sorts, last key first."""
    order = np.argsort(v, kind="mergesort")
    order = order[np.argsort(u[order], kind="mergesort")]
    order = order[np.argsort(w[order], kind="mergesort")]
    return u[order].copy(), v[order].copy(), w[order].copy()


@numba.njit(cache=True)
def _core_distances(X, min_samples):
    """Distance to the min(min_samples, n - 1)-th (at least 1st) nearest other point."""
    n = X.shape[0]
    k = max(1, min(min_samples, n - 1))
    core = np.zeros(n)
    d = np.empty(n - 1)
    for i in range(n):
        c = 0
        for j in range(n):
            if j != i:
                d[c] = np.sqrt(squared_distance(X[i], X[j]))
                c += 1
        core[i] = np.sort(d)[k - 1]
    return core


@numba.njit(cache=True)
def _prim(X, core, use_core):
    """MST of the mutual-reachability graph of X (Euclidean if not use_core), sorted."""
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
            if best_from[x] < 0 or _edge_less(d, min(last, x), max(last, x),
                                              best[x], min(best_from[x], x), max(best_from[x], x)):
                best[x], best_from[x] = d, last
            cu, cv = min(best_from[x], x), max(best_from[x], x)
            if nxt < 0 or _edge_less(best[x], cu, cv, nw, nu, nv):
                nxt, nu, nv, nw = x, cu, cv, best[x]
        in_tree[nxt] = True
        u[added], v[added], w[added] = nu, nv, nw
        last = nxt
    return _sort_edges(u, v, w)


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
        child_above_tree = _edge_less(tw, tu, tv, pw[x], pu[x], pv[x])
        parent_above_tree = _edge_less(tw, tu, tv, pw[p], pu[p], pv[p])
        if not child_above_tree and not parent_above_tree:
            continue  # the tree edge leaves; every old tree edge goes to Kruskal anyway
        if _edge_less(pw[p], pu[p], pv[p], pw[x], pu[x], pv[x]):
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
def _insert_into_mst(X, n_old, mu, mv, mw):
    """MST (sorted) of X after appending rows n_old.. to rows whose sorted MST is (mu, mv, mw)."""
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
        bu, bv, bw = _prim(X[n_old:], np.zeros(0), False)
        for i in range(bu.shape[0]):
            cu.append(bu[i] + n_old)
            cv.append(bv[i] + n_old)
            cw.append(bw[i])
    au, av, aw = _sort_edges(np.array(cu, np.int64), np.array(cv, np.int64), np.array(cw, np.float64))
    out_u = np.empty(n - 1, np.int64)
    out_v = np.empty(n - 1, np.int64)
    out_w = np.empty(n - 1)
    sets, sizes = make_disjoint_set(n)
    i = j = count = 0
    while i < mu.shape[0] or j < au.shape[0]:
        take_old = j == au.shape[0] or (i < mu.shape[0] and _edge_less(mw[i], mu[i], mv[i], aw[j], au[j], av[j]))
        if take_old:
            eu, ev, ew = mu[i], mv[i], mw[i]
            i += 1
        else:
            eu, ev, ew = au[j], av[j], aw[j]
            j += 1
        ru, rv = find_root(sets, eu), find_root(sets, ev)
        if ru != rv:
            union_roots(sets, sizes, ru, rv)
            out_u[count], out_v[count], out_w[count] = eu, ev, ew
            count += 1
    if count != n - 1:
        raise ValueError("insert_into_mst: the edges do not span")
    return out_u, out_v, out_w


# -- clustering of one key ------------------------------------------------------------------

@numba.njit(cache=True)
def _lex_earlier(X, steps, a, b):
    """(step, vector) of point a < that of point b."""
    if steps[a] != steps[b]:
        return steps[a] < steps[b]
    for j in range(X.shape[1]):
        if X[a, j] != X[b, j]:
            return X[a, j] < X[b, j]
    return False


@numba.njit(cache=True)
def _number_clusters(labels, X, steps):
    """Renumber clusters by earliest member (see number_clusters in memory.hpp); sizes, noise."""
    n_clusters = labels.max() + 1 if labels.shape[0] > 0 else 0
    earliest = np.full(max(n_clusters, 0), -1, np.int64)
    noise = 0
    for i in range(labels.shape[0]):
        c = labels[i]
        if c < 0:
            noise += 1
        elif earliest[c] < 0 or _lex_earlier(X, steps, i, earliest[c]):
            earliest[c] = i
    order = np.arange(n_clusters)
    for a in range(1, n_clusters):  # insertion sort by earliest member; ties by member index
        x = order[a]
        b = a - 1
        while b >= 0 and (_lex_earlier(X, steps, earliest[x], earliest[order[b]]) or (
                not _lex_earlier(X, steps, earliest[order[b]], earliest[x]) and earliest[x] < earliest[order[b]])):
            order[b + 1] = order[b]
            b -= 1
        order[b + 1] = x
    renamed = np.empty(n_clusters, np.int64)
    for r in range(n_clusters):
        renamed[order[r]] = r
    out = np.full(labels.shape[0], -1, np.int64)
    sizes = np.zeros(n_clusters, np.int64)
    for i in range(labels.shape[0]):
        if labels[i] >= 0:
            out[i] = renamed[labels[i]]
            sizes[out[i]] += 1
    return out, sizes, noise


@numba.njit(cache=True)
def _cluster(X, steps, mu, mv, mw, mcs, leaf, allow_single, epsilon):
    """Labels (numbered by earliest member), sizes and noise count from a sorted MST."""
    n = X.shape[0]
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    if n == 1:
        return np.full(1, -1, np.int64), np.empty(0, np.int64), 1
    left, right, merged = _link(mu, mv, n)
    parent, child, lam, size = _condense(left, right, mw, merged, n, mcs)
    labels = _select(parent, child, lam, size, n, leaf, allow_single, epsilon, 0, np.inf)[0]  # no size / eps max
    return _number_clusters(labels, X, steps)


@numba.njit(cache=True)
def _refit(X, min_samples):
    """Sorted MST of the mutual-reachability graph of X (empty for n < 2)."""
    n = X.shape[0]
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    if min_samples == 1:
        return _prim(X, np.zeros(0), False)
    return _prim(X, _core_distances(X, min_samples), True)


@numba.njit(cache=True)
def _vote(prior, labels, sizes, noise, x, k):
    """The MEDS vote (see vote in csrc/memory.cpp): label and size."""
    n = prior.shape[0]
    k = min(k, n)
    if k == 0:
        return -1, 0
    norm_x = 0.0
    for j in range(x.shape[0]):
        norm_x += x[j] * x[j]
    norm_x = np.sqrt(norm_x)
    dist = np.empty(n)
    for i in range(n):
        dot = 0.0
        norm_p = 0.0
        for j in range(x.shape[0]):
            dot += x[j] * prior[i, j]
            norm_p += prior[i, j] * prior[i, j]
        norm_p = np.sqrt(norm_p)
        dist[i] = 1.0 if (norm_x == 0.0 or norm_p == 0.0) else 1.0 - dot / (norm_x * norm_p)
    nearest = np.argsort(dist, kind="mergesort")[:k]  # stable: ties to the older point
    votes = np.sort(labels[nearest])
    winner, winner_count, i = votes[0], 0, 0
    while i < k:
        j = i
        while j < k and votes[j] == votes[i]:
            j += 1
        if j - i > winner_count:
            winner, winner_count = votes[i], j - i
        i = j
    return winner, (noise if winner < 0 else sizes[winner])


# -- one step over every key ------------------------------------------------------------------

@numba.njit(cache=True)
def _label_sizes(labels):
    """Cluster sizes by label and the noise count of labels numbered 0..K-1 (-1 noise)."""
    n_clusters = labels.max() + 1 if labels.shape[0] > 0 else 0
    sizes = np.zeros(max(n_clusters, 0), np.int64)
    noise = 0
    for c in labels:
        if c < 0:
            noise += 1
        else:
            sizes[c] += 1
    return sizes, noise


@numba.njit(cache=True)
def _evictions(old_steps, n_old, m, step, max_age, capacity):
    """(aged, over): points dropped for age before the vote, and for capacity after it."""
    aged = 0
    while max_age >= 0 and aged < n_old and step - old_steps[aged] > max_age:
        aged += 1
    over = max(0, n_old - aged + m - capacity) if capacity >= 0 else 0
    return aged, over


@numba.njit(cache=True)
def _process_key(X, steps, labels, mu, mv, mw, n_old, step, params, allow_single, epsilon, out_labels, out_sizes):
    """One key: X/steps hold its old rows then its m new rows. Writes the new rows' vote or
    exact labels into out_labels/out_sizes [m]; returns (start, labels, mst u, v, w) of the
    kept rows X[start:]."""
    mcs, min_samples, leaf, assign_paper, vote_k, max_age, capacity = params
    n, m = X.shape[0], X.shape[0] - n_old
    aged, over = _evictions(steps, n_old, m, step, max_age, capacity)
    n_prior = n_old - aged
    if aged > 0:
        mu, mv, mw = _refit(X[aged:n_old], min_samples)
        labels = _cluster(X[aged:n_old], steps[aged:n_old], mu, mv, mw, mcs, leaf, allow_single, epsilon)[0]
    sizes, noise = _label_sizes(labels)
    if assign_paper:
        for j in range(m):
            out_labels[j], out_sizes[j] = _vote(X[aged:n_old], labels, sizes, noise, X[n_old + j], vote_k)
    start = aged + over
    if min_samples == 1 and over == 0 and n_prior >= 1 and m <= max(_SMALL_ADDITION, n_prior // 16):
        fu, fv, fw = _insert_into_mst(X[aged:], n_prior, mu, mv, mw)
    else:
        fu, fv, fw = _refit(X[start:], min_samples)
    final, final_sizes, final_noise = _cluster(X[start:], steps[start:], fu, fv, fw, mcs, leaf, allow_single, epsilon)
    if not assign_paper:
        for j in range(m):
            pos = n_prior + j - over
            out_labels[j] = final[pos] if pos >= 0 else -1
            out_sizes[j] = 0 if pos < 0 else (final_noise if final[pos] < 0 else final_sizes[final[pos]])
    return start, final, fu, fv, fw


@numba.njit(cache=True, parallel=True)
def _step(offsets, points, steps, labels, mst_u, mst_v, mst_w, batch, keys, step, params, allow_single, epsilon):
    """Every key of a batch; returns the new state arrays and the rollouts' labels and sizes."""
    n_keys = max(offsets.shape[0] - 1, keys.max() + 1)
    old_n = np.zeros(n_keys, np.int64)
    old_n[:offsets.shape[0] - 1] = np.diff(offsets)
    edge_start = np.zeros(n_keys + 1, np.int64)
    for k in range(n_keys):
        edge_start[k + 1] = edge_start[k] + max(old_n[k] - 1, 0)
    row_start = np.zeros(n_keys + 1, np.int64)  # the batch rows of each key, in row order
    for k in keys:
        row_start[k + 1] += 1
    for k in range(n_keys):
        row_start[k + 1] += row_start[k]
    fill = row_start[:n_keys].copy()
    rows = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        rows[fill[keys[i]]] = i
        fill[keys[i]] += 1
    new_n = old_n.copy()
    expired = np.zeros(n_keys, np.int64)  # aged points of keys the batch does not touch
    for k in range(n_keys):
        m = row_start[k + 1] - row_start[k]
        first = offsets[k] if k < offsets.shape[0] - 1 else 0
        aged, over = _evictions(steps[first:first + old_n[k]], old_n[k], m, step, params[5], params[6])
        if m > 0:
            new_n[k] = old_n[k] + m - aged - over
        else:
            # Expiry by age reaches every key, touched or not (KeyedMemory in csrc/memory.cpp).
            expired[k] = aged
            new_n[k] = old_n[k] - aged
    new_offsets = np.zeros(n_keys + 1, np.int64)
    new_edges = np.zeros(n_keys + 1, np.int64)
    for k in range(n_keys):
        new_offsets[k + 1] = new_offsets[k] + new_n[k]
        new_edges[k + 1] = new_edges[k] + max(new_n[k] - 1, 0)
    total, dim = new_offsets[n_keys], batch.shape[1]
    out_points, out_steps = np.empty((total, dim)), np.empty(total, np.int64)
    out_labels = np.empty(total, np.int64)
    out_u, out_v = np.empty(new_edges[n_keys], np.int64), np.empty(new_edges[n_keys], np.int64)
    out_w = np.empty(new_edges[n_keys])
    result_labels = np.full(keys.shape[0], -1, np.int64)
    result_sizes = np.zeros(keys.shape[0], np.int64)
    for k in numba.prange(n_keys):
        first = offsets[k] if k < offsets.shape[0] - 1 else 0
        n_old, m = old_n[k], row_start[k + 1] - row_start[k]
        o, e = new_offsets[k], new_edges[k]
        old_e = edge_start[k]
        if m == 0 and expired[k] > 0:
            a = expired[k]
            if a < n_old:
                X = points[first + a:first + n_old]
                fu, fv, fw = _refit(X, params[1])
                final = _cluster(X, steps[first + a:first + n_old], fu, fv, fw, params[0], params[2], allow_single,
                                 epsilon)[0]
                out_points[o:o + n_old - a] = X
                out_steps[o:o + n_old - a] = steps[first + a:first + n_old]
                out_labels[o:o + n_old - a] = final
                out_u[e:e + fu.shape[0]], out_v[e:e + fu.shape[0]], out_w[e:e + fu.shape[0]] = fu, fv, fw
            continue
        if m == 0:
            out_points[o:o + n_old] = points[first:first + n_old]
            out_steps[o:o + n_old] = steps[first:first + n_old]
            out_labels[o:o + n_old] = labels[first:first + n_old]
            n_e = max(n_old - 1, 0)
            out_u[e:e + n_e], out_v[e:e + n_e] = mst_u[old_e:old_e + n_e], mst_v[old_e:old_e + n_e]
            out_w[e:e + n_e] = mst_w[old_e:old_e + n_e]
            continue
        X = np.empty((n_old + m, dim))
        X[:n_old] = points[first:first + n_old]
        key_steps = np.full(n_old + m, step, np.int64)
        key_steps[:n_old] = steps[first:first + n_old]
        key_rows = rows[row_start[k]:row_start[k + 1]]
        for j in range(m):
            X[n_old + j] = batch[key_rows[j]]
        n_e = max(n_old - 1, 0)
        vote_labels = np.empty(m, np.int64)
        vote_sizes = np.empty(m, np.int64)
        start, final, fu, fv, fw = _process_key(
            X, key_steps, labels[first:first + n_old], mst_u[old_e:old_e + n_e], mst_v[old_e:old_e + n_e],
            mst_w[old_e:old_e + n_e], n_old, step, params, allow_single, epsilon, vote_labels, vote_sizes)
        for j in range(m):
            result_labels[key_rows[j]] = vote_labels[j]
            result_sizes[key_rows[j]] = vote_sizes[j]
        kept = n_old + m - start
        out_points[o:o + kept] = X[start:]
        out_steps[o:o + kept] = key_steps[start:]
        out_labels[o:o + kept] = final
        out_u[e:e + fu.shape[0]], out_v[e:e + fu.shape[0]], out_w[e:e + fu.shape[0]] = fu, fv, fw
    return (new_offsets, out_points, out_steps, out_labels, out_u, out_v, out_w, result_labels, result_sizes)


# -- the Python class -------------------------------------------------------------------------

class KeyedMemory:
    """Per-key exact HDBSCAN memory; the interface of ``medscore._core.KeyedMemory``.

    Parameters
    ----------
    dim : int >= 1
    min_cluster_size : int >= 2
    min_samples : int >= 1
    method : {"eom", "leaf"}
    allow_single_cluster : bool
    epsilon : float >= 0
    assign : {"paper", "exact"}
    vote_k : int >= 1
    max_age : int >= 0, or -1 for none
    capacity : int >= 1, or -1 for none
    n_threads : int >= 0 (0: every Numba thread)
    normalize : bool: store each row divided by its Euclidean norm (NumPy's bits); a row whose
        norm is 0 or overflows is an error. Without it, a row with an entry beyond
        ``max_safe_magnitude(dim)`` is an error (its squared distances could overflow).
    """

    def __init__(self, dim, min_cluster_size, min_samples, method, allow_single_cluster, epsilon, assign,
                 vote_k, max_age, capacity, n_threads, normalize=False):
        if method not in ("eom", "leaf"):
            raise ValueError(f"cluster_selection_method must be 'eom' or 'leaf', got {method!r}")
        if assign not in ("paper", "exact"):
            raise ValueError(f"assign must be 'paper' or 'exact', got {assign!r}")
        checks = [(dim >= 1, "dim must be >= 1"), (min_cluster_size >= 2, "min_cluster_size must be >= 2"),
                  (min_samples >= 1, "min_samples must be >= 1"), (vote_k >= 1, "vote_k must be >= 1"),
                  (max_age >= -1, "max_age must be >= 0 or -1 (none)"),
                  (capacity == -1 or capacity >= 1, "capacity must be >= 1 or -1 (none)"),
                  (np.isfinite(epsilon) and epsilon >= 0, "cluster_selection_epsilon must be finite and >= 0"),
                  (n_threads >= 0, "n_threads must be >= 0")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"KeyedMemory: {message}")
        self._dim = int(dim)
        self._params = (int(min_cluster_size), int(min_samples), method == "leaf", assign == "paper", int(vote_k),
                        int(max_age), int(capacity))
        self._allow_single = bool(allow_single_cluster)
        self._epsilon = float(epsilon)
        self._n_threads = int(n_threads)
        self._normalize = bool(normalize)
        self._last_step = -1
        self._set_state(np.zeros(1, np.int64), np.empty((0, self._dim)), np.empty(0, np.int64),
                        np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    def _set_state(self, offsets, points, steps, labels, mst_u, mst_v, mst_w):
        self._offsets, self._points, self._steps, self._labels = offsets, points, steps, labels
        self._mst_u, self._mst_v, self._mst_w = mst_u, mst_v, mst_w

    def penalize_step(self, points, keys, step):
        """points f64 [N, D], keys int64 [N] (>= 0, or -1: row not stored), step >= last_step
        -> (labels int64 [N], sizes int64 [N]); a row not stored gets label -1, size 0."""
        points = np.ascontiguousarray(points, dtype=np.float64)
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if points.ndim != 2 or points.shape[0] < 1:
            raise ValueError(f"penalize_step: expected a non-empty [N, D] matrix, got shape {points.shape}")
        if points.shape[1] != self._dim:
            raise ValueError(f"penalize_step: fingerprints have {points.shape[1]} dimensions, "
                             f"the memory holds {self._dim}")
        if keys.shape != (points.shape[0],):
            raise ValueError(f"penalize_step: keys must be [N] with N = {points.shape[0]}")
        if int(step) < self._last_step:
            raise ValueError(f"penalize_step: step {step} is before the last step {self._last_step}")
        if (keys < -1).any():
            raise ValueError("penalize_step: key ids must be >= 0 (or -1: not stored)")
        rows = np.flatnonzero(keys >= 0)
        stored = points[rows]
        if not np.isfinite(stored).all():
            raise ValueError("penalize_step: a row is not finite")
        if self._normalize:
            stored = _unit_rows(stored, rows)
        else:
            _check_magnitudes(stored, rows)
        labels = np.full(len(keys), -1, dtype=np.int64)
        sizes = np.zeros(len(keys), dtype=np.int64)
        if len(rows):
            with thread_limit(self._n_threads):
                out = _step(self._offsets, self._points, self._steps, self._labels, self._mst_u, self._mst_v,
                            self._mst_w, stored, keys[rows], int(step), self._params, self._allow_single,
                            self._epsilon)
            self._set_state(*out[:7])
            labels[rows], sizes[rows] = out[7], out[8]
        self._last_step = int(step)
        return labels, sizes

    def state(self) -> dict:
        """The memory as a dict of numpy arrays (the layout of ``_core.KeyedMemory.state``)."""
        return {"dim": self._dim, "last_step": self._last_step, "offsets": self._offsets.copy(),
                "points": self._points.copy(), "steps": self._steps.copy(), "labels": self._labels.copy(),
                "mst_u": self._mst_u.copy(), "mst_v": self._mst_v.copy(), "mst_weight": self._mst_w.copy()}

    def load_state(self, dim, last_step, offsets, points, steps, labels, mst_u, mst_v, mst_weight):
        """Replace the memory by checked state arrays; all or nothing (ValueError)."""
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, self._dim) if dim == self._dim else None
        if points is None:
            raise ValueError(f"KeyedMemory::load_state: dim is {dim}, the memory was built for {self._dim}")
        steps, labels = np.ascontiguousarray(steps, dtype=np.int64), np.ascontiguousarray(labels, dtype=np.int64)
        mst_u, mst_v = np.ascontiguousarray(mst_u, dtype=np.int64), np.ascontiguousarray(mst_v, dtype=np.int64)
        mst_w = np.ascontiguousarray(mst_weight, dtype=np.float64)
        _check_state(offsets, points, steps, labels, mst_u, mst_v, mst_w, int(last_step))
        for k in range(offsets.shape[0] - 1):
            _check_loaded_key(self, k, offsets, points, steps, labels, mst_u, mst_v, mst_w)
        self._set_state(offsets, points, steps, labels, mst_u, mst_v, mst_w)
        self._last_step = int(last_step)

    def key_sizes(self):
        """Points held by each key id: int64 [number of key ids]."""
        return np.diff(self._offsets)

    def compact(self, kept):
        """Key i becomes old key ``kept[i]`` (increasing ids); every key left out must be empty."""
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        sizes = np.diff(self._offsets)
        if kept.size and (kept[0] < 0 or kept[-1] >= sizes.size or (np.diff(kept) <= 0).any()):
            raise ValueError(f"KeyedMemory::compact: kept keys must be increasing ids below {sizes.size}")
        dropped = np.ones(sizes.size, dtype=bool)
        dropped[kept] = False
        if (sizes[dropped] > 0).any():
            raise ValueError(f"KeyedMemory::compact: key {int(np.flatnonzero(dropped & (sizes > 0))[0])} holds "
                             "points and is not kept")
        # Dropped keys are empty, so the point and edge arrays keep their order; only offsets change.
        self._offsets = np.concatenate([[0], np.cumsum(sizes[kept])]).astype(np.int64)

    def moments(self):
        """(count, sum f64 [D], outer_sum f64 [D, D]) over every stored point."""
        return int(self._points.shape[0]), self._points.sum(axis=0), self._points.T @ self._points

    def _key_slice(self, key):
        if key < 0 or key + 1 >= self._offsets.shape[0]:
            return slice(0, 0)
        return slice(self._offsets[key], self._offsets[key + 1])

    def key_labels(self, key):
        return self._labels[self._key_slice(key)].copy()

    def key_steps(self, key):
        return self._steps[self._key_slice(key)].copy()

    @property
    def last_step(self):
        return self._last_step

    @property
    def n_keys(self):
        return int((np.diff(self._offsets) > 0).sum())

    @property
    def n_points(self):
        return int(self._points.shape[0])

    @property
    def n_clusters(self):
        total = 0
        for k in range(self._offsets.shape[0] - 1):
            seg = self._labels[self._offsets[k]:self._offsets[k + 1]]
            total += int(seg.max()) + 1 if seg.size else 0
        return total

    @property
    def n_noise(self):
        return int((self._labels < 0).sum())


def max_safe_magnitude(dim: int) -> float:
    """Largest |entry| of a row stored without normalisation: ``1e150 / sqrt(dim)``.

    Every squared distance between such rows is at most ``dim * (2e150 / sqrt(dim))**2 =
    4e300``: finite, so no weight overflows. The bound of ``max_safe_magnitude`` in
    ``csrc/include/medscore/matrix.hpp``, with the same bits.
    """
    return 1e150 / math.sqrt(dim)


def _check_magnitudes(stored, rows):
    """Refuse (ValueError) the first stored row with an entry beyond ``max_safe_magnitude``.

    ``stored`` float64 [M, D] holds batch rows ``rows`` (int64 [M]); the message is C++'s.
    """
    bound = max_safe_magnitude(stored.shape[1])
    beyond = np.abs(stored) > bound
    if not beyond.any():
        return
    i, j = np.argwhere(beyond)[0]
    raise ValueError(f"penalize_step: row {int(rows[i])} has an entry of magnitude {abs(stored[i, j]):g}; "
                     f"without normalisation stored rows must satisfy max|x| <= 1e150 / sqrt(D) = {bound:g} "
                     "(their squared distances would overflow)")


def _unit_rows(stored, rows):
    """Each row of ``stored`` divided by its Euclidean norm (NumPy's bits).

    A row whose norm is 0 (all zeros, or squares that underflow) or infinite (squares that
    overflow: it would become all zeros) has no unit row: ValueError naming the first such
    batch row (``rows[i]``), with C++'s message.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(stored, axis=1, keepdims=True)
    bad = np.flatnonzero(~((norms[:, 0] > 0) & (norms[:, 0] <= np.finfo(np.float64).max)))
    if len(bad):
        i = bad[0]
        what = ("is all zeros (or its squares underflow)" if norms[i, 0] == 0
                else "has a Euclidean norm that overflows float64")
        raise ValueError(f"fingerprint row {int(rows[i])} {what} and cannot be L2-normalised")
    return stored / norms


@numba.njit(cache=True)
def _tree_fault(X, mu, mv, mw, exact_weights):
    """0 if (mu, mv, mw) is a spanning tree of X's rows sorted by (weight, u, v) whose weights
    are the Euclidean distances (``exact_weights``) or at least them; else 1 (unsorted or an
    edge written twice), 2 (a cycle) or 3 (a weight), as check_loaded_key in csrc/memory.cpp."""
    parent, size = make_disjoint_set(X.shape[0])
    for i in range(mu.shape[0]):
        if i > 0 and not _edge_less(mw[i - 1], mu[i - 1], mv[i - 1], mw[i], mu[i], mv[i]):
            return 1
        ra, rb = find_root(parent, mu[i]), find_root(parent, mv[i])
        if ra == rb:
            return 2
        union_roots(parent, size, ra, rb)
        d = math.sqrt(squared_distance(X[mu[i]], X[mv[i]]))
        if (mw[i] != d) if exact_weights else (mw[i] < d):
            return 3
    return 0


_TREE_FAULTS = {1: "MST edges are not sorted by (weight, u, v) or an edge is written twice",
                2: "the MST has a cycle, so it does not connect every point",
                3: "an MST edge does not have the weight of its points"}


def _check_loaded_key(memory, k, offsets, points, steps, labels, mst_u, mst_v, mst_w):
    """check_loaded_key of csrc/memory.cpp: the key's MST and labels are those of its points."""
    seg = slice(offsets[k], offsets[k + 1])
    n = int(offsets[k + 1] - offsets[k])
    if n < 2:
        return
    first = int(np.maximum(np.diff(offsets[:k + 1]) - 1, 0).sum())
    edges = slice(first, first + n - 1)
    X, mu, mv, mw = points[seg], mst_u[edges], mst_v[edges], mst_w[edges]
    fault = _tree_fault(X, mu, mv, mw, memory._params[1] == 1)
    if fault:
        raise ValueError(f"KeyedMemory::load_state: key {k}: {_TREE_FAULTS[fault]}")
    mcs, _, leaf = memory._params[:3]
    got = _cluster(X, steps[seg], mu, mv, mw, mcs, leaf, memory._allow_single, memory._epsilon)[0]
    if not np.array_equal(got, labels[seg]):
        raise ValueError(f"KeyedMemory::load_state: key {k}: the labels are not the clustering of the MST")


def _check_state(offsets, points, steps, labels, mst_u, mst_v, mst_w, last_step):
    """The checks of KeyedMemory::load_state (csrc/memory_state.cpp), raising ValueError."""
    def bad(what):
        raise ValueError(f"KeyedMemory::load_state: {what}")

    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0:
        bad("offsets must start with 0")
    if (np.diff(offsets) < 0).any():
        bad("offsets must be non-decreasing")
    total = int(offsets[-1])
    if steps.shape != (total,) or labels.shape != (total,) or points.shape[0] != total:
        bad(f"offsets say {total} points but the arrays disagree")
    if not np.isfinite(points).all():
        bad("a stored point is not finite")
    if mst_u.shape != mst_v.shape or mst_u.shape != mst_w.shape:
        bad("mst_u, mst_v and mst_weight must have one length")
    n_edges = np.maximum(np.diff(offsets) - 1, 0)
    if mst_u.shape[0] != n_edges.sum():
        bad("the MST array has the wrong number of edges")
    edge_key = np.repeat(np.arange(n_edges.size), n_edges)
    sizes = np.diff(offsets)[edge_key]
    if not ((0 <= mst_u) & (mst_u < mst_v) & (mst_v < sizes) & (mst_w >= 0)).all():
        bad("bad MST edge")
    for k in range(offsets.size - 1):
        seg = slice(offsets[k], offsets[k + 1])
        s, lab = steps[seg], labels[seg]
        if s.size and ((s < 0).any() or (s > last_step).any() or (np.diff(s) < 0).any()):
            bad(f"steps of key {k} must be >= 0, non-decreasing and <= last_step")
        if ((lab < -1) | (lab >= s.size)).any():
            bad(f"label out of range in key {k}")
        if lab.size and not np.array_equal(np.unique(lab[lab >= 0]), np.arange(lab.max() + 1)):
            bad(f"labels of key {k} skip a cluster number")
        renumbered = _number_clusters(lab, points[seg], s)[0] if s.size else lab
        if not np.array_equal(renumbered, lab):
            bad(f"labels of key {k} are not numbered by earliest member")
