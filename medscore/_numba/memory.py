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

The files mirror C++'s: this one the step and the class (``csrc/memory.cpp``) with the vote
(``csrc/memory_vote.cpp``), ``memory_insert.py`` the MSTs, ``memory_cluster.py`` a key's
clustering on the shared stages, ``memory_check.py`` the input and state checks.
"""
from __future__ import annotations

import numba
import numpy as np

from .memory_check import check_loaded_key, check_magnitudes, check_state, max_safe_magnitude, unit_rows
from .memory_cluster import cluster_from_mst, label_sizes, refit
from .memory_insert import insert_into_mst
from .threads import thread_limit

__all__ = ["KeyedMemory", "max_safe_magnitude"]

#: A key grows its MST by insertion while m <= max(64, n_prior / 16) new rows, else it is
#: refitted. Only the speed depends on it (both are exact); the C++ engine decides with its
#: own measured thresholds (csrc/memory.cpp, kRefitPairsPerPoint and the kd-tree insert).
_SMALL_ADDITION = 64


# -- one step over every key ------------------------------------------------------------------

@numba.njit(cache=True)
def _vote(prior, labels, sizes, noise, x, k):
    """The MEDS vote (see csrc/memory_vote.cpp): label and size."""
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
        mu, mv, mw = refit(X[aged:n_old], min_samples)
        labels = cluster_from_mst(X[aged:n_old], steps[aged:n_old], mu, mv, mw, mcs, leaf, allow_single, epsilon)[0]
    sizes, noise = label_sizes(labels)
    if assign_paper:
        for j in range(m):
            out_labels[j], out_sizes[j] = _vote(X[aged:n_old], labels, sizes, noise, X[n_old + j], vote_k)
    start = aged + over
    if min_samples == 1 and over == 0 and n_prior >= 1 and m <= max(_SMALL_ADDITION, n_prior // 16):
        fu, fv, fw = insert_into_mst(X[aged:], n_prior, mu, mv, mw)
    else:
        fu, fv, fw = refit(X[start:], min_samples)
    final, final_sizes, final_noise = cluster_from_mst(X[start:], steps[start:], fu, fv, fw, mcs, leaf, allow_single, epsilon)
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
                fu, fv, fw = refit(X, params[1])
                final = cluster_from_mst(X, steps[first + a:first + n_old], fu, fv, fw, params[0], params[2], allow_single,
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
            stored = unit_rows(stored, rows)
        else:
            check_magnitudes(stored, rows)
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
        check_state(offsets, points, steps, labels, mst_u, mst_v, mst_w, int(last_step))
        for k in range(offsets.shape[0] - 1):
            check_loaded_key(self, k, offsets, points, steps, labels, mst_u, mst_v, mst_w)
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
