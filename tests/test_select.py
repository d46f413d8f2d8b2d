"""Stage 5, ``select``: stability, EOM/leaf, epsilon, labels, probabilities, persistence."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from medscore._dtypes import CONDENSED
from strategies import epsilon_for, epsilons, hdbscan_params, make_points, point_sets


def _condensed(X, min_samples, min_cluster_size):
    n = len(X)
    mst = ref.minimum_spanning_tree(X, ref.core_distances(X, min_samples))
    return mst, ref.condense(ref.threshold_tree(mst, n), n, min_cluster_size)


def _check_select(backend, condensed, n, method, allow_single_cluster, epsilon):
    labels, probabilities, persistence = backend.select_clusters(
        condensed, n, method, allow_single_cluster, epsilon)
    expected = ref.select(condensed, n, method, allow_single_cluster, epsilon)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert probabilities.dtype == np.float64 and probabilities.shape == (n,)
    assert persistence.dtype == np.float64
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(probabilities, expected[1])
    np.testing.assert_array_equal(persistence, expected[2])
    assert np.all(probabilities[labels < 0] == 0)
    return labels


@given(X=point_sets(min_n=2, max_n=300), params=hdbscan_params(), eps=epsilons)
def test_select_equals_reference(backend, X, params, eps):
    mst, condensed = _condensed(X, params["min_samples"], params["min_cluster_size"])
    epsilon = epsilon_for(eps[0], mst["weight"], eps[1])
    _check_select(backend, condensed, len(X), params["method"], params["allow_single_cluster"], epsilon)


@pytest.mark.parametrize("method", ["eom", "leaf"])
@pytest.mark.parametrize("allow_single_cluster", [False, True])
@pytest.mark.parametrize("kind", ["blobs", "grid", "duplicates", "outliers", "bridge"])
def test_select_fixed_cases(backend, method, allow_single_cluster, kind):
    X = make_points(kind, 250, 3, seed=13)
    mst, condensed = _condensed(X, 4, 8)
    for q in (0.0, 0.5, 0.95):
        for choice in ("zero", "at_weight", "between"):
            epsilon = epsilon_for(choice, mst["weight"], q)
            _check_select(backend, condensed, len(X), method, allow_single_cluster, epsilon)


@pytest.mark.parametrize("allow_single_cluster", [False, True])
def test_single_cluster_data(backend, allow_single_cluster):
    # One tight blob: the condensed tree has no cluster below the root.
    X = make_points("blobs", 60, 2, seed=4)[:, :1] * 0 + np.linspace(0, 1, 60)[:, None]
    _, condensed = _condensed(X, 3, 40)
    assert np.all(condensed["child"] < 60)
    for method in ("eom", "leaf"):
        labels = _check_select(backend, condensed, 60, method, allow_single_cluster, 0.0)
        if method == "leaf" or not allow_single_cluster:
            assert np.all(labels == -1)  # leaf: nothing to select (SPEC, as hdbscan 0.8.44)
        else:
            assert set(labels.tolist()) <= {-1, 0} and (labels == 0).any()


def test_single_point(backend):
    labels, probabilities, persistence = backend.select_clusters(
        np.empty(0, dtype=CONDENSED), 1, "eom", False, 0.0)
    np.testing.assert_array_equal(labels, [-1])
    np.testing.assert_array_equal(probabilities, [0.0])
    assert persistence.shape == (0,)


@given(n_dup=st.integers(2, 40), min_cluster_size=st.integers(2, 10),
       method=st.sampled_from(["eom", "leaf"]), allow_single_cluster=st.booleans())
def test_infinite_lambdas(backend, n_dup, min_cluster_size, method, allow_single_cluster):
    # Two groups of exact duplicates: stabilities and lambdas are infinite.
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), [n_dup, n_dup, 1], axis=0)
    _, condensed = _condensed(X, 2, min_cluster_size)
    _check_select(backend, condensed, len(X), method, allow_single_cluster, 0.0)


def test_reference_stability_sums_in_ascending_order():
    assert ref.ordered_sum([1e16, 1.0, 1.0, -1e16]) == ref.ordered_sum([1.0, -1e16, 1.0, 1e16])
    assert ref.ordered_sum([1e16, 1.0, 1.0]) == 1e16 + 2.0
