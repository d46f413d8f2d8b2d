"""HDBSCAN(metric=...) other than Euclidean, and precomputed distances, against ``hdbscan``.

The oracle is ``hdbscan.HDBSCAN(metric=..., approx_min_span_tree=False,
gen_min_span_tree=True)`` (``algorithm="generic"`` for cosine, which its trees refuse) on
random blobs (hypothesis seeds). Mutual reachability has ties by construction (a core
distance is shared by several edges), so like tests/test_prediction.py the partitions are
compared only where no n-ary merge can be encoded in a way that changes the condensed tree
(``reference.binary_order_irrelevant``) and no EOM decision is within rounding; sorted MST
weights are compared always. Manhattan and precomputed distances sum in the library's
order (equal bits); Minkowski's powers and cosine's normalisation round differently (rtol).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN
from medscore._backends import BACKENDS
from medscore.prediction import _distances

pytest.importorskip("numba")
hdbscan = pytest.importorskip("hdbscan")

METRICS = [("manhattan", None, 0.0), ("minkowski", 1.5, 1e-12), ("minkowski", 3.0, 1e-12),
           ("cosine", None, 1e-9)]


def blobs(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(20, 150)), int(rng.integers(2, 6))
    centres = rng.normal(scale=4.0, size=(int(rng.integers(1, 5)), dim))
    X = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim))
    params = dict(min_cluster_size=int(rng.integers(3, 12)), min_samples=int(rng.integers(1, 7)),
                  cluster_selection_method=["eom", "leaf"][seed % 2])
    return X, params


def compare(ours, theirs, params, rtol):
    n = len(ours.labels_)
    np.testing.assert_allclose(np.sort(ours.minimum_spanning_tree_[:, 2]),
                               np.sort(theirs._min_spanning_tree[:, 2]),  # the library keeps no data for precomputed
                               rtol=rtol, atol=1e-300)
    tree = ref.threshold_tree(ours._result.minimum_spanning_tree, n)
    if not ref.binary_order_irrelevant(tree, params["min_cluster_size"]):
        return False
    if ref.eom_margin(ours._result.condensed_tree, n) < 1e-5:
        return False
    np.testing.assert_array_equal(ours.labels_ < 0, theirs.labels_ < 0)
    pairs = set(zip(ours.labels_.tolist(), theirs.labels_.tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, rtol=max(rtol, 1e-12) * 1e3)
    np.testing.assert_allclose(ours.outlier_scores_, theirs.outlier_scores_, rtol=max(rtol, 1e-12) * 1e3,
                               atol=1e-12)
    return True


@pytest.mark.parametrize("metric,p,rtol", METRICS)
@settings(max_examples=15)
@given(seed=st.integers(0, 2**20))
def test_metric_equals_hdbscan(metric, p, rtol, seed):
    X, params = blobs(seed)
    ours = HDBSCAN(metric=metric, p=p, **params).fit(X)
    extra = {"p": p} if p is not None else {}
    if metric in ("cosine", "minkowski"):
        extra["algorithm"] = "generic"  # the library's trees refuse cosine and ignore p
    theirs = hdbscan.HDBSCAN(metric=metric, approx_min_span_tree=False, gen_min_span_tree=True,
                             **extra, **params).fit(X)
    compare(ours, theirs, params, rtol)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**20), manhattan=st.booleans())
def test_precomputed_equals_hdbscan(seed, manhattan):
    X, params = blobs(seed)
    D = np.abs(X[:, None] - X[None]).sum(-1) if manhattan else np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    ours = HDBSCAN(metric="precomputed", **params).fit(D)
    theirs = hdbscan.HDBSCAN(metric="precomputed", gen_min_span_tree=True, **params).fit(D)
    compare(ours, theirs, params, 0.0)


def test_comparable_cases_are_common():
    """Guards the tests above against comparing nothing."""
    count = 0
    for seed in range(20):
        X, params = blobs(seed)
        ours = HDBSCAN(metric="manhattan", **params).fit(X)
        theirs = hdbscan.HDBSCAN(metric="manhattan", approx_min_span_tree=False,
                                 gen_min_span_tree=True, **params).fit(X)
        count += compare(ours, theirs, params, 0.0)
    assert count >= 8, count


@settings(max_examples=10)
@given(seed=st.integers(0, 2**20))
def test_precomputed_spec_distances_equal_the_euclidean_fit(seed):
    """The SPEC's own distances as a matrix: every stage's output is the Euclidean fit's."""
    X, params = blobs(seed)
    euclidean = HDBSCAN(**params).fit(X)
    dense = HDBSCAN(metric="precomputed", **params).fit(_distances(X, X))
    np.testing.assert_array_equal(dense.core_distances_, euclidean.core_distances_)
    np.testing.assert_array_equal(dense.minimum_spanning_tree_[:, 2], euclidean.minimum_spanning_tree_[:, 2])
    np.testing.assert_array_equal(dense.condensed_tree_, euclidean.condensed_tree_)
    np.testing.assert_array_equal(dense.labels_, euclidean.labels_)
    np.testing.assert_array_equal(dense.probabilities_, euclidean.probabilities_)


def test_backends_agree():
    for name in BACKENDS:
        load_backend(name)
    X, params = blobs(3)
    a, b = (HDBSCAN(metric="cosine", backend=name, **params).fit(X) for name in BACKENDS)
    for attr in ("labels_", "probabilities_", "core_distances_", "outlier_scores_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    np.testing.assert_array_equal(a.condensed_tree_, b.condensed_tree_)


def test_medoid_uses_the_metric_and_zero_vectors():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(30, 3)) + 5, rng.normal(size=(30, 3)) - 5, np.zeros((1, 3))])
    model = HDBSCAN(min_cluster_size=5, metric="manhattan").fit(X)
    theirs = hdbscan.HDBSCAN(min_cluster_size=5, metric="manhattan", approx_min_span_tree=False).fit(X)
    for k in range(model.labels_.max() + 1):
        j = np.bincount(theirs.labels_[model.labels_ == k]).argmax()
        np.testing.assert_array_equal(model.weighted_cluster_medoid(k), theirs.weighted_cluster_medoid(j))
    cosine = HDBSCAN(min_cluster_size=5, metric="cosine").fit(X)  # a zero row: distance 1
    assert np.isfinite(cosine.core_distances_).all()


def test_metric_errors():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(TypeError, match="no p value"):
        HDBSCAN(metric="minkowski").fit(X)
    with pytest.raises(ValueError, match="minkowski' only"):
        HDBSCAN(p=2.0).fit(X)
    with pytest.raises(ValueError, match="'metric' parameter"):
        HDBSCAN(metric="mahalanobis").fit(X)
    with pytest.raises(ValueError, match="prediction_data=True needs metric='euclidean'"):
        HDBSCAN(metric="cosine", prediction_data=True).fit(X)
    with pytest.raises(ValueError, match="square"):
        HDBSCAN(metric="precomputed").fit(X)
    D = np.abs(X[:, None, 0] - X[None, :, 0])
    bad = D.copy(); bad[2, 3] += 1
    with pytest.raises(ValueError, match=r"not symmetric: D\[2, 3\]"):
        HDBSCAN(metric="precomputed").fit(bad)
    bad = D.copy(); bad[4, 5] = bad[5, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        HDBSCAN(metric="precomputed").fit(bad)
    bad = D.copy(); bad[4, 5] = bad[5, 4] = -1
    with pytest.raises(ValueError, match="negative"):
        HDBSCAN(metric="precomputed").fit(bad)
    model = HDBSCAN(metric="precomputed", min_cluster_size=3).fit(D)
    with pytest.raises(ValueError, match="precomputed"):
        model.weighted_cluster_centroid(0)
    D[0, 1:] = D[1:, 0] = np.inf  # "no edge": point 0 hangs at infinite distance
    model = HDBSCAN(metric="precomputed", min_cluster_size=3).fit(D)
    assert model.labels_[0] == -1 and np.isinf(model.minimum_spanning_tree_[:, 2]).sum() == 1


def test_precomputed_is_pairwise_for_scikit_learn():
    sklearn_utils = pytest.importorskip("sklearn.utils")
    assert sklearn_utils.get_tags(HDBSCAN(metric="precomputed")).input_tags.pairwise
    assert not sklearn_utils.get_tags(HDBSCAN(metric="cosine")).input_tags.pairwise
