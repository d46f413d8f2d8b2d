"""``medscore.HDBSCAN``: exact batch HDBSCAN* as a scikit-learn estimator."""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._backends import BACKENDS, get_backend
from ._estimator import (BOOLEAN, INFINITY, ClusterMixin, EstimatorBase, Interval, Options, check_points,
                         validate_params)
from ._validation import INT64_MAX, INT_MAX

SELECTION_METHODS = ("eom", "leaf")
#: Metrics by name, aliases included (the ``hdbscan`` library's names): the canonical name.
METRICS = {"euclidean": "euclidean", "l2": "euclidean", "manhattan": "manhattan",
           "cityblock": "manhattan", "l1": "manhattan", "minkowski": "minkowski",
           "cosine": "cosine", "precomputed": "precomputed"}
#: What ``fit`` does with rows holding NaN or Inf (see the class docstring).
NON_FINITE = ("raise", "label", "noise")


class HDBSCANResult(NamedTuple):
    """Everything one fit computes; the stages are described in ``docs/SPEC.md``."""

    core_distances: np.ndarray  #: float64 [N]
    minimum_spanning_tree: np.ndarray  #: MST_EDGE [N-1], sorted by weight
    single_linkage_tree: np.ndarray  #: LINKAGE [N-1]
    condensed_tree: np.ndarray  #: CONDENSED [R]
    labels: np.ndarray  #: int64 [N], -1 for noise
    probabilities: np.ndarray  #: float64 [N]
    cluster_persistence: np.ndarray  #: float64 [n_clusters]


class HDBSCAN(ClusterMixin, EstimatorBase):
    """Exact HDBSCAN* clustering (Campello, Moulavi and Sander 2013).

    Every stage is exact: core distances, the minimum spanning tree of the
    mutual-reachability graph, the hierarchy, the condensed tree and the selection. Ties are
    part of the definition: components joined by equal mutual-reachability weights merge at
    once, so the partition, the condensed tree (up to renaming of cluster ids) and the
    probabilities do not depend on the order of the input rows. Without ties the result is
    that of ``hdbscan.HDBSCAN(approx_min_span_tree=False)``.

    A scikit-learn estimator (``BaseEstimator``, ``ClusterMixin``) when scikit-learn is
    installed; without it the same parameters, ``get_params``/``set_params`` and
    ``fit_predict`` come from a small fallback (``medscore/_estimator.py``).

    Parameters
    ----------
    min_cluster_size : int, default 5
        Smallest size of a cluster, >= 2.
    min_samples : int or None, default None
        Neighbours (the point itself not counted, as in the ``hdbscan`` library; scikit-learn
        counts it) that define the core distance, >= 1; defaults to ``min_cluster_size``.
        With fewer than ``min_samples + 1`` points it is clipped to ``N - 1`` (at least 1),
        as the ``hdbscan`` library does.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
    allow_single_cluster : bool, default False
    cluster_selection_epsilon : float, default 0.0
        Clusters born below this distance are merged up to the first ancestor above it.
    prediction_data : bool, default False
        Also build ``prediction_data_``, needed by :func:`medscore.approximate_predict`,
        :func:`medscore.membership_vector` and :func:`medscore.all_points_membership_vectors`.
    backend : {"cpp", "numba"}, default "cpp"
    n_threads : int, default 0
        Worker threads for the neighbour and tree searches; 0 uses every core.
    metric : str, default "euclidean"
        ``"euclidean"`` (alias ``"l2"``): the exact kd-tree path of both backends.
        ``"manhattan"`` (``"cityblock"``, ``"l1"``), ``"minkowski"`` (needs ``p``),
        ``"cosine"``, or ``"precomputed"`` (``X`` is a symmetric [N, N] distance matrix,
        non-negative, no NaN; +inf allowed for "no edge"; the diagonal is ignored; or a
        scipy.sparse matrix, whose absent entries are "no edge" as in ``hdbscan``, stored
        zeros being distance 0): a dense
        O(N^2) path, as the ``hdbscan`` library's generic algorithm, computed with Numba
        kernels (``medscore/_numba/precomputed.py``, needs numba whatever the backend) and
        the backend's tree stages. ``prediction_data`` needs ``"euclidean"``.
    p : float >= 1 or None, default None
        The Minkowski exponent, for ``metric="minkowski"`` only.
    max_cluster_size : int >= 0 or None, default 0
        ``eom`` only (``hdbscan``'s and scikit-learn's rule): a cluster of more points is not
        selected, its children are considered instead. 0 (``hdbscan``'s default) or None
        (scikit-learn's) means no limit. The root's size, with ``allow_single_cluster``, is
        the summed size of its child clusters, as in both libraries.
        ``cluster_selection_epsilon`` can still select a larger cluster; ``leaf`` ignores it.
    cluster_selection_epsilon_max : float >= cluster_selection_epsilon, default inf
        ``eom`` only (``hdbscan``'s): a cluster born at a distance above this is not
        selected, its children are considered instead (the root's distance, with
        ``allow_single_cluster``, is the largest of the condensed tree). inf: no limit.
    cluster_selection_persistence : float >= 0, default 0.0
        ``fast_hdbscan``'s (also ``hdbscan``'s): before selection, every split whose less
        persistent child (the largest lambda in its subtree minus the lambda of the split,
        in float32 as both libraries compute it) is below this is dissolved into its
        parent; ``condensed_tree_`` is the simplified tree, its lambdas float32 values as both
        libraries leave them. 0: no simplification.
    non_finite : {"raise", "label", "noise"}, default "raise"
        Rows of ``X`` holding NaN or +-Inf. ``"raise"``: ``fit`` raises ``ValueError`` naming
        the first such row (medscore's rule: bad input gets a clear error). ``"label"``
        (scikit-learn's ``HDBSCAN``): the rows are left out of the fit and labelled -3 if
        they hold a NaN (probability NaN), else -2 (probability 0). ``"noise"`` (the
        ``hdbscan`` library): left out and labelled -1 (probability 0). Left-out rows get
        outlier score 1 and core distance inf; the trees, ``prediction_data_`` and the
        centroids cover the finite rows only, numbered in their order, and
        ``finite_index_`` gives their rows in ``X``.

    Attributes
    ----------
    labels_ : int64 ndarray [N]
        Cluster label per point, -1 for noise (-2 / -3 for left-out rows, ``non_finite``).
    probabilities_ : float64 ndarray [N]
        Membership strength in [0, 1]; 0 for noise.
    cluster_persistence_ : float64 ndarray [n_clusters]
    outlier_scores_ : float64 ndarray [N]
        GLOSH outlier scores (:func:`medscore.prediction.outlier_scores`).
    condensed_tree_ : :class:`medscore.trees.CondensedTree`
        A ``CONDENSED`` structured ndarray (parent, child, lambda_val, child_size) with
        ``to_pandas()``, ``to_networkx()``, ``to_numpy()`` and ``plot()``.
    single_linkage_tree_ : :class:`medscore.trees.SingleLinkageTree`
        float64 ndarray [N-1, 4] in scipy's encoding, with the same methods.
    minimum_spanning_tree_ : :class:`medscore.trees.MinimumSpanningTree`
        float64 ndarray [N-1, 3], columns u, v, weight sorted by weight, with the same
        methods; it keeps a reference to the fitted points (float64 [N, D]) for ``plot()``.
    core_distances_ : float64 ndarray [N]
    exemplars_ : list of float64 ndarrays [E_k, D]
        Densest points of each cluster (only with ``prediction_data=True``).
    prediction_data_ : :class:`medscore.prediction.PredictionData` or None
    finite_index_ : int64 ndarray [F]
        Rows of ``X`` that were clustered (all rows unless ``non_finite`` left some out);
        point ``i`` of the trees is row ``finite_index_[i]``.
    n_features_in_ : int
    feature_names_in_ : object ndarray [D]
        Column names, when fitted on a DataFrame whose column names are all strings.
    """

    _parameter_constraints = {
        "min_cluster_size": [Interval(numbers.Integral, 2, INT64_MAX)],
        "min_samples": [Interval(numbers.Integral, 1, INT64_MAX), None],
        "cluster_selection_method": [Options(SELECTION_METHODS)],
        "allow_single_cluster": [BOOLEAN],
        "cluster_selection_epsilon": [Interval(numbers.Real, 0.0, None)],
        "prediction_data": [BOOLEAN],
        "backend": [Options(BACKENDS)],
        "n_threads": [Interval(numbers.Integral, 0, INT_MAX)],
        "non_finite": [Options(NON_FINITE)],
        "metric": [Options(tuple(METRICS))],
        "p": [Interval(numbers.Real, 1.0, None), None],
        "max_cluster_size": [Interval(numbers.Integral, 0, INT64_MAX), None],
        "cluster_selection_epsilon_max": [Interval(numbers.Real, 0.0, None), INFINITY],
        "cluster_selection_persistence": [Interval(numbers.Real, 0.0, None)],
    }

    def __init__(
        self,
        min_cluster_size: int = 5,
        min_samples: int | None = None,
        cluster_selection_method: str = "eom",
        allow_single_cluster: bool = False,
        cluster_selection_epsilon: float = 0.0,
        prediction_data: bool = False,
        backend: str = "cpp",
        n_threads: int = 0,
        non_finite: str = "raise",
        metric: str = "euclidean",
        p: float | None = None,
        max_cluster_size: int | None = 0,
        cluster_selection_epsilon_max: float = float("inf"),
        cluster_selection_persistence: float = 0.0,
    ):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.allow_single_cluster = allow_single_cluster
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.prediction_data = prediction_data
        self.backend = backend
        self.n_threads = n_threads
        self.non_finite = non_finite
        self.metric = metric
        self.p = p
        self.max_cluster_size = max_cluster_size
        self.cluster_selection_epsilon_max = cluster_selection_epsilon_max
        self.cluster_selection_persistence = cluster_selection_persistence

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = self.metric == "precomputed"  # a sparse distance graph
        tags.input_tags.pairwise = self.metric == "precomputed"  # X is a distance matrix
        return tags

    def fit(self, X, y=None) -> "HDBSCAN":
        """Cluster ``X``.

        Parameters
        ----------
        X : array-like [N, D] of real numbers (any layout; DataFrames and torch tensors
            accepted). N >= 1 finite points. Distances are computed in float64.
        y : ignored

        Returns
        -------
        self
        """
        from .prediction import outlier_scores
        from .trees import CondensedTree, MinimumSpanningTree, SingleLinkageTree, selected_clusters

        params = validate_params(self, self._parameter_constraints)
        metric = _check_metric(params)
        _check_selection(params)
        mode = params["non_finite"]
        precomputed = metric == "precomputed"
        if precomputed and _is_sparse(X):
            X = _sparse_distances(X)
        try:
            raw = check_points(self, X, reset=True, allow_non_finite=mode != "raise" or precomputed)
        except ValueError as exc:
            if "NaN or Inf" not in str(exc):
                raise
            raise ValueError(f"{exc}. HDBSCAN(non_finite='label') leaves such rows out of the "
                             "fit and labels them -2 (Inf) or -3 (NaN) as scikit-learn does; "
                             "non_finite='noise' labels them -1 as hdbscan does") from None
        if precomputed:
            _check_distance_matrix(raw)
        finite = np.ones(raw.shape[0], bool) if precomputed else np.isfinite(raw).all(axis=1)
        if finite.all():
            points, self.finite_index_ = raw, np.arange(raw.shape[0], dtype=np.int64)
        elif not finite.any():
            raise ValueError(f"X has no finite row (all {raw.shape[0]} rows hold NaN or Inf): "
                             "nothing to cluster")
        else:
            self.finite_index_ = np.flatnonzero(finite).astype(np.int64)
            points = np.ascontiguousarray(raw[self.finite_index_])
        min_samples = params["min_cluster_size"] if params["min_samples"] is None else params["min_samples"]
        backend = get_backend(params["backend"])
        if metric == "euclidean":
            result = HDBSCANResult(*backend.fit(
                points, min_cluster_size=params["min_cluster_size"], min_samples=min_samples,
                method=params["cluster_selection_method"],
                allow_single_cluster=params["allow_single_cluster"],
                epsilon=params["cluster_selection_epsilon"], n_threads=params["n_threads"]))
            if _has_selection_options(params):
                result = _select(result, points.shape[0], params, backend)
        else:
            result = _fit_dense(points, metric, params, min_samples, backend)
        n = points.shape[0]
        self._result = result
        self._fit_labels = result.labels
        self._fit_probabilities = result.probabilities
        self._excluded = None
        if n == raw.shape[0]:
            self.labels_ = result.labels
            self.probabilities_ = result.probabilities
            self.core_distances_ = result.core_distances
            self.outlier_scores_ = outlier_scores(result.condensed_tree, n)
        else:
            self._excluded = _excluded_labels(raw, finite, mode)
            self.labels_ = self._to_rows(result.labels, self._excluded)
            self.probabilities_ = self._to_rows(
                result.probabilities, np.where(self._excluded == -3, np.nan, 0.0))
            self.core_distances_ = self._to_rows(result.core_distances, np.inf)
            self.outlier_scores_ = self._to_rows(outlier_scores(result.condensed_tree, n), 1.0)
        self.cluster_persistence_ = result.cluster_persistence
        selected = selected_clusters(result.condensed_tree, n, result.labels, result.probabilities)
        self.condensed_tree_ = CondensedTree(result.condensed_tree, selected=selected)
        mst = result.minimum_spanning_tree
        self.minimum_spanning_tree_ = MinimumSpanningTree(np.column_stack(
            [mst["u"].astype(np.float64), mst["v"].astype(np.float64), mst["weight"]]),
            data=None if precomputed else points)
        self._points = points
        slt = result.single_linkage_tree
        self.single_linkage_tree_ = SingleLinkageTree(np.column_stack(
            [slt["left"].astype(np.float64), slt["right"].astype(np.float64), slt["distance"],
             slt["size"].astype(np.float64)]))
        self.prediction_data_ = None
        if params["prediction_data"]:
            self.generate_prediction_data()
        return self

    def _to_rows(self, values: np.ndarray, fill) -> np.ndarray:
        """Per-row values of the finite rows spread over all rows of X, ``fill`` elsewhere."""
        n_rows = self._excluded.shape[0]
        out = np.empty(n_rows, values.dtype)
        out[:] = fill
        out[self.finite_index_] = values
        return out

    def generate_prediction_data(self) -> None:
        """Build ``prediction_data_`` (and ``exemplars_``) after a fit without it."""
        from .prediction import make_prediction_data

        if not hasattr(self, "labels_"):
            raise ValueError("fit the estimator before generate_prediction_data()")
        if _metric_name(self.metric) != "euclidean":
            raise ValueError(f"prediction_data needs metric='euclidean' in medscore (got "
                             f"metric={self.metric!r}): approximate_predict and the membership "
                             "functions use Euclidean distances")
        points = self._points
        min_samples = self.min_cluster_size if self.min_samples is None else int(self.min_samples)
        backend = get_backend(self.backend)
        n_threads = int(self.n_threads)
        self.prediction_data_ = make_prediction_data(
            points, self._result.condensed_tree, self.condensed_tree_.selected, min_samples,
            lambda X, k: backend.nearest_neighbors(X, k, n_threads))
        self.exemplars_ = self.prediction_data_.exemplars

    def dbscan_clustering(self, cut_distance, min_cluster_size=5) -> np.ndarray:
        """DBSCAN* labels at ``eps = cut_distance`` from the fitted hierarchy (``hdbscan``'s).

        A cut of ``single_linkage_tree_`` (mutual reachability with this fit's
        ``min_samples``): points joined below ``cut_distance`` (strictly) form a component,
        components of fewer than ``min_cluster_size`` points are noise (-1). DBSCAN* has no
        border points, so the non-core points can differ from ``sklearn.cluster.DBSCAN``'s.
        The partition is exact and the library's; labels are numbered by the smallest point
        index of each cluster (see :meth:`medscore.trees.SingleLinkageTree.get_clusters`).

        Returns
        -------
        int64 ndarray [N]
        """
        self._check_fitted()
        labels = self.single_linkage_tree_.get_clusters(cut_distance, min_cluster_size)
        return labels if self._excluded is None else self._to_rows(labels, self._excluded)

    def weighted_cluster_centroid(self, cluster_id) -> np.ndarray:
        """The mean of cluster ``cluster_id``'s points weighted by ``probabilities_``
        (``hdbscan``'s; Euclidean). Returns float64 [D]."""
        points, weights = self._cluster_points(cluster_id)
        return np.average(points, weights=weights, axis=0)

    def weighted_cluster_medoid(self, cluster_id) -> np.ndarray:
        """The point of cluster ``cluster_id`` with the smallest sum of distances to the
        others, each distance weighted by the other point's probability (``hdbscan``'s;
        Euclidean distances, medscore's bit-defined float64). Returns float64 [D]."""
        from .prediction import _distances

        points, weights = self._cluster_points(cluster_id)
        metric = _metric_name(self.metric)
        if metric == "euclidean":
            distances = _distances(points, points)
        else:
            distances = _dense_kernels(metric).pairwise_distances(
                points, metric, 2.0 if self.p is None else float(self.p))
        return points[int(np.argmin((distances * weights).sum(axis=1)))].copy()

    @property
    def relative_validity_(self) -> float:
        """``hdbscan``'s fast DBCV approximation from ``minimum_spanning_tree_`` (see
        :func:`medscore.validity.relative_validity`); for comparing fits of the same data.
        For the full index use :func:`medscore.validity_index`."""
        from .validity import relative_validity

        self._check_fitted()
        return relative_validity(self.minimum_spanning_tree_, self._fit_labels)

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise AttributeError("Model has not been fit to data")

    def _cluster_points(self, cluster_id):
        self._check_fitted()
        if cluster_id == -1:
            raise ValueError("Cannot calculate weighted centroid for -1 cluster "
                             "since it is a noise cluster")
        if self.metric == "precomputed":
            raise ValueError("weighted centroids and medoids need the points: this model was "
                             "fitted on precomputed distances")
        mask = self._fit_labels == cluster_id
        if not mask.any():
            raise ValueError(f"no cluster {cluster_id!r}: labels are 0 .. {int(self._fit_labels.max())}")
        return self._points[mask], self._fit_probabilities[mask]

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Cluster ``X`` and return ``labels_`` (int64 [N])."""
        return self.fit(X).labels_


def _excluded_labels(raw: np.ndarray, finite: np.ndarray, mode: str) -> np.ndarray:
    """int64 [N]: the label of each row left out of the fit (-3 NaN, -2 Inf for ``"label"``,
    -1 for ``"noise"``); finite rows get -1 (overwritten by the fit's labels)."""
    out = np.full(raw.shape[0], -1, np.int64)
    if mode == "label":
        bad = ~finite
        out[bad] = np.where(np.isnan(raw[bad]).any(axis=1), -3, -2)
    return out


def _metric_name(metric: str) -> str:
    return METRICS[metric]


def _check_metric(params: dict) -> str:
    """The canonical metric name; ``minkowski`` needs ``p``, others take none."""
    from ._estimator import InvalidParameterError

    metric = METRICS[params["metric"]]
    if metric == "minkowski" and params["p"] is None:
        raise InvalidParameterError("Minkowski metric given but no p value supplied!")
    if metric != "minkowski" and params["p"] is not None:
        raise InvalidParameterError(f"p={params['p']!r} is for metric='minkowski' only "
                                    f"(metric={params['metric']!r})")
    if metric != "euclidean" and params["prediction_data"]:
        raise InvalidParameterError(f"prediction_data=True needs metric='euclidean' in "
                                    f"medscore (got metric={params['metric']!r})")
    return metric


def _is_sparse(X) -> bool:
    return type(X).__module__.startswith("scipy.sparse")


def _sparse_distances(X) -> np.ndarray:
    """A scipy.sparse distance matrix as the dense one of the same graph: stored entries
    are distances (duplicates summed, as scipy does), absent ones +inf ("no edge", the
    ``hdbscan`` library's reading), the diagonal 0 (ignored by the fit)."""
    if X.ndim != 2 or X.shape[0] != X.shape[1]:
        raise ValueError(f"metric='precomputed' needs a square distance matrix, got shape {X.shape}")
    coo = X.tocsr().tocoo()  # sums duplicate entries
    if np.issubdtype(coo.data.dtype, np.complexfloating):
        raise ValueError(f"X must hold real numbers: Complex data not supported (dtype {coo.data.dtype})")
    D = np.full(X.shape, np.inf)
    D[coo.row, coo.col] = coo.data.astype(np.float64)
    np.fill_diagonal(D, 0.0)
    return D


def _check_distance_matrix(D: np.ndarray) -> None:
    """A precomputed matrix: square, no NaN, non-negative, symmetric."""
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"metric='precomputed' needs a square distance matrix, got shape {D.shape}")
    if np.isnan(D).any():
        row = int(np.flatnonzero(np.isnan(D).any(axis=1))[0])
        raise ValueError(f"the precomputed distance matrix holds NaN (first in row {row})")
    if (D < 0).any():
        row = int(np.flatnonzero((D < 0).any(axis=1))[0])
        raise ValueError(f"the precomputed distance matrix holds negative distances (first in row {row})")
    if not np.array_equal(D, D.T):
        i, j = np.argwhere(D != D.T)[0]
        raise ValueError(f"the precomputed distance matrix is not symmetric: D[{i}, {j}] = "
                         f"{D[i, j]!r} but D[{j}, {i}] = {D[j, i]!r}")


def _dense_kernels(metric: str):
    try:
        from ._numba import precomputed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"metric={metric!r} needs numba for its O(N^2) kernels: "
                          "pip install 'medscore[numba]'") from exc
    return precomputed


def _fit_dense(points, metric, params, min_samples, backend) -> HDBSCANResult:
    """Every stage on the dense distance matrix (``metric`` other than Euclidean)."""
    kernels = _dense_kernels(metric)
    from ._numba.threads import thread_limit

    with thread_limit(params["n_threads"]):
        if metric == "precomputed":
            D = points
        else:
            D = kernels.pairwise_distances(points, metric, 2.0 if params["p"] is None else params["p"])
        core = kernels.core_distances_from_matrix(D, min_samples)
        mst = kernels.minimum_spanning_tree_from_matrix(D, core)
    n = points.shape[0]
    linkage = backend.single_linkage(mst, n)
    condensed = backend.condense_tree(linkage, n, params["min_cluster_size"])
    return _select(HDBSCANResult(core, mst, linkage, condensed, None, None, None), n, params, backend)


def _check_selection(params: dict) -> None:
    """``hdbscan``'s rule: ``cluster_selection_epsilon_max >= cluster_selection_epsilon``."""
    from ._estimator import InvalidParameterError

    if params["cluster_selection_epsilon_max"] < params["cluster_selection_epsilon"]:
        raise InvalidParameterError(
            f"cluster_selection_epsilon_max ({params['cluster_selection_epsilon_max']!r}) must be "
            f">= cluster_selection_epsilon ({params['cluster_selection_epsilon']!r})")


def _has_selection_options(params: dict) -> bool:
    return bool(params["max_cluster_size"]) or params["cluster_selection_persistence"] > 0 \
        or params["cluster_selection_epsilon_max"] != float("inf")


def _select(result: HDBSCANResult, n: int, params: dict, backend) -> HDBSCANResult:
    """Stage 5 with every selection option: the persistence simplification of the condensed
    tree (kept as the result's tree, as the peers do), then the selection."""
    condensed = result.condensed_tree
    if params["cluster_selection_persistence"] > 0:
        condensed = backend.simplify_hierarchy(condensed, n, params["cluster_selection_persistence"])
    labels, probabilities, persistence = backend.select_clusters(
        condensed, n, params["cluster_selection_method"], params["allow_single_cluster"],
        params["cluster_selection_epsilon"], params["max_cluster_size"] or 0,
        params["cluster_selection_epsilon_max"])
    return result._replace(condensed_tree=condensed, labels=labels, probabilities=probabilities,
                           cluster_persistence=persistence)
