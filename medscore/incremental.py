"""``medscore.IncrementalHDBSCAN``: exact HDBSCAN* of a stream under inserts and removals.

After every ``insert`` or ``remove`` the result equals a batch refit of ``medscore.HDBSCAN``
on the live points (in id order): the same core distances, MST weights, condensed tree and
partition. The state kept between calls is each live point's k nearest neighbours and core
distance, and the MST; ``_incremental_knn`` and ``_incremental_mst`` explain why each repair
is exact.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np

from ._backends import BACKENDS, get_backend
from ._dtypes import CONDENSED, MST_EDGE
from ._estimator import BOOLEAN, ClusterMixin, EstimatorBase, Interval, Options, check_points, validate_params
from ._incremental_knn import make_search
from ._incremental_mst import insert_mst, kept_after_removal
from ._incremental_stages import effective_k, full_graph, stages_of
from ._validation import INT64_MAX
from .hdbscan import SELECTION_METHODS

KNN_METHODS = ("faiss", "exact")
#: Live rows with max |x - shift| * sqrt(D) up to these are repaired in place (see
#: IncrementalHDBSCAN._repairable): float64 squared distances stay below 4e300, float32 dot
#: products below 4e36.
_FLOAT64_SAFE_MAGNITUDE = 1e150
_FLOAT32_SAFE_MAGNITUDE = 1e18


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
    next_id: int
    next_label: int
    #: float64 [N], max |x - shift| of each live row (decides when a repair is safe)
    magnitude: np.ndarray


def _empty_state(dim: int | None) -> _State:
    d = 0 if dim is None else dim
    return _State(np.empty((0, d)), np.empty(0, np.int64), np.empty((0, 1), np.int64),
                  np.empty((0, 1)), np.empty(0), np.empty(0, MST_EDGE), np.empty(0, np.int64),
                  np.empty(0), np.empty(0, CONDENSED), 0, 0, np.empty(0))


def match_labels(old_labels, new_raw, n_raw, next_label):
    """Stable labels for a new raw partition, given the old stable labels of the same points.

    Rule: count, over points live before and after the update, how many points each pair
    (old stable label L, new raw cluster j) shares. Pairs are taken greedily by decreasing
    count, ties by smaller L then smaller j; a pair is taken when neither L nor j is taken yet
    and the count is positive, and j then keeps the label L. Raw clusters left over get fresh
    labels ``next_label, next_label + 1, ...`` in increasing j. Labels are never reused.

    Parameters
    ----------
    old_labels : int64 [M], stable labels before the update (-1 noise)
    new_raw : int64 [M], raw labels after the update for the same points
    n_raw : int, number of raw clusters after the update
    next_label : int

    Returns
    -------
    (int64 ndarray mapping raw label j -> stable label, new next_label)
    """
    pairs, counts = _pair_counts(old_labels, new_raw, n_raw)
    order = np.lexsort((pairs[1], pairs[0], -counts))
    mapping = np.full(n_raw, -1, np.int64)
    used_old = set()
    for t in order.tolist():
        old, raw = int(pairs[0, t]), int(pairs[1, t])
        if old not in used_old and mapping[raw] < 0:
            mapping[raw] = old
            used_old.add(old)
    for raw in np.flatnonzero(mapping < 0).tolist():
        mapping[raw] = next_label
        next_label += 1
    return mapping, next_label


def _pair_counts(old_labels, new_raw, n_raw):
    """The pairs (L, j) with L >= 0 and j >= 0 that some points share, and their counts.

    Returns (int64 [2, P], int64 [P]), pairs in increasing (L, j). A pair is the key
    ``L * n_raw + j``; counted with ``bincount`` when the key range is small (one O(M) pass,
    no sort: this runs on every update over all live points), else by sorting the keys.
    """
    both = (old_labels >= 0) & (new_raw >= 0)
    if not both.any():
        return np.empty((2, 0), np.int64), np.empty(0, np.int64)
    old = old_labels[both].astype(np.int64)
    keys = old * n_raw + new_raw[both]
    n_keys = (int(old.max()) + 1) * n_raw
    if n_keys <= 4 * keys.size + 1024:
        counts = np.bincount(keys, minlength=n_keys)
        unique = np.flatnonzero(counts)
        counts = counts[unique]
    else:
        unique, counts = np.unique(keys, return_counts=True)
    return np.stack([unique // n_raw, unique % n_raw]), counts


@dataclass(frozen=True)
class _Config:
    """The validated parameters an engine runs with, fixed from ``fit`` or the first insert."""

    min_cluster_size: int
    min_samples: int
    cluster_selection_method: str
    allow_single_cluster: bool
    capacity: int | None
    knn: str
    backend: str


class IncrementalHDBSCAN(ClusterMixin, EstimatorBase):
    """Exact HDBSCAN* over a stream of inserts and removals.

    Each call repairs the neighbour lists, core distances and minimum spanning tree instead
    of refitting, and the result is exactly that of ``medscore.HDBSCAN`` fitted on the live
    points in id order (``ids_``). Cluster labels are stable across calls: see
    :func:`match_labels` for the rule.

    Parameters
    ----------
    min_cluster_size : int, default 5
    min_samples : int or None, default None (= min_cluster_size)
        Clipped to ``N - 1`` while fewer points are live, as a refit would.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
    allow_single_cluster : bool, default False
    capacity : int or None, default None
        Most live points; an insert that would exceed it first evicts the oldest points
        (first in, first out; if the batch alone exceeds it, its own first rows too).
    knn : {"faiss", "exact"}, default "faiss"
        Neighbour search of the Numba backend: FAISS float32 candidates re-checked exactly
        in float64, or exact brute force. Both give identical results. The C++ backend
        always uses its exact kd-tree searches (faster than FAISS on CPU), whatever ``knn``.
    backend : {"cpp", "numba"}, default "cpp"
        "cpp": the whole insert repair (neighbours, core distances, MST) and the batch
        stages run in native code (``_core.incremental_insert``). "numba": Numba kernels
        and the Numba batch stages. Both give identical results.

    A scikit-learn estimator: ``fit(X)`` starts a new stream holding ``X``,
    ``partial_fit(X)`` is ``insert(X)``. Parameters are checked, with scikit-learn's
    wording, and fixed by ``fit`` or by the first ``insert``; ``set_params`` takes effect
    at the next ``fit``.

    Attributes
    ----------
    ids_ : int64 ndarray [N], ids of the live points, ascending
    labels_ : int64 ndarray [N], stable cluster label per live point (-1 noise)
    probabilities_ : float64 ndarray [N]
    cluster_sizes_ : dict {label: number of points}
    condensed_tree_ : :class:`medscore.trees.CondensedTree` (a CONDENSED ndarray); points
        are positions in ``ids_``
    minimum_spanning_tree_ : :class:`medscore.trees.MinimumSpanningTree` (float64 ndarray
        [N-1, 3], columns u, v (positions), weight)
    outlier_scores_ : float64 ndarray [N], GLOSH scores of the live points
    core_distances_ : float64 ndarray [N]
    n_features_in_ : int
    feature_names_in_ : object ndarray [D], when first fed a DataFrame with string column names
    """

    _parameter_constraints = {
        "min_cluster_size": [Interval(numbers.Integral, 2, INT64_MAX)],
        "min_samples": [Interval(numbers.Integral, 1, INT64_MAX), None],
        "cluster_selection_method": [Options(SELECTION_METHODS)],
        "allow_single_cluster": [BOOLEAN],
        "capacity": [Interval(numbers.Integral, 1, INT64_MAX), None],
        "knn": [Options(KNN_METHODS)],
        "backend": [Options(BACKENDS)],
    }

    def __init__(self, min_cluster_size=5, min_samples=None, cluster_selection_method="eom",
                 allow_single_cluster=False, capacity=None, knn="faiss", backend="cpp"):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.allow_single_cluster = allow_single_cluster
        self.capacity = capacity
        self.knn = knn
        self.backend = backend
        self._cfg = None
        self._shift = None
        self._state = _empty_state(None)

    # -- scikit-learn protocol ---------------------------------------------------------
    def fit(self, X, y=None) -> "IncrementalHDBSCAN":
        """Start a new stream holding the rows of ``X`` (ids 0 .. N-1); returns self."""
        self._cfg, self._shift, self._state = None, None, _empty_state(None)
        self.insert(X)
        return self

    def partial_fit(self, X, y=None) -> "IncrementalHDBSCAN":
        """``insert(X)``; returns self."""
        self.insert(X)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return self._cfg is not None

    def _configured(self) -> _Config:
        """The engine's parameters, validated and fixed on first use."""
        if self._cfg is None:
            p = validate_params(self, self._parameter_constraints)
            ms = p["min_cluster_size"] if p["min_samples"] is None else p["min_samples"]
            get_backend(p["backend"])  # an ImportError now, not in the middle of an update
            self._cfg = _Config(p["min_cluster_size"], ms, p["cluster_selection_method"],
                                p["allow_single_cluster"], p["capacity"], p["knn"], p["backend"])
        return self._cfg

    @property
    def _stages(self):
        return stages_of(get_backend(self._cfg.backend))

    # -- public verbs ------------------------------------------------------------------
    def insert(self, X) -> np.ndarray:
        """Add a batch of points and recluster exactly.

        Parameters
        ----------
        X : array-like [B, D] of real numbers (B >= 1; D fixed by the first insert), finite

        Returns
        -------
        int64 ndarray [B]: the ids given to the rows (consecutive, never reused)
        """
        cfg = self._configured()
        state = self._state
        points = check_points(self, X, reset=state.next_id == 0)
        new_ids = np.arange(state.next_id, state.next_id + points.shape[0], dtype=np.int64)
        if self._shift is None:
            # FAISS works on points minus this fixed shift (float32 precision near the data).
            with np.errstate(over="ignore", invalid="ignore"):
                shift = points.mean(axis=0)
            # Rows so far out that their mean overflows are rebuilt, never repaired.
            self._shift = shift if np.isfinite(shift).all() else np.zeros(points.shape[1])
        if cfg.capacity is not None:
            points, kept_ids = points[-cfg.capacity:], new_ids[-cfg.capacity:]
            overflow = state.ids.size + points.shape[0] - cfg.capacity
            if overflow > 0:
                state = self._without(state, np.arange(state.ids.size) < overflow)
        else:
            kept_ids = new_ids
        state = self._with(state, points, kept_ids)
        self._commit(replace(state, next_id=int(new_ids[-1]) + 1))
        return new_ids

    def remove(self, ids) -> None:
        """Delete live points by id and recluster exactly.

        Parameters
        ----------
        ids : array-like of int [R], distinct ids of live points
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-d array of integers, got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids repeated in remove(): {unique[counts > 1][:10].tolist()}")
        position = np.searchsorted(self._state.ids, ids)
        known = position < self._state.ids.size
        known[known] = self._state.ids[position[known]] == ids[known]
        if not known.all():
            raise ValueError(f"unknown or already removed ids: {ids[~known][:10].tolist()}")
        if ids.size == 0:
            return
        gone = np.zeros(self._state.ids.size, bool)
        gone[position] = True
        self._commit(self._without(self._state, gone))

    def labels_of(self, ids) -> np.ndarray:
        """Stable labels (int64 [R]) of live points given by id; unknown ids raise ValueError."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        position = np.searchsorted(self._state.ids, ids)
        ok = position < self._state.ids.size
        ok[ok] = self._state.ids[position[ok]] == ids[ok]
        if not ok.all():
            raise ValueError(f"unknown or removed ids: {ids[~ok][:10].tolist()}")
        return self._state.labels[position]

    # -- results -----------------------------------------------------------------------
    @property
    def ids_(self) -> np.ndarray:
        return self._state.ids

    @property
    def labels_(self) -> np.ndarray:
        return self._state.labels

    @property
    def probabilities_(self) -> np.ndarray:
        return self._state.probabilities

    @property
    def condensed_tree_(self) -> np.ndarray:
        from .trees import CondensedTree

        return CondensedTree(self._state.condensed)

    @property
    def outlier_scores_(self) -> np.ndarray:
        """float64 [N]: GLOSH outlier scores of the live points (as a batch refit's)."""
        from .prediction import outlier_scores

        return outlier_scores(self._state.condensed, self._state.ids.size)

    @property
    def core_distances_(self) -> np.ndarray:
        return self._state.core

    @property
    def minimum_spanning_tree_(self) -> np.ndarray:
        from .trees import MinimumSpanningTree

        mst = self._state.mst
        return MinimumSpanningTree(np.column_stack(
            [mst["u"].astype(np.float64), mst["v"].astype(np.float64), mst["weight"]]),
            data=self._state.X)

    @property
    def cluster_sizes_(self) -> dict:
        labels, counts = np.unique(self._state.labels[self._state.labels >= 0], return_counts=True)
        return dict(zip(labels.tolist(), counts.tolist()))

    def __len__(self) -> int:
        return int(self._state.ids.size)

    # -- updates (each returns a new _State; nothing is assigned until _commit) ----------
    def _with(self, state: _State, points: np.ndarray, ids: np.ndarray) -> _State:
        """``state`` plus the rows ``points`` with ids ``ids``: exact repair of the graph."""
        n_old = state.ids.size
        X = np.concatenate([state.X, points]) if n_old else points
        all_ids = np.concatenate([state.ids, ids])
        magnitude = np.concatenate([state.magnitude, self._magnitude(points)])
        state = replace(state, magnitude=magnitude)
        k = effective_k(self._cfg.min_samples, X.shape[0])
        if n_old - 1 < self._cfg.min_samples or points.shape[0] >= n_old or not self._repairable(magnitude):
            # k grows while N <= min_samples, a batch as large as the memory is cheaper to
            # rebuild than to merge, and far rows (see _repairable) take the batch path.
            return _with_graph(state, X, all_ids, full_graph(self._stages, X, k))
        if self._cfg.backend == "cpp":
            # Native repair: kd-tree searches are exact, so ``knn`` does not change the path.
            graph = _native().incremental_insert(X, n_old, state.knn_index, state.knn_dist, state.mst)
            return _with_graph(state, X, all_ids, graph)
        search = make_search(self._cfg.knn, self._shift)
        kern = _kernels()
        new_index, new_dist = search.knn_of_rows(X, np.arange(n_old, X.shape[0]), k)
        rev_index, rev_dist = search.closer_new_points(X, n_old, state.core, k)
        old_index, old_dist = kern.merge_neighbor_lists(state.knn_index, state.knn_dist,
                                                        rev_index, rev_dist)
        knn_index = np.concatenate([old_index, new_index])
        knn_dist = np.concatenate([old_dist, new_dist])
        core = np.ascontiguousarray(knn_dist[:, -1])
        mst = insert_mst(X, n_old, state.core, core, state.knn_index, state.knn_dist, state.mst,
                         self._shift)
        return _with_graph(state, X, all_ids, (knn_index, knn_dist, core, mst))

    def _without(self, state: _State, gone: np.ndarray) -> _State:
        """``state`` minus the rows flagged in ``gone`` (bool [N]): exact repair."""
        keep = ~gone
        X = state.X[keep]
        ids = state.ids[keep]
        n = X.shape[0]
        if n == 0:
            return replace(_empty_state(state.X.shape[1]), next_id=state.next_id,
                           next_label=state.next_label, labels=state.labels[keep])
        state = replace(state, magnitude=state.magnitude[keep])
        k = effective_k(self._cfg.min_samples, n)
        if n - 1 < self._cfg.min_samples or not self._repairable(state.magnitude):
            return _with_graph(state, X, ids, full_graph(self._stages, X, k), labels=state.labels[keep])
        position = np.cumsum(keep) - 1
        stale = gone[state.knn_index[keep]].any(axis=1)
        knn_index = position[state.knn_index[keep]]
        knn_dist = state.knn_dist[keep]
        rows = np.flatnonzero(stale)
        if rows.size and self._cfg.backend == "cpp":
            knn_index[rows], knn_dist[rows] = _native().knn_of_rows(X, rows, k)
        elif rows.size:
            search = make_search(self._cfg.knn, self._shift)
            knn_index[rows], knn_dist[rows] = search.knn_of_rows(X, rows, k)
        core = np.ascontiguousarray(knn_dist[:, -1])
        forest = kept_after_removal(X, state.mst, keep, state.core, core)
        mst = self._stages.minimum_spanning_tree(X, core, forest)
        return _with_graph(state, X, ids, (knn_index, knn_dist, core, mst), labels=state.labels[keep])

    def _magnitude(self, points: np.ndarray) -> np.ndarray:
        """float64 [B]: the largest ``|x - shift|`` of each row (inf where it overflows)."""
        with np.errstate(over="ignore"):
            return np.abs(points - self._shift).max(axis=1)

    def _repairable(self, magnitude: np.ndarray) -> bool:
        """Whether the repair path is exact for live rows of these magnitudes.

        Rows farther apart than about 1e154 have squared distances that overflow to inf, and
        the repair's pruning bounds are then meaningless (the batch stages handle infinite
        weights: far rows are noise, as in ``hdbscan``). The Numba path also bounds
        distances with float32 dot products of ``x - shift``, which overflow beyond about
        1.8e19 / sqrt(D). Above these limits the update rebuilds the graph from scratch.
        """
        if magnitude.size == 0:
            return True
        limit = (_FLOAT32_SAFE_MAGNITUDE if self._cfg.backend == "numba" else _FLOAT64_SAFE_MAGNITUDE)
        return bool(magnitude.max() <= limit / np.sqrt(self._shift.shape[0]))

    def _commit(self, state: _State) -> None:
        """Recompute the hierarchy and stable labels of ``state``, then make it current."""
        n = state.ids.size
        if n >= 2:
            linkage = self._stages.single_linkage(state.mst, n)
            condensed = self._stages.condense_tree(linkage, n, self._cfg.min_cluster_size)
            raw, probabilities, _ = self._stages.select_clusters(
                condensed, n, self._cfg.cluster_selection_method, self._cfg.allow_single_cluster, 0.0)
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
        self._state = replace(state, labels=labels.astype(np.int64), probabilities=probabilities,
                              condensed=condensed, next_label=next_label)


def _with_graph(state: _State, X: np.ndarray, ids: np.ndarray, graph, **changes) -> _State:
    """``state`` with points X, their ids and graph = (knn_index, knn_dist, core, mst)."""
    knn_index, knn_dist, core, mst = graph
    return replace(state, X=X, ids=ids, knn_index=knn_index, knn_dist=knn_dist, core=core,
                   mst=mst, **changes)


def _kernels():
    from ._numba import incremental

    return incremental


def _native():
    from . import _core

    return _core
