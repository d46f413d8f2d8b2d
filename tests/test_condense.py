"""Stage 4, ``condense``: the condensed tree, n-ary at tied heights, SPEC numbering."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from medscore._dtypes import CONDENSED, LINKAGE, MST_EDGE
from strategies import make_points, point_sets


def _alternative_mst(X, core, seed):
    """Another exact MST: Kruskal with ties broken in a random order."""
    weights = ref.mutual_reachability(X, core)
    n = len(X)
    u, v = np.triu_indices(n, 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(u)), weights[u, v]))
    parent, edges = list(range(n)), []
    for a, b in zip(u[order].tolist(), v[order].tolist()):
        ra, rb = ref._find(parent, a), ref._find(parent, b)
        if ra != rb:
            parent[ra] = rb
            edges.append((a, b, weights[a, b]))
    mst = np.array(edges, dtype=MST_EDGE)
    return mst[np.lexsort((mst["v"], mst["u"], mst["weight"]))]


def _expected(X, min_samples, min_cluster_size):
    mst = ref.minimum_spanning_tree(X, ref.core_distances(X, min_samples))
    return ref.condense(ref.threshold_tree(mst, len(X)), len(X), min_cluster_size)


def _check_structure(condensed, n):
    assert condensed.dtype == CONDENSED
    points = condensed["child"][condensed["child"] < n]
    np.testing.assert_array_equal(np.sort(points), np.arange(n))  # each point once
    assert np.all(condensed["child"][condensed["child"] >= n] > condensed["parent"][condensed["child"] >= n])
    assert np.all(condensed["child_size"][condensed["child"] < n] == 1)


@given(X=point_sets(min_n=2, max_n=300), min_samples=st.integers(1, 20),
       min_cluster_size=st.integers(2, 50), seed=st.integers(0, 2**16))
def test_condensed_equals_reference_for_any_mst(backend, X, min_samples, min_cluster_size, seed):
    n = len(X)
    core = ref.core_distances(X, min_samples)
    expected = _expected(X, min_samples, min_cluster_size)
    for mst in (ref.minimum_spanning_tree(X, core), _alternative_mst(X, core, seed)):
        condensed = backend.condense_tree(ref.single_linkage(mst, n), n, min_cluster_size)
        _check_structure(condensed, n)
        np.testing.assert_array_equal(condensed, expected)


@given(X=point_sets(min_n=2, max_n=300, kinds=("grid", "duplicates", "bridge")),
       min_samples=st.integers(1, 20), min_cluster_size=st.integers(2, 20))
def test_condensed_from_backend_linkage_on_tied_data(backend, X, min_samples, min_cluster_size):
    n = len(X)
    mst = backend.minimum_spanning_tree(X, backend.core_distances(X, min_samples))
    condensed = backend.condense_tree(backend.single_linkage(mst, n), n, min_cluster_size)
    np.testing.assert_array_equal(condensed, _expected(X, min_samples, min_cluster_size))


def _tied_example():
    # A = {0, 2, 4} and B = {1, 3, 5} (internal gaps 0.5) and point 6 join at 1.0 at once.
    edges = [(0, 2, 0.5), (2, 4, 0.5), (1, 3, 0.5), (3, 5, 0.5), (4, 6, 1.0), (5, 6, 1.0)]
    mst = np.array(edges, dtype=MST_EDGE)
    return mst[np.lexsort((mst["v"], mst["u"], mst["weight"]))]


def test_hand_checked_n_ary_merge(backend):
    condensed = backend.condense_tree(ref.single_linkage(_tied_example(), 7), 7, 3)
    expected = [(7, 8, 1.0, 3), (7, 9, 1.0, 3), (7, 6, 1.0, 1),
                (8, 0, 2.0, 1), (8, 2, 2.0, 1), (8, 4, 2.0, 1),
                (9, 1, 2.0, 1), (9, 3, 2.0, 1), (9, 5, 2.0, 1)]
    assert condensed.tolist() == expected
    assert ref.condense(ref.threshold_tree(_tied_example(), 7), 7, 3).tolist() == expected


def test_all_small_children_fall_out_together(backend):
    # Same tree with min_cluster_size 4: no child of the root is big, so every point leaves
    # the root at lambda 1, in children order (A's points, B's points, then 6).
    condensed = backend.condense_tree(ref.single_linkage(_tied_example(), 7), 7, 4)
    assert condensed.tolist() == [(7, p, 1.0, 1) for p in (0, 2, 4, 1, 3, 5, 6)]


def test_duplicates_leave_at_infinite_lambda(backend):
    X = np.repeat(np.array([[0.0], [10.0]]), [4, 3], axis=0)
    mst = ref.minimum_spanning_tree(X, ref.core_distances(X, 1))
    condensed = backend.condense_tree(ref.single_linkage(mst, 7), 7, 3)
    assert condensed.tolist() == [(7, 8, 0.1, 4), (7, 9, 0.1, 3)] + \
        [(8, p, np.inf, 1) for p in range(4)] + [(9, p, np.inf, 1) for p in range(4, 7)]


def test_single_point_gives_empty_tree(backend):
    condensed = backend.condense_tree(np.empty(0, dtype=LINKAGE), 1, 5)
    assert condensed.dtype == CONDENSED and condensed.shape == (0,)


def test_reference_condensed_matches_canonical_form():
    X = make_points("blobs", 300, 4, seed=2)
    condensed = _expected(X, 5, 10)
    np.testing.assert_array_equal(ref.canonical_condensed(condensed, 300),
                                  np.sort(condensed, order=["parent", "child"]))
