"""Stage 3, ``linkage``: Kruskal over the sorted MST in scipy's encoding."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from medscore._dtypes import LINKAGE, MST_EDGE
from strategies import make_points, point_sets


def _mst(X, min_samples):
    return ref.minimum_spanning_tree(X, ref.core_distances(X, min_samples))


@given(X=point_sets(min_n=2, max_n=300), min_samples=st.integers(1, 20))
def test_linkage_equals_reference(backend, X, min_samples):
    n = X.shape[0]
    mst = _mst(X, min_samples)
    linkage = backend.single_linkage(mst, n)
    assert linkage.dtype == LINKAGE and linkage.shape == (n - 1,)
    np.testing.assert_array_equal(linkage, ref.single_linkage(mst, n))
    assert linkage["size"][-1] == n


@given(X=point_sets(min_n=2, max_n=300), min_samples=st.integers(1, 20))
def test_backend_mst_encodes_the_threshold_hierarchy(backend, X, min_samples):
    # Under ties the backend may pick another MST and so another binary tree; the
    # hierarchy it encodes (components at each threshold) must be the reference's.
    n = X.shape[0]
    mst = backend.minimum_spanning_tree(X, ref.core_distances(X, min_samples))
    linkage = backend.single_linkage(mst, n)
    np.testing.assert_array_equal(linkage, ref.single_linkage(mst, n))
    assert ref.threshold_tree(ref.edges_of_linkage(linkage, n), n) == ref.threshold_tree(_mst(X, min_samples), n)


def test_hand_checked_tree(backend):
    # Points on a line at 0, 1, 3, 7: gaps 1, 2, 4.
    mst = np.array([(0, 1, 1.0), (1, 2, 2.0), (2, 3, 4.0)], dtype=MST_EDGE)
    linkage = backend.single_linkage(mst, 4)
    assert linkage.tolist() == [(0, 1, 1.0, 2), (4, 2, 2.0, 3), (5, 3, 4.0, 4)]


def test_left_is_the_component_of_u(backend):
    mst = np.array([(2, 3, 1.0), (0, 1, 1.0), (0, 3, 2.0)], dtype=MST_EDGE)
    mst = mst[np.lexsort((mst["v"], mst["u"], mst["weight"]))]
    linkage = backend.single_linkage(mst, 4)
    assert linkage.tolist() == [(0, 1, 1.0, 2), (2, 3, 1.0, 2), (4, 5, 2.0, 4)]


def test_single_point(backend):
    linkage = backend.single_linkage(np.empty(0, dtype=MST_EDGE), 1)
    assert linkage.dtype == LINKAGE and linkage.shape == (0,)


def test_wrong_number_of_edges_raises(backend):
    mst = _mst(make_points("blobs", 10, 2, seed=1), 2)
    with pytest.raises(ValueError):
        backend.single_linkage(mst[:-1], 10)


def test_reference_threshold_tree_merges_ties_at_once():
    # Four points, three edges of weight 1 (a path): one 4-way merge, not a binary chain.
    mst = np.array([(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0)], dtype=MST_EDGE)
    tree = ref.threshold_tree(mst, 4)
    assert tree.children[tree.root] == [0, 1, 2, 3]
    mst = np.array([(0, 1, 1.0), (2, 3, 1.0), (1, 2, 2.0)], dtype=MST_EDGE)
    tree = ref.threshold_tree(mst, 4)
    assert [tree.children[c] for c in tree.children[tree.root]] == [[0, 1], [2, 3]]
