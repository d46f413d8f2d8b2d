"""``medscore.IncrementalHDBSCAN``: exact HDBSCAN* of a stream under inserts and removals.

After every ``insert`` or ``remove`` the result equals a batch refit of ``medscore.HDBSCAN``
on the live points (in id order): the same core distances, MST weights, condensed tree and
partition. The engine that keeps the state (points, neighbour lists, core distances, MST,
hierarchy, stable labels) is the backend's: ``medscore._core.IncrementalHDBSCAN``
(``csrc/incremental_hdbscan.cpp``) or its Numba mirror
(``medscore/_numba/incremental_hdbscan.py``). This class validates, keeps the scikit-learn
protocol, and reads the engine's results.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ._backends import BACKENDS, incremental_engine
from ._estimator import (BOOLEAN, INFINITY, ClusterMixin, EstimatorBase, Interval, Options, check_points,
                         validate_params)
from ._dtypes import CONDENSED, MST_EDGE
from ._stable_labels import match_labels
from ._validation import INT64_MAX
from .hdbscan import SELECTION_METHODS

KNN_METHODS = ("auto", "faiss", "exact")
__all__ = ["IncrementalHDBSCAN", "match_labels"]


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
    max_cluster_size: int = 0
    cluster_selection_epsilon_max: float = float("inf")


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
    knn : {"auto", "faiss", "exact"}, default "auto"
        Neighbour search. The C++ backend searches its kd-tree, exactly ("auto" or "exact";
        "faiss" is refused there). The Numba backend: "faiss" (FAISS float32 candidates
        re-checked exactly in float64), "exact" (brute force), "auto" (FAISS where
        installed). Every choice gives identical results.
    max_cluster_size : int >= 0 or None, default 0
        As in :class:`medscore.HDBSCAN` (``hdbscan``'s and scikit-learn's rule, ``eom``
        only): 0 or None is no limit.
    cluster_selection_epsilon_max : float >= 0, default inf
        As in :class:`medscore.HDBSCAN` (``hdbscan``'s rule, ``eom`` only).
    backend : {"cpp", "numba"}, default "cpp"
        "cpp": the engine and its state live in native code
        (``_core.IncrementalHDBSCAN``, ``csrc/incremental_hdbscan.cpp``); an update crosses
        into it once. "numba": the same engine in NumPy and Numba kernels
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
        "max_cluster_size": [Interval(numbers.Integral, 0, INT64_MAX), None],
        "cluster_selection_epsilon_max": [Interval(numbers.Real, 0.0, None), INFINITY],
    }

    def __init__(self, min_cluster_size=5, min_samples=None, cluster_selection_method="eom",
                 allow_single_cluster=False, capacity=None, knn="auto", backend="cpp",
                 max_cluster_size=0, cluster_selection_epsilon_max=float("inf")):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.allow_single_cluster = allow_single_cluster
        self.capacity = capacity
        self.knn = knn
        self.backend = backend
        self.max_cluster_size = max_cluster_size
        self.cluster_selection_epsilon_max = cluster_selection_epsilon_max
        self._cfg = None
        self._engine = None
        self._cache = {}

    # -- scikit-learn protocol ---------------------------------------------------------
    def fit(self, X, y=None) -> "IncrementalHDBSCAN":
        """Start a new stream holding the rows of ``X`` (ids 0 .. N-1); returns self."""
        self._cfg, self._engine, self._cache = None, None, {}
        self.insert(X)
        return self

    def partial_fit(self, X, y=None) -> "IncrementalHDBSCAN":
        """``insert(X)``; returns self."""
        self.insert(X)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return self._cfg is not None

    def _configured(self):
        """The engine, built from the validated parameters on first use."""
        if self._engine is None:
            p = validate_params(self, self._parameter_constraints)
            ms = p["min_cluster_size"] if p["min_samples"] is None else p["min_samples"]
            cfg = _Config(p["min_cluster_size"], ms, p["cluster_selection_method"],
                          p["allow_single_cluster"], p["capacity"], p["knn"], p["backend"],
                          p["max_cluster_size"] or 0, p["cluster_selection_epsilon_max"])
            self._engine = incremental_engine(cfg.backend, cfg.knn)(
                cfg.min_cluster_size, cfg.min_samples, cfg.cluster_selection_method,
                cfg.allow_single_cluster, capacity=cfg.capacity or 0,
                max_cluster_size=cfg.max_cluster_size, epsilon_max=cfg.cluster_selection_epsilon_max)
            self._cfg = cfg
        return self._engine

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
        engine = self._configured()
        points = check_points(self, X, reset=engine.next_id == 0)
        first = engine.insert(points)
        self._cache = {}
        return np.arange(first, first + points.shape[0], dtype=np.int64)

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
        live = self.ids_
        position = np.searchsorted(live, ids)
        known = position < live.size
        known[known] = live[position[known]] == ids[known]
        if not known.all():
            raise ValueError(f"unknown or already removed ids: {ids[~known][:10].tolist()}")
        if ids.size == 0:
            return
        self._engine.remove(ids)
        self._cache = {}

    def labels_of(self, ids) -> np.ndarray:
        """Stable labels (int64 [R]) of live points given by id; unknown ids raise ValueError."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        live = self.ids_
        position = np.searchsorted(live, ids)
        ok = position < live.size
        ok[ok] = live[position[ok]] == ids[ok]
        if not ok.all():
            raise ValueError(f"unknown or removed ids: {ids[~ok][:10].tolist()}")
        return self.labels_[position]

    # -- results (read from the engine once per update) ---------------------------------
    def _read(self, name: str, empty) -> np.ndarray:
        if self._engine is None:
            return empty
        if name not in self._cache:
            value = getattr(self._engine, name)
            value = np.asarray(value)
            value.flags.writeable = False  # the engine's state: read, never written
            self._cache[name] = value
        return self._cache[name]

    @property
    def ids_(self) -> np.ndarray:
        return self._read("ids", np.empty(0, np.int64))

    @property
    def labels_(self) -> np.ndarray:
        return self._read("labels", np.empty(0, np.int64))

    @property
    def probabilities_(self) -> np.ndarray:
        return self._read("probabilities", np.empty(0))

    @property
    def condensed_tree_(self) -> np.ndarray:
        from .trees import CondensedTree

        return CondensedTree(self._read("condensed_tree", np.empty(0, CONDENSED)))

    @property
    def outlier_scores_(self) -> np.ndarray:
        """float64 [N]: GLOSH outlier scores of the live points (as a batch refit's)."""
        from .prediction import outlier_scores

        return outlier_scores(self._read("condensed_tree", np.empty(0, CONDENSED)), len(self))

    @property
    def core_distances_(self) -> np.ndarray:
        return self._read("core_distances", np.empty(0))

    @property
    def minimum_spanning_tree_(self) -> np.ndarray:
        from .trees import MinimumSpanningTree

        mst = self._read("mst", np.empty(0, MST_EDGE))
        return MinimumSpanningTree(np.column_stack(
            [mst["u"].astype(np.float64), mst["v"].astype(np.float64), mst["weight"]]),
            data=self.points_)

    @property
    def points_(self) -> np.ndarray:
        """float64 [N, D]: the live points, in id order (``ids_``)."""
        return self._read("points", np.empty((0, 0)))

    @property
    def cluster_sizes_(self) -> dict:
        labels = self.labels_
        labels, counts = np.unique(labels[labels >= 0], return_counts=True)
        return dict(zip(labels.tolist(), counts.tolist()))

    def __len__(self) -> int:
        return 0 if self._engine is None else int(self._engine.size)
