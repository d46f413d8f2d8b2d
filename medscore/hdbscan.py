"""``medscore.HDBSCAN``: exact batch HDBSCAN* with a scikit-learn style API."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._backends import BACKENDS, get_backend
from ._validation import INT64_MAX, INT_MAX, as_points, check_choice, check_float, check_int

SELECTION_METHODS = ("eom", "leaf")


class HDBSCANResult(NamedTuple):
    """Everything one fit computes; the stages are described in ``docs/SPEC.md``."""

    core_distances: np.ndarray  #: float64 [N]
    minimum_spanning_tree: np.ndarray  #: MST_EDGE [N-1], sorted by weight
    single_linkage_tree: np.ndarray  #: LINKAGE [N-1]
    condensed_tree: np.ndarray  #: CONDENSED [R]
    labels: np.ndarray  #: int64 [N], -1 for noise
    probabilities: np.ndarray  #: float64 [N]
    cluster_persistence: np.ndarray  #: float64 [n_clusters]


class HDBSCAN:
    """Exact HDBSCAN* clustering (Campello, Moulavi and Sander 2013).

    Every stage is exact: core distances, the minimum spanning tree of the
    mutual-reachability graph, the hierarchy, the condensed tree and the selection. Ties are
    part of the definition: components joined by equal mutual-reachability weights merge at
    once, so the partition, the condensed tree (up to renaming of cluster ids) and the
    probabilities do not depend on the order of the input rows. Without ties the result is
    that of ``hdbscan.HDBSCAN(approx_min_span_tree=False)``.

    Parameters
    ----------
    min_cluster_size : int, default 5
        Smallest size of a cluster, >= 2.
    min_samples : int or None, default None
        Neighbours (the point itself not counted) that define the core distance, >= 1;
        defaults to ``min_cluster_size``. With fewer than ``min_samples + 1`` points it is
        clipped to ``N - 1`` (at least 1), as the ``hdbscan`` library does.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
    allow_single_cluster : bool, default False
    cluster_selection_epsilon : float, default 0.0
        Clusters born below this distance are merged up to the first ancestor above it.
    backend : {"cpp", "numba"}, default "cpp"
    n_threads : int, default 0
        Worker threads for the neighbour and tree searches; 0 uses every core.

    Attributes
    ----------
    labels_ : int64 ndarray [N]
        Cluster label per point, -1 for noise.
    probabilities_ : float64 ndarray [N]
        Membership strength in [0, 1]; 0 for noise.
    cluster_persistence_ : float64 ndarray [n_clusters]
    condensed_tree_ : structured ndarray, fields parent, child, lambda_val, child_size
    minimum_spanning_tree_ : float64 ndarray [N-1, 3]
        Columns u, v, weight, sorted by weight.
    core_distances_ : float64 ndarray [N]
    single_linkage_tree_ : float64 ndarray [N-1, 4] in scipy's encoding
    n_features_in_ : int
    """

    def __init__(
        self,
        min_cluster_size: int = 5,
        min_samples: int | None = None,
        cluster_selection_method: str = "eom",
        allow_single_cluster: bool = False,
        cluster_selection_epsilon: float = 0.0,
        backend: str = "cpp",
        n_threads: int = 0,
    ):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.allow_single_cluster = allow_single_cluster
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.backend = backend
        self.n_threads = n_threads

    # -- scikit-learn estimator protocol -------------------------------------------------
    _param_names = (
        "min_cluster_size",
        "min_samples",
        "cluster_selection_method",
        "allow_single_cluster",
        "cluster_selection_epsilon",
        "backend",
        "n_threads",
    )

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params) -> "HDBSCAN":
        """Set parameters by name, as scikit-learn's ``set_params``."""
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"unknown parameter {name!r}; valid: {list(self._param_names)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"HDBSCAN({args})"

    def _validated_params(self) -> dict:
        mcs = check_int("min_cluster_size", self.min_cluster_size, low=2, high=INT64_MAX)
        ms = mcs if self.min_samples is None else check_int("min_samples", self.min_samples, low=1, high=INT64_MAX)
        return dict(
            min_cluster_size=mcs,
            min_samples=ms,
            method=check_choice("cluster_selection_method", self.cluster_selection_method, SELECTION_METHODS),
            allow_single_cluster=bool(self.allow_single_cluster),
            epsilon=check_float("cluster_selection_epsilon", self.cluster_selection_epsilon, low=0.0),
            n_threads=check_int("n_threads", self.n_threads, low=0, high=INT_MAX),
        )

    def fit(self, X, y=None) -> "HDBSCAN":
        """Cluster ``X``.

        Parameters
        ----------
        X : array-like [N, D] of float32 or float64 (any layout; torch tensors accepted)
            N >= 1 finite points. Distances are computed in float64.
        y : ignored

        Returns
        -------
        self
        """
        params = self._validated_params()
        check_choice("backend", self.backend, BACKENDS)
        points = as_points(X)
        result = HDBSCANResult(*get_backend(self.backend).fit(points, **params))
        self._result = result
        self.n_features_in_ = points.shape[1]
        self.labels_ = result.labels
        self.probabilities_ = result.probabilities
        self.cluster_persistence_ = result.cluster_persistence
        self.condensed_tree_ = result.condensed_tree
        self.core_distances_ = result.core_distances
        mst = result.minimum_spanning_tree
        self.minimum_spanning_tree_ = np.column_stack(
            [mst["u"].astype(np.float64), mst["v"].astype(np.float64), mst["weight"]]
        ).reshape(-1, 3)
        slt = result.single_linkage_tree
        self.single_linkage_tree_ = np.column_stack(
            [slt["left"].astype(np.float64), slt["right"].astype(np.float64), slt["distance"],
             slt["size"].astype(np.float64)]
        ).reshape(-1, 4)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Cluster ``X`` and return ``labels_`` (int64 [N])."""
        return self.fit(X).labels_
