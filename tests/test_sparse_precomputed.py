"""HDBSCAN(metric="precomputed") on scipy.sparse distance matrices, against ``hdbscan``.

The ``hdbscan`` library reads a sparse precomputed matrix as a graph: stored entries are
distances, absent ones are no edge (its ``_hdbscan_sparse_distance_matrix``: core distance the
``min_samples``-th smallest stored entry of a row, mutual reachability on stored entries only).
medscore converts it to the dense matrix with +inf for absent entries, which its dense path
already reads as "no edge". The graphs here are symmetrised k-nearest-neighbour graphs of
random blobs plus the Euclidean minimum spanning tree (so connected, as the library requires),
with ``k > min_samples`` so every core distance is finite.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN

pytest.importorskip("numba")
sparse = pytest.importorskip("scipy.sparse")
csgraph = pytest.importorskip("scipy.sparse.csgraph")
hdbscan = pytest.importorskip("hdbscan")


def knn_graph(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(25, 150)), int(rng.integers(2, 5))
    centres = rng.normal(scale=4.0, size=(int(rng.integers(1, 5)), dim))
    X = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim))
    params = dict(min_cluster_size=int(rng.integers(3, 12)), min_samples=int(rng.integers(1, 6)),
                  cluster_selection_method=["eom", "leaf"][seed % 2])
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    k = params["min_samples"] + int(rng.integers(1, 6))
    order = np.argsort(D, axis=1)[:, 1:k + 1]
    keep = np.zeros_like(D, bool)
    keep[np.repeat(np.arange(n), k), order.ravel()] = True
    tree = csgraph.minimum_spanning_tree(D).toarray() > 0
    keep |= tree
    keep |= keep.T
    np.fill_diagonal(keep, False)
    rows, cols = np.nonzero(keep)
    return sparse.csr_matrix((D[rows, cols], (rows, cols)), shape=(n, n)), params


@settings(max_examples=15)
@given(seed=st.integers(0, 2**20))
def test_sparse_precomputed_equals_hdbscan(seed):
    S, params = knn_graph(seed)
    n = S.shape[0]
    ours = HDBSCAN(metric="precomputed", **params).fit(S)
    dense = S.toarray()
    dense[S.toarray() == 0] = np.inf
    np.fill_diagonal(dense, 0.0)
    same = HDBSCAN(metric="precomputed", **params).fit(dense)
    np.testing.assert_array_equal(ours.labels_, same.labels_)
    np.testing.assert_array_equal(ours.probabilities_, same.probabilities_)
    load_backend("numba")
    other = HDBSCAN(metric="precomputed", backend="numba", **params).fit(S)
    np.testing.assert_array_equal(ours.labels_, other.labels_)
    np.testing.assert_array_equal(ours.probabilities_, other.probabilities_)
    assert np.isfinite(ours.core_distances_).all()
    tree = ref.threshold_tree(ours._result.minimum_spanning_tree, n)
    if not ref.binary_order_irrelevant(tree, params["min_cluster_size"]):
        return
    if ref.eom_margin(ours._result.condensed_tree, n) < 1e-5:
        return
    theirs = hdbscan.HDBSCAN(metric="precomputed", **params).fit(S)
    expected = ref.canonical_condensed(theirs.condensed_tree_.to_numpy(), n)
    got = ref.canonical_condensed(ours._result.condensed_tree, n)
    for field in ("parent", "child", "child_size"):
        np.testing.assert_array_equal(got[field], expected[field])
    np.testing.assert_allclose(got["lambda_val"], expected["lambda_val"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ours.labels_ < 0, theirs.labels_ < 0)
    pairs = set(zip(ours.labels_.tolist(), theirs.labels_.tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, rtol=0, atol=1e-9)


def test_disconnected_sparse_graph_is_clustered():
    """hdbscan refuses a graph of several components; medscore joins them at infinite distance."""
    S, params = knn_graph(3)
    n = S.shape[0]
    two = sparse.block_diag([S, S]).tocsr()
    model = HDBSCAN(metric="precomputed", min_cluster_size=params["min_cluster_size"],
                    min_samples=params["min_samples"]).fit(two)
    assert model.labels_.shape == (2 * n,)
    assert np.isinf(model.minimum_spanning_tree_[:, 2]).sum() == 1


def test_sparse_is_refused_for_other_metrics_and_bad_shapes():
    S, _ = knn_graph(1)
    with pytest.raises(TypeError, match="Sparse data"):
        HDBSCAN().fit(S)
    with pytest.raises(ValueError, match="square"):
        HDBSCAN(metric="precomputed").fit(S[:, :-1])
    bad = S.tolil()
    bad[0, 1] = 1e9  # asymmetric
    with pytest.raises(ValueError, match="symmetric"):
        HDBSCAN(metric="precomputed").fit(bad.tocsr())
