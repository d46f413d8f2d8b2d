"""Stage 2, ``mst``: an exact minimum spanning tree of the mutual-reachability graph."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from medscore._dtypes import MST_EDGE
from strategies import make_points, point_sets


def _check_mst(backend, X, min_samples, **kwargs):
    core = ref.core_distances(X, min_samples)
    mst = backend.minimum_spanning_tree(X, core, **kwargs)
    assert mst.dtype == MST_EDGE and mst.shape == (X.shape[0] - 1,)
    # Under ties any MST is correct; the sorted weights are the same for all of them.
    np.testing.assert_array_equal(mst["weight"], ref.minimum_spanning_tree(X, core)["weight"])
    assert ref.is_minimum_spanning_tree(mst, X, core)
    return mst


@given(X=point_sets(min_n=2, max_n=300), min_samples=st.integers(1, 20))
def test_mst_is_exact(backend, X, min_samples):
    _check_mst(backend, X, min_samples)


@pytest.mark.parametrize("kind", ["grid", "duplicates", "bridge"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_mst_with_ties_and_threads(backend, kind, n_threads):
    X = make_points(kind, 300, 3, seed=5)
    _check_mst(backend, X, 4, n_threads=n_threads)


def test_single_point_has_no_edges(backend):
    mst = backend.minimum_spanning_tree(np.zeros((1, 3)), np.zeros(1))
    assert mst.dtype == MST_EDGE and mst.shape == (0,)


def test_all_duplicates_give_zero_weights(backend):
    X = np.ones((7, 2))
    mst = _check_mst(backend, X, 3)
    np.testing.assert_array_equal(mst["weight"], np.zeros(6))


def test_two_points(backend):
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    mst = _check_mst(backend, X, 1)
    assert mst.tolist() == [(0, 1, 5.0)]


def test_far_outliers_fixed(backend):
    X = make_points("outliers", 300, 8, seed=21)
    _check_mst(backend, X, 5)


def test_initial_forest_is_kept(backend):
    X = make_points("grid", 150, 2, seed=9)
    core = ref.core_distances(X, 3)
    full = ref.minimum_spanning_tree(X, core)
    forest = full[::3].copy()  # edges of an MST, so the result must contain them
    forest = forest[np.lexsort((forest["v"], forest["u"], forest["weight"]))]
    mst = backend.minimum_spanning_tree(X, core, initial_forest=forest)
    assert ref.is_minimum_spanning_tree(mst, X, core)
    have = set(zip(mst["u"].tolist(), mst["v"].tolist()))
    assert set(zip(forest["u"].tolist(), forest["v"].tolist())) <= have


def test_strided_core_distances_are_read_by_value(backend):
    # A column view of the kNN distances is the natural way to pass core distances; the
    # binding once read such a strided view as if it were contiguous.
    X = make_points("blobs", 200, 4, seed=3)
    core = ref.core_distances(X, 4)
    wide = np.repeat(core[:, None], 3, axis=1)
    strided = wide[:, 1]
    assert not strided.flags["C_CONTIGUOUS"]
    got = backend.minimum_spanning_tree(X, strided)
    want = backend.minimum_spanning_tree(X, np.ascontiguousarray(core))
    np.testing.assert_array_equal(np.sort(got["weight"]), np.sort(want["weight"]))
    assert ref.is_minimum_spanning_tree(got, X, core)
