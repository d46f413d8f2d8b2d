"""Quick checks specific to the Numba backend (the shared suite covers the SPEC itself)."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")

import reference  # noqa: E402

from medscore import _numba as nb  # noqa: E402
from medscore._numba.distance import distances_between  # noqa: E402


def _lane_order_distances(X, rows, cols):
    """SPEC distances in numpy: products rounded separately, lanes summed (l0+l1)+(l2+l3)."""
    diff = X[rows] - X[cols]
    products = diff * diff
    lanes = [np.zeros(len(rows)) for _ in range(4)]
    for k in range(X.shape[1]):
        lanes[k % 4] = lanes[k % 4] + products[:, k]
    return np.sqrt((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))


@pytest.mark.parametrize("dim", [1, 3, 4, 7, 33])
def test_distance_bits_match_numpy_lane_order(dim):
    # An FMA-contracted kernel would differ in the last bits on many of these pairs.
    rng = np.random.default_rng(dim)
    X = rng.normal(size=(64, dim)) * rng.uniform(1e-3, 1e3, size=dim)
    rows, cols = np.divmod(np.arange(64 * 64), 64)
    got = distances_between(X, rows, cols)
    assert np.array_equal(got.view(np.int64), _lane_order_distances(X, rows, cols).view(np.int64))


def test_nearest_neighbors_break_ties_by_index():
    X = np.random.default_rng(0).integers(0, 3, size=(120, 2)).astype(np.float64)
    got_index, got_dist = nb.nearest_neighbors(X, 9)
    ref_index, ref_dist = reference.nearest_neighbors(X, 9)
    np.testing.assert_array_equal(got_index, ref_index)
    np.testing.assert_array_equal(got_dist, ref_dist)


@pytest.mark.parametrize("n_points, dim", [(1, 4), (40, 4), (500, 4), (600, 64)])
def test_fit_matches_reference_across_tree_sizes(n_points, dim):
    # 40+ points use several tree levels; 600 x 64 has components large enough for the
    # ordered search of the MST and more points than the seeded neighbour lists reach.
    rng = np.random.default_rng(n_points)
    centers = rng.normal(size=(3, dim)) * 4
    X = centers[rng.integers(0, 3, n_points)] + rng.normal(size=(n_points, dim))
    got = nb.fit(X, 5, 4, "eom", False, 0.0)
    want = reference.fit(X, 5, 4)
    np.testing.assert_array_equal(got[0], want.core)
    np.testing.assert_array_equal(got[1]["weight"], want.mst["weight"])
    for g, w in zip(got[3:], want[3:]):
        np.testing.assert_array_equal(g, w)


def test_fit_agrees_with_hdbscan_library_without_ties():
    # min_samples >= 2 makes many mutual-reachability weights equal (w = a core distance), and
    # the library then splits equal-height merges one binary node at a time; min_samples=1
    # on random blobs gives an MST without tied weights, where the two must agree.
    hdbscan = pytest.importorskip("hdbscan")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 3)) * 6
    X = centers[rng.integers(0, 4, 400)] + rng.normal(size=(400, 3))
    core, mst, _, _, labels, probabilities, persistence = nb.fit(X, 10, 1, "eom", False, 0.0)
    assert np.all(np.diff(mst["weight"]) > 0), "precondition: no tied MST weights"
    lib = hdbscan.HDBSCAN(min_cluster_size=10, min_samples=1, approx_min_span_tree=False,
                          gen_min_span_tree=True).fit(X)
    lib_weights = np.sort(lib.minimum_spanning_tree_.to_numpy()[:, 2])
    np.testing.assert_allclose(mst["weight"], lib_weights, rtol=1e-12)
    assert ((labels == -1) == (lib.labels_ == -1)).all()
    # Same partition up to renaming: each of our labels maps to exactly one library label.
    rename = dict(zip(labels.tolist(), lib.labels_.tolist()))
    assert len(rename) == len(set(rename.values())) == len(persistence) >= 2
    np.testing.assert_array_equal([rename[x] for x in labels.tolist()], lib.labels_)
    np.testing.assert_allclose(probabilities, lib.probabilities_, atol=1e-9)
    lib_persistence = lib.cluster_persistence_[[rename[k] for k in range(len(persistence))]]
    np.testing.assert_allclose(persistence, lib_persistence, rtol=1e-9)


def test_initial_forest_is_kept_and_cycles_rejected():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 2))
    core = nb.core_distances(X, 4)
    full = nb.minimum_spanning_tree(X, core)
    forest = full[::3]
    got = nb.minimum_spanning_tree(X, core, initial_forest=forest)
    assert reference.is_minimum_spanning_tree(got, X, core)
    assert set(zip(forest["u"].tolist(), forest["v"].tolist())) <= set(zip(got["u"].tolist(), got["v"].tolist()))
    cycle = np.array([(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0)], dtype=full.dtype)
    with pytest.raises(ValueError, match="cycle"):
        nb.minimum_spanning_tree(X, core, initial_forest=cycle)


def test_n_threads_is_restored():
    before = numba.get_num_threads()
    X = np.random.default_rng(1).normal(size=(50, 2))
    nb.fit(X, 5, 5, "eom", False, 0.0, n_threads=1)
    assert numba.get_num_threads() == before
