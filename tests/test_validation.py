"""Input checks at the Python boundary, and the small-N edge cases of the estimator."""
import numpy as np
import pytest

import reference as ref
from medscore import HDBSCAN
from medscore._backends import BACKENDS

X_OK = np.random.default_rng(0).normal(size=(20, 3))


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    from conftest import load_backend

    load_backend(request.param)
    return request.param


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 7, 19])
def test_nan_inf_name_first_bad_row(bad, row):
    X = X_OK.copy()
    X[row, 1] = bad
    X[19, 2] = bad  # a later bad row must not be the one reported
    with pytest.raises(ValueError, match=rf"NaN or Inf: first bad row is {row} "):
        HDBSCAN().fit(X)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match="must be 2-dimensional"):
        HDBSCAN().fit(np.zeros(shape))


def test_empty_input():
    with pytest.raises(ValueError, match="is empty"):
        HDBSCAN().fit(np.zeros((0, 3)))


def test_zero_features():
    with pytest.raises(ValueError, match="has no features"):
        HDBSCAN().fit(np.zeros((5, 0)))


@pytest.mark.parametrize("X", [np.array([["a", "b"]]), [[object()]]])
def test_non_numeric_input(X):
    with pytest.raises(TypeError, match="must hold real numbers"):
        HDBSCAN().fit(X)


def test_complex_input():
    # scikit-learn's check_complex_data wants a ValueError saying this.
    with pytest.raises(ValueError, match="must hold real numbers: Complex data not supported"):
        HDBSCAN().fit(np.array([[1 + 2j]]))


def _must(name, what, got):
    return rf"The '{name}' parameter of HDBSCAN must be {what}\. Got {got} instead\."


INT_FROM = r"an int in the range \[{}, 9223372036854775807\]"


@pytest.mark.parametrize("params, message", [
    (dict(min_cluster_size=1), _must("min_cluster_size", INT_FROM.format(2), "1")),
    (dict(min_cluster_size=2.5), _must("min_cluster_size", INT_FROM.format(2), "2.5")),
    (dict(min_cluster_size=True), _must("min_cluster_size", INT_FROM.format(2), "True")),
    (dict(min_samples=0), _must("min_samples", INT_FROM.format(1) + " or None", "0")),
    (dict(min_samples="3"), _must("min_samples", INT_FROM.format(1) + " or None", "'3'")),
    (dict(cluster_selection_method="bogus"),
     _must("cluster_selection_method", r"a str among \{'eom', 'leaf'\}", "'bogus'")),
    (dict(backend="gpu"), _must("backend", r"a str among \{'cpp', 'numba'\}", "'gpu'")),
    (dict(cluster_selection_epsilon=-0.1),
     _must("cluster_selection_epsilon", r"a float in the range \[0.0, inf\)", "-0.1")),
    (dict(cluster_selection_epsilon=np.nan),
     _must("cluster_selection_epsilon", r"a float in the range \[0.0, inf\)", "nan")),
    (dict(cluster_selection_epsilon="0"),
     _must("cluster_selection_epsilon", r"a float in the range \[0.0, inf\)", "'0'")),
    (dict(n_threads=-1), _must("n_threads", r"an int in the range \[0, 2147483647\]", "-1")),
    # A string is not a boolean: "False" used to be truth-tested and taken as True.
    (dict(allow_single_cluster="False"),
     _must("allow_single_cluster", "an instance of 'bool' or an instance of 'numpy.bool'", "'False'")),
    (dict(allow_single_cluster=1),
     _must("allow_single_cluster", "an instance of 'bool' or an instance of 'numpy.bool'", "1")),
    (dict(prediction_data="yes"),
     _must("prediction_data", "an instance of 'bool' or an instance of 'numpy.bool'", "'yes'")),
])
def test_bad_parameters(params, message):
    """scikit-learn's wording; the error is a ValueError and a TypeError, as scikit-learn's."""
    for error in (ValueError, TypeError):
        with pytest.raises(error, match=message):
            HDBSCAN(**params).fit(X_OK)


def test_numpy_bool_parameters_accepted():
    model = HDBSCAN(allow_single_cluster=np.True_, prediction_data=np.False_).fit(X_OK)
    assert model.labels_.shape == (20,)


def test_numpy_integer_parameters_accepted(backend_name):
    model = HDBSCAN(min_cluster_size=np.int64(5), min_samples=np.int32(2), backend=backend_name)
    assert model.fit(X_OK).labels_.shape == (20,)


def test_single_point_is_noise(backend_name):
    for method in ("eom", "leaf"):
        for allow_single_cluster in (False, True):
            model = HDBSCAN(cluster_selection_method=method, allow_single_cluster=allow_single_cluster,
                            backend=backend_name).fit(np.ones((1, 4)))
            np.testing.assert_array_equal(model.labels_, [-1])
            np.testing.assert_array_equal(model.probabilities_, [0.0])
            assert model.cluster_persistence_.shape == (0,)
            assert model.condensed_tree_.shape == (0,)
            assert model.minimum_spanning_tree_.shape == (0, 3)


@pytest.mark.parametrize("n, min_cluster_size", [(2, 2), (3, 2), (5, 3), (8, 3), (10, 4)])
@pytest.mark.parametrize("allow_single_cluster", [False, True])
def test_min_samples_clipped_like_hdbscan(backend_name, n, min_cluster_size, allow_single_cluster):
    hdbscan = pytest.importorskip("hdbscan")
    X = np.random.default_rng(n).normal(size=(n, 2))
    ours = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=10,
                   allow_single_cluster=allow_single_cluster,
                   backend=backend_name).fit(X)
    theirs = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=10,
                             approx_min_span_tree=False,
                             gen_min_span_tree=True, allow_single_cluster=allow_single_cluster).fit(X)
    np.testing.assert_array_equal(ours.core_distances_, ref.core_distances(X, n - 1))
    np.testing.assert_allclose(ours.minimum_spanning_tree_[:, 2],
                               np.sort(theirs.minimum_spanning_tree_._mst[:, 2]), rtol=1e-12)
    # With min_samples clipped to N - 1 the farthest points share a core distance (ties);
    # these sizes are ones where the library's binary order of tied merges cannot matter.
    tree = ref.threshold_tree(ours._result.minimum_spanning_tree, n)
    assert ref.binary_order_irrelevant(tree, min_cluster_size)
    mine = ref.canonical_condensed(ours.condensed_tree_, n)
    other = ref.canonical_condensed(theirs.condensed_tree_.to_numpy(), n)
    np.testing.assert_array_equal(mine[["parent", "child", "child_size"]],
                                  other[["parent", "child", "child_size"]])
    np.testing.assert_allclose(mine["lambda_val"], other["lambda_val"], rtol=1e-12)
    np.testing.assert_array_equal(ours.labels_ < 0, theirs.labels_ < 0)
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, atol=1e-9, rtol=0)


def test_min_samples_defaults_to_min_cluster_size(backend_name):
    X = np.random.default_rng(3).normal(size=(60, 2))
    a = HDBSCAN(min_cluster_size=7, backend=backend_name).fit(X)
    b = HDBSCAN(min_cluster_size=7, min_samples=7, backend=backend_name).fit(X)
    np.testing.assert_array_equal(a.core_distances_, b.core_distances_)
    np.testing.assert_array_equal(a.core_distances_, ref.core_distances(X, 7))
