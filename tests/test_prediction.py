"""GLOSH, approximate_predict and soft clustering against the ``hdbscan`` library.

The oracle is ``hdbscan.HDBSCAN(approx_min_span_tree=False, prediction_data=True)`` on
random tie-free data (Gaussian blobs, N < 200), on cases where the two libraries' condensed
trees agree (``reference.binary_order_irrelevant``, no EOM decision within float32
rounding) and where the library's reconstruction of the selected clusters from the labels is
right (every selected cluster sheds a point of its own; see medscore/prediction.py). Labels
are compared up to the renaming that maps the library's partition onto medscore's, and the
membership columns are permuted the same way. Rows where sibling clusters tie for the
highest merge with different deaths are left out of the membership comparison: there the
library's answer depends on its internal cluster numbering (medscore's rule is order-free).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN, all_points_membership_vectors, approximate_predict, membership_vector
from medscore._backends import BACKENDS
from medscore.prediction import (_merge_heights, approximate_predict_scores, outlier_scores)

hdbscan = pytest.importorskip("hdbscan")
hdbscan_prediction = pytest.importorskip("hdbscan.prediction")


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    load_backend(request.param)
    return request.param


def random_case(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(30, 160)), int(rng.integers(1, 6))
    centres = rng.normal(scale=4.0, size=(int(rng.integers(1, 5)), dim))
    X = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim))
    params = dict(min_cluster_size=int(rng.integers(3, 15)), min_samples=int(rng.integers(1, 8)),
                  cluster_selection_method=["eom", "leaf"][seed % 2],
                  allow_single_cluster=bool(seed % 3 == 0))
    queries = np.concatenate([X[:8], X[rng.integers(0, n, 16)] + rng.normal(scale=0.3, size=(16, dim)),
                              rng.normal(scale=8.0, size=(8, dim))])
    return X, params, queries


def fit_both(X, params, backend):
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, prediction_data=True, **params).fit(X)
    ours = HDBSCAN(prediction_data=True, backend=backend, **params).fit(X)
    return theirs, ours


def comparable(theirs, ours, params) -> bool:
    """The trees agree, and the library's selection (rebuilt from labels) is the fit's."""
    n = len(ours.labels_)
    tree = ref.threshold_tree(ours._result.minimum_spanning_tree, n)
    if not ref.binary_order_irrelevant(tree, params["min_cluster_size"]):
        return False
    if ref.eom_margin(ours._result.condensed_tree, n) < 1e-5:
        return False
    parent = ours.prediction_data_.point_parent
    return all(parent[ours.labels_ == k].min() == s
               for k, s in enumerate(ours.condensed_tree_.selected.tolist()))


def label_map(theirs, ours) -> np.ndarray:
    """int64 [K]: medscore's label for each of the library's labels (a bijection)."""
    np.testing.assert_array_equal(theirs.labels_ < 0, ours.labels_ < 0)
    pairs = dict(zip(theirs.labels_[theirs.labels_ >= 0].tolist(),
                     ours.labels_[ours.labels_ >= 0].tolist()))
    assert sorted(pairs.values()) == list(range(len(pairs)))
    return np.array([pairs[k] for k in range(len(pairs))], np.int64)


def ambiguous_rows(model, clusters, lam) -> np.ndarray:
    """bool [M]: rows whose highest merge is tied between clusters of different deaths."""
    data = model.prediction_data_
    heights = _merge_heights(data, clusters, lam)
    death = data.info.death[data.selected - data.info.root]
    top = np.where(heights == heights.max(axis=1, keepdims=True), death, np.nan)
    return np.nanmax(top, axis=1) != np.nanmin(top, axis=1)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**20))
def test_outlier_scores_equal_hdbscan(backend_name, seed):
    X, params, _ = random_case(seed)
    theirs, ours = fit_both(X, params, backend_name)
    if not comparable(theirs, ours, params):
        return
    np.testing.assert_allclose(ours.outlier_scores_, theirs.outlier_scores_, rtol=1e-12, atol=1e-15)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**20))
def test_approximate_predict_equals_hdbscan(backend_name, seed):
    X, params, queries = random_case(seed)
    theirs, ours = fit_both(X, params, backend_name)
    if not comparable(theirs, ours, params) or ours.labels_.max() < 0:
        return
    if ours.condensed_tree_.selected.tolist() == [len(X)]:
        return  # the root alone: the library predicts noise (test_root_only_cluster)
    to_ours = label_map(theirs, ours)
    their_labels, their_prob, their_nb = hdbscan_prediction.approximate_predict(
        theirs, queries, return_connecting_points=True)
    labels, prob, nb = approximate_predict(ours, queries, return_connecting_points=True)
    np.testing.assert_array_equal(labels, np.where(their_labels >= 0, to_ours[their_labels], -1))
    np.testing.assert_allclose(prob, their_prob, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(nb, their_nb)
    np.testing.assert_allclose(approximate_predict_scores(ours, queries),
                               hdbscan_prediction.approximate_predict_scores(theirs, queries),
                               rtol=1e-12, atol=1e-15)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**20))
def test_membership_vectors_equal_hdbscan(backend_name, seed):
    X, params, queries = random_case(seed)
    theirs, ours = fit_both(X, params, backend_name)
    if not comparable(theirs, ours, params) or ours.labels_.max() < 0:
        return
    if ours.condensed_tree_.selected.tolist() == [len(X)]:
        return  # the library has no cluster tree to look the root's death up in (KeyError)
    to_ours = label_map(theirs, ours)
    data = ours.prediction_data_
    everyone = all_points_membership_vectors(ours)[:, to_ours]
    keep = ~ambiguous_rows(ours, data.point_parent, data.point_lambda)
    np.testing.assert_allclose(everyone[keep],
                               hdbscan_prediction.all_points_membership_vectors(theirs)[keep],
                               rtol=1e-9, atol=1e-15)
    from medscore.prediction import _join

    joined = _join(data, queries)
    own = data.point_lambda[joined.neighbor]
    keep = ~ambiguous_rows(ours, data.point_parent[joined.neighbor], np.minimum(own, joined.lam))
    np.testing.assert_allclose(membership_vector(ours, queries)[:, to_ours][keep],
                               hdbscan_prediction.membership_vector(theirs, queries)[keep],
                               rtol=1e-9, atol=1e-15)


def test_oracle_cases_are_mostly_comparable():
    """Guards the tests above against comparing nothing: most random cases qualify."""
    load_backend("cpp")
    count = 0
    for seed in range(40):
        X, params, _ = random_case(seed)
        count += comparable(*fit_both(X, params, "cpp"), params)
    assert count >= 20, f"only {count} of 40 cases comparable"


def test_backends_give_identical_predictions():
    for name in BACKENDS:
        load_backend(name)
    X, params, queries = random_case(7)
    a, b = (HDBSCAN(prediction_data=True, backend=name, **params).fit(X) for name in BACKENDS)
    for f in (lambda m: approximate_predict(m, queries), lambda m: (membership_vector(m, queries),),
              lambda m: (all_points_membership_vectors(m), m.outlier_scores_)):
        for x, y in zip(f(a), f(b)):
            np.testing.assert_array_equal(x, y)


def test_root_only_cluster():
    """One blob, allow_single_cluster: the library predicts noise and warns; medscore
    predicts into the root cluster, label 0."""
    load_backend("cpp")
    X = np.random.default_rng(3).normal(size=(80, 2))
    ours = HDBSCAN(min_cluster_size=60, allow_single_cluster=True, prediction_data=True).fit(X)
    assert ours.condensed_tree_.selected.tolist() == [80] and (ours.labels_ == 0).any()
    labels, prob = approximate_predict(ours, X[:5] * 0.5)
    np.testing.assert_array_equal(labels, 0)
    assert ((prob > 0) & (prob <= 1)).all()
    theirs = hdbscan.HDBSCAN(min_cluster_size=60, allow_single_cluster=True,
                             approx_min_span_tree=False, prediction_data=True).fit(X)
    with pytest.warns(UserWarning, match="does not have any defined clusters"):
        assert (hdbscan_prediction.approximate_predict(theirs, X[:5] * 0.5)[0] == -1).all()


def test_no_clusters():
    load_backend("cpp")
    X = np.random.default_rng(4).normal(size=(30, 2))
    model = HDBSCAN(min_cluster_size=25, prediction_data=True).fit(X)
    assert model.labels_.max() == -1
    with pytest.warns(UserWarning, match="predicted as noise"):
        labels, prob = approximate_predict(model, X[:3])
    np.testing.assert_array_equal(labels, -1)
    np.testing.assert_array_equal(prob, 0.0)
    assert membership_vector(model, X[:3]).shape == (3, 0)
    assert all_points_membership_vectors(model).shape == (30, 0)
    with pytest.warns(UserWarning, match="predicted as outliers"):
        np.testing.assert_array_equal(approximate_predict_scores(model, X[:3]), 1.0)


def test_errors():
    load_backend("cpp")
    X = np.random.default_rng(5).normal(size=(40, 3))
    model = HDBSCAN().fit(X)
    with pytest.raises(ValueError, match="prediction_data=True"):
        approximate_predict(model, X[:2])
    model.generate_prediction_data()
    assert len(model.exemplars_) == model.labels_.max() + 1
    with pytest.raises(ValueError, match="dimension does not match"):
        approximate_predict(model, X[:2, :2])
    with pytest.raises(ValueError, match="NaN or Inf"):
        membership_vector(model, np.full((1, 3), np.nan))


def test_outlier_scores_with_duplicates_are_finite():
    """A cluster holding duplicates has lambda_max = inf; the library's formula gives NaN
    for its other points, GLOSH's limit 1 - lambda / inf is 1."""
    X = np.concatenate([np.zeros((6, 2)), np.random.default_rng(6).normal(size=(20, 2))])
    model = HDBSCAN(min_cluster_size=5, min_samples=3).fit(X)
    scores = model.outlier_scores_
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_array_equal(scores[:6], 0.0)
    np.testing.assert_array_equal(scores, outlier_scores(model._result.condensed_tree, len(X)))


def test_fewer_points_than_twice_min_samples():
    """The library's neighbour query raises here; medscore uses every fitted point."""
    load_backend("cpp")
    X = np.random.default_rng(8).normal(size=(12, 2))
    X[6:] += 10
    model = HDBSCAN(min_cluster_size=3, min_samples=5, prediction_data=True).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels, _ = approximate_predict(model, X[[0, 7]])
    np.testing.assert_array_equal(labels, model.labels_[[0, 7]])
