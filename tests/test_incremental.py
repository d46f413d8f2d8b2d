"""``medscore.IncrementalHDBSCAN``: after every insert/remove it equals a batch refit.

Streams are random (seeded through hypothesis): batch sizes from 1 to about the memory's
size, interleaved removals and FIFO evictions, duplicates and outliers, D from 1 to 64. After
every step the engine's core distances, sorted MST weights, canonical condensed tree,
partition and probabilities must equal ``medscore.HDBSCAN`` on the live points, and, where
ties cannot matter, the ``hdbscan`` library's.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN, IncrementalHDBSCAN
from medscore._backends import BACKENDS
from medscore.incremental import match_labels

KNN = ("auto", "exact", "faiss")


def knn_for(backend, knn):
    """The C++ engine's kd-tree search is exact and refuses "faiss" (the Numba engine's)."""
    return "auto" if backend == "cpp" and knn == "faiss" else knn


def assert_same_partition(a, b):
    np.testing.assert_array_equal(a < 0, b < 0)
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist()))
    assert len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs}), "not a bijection"


def assert_equals_refit(model, X_live, backend, params):
    n = len(X_live)
    refit = HDBSCAN(backend=backend, **params).fit(X_live)
    np.testing.assert_array_equal(model.core_distances_, refit.core_distances_)
    np.testing.assert_array_equal(np.sort(model.minimum_spanning_tree_[:, 2]),
                                  refit.minimum_spanning_tree_[:, 2])
    if n >= 2:
        np.testing.assert_array_equal(ref.canonical_condensed(model.condensed_tree_, n),
                                      ref.canonical_condensed(refit.condensed_tree_, n))
    assert_same_partition(model.labels_, refit.labels_)
    np.testing.assert_array_equal(model.probabilities_, refit.probabilities_)


def make_batch(rng, size, dim, centres):
    """Blobs around fixed centres, sometimes rounded (duplicates, ties) or with outliers."""
    X = centres[rng.integers(0, len(centres), size)] + rng.normal(size=(size, dim))
    kind = rng.integers(0, 4)
    if kind == 1:
        X = np.round(X)
    elif kind == 2:
        X[rng.random(size) < 0.2] *= 30.0
    elif kind == 3 and size > 1:
        X[1:] = X[rng.integers(0, size, size - 1)]  # many exact duplicates
    return X


def run_stream(seed, backend, knn, n_steps, capacity, params, max_dim=64):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, max_dim + 1))
    centres = rng.normal(size=(4, dim)) * 4
    model = IncrementalHDBSCAN(capacity=capacity, knn=knn_for(backend, knn), backend=backend, **params)
    points = {}
    for _ in range(n_steps):
        size = int(rng.integers(1, max(2, len(model)) + 1))
        batch = make_batch(rng, size, dim, centres)
        live_before = len(model)
        ids = model.insert(batch)
        points.update(zip(ids.tolist(), batch))
        if capacity is not None:
            assert len(model) == min(capacity, live_before + size)
            assert model.ids_[-1] == ids[-1]
        if rng.random() < 0.3 and len(model) > 1:
            gone = rng.choice(model.ids_, size=int(rng.integers(1, len(model) // 2 + 1)), replace=False)
            model.remove(gone)
        X_live = np.array([points[i] for i in model.ids_.tolist()])
        assert_equals_refit(model, X_live, backend, params)
    return model


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    load_backend(request.param)
    return request.param


@settings(max_examples=12)
@given(seed=st.integers(0, 2**32 - 1), knn=st.sampled_from(KNN),
       min_cluster_size=st.integers(2, 8), min_samples=st.integers(1, 7),
       method=st.sampled_from(["eom", "leaf"]), allow_single_cluster=st.booleans())
def test_stream_equals_refit(backend_name, seed, knn, min_cluster_size, min_samples, method,
                             allow_single_cluster):
    params = dict(min_cluster_size=min_cluster_size, min_samples=min_samples,
                  cluster_selection_method=method, allow_single_cluster=allow_single_cluster)
    run_stream(seed, backend_name, knn, n_steps=9, capacity=None, params=params)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32 - 1), knn=st.sampled_from(KNN), capacity=st.integers(1, 90))
def test_stream_with_capacity_equals_refit(backend_name, seed, knn, capacity):
    params = dict(min_cluster_size=4, min_samples=3)
    run_stream(seed, backend_name, knn, n_steps=10, capacity=capacity, params=params)


@pytest.mark.parametrize("knn", ("auto", "exact"))
def test_long_stream_of_small_batches(knn):
    """Many incremental (not rebuild) steps: batches far smaller than the memory."""
    load_backend("cpp")
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(5, 8)) * 5
    model = IncrementalHDBSCAN(min_cluster_size=5, min_samples=4, knn=knn, backend="cpp")
    points = []
    for step in range(30):
        batch = make_batch(rng, int(rng.integers(1, 9)), 8, centres)
        model.insert(batch)
        points.extend(batch)
    assert_equals_refit(model, np.array(points), "cpp", dict(min_cluster_size=5, min_samples=4))


def test_matches_hdbscan_library_without_ties():
    hdbscan = pytest.importorskip("hdbscan")
    load_backend("cpp")
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 5)) * 6
    X = centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 5))
    model = IncrementalHDBSCAN(min_cluster_size=8, min_samples=5)
    for chunk in np.array_split(X, [150, 151, 170, 260, 300, 399]):
        model.insert(chunk)
        n = len(model)
        h = hdbscan.HDBSCAN(min_cluster_size=8, min_samples=5, approx_min_span_tree=False,
                            gen_min_span_tree=True).fit(X[:n])
        np.testing.assert_allclose(np.sort(h.minimum_spanning_tree_._mst[:, 2]),
                                   np.sort(model.minimum_spanning_tree_[:, 2]), rtol=1e-12)
        assert_same_partition(model.labels_, h.labels_)
        np.testing.assert_allclose(model.probabilities_, h.probabilities_, atol=1e-9)


def state_of(model):
    e = model._engine
    return [e.points, e.ids, e.knn_index, e.knn_dist, e.core_distances, e.mst, e.labels,
            e.probabilities, e.condensed_tree, e.next_id, e.next_label]


@pytest.mark.parametrize("bad, match", [
    (lambda X: X.__setitem__((3, 1), np.nan) or X, "NaN or Inf"),
    (lambda X: X.__setitem__((0, 0), np.inf) or X, "NaN or Inf"),
    (lambda X: X[:, :3], "X has 3 features, but IncrementalHDBSCAN is expecting 4 features"),
    (lambda X: X[0], "2-dimensional"),
])
def test_bad_batch_leaves_state_unchanged(bad, match):
    load_backend("cpp")
    rng = np.random.default_rng(0)
    model = IncrementalHDBSCAN(min_cluster_size=3, capacity=30, knn="exact")
    model.insert(rng.normal(size=(25, 4)))
    before = state_of(model)
    with pytest.raises(ValueError, match=match):
        model.insert(bad(rng.normal(size=(10, 4))))
    for a, b in zip(before, state_of(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ids, match", [
    ([0, 0], "repeated"), ([999], "unknown"), ([1, -5], "unknown"), ([[1, 2]], "1-d"),
    (np.array([1.5]), "integers"),
])
def test_bad_ids_leave_state_unchanged(ids, match):
    load_backend("cpp")
    model = IncrementalHDBSCAN(min_cluster_size=3, knn="exact")
    model.insert(np.random.default_rng(1).normal(size=(20, 2)))
    model.remove([3])
    before = state_of(model)
    with pytest.raises(ValueError, match=match):
        model.remove(ids)
    with pytest.raises(ValueError, match="unknown"):
        model.remove([3])  # already removed
    with pytest.raises(ValueError, match="unknown"):
        model.labels_of([3])
    for a, b in zip(before, state_of(model)):
        np.testing.assert_array_equal(a, b)


def test_labels_are_stable_when_far_points_arrive():
    """A persisting cluster keeps its label; a new cluster gets a fresh one."""
    load_backend("cpp")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(40, 2))
    b = rng.normal(size=(40, 2)) + [20.0, 0.0]
    model = IncrementalHDBSCAN(min_cluster_size=5, knn="exact")
    ids_a = model.insert(a)
    ids_b = model.insert(b)
    la, lb = set(model.labels_of(ids_a).tolist()), set(model.labels_of(ids_b).tolist())
    c = rng.normal(size=(40, 2)) + [-20.0, 0.0]  # raw labels shift: c becomes raw cluster 0
    ids_c = model.insert(c)
    assert set(model.labels_of(ids_a).tolist()) == la
    assert set(model.labels_of(ids_b).tolist()) == lb
    assert set(model.labels_of(ids_c).tolist()).isdisjoint(la | lb)
    model.remove(ids_c)
    assert set(model.labels_of(ids_a).tolist()) == la
    assert model.cluster_sizes_ == {next(iter(la)): 40, next(iter(lb)): 40}


def test_match_labels_rule():
    old = np.array([0, 0, 0, 1, 1, -1, 2])
    raw = np.array([1, 1, 0, 0, 0, 0, -1])
    mapping, nxt = match_labels(old, raw, 3, next_label=5)
    # raw 0 shares 2 points with old 1 and 1 with old 0; raw 1 shares 2 with old 0.
    # Ties (count 2) go to the smaller old label first: (0 -> raw 1), then (1 -> raw 0).
    assert mapping.tolist() == [1, 0, 5] and nxt == 6


@pytest.mark.parametrize("n_old_labels", [3, 5000])
def test_match_labels_counting_paths_agree_with_a_direct_count(n_old_labels):
    """Pair counts by bincount (few labels) and by sorting (old labels up to 5000, more keys
    than points) both give the greedy rule applied to counts taken in pure Python."""
    rng = np.random.default_rng(n_old_labels)
    old = rng.integers(-1, n_old_labels, 400)
    raw = np.where(rng.random(400) < 0.7, old % 4, rng.integers(-1, 4, 400))
    counts = {}
    for a, b in zip(old.tolist(), raw.tolist()):
        if a >= 0 and b >= 0:
            counts[(a, b)] = counts.get((a, b), 0) + 1
    want, used, nxt = {}, set(), n_old_labels
    for (a, b), _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if a not in used and b not in want:
            want[b] = a
            used.add(a)
    for b in range(4):
        if b not in want:
            want[b], nxt = nxt, nxt + 1
    mapping, got_next = match_labels(old, raw, 4, next_label=n_old_labels)
    assert mapping.tolist() == [want[b] for b in range(4)] and got_next == nxt


def test_single_point_and_emptying():
    load_backend("cpp")
    model = IncrementalHDBSCAN(min_cluster_size=2, knn="exact")
    ids = model.insert([[1.0, 2.0]])
    assert model.labels_.tolist() == [-1] and model.minimum_spanning_tree_.shape == (0, 3)
    model.remove(ids)
    assert len(model) == 0 and model.labels_.shape == (0,)
    ids2 = model.insert([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    assert ids2.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="features"):
        model.insert([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("seed", range(6))
def test_native_insert_equals_refit_of_graph(seed):
    """``_core.incremental_insert``: neighbour lists and core distances equal a refit bit for
    bit and the MST has the refit's weights, with duplicates and ties (rounded points)."""
    core_mod = load_backend("cpp")
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 40))
    X = rng.normal(size=(260, dim)) * 3
    if seed % 2:
        X = np.round(X)
    n_old, k = int(rng.integers(3, 200)), int(rng.integers(1, 3))
    idx, dist = core_mod.nearest_neighbors(X[:n_old], k)
    mst = core_mod.minimum_spanning_tree(X[:n_old], np.ascontiguousarray(dist[:, -1]))
    got_idx, got_dist, core, got_mst = core_mod.incremental_insert(X, n_old, idx, dist, mst)
    want_idx, want_dist = core_mod.nearest_neighbors(X, k)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_dist, want_dist)
    np.testing.assert_array_equal(core, want_dist[:, -1])
    want_mst = core_mod.minimum_spanning_tree(X, np.ascontiguousarray(want_dist[:, -1]))
    np.testing.assert_array_equal(got_mst["weight"], want_mst["weight"])
    rows = rng.choice(len(X), 7, replace=False)
    knn_idx, knn_dist = core_mod.knn_of_rows(X, rows, k)
    np.testing.assert_array_equal(knn_idx, want_idx[rows])
    np.testing.assert_array_equal(knn_dist, want_dist[rows])
