"""The peers' cluster-selection options, each against the library that defines it.

- ``max_cluster_size``: ``hdbscan.HDBSCAN`` (``_hdbscan_tree.get_clusters``: 0 = no limit) and
  ``sklearn.cluster.HDBSCAN`` (``_tree._get_clusters``: None = no limit); ``eom`` only.
- ``cluster_selection_epsilon_max``: ``hdbscan.HDBSCAN`` (``get_clusters``); ``eom`` only.
- ``cluster_selection_persistence``: ``fast_hdbscan.HDBSCAN`` (``cluster_trees.simplify_hierarchy``)
  and ``hdbscan.HDBSCAN`` (its copy in ``_hdbscan_tree.simplify_hierarchy``).

Data are random blobs or uniform points (hypothesis seeds; continuous values, so no tied
mutual-reachability weights decide anything); like tests/test_hdbscan.py a case is compared
only where no n-ary merge can be encoded differently and no EOM decision is within the
libraries' float32 rounding. Option values are drawn between the values they are compared
with (sizes, distances, float32 persistences of the tree), never on one. Both backends must
give the same bits.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import load_backend
from medscore import HDBSCAN
from medscore._backends import BACKENDS
from medscore._estimator import InvalidParameterError
from strategies import make_points, point_sets
from test_incremental import run_stream

hdbscan = pytest.importorskip("hdbscan")
SEEDS = st.integers(0, 2**32 - 1)


def case(seed):
    rng = np.random.default_rng(seed)
    X = make_points(["blobs", "uniform"][seed % 2], int(rng.integers(20, 220)), int(rng.integers(1, 6)), seed)
    params = dict(min_cluster_size=int(rng.integers(2, 15)), min_samples=int(rng.integers(1, 8)))
    return rng, X, params


def fit(X, params, backend="cpp", **options):
    return HDBSCAN(**params, backend=backend, **options).fit(X)


def comparable(model, params, condensed=None) -> bool:
    n = len(model.labels_)
    tree = ref.threshold_tree(model._result.minimum_spanning_tree, n)
    if not ref.binary_order_irrelevant(tree, params["min_cluster_size"]):
        return False
    condensed = model._result.condensed_tree if condensed is None else condensed
    return ref.eom_margin(condensed, n) >= 1e-5


def assert_same_partition(ours, theirs):
    np.testing.assert_array_equal(ours < 0, theirs < 0)
    pairs = set(zip(ours[ours >= 0].tolist(), theirs[theirs >= 0].tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}), "not a bijection"


def assert_backends_agree(X, params, **options):
    load_backend("numba")
    a, b = fit(X, params, "cpp", **options), fit(X, params, "numba", **options)
    for field in ("labels_", "probabilities_", "cluster_persistence_", "outlier_scores_"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    np.testing.assert_array_equal(a._result.condensed_tree, b._result.condensed_tree)
    return a


NEW_OPTIONS = ("max_cluster_size", "cluster_selection_epsilon_max", "cluster_selection_persistence")


def without_options(X, params, options):
    """Labels of the fit with ``options`` less the new ones."""
    return fit(X, params, **{k: v for k, v in options.items() if k not in NEW_OPTIONS}).labels_


def between(rng, values):
    """A value strictly between two neighbouring distinct ``values`` (or beyond the ends)."""
    v = np.unique(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    edges = np.concatenate([[v[0] * 0.5], (v[:-1] + v[1:]) / 2, [v[-1] * 2 + 1]])
    return float(edges[rng.integers(0, edges.size)])


def node_eps(condensed, n):
    """hdbscan's node_eps: 1 / birth of each non-root cluster, and the root's largest 1 / lambda."""
    lam = condensed["lambda_val"]
    with np.errstate(divide="ignore"):
        births = 1.0 / lam[condensed["child"] >= n]
        return np.concatenate([births, [np.max(1.0 / lam)] if lam.size else []])


def split_gaps(condensed, n):
    """The float32 persistences simplify_hierarchy compares, for every child cluster."""
    info = ref.cluster_tree(condensed, n)
    deaths = {}
    for p, lam in zip(condensed["parent"].tolist(), condensed["lambda_val"].tolist()):
        deaths[p] = max(deaths.get(p, -np.inf), lam)

    def subtree_max(c):
        return max([np.float32(deaths[c])] + [subtree_max(k) for k in info.kids[c]])

    return [float(np.float32(subtree_max(c)) - np.float32(info.birth[c])) for c in info.parent]


def check_max_cluster_size(seed):
    """(compared with the peers, the option changed the labels)."""
    sklearn_hdbscan = pytest.importorskip("sklearn.cluster").HDBSCAN
    rng, X, params = case(seed)
    plain = fit(X, params)
    sizes = plain._result.condensed_tree["child_size"]
    limit = int(rng.choice(sizes[sizes > 1])) - int(rng.integers(0, 2)) if (sizes > 1).any() else 3
    single = bool(rng.integers(0, 2))
    epsilon = float(rng.uniform(0.1, 1.0)) if seed % 5 == 0 else 0.0
    options = dict(max_cluster_size=limit, allow_single_cluster=single, cluster_selection_epsilon=epsilon)
    ours = assert_backends_agree(X, params, **options)
    result = (False, not np.array_equal(ours.labels_, without_options(X, params, options)))
    if not comparable(plain, params):
        return result
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, **params, max_cluster_size=limit,
                             allow_single_cluster=single, cluster_selection_epsilon=epsilon).fit(X)
    assert_same_partition(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, rtol=0, atol=1e-9)
    result = (True, result[1])
    if epsilon:
        return result  # scikit-learn 1.9's epsilon_search can fail here (TypeError in traverse_upwards)
    skl = sklearn_hdbscan(min_cluster_size=params["min_cluster_size"], min_samples=params["min_samples"] + 1,
                          max_cluster_size=limit, allow_single_cluster=single,
                          cluster_selection_epsilon=epsilon, copy=True)
    try:
        skl.fit(X)
    except KeyError:
        # scikit-learn 1.9's _do_labelling looks the root up as a label when the only
        # selected cluster is not the root (only max_cluster_size leads there).
        assert single and list(ours.condensed_tree_.selected) != [len(X)] and ours.labels_.max() == 0
        return result
    assert_same_partition(ours.labels_, skl.labels_)
    np.testing.assert_allclose(ours.probabilities_, skl.probabilities_, rtol=0, atol=1e-9)
    return result


@settings(max_examples=25)
@given(seed=SEEDS)
def test_max_cluster_size_as_hdbscan_and_sklearn(seed):
    check_max_cluster_size(seed)


def check_epsilon_max(seed):
    """(compared with the peers, the option changed the labels)."""
    rng, X, params = case(seed)
    plain = fit(X, params)
    n = len(X)
    epsilon_max = between(rng, node_eps(plain._result.condensed_tree, n))
    single = bool(rng.integers(0, 2))
    options = dict(cluster_selection_epsilon_max=epsilon_max, allow_single_cluster=single)
    ours = assert_backends_agree(X, params, **options)
    result = (False, not np.array_equal(ours.labels_, without_options(X, params, options)))
    if not comparable(plain, params):
        return result
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, **params, **options).fit(X)
    assert_same_partition(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, rtol=0, atol=1e-9)
    return True, result[1]


@settings(max_examples=25)
@given(seed=SEEDS)
def test_epsilon_max_as_hdbscan(seed):
    check_epsilon_max(seed)


def check_persistence(seed):
    """(compared with the peers, the option changed the labels)."""
    fast_hdbscan = pytest.importorskip("fast_hdbscan")
    rng, X, params = case(seed)
    plain = fit(X, params)
    n = len(X)
    gaps = split_gaps(plain._result.condensed_tree, n)
    persistence = max(between(rng, gaps), 1e-3)
    method = ["eom", "leaf"][seed % 2]
    single = bool(rng.integers(0, 2)) and method == "eom"
    options = dict(cluster_selection_persistence=persistence, cluster_selection_method=method,
                   allow_single_cluster=single)
    ours = assert_backends_agree(X, params, **options)
    result = (False, not np.array_equal(ours.labels_, without_options(X, params, options)))
    if not (plain._result.condensed_tree["child"] >= n).any():
        return result  # no cluster below the root: both libraries' simplify_hierarchy index an empty array
    if not comparable(plain, params, ours._result.condensed_tree) or not comparable(plain, params):
        return result
    theirs = hdbscan.HDBSCAN(approx_min_span_tree=False, **params, **options).fit(X)
    expected = ref.canonical_condensed(theirs.condensed_tree_.to_numpy(), n)
    got = ref.canonical_condensed(ours._result.condensed_tree, n)
    for field in ("parent", "child", "child_size"):
        np.testing.assert_array_equal(got[field], expected[field])
    np.testing.assert_allclose(got["lambda_val"], expected["lambda_val"], rtol=1e-12, atol=0)
    assert_same_partition(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.probabilities_, theirs.probabilities_, rtol=0, atol=1e-9)
    result = (True, result[1])
    if single:
        return result  # fast_hdbscan never selects a root without child clusters (its own single-cluster rule)
    fast = fast_hdbscan.HDBSCAN(**params, **options).fit(X)
    assert_same_partition(ours.labels_, np.asarray(fast.labels_))
    # fast_hdbscan computes its tree in float32 and its membership strengths its own way:
    # they agree to about 1e-3 (hdbscan's, above, to 1e-9).
    np.testing.assert_allclose(ours.probabilities_, fast.probabilities_, rtol=0, atol=2e-3)
    return result


@settings(max_examples=25)
@given(seed=SEEDS)
def test_persistence_as_fast_hdbscan_and_hdbscan(seed):
    check_persistence(seed)


@pytest.mark.parametrize("check", [check_max_cluster_size, check_epsilon_max, check_persistence])
def test_comparisons_are_not_vacuous(check):
    """Guards the tests above: most cases reach the peers, and the option often matters."""
    results = [check(seed) for seed in range(30)]
    assert sum(c for c, _ in results) >= 6, results
    assert sum(c and ch for c, ch in results) >= 3, results


@settings(max_examples=20)
@given(seed=SEEDS)
def test_backends_agree_with_every_option(seed):
    rng, X, params = case(seed)
    plain = fit(X, params)
    n = len(X)
    condensed = plain._result.condensed_tree
    options = dict(cluster_selection_method=["eom", "leaf"][int(rng.integers(0, 2))],
                   allow_single_cluster=bool(rng.integers(0, 2)),
                   max_cluster_size=int(rng.integers(0, n + 1)),
                   cluster_selection_epsilon_max=between(rng, node_eps(condensed, n)),
                   cluster_selection_persistence=float(rng.choice([0.0, between(rng, split_gaps(condensed, n))])))
    assert_backends_agree(X, params, **options)


@settings(max_examples=30)
@given(X=point_sets(min_n=2, max_n=80, max_dim=4), data=st.data())
def test_backends_equal_the_reference_ties_included(X, data):
    """Every option on grids, duplicates and blobs: both backends give the bits of the slow
    reference written from the SPEC (tests/reference.py), n-ary splits included."""
    n = len(X)
    draw = data.draw
    params = dict(min_cluster_size=draw(st.integers(2, 10)), min_samples=draw(st.integers(1, 6)))
    options = dict(cluster_selection_method=draw(st.sampled_from(["eom", "leaf"])),
                   allow_single_cluster=draw(st.booleans()),
                   cluster_selection_epsilon=draw(st.sampled_from([0.0, 0.5])),
                   max_cluster_size=draw(st.integers(0, n)))
    options["cluster_selection_epsilon_max"] = max(options["cluster_selection_epsilon"],
                                                   draw(st.sampled_from([np.inf, 0.25, 1.0, 4.0])))
    expected = ref.fit(X, params["min_cluster_size"], params["min_samples"], options["cluster_selection_method"],
                       options["allow_single_cluster"], options["cluster_selection_epsilon"])
    gaps = np.unique([g for g in split_gaps(expected.condensed, n) if np.isfinite(g)])
    # between the tree's own float32 persistences, so that some splits dissolve
    choices = [0.0] + [float(g) for g in (gaps[:-1] + gaps[1:]) / 2 if g > 0] + [float(gaps[-1]) + 1.0] \
        if gaps.size else [0.0, 1.0]
    options["cluster_selection_persistence"] = draw(st.sampled_from(choices))
    condensed = ref.simplify_hierarchy(expected.condensed, n, options["cluster_selection_persistence"])
    labels, probabilities, persistence = ref.select(
        condensed, n, options["cluster_selection_method"], options["allow_single_cluster"],
        options["cluster_selection_epsilon"], options["max_cluster_size"], options["cluster_selection_epsilon_max"])
    for backend in BACKENDS:
        load_backend(backend)
        model = fit(X, params, backend, **options)
        np.testing.assert_array_equal(model._result.condensed_tree, condensed)
        np.testing.assert_array_equal(model.labels_, labels)
        np.testing.assert_array_equal(model.probabilities_, probabilities)
        np.testing.assert_array_equal(model.cluster_persistence_, persistence)


@pytest.mark.parametrize("backend", BACKENDS)
def test_defaults_change_nothing(backend):
    load_backend(backend)
    X = make_points("blobs", 150, 3, 7)
    for method in ("eom", "leaf"):
        a = HDBSCAN(min_cluster_size=5, cluster_selection_method=method, backend=backend).fit(X)
        b = HDBSCAN(min_cluster_size=5, cluster_selection_method=method, backend=backend, max_cluster_size=None,
                    cluster_selection_epsilon_max=np.inf, cluster_selection_persistence=0.0).fit(X)
        for field in ("labels_", "probabilities_", "cluster_persistence_"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_array_equal(a._result.condensed_tree, b._result.condensed_tree)


@pytest.mark.parametrize("bad", [dict(max_cluster_size=-1), dict(max_cluster_size=2.5),
                                 dict(cluster_selection_epsilon_max=-1.0),
                                 dict(cluster_selection_epsilon_max=float("nan")),
                                 dict(cluster_selection_epsilon=0.5, cluster_selection_epsilon_max=0.25),
                                 dict(cluster_selection_persistence=-0.1),
                                 dict(cluster_selection_persistence=float("inf"))])
def test_bad_values_are_refused(bad):
    with pytest.raises(InvalidParameterError):
        HDBSCAN(**bad).fit(make_points("blobs", 30, 2, 1))


def test_stage_functions_agree_on_random_trees():
    """select_clusters and simplify_hierarchy of both backends on condensed trees of random fits."""
    core, numba = load_backend("cpp"), load_backend("numba")
    for seed in range(30):
        rng, X, params = case(seed)
        model = fit(X, params)
        condensed, n = model._result.condensed_tree, len(X)
        persistence = between(rng, split_gaps(condensed, n))
        a, b = core.simplify_hierarchy(condensed, n, persistence), numba.simplify_hierarchy(condensed, n, persistence)
        np.testing.assert_array_equal(a, b)
        for tree in (condensed, a):
            args = (tree, n, ["eom", "leaf"][seed % 2], bool(seed % 3), 0.0,
                    int(rng.integers(0, n + 1)), between(rng, node_eps(tree, n)))
            for x, y in zip(core.select_clusters(*args), numba.select_clusters(*args)):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6)
@given(seed=SEEDS, limit=st.integers(0, 40), epsilon_max=st.sampled_from([np.inf, 0.5, 1.0, 2.0, 4.0]),
       single=st.booleans())
def test_incremental_stream_equals_refit_with_options(backend, seed, limit, epsilon_max, single):
    """IncrementalHDBSCAN with max_cluster_size / cluster_selection_epsilon_max: after every
    insert and removal the partition and probabilities equal a batch refit's."""
    load_backend(backend)
    params = dict(min_cluster_size=4, min_samples=3, allow_single_cluster=single, max_cluster_size=limit,
                  cluster_selection_epsilon_max=epsilon_max)
    run_stream(seed, backend, "exact", n_steps=6, capacity=None, params=params, max_dim=8)


def test_incremental_options_survive_pickling():
    import pickle

    from medscore import IncrementalHDBSCAN

    X = make_points("blobs", 120, 3, 5)
    for backend in BACKENDS:
        load_backend(backend)
        model = IncrementalHDBSCAN(min_cluster_size=4, max_cluster_size=20, backend=backend, knn="exact")
        model.insert(X[:60])
        copy = pickle.loads(pickle.dumps(model))
        model.insert(X[60:])
        copy.insert(X[60:])
        np.testing.assert_array_equal(model.labels_, copy.labels_)
        batch = HDBSCAN(min_cluster_size=4, max_cluster_size=20, backend=backend).fit(X)
        assert_same_partition(model.labels_, batch.labels_)


def test_nary_splits_simplify_as_the_reference():
    """Ties give n-ary splits, which the libraries never see: both backends follow the SPEC's
    generalisation (tests/reference.py) on hand-made trees, the tie between children included."""
    from medscore._dtypes import CONDENSED

    core, numba = load_backend("cpp"), load_backend("numba")
    # Root 12 splits at 0.5 into 13 {0, 1, 2} (dies at 0.6), 14 {3..5} (2.0) and 15 {6..11},
    # which splits at 1.0 into 16 {6, 7, 8} and 17 {9, 10, 11} (both die at 3.0: a tie).
    rows = [(12, 13, 0.5, 3), (12, 14, 0.5, 3), (12, 15, 0.5, 6)]
    rows += [(13, p, 0.6, 1) for p in range(3)] + [(14, p, 2.0, 1) for p in range(3, 6)]
    rows += [(15, 16, 1.0, 3), (15, 17, 1.0, 3)] + [(16, p, 3.0, 1) for p in range(6, 9)]
    rows += [(17, p, 3.0, 1) for p in range(9, 12)]
    tree = np.array(rows, dtype=CONDENSED)
    for persistence in (0.05, 0.5, 1.75, 2.5, 10.0):
        expected = ref.simplify_hierarchy(tree, 12, persistence)
        np.testing.assert_array_equal(core.simplify_hierarchy(tree, 12, persistence), expected)
        np.testing.assert_array_equal(numba.simplify_hierarchy(tree, 12, persistence), expected)
        for method in ("eom", "leaf"):
            want = ref.select(expected, 12, method, True, 0.0)
            for got in (core.select_clusters(expected, 12, method, True, 0.0),
                        numba.select_clusters(expected, 12, method, True, 0.0)):
                for x, y in zip(got, want):
                    np.testing.assert_array_equal(x, y)
    # 0.5: the root's split dissolves (13's 0.1 is below); 15 is the most persistent child and
    # no leaf, so it goes on as the root: 13's and 14's points leave at the split (0.5).
    simplified = core.simplify_hierarchy(tree, 12, 0.5)
    assert sorted(set(simplified["parent"].tolist())) == [12, 13, 14]
    assert (simplified["lambda_val"][simplified["child"] < 6] == 0.5).all()
