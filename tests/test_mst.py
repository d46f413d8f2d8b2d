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


def test_numba_kruskal_merge_is_kruskal_of_the_union():
    """The Numba engines' ``kruskal_merge`` (two lists sorted by ``sort_edges``, an edge in
    both) keeps the minimum spanning tree of their union, sorted by (weight, u, v)."""
    pytest.importorskip("numba")
    from medscore._numba.mst import kruskal_merge, sort_edges, spanning_forest_of_edges

    rng = np.random.default_rng(3)
    for n in (2, 3, 8, 31):
        u, v = np.triu_indices(n, 1)
        w = rng.integers(0, 4, u.size).astype(np.float64)  # few weights: many ties
        in_a = rng.random(u.size) < 0.5
        in_a[0] = True
        in_b = ~in_a
        in_b[0] = True
        a = sort_edges(u[in_a].astype(np.int64), v[in_a].astype(np.int64), w[in_a])
        b = sort_edges(u[in_b].astype(np.int64), v[in_b].astype(np.int64), w[in_b])
        tree_u, tree_v, tree_w = kruskal_merge(*a, *b, n)
        edges = np.empty(u.size, dtype=MST_EDGE)
        edges["u"], edges["v"], edges["weight"] = u, v, w
        expected = spanning_forest_of_edges(edges, n)
        np.testing.assert_array_equal(tree_u, expected["u"])
        np.testing.assert_array_equal(tree_v, expected["v"])
        np.testing.assert_array_equal(tree_w, expected["weight"])
    with pytest.raises(ValueError, match="do not span"):
        kruskal_merge(*a, *b, n + 1)


def test_numba_dense_core_distances_match_the_tree():
    """The keyed memory's O(N^2) core distances equal the kd-tree's, ties and duplicates included."""
    pytest.importorskip("numba")
    from medscore._numba.core_distance import core_distances, dense_core_distances

    for kind in ("grid", "duplicates", "bridge"):
        X = make_points(kind, 60, 3, seed=2)
        for min_samples in (1, 3, 70):
            np.testing.assert_array_equal(dense_core_distances(X, min_samples), core_distances(X, min_samples))
