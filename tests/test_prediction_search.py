"""The neighbour search of ``approximate_predict``: trees against brute force, bit for bit.

``medscore/_numba/query.py`` answers the ``k`` nearest fitted points of new points ordered by
(distance, index), with an axis-aligned tree up to 16 dimensions and the fit's kd-tree above.
On data with ties (rounded coordinates, duplicate rows, queries equal to fitted points) both
must give brute force's indices and distances exactly, and the predictions built on them
must not change.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from medscore import HDBSCAN, approximate_predict, membership_vector  # noqa: E402
from medscore._numba.query import AxisTree, build_query_tree, knn_outside  # noqa: E402
from medscore.prediction import _brute_neighbors  # noqa: E402


def case(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(1, 400)), int(rng.choice([1, 2, 3, 5, 8, 16, 17, 40]))
    X = rng.normal(size=(n, dim)) * 3
    if seed % 2:
        X = np.round(X)  # many ties
    if n > 4:
        X[: n // 4] = X[n // 4: 2 * (n // 4)]  # duplicate rows
    Q = np.concatenate([rng.normal(size=(30, dim)) * 3, X[rng.integers(0, n, 10)]])
    if seed % 2:
        Q = np.round(Q)
    return rng, X, Q


@settings(max_examples=60)
@given(seed=st.integers(0, 2**20))
def test_tree_search_equals_brute_force(seed):
    rng, X, Q = case(seed)
    k = int(rng.integers(1, X.shape[0] + 1))
    tree = build_query_tree(X)
    assert isinstance(tree, AxisTree) == (X.shape[1] <= 16)
    idx, dist = knn_outside(tree, Q, k)
    bidx, bdist = _brute_neighbors(X, Q, k)
    np.testing.assert_array_equal(idx, bidx)
    np.testing.assert_array_equal(dist, bdist)


def test_brute_force_orders_ties_by_index():
    X = np.zeros((6, 2))
    X[4] = 1.0
    idx, dist = _brute_neighbors(X, np.zeros((1, 2)), 3)
    np.testing.assert_array_equal(idx, [[0, 1, 2]])
    np.testing.assert_array_equal(dist, 0.0)


def test_far_rows_search():
    """Coordinates whose squared sums overflow: bounds stay below the distance."""
    X = np.array([[0.0, 0.0], [1e154, 0.0], [2e154, 1e154], [-1e154, 3.0]] * 20)
    Q = np.array([[1.5e154, 1e153], [0.0, 1.0]])
    for k in (1, 5, 80):
        idx, dist = knn_outside(build_query_tree(X), Q, k)
        bidx, bdist = _brute_neighbors(X, Q, k)
        np.testing.assert_array_equal(idx, bidx)
        np.testing.assert_array_equal(dist, bdist)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**20))
def test_predictions_do_not_depend_on_the_search(seed):
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(300, 3)) * 4, 1)
    Q = np.round(rng.normal(size=(50, 3)) * 4, 1)
    model = HDBSCAN(min_cluster_size=8, min_samples=4, prediction_data=True).fit(X)
    fast = approximate_predict(model, Q, return_connecting_points=True), membership_vector(model, Q)
    import medscore.prediction as prediction

    original = prediction._numba_query
    prediction._numba_query = lambda: None  # brute force
    try:
        slow = approximate_predict(model, Q, return_connecting_points=True), membership_vector(model, Q)
    finally:
        prediction._numba_query = original
    for a, b in zip(fast[0] + (fast[1],), slow[0] + (slow[1],)):
        np.testing.assert_array_equal(a, b)


def test_without_numba_brute_force_gives_the_same_predictions():
    """numba unimportable: prediction falls back to brute force (same answers) and the
    dense metrics say what to install."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None
        import numpy as np
        import medscore
        rng = np.random.default_rng(0)
        X = np.round(rng.normal(size=(500, 4)) * 3, 1)
        model = medscore.HDBSCAN(min_cluster_size=8, prediction_data=True).fit(X)
        labels, prob, nb = medscore.approximate_predict(model, X[:40] + 0.05, return_connecting_points=True)
        try:
            medscore.HDBSCAN(metric="cosine").fit(X)
        except ImportError as exc:
            assert "pip install 'medscore[numba]'" in str(exc)
        else:
            raise AssertionError("no ImportError")
        assert not any(m.startswith("numba") for m in sys.modules if sys.modules[m] is not None)
        print(labels.tolist(), prob.tolist(), nb.tolist())
    """)
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(500, 4)) * 3, 1)
    model = HDBSCAN(min_cluster_size=8, prediction_data=True).fit(X)
    labels, prob, nb = approximate_predict(model, X[:40] + 0.05, return_connecting_points=True)
    assert done.stdout.strip() == str(labels.tolist()) + " " + str(prob.tolist()) + " " + str(nb.tolist())
