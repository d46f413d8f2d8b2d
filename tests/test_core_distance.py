"""Stage 1, ``core_distance``: core distances and k-nearest neighbours, bit for bit."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from strategies import make_points, point_sets


def _spec_distance(a, b):
    """SPEC stage 1 written as the scalar loop it describes."""
    lanes = [0.0, 0.0, 0.0, 0.0]
    for k in range(len(a)):
        t = (float(a[k]) - float(b[k])) * (float(a[k]) - float(b[k]))
        lanes[k % 4] += t
    return np.sqrt((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))


@pytest.mark.parametrize("dim", [1, 3, 4, 5, 17, 64, 70])
def test_reference_distance_follows_lane_order(dim):
    rng = np.random.default_rng(dim)
    X = rng.normal(size=(6, dim)) * rng.choice([1e-8, 1.0, 1e8], size=(6, dim))
    dist = ref.pairwise_distances(X)
    for i in range(6):
        for j in range(6):
            assert dist[i, j] == _spec_distance(X[i], X[j])
    # The order is visible: another order of the same sum rounds differently somewhere.
    naive = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2))
    if dim >= 17:
        assert not np.array_equal(dist, naive)


@given(X=point_sets(min_n=1, max_n=300), min_samples=st.integers(1, 20))
def test_core_distances_equal_reference(backend, X, min_samples):
    core = backend.core_distances(X, min_samples)
    assert core.dtype == np.float64 and core.shape == (X.shape[0],)
    np.testing.assert_array_equal(core, ref.core_distances(X, min_samples))


@given(X=point_sets(min_n=2, max_n=200), k_seed=st.integers(1, 30))
def test_nearest_neighbors_equal_reference(backend, X, k_seed):
    k = min(k_seed, X.shape[0] - 1)
    index, dist = backend.nearest_neighbors(X, k)
    expected_index, expected_dist = ref.nearest_neighbors(X, k)
    assert index.dtype == np.int64 and index.shape == (X.shape[0], k)
    assert dist.dtype == np.float64 and dist.shape == (X.shape[0], k)
    np.testing.assert_array_equal(dist, expected_dist)
    np.testing.assert_array_equal(index, expected_index)  # ties broken by index


def test_core_distance_is_kth_neighbour_distance(backend):
    X = make_points("grid", 120, 3, seed=7)
    index, dist = backend.nearest_neighbors(X, 6)
    np.testing.assert_array_equal(backend.core_distances(X, 6), dist[:, -1])


@pytest.mark.parametrize("n, min_samples, k", [(1, 5, None), (2, 5, 1), (4, 3, 3), (4, 10, 3), (6, 5, 5)])
def test_min_samples_clipped_to_n_minus_one(backend, n, min_samples, k):
    X = make_points("blobs", n, 2, seed=n)
    core = backend.core_distances(X, min_samples)
    if k is None:
        np.testing.assert_array_equal(core, [0.0])
    else:
        np.testing.assert_array_equal(core, ref.core_distances(X, k))


def test_duplicates_count_at_distance_zero(backend):
    X = np.repeat(np.array([[0.0, 0.0], [3.0, 4.0]]), [3, 2], axis=0)
    np.testing.assert_array_equal(backend.core_distances(X, 2), [0.0, 0.0, 0.0, 5.0, 5.0])
    np.testing.assert_array_equal(backend.core_distances(X, 1), [0.0] * 5)


def test_threads_do_not_change_result(backend):
    X = make_points("blobs", 300, 16, seed=3)
    one = backend.core_distances(X, 5, n_threads=1)
    np.testing.assert_array_equal(one, backend.core_distances(X, 5, n_threads=2))
    np.testing.assert_array_equal(one, ref.core_distances(X, 5))


def test_high_dimension_fixed(backend):
    X = make_points("uniform", 250, 64, seed=11)
    np.testing.assert_array_equal(backend.core_distances(X, 20), ref.core_distances(X, 20))
