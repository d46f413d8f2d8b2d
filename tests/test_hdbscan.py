"""``medscore.HDBSCAN`` end to end: against the ``hdbscan`` library, the reference, itself.

Where the binary order of tied merges cannot change the condensed tree (see
``reference.binary_order_irrelevant``) and no EOM decision is within float32 rounding
(``reference.eom_margin``; the library sums child stabilities in a C float), the library's
answer is the SPEC's: same partition, same condensed tree after canonical renaming,
probabilities within 1e-9. Everywhere, every backend equals the reference exactly.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from medscore import HDBSCAN
from medscore._backends import BACKENDS
from strategies import epsilon_for, epsilons, hdbscan_params, make_points, point_sets

hdbscan = pytest.importorskip("hdbscan")


def assert_same_partition(a, b) -> dict:
    """Labels equal up to renaming (same noise); returns the map from ``a``'s to ``b``'s."""
    np.testing.assert_array_equal(a < 0, b < 0)
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist()))
    forward = dict(pairs)
    assert len(forward) == len(pairs) == len({y for _, y in pairs}), "not a bijection"
    return forward


def oracle(X, min_cluster_size, min_samples, method, allow_single_cluster, epsilon):
    return hdbscan.HDBSCAN(
        approx_min_span_tree=False, gen_min_span_tree=True, min_cluster_size=min_cluster_size,
        min_samples=min_samples, cluster_selection_method=method,
        allow_single_cluster=allow_single_cluster, cluster_selection_epsilon=epsilon).fit(X)


def compare_with_oracle(X, result, params) -> bool:
    """Assert ``result`` (a reference.Result) equals the library's; False if not comparable."""
    n = len(X)
    h = oracle(X, **params)
    np.testing.assert_allclose(np.sort(h.minimum_spanning_tree_._mst[:, 2]), result.mst["weight"],
                               rtol=1e-12, atol=0)
    tree = ref.threshold_tree(result.mst, n)
    if not ref.binary_order_irrelevant(tree, params["min_cluster_size"]):
        return False
    if ref.eom_margin(result.condensed, n) < 1e-5:
        return False
    theirs = ref.canonical_condensed(h.condensed_tree_.to_numpy(), n)
    ours = ref.canonical_condensed(result.condensed, n)
    for field in ("parent", "child", "child_size"):
        np.testing.assert_array_equal(theirs[field], ours[field])
    np.testing.assert_allclose(theirs["lambda_val"], ours["lambda_val"], rtol=1e-12, atol=0)
    to_ours = assert_same_partition(h.labels_, result.labels)
    np.testing.assert_allclose(h.probabilities_, result.probabilities, rtol=0, atol=1e-9)
    assert h.cluster_persistence_.shape == result.persistence.shape
    mapped = result.persistence[[to_ours[i] for i in range(len(to_ours))]]
    # After an epsilon search the library may select a cluster whose stability it had
    # overwritten with a float32 sum of its children's: persistence then agrees to ~1e-7.
    rtol = 1e-6 if params["epsilon"] else 1e-10
    np.testing.assert_allclose(h.cluster_persistence_[: len(mapped)], mapped, rtol=rtol)
    return True


def random_case(seed):
    rng = np.random.default_rng(seed)
    X = make_points(["blobs", "uniform", "outliers"][seed % 3], int(rng.integers(2, 300)),
                    int(rng.integers(1, 12)), seed)
    params = dict(min_cluster_size=int(rng.integers(2, 25)), min_samples=int(rng.integers(1, 12)),
                  method=["eom", "leaf"][seed % 2], allow_single_cluster=bool(seed % 4 >= 2),
                  epsilon=0.0)
    if seed % 5 == 4:
        params["epsilon"] = float(rng.uniform(0.05, 1.5))
    return X, params


def fit_reference(X, params):
    return ref.fit(X, params["min_cluster_size"], params["min_samples"], params["method"],
                   params["allow_single_cluster"], params["epsilon"])


def test_reference_matches_hdbscan_library():
    compared = sum(compare_with_oracle(X, fit_reference(X, p), p)
                   for X, p in map(random_case, range(60)))
    assert compared >= 40, f"only {compared} of 60 cases were comparable"


def estimator(backend, params, **extra):
    return HDBSCAN(min_cluster_size=params["min_cluster_size"], min_samples=params["min_samples"],
                   cluster_selection_method=params["method"],
                   allow_single_cluster=params["allow_single_cluster"],
                   cluster_selection_epsilon=params["epsilon"], backend=backend, **extra)


def as_result(model):
    r = model._result
    return ref.Result(r.core_distances, r.minimum_spanning_tree, r.single_linkage_tree,
                      r.condensed_tree, r.labels, r.probabilities, r.cluster_persistence)


def assert_equals_reference(model, X, params):
    expected = fit_reference(X, params)
    got = as_result(model)
    np.testing.assert_array_equal(got.core, expected.core)
    if len(X) > 1:
        assert ref.is_minimum_spanning_tree(got.mst, X, expected.core)
    np.testing.assert_array_equal(got.linkage, ref.single_linkage(got.mst, len(X)))
    np.testing.assert_array_equal(got.condensed, expected.condensed)
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_array_equal(got.probabilities, expected.probabilities)
    np.testing.assert_array_equal(got.persistence, expected.persistence)
    return got


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    from conftest import load_backend

    load_backend(request.param)
    return request.param


def test_estimator_matches_hdbscan_library(backend_name):
    compared = 0
    for X, params in map(random_case, range(100, 130)):
        model = estimator(backend_name, params).fit(X)
        compared += compare_with_oracle(X, assert_equals_reference(model, X, params), params)
    assert compared >= 18, f"only {compared} of 30 cases were comparable"


@pytest.mark.parametrize("n, dim, min_samples", [(2000, 2, 1), (1500, 10, 5), (1200, 64, 3)])
def test_estimator_matches_hdbscan_library_large(backend_name, n, dim, min_samples):
    X = make_points("blobs", n, dim, seed=n)
    for method in ("eom", "leaf"):
        params = dict(min_cluster_size=15, min_samples=min_samples, method=method,
                      allow_single_cluster=False, epsilon=0.0)
        model = estimator(backend_name, params).fit(X)
        result = as_result(model)
        if n <= 1500:
            result = assert_equals_reference(model, X, params)
        assert compare_with_oracle(X, result, params), "fixed case must be comparable"


@given(X=point_sets(min_n=1, max_n=300), params=hdbscan_params(), eps=epsilons)
def test_estimator_equals_reference(backend_name, X, params, eps):
    params["epsilon"] = 0.0
    if len(X) > 1:
        mst = fit_reference(X, params).mst
        params["epsilon"] = epsilon_for(eps[0], mst["weight"], eps[1])
    assert_equals_reference(estimator(backend_name, params).fit(X), X, params)


@given(X=point_sets(min_n=1, max_n=300), params=hdbscan_params(), eps=epsilons)
def test_backends_agree_exactly(X, params, eps):
    from conftest import load_backend

    for name in BACKENDS:
        load_backend(name)
    params["epsilon"] = [0.0, 0.3, 1.0][int(eps[1] * 2.999)] if eps[0] != "zero" else 0.0
    a, b = (as_result(estimator(name, params).fit(X)) for name in BACKENDS)
    for field in ("core", "condensed", "labels", "probabilities", "persistence"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.mst["weight"], b.mst["weight"])


def _unpermute_condensed(condensed, perm, n):
    out = condensed.copy()
    points = out["child"] < n
    out["child"][points] = perm[out["child"][points]]
    return ref.canonical_condensed(out, n)


@given(kind=st.sampled_from(["grid", "duplicates", "bridge"]), n=st.integers(2, 250),
       dim=st.integers(1, 4), seed=st.integers(0, 2**16), params=hdbscan_params(20, 10))
def test_row_order_does_not_matter(backend_name, kind, n, dim, seed, params):
    X = make_points(kind, n, dim, seed)
    params["epsilon"] = 0.0
    perm = np.random.default_rng(seed).permutation(n)  # row i of Xp is row perm[i] of X
    base = estimator(backend_name, params).fit(X)
    other = estimator(backend_name, params).fit(X[perm])
    labels = np.empty(n, np.int64)
    labels[perm] = other.labels_
    probabilities = np.empty(n)
    probabilities[perm] = other.probabilities_
    to_other = assert_same_partition(base.labels_, labels)
    np.testing.assert_array_equal(probabilities, base.probabilities_)
    np.testing.assert_array_equal(_unpermute_condensed(other.condensed_tree_, perm, n),
                                  ref.canonical_condensed(base.condensed_tree_, n))
    np.testing.assert_array_equal(
        other.cluster_persistence_[[to_other[i] for i in range(len(to_other))]],
        base.cluster_persistence_[: len(to_other)])


def test_float32_and_layouts_give_the_same_result(backend_name):
    X = make_points("blobs", 300, 6, seed=8)
    X32 = X.astype(np.float32)
    wide = np.zeros((300, 12))
    wide[:, ::2] = X
    params = dict(min_cluster_size=10, min_samples=4, method="eom", allow_single_cluster=False,
                  epsilon=0.0)
    base = estimator(backend_name, params).fit(X)
    for same in (np.asfortranarray(X), wide[:, ::2], np.ascontiguousarray(X.T).T):
        assert not same.flags.c_contiguous
        model = estimator(backend_name, params).fit(same)
        np.testing.assert_array_equal(model.condensed_tree_, base.condensed_tree_)
        np.testing.assert_array_equal(model.labels_, base.labels_)
        np.testing.assert_array_equal(model.probabilities_, base.probabilities_)
    from_32 = estimator(backend_name, params).fit(X32)
    assert_equals_reference(from_32, X32.astype(np.float64), params)
    assert_equals_reference(estimator(backend_name, params).fit(np.asfortranarray(X32)),
                            X32.astype(np.float64), params)


def test_attributes_shapes_and_dtypes(backend_name):
    X = make_points("blobs", 120, 3, seed=1)
    model = HDBSCAN(min_cluster_size=8, backend=backend_name)
    labels = model.fit_predict(X)
    assert labels is model.labels_
    assert model.labels_.dtype == np.int64 and model.labels_.shape == (120,)
    assert model.probabilities_.dtype == np.float64 and model.probabilities_.shape == (120,)
    n_clusters = int(model.labels_.max()) + 1
    assert n_clusters >= 1
    assert model.cluster_persistence_.shape == (n_clusters,)
    assert model.core_distances_.shape == (120,)
    assert model.minimum_spanning_tree_.shape == (119, 3)
    assert model.single_linkage_tree_.shape == (119, 4)
    assert model.condensed_tree_.dtype.names == ("parent", "child", "lambda_val", "child_size")
    assert model.n_features_in_ == 3
    np.testing.assert_array_equal(model.minimum_spanning_tree_[:, 2],
                                  np.sort(model.minimum_spanning_tree_[:, 2]))


def test_sklearn_protocol():
    from sklearn.base import clone

    model = HDBSCAN(min_cluster_size=7, min_samples=3, cluster_selection_method="leaf",
                    allow_single_cluster=True, cluster_selection_epsilon=0.5, backend="numba",
                    n_threads=2)
    params = model.get_params()
    assert params == dict(min_cluster_size=7, min_samples=3, cluster_selection_method="leaf",
                          allow_single_cluster=True, cluster_selection_epsilon=0.5,
                          prediction_data=False, backend="numba", n_threads=2,
                          non_finite="raise", metric="euclidean", p=None, max_cluster_size=0,
                          cluster_selection_epsilon_max=float("inf"), cluster_selection_persistence=0.0)
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert model.set_params(min_cluster_size=9) is model and model.min_cluster_size == 9
    with pytest.raises(ValueError, match="Invalid parameter 'bogus' for estimator HDBSCAN"):
        model.set_params(bogus=1)
    assert "min_cluster_size=9" in repr(model)
