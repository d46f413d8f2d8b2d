"""The Numba backend's incremental HDBSCAN* engine, mirroring ``csrc/incremental_hdbscan.cpp``.

Same interface as ``medscore._core.IncrementalHDBSCAN`` (``medscore/_backends.py`` picks one)
and the same results bit for bit: after every ``insert`` or ``remove`` the graph (neighbour
lists, core distances, MST weights) equals a batch refit's, the hierarchy is recomputed from
the MST, and labels follow ``medscore._stable_labels.match_labels``. The repairs differ from
the C++ ones only in how neighbours are searched (FAISS float32 candidates re-checked in
float64, or brute force) and how the bridge edges are pruned; ``incremental_knn`` and
``incremental_mst`` say why each is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._dtypes import CONDENSED, MST_EDGE
from .._stable_labels import match_labels
from . import incremental as kernels
from .condense import condense_tree
from .core_distance import effective_min_samples, nearest_neighbors
from .incremental_knn import make_search
from .incremental_mst import insert_mst, kept_after_removal
from .linkage import single_linkage
from .mst import minimum_spanning_tree
from .select import select_clusters

#: Live rows with max |x - shift| * sqrt(D) up to this are repaired in place: float32 dot
#: products of ``x - shift`` (the pruning bounds) stay below 4e36. Beyond it, rebuilt.
SAFE_MAGNITUDE = 1e18


@dataclass(frozen=True)
class _State:
    """Everything an update reads; updates build a new one, so a failure changes nothing."""

    X: np.ndarray  #: float64 [N, D], live points in id order
    ids: np.ndarray  #: int64 [N], ascending
    knn_index: np.ndarray  #: int64 [N, k], positions, by (distance, position)
    knn_dist: np.ndarray  #: float64 [N, k]
    core: np.ndarray  #: float64 [N]
    mst: np.ndarray  #: MST_EDGE [N-1], positions, sorted by (weight, u, v)
    labels: np.ndarray  #: int64 [N] stable labels
    probabilities: np.ndarray  #: float64 [N]
    condensed: np.ndarray  #: CONDENSED, positions
    next_label: int
    #: float64 [N], max |x - shift| of each live row (decides when a repair is safe)
    magnitude: np.ndarray


def _empty_state(dim: int) -> _State:
    return _State(np.empty((0, dim)), np.empty(0, np.int64), np.empty((0, 1), np.int64),
                  np.empty((0, 1)), np.empty(0), np.empty(0, MST_EDGE), np.empty(0, np.int64),
                  np.empty(0), np.empty(0, CONDENSED), 0, np.empty(0))


def _full_graph(X: np.ndarray, k: int):
    """Neighbour lists, core distances and MST of X from scratch."""
    if X.shape[0] == 1:
        return (np.full((1, 1), -1, np.int64), np.full((1, 1), np.inf), np.zeros(1),
                np.empty(0, MST_EDGE))
    index, dist = nearest_neighbors(X, k)
    core = np.ascontiguousarray(dist[:, -1])
    return index, dist, core, minimum_spanning_tree(X, core)


class IncrementalHDBSCAN:
    """The engine (parameters as ``medscore._core.IncrementalHDBSCAN``, plus ``knn``).

    ``knn`` is "faiss" (float32 candidates, certified in float64) or "exact" (brute force);
    both give identical results. Parameters are trusted: ``medscore.IncrementalHDBSCAN``
    validates them.
    """

    def __init__(self, min_cluster_size, min_samples, method, allow_single_cluster, capacity=0,
                 n_threads=0, knn="faiss", max_cluster_size=0, epsilon_max=np.inf):
        self.min_cluster_size = int(min_cluster_size)
        self.min_samples = int(min_samples)
        self.method = method
        self.allow_single_cluster = bool(allow_single_cluster)
        self.capacity = int(capacity)
        self.knn = knn
        self.max_cluster_size = int(max_cluster_size)  # eom selection options (SelectOptions in C++)
        self.epsilon_max = float(epsilon_max)
        self._shift = None
        self._next_id = 0
        self._state = _empty_state(0)

    # -- the engine interface ------------------------------------------------------------
    def insert(self, X) -> int:
        """Insert rows (float64 [B, D], finite); returns the first id given."""
        points = np.ascontiguousarray(X, dtype=np.float64)
        state = self._state
        first_id = self._next_id
        shift = self._shift
        if shift is None:
            # FAISS works on points minus this fixed shift (float32 precision near the data).
            with np.errstate(over="ignore", invalid="ignore"):
                shift = points.mean(axis=0)
            # Rows so far out that their mean overflows are rebuilt, never repaired.
            shift = shift if np.isfinite(shift).all() else np.zeros(points.shape[1])
        ids = np.arange(first_id, first_id + points.shape[0], dtype=np.int64)
        if self.capacity:
            points, ids = points[-self.capacity:], ids[-self.capacity:]
            overflow = state.ids.size + points.shape[0] - self.capacity
            if overflow > 0:
                state = self._without(state, np.arange(state.ids.size) < overflow, shift)
        state = self._commit(self._with(state, points, ids, shift))
        self._state, self._shift, self._next_id = state, shift, first_id + len(X)
        return first_id

    def remove(self, ids) -> None:
        """Remove live points by id (int64 [R], distinct, live: the facade checks)."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return
        gone = np.zeros(self._state.ids.size, bool)
        gone[np.searchsorted(self._state.ids, ids)] = True
        self._state = self._commit(self._without(self._state, gone, self._shift))

    @property
    def size(self) -> int:
        return int(self._state.ids.size)

    @property
    def dim(self) -> int:
        return int(self._state.X.shape[1])

    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def next_label(self) -> int:
        return self._state.next_label

    @property
    def points(self):
        return self._state.X

    @property
    def ids(self):
        return self._state.ids

    @property
    def knn_index(self):
        return self._state.knn_index

    @property
    def knn_dist(self):
        return self._state.knn_dist

    @property
    def core_distances(self):
        return self._state.core

    @property
    def mst(self):
        return self._state.mst

    @property
    def labels(self):
        return self._state.labels

    @property
    def probabilities(self):
        return self._state.probabilities

    @property
    def condensed_tree(self):
        return self._state.condensed

    # -- updates (each returns a new _State) ------------------------------------------------
    def _with(self, state: _State, points: np.ndarray, ids: np.ndarray, shift) -> _State:
        """``state`` plus the rows ``points`` with ids ``ids``: exact repair of the graph."""
        n_old = state.ids.size
        X = np.concatenate([state.X, points]) if n_old else points
        all_ids = np.concatenate([state.ids, ids])
        magnitude = np.concatenate([state.magnitude, _magnitude(points, shift)])
        state = replace(state, magnitude=magnitude)
        k = effective_min_samples(self.min_samples, X.shape[0])
        if n_old - 1 < self.min_samples or points.shape[0] >= n_old or not _repairable(magnitude, shift):
            # k grows while N <= min_samples, a batch as large as the memory is cheaper to
            # rebuild than to merge, and far rows (see _repairable) take the batch path.
            return _with_graph(state, X, all_ids, _full_graph(X, k))
        search = make_search(self.knn, shift)
        new_index, new_dist = search.knn_of_rows(X, np.arange(n_old, X.shape[0]), k)
        rev_index, rev_dist = search.closer_new_points(X, n_old, state.core, k)
        old_index, old_dist = kernels.merge_neighbor_lists(state.knn_index, state.knn_dist,
                                                           rev_index, rev_dist)
        knn_index = np.concatenate([old_index, new_index])
        knn_dist = np.concatenate([old_dist, new_dist])
        core = np.ascontiguousarray(knn_dist[:, -1])
        mst = insert_mst(X, n_old, state.core, core, state.knn_index, state.knn_dist, state.mst, shift)
        return _with_graph(state, X, all_ids, (knn_index, knn_dist, core, mst))

    def _without(self, state: _State, gone: np.ndarray, shift) -> _State:
        """``state`` minus the rows flagged in ``gone`` (bool [N]): exact repair."""
        keep = ~gone
        X = state.X[keep]
        ids = state.ids[keep]
        n = X.shape[0]
        if n == 0:
            return replace(_empty_state(state.X.shape[1]), next_label=state.next_label,
                           labels=state.labels[keep])
        state = replace(state, magnitude=state.magnitude[keep])
        k = effective_min_samples(self.min_samples, n)
        if n - 1 < self.min_samples or not _repairable(state.magnitude, shift):
            return _with_graph(state, X, ids, _full_graph(X, k), labels=state.labels[keep])
        position = np.cumsum(keep) - 1
        stale = gone[state.knn_index[keep]].any(axis=1)
        knn_index = position[state.knn_index[keep]]
        knn_dist = state.knn_dist[keep]
        rows = np.flatnonzero(stale)
        if rows.size:
            knn_index[rows], knn_dist[rows] = make_search(self.knn, shift).knn_of_rows(X, rows, k)
        core = np.ascontiguousarray(knn_dist[:, -1])
        forest = kept_after_removal(X, state.mst, keep, state.core, core)
        mst = minimum_spanning_tree(X, core, initial_forest=forest)
        return _with_graph(state, X, ids, (knn_index, knn_dist, core, mst), labels=state.labels[keep])

    def _commit(self, state: _State) -> _State:
        """``state`` with its hierarchy and labels matched to the current state's."""
        n = state.ids.size
        if n >= 2:
            linkage = single_linkage(state.mst, n)
            condensed = condense_tree(linkage, n, self.min_cluster_size)
            raw, probabilities, _ = select_clusters(
                condensed, n, self.method, self.allow_single_cluster, 0.0,
                getattr(self, "max_cluster_size", 0), getattr(self, "epsilon_max", np.inf))
        else:
            condensed = np.empty(0, CONDENSED)
            raw, probabilities = np.full(n, -1, np.int64), np.zeros(n)
        before = self._state
        position = np.searchsorted(before.ids, state.ids)
        persists = position < before.ids.size
        persists[persists] = before.ids[position[persists]] == state.ids[persists]
        n_raw = int(raw.max()) + 1 if n else 0
        mapping, next_label = match_labels(before.labels[position[persists]], raw[persists],
                                           n_raw, before.next_label)
        labels = np.where(raw >= 0, mapping[np.maximum(raw, 0)] if n_raw else -1, -1)
        return replace(state, labels=labels.astype(np.int64), probabilities=probabilities,
                       condensed=condensed, next_label=next_label)


def _magnitude(points: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """float64 [B]: the largest ``|x - shift|`` of each row (inf where it overflows)."""
    with np.errstate(over="ignore"):
        return np.abs(points - shift).max(axis=1)


def _repairable(magnitude: np.ndarray, shift: np.ndarray) -> bool:
    """Whether the repair path is exact for live rows of these magnitudes.

    Rows farther apart than about 1e154 have squared distances that overflow to inf, and the
    repair's pruning bounds are then meaningless (the batch stages handle infinite weights:
    far rows are noise, as in ``hdbscan``). This path also bounds distances with float32 dot
    products of ``x - shift``, which overflow beyond about 1.8e19 / sqrt(D). Above these
    limits the update rebuilds the graph from scratch.
    """
    return magnitude.size == 0 or bool(magnitude.max() <= SAFE_MAGNITUDE / np.sqrt(shift.shape[0]))


def _with_graph(state: _State, X: np.ndarray, ids: np.ndarray, graph, **changes) -> _State:
    """``state`` with points X, their ids and graph = (knn_index, knn_dist, core, mst)."""
    knn_index, knn_dist, core, mst = graph
    return replace(state, X=X, ids=ids, knn_index=knn_index, knn_dist=knn_dist, core=core,
                   mst=mst, **changes)
